"""Small builders for Grafana's dashboard JSON model (schemaVersion 39, Grafana 10/11).

Only what the three dashboards use. Every panel and target points at the ``datasource``
template variable, so a dashboard works against whichever Prometheus the viewer picks.
"""

from __future__ import annotations

from typing import Any

from exporter.core.contract import (
    CONNECTION_STATUSES,
    ERROR_STATUSES,
    KNOWN_STATUSES,
    NEVER_SYNCED,
    UNKNOWN_STATUS,
)

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRID_WIDTH = 24
TAG = "codat-freshness-exporter"

TIMELINE_STATUSES = (*KNOWN_STATUSES, NEVER_SYNCED, UNKNOWN_STATUS)
"""Status -> numeric code (its index) for the status timeline; other statuses map to 99."""
OTHER_STATUS_CODE = 99
SETTLED_STATUSES = ("Complete", "AuthError", "Cancelled", "NotSupported", *ERROR_STATUSES)


def status_color(status: str) -> str:
    if status == "Complete":
        return "green"
    if status == "AuthError":
        return "dark-red"
    if status in ERROR_STATUSES:
        return "red"
    if status == "Cancelled":
        return "yellow"
    if status in KNOWN_STATUSES and status not in SETTLED_STATUSES:
        return "blue"  # a sync in progress
    return "#8e8e8e"  # NotSupported, NeverSynced, Unknown


def status_text_mappings() -> list[dict[str, Any]]:
    """Colours for a field whose values are status names."""
    options = {
        status: {"color": status_color(status), "index": index}
        for index, status in enumerate(TIMELINE_STATUSES)
    }
    return [{"type": "value", "options": options}]


CONNECTION_COLORS = {"Linked": "green", "Deauthorized": "dark-red", "PendingAuth": "blue"}
"""Other connection statuses (Unlinked) are grey."""


def connection_status_mappings() -> list[dict[str, Any]]:
    """Colours for a field whose values are connection statuses."""
    options = {
        status: {"color": CONNECTION_COLORS.get(status, "#8e8e8e"), "index": index}
        for index, status in enumerate(CONNECTION_STATUSES)
    }
    return [{"type": "value", "options": options}]


def status_code_mappings() -> list[dict[str, Any]]:
    """Names and colours for the status timeline's numeric codes."""
    options = {
        str(code): {"text": status, "color": status_color(status), "index": code}
        for code, status in enumerate(TIMELINE_STATUSES)
    }
    options[str(OTHER_STATUS_CODE)] = {
        "text": "Other",
        "color": "#8e8e8e",
        "index": len(TIMELINE_STATUSES),
    }
    return [{"type": "value", "options": options}]


def thresholds(*steps: tuple[float | None, str]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"value": v, "color": c} for v, c in steps]}


AGE_RATIO_THRESHOLDS = thresholds((None, "green"), (80, "orange"), (100, "red"))
"""For age as a percentage of the data type's max age."""


def target(expr: str, legend: str = "", *, ref: str = "A", instant: bool = False) -> dict[str, Any]:
    """A range query for graphs, or an instant one for stats; ``table`` makes it a table's."""
    return {
        "refId": ref,
        "datasource": DATASOURCE,
        "expr": expr,
        "legendFormat": legend or "__auto",
        "range": not instant,
        "instant": instant,
        "format": "time_series",
    }


def panel(
    kind: str,
    title: str,
    description: str,
    targets: list[dict[str, Any]],
    *,
    unit: str | None = None,
    defaults: dict[str, Any] | None = None,
    overrides: list[dict[str, Any]] | None = None,
    options: dict[str, Any] | None = None,
    transformations: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    field_defaults: dict[str, Any] = dict(defaults or {})
    if unit is not None:
        field_defaults["unit"] = unit
    result: dict[str, Any] = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": targets,
        "fieldConfig": {"defaults": field_defaults, "overrides": overrides or []},
        "options": options or {},
    }
    if transformations:
        result["transformations"] = transformations
    return result


