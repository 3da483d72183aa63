"""One company: every data type's status, its age against its max age, and a status
timeline."""

from __future__ import annotations

from typing import Any

from exporter.core.families import (
    COMPANY_CREATED,
    COMPANY_LAST_SUCCESS,
    COMPANY_UP,
    CONNECTION_STATUS,
    LAST_SYNC_AGE,
    LAST_SYNC_TIMESTAMP,
    MAX_AGE,
    STATUS,
)
from monitoring.dashboards.common import (
    COMPANY_UID,
    ERRORS,
    JOB,
    ORANGE_ABOVE_ZERO,
    RED_ABOVE_ZERO,
    age_percent,
    company_variable,
    data_type_variable,
    job_variable,
    stale,
)
from monitoring.panels import (
    AGE_RATIO_THRESHOLDS,
    OTHER_STATUS_CODE,
    TIMELINE_STATUSES,
    Layout,
    age_columns,
    by_name,
    connection_status_mappings,
    dashboard,
    panel,
    stat,
    status_code_mappings,
    status_text_mappings,
    table,
    target,
    thresholds,
    timeseries,
)


def status_timeline_expr(sel: str) -> str:
    codes = "\n    or ".join(
        f'label_replace(vector({code}), "status", "{status}", "", "")'
        for code, status in enumerate(TIMELINE_STATUSES)
    )
    return (
        f"max by (data_type) (\n"
        f"  {STATUS.name}{{{sel}}}\n"
        f"  * on (status) group_left ()\n"
        f"  (\n    {codes}\n  )\n"
        f")\n"
        f"or max by (data_type) ({STATUS.name}{{{sel}}}) * {OTHER_STATUS_CODE}"
    )


def build(selector: str) -> dict[str, Any]:
    company_sel = f'{JOB}, company_id="$company"'
    sel = f'{company_sel}, data_type=~"$data_type"'
    layout = Layout()
    layout.row("Company")
    layout.add(
        stat(
            "Company",
            "The company's name in Codat.",
            f"max by (company_name) ({COMPANY_UP.name}{{{company_sel}}})",
            legend="{{company_name}}",
            text_mode="name",
        ),
        5,
        4,
    )
    layout.add(
        stat(
            "Created in Codat",
            "When the company was created in Codat: CodatDataTypeNeverSynced counts from it.",
            f"max({COMPANY_CREATED.name}{{{company_sel}}}) * 1000",
            unit="dateTimeFromNow",
        ),
        3,
        4,
    )
    layout.add(
        stat(
            "Last poll",
            "Whether the exporter's last poll of the company succeeded.",
            f"min({COMPANY_UP.name}{{{company_sel}}})",
            steps=thresholds((None, "red"), (1, "green")),
            mappings=[{"type": "value", "options": {"0": {"text": "failed"}, "1": {"text": "OK"}}}],
        ),
        3,
        4,
    )
    layout.add(
        stat(
            "Data as of",
            "Time since the exporter's last successful poll of the company.",
            f"time() - max({COMPANY_LAST_SUCCESS.name}{{{company_sel}}})",
            unit="dtdurations",
        ),
        4,
        4,
    )
    for title, expr, steps in (
        (
            "In AuthError",
            f'count({STATUS.name}{{{sel}, status="AuthError"}}) or vector(0)',
            RED_ABOVE_ZERO,
        ),
        (
            "Failing",
            f'count({STATUS.name}{{{sel}, status=~"{ERRORS}"}}) or vector(0)',
            ORANGE_ABOVE_ZERO,
        ),
        ("Stale", f"count({stale(sel)}) or vector(0)", ORANGE_ABOVE_ZERO),
    ):
        layout.add(stat(title, f"Data types of the company: {title}.", expr, steps=steps), 3, 4)

    layout.row("Data types")
    layout.add(
        table(
            "Data types",
            "Every data type: its current status, the age of its last successful sync "
            "against its max age (red above 100%), and when that sync was.",
            [
                target(f"{STATUS.name}{{{sel}}}", ref="A"),
                target(f"{LAST_SYNC_AGE.name}{{{sel}}}", ref="B"),
                target(f"{MAX_AGE.name}{{{sel}}}", ref="C"),
                target(age_percent(sel), ref="D"),
                target(f"1000 * {LAST_SYNC_TIMESTAMP.name}{{{sel}}}", ref="E"),
            ],
            columns={
                "data_type": "Data type",
                "status": "Status",
                "Value #B": "Age",
                "Value #C": "Max age",
                "Value #D": "% of max age",
                "Value #E": "Last successful sync",
            },
            overrides=[
                by_name(
                    "Status",
                    ("mappings", status_text_mappings()),
                    ("custom.cellOptions", {"type": "color-background"}),
                ),
                *age_columns(),
                by_name("Last successful sync", ("unit", "dateTimeAsIso")),
            ],
            sort_by="% of max age",
            descending=True,
        ),
        14,
        12,
    )
    layout.add(
        panel(
            "bargauge",
            "Age against max age",
            "Age of the last successful sync as a percentage of the data type's max age: "
            "stale above 100%. Data types never synced have no bar.",
            [target(age_percent(sel), "{{data_type}}", instant=True)],
            unit="percent",
            defaults={
                "min": 0,
                "max": 150,
                "thresholds": AGE_RATIO_THRESHOLDS,
                "color": {"mode": "thresholds"},
                "decimals": 0,
            },
            options={
                "orientation": "horizontal",
                "displayMode": "gradient",
                "showUnfilled": True,
                "valueMode": "color",
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            },
        ),
        10,
        12,
    )
    layout.add(
        panel(
            "state-timeline",
            "Status timeline",
            "Each data type's status in Codat over time, as the exporter polled it.",
            [target(status_timeline_expr(sel), "{{data_type}}")],
            defaults={
                "mappings": status_code_mappings(),
                "color": {"mode": "fixed"},
                "custom": {"fillOpacity": 80, "lineWidth": 0},
            },
            options={
                "showValue": "never",
                "mergeValues": True,
                "rowHeight": 0.9,
                "legend": {"showLegend": False},
                "tooltip": {"mode": "single"},
            },
        ),
        24,
        12,
    )
    layout.add(
        table(
            "Connections",
            "The company's connections to its platforms and their status in Codat; a "
            "Deauthorized one must be re-linked by the company.",
            [target(f"{CONNECTION_STATUS.name}{{{company_sel}}} == 1", ref="A")],
            columns={
                "platform": "Platform",
                "source_type": "Source type",
                "status": "Status",
                "connection_id": "Connection id",
            },
            overrides=[
                by_name(
                    "Status",
                    ("mappings", connection_status_mappings()),
                    ("custom.cellOptions", {"type": "color-text"}),
                )
            ],
            sort_by="Platform",
        ),
        24,
        5,
    )
    layout.add(
        timeseries(
            "Age as % of max age",
            "How each data type's age rose and fell against its max age (dashed: 100%).",
            [target(age_percent(sel), "{{data_type}}")],
            unit="percent",
            steps=thresholds((None, "green"), (100, "red")),
        ),
        24,
        9,
    )
    return dashboard(
        COMPANY_UID,
        "Codat freshness / Company",
        "One company's data types in Codat. Generated by monitoring/generate.py; edit the "
        "generator, not this JSON.",
        [
            job_variable(selector),
            company_variable(multi=False),
            data_type_variable('company_id="$company"'),
        ],
        layout,
    )
