"""Why a sync failed, what paused it, how long syncs take (issue 9): the exporter reads the
simulated Codat's pull operations over real HTTP, with the clock moved by hand.

The fleet is ten companies, so that it holds the paused and the on-premise companies as
well as the failing ones. What is checked is what a user sees: the error message kept for
the status page, the pause and queue gauges and the sync durations on /metrics, and what
it costs in requests (counted by the simulator, per route and per path).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from exporter.core.contract import DATA_STATUS, PULL_OPERATION, parse_datetime
from exporter.core.snapshot import CompanyState
from exporter.demo import start_demo
from exporter.simulator.faults import Fault
from exporter.simulator.fleet import Fleet
from exporter.simulator.profiles import PAUSED, QUEUED
from exporter.simulator.pulloperations import ERROR_MESSAGES
from exporter.simulator.server import SimulatedCodat
from exporter.simulator.syncs import HOUR
from tests.harness import FakeClock, Harness

PAUSED_UNTIL = "codat_data_type_sync_paused_until_timestamp_seconds"
REQUESTED = "codat_data_type_latest_sync_requested_timestamp_seconds"
DURATION = "codat_data_type_sync_duration_seconds"
ERRORS = "codat_exporter_pull_operation_errors_total"
UP = "codat_exporter_company_up"
MINUTES_5 = 300.0


@pytest.fixture
def fleet(clock: FakeClock) -> Fleet:
    return Fleet.generate(clock, companies=10, seed=7)


def company(fleet: Fleet, profile: str) -> str:
    (found,) = fleet.ids_by_profile(profile)
    return found


def state(harness: Harness, company_id: str) -> CompanyState:
    return harness.store.current.snapshot.companies[company_id]


def history_reads(codat: SimulatedCodat) -> Counter[str]:
    """Reads of each pull operation so far, by path."""
    return Counter({p: n for p, n in codat.paths.items() if "/data/history" in p})


def latest(fleet: Fleet) -> dict[tuple[str, str], tuple[str, str, str]]:
    """(latestSyncId, currentStatus, latestSuccessfulSyncId) of every pair, at the clock's time."""
    return {
        (cid, name): (e.get("latestSyncId", ""), e.get("currentStatus", ""),
                      e.get("latestSuccessfulSyncId", ""))
        for cid in fleet.companies
        for name, e in fleet.data_status(cid).items()
    }  # fmt: skip


def test_should_keep_the_error_message_of_each_failing_pairs_latest_sync(
    harness: Harness, fleet: Fleet
) -> None:
    # Prepare
    stale, deauthorized = company(fleet, "stale"), company(fleet, "auth_error")

    # Act
    harness.poll()

    # Check
    invoices = state(harness, stale).syncs["invoices"]
    assert (invoices.status, invoices.error_message) == ("FetchError", ERROR_MESSAGES["FetchError"])
    assert invoices.sync_id == fleet.data_status(stale)["invoices"]["latestSyncId"]
    assert invoices.requested is not None and invoices.completed is not None
    assert invoices.requested < invoices.completed <= harness.clock.time()
    failing = {d for d, e in fleet.data_status(deauthorized).items()
               if e["currentStatus"] == "AuthError"}  # fmt: skip
    auth = state(harness, deauthorized).syncs
    assert len(failing) > 5
    assert {(s.status, s.error_message) for d, s in auth.items() if d in failing} == {
        ("AuthError", "The access token has expired or been revoked")
    }


def test_should_export_the_pause_until_its_end_and_no_longer(
    harness: Harness, fleet: Fleet
) -> None:
    # Prepare
    paused = company(fleet, "paused")
    hold = fleet.companies[paused].data_types[PAUSED].hold
    assert hold is not None

    # Act
    harness.poll()
    at_start = harness.scrape()
    description = state(harness, paused).syncs[PAUSED].status_description
    harness.clock.advance(hold.until - harness.clock.time() - 1)
    harness.poll()
    just_before = harness.scrape()
    harness.clock.advance(2)
    harness.poll()
    just_after = harness.scrape()

    # Check
    for scrape in (at_start, just_before):
        (sample,) = scrape.find(PAUSED_UNTIL)
        assert (sample.labels["company_id"], sample.labels["data_type"]) == (paused, PAUSED)
        assert sample.value == hold.until
    assert just_after.find(PAUSED_UNTIL) == []
    assert description is not None and description.startswith("Paused until ")


