"""Heal what can heal itself: refreshes of transient sync failures, over real HTTP against the
simulated Codat's queue route, with the injected clock moving through a day."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from exporter.codat.refreshjournal import Entry
from exporter.core.contract import QUEUE_DATA_TYPE
from exporter.poll.statefile import load
from exporter.simulator.dates import format_datetime
from exporter.simulator.faults import Fault
from exporter.simulator.fleet import Fleet
from exporter.simulator.profiles import PAUSED
from exporter.simulator.server import SimulatedCodat
from exporter.simulator.syncs import HOUR
from tests.harness import START, Harness
from tests.statusfleet import table_rows

REFRESHES = "codat_exporter_refreshes_total"
COMPANY_TYPE = "invoices"


def failing(
    harness: Harness,
    *,
    hours: float = 30.0,
    status: str = "FetchError",
    data_types: tuple[str, ...] = (COMPANY_TYPE,),
    company: str | None = None,
) -> str:
    """A healthy company (or ``company``) whose invoices (or ``data_types``) fail from an
    hour ago for ``hours`` (a platform's outage: a refresh during it fails too; one after it
    heals)."""
    company = company or next(harness.fleet.ids_by_profile("healthy"))
    for data_type in data_types:
        sim = harness.fleet.companies[company].data_types[data_type]
        sim.period, sim.phase, sim.fail_rate = 6 * HOUR, START % (6 * HOUR) - 2 * HOUR, 0.0
        sim.fail_since, sim.fail_until = START - 3 * HOUR, START + hours * HOUR
        sim.fail_status = status
    return company


def refreshing(directory: Path, **refresh: Any) -> dict[str, Any]:
    """Refreshes on, their journal (and the state file) in ``directory``."""
    return {
        "refresh": {"enabled": True, "after": "1h", "backoff": 2, **refresh},
        "state": {"file": str(directory / "state.json")},
        "connections": {"enabled": False},
        "poll": {"interval": "15m"},
    }


def queued(harness: Harness, company: str | None = None) -> list[tuple[float, str, str]]:
    """(time, company, data type) of every refresh the simulator received."""
    return [
        (at, c or "", query["dataType"])
        for at, route, c, query in harness.codat.log
        if route == QUEUE_DATA_TYPE and (company is None or c == company)
    ]


def run_for(harness: Harness, hours: float) -> None:
    """Poll every 15 minutes for ``hours`` of the injected clock."""
    for _ in range(int(hours * 4)):
        harness.poll()
        harness.clock.advance(900)


def counted(harness: Harness, result: str) -> float:
    return sum(s.value for s in harness.scrape().find(REFRESHES, result=result))


def test_should_refresh_a_failing_pair_after_the_wait_then_with_backoff(
    make_harness: Callable[..., Harness],
    tmp_path: Path,
) -> None:
    # Prepare: failing for the next 30 h; the first sync failed 3 h ago
    harness = make_harness(**refreshing(tmp_path, max_per_company_per_day=100))
    company = failing(harness)
    # Act
    run_for(harness, 12)
    # Check: at once (failing > 1h), then 2h, 4h, 8h apart
    times = [at - START for at, _, data_type in queued(harness, company)]
    assert [data_type for _, _, data_type in queued(harness, company)] == [COMPANY_TYPE] * 3
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert times[0] == 0
    assert [g / HOUR for g in gaps] == [2, 4]
    assert counted(harness, "queued") >= 3


def test_should_heal_a_pair_whose_outage_has_ended_and_start_its_backoff_over(
    make_harness: Callable[..., Harness],
    tmp_path: Path,
) -> None:
    # Prepare: an outage that ends in 3 h; the refresh after it finds the platform back
    harness = make_harness(**refreshing(tmp_path, max_per_company_per_day=100))
    company = failing(harness, hours=3)
    # Act
    run_for(harness, 8)
    scrape = harness.scrape()
    # Check: the pair is Complete again and no refresh was queued after it healed
    status = scrape.find("codat_data_type_status", company_id=company, data_type=COMPANY_TYPE)
    assert [s.labels["status"] for s in status] == ["Complete"]
    last_refresh = queued(harness, company)[-1][0]
    synced = scrape.value("codat_data_type_last_successful_sync_timestamp_seconds",
                          company_id=company, data_type=COMPANY_TYPE)  # fmt: skip
    assert synced > last_refresh, "the refresh's sync is the one that succeeded"


def test_should_never_refresh_an_authorisation_error(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    # Prepare: the seeded fleet has a company whose every data type is in AuthError
    harness = make_harness(**refreshing(tmp_path, statuses=["FetchError"], stale=True))
    auth = next(harness.fleet.ids_by_profile("auth_error"))
    # Act
    run_for(harness, 6)
    # Check
    assert queued(harness, auth) == []


def test_should_hold_the_caps_per_company_and_per_day(
    make_harness: Callable[..., Harness],
    tmp_path: Path,
) -> None:
    # Prepare: two data types failing; at most 2 refreshes a company a day
    harness = make_harness(
        **refreshing(tmp_path, after="15m", backoff=1, max_per_company_per_day=2)
    )
    company = failing(harness)
    sim = harness.fleet.companies[company].data_types["bills"]
    sim.fail_since, sim.fail_until, sim.fail_rate = START - 3 * HOUR, START + 40 * HOUR, 0.0
    # Act: through midnight UTC and most of the next day
    run_for(harness, 30)
    # Check: 2 on the first UTC day (12:00-24:00), 2 the next, each capped once per pair-day
    by_day = [int((at - START + 12 * HOUR) // (24 * HOUR)) for at, _, _ in queued(harness, company)]
    assert by_day.count(0) == 2 and by_day.count(1) == 2
    assert counted(harness, "capped") >= 2


MIDNIGHT = START + 12 * HOUR
"""The first midnight UTC after START (12:00)."""


def racing_midnight(
    make_harness: Callable[..., Harness], codat: SimulatedCodat, tmp_path: Path, per_day: int
) -> tuple[Harness, dict[str, Any], str, str]:
    """Two companies with two failing pairs each, at most ``per_day`` refreshes a day, the
    clock half a second before midnight UTC. Codat's receipt of the first refresh moves the
    clock past midnight and has a webhook re-poll refresh the second company on the other
    worker, while the first company's poll still holds the time it read before midnight."""
    two = ("invoices", "bills")
    sections = refreshing(tmp_path, after="15m", backoff=1, max_per_day=per_day,
                          max_per_company_per_day=10)  # fmt: skip
    added = codat.fleet.add("healthy")
    harness = make_harness(**sections)
    first = failing(harness, hours=60, data_types=two)
    second = failing(harness, hours=60, data_types=two, company=added)
    harness.clock.advance(MIDNIGHT - 0.5 - harness.clock.time())
    received: list[str] = []

    def on_queue(company: str, data_type: str) -> None:
        received.append(company)
        if len(received) == 1:
            harness.clock.advance(1.0)
            harness.poller.poll_companies([second])

    codat.on_queue = on_queue
    return harness, sections, first, second


