"""The Prometheus-side benchmark (bench/prometheus_bill.py) at a tiny size: that it still
runs end to end (simulator, two exporters, two real Prometheus servers, a restart with a
state file) and reports what the full run is for. Its figures at this size mean nothing;
only bench/RESULTS.md's full run does. And bench/run.py, as tiny, recording its results
into a RESULTS.md that holds other scripts' sections."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.promtools import ROOT, binary

pytestmark = pytest.mark.prometheus

COMPANIES = 20


@pytest.fixture(scope="module")
def figures() -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "prometheus_bill.py"), "--companies",
         str(COMPANIES), "--scrape-interval", "1s", "--scrape-timeout", "1s", "--scrapes", "1",
         "--repeats", "1", "--prometheus", binary("prometheus"), "--json"],
        capture_output=True, text=True, timeout=180, cwd=ROOT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_should_measure_both_modes_from_prometheus(figures: dict[str, Any]) -> None:
    default, fleet = figures["default"], figures["fleet"]
    for mode in (default, fleet):
        assert len(mode["scrapes"]) >= 1
        assert all(up == 1 for _, _, up, _ in mode["scrapes"])
        assert mode["prometheus_memory"]["VmHWM"] > 0
        assert mode["exporter_memory"]["VmHWM"] > 0
    assert default["families"]["codat_data_type_status"] >= COMPANIES
    assert "codat_data_type_status" not in fleet["families"]
    assert fleet["families"]["codat_exporter_company_up"] == COMPANIES
    assert fleet["head_series"] < default["head_series"]


def test_should_find_the_fleet_presets_stale_pairs_equal_to_the_defaults_count(
    figures: dict[str, Any],
) -> None:
    default, fleet = figures["default"], figures["fleet"]
    data_types = set(fleet["stale"])
    assert data_types
    assert sum(default["counted"].values()) > 0
    assert {d: default["counted"].get(d, 0) for d in data_types} == fleet["stale"]
    assert set(default["counted"]) <= data_types


def test_should_time_a_restart_with_a_state_file(figures: dict[str, Any]) -> None:
    restart = figures["restart"]
    assert 0 < restart["listening"] <= restart["full_sent"] <= restart["full_read"]
    assert restart["ready_status"] == 200
    assert f"{COMPANIES} companies" in restart["loaded_line"]
    assert restart["file_bytes"] > 0
    assert len(restart["save_seconds"]) == len(restart["load_seconds"]) == 1


def test_should_give_a_verdict_for_each_target(figures: dict[str, Any]) -> None:
    verdicts = {target["text"].split(":")[0]: target["met"] for target in figures["targets"]}
    assert set(verdicts) == {
        "fleet preset series",
        "Prometheus peak RSS, fleet preset vs default",
        "default mode's first scrape",
        "fleet preset's `codat_data_type_stale_companies` = the default's `count by (data_type) "
        "(codat_data_type_last_successful_sync_age_seconds > codat_data_type_max_age_seconds)`",
        "restart with a state file",
    }
    assert verdicts["default mode's first scrape"] is True


def test_should_insert_run_pys_results_below_the_title_and_keep_the_other_sections(
    tmp_path: Path,
) -> None:
    # Prepare: a results file with the title and another script's section below it
    results = tmp_path / "RESULTS.md"
    other = "## A simulated day of refreshes (bench/refresh_day.py)\n\nRun earlier.\n"
    results.write_text(f"# Fleet-scale benchmark results\n\n{other}", encoding="utf-8")

    # Act: bench/run.py at 20 companies, one cycle, no baseline (about 12 s)
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--sizes", "20", "--reps", "1",
         "--concurrency", "1", "--no-baseline", "--output", str(results)],
        capture_output=True, text=True, timeout=180, cwd=ROOT, check=False,
    )  # fmt: skip

    # Check: the title once, then the new run's section, then the other script's, whole
    assert done.returncode == 0, done.stderr[-3000:]
    text = results.read_text(encoding="utf-8")
    title, _, rest = text.partition("\n\n")
    assert title == "# Fleet-scale benchmark results" and text.count("\n# ") == 0
    assert rest.startswith("## Poll throughput and GET /metrics (bench/run.py)\n")
    assert rest.index("### Targets") < rest.index(other)
    assert text.endswith(other)
