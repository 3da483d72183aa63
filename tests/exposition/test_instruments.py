"""The exporter's own instrumentation (``exporter.exposition.instruments``) as /metrics
shows it."""

from __future__ import annotations

from prometheus_client import generate_latest

from exporter.exposition.instruments import ExporterMetrics


def test_should_show_each_help_text_as_written_without_template_braces() -> None:
    # Prepare
    metrics = ExporterMetrics()

    # Act
    helps = [
        line
        for line in generate_latest(metrics.registry).decode().splitlines()
        if line.startswith("# HELP codat_")
    ]

    # Check: a path in a HELP text reads as Codat's docs write it, not as a format template
    assert len(helps) >= 10
    assert not [line for line in helps if "{{" in line or "}}" in line]
    assert any("GET /companies/{companyId}/data/history/{datasetId}" in line for line in helps)
