"""The text /metrics serves, checked whole: a bad value only fails when rendered."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess

import pytest
import requests

from exporter.config.series import FreshnessConfig
from exporter.core.snapshot import CompanyState, DataTypeStatus, Snapshot
from exporter.exposition.render import Exposition
from tests.harness import Harness, parse_exposition
from tests.promtools import ROOT

GOLDEN = ROOT / "tests" / "golden" / "exposition.prom"
NOW = 1_795_435_200.0


def fixed_snapshot() -> Snapshot:
    hostile = 'Café "Olé"\nLtd \\ Co'
    companies = {
        "0b5f3c5e-0000-4000-8000-000000000001": CompanyState(
            "0b5f3c5e-0000-4000-8000-000000000001", hostile, True, NOW - 30,
            (
                DataTypeStatus("bills", "FetchError", None),
                DataTypeStatus("invoices", "Complete", NOW - 3600.25),
                DataTypeStatus("suppliers", "NeverSynced", None),
            ),
        ),
        "0b5f3c5e-0000-4000-8000-000000000002": CompanyState(
            "0b5f3c5e-0000-4000-8000-000000000002", "Acme Ltd", False, NOW - 900,
            (DataTypeStatus("invoices", "AuthError", NOW - 2 * 86400),),
            created=NOW - 400 * 86400.5,
        ),
        "0b5f3c5e-0000-4000-8000-000000000003": CompanyState(
            "0b5f3c5e-0000-4000-8000-000000000003", "", False, None, ()
        ),
    }  # fmt: skip
    return Snapshot(companies, monitored=3, poll_duration=1.5, last_poll=NOW - 10)


def render_fixed() -> str:
    freshness = FreshnessConfig(default_max_age=26 * 3600, max_age={"invoices": 6 * 3600})
    return Exposition(fixed_snapshot(), freshness, 300).render(NOW).decode()


def test_should_render_a_fixed_snapshot_exactly_as_the_golden_file() -> None:
    # Prepare
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(render_fixed())
    # Act
    text = render_fixed()
    # Check
    assert text == GOLDEN.read_text(), "run with UPDATE_GOLDEN=1 after an intended change"


def test_should_render_text_that_prometheus_parsers_accept() -> None:
    # Prepare
    text = render_fixed()
    # Act
    samples = parse_exposition(text)
    # Check
    names = {s.labels.get("company_name") for s in samples if "company_name" in s.labels}
    assert 'Café "Olé"\nLtd \\ Co' in names
    assert any(s.name == "codat_data_type_last_successful_sync_age_seconds" and s.value == 3600.25
               for s in samples)  # fmt: skip


@pytest.mark.skipif(shutil.which("promtool") is None and not os.environ.get("CI"),
                    reason="promtool not installed (.ci/run installs it)")  # fmt: skip
def test_should_pass_promtool_check_metrics() -> None:
    # Act
    run = subprocess.run(["promtool", "check", "metrics"], input=render_fixed(),
                         capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    # Check
    assert run.returncode == 0, run.stdout + run.stderr


def test_should_serve_gzip_that_decodes_to_the_plain_body(harness: Harness) -> None:
    # Prepare
    harness.poll()
    # Act
    plain = harness.get("/metrics", headers={"Accept-Encoding": "identity"})
    zipped = requests.get(harness.server.url + "/metrics", headers={"Accept-Encoding": "gzip"},
                          stream=True, timeout=5)  # fmt: skip
    raw = zipped.raw.read(decode_content=False)
    # Check
    assert plain.headers.get("Content-Encoding") is None
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert len(raw) < len(plain.content) / 3
    unzipped = gzip.decompress(raw).decode()
    codat_lines = [line for line in unzipped.splitlines() if line.startswith("codat_data_type")]
    assert codat_lines == [
        line for line in plain.text.splitlines() if line.startswith("codat_data_type")
    ]
