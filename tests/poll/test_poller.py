"""The poll cycle's scheduling properties: concurrency, isolation, the scheduler job."""

from __future__ import annotations

import base64
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import pytest
import requests

from exporter.app import start_scheduler
from exporter.core.contract import (
    COMPANIES,
    COMPANY,
    CONNECTIONS,
    DATA_STATUS,
    ERROR_STATUSES,
    SYNC_SETTINGS,
)
from exporter.simulator.faults import LISTING, Fault
from tests.harness import API_KEY, START, Harness

LAST_SUCCESS = "codat_exporter_company_last_poll_success_timestamp_seconds"
MAX_AGE = "codat_data_type_max_age_seconds"


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


def test_should_read_every_data_status_before_any_connections_in_a_first_cycle_within_the_limit(
    make_harness: Callable[..., Harness], fleet_ids: list[str]
) -> None:
    # Prepare: names, sync settings and connections all due, and the rate limit far away
    harness = make_harness(freshness={"from_sync_settings": True})
    # Act
    harness.poll()
    first = [(route, company or "") for _, route, company, _ in harness.codat.log]
    after_first = harness.scrape()
    harness.clock.advance(harness.config.poll.interval)
    harness.poll()
    after_second = harness.scrape()
    # Check: every name and dataStatus before the first sync settings or connections
    routes = [route for route, _ in first]
    details = [i for i, route in enumerate(routes) if route in (CONNECTIONS, SYNC_SETTINGS)]
    assert max(i for i, route in enumerate(routes) if route == DATA_STATUS) < min(details)
    assert max(i for i, route in enumerate(routes) if route == COMPANY) < min(details)
    # Check: the details were still read in the first cycle, each company's, and used
    for route in (COMPANY, DATA_STATUS, CONNECTIONS, SYNC_SETTINGS):
        assert sorted(c for r, c in first if r == route) == fleet_ids, route
    assert after_first.companies() == set(fleet_ids)
    assert after_first.find("codat_connection_status")
    assert after_first.find(MAX_AGE) == after_second.find(MAX_AGE), "the schedules were used"


def test_should_show_a_company_down_whose_connections_fail_after_its_data_status_in_a_first_cycle(
    make_harness: Callable[..., Harness], fleet_ids: list[str]
) -> None:
    # Prepare: one company's connections answer a body that is not JSON
    harness = make_harness()
    broken = fleet_ids[0]
    harness.fleet.inject(broken, Fault("malformed", endpoint=CONNECTIONS))
    # Act
    result = harness.poll()
    scrape = harness.scrape()
    # Check: down, its data status read all the same; the others up
    assert (result.succeeded, result.failed) == (len(fleet_ids) - 1, 1)
    assert scrape.value("codat_exporter_company_up", company_id=broken) == 0
    assert scrape.find("codat_data_type_status", company_id=broken)
    assert scrape.value("codat_exporter_poll_errors_total", reason="malformed_response") == 1
    assert {s.labels["company_id"] for s in scrape.find("codat_exporter_company_up")} == set(
        fleet_ids
    )


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


