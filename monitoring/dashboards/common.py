"""What the dashboards share, and what the alert rules link to: stable UIDs, the PromQL
that pairs a data type's age with its max age, the template variables, and the Fleet
overviews' header of counts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from exporter.core.contract import ERROR_STATUSES
from exporter.core.families import BUILD_INFO, COMPANIES, COMPANY_UP, LAST_SYNC_AGE, MAX_AGE, STATUS
from monitoring.panels import (
    Layout,
    by_name,
    query_variable,
    stat,
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


@dataclass(frozen=True)
class FleetCounts:
    """The queries behind the Fleet overviews' "Now" row: the default's read the per-pair
    and per-connection series, the fleet preset's the counts per data type and platform."""

    pairs: str
    relink: str
    auth_error: str
    stale: str
    failing: str
    never_synced: str
    not_polled: str
    pairs_note: str = ""
    """Added to the description of each pair count (the preset's: what they filter by)."""
    relink_note: str = ""


def now_row(layout: Layout, counts: FleetCounts) -> None:
    """One stat per count, worst first after the fleet's size."""
    pairs = "Company x data type pairs"

    def about_pairs(text: str) -> str:
        return f"{pairs} {text} {counts.pairs_note}".rstrip()

    layout.row("Now")
    for title, description, expr, steps in (
        (
            "Companies monitored",
            "In the exporters' last poll cycles.",
            f"sum({COMPANIES.name}{{{JOB}}})",
            None,
        ),
        ("Pairs monitored", about_pairs("the exporters watch."), counts.pairs, None),
        (
            "Connections to relink",
            f"Connections in Deauthorized: the company must re-link them. {counts.relink_note}",
            counts.relink,
            RED_ABOVE_ZERO,
        ),
        (
            "In AuthError",
            about_pairs("whose last sync ended in AuthError: the company must re-link."),
            counts.auth_error,
            RED_ABOVE_ZERO,
        ),
        (
            "Stale",
            about_pairs("whose last successful sync is older than their max age."),
            counts.stale,
            ORANGE_ABOVE_ZERO,
        ),
        (
            "Failing",
            about_pairs(f"whose last sync ended in an error status ({ERRORS})."),
            counts.failing,
            ORANGE_ABOVE_ZERO,
        ),
        ("Never synced", about_pairs("that Codat has never synced."), counts.never_synced, None),
        (
            "Companies not polled",
            "Companies whose last poll by the exporter failed.",
            counts.not_polled,
            ORANGE_ABOVE_ZERO,
        ),
    ):
        layout.add(stat(title, description.rstrip(), expr, steps=steps), 3, 4)
