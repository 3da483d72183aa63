"""The three dashboards: fleet overview, one company, and the exporter's own health.

UIDs are stable: alerts link to them (``dashboard_url``) and so do the tables here.
Queries name metrics through ``exporter.metrics`` so a rename cannot leave one behind.
"""

from __future__ import annotations

from typing import Any

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


def build_dashboards(selector: str) -> dict[str, dict[str, Any]]:
    """File stem -> dashboard."""
    return {
        "fleet": fleet.build(selector),
        "company": company.build(selector),
        "exporter": exporter.build(selector),
    }