def stat(
    title: str,
    description: str,
    expr: str,
    *,
    unit: str = "short",
    steps: dict[str, Any] | None = None,
    legend: str = "",
    text_mode: str = "value",
    mappings: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "thresholds": steps or thresholds((None, "green")),
        "mappings": mappings or [],
        "color": {"mode": "thresholds"},
    }
    return panel(
        "stat",
        title,
        description,
        [target(expr, legend, instant=True)],
        unit=unit,
        defaults=defaults,
        options={
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background" if steps else "none",
            "graphMode": "none",
            "textMode": text_mode,
            "justifyMode": "center",
        },
    )


def timeseries(
    title: str,
    description: str,
    targets: list[dict[str, Any]],
    *,
    unit: str = "short",
    stacked: bool = False,
    overrides: list[dict[str, Any]] | None = None,
    steps: dict[str, Any] | None = None,
) -> dict[str, Any]:
    custom: dict[str, Any] = {
        "drawStyle": "line",
        "lineWidth": 1,
        "fillOpacity": 40 if stacked else 10,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"mode": "normal" if stacked else "none", "group": "A"},
    }
    defaults: dict[str, Any] = {"custom": custom, "min": 0}
    if steps is not None:
        defaults["thresholds"] = steps
        custom["thresholdsStyle"] = {"mode": "dashed"}
    return panel(
        "timeseries",
        title,
        description,
        targets,
        unit=unit,
        defaults=defaults,
        overrides=overrides,
        options={
            "legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    )


def heatmap(
    title: str, description: str, expr: str, *, unit: str, repeat: str | None = None
) -> dict[str, Any]:
    """Cumulative histogram buckets (``expr`` keeps only ``le``) as a heatmap over time,
    one cell per bucket as Prometheus counts it, no re-bucketing; with ``repeat``, one panel
    per value of that variable, three to a row."""
    result = panel(
        "heatmap",
        title,
        description,
        [{**target(expr, "{{le}}"), "format": "heatmap"}],
        options={
            "calculate": False,
            "yAxis": {"unit": unit, "axisPlacement": "left"},
            "cellValues": {"unit": "short"},
            "color": {
                "mode": "scheme",
                "scheme": "Oranges",
                "fill": "dark-orange",
                "scale": "exponential",
                "exponent": 0.5,
                "steps": 64,
                "reverse": False,
            },
            "showValue": "never",
            "tooltip": {"mode": "single", "yHistogram": True, "showColorScale": False},
            "legend": {"show": True},
        },
    )
    if repeat is not None:
        result.update({"repeat": repeat, "repeatDirection": "h", "maxPerRow": 3})
    return result


def table(
    title: str,
    description: str,
    targets: list[dict[str, Any]],
    *,
    columns: dict[str, str],
    overrides: list[dict[str, Any]] | None = None,
    sort_by: str | None = None,
    descending: bool = False,
) -> dict[str, Any]:
    """Instant queries merged into one row per series, showing only ``columns`` (field ->
    header, in order; ``Value #A`` is query A's value). ``company_id`` stays in the data,
    hidden, for links to the company dashboard. Overrides match the headers."""
    kept = [*columns, *(["company_id"] if "company_id" not in columns else [])]
    transformations: list[dict[str, Any]] = [
        {"id": "merge", "options": {}},
        {"id": "filterFieldsByName", "options": {"include": {"names": kept}}},
        {
            "id": "organize",
            "options": {
                "indexByName": {name: index for index, name in enumerate(kept)},
                "renameByName": columns,
            },
        },
    ]
    hidden = [] if "company_id" in columns else [by_name("company_id", ("custom.hidden", True))]
    options: dict[str, Any] = {"showHeader": True, "cellHeight": "sm"}
    if sort_by is not None:
        options["sortBy"] = [{"displayName": sort_by, "desc": descending}]
    return panel(
        "table",
        title,
        description,
        [{**t, "format": "table", "instant": True, "range": False} for t in targets],
        defaults={"custom": {"align": "auto", "filterable": True}},
        overrides=hidden + (overrides or []),
        options=options,
        transformations=transformations,
    )


def by_name(field: str, *properties: tuple[str, Any]) -> dict[str, Any]:
    return {
        "matcher": {"id": "byName", "options": field},
        "properties": [{"id": key, "value": value} for key, value in properties],
    }


def age_columns() -> list[dict[str, Any]]:
    """Table columns Age, Max age and % of max age, the last coloured against the threshold."""
    return [
        by_name("Age", ("unit", "dtdurations")),
        by_name("Max age", ("unit", "dtdurations")),
        by_name(
            "% of max age",
            ("unit", "percent"),
            ("decimals", 0),
            ("thresholds", AGE_RATIO_THRESHOLDS),
            ("custom.cellOptions", {"type": "color-background"}),
        ),
    ]


def datasource_variable() -> dict[str, Any]:
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "refresh": 1,
        "regex": "",
        "options": [],
    }


def query_variable(
    name: str,
    label: str,
    query: str,
    *,
    multi: bool,
    all_value: str | None = None,
    regex: str = "",
) -> dict[str, Any]:
    """``label_values(...)`` or ``query_result(...)``; with ``all_value``, "All" is offered
    and sent as that regex (``.*`` keeps queries short for thousands of companies).

    The query is a plain string: Grafana runs it as is and its variable editor parses it
    into the right query type, which a hand-written query object would not get. No
    ``definition``: Grafana's UI writes one, but the dashboard model has no such field."""
    variable: dict[str, Any] = {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": query,
        "refresh": 2,
        "regex": regex,
        "sort": 5 if regex else 1,
        "multi": multi,
        "includeAll": all_value is not None,
        "current": {},
        "options": [],
        "hide": 0,
    }
    if all_value is not None:
        variable["allValue"] = all_value
    return variable


class Layout:
    """Places panels left to right in Grafana's 24-column grid and numbers them."""

    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self._x = self._y = self._line_height = 0

    def row(self, title: str) -> None:
        self._new_line()
        self.panels.append(
            {
                "type": "row",
                "title": title,
                "collapsed": False,
                "id": len(self.panels) + 1,
                "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": self._y},
                "panels": [],
            }
        )
        self._y += 1

    def add(self, item: dict[str, Any], width: int, height: int) -> None:
        if self._x + width > GRID_WIDTH:
            self._new_line()
        item = {"id": len(self.panels) + 1, **item}
        item["gridPos"] = {"h": height, "w": width, "x": self._x, "y": self._y}
        self.panels.append(item)
        self._x += width
        self._line_height = max(self._line_height, height)

    def _new_line(self) -> None:
        self._y += self._line_height
        self._x = self._line_height = 0


def link(title: str, url: str, tooltip: str) -> dict[str, Any]:
    """A dashboard link to a page outside Grafana, opened in a new tab."""
    return {
        "title": title,
        "type": "link",
        "url": url,
        "tooltip": tooltip,
        "tags": [],
        "asDropdown": False,
        "includeVars": False,
        "keepTime": False,
        "icon": "doc",
        "targetBlank": True,
    }


def dashboard(
    uid: str,
    title: str,
    description: str,
    variables: list[dict[str, Any]],
    layout: Layout,
    *,
    links: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": [TAG, "codat"],
        "editable": True,
        "graphTooltip": 1,
        "refresh": "1m",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "links": [
            {
                "title": "Codat freshness",
                "type": "dashboards",
                "tags": [TAG],
                "asDropdown": False,
                "includeVars": True,
                "keepTime": True,
                "icon": "external link",
                "targetBlank": False,
            },
            *(links or []),
        ],
        "annotations": {"list": []},
        "templating": {"list": [datasource_variable(), *variables]},
        "panels": layout.panels,
    }
