"""A restart from the state file, owned by ``exporter.poll.restart``: the saved rendering
served at once, and the state decoded only once the first scrape of it was sent whole (or
a few seconds have passed, or never when stopped meanwhile). Real HTTP against the
simulator, injected clock."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from exporter.poll.restart import DEFER_AT_MOST, Restart
from tests.harness import Harness
from tests.poll.test_statefile import saved_after_a_poll, with_state


def started(harness: Harness) -> tuple[Restart, threading.Event, threading.Thread]:
    """A restart that serves the file's rendering, and its ``finish`` running in a thread,
    as the exporter runs it once it listens."""
    restart = Restart(harness.config, harness.store, harness.poller, harness.clock)
    restart.begin()
    stop = threading.Event()
    finishing = threading.Thread(target=restart.finish, args=(stop,), daemon=True)
    finishing.start()
    return restart, stop, finishing


def test_should_decode_the_state_only_once_the_first_scrape_was_sent_whole(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    # Prepare: one exporter polled and stopped; the next serves the file's rendering
    path = tmp_path / "state.json"
    before = saved_after_a_poll(make_harness, path)
    after = make_harness(**with_state(path))
    _, _, finishing = started(after)
    # Act
    finishing.join(0.5)
    waited = finishing.is_alive()
    page_before = after.get("/")
    scraped = after.scrape().companies()
    finishing.join(30)
    page_after = after.get("/")
    # Check: every company at once; the page waits for the decoding, which waits for the
    # scrape (the injected clock never reaches DEFER_AT_MOST)
    assert waited, "decoded before the first scrape"
    assert page_before.status_code == 503 and "Loading the state file" in page_before.text
    assert scraped == set(before.fleet.companies)
    assert not finishing.is_alive()
    assert page_after.status_code == 200
    assert after.scrape().companies() == set(before.fleet.companies)


def test_should_decode_the_state_after_a_few_seconds_without_a_scrape(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    # Prepare
    path = tmp_path / "state.json"
    saved_after_a_poll(make_harness, path)
    after = make_harness(**with_state(path))
    _, _, finishing = started(after)
    finishing.join(0.2)
    # Act: no scrape comes
    after.clock.advance(DEFER_AT_MOST)
    finishing.join(30)
    # Check
    assert not finishing.is_alive()
    assert after.get("/").status_code == 200


def test_should_not_decode_the_state_when_stopped_while_waiting(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    # Prepare
    path = tmp_path / "state.json"
    saved_after_a_poll(make_harness, path)
    after = make_harness(**with_state(path))
    _, stop, finishing = started(after)
    finishing.join(0.2)
    # Act: SIGTERM before any scrape
    stop.set()
    finishing.join(30)
    # Check: it returns at once, the rendering still served and nothing decoded
    assert not finishing.is_alive()
    assert after.get("/").status_code == 503
    assert after.store.current.snapshot.loading
