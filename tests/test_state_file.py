"""Restarts are not blind: ``state.file`` keeps what the exporter knew, and the first scrape
after a start already has it. Real HTTP against the simulator, injected clock."""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from exporter.collector import Exposition
from exporter.simulator.server import CONNECTIONS, DATA_STATUS, SYNC_SETTINGS
from exporter.state import Snapshot
from exporter.statefile import FORMAT, VERSION, SavedState, decode, load, save
from tests.harness import Harness

UP = "codat_exporter_company_up"
LAST_SUCCESS = "codat_exporter_company_last_poll_success_timestamp_seconds"
SYNCED = "codat_data_type_last_successful_sync_timestamp_seconds"


def with_state(path: Path, **sections: object) -> dict[str, object]:
    return {
        "state": {"file": str(path)},
        "companies": {"ids": [], "discover": True},
        "freshness": {"from_sync_settings": True},
        **sections,
    }


def restarted(make_harness: Callable[..., Harness], path: Path, **sections: object) -> Harness:
    """A second exporter process, as cli.run starts one: load the file, then serve."""
    harness = make_harness(**with_state(path, **sections))
    saved = load(path, harness.config.shard)
    if saved is not None:
        harness.poller.restore(saved)
    return harness


def series(harness: Harness, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value for s in harness.scrape().find(name)}


