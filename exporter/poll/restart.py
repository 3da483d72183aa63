"""The restart from the state file, start to end, in one object.

``begin``, before the exporter listens: remove what writes cut short left (temporary files
of the state file and of the refresh journal beside it), read the file (bounded, every
section checked: ``exporter.poll.statefile``), and publish its rendering when this build
and configuration render the same text (``exporter.exposition.saved``), so that /metrics
serves every company from its first request.

``finish``, once it listens: decode the state after that first /metrics has been sent whole
(or ``DEFER_AT_MOST`` seconds have passed). Decoding holds the interpreter for a few seconds
at 10,000 companies, and a scrape served meanwhile would get a share of it only: waiting
brings the first scrape read whole from about 2.2 s after the start to under 1 s
(bench/RESULTS.md). The decoded state then restores the poller, the rendering published with
its companies (one publish, nothing rendered again); a state that cannot be used withdraws
the rendering: nothing is ever half loaded. The status page answers 503 "Loading the state
file" meanwhile, and the first cycle starts after.

Without a rendering to serve (none kept, another configuration, or unusable), and for
``--once``, the state is decoded in ``begin``: there is nothing to serve meanwhile.
"""

from __future__ import annotations

import logging
import threading
import zlib
from collections.abc import Iterator

from exporter.codat import refreshjournal
from exporter.config.sections import Config
from exporter.core import atomicfile
from exporter.core.clock import Clock
from exporter.exposition import saved
from exporter.exposition.render import Exposition
from exporter.exposition.store import SnapshotStore
from exporter.poll import statefile
from exporter.poll.fleet import nothing_yet
from exporter.poll.poller import Poller
from exporter.poll.statecodec import StateFileError

log = logging.getLogger(__name__)

DEFER_AT_MOST = 5.0
"""Seconds the decoding waits for a first scrape of the saved rendering."""
WAIT_SLICE = 0.1
"""Seconds between two looks at ``stop`` and the clock while it waits."""


def read_state_file(config: Config) -> statefile.StateFile | None:
    """Remove what writes of the state file and of the refresh journal beside it cut short
    left, then read the state file (if set)."""
    if not config.state.file:
        return None
    atomicfile.remove_leftovers(config.state.file)
    atomicfile.remove_leftovers(config.state.file + refreshjournal.SUFFIX)
    return statefile.read(config.state.file, config.shard, config.state.max_file_bytes)


class _FirstScrape(Exposition):
    """The saved rendering, served as it is, saying when a scrape of it was sent whole (the
    expositions the store makes of it as facts change share ``sent``)."""

    def __init__(self, restored: Exposition) -> None:
        super().__init__(restored.snapshot, restored.freshness, restored.interval,
                         restored.families, restored.rendered)  # fmt: skip
        self.sent = threading.Event()

    def pieces(self, now: float, extra: bytes = b"", compress: bool = False) -> Iterator[bytes]:
        yield from super().pieces(now, extra, compress)
        self.sent.set()


class Restart:
    def __init__(self, config: Config, store: SnapshotStore, poller: Poller, clock: Clock) -> None:
        self._config = config
        self._store = store
        self._poller = poller
        self._clock = clock
        self._found: statefile.StateFile | None = None
        """The file read and not decoded yet: its bytes (about 100 MB at 10,000
        companies) are let go once it is."""
        self._serving: _FirstScrape | None = None

    def begin(self, *, decode_now: bool = False) -> None:
        """Before listening: ``serve``, and ``resume`` at once when there is no rendering to
        serve meanwhile or ``decode_now`` (``--once``)."""
        if not self.serve() or decode_now:
            self.resume()

    def serve(self) -> bool:
        """Read the file and publish its rendering, when this configuration renders the same
        text; whether it did."""
        self._found = read_state_file(self._config)
        if self._found is not None:
            self._serving = self._serve_rendering(self._found)
        return self._serving is not None

    def finish(self, stop: threading.Event) -> None:
        """Once listening: wait for the first scrape of the rendering served (at most
        DEFER_AT_MOST seconds, less if ``stop`` is set), then ``resume``."""
        if self._found is None:
            return
        if self._serving is not None:
            deadline = self._clock.monotonic() + DEFER_AT_MOST
            while not stop.is_set() and self._clock.monotonic() < deadline:
                if self._serving.sent.wait(WAIT_SLICE):
                    break
        if not stop.is_set():
            self.resume()

    def resume(self) -> None:
        """Decode the state and restore the poller from it, or withdraw the rendering
        served meanwhile when it cannot be used."""
        found, served, self._found, self._serving = self._found, self._serving, None, None
        if found is None:
            return
        state = found.state()
        if state is not None:
            try:
                self._poller.restore(state, served)
                return
            except StateFileError as exc:
                log.warning("state file %s ignored: %s", found.path, exc)
        if self._store.current.snapshot.loading:
            self._store.publish(nothing_yet(self._config))

    def _serve_rendering(self, found: statefile.StateFile) -> _FirstScrape | None:
        """Publish the file's rendering, when this configuration renders the same text."""
        if not found.rendered:
            return None
        config = self._config
        try:
            restored = saved.restored(
                found.rendered, config.freshness, config.poll.interval, config.metrics
            )
        except (ValueError, KeyError, TypeError, OverflowError, zlib.error) as exc:
            log.warning("state file %s: its rendering is unusable (%s); rendering the state "
                        "instead", found.path, exc)  # fmt: skip
            return None
        if restored is None:
            log.info("state file %s: rendered under another configuration or version; "
                     "rendering the state instead", found.path)  # fmt: skip
            return None
        serving = _FirstScrape(restored)
        self._store.publish(serving)
        return serving
