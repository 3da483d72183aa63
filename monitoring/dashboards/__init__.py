"""The three dashboards: fleet overview, one company, and the exporter's own health.

UIDs are stable: alerts link to them (``dashboard_url``) and so do the tables here.
Queries name metrics through ``exporter.metrics`` so a rename cannot leave one behind.
"""

from __future__ import annotations

from typing import Any

from monitoring.config import MonitoringConfig
from monitoring.dashboards import company, exporter, fleet
from monitoring.dashboards.common import (
    COMPANY_UID,
    EXPORTER_UID,
    FLEET_UID,
    ON_PAIR,
    PAIR,
    dashboard_path,
)

__all__ = [
    "COMPANY_UID",
    "EXPORTER_UID",
    "FLEET_UID",
    "ON_PAIR",
    "PAIR",
    "build_dashboards",
    "dashboard_path",
]


def build_dashboards(config: MonitoringConfig) -> dict[str, dict[str, Any]]:
    """File stem -> dashboard."""
    return {
        "fleet": fleet.build(config.selector, config.freshness_objective),
        "company": company.build(config.selector),
        "exporter": exporter.build(config.selector),
    }