def test_should_serve_the_last_known_values_before_the_first_poll_after_a_restart(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    # Prepare: one exporter polls twice and stops
    path = tmp_path / "state.json"
    before = make_harness(**with_state(path))
    before.poll()
    before.clock.advance(300)
    before.poll()
    expected = {name: series(before, name) for name in (UP, LAST_SUCCESS, SYNCED)}
    before.close()
    before.clock.advance(60)
    # Act: the next one starts and is scraped before it polls
    after = restarted(make_harness, path)
    ready = after.get("/-/ready")
    # Check
    assert ready.status_code == 200
    assert {name: series(after, name) for name in expected} == expected
    assert expected[UP] and expected[SYNCED]


def test_should_resume_without_refetching_what_the_file_holds(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    # Prepare
    path = tmp_path / "state.json"
    before = make_harness(**with_state(path))
    before.poll()
    before.close()
    after = restarted(make_harness, path)
    codat = after.codat
    counted = dict(codat.requests)
    # Act
    result = after.poll()
    # Check: one dataStatus per company; discovery, names, connections, settings not due
    made = {route: n - counted.get(route, 0) for route, n in codat.requests.items()}
    made = {route: n for route, n in made.items() if n}
    assert result.all_succeeded
    assert made == {DATA_STATUS: len(after.fleet.companies)}
    assert CONNECTIONS not in made and SYNC_SETTINGS not in made


@pytest.mark.parametrize(
    ("case", "content"),
    [
        ("not JSON", b'{"format": "codat-freshness-exporter/state", "vers'),
        ("another program's file", b'{"hello": "world"}'),
        ("another version", json.dumps({"format": FORMAT, "version": VERSION + 1}).encode()),
        (
            "another shard",
            json.dumps({"format": FORMAT, "version": VERSION, "shard": [1, 2]}).encode(),
        ),
    ],
)
def test_should_ignore_an_unusable_state_file_with_one_warning(
    make_harness: Callable[..., Harness],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    case: str,
    content: bytes,
) -> None:
    # Prepare
    path = tmp_path / "state.json"
    path.write_bytes(content)
    # Act
    with caplog.at_level(logging.WARNING, logger="exporter"):
        harness = restarted(make_harness, path)
        not_ready = harness.get("/-/ready").status_code
        result = harness.poll()
    # Check: started without it, logged once, and replaced it at the end of the cycle
    warnings = [r.getMessage() for r in caplog.records if "state file" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "ignored" in warnings[0]
    assert not_ready == 503
    assert result.all_succeeded
    assert json.loads(path.read_bytes())["format"] == FORMAT


def test_should_load_nothing_from_a_file_with_one_bad_company(
    make_harness: Callable[..., Harness], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: a good file whose last company is damaged
    path = tmp_path / "state.json"
    before = make_harness(**with_state(path))
    before.poll()
    before.close()
    document = json.loads(path.read_bytes())
    document["companies"][-1]["types"][0][2] = "yesterday"
    path.write_text(json.dumps(document))
    # Act
    with caplog.at_level(logging.WARNING, logger="exporter"):
        after = restarted(make_harness, path)
    # Check: never half loaded
    assert after.scrape().companies() == set()
    assert any("malformed content" in r.getMessage() for r in caplog.records)


def test_should_keep_polling_when_the_state_file_cannot_be_written(
    make_harness: Callable[..., Harness], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: the file's directory does not exist
    path = tmp_path / "missing" / "state.json"
    harness = make_harness(**with_state(path))
    # Act
    with caplog.at_level(logging.WARNING, logger="exporter"):
        first, second = harness.poll(), harness.poll()
    # Check: counted every cycle, said once
    assert first.all_succeeded and second.all_succeeded
    assert harness.scrape().value("codat_exporter_state_file_errors_total") == 2
    assert len([r for r in caplog.records if "cannot write the state file" in r.getMessage()]) == 1


def test_should_leave_the_previous_file_whole_until_the_new_one_is_complete(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    # Prepare
    path = tmp_path / "state.json"
    harness = make_harness(**with_state(path))
    harness.poll()
    # Act
    harness.poll()
    # Check: no temporary file left behind, and the file decodes whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]
    assert load(path, harness.config.shard) is not None


def test_should_publish_the_first_cycle_as_companies_complete(
    make_harness: Callable[..., Harness],
) -> None:
    # Prepare: 60 requests a minute, so each company's poll moves the clock a second or more
    harness = make_harness(
        codat={"max_requests_per_minute": 60, "max_concurrency": 1},
        connections={"enabled": False},
        diagnostics={"pull_operations": False, "sync_durations": False},
    )
    harness.codat.latency = 0.05  # real time between polls, for the cycle thread to look in
    published: list[Exposition] = []
    original = harness.store.publish

    def record(exposition: Exposition) -> None:
        published.append(exposition)
        original(exposition)

    harness.store.publish = record  # type: ignore[method-assign]
    # Act
    harness.poll()
    # Check: partial snapshots before the complete one, each one larger
    partial = [e.snapshot for e in published if not e.snapshot.complete]
    assert partial, "nothing was published before the cycle ended"
    sizes = [len(s.companies) for s in partial]
    assert sizes == sorted(sizes) and 0 < sizes[0] < len(harness.fleet.companies)
    assert all(s.ready for s in partial)
    assert published[-1].snapshot.complete
    assert not Snapshot().ready


def test_should_say_how_far_a_long_cycle_is(
    make_harness: Callable[..., Harness], caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: 6 requests a minute: each poll takes 10 s of the injected clock
    harness = make_harness(
        codat={"max_requests_per_minute": 6, "max_concurrency": 1},
        poll={"interval": "10m"},
        connections={"enabled": False},
        diagnostics={"pull_operations": False, "sync_durations": False},
    )
    # Act
    with caplog.at_level(logging.INFO, logger="exporter"):
        harness.poll()
    # Check
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("first cycle:")]
    assert lines, "no progress line in a cycle of more than a minute"
    assert "of 8 companies, about" in lines[0]
    assert lines[0].endswith("left at 6 requests/min")
    assert harness.scrape().value("codat_exporter_cycle_progress_ratio") == 1


def test_should_spread_the_first_cycles_connections_when_they_would_not_fit(
    make_harness: Callable[..., Harness],
) -> None:
    # Prepare: 8 companies x 2 requests do not fit 3 requests a minute in 5m
    harness = make_harness(
        codat={"max_requests_per_minute": 3},
        companies={"ids": [], "discover": True},
        diagnostics={"pull_operations": False, "sync_durations": False},
    )
    # Act
    harness.poll()
    first = harness.codat.requests.get(CONNECTIONS, 0)
    fetched: set[str] = set()
    cycles = 0
    while fetched != set(harness.fleet.companies) and cycles < 10:
        harness.clock.advance(300)
        harness.poll()
        cycles += 1
        fetched = {c for _, route, c, _ in harness.codat.log if route == CONNECTIONS and c}
    # Check: none in the first cycle, then spread over the next ones until every company's
    assert first == 0
    assert fetched == set(harness.fleet.companies)
    assert cycles > 1, "not spread: all fetched in the second cycle"


def test_should_not_collect_garbage_while_a_large_state_is_decoded_or_encoded(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    # Prepare: the fleet's file with its companies copied 50 times (400 companies)
    path = tmp_path / "state.json"
    harness = make_harness(**with_state(path))
    harness.poll()
    document = json.loads(path.read_bytes())
    document["companies"] = [
        {**company, "id": f"{copy}-{company['id']}"}
        for copy in range(50)
        for company in document["companies"]
    ]
    data = json.dumps(document).encode()
    shard = harness.config.shard
    watching, started = [False], []
    states: list[SavedState] = []

    def record(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and watching[0]:
            started.append(info["generation"])

    def collections_during(action: Callable[[], object]) -> list[int]:
        gc.collect()
        started.clear()
        watching[0] = True
        action()
        watching[0] = False
        return list(started)

    gc.callbacks.append(record)
    try:
        unpaused = collections_during(lambda: json.loads(data))
        # Act
        decoding = collections_during(lambda: states.append(decode(data, shard)))
        encoding = collections_during(lambda: save(tmp_path / "again.json", states[0], shard))
    finally:
        gc.callbacks.remove(record)
    # Check: built unpaused, the same containers are scanned again and again; decoded or
    # encoded, at most once, by the young-generation pass the collector owes when it resumes.
    # The collector is on again, and the state whole
    assert len(unpaused) > 1 and max(unpaused) > 0, "too small a state to show anything"
    assert decoding in ([], [0])
    assert encoding in ([], [0])
    assert gc.isenabled()
    assert len(states[0].companies) == 400
    assert json.loads((tmp_path / "again.json").read_bytes())["companies"] == document["companies"]
