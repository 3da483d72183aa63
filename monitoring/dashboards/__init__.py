"""The three dashboards: fleet overview, one company, and the exporter's own health; and
the fleet preset's variant of the fleet overview.

UIDs are stable: alerts link to them (``dashboard_url``) and so do the tables here.
Queries name metrics through ``exporter.core.families`` so a rename cannot leave one behind.
"""

from __future__ import annotations

from typing import Any

from monitoring.config import MonitoringConfig
from monitoring.dashboards import company, exporter, fleet, fleet_preset
from monitoring.dashboards.common import (
    COMPANY_UID,
    EXPORTER_UID,
    FLEET_PRESET_UID,
    FLEET_UID,
    ON_PAIR,
    PAIR,
    dashboard_path,
)

__all__ = [
    "COMPANY_UID",
    "EXPORTER_UID",
    "FLEET_PRESET_UID",
    "FLEET_UID",
    "ON_PAIR",
    "PAIR",
    "build_dashboards",
    "build_fleet_preset_dashboard",
    "dashboard_path",
]


def build_dashboards(config: MonitoringConfig) -> dict[str, dict[str, Any]]:
    """File stem -> dashboard."""
    return {
        "fleet": fleet.build(config.selector, config.freshness_objective, config.status_page_url),
        "company": company.build(config.selector),
        "exporter": exporter.build(config.selector),
    }


def build_fleet_preset_dashboard(config: MonitoringConfig) -> dict[str, Any]:
    return fleet_preset.build(config.selector, config.freshness_objective, config.status_page_url)
