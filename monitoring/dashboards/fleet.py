"""Fleet overview: how many pairs are in AuthError, stale, failing or never synced, the
status counts per data type, and the pairs that need attention, by company name."""

from __future__ import annotations

from typing import Any

from exporter.metrics import (
    COMPANIES,
    COMPANIES_BY_STATUS,
    COMPANY_UP,
    LAST_SYNC_AGE,
    MAX_AGE,
    STATUS,
)
from monitoring.dashboards.common import (
    ERRORS,
    FLEET_UID,
    JOB,
    ON_PAIR,
    ORANGE_ABOVE_ZERO,
    PAIR,
    RED_ABOVE_ZERO,
    company_link,
    company_variable,
    data_type_variable,
    job_variable,
    stale,
)
from monitoring.panels import (
    TIMELINE_STATUSES,
    Layout,
    age_columns,
    by_name,
    dashboard,
    panel,
    stat,
    status_color,
    status_text_mappings,
    table,
    target,
    timeseries,
)


def build(selector: str) -> dict[str, Any]:
    sel = f'{JOB}, company_id=~"$company", data_type=~"$data_type"'
    by_status = f'{COMPANIES_BY_STATUS.name}{{{JOB}, data_type=~"$data_type"}}'
    pairs = "Company x data type pairs"
    layout = Layout()
    layout.row("Now")
    for title, description, expr, steps in (
        (
            "Companies monitored",
            "In the exporters' last poll cycles.",
            f"sum({COMPANIES.name}{{{JOB}}})",
            None,
        ),
        (
            "In AuthError",
            f"{pairs} whose last sync ended in AuthError: the company must re-link.",
            f'count({STATUS.name}{{{sel}, status="AuthError"}}) or vector(0)',
            RED_ABOVE_ZERO,
        ),
        (
            "Stale",
            f"{pairs} whose last successful sync is older than their max age.",
            f"count({stale(sel)}) or vector(0)",
            ORANGE_ABOVE_ZERO,
        ),
        (
            "Failing",
            f"{pairs} whose last sync ended in an error status ({ERRORS}).",
            f'count({STATUS.name}{{{sel}, status=~"{ERRORS}"}}) or vector(0)',
            ORANGE_ABOVE_ZERO,
        ),
        (
            "Never synced",
            f"{pairs} that Codat has never synced.",
            f'count({STATUS.name}{{{sel}, status="NeverSynced"}}) or vector(0)',
            None,
        ),
        (
            "Companies not polled",
            "Companies whose last poll by the exporter failed.",
            f'count({COMPANY_UP.name}{{{JOB}, company_id=~"$company"}} == 0) or vector(0)',
            ORANGE_ABOVE_ZERO,
        ),
    ):
        layout.add(stat(title, description, expr, steps=steps), 4, 4)

    layout.row("Status per data type")
    matrix_target = {
        **target(f"sum by (data_type, status) ({by_status}) > 0", instant=True),
        "format": "table",
    }
    layout.add(
        panel(
            "table",
            "Current status per data type",
            "Companies per data type (rows) and current status (columns). Filtered by data "
            "type only: the counts come from codat_data_type_companies.",
            [matrix_target],
            overrides=[
                by_name(
                    status,
                    ("custom.cellOptions", {"type": "color-text"}),
                    ("color", {"mode": "fixed", "fixedColor": status_color(status)}),
                )
                for status in TIMELINE_STATUSES
            ],
            options={"showHeader": True, "cellHeight": "sm"},
            transformations=[
                {
                    "id": "groupingToMatrix",
                    "options": {
                        "columnField": "status",
                        "rowField": "data_type",
                        "valueField": "Value",
                        "emptyValue": "empty",
                    },
                }
            ],
        ),
        24,
        9,
    )
    layout.add(
        timeseries(
            "Statuses over time",
            "Company x data type pairs in each status, stacked.",
            [target(f"sum by (status) ({by_status}) > 0", "{{status}}")],
            stacked=True,
            overrides=[
                by_name(status, ("color", {"mode": "fixed", "fixedColor": status_color(status)}))
                for status in TIMELINE_STATUSES
            ],
        ),
        24,
        8,
    )

    layout.row("Needs attention")
    top = f"topk(25, {LAST_SYNC_AGE.name}{{{sel}}})"
    layout.add(
        table(
            "Stalest data types",
            "The 25 pairs with the oldest last successful sync, against their max age.",
            [
                target(top, ref="A"),
                target(f"{MAX_AGE.name}{{{sel}}} and on ({PAIR}) {top}", ref="B"),
                target(f"100 * {top} / {ON_PAIR} {MAX_AGE.name}{{{sel}}}", ref="C"),
            ],
            columns={
                "company_name": "Company",
                "data_type": "Data type",
                "Value #A": "Age",
                "Value #B": "Max age",
                "Value #C": "% of max age",
            },
            overrides=[
                company_link(),
                *age_columns(),
            ],
            sort_by="Age",
            descending=True,
        ),
        12,
        10,
    )
    auth = f'{STATUS.name}{{{sel}, status="AuthError"}}'
    layout.add(
        table(
            "Data types in AuthError",
            "The company must re-link its connection for Codat to sync these again.",
            [
                target(auth, ref="A"),
                target(f"{LAST_SYNC_AGE.name}{{{sel}}} and on ({PAIR}) {auth}", ref="B"),
            ],
            columns={
                "company_name": "Company",
                "data_type": "Data type",
                "Value #B": "Last successful sync",
            },
            overrides=[company_link(), by_name("Last successful sync", ("unit", "dtdurations"))],
            sort_by="Company",
        ),
        12,
        10,
    )
    failing = f'{STATUS.name}{{{sel}, status=~"{ERRORS}"}}'
    layout.add(
        table(
            "Failing data types",
            f"Pairs whose last sync ended in an error status ({ERRORS}).",
            [
                target(failing, ref="A"),
                target(f"{LAST_SYNC_AGE.name}{{{sel}}} and on ({PAIR}) {failing}", ref="B"),
            ],
            columns={
                "company_name": "Company",
                "data_type": "Data type",
                "status": "Status",
                "Value #B": "Last successful sync",
            },
            overrides=[
                company_link(),
                by_name("Last successful sync", ("unit", "dtdurations")),
                by_name(
                    "Status",
                    ("mappings", status_text_mappings()),
                    ("custom.cellOptions", {"type": "color-text"}),
                ),
            ],
            sort_by="Company",
        ),
        12,
        10,
    )
    layout.add(
        table(
            "Never synced",
            "Pairs Codat lists without any sync yet (status NeverSynced).",
            [target(f'{STATUS.name}{{{sel}, status="NeverSynced"}}', ref="A")],
            columns={"company_name": "Company", "data_type": "Data type"},
            overrides=[company_link()],
            sort_by="Company",
        ),
        12,
        10,
    )
    return dashboard(
        FLEET_UID,
        "Codat freshness / Fleet overview",
        "How fresh Codat's copy of every monitored company's data is. Generated by "
        "monitoring/generate.py; edit the generator, not this JSON.",
        [
            job_variable(selector),
            company_variable(multi=True),
            data_type_variable('company_id=~"$company"'),
        ],
        layout,
    )
