"""What the dashboards share, and what the alert rules link to: stable UIDs, the PromQL
that pairs a data type's age with its max age, and the template variables."""

from __future__ import annotations

from typing import Any

from exporter.codat import ERROR_STATUSES
from exporter.metrics import (
    BUILD_INFO,
    COMPANY_UP,
    LAST_SYNC_AGE,
    MAX_AGE,
    STATUS,
)
from monitoring.panels import (
    by_name,
    query_variable,
    thresholds,
)

FLEET_UID = "codat-fleet"
FLEET_PRESET_UID = "codat-fleet-preset"
"""The fleet preset's Fleet dashboard: a UID of its own, so that both can be provisioned."""
COMPANY_UID = "codat-company"
EXPORTER_UID = "codat-exporter"
PAIR = "job, instance, company_id, data_type"
"""Identifies one company's data type, whatever else the series carry."""
ON_PAIR = f"on ({PAIR}) group_left ()"
"""For arithmetic and comparisons: without ``group_left`` the result would keep only the
``on`` labels, losing ``company_name`` and any target labels (``env``, ``cluster``) that
routing relies on. Each side has one series per pair, so it still matches one to one."""

JOB = 'job=~"$job"'
ERRORS = "|".join(ERROR_STATUSES)
RED_ABOVE_ZERO = thresholds((None, "green"), (1, "red"))
ORANGE_ABOVE_ZERO = thresholds((None, "green"), (1, "orange"))


def dashboard_path(uid: str) -> str:
    return f"/d/{uid}/{uid}"


def company_link(column: str = "Company") -> dict[str, Any]:
    url = (
        f"{dashboard_path(COMPANY_UID)}?${{datasource:queryparam}}&${{job:queryparam}}"
        "&var-company=${__data.fields.company_id}&${__url_time_range}"
    )
    return by_name(column, ("links", [{"title": "Open the company dashboard", "url": url}]))


def stale(sel: str) -> str:
    return f"{LAST_SYNC_AGE.name}{{{sel}}} > {ON_PAIR} {MAX_AGE.name}{{{sel}}}"


def age_percent(sel: str) -> str:
    return f"100 * {LAST_SYNC_AGE.name}{{{sel}}} / {ON_PAIR} {MAX_AGE.name}{{{sel}}}"


def job_variable(selector: str) -> dict[str, Any]:
    return query_variable(
        "job", "Job", f"label_values({BUILD_INFO.name}{{{selector}}}, job)", multi=True
    )


def data_type_variable(company_matcher: str) -> dict[str, Any]:
    return query_variable(
        "data_type",
        "Data type",
        f"label_values({STATUS.name}{{{JOB}, {company_matcher}}}, data_type)",
        multi=True,
        all_value=".*",
    )


def company_variable(*, multi: bool) -> dict[str, Any]:
    """Shows company names, selects company ids (names need not be unique)."""
    return query_variable(
        "company",
        "Company",
        f"query_result(max by (company_id, company_name) ({COMPANY_UP.name}{{{JOB}}}))",
        multi=multi,
        all_value=".*" if multi else None,
        regex='/company_id="(?<value>[^"]+)".*company_name="(?<text>.*)"}/',
    )
