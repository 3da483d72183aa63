"""Configuration: every mistake is one line naming the key, and exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from exporter.cli import main
from exporter.config import format_duration, load_config, parse_duration

ROOT = Path(__file__).parent.parent
INVALID = sorted((Path(__file__).parent / "fixtures" / "invalid").glob("*.yaml"))
COMPANY = "8a210b68-6988-11ed-a1eb-0242ac120002"


def expected_error(fixture: Path) -> str:
    first = fixture.read_text().splitlines()[0]
    assert first.startswith("# error: "), f"{fixture.name} must start with '# error: ...'"
    return first.removeprefix("# error: ")


@pytest.mark.parametrize("fixture", INVALID, ids=[f.stem for f in INVALID])
def test_should_reject_invalid_config_with_one_line_naming_the_key(
    fixture: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    expected = expected_error(fixture)
    # Act
    code = main(["--config.file", str(fixture), "--check-config"])
    # Check
    err = capsys.readouterr().err
    assert code == 2
    assert expected in err
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert "s3cret" not in err


def test_should_exit_2_without_traceback_when_run_as_a_program(tmp_path: Path) -> None:
    # Prepare
    bad = tmp_path / "config.yaml"
    bad.write_text(
        f"codat: {{api_key: k}}\npoll: {{intervall: 5m}}\ncompanies: {{ids: [{COMPANY}]}}\n"
    )
    # Act
    run = subprocess.run(
        [sys.executable, "-m", "exporter", "--config.file", str(bad)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    # Check
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        "codat-freshness-exporter: poll.intervall: unknown key; did you mean interval?"
    ]


def test_should_accept_the_shipped_example_config(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    monkeypatch.setenv("CODAT_API_KEY", "example-key")
    # Act
    code = main(["--config.file", str(ROOT / "config.example.yaml"), "--check-config"])
    # Check
    out = capsys.readouterr().out
    assert code == 0
    assert "configuration OK" in out
    assert "example-key" not in out


def test_should_read_the_config_path_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    path = tmp_path / "c.yaml"
    path.write_text(f"codat: {{api_key: k}}\ncompanies: {{ids: [{COMPANY}]}}\n")
    monkeypatch.setenv("CODAT_EXPORTER_CONFIG", str(path))
    # Act
    code = main(["--check-config"])
    # Check
    assert code == 0
    assert "1 companies, poll every 5m" in capsys.readouterr().out


def test_should_substitute_environment_variables_in_any_string(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "c.yaml"
    path.write_text(
        "codat: {api_key: '${KEY}', base_url: 'https://${HOST}/v1'}\n"
        "companies: {ids: ['${FIRST}']}\npoll: {interval: '${EVERY}'}\n"
    )
    env = {"KEY": "s3cret", "HOST": "codat.example", "FIRST": COMPANY, "EVERY": "90s"}
    # Act
    config = load_config(path, env)
    # Check
    assert config.codat.api_key == "s3cret"
    assert config.codat.base_url == "https://codat.example/v1"
    assert config.companies.ids == (COMPANY,)
    assert config.poll.interval == 90


def test_should_read_the_api_key_from_a_file_and_never_show_it(tmp_path: Path) -> None:
    # Prepare
    key_file = tmp_path / "key"
    key_file.write_text("file-key-123\n")
    path = tmp_path / "c.yaml"
    path.write_text(f"codat: {{api_key_file: {key_file}}}\ncompanies: {{ids: [{COMPANY}]}}\n")
    # Act
    config = load_config(path, {})
    # Check
    assert config.codat.api_key == "file-key-123"
    assert "file-key-123" not in repr(config)
    assert "file-key-123" not in config.summary()


def test_should_apply_defaults_and_per_data_type_thresholds(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "c.yaml"
    path.write_text(
        f"codat: {{api_key: k}}\ncompanies: {{ids: [{COMPANY}]}}\n"
        "freshness: {max_age: {invoices: 6h}}\ndata_types: {exclude: [balanceSheet]}\n"
    )
    # Act
    config = load_config(path, {})
    # Check
    assert config.codat.base_url == "https://api.codat.io"
    assert (config.codat.timeout, config.codat.max_concurrency) == (30, 4)
    assert config.poll.interval == 300
    assert config.freshness.max_age_for("invoices") == 6 * 3600
    assert config.freshness.max_age_for("bills") == 26 * 3600
    assert not config.data_types.selects("balanceSheet")
    assert config.data_types.selects("bills")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("5m", 300), ("1h", 3600), ("2d", 172800), ("1h30m", 5400), ("250ms", 0.25),
     ("1w", 604800)],
)  # fmt: skip
def test_should_parse_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("text", ["", "5", "5 m", "m", "1.5h", "30m1h", "5m5m", "-5m", "5M"])
def test_should_reject_malformed_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_should_refuse_to_start_without_config_or_demo(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    monkeypatch.delenv("CODAT_EXPORTER_CONFIG", raising=False)
    # Act
    code = main([])
    # Check
    assert code == 2
    assert "pass --config.file PATH, or --demo" in capsys.readouterr().err
