"""Restarts are not blind: ``state.file`` keeps what the exporter knew, and the first scrape
after a start already has it. Real HTTP against the simulator, injected clock."""

from __future__ import annotations

import gc
import json
import logging
import math
import os
import signal
import time
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from exporter.codat.diagnostics import SyncDiagnostics
from exporter.codat.discovery import Discovery
from exporter.codat.sidevalues import SideValues
from exporter.config.sharding import Shard
from exporter.core.contract import COMPANIES, CONNECTIONS, DATA_STATUS, SYNC_SETTINGS
from exporter.core.snapshot import Snapshot
from exporter.exposition import saved
from exporter.exposition.render import Exposition
from exporter.poll.restart import Restart
from exporter.poll.statecodec import SavedState
from exporter.poll.statefile import (
    FORMAT,
    RENDERED,
    STATE,
    VERSION,
    decode,
    load,
    pack,
    read,
    save,
    unpack,
)
from exporter.simulator.faults import LISTING, Fault
from exporter.simulator.server import SimulatedCodat
from tests.harness import API_KEY, LISTEN_ANYWHERE, Harness, Program, parse_exposition
from tests.test_cli import run_cli

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


def saved_after_a_poll(make_harness: Callable[..., Harness], path: Path) -> Harness:
    """An exporter that polled once, wrote ``path`` and stopped (its config and fleet stay)."""
    before = make_harness(**with_state(path))
    before.poll()
    before.close()
    return before


def restarted(make_harness: Callable[..., Harness], path: Path, **sections: object) -> Harness:
    """A second exporter process, as app.run starts one: load the file, then serve."""
    harness = make_harness(**with_state(path, **sections))
    saved = load(path, harness.config.shard)
    if saved is not None:
        harness.poller.restore(saved)
    return harness


def restarted_serving_first(
    make_harness: Callable[..., Harness], path: Path, **sections: object
) -> tuple[Harness, Callable[[], None]]:
    """As app.run starts: the file's rendering published before it listens; the returned
    function decodes the state and resumes, as app.run does once the server listens."""
    harness = make_harness(**with_state(path, **sections))
    assert read(path, harness.config.shard) is not None
    restart = Restart(harness.config, harness.store, harness.poller, harness.clock)
    restart.serve()
    return harness, restart.resume


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
    saved_after_a_poll(make_harness, path)
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


def with_head(change: Callable[[dict[str, Any]], object]) -> Callable[[bytes], bytes]:
    """Bytes whose first line, a JSON object, ``change`` edited, the rest as it was: a whole
    file's header line, or a rendered section's index line."""

    def edit(good: bytes) -> bytes:
        line, _, rest = good.partition(b"\n")
        first = json.loads(line)
        change(first)
        return json.dumps(first).encode() + b"\n" + rest

    return edit


def with_state_section(section: bytes) -> Callable[[bytes], bytes]:
    """A whole file, checksums and all, whose state section is ``section``."""

    def edit(good: bytes) -> bytes:
        saved_at, sections = unpack(good, Shard())
        return pack(Shard(), saved_at, {**sections, STATE: section})

    return edit


def damaged(data: bytes) -> bytes:
    """One byte of the state section changed."""
    at = len(data) - 10
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