def new_day(harness: Harness) -> list[str]:
    """The companies of the refreshes Codat received after MIDNIGHT."""
    return [company for at, company, _ in queued(harness) if at >= MIDNIGHT]


def test_should_hold_the_daily_cap_when_another_worker_has_passed_midnight_first(
    make_harness: Callable[..., Harness], codat: SimulatedCodat, tmp_path: Path
) -> None:
    # Prepare
    harness, _, first, second = racing_midnight(make_harness, codat, tmp_path, per_day=2)
    # Act: the first company's poll (its pairs one after the other), both 20 minutes later
    harness.poller.poll_companies([first])
    harness.clock.advance(20 * 60)
    harness.poller.poll_companies([first, second])
    # Check: the second company's two refreshes are the new day's, the cap's
    assert new_day(harness) == [second, second]


def test_should_count_a_refresh_on_the_day_codat_received_it_through_a_restart(
    make_harness: Callable[..., Harness], codat: SimulatedCodat, tmp_path: Path
) -> None:
    # Prepare: a cap of 3 leaves room after midnight for the first company's second pair,
    # decided on a time read before midnight
    harness, sections, first, second = racing_midnight(make_harness, codat, tmp_path, 3)
    harness.poller.poll_companies([first])
    # Act: restarted from the journal 20 minutes later, when every pair is due again
    after = restarted(make_harness, sections)
    after.clock.advance(20 * 60)
    after.poller.poll_companies([first, second])
    # Check
    assert new_day(after) == [second, second, first]


