"""``monitoring/config.yml`` read into a checked object: a typo fails the generator, not
the Prometheus that loads its output.

Declared on the exporter's settings engine (``exporter.config.settings``) as the exporter's
own config file is, so a problem reads the same: one ``ConfigError`` line naming the key,
with the nearest known key for a misspelt one::

    alerts.CodatExporterDown.fro: unknown key; did you mean for?
    keep_firing_for: expected a Prometheus duration such as 15m

Durations are kept as written, for the rules, and read by the exporter's own parser, so
``15m`` means the same here as in the exporter's config.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from exporter.config.durations import format_duration, parse_duration
from exporter.config.sections import PLATFORM_INCIDENT_COMPANIES
from exporter.config.settings import (
    BOOL,
    STRING,
    ConfigError,
    Kind,
    Reading,
    Where,
    check_keys,
    read_section,
    read_yaml,
    setting,
    whole_number,
)
from exporter.exposition.assess import STUCK_AFTER

DEFAULT_CONFIG = Path(__file__).with_name("config.yml")

ALERT_NAMES = (
    "CodatConnectionDeauthorized",
    "CodatCompanyAuthError",
    "CodatDataTypeStale",
    "CodatDataTypeNeverSynced",
    "CodatDataTypeSyncFailing",
    "CodatDataTypeSyncStuck",
    "CodatPlatformSyncFailures",
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
DEFAULT_COMPANIES = {"CodatPlatformSyncFailures": PLATFORM_INCIDENT_COMPANIES}
"""Counts of companies that are the exporter's own unless config.yml sets one: the status
page calls a platform an incident from ``status_page.platform_incident_companies`` failing
companies on it (default ``exporter.config.sections.PLATFORM_INCIDENT_COMPANIES``)."""
SEVERITIES = ("critical", "warning", "info")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
RESERVED_LABELS = {
    "severity": "set the alert's severity instead",
    "alertname": "Prometheus sets it",
}
_NO_LABELS: Mapping[str, str] = MappingProxyType({})


def _duration(value: Any, at: Where) -> str:
    text = value if isinstance(value, str) else ""
    try:
        parse_duration(text)
    except (ValueError, OverflowError):
        raise ConfigError(f"{at}: expected a Prometheus duration such as 15m") from None
    return text


def _severity(value: Any, at: Where) -> str:
    if value not in SEVERITIES:
        raise ConfigError(f"{at}: one of {', '.join(SEVERITIES)}")
    return str(value)


def _labels(value: Any, at: Where) -> Mapping[str, str]:
    """Prometheus labels, name -> non-empty string (an empty one would be dropped)."""
    if not isinstance(value, dict):
        raise ConfigError(f"{at}: expected a mapping of label name to value")
    for name, text in value.items():
        label = at.key(str(name))
        if not isinstance(name, str) or not LABEL_NAME.fullmatch(name) or name.startswith("__"):
            raise ConfigError(
                f"{label}: not a label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)"
            )
        if name in RESERVED_LABELS:
            raise ConfigError(f"{label}: reserved; {RESERVED_LABELS[name]}")
        if not isinstance(text, str) or not text:
            raise ConfigError(f"{label}: expected a non-empty string (quote numbers)")
    return dict(value)


def _share(value: Any, at: Where) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise ConfigError(f"{at}: expected a number between 0 and 1 such as 0.99")
    return float(value)


PROM_DURATION = Kind("Prometheus duration", _duration)
OPTIONAL_COUNT: Kind[int | None] = Kind(
    "whole number", lambda value, at: whole_number(1_000_000).read(value, at)
)
OPTIONAL_PROM_DURATION: Kind[str | None] = Kind("Prometheus duration", _duration)
LABELS = Kind("mapping of label name to value", _labels)
URL = Kind("URL", lambda value, at: STRING.read(value, at).rstrip("/"))
PAGE = Kind("URL", lambda value, at: STRING.read(value, at).rstrip("/") + "/")


@dataclass(frozen=True)
class AlertConfig:
    """One alert's entry of ``alerts``."""

    severity: str = setting(Kind("severity", _severity), "critical, warning or info")
    for_: str = setting(PROM_DURATION, "`0s` fires on the first evaluation", key="for")
    window: str | None = setting(
        OPTIONAL_PROM_DURATION, "the range its expression looks back over", default=None
    )
    threshold: str | None = setting(OPTIONAL_PROM_DURATION, "how long is too long", default=None)
    companies: int | None = setting(
        OPTIONAL_COUNT, "how many companies at once are too many", default=None
    )
    enabled: bool = setting(
        BOOL, "false leaves the alert out of the rule files (and the PrometheusRule)",
        default=True,
    )  # fmt: skip
    extra_labels: Mapping[str, str] = setting(
        LABELS, "added to the alert, over the config's `extra_labels`", default=_NO_LABELS
    )