@pytest.mark.parametrize(
    ("case", "content"),
    [
        ("not JSON", lambda good: b'{"format": "codat-freshness-exporter/state", "vers'),
        ("another program's file", lambda good: b'{"hello": "world"}'),
        ("a version before 3", lambda good: json.dumps({"format": FORMAT, "version": 2,
                                                        "companies": []}).encode()),
        ("a later version", lambda good: json.dumps({"format": FORMAT,
                                                     "version": VERSION + 1}).encode()),
        ("another shard", lambda good: json.dumps({"format": FORMAT, "version": VERSION,
                                                   "shard": [1, 2]}).encode()),
        ("cut short", lambda good: good[: len(good) // 2]),
        ("damaged", damaged),
        ("a later version, whole", with_head(lambda h: h.__setitem__("version", VERSION + 1))),
        ("another shard's, whole", lambda good: pack(Shard(1, 2), *unpack(good, Shard()))),
        ("a header field of the wrong type", with_head(lambda h: h.__setitem__("sections", "state"))),  # noqa: E501
        ("a state nested too deep", with_state_section(b"[" * 100_000)),
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
    saved_after_a_poll(make_harness, path)
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
    before = saved_after_a_poll(make_harness, path)
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
    (tmp_path / "large.json").write_bytes(data)
    found = read(tmp_path / "large.json", shard)  # as app.run reads it at start
    assert found is not None
    loaded: list[SavedState | None] = []

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
        starting = collections_during(lambda: loaded.append(found.state()))
        encoding = collections_during(lambda: save(tmp_path / "again.json", states[0], shard))
    finally:
        gc.callbacks.remove(record)
    # Check: built unpaused, the same containers are scanned again and again; decoded or
    # encoded, at most once, by the young-generation pass the collector owes when it resumes.
    # The collector is on again, and the state whole
    assert len(unpaused) > 1 and max(unpaused) > 0, "too small a state to show anything"
    assert decoding in ([], [0])
    assert starting in ([], [0])
    assert encoding in ([], [0])
    assert gc.isenabled()
    assert len(states[0].companies) == 400
    assert loaded[0] is not None and len(loaded[0].companies) == 400
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
    saved_after_a_poll(make_harness, path)
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
    before = saved_after_a_poll(make_harness, path)
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
    # Check: the rendering, the state and the components' sections, and the rendering is
    # what /metrics served
    _, sections = unpack(path.read_bytes(), harness.config.shard)
    assert set(sections) == {RENDERED, STATE, Discovery.key, SideValues.key, SyncDiagnostics.key}
    found = read(path, harness.config.shard)
    assert found is not None
    served = harness.store.current
    restored = saved.restored(found.rendered, harness.config.freshness,
                              harness.config.poll.interval)  # fmt: skip
    assert restored is not None
    now = harness.clock.time()
    assert restored.with_facts(served.snapshot.facts).render(now) == served.render(now)


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


def rendering_bytes(
    change: Callable[[dict[str, Any], bytearray], object],
) -> Callable[[bytes], bytes]:
    """A rendered section whose index line and the bytes after it ``change`` edited."""

    def edit(section: bytes) -> bytes:
        line, _, rest = section.partition(b"\n")
        index, blobs = json.loads(line), bytearray(rest)
        change(index, blobs)
        return json.dumps(index).encode() + b"\n" + bytes(blobs)

    return edit


def template_not_inflating(index: dict[str, Any], blobs: bytearray) -> None:
    """The first age template's zlib header damaged (it follows the gzip members)."""
    blobs[sum(index["members"])] ^= 1


def first_time_infinite(index: dict[str, Any], blobs: bytearray) -> None:
    """The first time after the age templates and their timestamps (a sync time) +inf."""
    at = sum(index["members"]) + sum(size + 8 * count for size, count in index["ages"])
    blobs[at : at + 8] = array("d", [math.inf]).tobytes()


def age_count_moved(index: dict[str, Any], blobs: bytearray) -> None:
    """The last age template's last timestamp counted in the array after it: every size
    still adds up, but the template has one more %r than it has timestamps."""
    index["ages"][-1][1] -= 1
    index["synced"][0][1] += 1


@pytest.mark.parametrize(
    ("case", "damage"),
    [
        ("nested too deep", lambda section: b"[" * 100_000),
        ("a data type that is not a name", with_head(lambda i: i["stale_at"][0].__setitem__(0, 5))),
        ("an infinite poll time", with_head(lambda i: i["snapshot"].__setitem__(2, math.inf))),
        ("a member past the end", with_head(lambda i: i["members"].__setitem__(0, 10**9))),
        ("an age count that is wrong", with_head(lambda i: i["ages"][0].__setitem__(1, 3))),
        ("an index that is not an object", lambda section: b"[]\n" + section.partition(b"\n")[2]),
        ("a synced data type that is not a name", with_head(lambda i: i["synced"][0].__setitem__(0, 5))),  # noqa: E501
        ("an age template that does not inflate", rendering_bytes(template_not_inflating)),
        ("a time that is not finite", rendering_bytes(first_time_infinite)),
        ("an age count moved to the next array", rendering_bytes(age_count_moved)),
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
    before = saved_after_a_poll(make_harness, path)
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


@pytest.mark.parametrize(
    ("case", "sections", "present", "absent"),
    [
        ("another poll interval", {"poll": {"interval": "1m"}},
         "Polls run every 1m.", "Polls run every 5m."),
        ("a family denied since", {"metrics": {"denylist": ["codat_data_type_status"]}},
         "codat_data_type_max_age_seconds{", "codat_data_type_status{"),
    ],
)  # fmt: skip
def test_should_render_again_when_the_configuration_changes_the_text(
    make_harness: Callable[..., Harness],
    tmp_path: Path,
    case: str,
    sections: dict[str, object],
    present: str,
    absent: str,
) -> None:
    # Prepare: saved with the defaults
    path = tmp_path / "state.json"
    before = saved_after_a_poll(make_harness, path)
    # Act: restarted with the case's configuration
    after, resume_now = restarted_serving_first(make_harness, path, **sections)
    first = after.scrape()
    resume_now()
    text = after.get("/metrics").text
    # Check: never the saved text
    assert first.companies() == set()
    assert after.scrape().companies() == set(before.fleet.companies)
    assert present in text
    assert absent not in text


def test_should_list_companies_again_only_when_the_restored_listing_is_due(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    # Prepare: companies listed at the first poll, the file saved 30 minutes later, the
    # exporter restarted 10 minutes after that
    path = tmp_path / "state.json"
    hourly = {"ids": [], "discover": True, "discovery_interval": "1h"}
    before = make_harness(**with_state(path, companies=hourly))
    before.poll()
    before.clock.advance(30 * 60)
    before.poll()
    before.close()
    before.clock.advance(10 * 60)
    after = restarted(make_harness, path, companies=hourly)
    clock = after.clock

    def listings() -> list[float]:
        return [at for at, route, _, _ in after.codat.log if route == COMPANIES]

    first = listings()
    listed_at = first[0]
    # Act: polls until a second short of the hour since the listing, then past it
    after.poll()
    clock.advance(listed_at + 3600 - 1 - clock.time())
    after.poll()
    not_yet = listings()
    clock.advance(2)
    after.poll()
    due = listings()
    # Check
    assert len(first) == 1
    assert not_yet == first
    assert len(due) == 2 and 3600 <= due[1] - listed_at <= 3600 + 2


def test_should_replace_the_restored_values_at_the_first_poll_after_a_restart(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    # Prepare: saved, then restarted a minute later
    path = tmp_path / "state.json"
    before = saved_after_a_poll(make_harness, path)
    before.clock.advance(60)
    after, resume_now = restarted_serving_first(make_harness, path)
    resume_now()
    restored = series(after, LAST_SUCCESS)
    # Act
    result = after.poll()
    # Check: every company is the new poll's, not frozen at what the file said
    polled = series(after, LAST_SUCCESS)
    assert result.all_succeeded
    assert polled.keys() == restored.keys() and len(polled) == len(before.fleet.companies)
    assert min(polled.values()) > max(restored.values())


@pytest.mark.parametrize(
    ("case", "make", "level", "said"),
    [
        ("missing", lambda path: None, logging.INFO, "does not exist yet"),
        ("a directory", Path.mkdir, logging.WARNING, "ignored: a directory, not a regular file"),
    ],
)  # fmt: skip
def test_should_start_without_a_state_file_it_cannot_read_saying_so_once(
    make_harness: Callable[..., Harness],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    case: str,
    make: Callable[[Path], object],
    level: int,
    said: str,
) -> None:
    # Prepare
    path = tmp_path / "state.json"
    make(path)
    harness = make_harness(**with_state(path))
    # Act: read as app.run reads it at start, then a cycle
    with caplog.at_level(logging.INFO, logger="exporter"):
        found = read(path, harness.config.shard)
        result = harness.poll()
    # Check: one line of the file's, and the cycles go on
    lines = [
        (r.levelno, r.getMessage()) for r in caplog.records if r.name == "exporter.poll.statefile"
    ]
    assert found is None
    assert len(lines) == 1 and lines[0][0] == level and said in lines[0][1], lines
    assert result.all_succeeded


def test_should_write_nothing_and_count_no_error_without_a_state_file(
    make_harness: Callable[..., Harness],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Prepare: state.file unset; a misplaced file would land in the working directory
    monkeypatch.chdir(tmp_path)
    harness = make_harness()
    # Act
    with caplog.at_level(logging.DEBUG, logger="exporter"):
        harness.poll()
    # Check
    assert harness.scrape().value("codat_exporter_state_file_errors_total") == 0
    assert [r.getMessage() for r in caplog.records if "state file" in r.getMessage()] == []
    assert list(tmp_path.iterdir()) == []


def test_should_warn_again_when_writing_fails_after_it_had_recovered(
    make_harness: Callable[..., Harness], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: the file's directory missing at first
    directory = tmp_path / "state"
    path = directory / "state.json"
    harness = make_harness(**with_state(path))
    # Act: fails, is written twice, fails again
    with caplog.at_level(logging.INFO, logger="exporter"):
        harness.poll()
        directory.mkdir()
        harness.poll()
        harness.poll()
        path.unlink()
        directory.rmdir()
        harness.poll()
    # Check: each failure after a success warns; the recovery is said once
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    failures = [level for level, m in messages if "cannot write the state file" in m]
    assert failures == [logging.WARNING, logging.WARNING]
    assert len([m for _, m in messages if "written again" in m]) == 1
    assert harness.scrape().value("codat_exporter_state_file_errors_total") == 2


DECODED = "companies as of its save"
"""The end of the line the exporter logs once it has decoded its state file."""


def exporter_config(tmp_path: Path, codat: SimulatedCodat, freshness: str = "{}") -> Path:
    """A configuration for the exporter's own process: discovery on, a state file."""
    path = tmp_path / "config.yaml"
    path.write_text(
        f"codat: {{base_url: '{codat.url}', api_key: '${{TEST_CODAT_KEY}}', timeout: 2s}}\n"
        f"poll: {{interval: 10s}}\ncompanies: {{ids: [], discover: true}}\n"
        f"state: {{file: '{tmp_path / 'state.json'}'}}\nfreshness: {freshness}\n"
    )
    return path


def test_should_resume_from_the_state_file_with_once(tmp_path: Path, codat: SimulatedCodat) -> None:
    # Prepare: a first --once run writes the file
    config = exporter_config(tmp_path, codat)
    first = run_cli("--config.file", str(config), "--once")
    counted = dict(codat.requests)
    # Act
    second = run_cli("--config.file", str(config), "--once")
    # Check: resumed, so one dataStatus per company and nothing the file holds
    made = {route: n - counted.get(route, 0) for route, n in codat.requests.items()}
    assert first.returncode == 0 and second.returncode == 0, second.stderr
    assert {route: n for route, n in made.items() if n} == {DATA_STATUS: len(codat.fleet.companies)}
    assert DECODED in second.stderr


@pytest.mark.parametrize(
    ("case", "freshness", "listening_first"),
    [
        ("its rendering still holds", "{}", True),
        ("a threshold changed since", "{max_age: {invoices: 2h}}", False),
    ],
)  # fmt: skip
def test_should_listen_while_decoding_only_with_the_saved_rendering_to_serve(
    tmp_path: Path, codat: SimulatedCodat, case: str, freshness: str, listening_first: bool
) -> None:
    # Prepare: a --once run writes the file; then the configuration changes, or not
    run_cli("--config.file", str(exporter_config(tmp_path, codat)), "--once")
    config = exporter_config(tmp_path, codat, freshness)
    env = {**os.environ, "TEST_CODAT_KEY": API_KEY}
    # Act
    with Program("--config.file", str(config), "--web.listen-address", LISTEN_ANYWHERE,
                 env=env) as program:  # fmt: skip
        url = program.url()
        first = requests.get(f"{url}/metrics", timeout=5)
        deadline = time.monotonic() + 20
        while DECODED not in program.stderr and time.monotonic() < deadline:
            time.sleep(0.05)
        program.process.send_signal(signal.SIGTERM)
        code = program.process.wait(timeout=15)
    log = program.stderr
    # Check: the first scrape has every company either way: the saved rendering served
    # while the state decodes, or the state decoded before the first scrape can come
    companies = {s.labels["company_id"] for s in parse_exposition(first.text) if s.name == UP}
    assert code == 0, log
    assert DECODED in log, log
    assert companies == set(codat.fleet.companies)
    assert (log.index("serving metrics at") < log.index(DECODED)) == listening_first
    assert "Traceback" not in log


def test_should_keep_on_premise_marks_and_each_sync_s_connection_but_read_older_files_too(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    # Prepare: a company on QuickBooks Desktop; an exporter polls (reading pull operations
    # of the syncs that are not Complete) and saves; a copy of its file as an older
    # version wrote it, without either
    path, older = tmp_path / "state.json", tmp_path / "older.json"
    before = make_harness(**with_state(path))
    fleet = before.fleet
    desktop = sorted(fleet.companies)[1]
    fleet.companies[desktop].platform = ("pqsw", "QuickBooks Desktop")
    before.poll()
    before.close()
    snapshot = before.store.current.snapshot
    syncs = {(c, d): s.connection_id for c, k in snapshot.companies.items()
             for d, s in k.syncs.items()}  # fmt: skip
    older.write_bytes(path.read_bytes())

    def without_them(lines: list[Any]) -> None:
        for line in lines[1:]:
            line["connections"] = [c[:4] for c in line["connections"]]
            line["syncs"] = {d: s[:8] for d, s in line["syncs"].items()}

    rewritten(older, before.config.shard, without_them)
    # Act
    saved = load(path, before.config.shard)
    old = load(older, before.config.shard)
    # Check
    assert saved is not None and old is not None
    marked = {c for c, k in saved.companies.items() if any(x.on_premise for x in k.connections)}
    assert marked == {desktop}
    assert syncs and all(syncs.values())
    assert {(c, d): s.connection_id for c, k in saved.companies.items()
            for d, s in k.syncs.items()} == syncs  # fmt: skip
    assert not any(x.on_premise for k in old.companies.values() for x in k.connections)
    assert {s.connection_id for k in old.companies.values() for s in k.syncs.values()} == {""}