def test_should_export_when_the_on_premise_pairs_queued_sync_was_requested(
    harness: Harness, fleet: Fleet
) -> None:
    # Prepare
    on_premise = company(fleet, "on_premise")
    queued = fleet.timeline(on_premise, QUEUED).latest(harness.clock.time())
    assert queued is not None

    # Act
    harness.poll()
    first = harness.scrape()
    harness.clock.advance(3 * HOUR)
    harness.poll()
    later = harness.scrape()

    # Check
    for scrape in (first, later):
        assert scrape.value(REQUESTED, company_id=on_premise, data_type=QUEUED) == queued.requested
        assert scrape.value("codat_data_type_status", company_id=on_premise, data_type=QUEUED,
                            status="Queued") == 1  # fmt: skip
    assert harness.clock.time() - queued.requested >= 8 * HOUR
    assert first.find(REQUESTED, data_type="invoices", company_id=company(fleet, "stale")) == []


def test_should_observe_completed_minus_requested_once_per_new_successful_sync(
    make_harness: Callable[..., Harness], fleet: Fleet, clock: FakeClock
) -> None:
    # Prepare: one company, and the moment its next invoices sync has completed
    healthy = company(fleet, "healthy")
    harness = make_harness(companies={"ids": [healthy]})
    timeline = fleet.timeline(healthy, "invoices")
    now = clock.time()
    start = timeline.latest(now)
    assert start is not None
    after = next(
        timeline.sync(k) for k in range(start.k, start.k + 100)
        if timeline.outcome(k) == "Complete" and timeline.sync(k).ended > now
    )  # fmt: skip
    harness.poll()
    before = harness.scrape()

    # Act
    clock.advance(after.ended + 1 - now)
    harness.poll()
    scrape = harness.scrape()
    operation = fleet.pull_operation(healthy, timeline.sync_id(after.k))
    assert operation is not None

    # Check
    took = parse_datetime(operation["completed"]) - parse_datetime(operation["requested"])
    assert before.find(f"{DURATION}_count", data_type="invoices") == []
    assert scrape.value(f"{DURATION}_count", data_type="invoices") == 1
    assert scrape.value(f"{DURATION}_sum", data_type="invoices") == pytest.approx(took, abs=1e-3)
    assert 60 <= took <= HOUR


def test_should_make_one_data_status_request_per_company_and_no_history_read_when_nothing_changed(
    harness: Harness, fleet: Fleet
) -> None:
    # Prepare
    harness.poll()
    read_first = sum(history_reads(harness.codat).values())
    before = dict(harness.codat.requests)

    # Act
    harness.poll()

    # Check
    delta = {r: n - before.get(r, 0) for r, n in harness.codat.requests.items()}
    assert {r: n for r, n in delta.items() if n} == {DATA_STATUS: len(fleet.companies)}
    assert read_first > len(fleet.companies), "the first poll read the pairs not Complete"


