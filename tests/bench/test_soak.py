"""The short version of the chaos run (bench/soak.py): random faults across 60 simulated
companies for 12 cycles while /metrics is scraped in a loop. It runs in a process of its
own, so that its thread count and memory are its own."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.promtools import ROOT

SOAK = ROOT / "bench" / "soak.py"


@pytest.fixture(scope="module")
def soak() -> dict[str, Any]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(SOAK), "--companies", "60", "--cycles", "12", "--json"],
        capture_output=True, text=True, timeout=120, cwd=ROOT, check=False,
    )  # fmt: skip
    assert done.stdout, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    result["exit_code"] = done.returncode
    result["elapsed"] = time.monotonic() - started
    return result


def test_should_survive_a_short_chaos_run_without_a_crash(soak: dict[str, Any]) -> None:
    assert soak["cycles"] == 12
    assert soak["crashes"] == []
    assert soak["tracebacks"] == []
    assert soak["scrape_failures"] == []
    assert soak["scrapes"] >= 12
    assert "internal_error" not in soak["poll_errors"]
    assert soak["elapsed"] < 30, "a short run"


def test_should_have_injected_faults_that_failed_polls(soak: dict[str, Any]) -> None:
    assert sum(soak["faults_injected"].values()) >= 40
    assert sum(soak["requests_answered_with_a_fault"].values()) >= 20
    assert sum(soak["poll_errors"].values()) >= 5


def test_should_not_grow_threads_memory_or_series(soak: dict[str, Any]) -> None:
    threads, rss, series = soak["threads"], soak["rss_mb"], soak["series"]
    assert threads["final"] <= threads["first"] + 3
    assert threads["peak"] <= threads["first"] + 12
    assert rss["final"] - rss["after_cycle_2"] <= 25
    assert rss["final"] - rss["after_cycle_6"] <= 10, "flat over the second half"
    assert abs(series["final"] - series["first"]) <= 0.05 * series["first"]


def test_should_bring_every_company_back_with_all_its_series(soak: dict[str, Any]) -> None:
    assert soak["up_at_end"] == soak["monitored_at_end"] == 60
    assert soak["lost_series_by_cycle"] == [0] * 12
    assert soak["checks"]["every company has every series it started with at the end"]


def test_should_pass_every_check_of_the_script(soak: dict[str, Any]) -> None:
    failed = [check for check, ok in soak["checks"].items() if not ok]
    assert failed == []
    assert soak["exit_code"] == 0
