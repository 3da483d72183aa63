"""The poll cycle's scheduling properties: concurrency, isolation, the scheduler job."""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Callable

import requests

from exporter.poller import start_scheduler
from exporter.simulator import Fault
from exporter.simulator.server import DATA_STATUS
from tests.harness import API_KEY, Harness


def test_should_poll_companies_concurrently_up_to_max_concurrency(
    make_harness: Callable[..., Harness], fleet_ids: list[str]
) -> None:
    # Prepare: each request takes 50 ms, so 8 companies overlap if allowed to
    harness = make_harness(codat={"max_concurrency": 3})
    harness.codat.latency = 0.05
    # Act
    result = harness.poll()
    # Check
    assert result.all_succeeded
    assert harness.codat.peak_in_flight == 3


def test_should_poll_every_other_company_while_one_hangs(
    make_harness: Callable[..., Harness], fleet_ids: list[str]
) -> None:
    # Prepare: one worker is stuck on a company answering after the timeout
    harness = make_harness(
        codat={"max_concurrency": 2, "timeout": "300ms"}, poll={"interval": "2s"}
    )
    harness.fleet.inject(fleet_ids[0], Fault("latency", seconds=0.5, endpoint=DATA_STATUS))
    # Act
    result = harness.poll()
    # Check
    assert (result.succeeded, result.failed) == (len(fleet_ids) - 1, 1)


def test_should_run_the_first_cycle_at_start_from_the_scheduler(harness: Harness) -> None:
    # Prepare
    scheduler = start_scheduler(harness.poller, interval=3600)
    try:
        # Act
        ready = harness.store.ready.wait(timeout=10)
    finally:
        scheduler.shutdown(wait=True)
    # Check
    assert ready
    assert harness.scrape().companies() == set(harness.fleet.companies)


def test_should_serve_the_simulator_on_its_own_from_the_command_line() -> None:
    # Prepare
    process = subprocess.Popen(
        [sys.executable, "-m", "exporter.simulator", "--port", "0", "--companies", "3",
         "--seed", "5", "--api-key", API_KEY],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        url = line.rsplit(" ", 1)[1].strip()
        # Act
        auth = "Basic " + base64.b64encode(API_KEY.encode()).decode()
        listing = requests.get(f"{url}/companies", headers={"Authorization": auth}, timeout=5)
        unauthorised = requests.get(f"{url}/companies", timeout=5)
    finally:
        process.terminate()
        process.wait(timeout=10)
    # Check
    assert "3 companies" in line
    assert listing.status_code == 200
    assert listing.json()["totalResults"] == 3
    assert unauthorised.status_code == 401
    assert unauthorised.json()["statusCode"] == 401
