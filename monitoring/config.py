"""``monitoring/config.yml`` read into a checked object: a typo fails the generator, not
the Prometheus that loads its output."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from exporter.assess import STUCK_AFTER
from exporter.durations import format_duration, parse_duration

DEFAULT_CONFIG = Path(__file__).with_name("config.yml")

ALERT_NAMES = (
    "CodatConnectionDeauthorized",
    "CodatCompanyAuthError",
    "CodatDataTypeStale",
    "CodatDataTypeNeverSynced",
    "CodatDataTypeSyncFailing",
    "CodatDataTypeSyncStuck",
    "CodatDataTypeStaleCompanies",
    "CodatAuthErrorCompanies",
    "CodatConnectionsDeauthorized",
    "CodatFreshnessSLOFastBurn",
    "CodatFreshnessSLOSlowBurn",
    "CodatExporterCompanyPollFailing",
    "CodatExporterCompanyNotFound",
    "CodatExporterAPIKeyRejected",
    "CodatExporterDown",
    "CodatExporterPollStalled",
    "CodatExporterStateFileErrors",
)
DEFAULT_THRESHOLDS = {"CodatDataTypeSyncStuck": format_duration(STUCK_AFTER)}
"""Thresholds that are the exporter's own unless config.yml sets one: the status page calls
a pair stuck after ``exporter.assess.STUCK_AFTER`` (6h), and the alert fires for the same
pairs. A threshold set in config.yml moves the alert only."""
SEVERITIES = ("critical", "warning", "info")
TOP_LEVEL_KEYS = {
    "selector",
    "grafana_url",
    "runbook_url",
    "status_page_url",
    "alerts",
    "sync_in_progress_grace",
    "keep_firing_for",
    "freshness_slo",
}


class MonitoringConfigError(ValueError):
    pass


@dataclass(frozen=True)
class AlertConfig:
    severity: str
    for_: str
    """A Prometheus duration; ``0s`` fires on the first evaluation."""
    window: str | None = None
    threshold: str | None = None


@dataclass(frozen=True)
class MonitoringConfig:
    selector: str
    grafana_url: str
    runbook_url: str
    status_page_url: str
    """The exporter's status page, ending in ``/``; alerts append ``?company=<id>``."""
    alerts: dict[str, AlertConfig]
    sync_in_progress_grace: str
    keep_firing_for: str
    """How long a firing alert over the exporter's latest values outlives its series: a
    restart's scrape gap neither resolves it nor restarts its ``for``."""
    freshness_objective: float
    """Share of synced pairs that must be within their max age, e.g. 0.99."""

    def alert(self, name: str) -> AlertConfig:
        return self.alerts[name]


def load(path: Path = DEFAULT_CONFIG) -> MonitoringConfig:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise MonitoringConfigError(f"{path}: expected a mapping at the top level")
    _only(raw, TOP_LEVEL_KEYS, "")
    alerts_raw = raw.get("alerts")
    if not isinstance(alerts_raw, dict) or set(alerts_raw) != set(ALERT_NAMES):
        raise MonitoringConfigError(f"alerts: expected exactly {', '.join(ALERT_NAMES)}")
    return MonitoringConfig(
        selector=_text(raw, "selector"),
        grafana_url=_text(raw, "grafana_url").rstrip("/"),
        runbook_url=_text(raw, "runbook_url"),
        status_page_url=_text(raw, "status_page_url").rstrip("/") + "/",
        alerts={name: _alert(name, alerts_raw[name]) for name in ALERT_NAMES},
        sync_in_progress_grace=_duration(
            raw.get("sync_in_progress_grace"), "sync_in_progress_grace"
        ),
        keep_firing_for=_duration(raw.get("keep_firing_for"), "keep_firing_for"),
        freshness_objective=_objective(raw.get("freshness_slo")),
    )


def _objective(raw: Any) -> float:
    if not isinstance(raw, dict):
        raise MonitoringConfigError("freshness_slo: expected a mapping with objective")
    _only(raw, {"objective"}, "freshness_slo.")
    value = raw.get("objective")
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise MonitoringConfigError(
            "freshness_slo.objective: expected a number between 0 and 1 such as 0.99"
        )
    return float(value)


def _alert(name: str, raw: Any) -> AlertConfig:
    if not isinstance(raw, dict):
        raise MonitoringConfigError(f"alerts.{name}: expected a mapping")
    _only(raw, {"severity", "for", "window", "threshold"}, f"alerts.{name}.")
    severity = raw.get("severity")
    if severity not in SEVERITIES:
        raise MonitoringConfigError(f"alerts.{name}.severity: one of {', '.join(SEVERITIES)}")
    optional = {
        key: _duration(raw[key], f"alerts.{name}.{key}")
        for key in ("window", "threshold")
        if key in raw
    }
    if name in DEFAULT_THRESHOLDS:
        optional.setdefault("threshold", DEFAULT_THRESHOLDS[name])
    return AlertConfig(
        severity=severity, for_=_duration(raw.get("for"), f"alerts.{name}.for"), **optional
    )


def _only(raw: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise MonitoringConfigError(f"{where}{unknown[0]}: unknown key")


def _text(raw: dict[str, Any], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise MonitoringConfigError(f"{key}: expected a non-empty string")
    return value.strip()


def _duration(value: Any, where: str) -> str:
    """Kept as written, for the rules; read by the exporter's own parser, so a duration
    means the same here as in the exporter's config."""
    text = value if isinstance(value, str) else ""
    try:
        parse_duration(text)
    except (ValueError, OverflowError):
        raise MonitoringConfigError(
            f"{where}: expected a Prometheus duration such as 15m"
        ) from None
    return text