def test_should_not_start_the_day_over_when_the_wall_clock_steps_back_across_midnight(
    make_harness: Callable[..., Harness], codat: SimulatedCodat, tmp_path: Path
) -> None:
    # Prepare: three pairs whose refreshes fail at once; the day's two refreshes are sent
    # ten seconds after midnight
    sections = refreshing(tmp_path, after="15m", backoff=1, max_per_day=2,
                          max_per_company_per_day=10)  # fmt: skip
    harness = make_harness(**sections)
    three = ("invoices", "bills", "payments")
    company = failing(harness, hours=60, data_types=three)
    for data_type in three:
        harness.fleet.companies[company].data_types[data_type].shows_progress = False
    harness.clock.advance(MIDNIGHT + 10 - harness.clock.time())
    harness.poller.poll_companies([company])
    # Act: the wall clock is set back 20 seconds (a poll), then runs on past the backoff
    harness.clock.step(-20)
    harness.poller.poll_companies([company])
    harness.clock.advance(20 * 60)
    harness.poller.poll_companies([company])
    # Check
    assert new_day(harness) == [company, company]


def test_should_queue_nothing_in_a_dry_run_but_say_and_count_what_it_would(
    make_harness: Callable[..., Harness], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare
    harness = make_harness(**refreshing(tmp_path, dry_run=True))
    company = failing(harness)
    # Act
    with caplog.at_level(logging.INFO, logger="exporter"):
        run_for(harness, 4)
    # Check: at once, and 2 h later
    assert queued(harness) == []
    lines = [
        r.getMessage() for r in caplog.records
        if "dry run" in r.getMessage() and company in r.getMessage()
    ]  # fmt: skip
    assert lines == [
        f"refresh (dry run, not queued): company {company} invoices, FetchError, attempt {n}"
        for n in (1, 2)
    ]
    assert counted(harness, "dry_run") >= 2


def test_should_count_an_already_running_sync_and_a_refusal_apart_from_errors(
    make_harness: Callable[..., Harness],
    tmp_path: Path,
) -> None:
    # Prepare: Codat answers 409 to the first refresh and 400 to the second
    harness = make_harness(
        **refreshing(tmp_path, after="15m", backoff=1, max_per_company_per_day=100)
    )
    company = failing(harness)
    harness.fleet.inject(company, Fault("status", status=409, times=1, endpoint=QUEUE_DATA_TYPE))
    # Act
    run_for(harness, 0.5)
    harness.fleet.inject(company, Fault("status", status=400, times=1, endpoint=QUEUE_DATA_TYPE))
    run_for(harness, 3)
    # Check: 409 at once, a refresh 15 m later, the 400 after it stopped the pair for the day
    times = [(at - START) / 60 for at, _, _ in queued(harness, company)]
    assert times == [0, 15, 30]
    assert counted(harness, "already_in_progress") == 1
    assert counted(harness, "rejected") == 1


def test_should_pause_the_client_on_a_429_to_a_refresh(
    make_harness: Callable[..., Harness],
    tmp_path: Path,
) -> None:
    # Prepare
    harness = make_harness(**refreshing(tmp_path))
    company = failing(harness)
    harness.fleet.inject(company, Fault("status", status=429, retry_after="120",
                                        endpoint=QUEUE_DATA_TYPE))  # fmt: skip
    # Act
    harness.poll()
    # Check: each try waited out the client-wide pause, then the refresh counts as an error
    times = [at for at, _, _ in queued(harness, company)]
    assert len(times) > 1
    assert all(b - a >= 120 for a, b in itertools.pairwise(times))
    assert harness.scrape().value("codat_exporter_rate_limited_total") == len(times)
    assert counted(harness, "error") == 1


def test_should_keep_the_caps_and_backoff_across_a_restart(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    # Prepare: one exporter refreshes once and stops
    path = tmp_path / "state.json"
    before = make_harness(**refreshing(tmp_path))
    company = failing(before)
    run_for(before, 1)
    assert len(queued(before, company)) == 1
    before.close()
    # Act: the next one resumes from the file and runs for 1.5 h
    after = make_harness(**refreshing(tmp_path))
    saved = load(path, after.config.shard)
    assert saved is not None
    after.poller.restore(saved)
    restarted_at = after.clock.time()
    run_for(after, 1.5)
    # Check: the second refresh waits its 2 h after the first, restart or not
    since = [at - START for at, _, _ in queued(after, company) if at >= restarted_at]
    assert since == [2 * HOUR]


def test_should_show_the_refresh_on_the_status_api(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    # Prepare
    harness = make_harness(**refreshing(tmp_path))
    company = failing(harness)
    # Act
    run_for(harness, 0.25)
    body = harness.get(f"/api/v1/status?company={company}").json()
    # Check
    (pair,) = [p for p in body["pairs"] if p["data_type"] == COMPANY_TYPE]
    assert pair["refresh_attempts"] == 1
    assert pair["refresh_queued_at"] == "2026-11-23T12:00:00Z"


def restarted(make_harness: Callable[..., Harness], sections: dict[str, Any]) -> Harness:
    """A new exporter, resumed from the state file when there is one, as app.run starts."""
    harness = make_harness(**sections)
    saved = load(sections["state"]["file"], harness.config.shard)
    if saved is not None:
        harness.poller.restore(saved)
    return harness


def test_should_not_let_a_state_file_older_than_the_journal_lower_the_day_s_count(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    # Prepare: a pair refreshed every time its sync fails again, twice a day at most; the
    # state file as it was after the first refresh is all that a crash leaves of the second
    sections = refreshing(tmp_path, after="15m", backoff=1, max_per_company_per_day=2)
    state = tmp_path / "state.json"
    before = make_harness(**sections)
    company = failing(before)
    before.poll()
    saved_after_the_first = state.read_bytes()
    for _ in range(24):
        if len(queued(before, company)) == 2:
            break
        before.clock.advance(900)
        before.poll()
    before.close()
    state.write_bytes(saved_after_the_first)
    # Act
    after = restarted(make_harness, sections)
    run_for(after, 3)
    # Check: the company's two refreshes of the day were spent, whatever the state file says
    assert after.clock.time() < START + 12 * HOUR, "still the same UTC day"
    assert len(queued(after, company)) == 2


def test_should_keep_the_backoff_across_midnight_and_a_restart_with_the_journal_alone(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    # Prepare: refreshed at 12:00, 14:00 and 18:00 (after 1 h, backoff 2); the next is due
    # at 02:00. The journal is rewritten at midnight; then the state file is lost.
    sections = refreshing(tmp_path, max_per_company_per_day=100)
    before = make_harness(**sections)
    company = failing(before, hours=60)
    run_for(before, 13)
    journal_after_midnight = (tmp_path / "state.json.refreshes").read_text().splitlines()
    before.close()
    (tmp_path / "state.json").unlink()
    # Act: restarted at 01:00
    after = restarted(make_harness, sections)
    restarted_at = after.clock.time()
    run_for(after, 2)
    # Check: at midnight the journal kept each pair's latest refresh only; the next at 02:00
    entries = [Entry.parse(line.encode()) for line in journal_after_midnight]
    pairs = {(e.company, e.data_type): e for e in entries if e is not None}
    assert len(pairs) == len(entries)
    assert pairs[company, COMPANY_TYPE] == Entry(
        "queued", company, COMPANY_TYPE, START + 6 * HOUR, 3
    )
    since = [(at - START) / HOUR for at, _, _ in queued(after, company) if at >= restarted_at]
    assert since == [14]


def test_should_send_no_refresh_while_its_journal_cannot_be_written(
    make_harness: Callable[..., Harness],
    fleet: Fleet,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Prepare: one company, with one failing pair; the journal's path taken by a directory,
    # as a full disk would refuse the file (root, who runs the tests, ignores permissions)
    only = next(fleet.ids_by_profile("healthy"))
    harness = make_harness(**refreshing(tmp_path, after="15m", backoff=1),
                           companies={"ids": [only]})  # fmt: skip
    company = failing(harness)
    journal = tmp_path / "state.json.refreshes"
    journal.unlink()
    journal.mkdir()
    # Act
    with caplog.at_level(logging.INFO, logger="exporter"):
        run_for(harness, 1)
        refused = queued(harness, company)
        journal.rmdir()
        run_for(harness, 0.25)
    # Check: four refreshes due, none sent, said once; then sent as soon as it can be written
    lines = [r.getMessage() for r in caplog.records if "refresh journal" in r.getMessage()]
    assert refused == []
    assert counted(harness, "journal_error") == 4
    assert len(queued(harness, company)) == 1
    assert len(lines) == 2
    assert "cannot be read or written" in lines[0] and "no refresh is sent" in lines[0]
    assert lines[1] == f"refresh journal {journal} written again"


def test_should_not_refresh_while_codat_has_paused_the_sync_and_refresh_after(
    make_harness: Callable[..., Harness], fleet: Fleet, tmp_path: Path
) -> None:
    # Prepare: a sync that failed with RateLimitError, which Codat paused until 14:00
    company = fleet.add("paused")
    sim = fleet.companies[company].data_types[PAUSED]
    assert sim.hold is not None
    sim.hold = replace(sim.hold, status="RateLimitError")
    sim.fail_since, sim.fail_status = START - 2 * HOUR, "RateLimitError"
    harness = make_harness(**refreshing(tmp_path, after="15m"))
    # Act
    run_for(harness, 6)
    # Check: failing (and due) for 1.5 h already at 12:00, but refreshed only after 14:00
    times = [at for at, _, data_type in queued(harness, company) if data_type == PAUSED]
    assert sim.hold.until == START + 2 * HOUR
    assert times
    assert min(times) > sim.hold.until


def test_should_wait_for_a_stale_pair_from_when_it_became_stale(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    # Prepare: max age 1 h; invoices last synced 15 h ago (stale for 14 h), bills 1.5 h ago
    # (stale for 30 min); both Complete
    harness = make_harness(**refreshing(tmp_path, stale=True),
                           freshness={"max_age": {"invoices": "1h", "bills": "1h"}})  # fmt: skip
    company = next(harness.fleet.ids_by_profile("healthy"))
    harness.fleet.override(company, {
        data_type: {"dataType": data_type, "currentStatus": "Complete",
                    "lastSuccessfulSync": format_datetime(START - hours * HOUR, "z3")}
        for data_type, hours in (("invoices", 15), ("bills", 1.5))
    })  # fmt: skip
    # Act
    run_for(harness, 1)
    # Check: refresh.after (1 h) counts from when each became stale
    since = {data_type: (at - START) / 60 for at, _, data_type in queued(harness, company)}
    assert since == {"invoices": 0, "bills": 30}


ESTIMATE = "codat_exporter_estimated_daily_requests"


def test_should_count_the_daily_refresh_cap_in_the_request_estimate_and_its_warning(
    make_harness: Callable[..., Harness], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: 8 companies, for which Codat allows 9,000 requests a day; a dry run sends none
    (tmp_path / "dry").mkdir()
    dry = make_harness(**refreshing(tmp_path / "dry", dry_run=True, max_per_day=8000))
    sending = make_harness(**refreshing(tmp_path, max_per_day=8000))
    # Act
    with caplog.at_level(logging.WARNING, logger="exporter"):
        dry.poll()
        dry_warnings = [r.getMessage() for r in caplog.records]
        sending.poll()
    # Check: up to 8,000 refreshes a day on top, which no longer fit
    warnings = [r.getMessage() for r in caplog.records if "Codat daily quota" in r.getMessage()]
    assert sending.scrape().value(ESTIMATE) - dry.scrape().value(ESTIMATE) == 8000
    assert dry_warnings == []
    assert len(warnings) == 1
    assert "refreshes at most: 8,000" in warnings[0]


def next_steps(harness: Harness, company: str) -> dict[str, tuple[str, str]]:
    """Per data type of the company, its next step's code (JSON) and words (page)."""
    api = harness.get(f"/api/v1/status?company={company}").json()
    page = harness.get(f"/?company={company}").text
    words = {row["data-type"]: row["next_step_cell"] for row in table_rows(page)}
    return {p["data_type"]: (p["next_step"], words[p["data_type"]]) for p in api["pairs"]}


def test_should_say_when_the_exporter_refreshes_a_failing_pair_next(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    # Prepare: failing for 30 h; refreshed at 12:00, and that refresh failed too
    harness = make_harness(**refreshing(tmp_path, max_per_company_per_day=100))
    company = failing(harness)
    # Act
    run_for(harness, 0.5)
    steps = next_steps(harness, company)
    body = harness.get(f"/api/v1/status?company={company}").json()
    # Check: the next one after 2 h (backoff 2), not "queue a sync"
    assert steps[COMPANY_TYPE] == ("retrying", "retrying (refresh due 14:00 UTC)")
    (pair,) = [p for p in body["pairs"] if p["data_type"] == COMPANY_TYPE]
    assert pair["refresh_due_at"] == "2026-11-23T14:00:00Z"


def test_should_say_when_the_days_refresh_cap_leaves_a_failing_pair_to_you(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    # Prepare: invoices and bills failing; one refresh a company a day
    harness = make_harness(**refreshing(tmp_path, max_per_company_per_day=1))
    company = failing(harness, data_types=("bills", COMPANY_TYPE))
    # Act
    run_for(harness, 0.5)
    steps = next_steps(harness, company)
    # Check: bills got the day's refresh; invoices none before midnight
    assert [data_type for _, _, data_type in queued(harness, company)] == ["bills"]
    assert steps[COMPANY_TYPE] == ("refresh_capped", "refreshes capped today: queue a sync")


def test_should_say_when_the_first_refresh_of_a_failing_pair_is_due(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    # Prepare: refreshes wait 4 h; the pair's latest sync failed about 3 h ago
    harness = make_harness(**refreshing(tmp_path, after="4h"))
    company = failing(harness)
    # Act
    run_for(harness, 0.25)
    steps = next_steps(harness, company)
    body = harness.get(f"/api/v1/status?company={company}").json()
    # Check: the exporter will act, not you, 4 h after the failure: later today
    assert queued(harness, company) == []
    assert steps[COMPANY_TYPE][0] == "retrying"
    (pair,) = [p for p in body["pairs"] if p["data_type"] == COMPANY_TYPE]
    due = datetime.fromisoformat(pair["refresh_due_at"])
    assert START + HOUR < due.timestamp() < START + 4 * HOUR
    assert steps[COMPANY_TYPE] == ("retrying", f"retrying (refresh due {due:%H:%M} UTC)")
