"""Restarts are not blind: ``state.file`` keeps what the exporter knew, and the first scrape
after a start already has it. Real HTTP against the simulator, injected clock."""

from __future__ import annotations

import gc
import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from exporter.cli import publish_rendering, resume
from exporter.collector import Exposition
from exporter.simulator import Fault
from exporter.simulator.server import COMPANIES, CONNECTIONS, DATA_STATUS, LISTING, SYNC_SETTINGS
from exporter.state import Snapshot
from exporter.statefile import (
    FORMAT,
    RENDERED,
    STATE,
    VERSION,
    SavedState,
    decode,
    load,
    pack,
    read,
    save,
    unpack,
)
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


def restarted_serving_first(
    make_harness: Callable[..., Harness], path: Path, **sections: object
) -> tuple[Harness, Callable[[], None]]:
    """As cli.run starts: the file's rendering published before it listens; the returned
    function decodes the state and resumes, as cli.run does once the server listens."""
    harness = make_harness(**with_state(path, **sections))
    found = read(path, harness.config.shard)
    assert found is not None
    rendered = publish_rendering(harness.store, found, harness.config)
    return harness, lambda: resume(harness.poller, harness.store, found, rendered, harness.config)


SNAPSHOT_FAMILIES = ("codat_data_type", "codat_company", "codat_connection", "codat_companies",
                     "codat_exporter_company_", "codat_exporter_last_poll")  # fmt: skip


def rendered_lines(text: str) -> list[str]:
    """The lines rendered from the snapshot (not the exporter's own counters)."""
    return [line for line in text.splitlines() if line.startswith(SNAPSHOT_FAMILIES)]


def header(path: Path) -> dict[str, object]:
    return dict(json.loads(path.read_bytes().partition(b"\n")[0]))


def documents(section: bytes) -> list[dict[str, object]]:
    """The state section's lines: the fleet's, then one per company."""
    return [json.loads(line) for line in section.split(b"\n")]


def rewritten(path: Path, shard: object, change: Callable[[list[object]], object]) -> None:
    """Apply ``change`` to the file's state lines and write it back, checksums and all."""
    saved_at, sections = unpack(path.read_bytes(), shard)  # type: ignore[arg-type]
    lines: list[object] = list(documents(sections[STATE]))
    change(lines)
    sections[STATE] = b"\n".join(json.dumps(line).encode() for line in lines)
    path.write_bytes(pack(shard, saved_at, sections))  # type: ignore[arg-type]


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


def damaged(data: bytes) -> bytes:
    """One byte of the state section changed."""
    at = len(data) - 10
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


