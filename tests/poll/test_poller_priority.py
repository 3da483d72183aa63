"""When the rate limit binds, dataStatus comes first and the log stays short (issue 18,
part 4): the exporter against the simulated Codat over real HTTP, on a fake clock that the
rate limiter's waits move, eight companies, each cycle five minutes after the last."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import pytest

from exporter.core.contract import (
    COMPANIES,
    COMPANY,
    CONNECTIONS,
    DATA_STATUS,
    PULL_OPERATION,
    SYNC_SETTINGS,
)
from exporter.core.integrations import INTEGRATION
from exporter.simulator.faults import Fault
from tests.harness import Harness, Scrape

LAST_SUCCESS = "codat_exporter_company_last_poll_success_timestamp_seconds"
DEFERRED = "codat_exporter_requests_deferred_total"
DISCOVERED = {"ids": [], "discover": True, "discovery_interval": "1h"}
FIRST_ROUTES = (COMPANIES, COMPANY, DATA_STATUS)


def served(harness: Harness, since: int = 0) -> list[str]:
    """The routes the simulator served, in order, from request ``since`` on."""
    return [route for _, route, _, _ in list(harness.codat.log)[since:]]


def deferred(scrape: Scrape) -> float:
    return sum(sample.value for sample in scrape.find(DEFERRED))


def test_should_poll_every_data_status_every_cycle_and_catch_up_the_rest_after(
    make_harness: Callable[..., Harness], fleet_ids: list[str]
) -> None:
    # Prepare: 6 requests a minute, 30 a cycle: the 8 dataStatus fit, not the connections,
    # integrations and the ~45 pull operations of a first cycle as well
    harness = make_harness(codat={"max_requests_per_minute": 6}, companies=DISCOVERED)
    cycles, deferred_by_cycle = [], []

    # Act
    for _ in range(5):
        since = len(harness.codat.log)
        result = harness.poll()
        scrape = harness.scrape()
        cycles.append((result, served(harness, since), scrape, harness.clock.time()))
        deferred_by_cycle.append(deferred(scrape))
        harness.clock.advance(harness.config.poll.interval)

    # Check: every company's dataStatus read and published at every cycle
    for result, routes, scrape, now in cycles:
        assert result.all_succeeded
        assert routes.count(DATA_STATUS) == len(fleet_ids)
        polled = {s.labels["company_id"]: s.value for s in scrape.find(LAST_SUCCESS)}
        assert sorted(polled) == fleet_ids
        assert max(now - at for at in polled.values()) < harness.config.poll.interval
    # Check: the rest waited, then caught up: nothing left for later in the last cycles
    assert deferred_by_cycle[0] > 0, "the limit binds in the first cycle"
    assert deferred_by_cycle[-1] == deferred_by_cycle[-2] > deferred_by_cycle[0]
    last = cycles[-1][2]
    assert {s.labels["company_id"] for s in last.find("codat_connection_status")} == set(fleet_ids)
    assert last.value("codat_exporter_pull_operation_errors_total", reason="rate_limited") == 0


@pytest.mark.parametrize(
    ("per_minute", "sections", "all_read"),
    [
        pytest.param(100_000, {}, True, id="within-the-limit"),
        pytest.param(4, {"freshness": {"from_sync_settings": True}}, False, id="limit-binding"),
    ],
)
def test_should_read_every_name_and_data_status_before_anything_else_on_a_cold_start(
    make_harness: Callable[..., Harness],
    fleet_ids: list[str],
    per_minute: int,
    sections: dict[str, dict[str, object]],
    all_read: bool,
) -> None:
    # Prepare: listed ids, so that every name is read too (a label); no state file
    harness = make_harness(codat={"max_requests_per_minute": per_minute}, **sections)

    # Act
    result = harness.poll()
    routes = served(harness)
    scrape = harness.scrape()

    # Check: all names and dataStatus first, then the rest; every company shown, named
    rest = [i for i, route in enumerate(routes) if route not in FIRST_ROUTES]
    assert rest, "pull operations, connections ... were read after"
    assert max(i for i, route in enumerate(routes) if route in FIRST_ROUTES) < min(rest)
    assert {routes[i] for i in rest} <= {PULL_OPERATION, CONNECTIONS, SYNC_SETTINGS, INTEGRATION}
    assert routes.count(COMPANY) == routes.count(DATA_STATUS) == len(fleet_ids)
    if all_read:  # within the limit, the rest is read in the same cycle, nothing deferred
        assert PULL_OPERATION in {routes[i] for i in rest}
        assert deferred(scrape) == 0
    assert result.all_succeeded
    named = {s.labels["company_id"] for s in scrape.find(LAST_SUCCESS) if s.labels["company_name"]}
    assert sorted(named) == fleet_ids


@pytest.mark.parametrize("per_minute", [3, 4])
def test_should_log_one_line_for_the_reads_the_rate_limit_left_for_later(
    make_harness: Callable[..., Harness], caplog: pytest.LogCaptureFixture, per_minute: int
) -> None:
    # Prepare: the case, 8 companies and a limit too small for one cycle (it
    # printed 15 warnings in one second, one per pull operation it could not read); at 4 a
    # minute, a turn comes for a pull operation just before the deadline, too late to read it
    harness = make_harness(codat={"max_requests_per_minute": per_minute}, companies=DISCOVERED)

    # Act
    with caplog.at_level(logging.INFO, logger="exporter"):
        harness.poll()
    scrape = harness.scrape()

    # Check: no warning at all; one line with the counts, as the counter has them
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("rate limit:")]
    left = int(deferred(scrape))
    by_route = int(scrape.value(DEFERRED, endpoint=PULL_OPERATION))
    assert left >= 15
    assert line.startswith(
        f"rate limit: {left} requests left for later polls, dataStatus first "
        f"(pull operations {by_route}"
    )
    assert line.endswith(f"; codat.max_requests_per_minute ({per_minute}) binds")
    errors = scrape.find("codat_exporter_pull_operation_errors_total")
    assert errors and sum(sample.value for sample in errors) == 0, "none failed"


def test_should_show_every_company_on_a_cold_start_before_its_connections_are_read(
    make_harness: Callable[..., Harness], fleet_ids: list[str]
) -> None:
    # Prepare: every connections request hangs, so that the cycle stops after the dataStatus
    harness = make_harness()
    for company_id in fleet_ids:
        harness.fleet.inject(company_id, Fault("hang", endpoint=CONNECTIONS))
    cycle = threading.Thread(target=harness.poll, daemon=True)

    # Act: look at /metrics while the first connections request hangs
    cycle.start()
    waited = time.monotonic()
    while CONNECTIONS not in harness.codat.requests and time.monotonic() - waited < 30:
        time.sleep(0.01)
    meanwhile = harness.scrape()
    harness.fleet.clear_faults()
    cycle.join(timeout=60)

    # Check: every company was on /metrics, with its data types, before the cycle's end
    assert not cycle.is_alive()
    assert sorted(meanwhile.companies()) == fleet_ids
    assert {s.labels["company_id"] for s in meanwhile.find("codat_data_type_status")} == set(
        fleet_ids
    )
