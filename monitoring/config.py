"""``monitoring/config.yml`` read into a checked object: a typo fails the generator, not
the Prometheus that loads its output."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from exporter.config.durations import format_duration, parse_duration
from exporter.exposition.assess import STUCK_AFTER

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
a pair stuck after ``exporter.exposition.assess.STUCK_AFTER`` (6h), and the alert fires for the same
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
    "extra_labels",
}
ALERT_KEYS = {"severity", "for", "window", "threshold", "enabled", "extra_labels"}
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
RESERVED_LABELS = {
    "severity": "set the alert's severity instead",
    "alertname": "Prometheus sets it",
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
    enabled: bool = True
    """False leaves the alert out of the rule files (and so of the PrometheusRule)."""
    extra_labels: dict[str, str] = field(default_factory=dict)
    """Added to the alert, over the config's ``extra_labels``."""


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
    extra_labels: dict[str, str] = field(default_factory=dict)
    """Added to every alert, e.g. ``{team: finance-ops}`` for Alertmanager's routes."""

    def alert(self, name: str) -> AlertConfig:
        return self.alerts[name]

    def labels(self, name: str) -> dict[str, str]:
        """The alert's labels: its severity, then the extra labels, the alert's own last."""
        settings = self.alert(name)
        return {"severity": settings.severity, **self.extra_labels, **settings.extra_labels}


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
        extra_labels=_labels(raw.get("extra_labels"), "extra_labels"),
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
    _only(raw, ALERT_KEYS, f"alerts.{name}.")
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
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise MonitoringConfigError(f"alerts.{name}.enabled: expected true or false")
    return AlertConfig(
        severity=severity,
        for_=_duration(raw.get("for"), f"alerts.{name}.for"),
        enabled=enabled,
        extra_labels=_labels(raw.get("extra_labels"), f"alerts.{name}.extra_labels"),
        **optional,
    )


def _labels(raw: Any, where: str) -> dict[str, str]:
    """Prometheus labels, name -> non-empty string (an empty one would be dropped)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise MonitoringConfigError(f"{where}: expected a mapping of label name to value")
    for name, value in raw.items():
        label = f"{where}.{name}"
        if not isinstance(name, str) or not LABEL_NAME.fullmatch(name) or name.startswith("__"):
            raise MonitoringConfigError(
                f"{label}: not a label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)"
            )
        if name in RESERVED_LABELS:
            raise MonitoringConfigError(f"{label}: reserved; {RESERVED_LABELS[name]}")
        if not isinstance(value, str) or not value:
            raise MonitoringConfigError(f"{label}: expected a non-empty string (quote numbers)")
    return dict(raw)


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