def test_should_read_a_pull_operation_only_when_the_pairs_sync_or_its_status_changed(
    harness: Harness, fleet: Fleet, clock: FakeClock
) -> None:
    # Prepare
    harness.poll()
    seen = first = latest(fleet)
    reads = history_reads(harness.codat)
    unexpected: list[tuple[str, str]] = []
    sync_reads = 0

    # Act: two hours of polls, five minutes apart
    for _ in range(24):
        clock.advance(MINUTES_5)
        harness.poll()
        now, after = latest(fleet), history_reads(harness.codat)
        changed = {
            f"/companies/{cid}/data/history/{ids[i]}"
            for (cid, name), ids in now.items()
            for i in (0, 2)
            if ids[i] and (ids[i] != seen[cid, name][i]
                           or (i == 0 and ids[1] != seen[cid, name][1]))
        }  # fmt: skip
        new = after - reads
        sync_reads += sum(new.values())
        unexpected += [(path, "not changed") for path in new if path not in changed]
        unexpected += [(path, "read twice in a poll") for path, n in new.items() if n > 1]
        seen, reads = now, after

    # Check
    assert unexpected == []
    assert sync_reads > 24, "syncs ran, failed and completed meanwhile"
    # The pairs whose latest sync stayed the same and not Complete for the two hours (the
    # on-premise one, failing twice-daily ones, ...) had it read once, at the first poll.
    stable = {
        pair: ids[0] for pair, ids in first.items()
        if ids[0] and ids[1] != "Complete" and seen[pair][:2] == ids[:2]
    }  # fmt: skip
    assert (company(fleet, "on_premise"), QUEUED) in stable
    assert len(stable) > 5
    counts = {pair: reads[f"/companies/{pair[0]}/data/history/{sync_id}"]
              for pair, sync_id in stable.items()}  # fmt: skip
    assert set(counts.values()) == {1}, counts


def test_should_go_on_with_the_poll_count_log_once_and_retry_when_a_history_read_fails(
    make_harness: Callable[..., Harness], fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare
    stale = company(fleet, "stale")
    harness = make_harness(companies={"ids": [stale]})
    harness.fleet.inject(stale, Fault("status", 500, endpoint=PULL_OPERATION))

    # Act
    with caplog.at_level(logging.DEBUG, logger="exporter"):
        harness.poll()
        first = harness.scrape()
        first_reads, first_warnings = history_reads(harness.codat), warnings(caplog)
        caplog.clear()
        harness.poll()
        second_reads, second_warnings = history_reads(harness.codat), warnings(caplog)
        harness.fleet.clear_faults()
        harness.poll()
    recovered = harness.scrape()

    # Check
    failed = set(first_reads)
    assert failed, "the stale company's failing pairs were read"
    assert first.value(UP, company_id=stale) == 1
    assert first.find("codat_data_type_status", company_id=stale, data_type="invoices")
    assert first.value(ERRORS, reason="http_error") == len(failed)
    (line,) = first_warnings  # one line for the cycle, however many reads failed
    assert line.startswith(
        f"pull operations: {len(failed)} reads failed ({len(failed)} http_error) for 1 company;"
    )
    assert f"e.g. company {stale}: pull operation " in line
    assert [p for p in failed if second_reads[p] <= first_reads[p]] == [], "retried next poll"
    assert second_warnings == [], "the same reads failing again are not news"
    assert recovered.value(ERRORS, reason="http_error") >= 2 * len(failed)
    invoices = state(harness, stale).syncs["invoices"]
    assert invoices.error_message == ERROR_MESSAGES["FetchError"]


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and "pull operation" in r.getMessage()]  # fmt: skip


def test_should_show_every_diagnosis_in_the_demo_fleet(clock: FakeClock, tmp_path: Path) -> None:
    # Prepare
    simulator, config = start_demo(clock, str(tmp_path))
    harness = Harness(config, clock, simulator)
    try:
        # Act
        harness.poll()
        scrape = harness.scrape()
        syncs = [
            s for c in harness.store.current.snapshot.companies.values() for s in c.syncs.values()
        ]
        clock.advance(HOUR)
        harness.poll()
        later = harness.scrape()
    finally:
        harness.close()
        simulator.stop()

    # Check
    messages = {s.status: s.error_message for s in syncs if s.error_message}
    assert set(messages) == set(ERROR_MESSAGES)
    assert len(scrape.find(PAUSED_UNTIL)) == 1
    assert scrape.find(PAUSED_UNTIL)[0].value > clock.time()
    queued = [s for s in scrape.find(REQUESTED) if clock.time() - HOUR - s.value > 4 * HOUR]
    assert len(queued) == 1
    assert len(scrape.find(REQUESTED)) > 2, "syncs in progress too"
    assert sum(s.value for s in later.find(f"{DURATION}_count")) > 10