def _alerts(value: Any, at: Where) -> dict[str, AlertConfig]:
    """Every alert of ``ALERT_NAMES``, each with its settings: an alert is switched off with
    ``enabled: false``, never by leaving it out."""
    entries = check_keys(value, at.path, ALERT_NAMES)
    alerts = {}
    for name in ALERT_NAMES:
        if name not in entries:
            raise ConfigError(f"{at.key(name)}: required")
        alert = read_section(AlertConfig, entries[name], at.key(name))
        if alert.threshold is None and name in DEFAULT_THRESHOLDS:
            alert = replace(alert, threshold=DEFAULT_THRESHOLDS[name])
        if alert.companies is None and name in DEFAULT_COMPANIES:
            alert = replace(alert, companies=DEFAULT_COMPANIES[name])
        alerts[name] = alert
    return alerts


@dataclass(frozen=True)
class FreshnessSLO:
    """``freshness_slo``; ``MonitoringConfig.freshness_objective`` is what it holds."""

    objective: float = setting(
        Kind("number between 0 and 1", _share),
        "share of synced pairs that must be within their max age, e.g. 0.99",
    )


@dataclass(frozen=True)
class MonitoringConfig:
    """The whole of ``config.yml``: what every rule and dashboard is generated from."""

    selector: str = setting(STRING, "label matchers of the exporter's scrape targets")
    grafana_url: str = setting(URL, "Grafana's external URL, where alerts link to")
    runbook_url: str = setting(STRING, "docs/runbook.md as readable; alerts add #<alertname>")
    status_page_url: str = setting(
        PAGE, "the exporter's status page; alerts append `?company=<id>`"
    )
    alerts: dict[str, AlertConfig] = setting(
        Kind("mapping of alert name to its settings", _alerts), "every alert, by name"
    )
    sync_in_progress_grace: str = setting(
        PROM_DURATION, "a sync in progress shorter than this does not reset the AuthError "
        "and SyncFailing alerts' `for`",
    )  # fmt: skip
    keep_firing_for: str = setting(
        PROM_DURATION, "how long a firing alert over the exporter's latest values outlives "
        "its series: a restart's scrape gap neither resolves it nor restarts its `for`",
    )  # fmt: skip
    freshness_objective: float = setting(
        Kind(
            "section",
            lambda raw, at: read_section(FreshnessSLO, raw, at).objective,
            section=FreshnessSLO,
        ),
        "",
        key="freshness_slo",
    )
    extra_labels: Mapping[str, str] = setting(
        LABELS, "added to every alert, e.g. `{team: finance-ops}` for Alertmanager's routes",
        default=_NO_LABELS,
    )  # fmt: skip

    def alert(self, name: str) -> AlertConfig:
        return self.alerts[name]

    def labels(self, name: str) -> dict[str, str]:
        """The alert's labels: its severity, then the extra labels, the alert's own last."""
        settings = self.alert(name)
        return {"severity": settings.severity, **self.extra_labels, **settings.extra_labels}


def load(path: Path = DEFAULT_CONFIG) -> MonitoringConfig:
    """``path`` read and checked; ``ConfigError`` names the key, or the file and line."""
    return read_section(MonitoringConfig, read_yaml(path, "monitoring config"), Where(Reading()))