def test_should_reach_every_company_when_the_rate_limit_cuts_each_cycle_short(
    make_harness: Callable[..., Harness], fleet_ids: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: 1 request a minute fits 4-5 of the 8 companies into a 5m cycle
    with caplog.at_level(logging.WARNING, logger="exporter"):
        harness = make_harness(
            codat={"max_requests_per_minute": 1},
            companies={"ids": [], "discover": True, "discovery_interval": "1h"},
            connections={"enabled": False},
            diagnostics={"pull_operations": False, "sync_durations": False},
        )
        polled: list[set[str]] = []
        # Act
        for _ in range(3):
            harness.poll()
            polled.append({
                s.labels["company_id"]
                for s in harness.scrape().find(LAST_SUCCESS)
            })  # fmt: skip
    # Check: the first cycle misses some; the next one starts with those
    assert polled[0] < set(fleet_ids)
    assert polled[1] == set(fleet_ids)
    warning = [r.getMessage() for r in caplog.records if "Codat rate limit" in r.getMessage()]
    assert len(warning) == 1, "said once, at start"
    assert "more than codat.max_requests_per_minute (1)" in warning[0]
    assert "Set poll.interval to 10m or longer" in warning[0]


def test_should_not_be_ready_while_discovery_has_never_succeeded(
    make_harness: Callable[..., Harness],
) -> None:
    # Prepare
    harness = make_harness(companies={"ids": [], "discover": True})
    harness.fleet.inject(LISTING, Fault("status", status=503, endpoint=COMPANIES))
    # Act
    first = harness.poll()
    not_ready, landing = harness.get("/-/ready"), harness.get("/")
    harness.fleet.clear_faults()
    second = harness.poll()
    # Check
    assert not first.all_succeeded and first.discovery_failed
    assert not_ready.status_code == 503
    assert "company discovery has not succeeded yet" in not_ready.text
    assert "HTTP 503" in not_ready.text
    assert "Not ready: company discovery has not succeeded yet" in landing.text
    assert second.all_succeeded
    assert harness.get("/-/ready").status_code == 200


def test_should_end_each_cycle_with_one_summary_line(
    make_harness: Callable[..., Harness], fleet_ids: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: the seeded fleet has stale, failing, AuthError and never-synced data types
    harness = make_harness()
    harness.fleet.inject(fleet_ids[0], Fault("malformed", endpoint=DATA_STATUS))
    # Act
    with caplog.at_level(logging.INFO, logger="exporter"):
        harness.poll()
    # Check
    scrape = harness.scrape()
    now = harness.clock.time()
    ages = {
        (s.labels["company_id"], s.labels["data_type"]): now - s.value
        for s in scrape.find("codat_data_type_last_successful_sync_timestamp_seconds")
    }
    max_ages = {
        (s.labels["company_id"], s.labels["data_type"]): s.value
        for s in scrape.find("codat_data_type_max_age_seconds")
    }
    stale = sum(1 for pair, age in ages.items() if age > max_ages[pair])
    statuses = [s.labels["status"] for s in scrape.find("codat_data_type_status")]
    failing = sum(1 for status in statuses if status in ERROR_STATUSES)
    auth, never = statuses.count("AuthError"), statuses.count("NeverSynced")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("poll cycle")]
    assert lines == [
        f"poll cycle: 8 companies polled, 1 failed; data types: {stale} stale, {failing} "
        f"failing, {auth} in AuthError, {never} never synced; took 0.0s"
    ]
    assert stale > 0 and failing > 0 and auth > 0 and never > 0


def test_should_say_keeping_last_good_values_only_when_there_are_some(
    make_harness: Callable[..., Harness], fleet_ids: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: one company fails from its first poll, another from its second
    harness = make_harness()
    harness.fleet.inject(fleet_ids[0], Fault("malformed", endpoint=DATA_STATUS))
    with caplog.at_level(logging.WARNING, logger="exporter"):
        harness.poll()
        harness.fleet.inject(fleet_ids[1], Fault("malformed", endpoint=DATA_STATUS))
        # Act
        harness.poll()
    # Check
    lines = [r.getMessage() for r in caplog.records if "poll failed" in r.getMessage()]
    assert len(lines) == 2
    assert lines[0].startswith(f"company {fleet_ids[0]}: poll failed, no values yet:")
    assert lines[1].startswith(
        f"company {fleet_ids[1]}: poll failed, keeping its last good values:"
    )


def test_should_keep_a_webhook_repoll_that_ends_before_the_cycles_older_result(
    make_harness: Callable[..., Harness], fleet_ids: list[str]
) -> None:
    # Prepare: two workers poll X, Y, Z in that order. While Y's dataStatus is being served,
    # after the cycle's poll of X has ended (its worker has moved on to Z), X's data changes
    # and a webhook re-polls X; the cycle then ends with its older result for X.
    x, y, z = fleet_ids[:3]
    harness = make_harness(
        codat={"max_concurrency": 2},
        companies={"ids": [x, y, z]},
        diagnostics={"pull_operations": False, "sync_durations": False},
    )
    fresh = {"invoices": {"dataType": "invoices", "currentStatus": "Complete",
                          "lastSuccessfulSync": "2026-11-23T11:59:00Z"}}  # fmt: skip
    served = harness.fleet.data_status
    repolled = threading.Event()

    def serve(company_id: str) -> object:
        if company_id == y and not repolled.is_set():
            deadline = time.monotonic() + 10
            while not any(c == z for _, route, c, _ in harness.codat.log if route == DATA_STATUS):
                assert time.monotonic() < deadline, "the cycle never reached Z"
                time.sleep(0.005)
            harness.fleet.override(x, fresh)
            harness.clock.advance(1)
            repoll = threading.Thread(target=harness.poller.poll_companies, args=([x],))
            repoll.start()
            repoll.join(timeout=10)
            repolled.set()
        return served(company_id)

    harness.fleet.data_status = serve  # type: ignore[method-assign]
    # Act
    harness.poll()
    # Check: the re-poll's newer data stayed
    assert repolled.is_set()
    synced = harness.scrape().find(
        "codat_data_type_last_successful_sync_timestamp_seconds", company_id=x
    )
    assert [s.labels["data_type"] for s in synced] == ["invoices"]
    assert synced[0].value == START - 60
