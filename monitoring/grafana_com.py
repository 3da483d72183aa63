"""Each dashboard as Grafana's "Export for sharing externally" writes it, for grafana.com and
for Dashboards > New > Import in a Grafana that provisions nothing: ``__inputs`` asks the
importer for a Prometheus data source, which becomes the default of the dashboard's
``datasource`` variable; ``__requires`` names the Grafana version and the plugins the
dashboard uses. Everything else is the provisioned dashboard as it is.

The head of one reads::

    {
      "__inputs": [
        {
          "name": "DS_PROMETHEUS",
          "label": "Prometheus",
          "description": "The Prometheus that scrapes the Codat freshness exporter",
          "type": "datasource",
          "pluginId": "prometheus",
          "pluginName": "Prometheus"
        }
      ],
      "__elements": {},
      "__requires": [
        {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "11.5.2"},
    ...
"""

from __future__ import annotations

import copy
from typing import Any

EXPORT_DIR = "grafana/grafana.com"
INPUT = "DS_PROMETHEUS"
GRAFANA_VERSION = "11.5.2"
"""The compose stack's Grafana (docker-compose.yml), whose model the tests check the
dashboards against."""
PANEL_NAMES = {
    "bargauge": "Bar gauge",
    "gauge": "Gauge",
    "heatmap": "Heatmap",
    "piechart": "Pie chart",
    "state-timeline": "State timeline",
    "stat": "Stat",
    "table": "Table",
    "text": "Text",
    "timeseries": "Time series",
}
"""Panel plugins as ``__requires`` names them; a type missing here fails the generator."""


def _panel_types(board: dict[str, Any]) -> list[str]:
    found = set()
    for panel in board["panels"]:
        for each in [panel, *panel.get("panels", [])]:
            if each["type"] != "row":
                found.add(each["type"])
    return sorted(found)


def shareable(board: dict[str, Any]) -> dict[str, Any]:
    """``board`` ready for grafana.com: inputs and requirements first, no numeric id, and the
    ``datasource`` variable defaulting to the data source chosen at import."""
    shared = copy.deepcopy(board)
    shared.pop("id", None)
    for variable in shared["templating"]["list"]:
        if variable["type"] == "datasource":
            variable["current"] = {"text": f"${{{INPUT}}}", "value": f"${{{INPUT}}}"}
    unknown = [kind for kind in _panel_types(board) if kind not in PANEL_NAMES]
    if unknown:
        raise ValueError(f"monitoring/grafana_com.py: name the panel type {unknown[0]}")
    requires = [
        {"type": "grafana", "id": "grafana", "name": "Grafana", "version": GRAFANA_VERSION},
        {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
        *(
            {"type": "panel", "id": kind, "name": PANEL_NAMES[kind], "version": ""}
            for kind in _panel_types(board)
        ),
    ]
    head: dict[str, Any] = {
        "__inputs": [
            {
                "name": INPUT,
                "label": "Prometheus",
                "description": "The Prometheus that scrapes the Codat freshness exporter",
                "type": "datasource",
                "pluginId": "prometheus",
                "pluginName": "Prometheus",
            }
        ],
        "__elements": {},
        "__requires": requires,
        "id": None,
    }
    return {**head, **shared}
