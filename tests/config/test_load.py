"""Configuration: every mistake is one line naming the key, and exit code 2."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from exporter.cli import main
from exporter.config.document import document
from exporter.config.load import load_config, parse_config
from exporter.config.sections import Config
from exporter.core.contract import DATA_TYPES
from exporter.simulator.server import SimulatedCodat
from tests.contract import load_schemas
from tests.e2e.test_hostile_input import logging_restored
from tests.harness import API_KEY
from tests.promtools import ROOT

INVALID = sorted((ROOT / "tests" / "fixtures" / "invalid").glob("*.yaml"))
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
    out, err = capsys.readouterr()
    assert code == 0
    assert "configuration OK" in out
    assert err == ""
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
    assert "1 company, poll every 5m" in capsys.readouterr().out


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


def test_should_warn_about_unknown_data_types_and_still_pass_the_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    path = tmp_path / "c.yaml"
    path.write_text(
        f"codat: {{api_key: k}}\ncompanies: {{ids: [{COMPANY}]}}\n"
        "data_types: {include: [bills, bilss], exclude: [payroll]}\n"
        "freshness:\n  max_age: {invoice: 6h, invoices: 6h}\n"
        f"  companies: {{{COMPANY}: {{max_age: {{balancesheet: 1h}}}}}}\n"
    )
    # Act
    code = main(["--config.file", str(path), "--check-config"])
    # Check
    out, err = capsys.readouterr()
    assert code == 0
    assert "configuration OK" in out
    assert err.splitlines() == [
        "codat-freshness-exporter: warning: data_types.include[1]: unknown data type bilss; "
        "did you mean bills?",
        "codat-freshness-exporter: warning: data_types.exclude[0]: unknown data type payroll",
        "codat-freshness-exporter: warning: freshness.max_age.invoice: unknown data type; "
        "did you mean invoices?",
        f"codat-freshness-exporter: warning: freshness.companies.{COMPANY}.max_age.balancesheet: "
        "unknown data type; did you mean balanceSheet?",
    ]


def test_should_log_each_config_warning_once_when_it_starts(
    tmp_path: Path, codat: SimulatedCodat, fleet_ids: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({
        "codat": {"base_url": codat.url, "api_key": API_KEY, "timeout": "2s"},
        "companies": {"ids": fleet_ids[:1]},
        "freshness": {"max_age": {"invoice": "6h"}},
    }))  # fmt: skip
    # Act
    with logging_restored():
        main(["--config.file", str(path), "--once"])
    # Check
    lines = [line for line in capsys.readouterr().err.splitlines() if "unknown data type" in line]
    assert len(lines) == 1
    assert re.search(
        r" WARNING exporter: freshness\.max_age\.invoice: unknown data type; did you mean "
        r"invoices\?$",
        lines[0],
    )


def test_should_compare_company_ids_in_lower_case(tmp_path: Path) -> None:
    # Prepare
    excluded = "d1568dde-adf6-11ed-afa1-0242ac120002"
    path = tmp_path / "c.yaml"
    path.write_text(
        f"codat: {{api_key: k}}\n"
        f"companies: {{ids: [{COMPANY.upper()}], exclude: [{excluded.upper()}]}}\n"
        f"freshness: {{companies: {{{COMPANY.upper()}: {{max_age: {{bills: 2h}}}}}}}}\n"
    )
    # Act
    config = load_config(path, {})
    # Check
    assert config.companies.ids == (COMPANY,)
    assert config.companies.exclude == {excluded}
    assert config.freshness.max_age_for("bills", COMPANY) == 2 * 3600


def test_should_refuse_an_authorization_header_in_the_key_file_without_showing_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    key_file = tmp_path / "key"
    key_file.write_text("Basic czNjcmV0LWtleQ==\n")
    path = tmp_path / "c.yaml"
    path.write_text(f"codat: {{api_key_file: {key_file}}}\ncompanies: {{ids: [{COMPANY}]}}\n")
    # Act
    code = main(["--config.file", str(path), "--check-config"])
    # Check
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(
        "codat-freshness-exporter: codat.api_key_file: this is an Authorization header"
    )
    assert "czNjcmV0" not in err


def test_should_know_every_data_type_the_contract_lists() -> None:
    # Prepare
    data_status = load_schemas()["$defs"]["DataStatus"]
    # Act
    listed = [name for name in data_status["properties"]["dataType"]["enum"] if name]
    # Check
    assert sorted(DATA_TYPES) == sorted(listed)


def test_should_show_every_key_in_the_example_config() -> None:
    # Prepare: a key is either set in the example or shown commented out ("# key: ...")
    text = (ROOT / "config.example.yaml").read_text()
    example = yaml.safe_load(text)
    # Act
    missing = []
    for key in document(Config):
        section, name = key.path.split(".")
        if name not in example.get(section, {}) and not re.search(rf"#\s*{name}:", text):
            missing.append(key.path)
    # Check
    assert missing == []


def test_should_read_the_webhook_secret_from_a_file(tmp_path: Path) -> None:
    # Prepare: a Kubernetes Secret mounted as a file
    secret = "whsec_" + base64.b64encode(b"k" * 24).decode()
    path = tmp_path / "webhook_secret"
    path.write_text(secret + "\n")
    raw = {"codat": {"api_key": "k"}, "companies": {"discover": True},
           "webhooks": {"enabled": True, "secret_file": str(path)}}  # fmt: skip
    # Act
    config = parse_config(raw)
    # Check
    assert config.webhooks.secret == secret
    assert secret not in repr(config)


def webhooks_config(tmp_path: Path, listen_address: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"codat: {{api_key: k}}\ncompanies: {{ids: [{COMPANY}]}}\n"
        f"webhooks: {{enabled: true, secret: whsec_c2VjcmV0, listen_address: '{listen_address}'}}\n"
    )
    return path


@pytest.mark.parametrize(
    ("address", "problem"),
    [("127.0.0.1:99999", "port 99999 is out of range 0-65535"),
     ("127.0.0.1:port", "port 'port' is not a number from 0 to 65535"),
     ("[::1]:99999", "port 99999 is out of range 0-65535")],
)  # fmt: skip
def test_should_refuse_at_the_check_a_webhook_address_the_start_refuses(
    tmp_path: Path, address: str, problem: str
) -> None:
    # Prepare
    config = webhooks_config(tmp_path, address)
    command = [sys.executable, "-m", "exporter", "--config.file", str(config),
               "--web.listen-address", "127.0.0.1:0"]  # fmt: skip
    # Act
    check, start = (
        subprocess.run(command + extra, capture_output=True, text=True, timeout=60, check=False)
        for extra in (["--check-config"], [])
    )
    # Check: the same single line, and exit 2, from both
    expected = [f"codat-freshness-exporter: webhooks.listen_address: '{address}': {problem}"]
    assert (check.returncode, check.stderr.splitlines()) == (2, expected)
    assert (start.returncode, start.stderr.splitlines()) == (2, expected)


@pytest.mark.parametrize(
    ("metrics", "webhooks", "code"),
    [("127.0.0.1:9782", "127.0.0.1:9782", 2), ("127.0.0.1:9782", "[::]:9782", 2),
     (":9782", "127.0.0.1:9782", 2), ("127.0.0.1:9782", "127.0.0.1:9783", 0),
     ("127.0.0.1:9782", "[::1]:9782", 0), ("127.0.0.1:0", "127.0.0.1:0", 0),
     ("127.0.0.1:9782", ":9783", 0)],
)  # fmt: skip
def test_should_refuse_a_webhook_listener_on_the_port_the_metrics_one_takes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], metrics: str, webhooks: str, code: int
) -> None:
    # Prepare
    config = webhooks_config(tmp_path, webhooks)
    # Act
    result = main(["--config.file", str(config), "--web.listen-address", metrics,
                   "--check-config"])  # fmt: skip
    # Check
    err = capsys.readouterr().err
    assert result == code
    if code:
        assert err.startswith("codat-freshness-exporter: webhooks.listen_address: ")
        assert "takes the port --web.listen-address listens on" in err
        assert err.count("\n") == 1


def test_should_refuse_a_state_directory_this_user_cannot_write(tmp_path: Path) -> None:
    # Prepare: a directory the exporter's user may read but not write; as root, the
    # exporter runs as nobody (root may write anywhere)
    as_root = os.geteuid() == 0
    if as_root and shutil.which("setpriv") is None:
        pytest.skip("running as root, and no setpriv to run the exporter as another user")
    shared = Path(tempfile.mkdtemp(prefix="codat-exporter-state-"))
    try:
        shared.chmod(0o755)
        directory = shared / "state"
        directory.mkdir(mode=0o555)
        config = shared / "config.yaml"
        config.write_text(
            f"codat: {{api_key: k}}\ncompanies: {{ids: [{COMPANY}]}}\n"
            f"state: {{file: '{directory / 'state.json'}'}}\n"
        )
        config.chmod(0o644)
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        command = [*(nobody if as_root else []), sys.executable, "-m", "exporter",
                   "--config.file", str(config), "--check-config"]  # fmt: skip
        # Act
        run = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    finally:
        (shared / "state").chmod(0o755)
        shutil.rmtree(shared)
    # Check
    refused = f"state.file: directory {directory} is not writable by this user"
    assert run.returncode == 2
    assert run.stderr.splitlines() == [f"codat-freshness-exporter: {refused}"]


def test_should_pass_webhooks_on_every_interface_of_another_port_and_a_state_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: webhooks on every interface of another port; the state file's directory there
    config = webhooks_config(tmp_path, ":9783")
    config.write_text(config.read_text() + f"state: {{file: '{tmp_path / 'state.json'}'}}\n")
    # Act
    code = main(["--config.file", str(config), "--web.listen-address", "127.0.0.1:9782",
                 "--check-config"])  # fmt: skip
    # Check
    assert code == 0, capsys.readouterr().err
    assert load_config(config).webhooks.listen_address == ":9783"