@pytest.mark.parametrize(
    ("case", "content"),
    [
        ("not JSON", lambda good: b'{"format": "codat-freshness-exporter/state", "vers'),
        ("another program's file", lambda good: b'{"hello": "world"}'),
        ("the previous version", lambda good: json.dumps({"format": FORMAT, "version": VERSION - 1,
                                                          "companies": []}).encode()),
        ("a later version", lambda good: json.dumps({"format": FORMAT,
                                                     "version": VERSION + 1}).encode()),
        ("another shard", lambda good: json.dumps({"format": FORMAT, "version": VERSION,
                                                   "shard": [1, 2]}).encode()),
        ("cut short", lambda good: good[: len(good) // 2]),
        ("damaged", damaged),
    ],
)  # fmt: skip
def test_should_ignore_an_unusable_state_file_with_one_warning(
    make_harness: Callable[..., Harness],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    case: str,
    content: Callable[[bytes], bytes],
) -> None:
    # Prepare: a good file, then the case's
    path = tmp_path / "state.json"
    before = make_harness(**with_state(path))
    before.poll()
    before.close()
    path.write_bytes(content(path.read_bytes()))
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
    assert header(path)["format"] == FORMAT


def test_should_load_nothing_from_a_file_with_one_bad_company(
    make_harness: Callable[..., Harness], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: a good file whose last company is damaged
    path = tmp_path / "state.json"
    before = make_harness(**with_state(path))
    before.poll()
    before.close()
    rewritten(path, before.config.shard,
              lambda lines: lines[-1]["types"][0].__setitem__(2, "yesterday"))  # type: ignore[index]  # fmt: skip
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
    shard = harness.config.shard
    saved_at, sections = unpack(path.read_bytes(), shard)
    fleet, *companies = documents(sections[STATE])
    copies = [
        {**company, "id": f"{copy}-{company['id']}"} for copy in range(50) for company in companies
    ]
    data = pack(
        shard, saved_at, {STATE: b"\n".join(json.dumps(d).encode() for d in [fleet, *copies])}
    )
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
        unpaused = collections_during(lambda: documents(unpack(data, shard)[1][STATE]))
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
    again = documents(unpack((tmp_path / "again.json").read_bytes(), shard)[1][STATE])
    assert again[1:] == copies


def test_should_serve_the_saved_rendering_before_it_decodes_the_state(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    # Prepare: one exporter polls and stops
    path = tmp_path / "state.json"
    before = make_harness(**with_state(path))
    before.poll()
    expected = rendered_lines(before.get("/metrics").text)
    before.close()
    # Act: the next one publishes the file's rendering, is scraped, then resumes
    after, resume_now = restarted_serving_first(make_harness, path)
    served = rendered_lines(after.get("/metrics").text)
    page, api, ready = after.get("/"), after.get("/api/v1/status"), after.get("/-/ready")
    resume_now()
    resumed, page_after = rendered_lines(after.get("/metrics").text), after.get("/")
    # Check: the same text at once, ready; the status page waits for the decoded companies
    assert served == resumed == expected
    assert len(expected) > 100
    assert after.scrape().companies() == set(before.fleet.companies)
    assert ready.status_code == 200
    assert page.status_code == 503 and page.headers["Retry-After"] == "5"
    assert f"Loading the state file: {len(before.fleet.companies)} companies" in page.text
    assert api.status_code == 503 and "Loading the state file" in api.json()["error"]
    assert page_after.status_code == 200


def test_should_render_again_when_a_threshold_changed_since_the_save(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    # Prepare: saved with the default max age
    path = tmp_path / "state.json"
    before = make_harness(**with_state(path))
    before.poll()
    before.close()
    # Act: restarted with another max age for invoices
    freshness = {"from_sync_settings": True, "max_age": {"invoices": "2h"}}
    after, resume_now = restarted_serving_first(make_harness, path, freshness=freshness)
    first = after.scrape()
    resume_now()
    # Check: never the saved thresholds
    max_ages = {s.value for s in after.scrape().find("codat_data_type_max_age_seconds",
                                                      data_type="invoices")}  # fmt: skip
    assert first.companies() == set()
    assert max_ages == {7200.0}


def test_should_withdraw_the_rendering_when_the_state_beside_it_is_unusable(
    make_harness: Callable[..., Harness], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: a file whose rendering is whole and whose state is not
    path = tmp_path / "state.json"
    before = make_harness(**with_state(path))
    before.poll()
    before.close()
    rewritten(path, before.config.shard, lambda lines: lines.__setitem__(0, 7))
    # Act
    after, resume_now = restarted_serving_first(make_harness, path)
    served = after.scrape().companies()
    with caplog.at_level(logging.WARNING, logger="exporter"):
        resume_now()
    # Check: served while it could not be known, then nothing: never half loaded
    assert served == set(before.fleet.companies)
    assert after.scrape().companies() == set()
    assert after.get("/-/ready").status_code == 503
    assert [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]


def test_should_keep_the_rendering_beside_the_state(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    # Prepare
    path = tmp_path / "state.json"
    harness = make_harness(**with_state(path))
    # Act
    harness.poll()
    # Check: both sections, and the rendering is what /metrics served
    _, sections = unpack(path.read_bytes(), harness.config.shard)
    assert set(sections) == {RENDERED, STATE}
    found = read(path, harness.config.shard)
    assert found is not None
    served = harness.store.current
    restored = Exposition.restored(found.rendered, harness.config.freshness,
                                   harness.config.poll.interval)  # fmt: skip
    assert restored is not None
    now = harness.clock.time()
    assert restored.render(now) == served.render(now)


def test_should_not_be_ready_when_discovery_turned_on_since_the_save_has_not_succeeded(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    # Prepare: saved while the companies were listed by id (the rendering is reusable)
    path = tmp_path / "state.json"
    before = make_harness(state={"file": str(path)}, freshness={"from_sync_settings": True})
    before.poll()
    before.close()
    # Act: restarted with discovery on, Codat's listing failing
    discovering = {"ids": [], "discover": True}
    after, resume_now = restarted_serving_first(make_harness, path, companies=discovering)
    after.fleet.inject(LISTING, Fault("status", status=503, endpoint=COMPANIES))
    served = after.scrape().companies()
    resume_now()
    after.poll()
    # Check
    assert served == set(before.fleet.companies)
    ready = after.get("/-/ready")
    assert ready.status_code == 503
    assert "discovery has not succeeded" in ready.text


def rendering_with(change: Callable[[dict[str, Any]], object]) -> Callable[[bytes], bytes]:
    """A rendered section whose index line ``change`` edited."""

    def edit(section: bytes) -> bytes:
        line, _, rest = section.partition(b"\n")
        index = json.loads(line)
        change(index)
        return json.dumps(index).encode() + b"\n" + rest

    return edit


@pytest.mark.parametrize(
    ("case", "damage"),
    [
        ("nested too deep", lambda section: b"[" * 100_000),
        ("a data type that is not a name", rendering_with(lambda i: i["stale_at"][0].__setitem__(0, 5))),  # noqa: E501
        ("an infinite poll time", rendering_with(lambda i: i["snapshot"].__setitem__(2, math.inf))),
        ("a member past the end", rendering_with(lambda i: i["members"].__setitem__(0, 10**9))),
        ("an age count that is wrong", rendering_with(lambda i: i["ages"][0].__setitem__(1, 3))),
    ],
)  # fmt: skip
def test_should_render_the_state_when_the_saved_rendering_is_unusable(
    make_harness: Callable[..., Harness],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    case: str,
    damage: Callable[[bytes], bytes],
) -> None:
    # Prepare: a whole file (checksums recomputed) whose rendering is damaged
    path = tmp_path / "state.json"
    before = make_harness(**with_state(path))
    before.poll()
    expected = rendered_lines(before.get("/metrics").text)
    before.close()
    saved_at, sections = unpack(path.read_bytes(), before.config.shard)
    sections[RENDERED] = damage(sections[RENDERED])
    path.write_bytes(pack(before.config.shard, saved_at, sections))
    # Act
    with caplog.at_level(logging.WARNING, logger="exporter"):
        after, resume_now = restarted_serving_first(make_harness, path)
        resume_now()
    # Check: one line, and the state itself served, exactly
    assert [r for r in caplog.records if "its rendering is unusable" in r.getMessage()]
    assert rendered_lines(after.get("/metrics").text) == expected
    assert after.poll().all_succeeded


def test_should_ignore_a_state_with_a_time_that_is_not_finite(
    make_harness: Callable[..., Harness], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare
    path = tmp_path / "state.json"
    before = make_harness(**with_state(path))
    before.poll()
    before.close()
    rewritten(path, before.config.shard, lambda lines: lines[1].__setitem__("created", math.inf))  # type: ignore[index]
    # Act
    with caplog.at_level(logging.WARNING, logger="exporter"):
        after, resume_now = restarted_serving_first(make_harness, path)
        resume_now()
        result = after.poll()
    # Check: ignored with one line; the cycles go on
    assert [r for r in caplog.records if "expected a finite number" in r.getMessage()]
    assert result.all_succeeded
    assert after.scrape().companies() == set(before.fleet.companies)
