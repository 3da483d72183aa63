"""Durations: one parser for the exporter's config and the monitoring generator's."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from exporter.config.durations import format_duration, parse_duration
from exporter.config.settings import ConfigError
from monitoring.config import DEFAULT_CONFIG, load


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


@pytest.mark.parametrize("text", ["30m1h", "5m5m"])
def test_should_refuse_in_monitoring_config_what_the_exporter_refuses(
    text: str, tmp_path: Path
) -> None:
    # Prepare: the shipped monitoring config with one alert's `for` out of unit order
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    name = next(iter(raw["alerts"]))
    raw["alerts"][name]["for"] = text
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    # Act
    with pytest.raises(ConfigError) as raised:
        load(path)
    # Check
    assert str(raised.value) == f"alerts.{name}.for: expected a Prometheus duration such as 15m"
