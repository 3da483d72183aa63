"""The exposition currently served: swapped in whole when a poll publishes, read by every
scrape and page, and what ``/-/ready`` answers. It owns the facts (``Facts``): a part that
learns one notes it here, and every exposition served carries the facts known."""

from __future__ import annotations

import threading
from collections.abc import Callable

from exporter.core.snapshot import Facts
from exporter.exposition.render import Exposition


class SnapshotStore:
    """Holds the current snapshot and its rendered exposition; swaps are atomic."""

    def __init__(self, initial: Exposition) -> None:
        self._current = initial
        self._lock = threading.Lock()
        self.ready = threading.Event()
        """Set once a snapshot that is ``ready`` has been published: /-/ready answers 200."""

    @property
    def current(self) -> Exposition:
        return self._current

    def publish(self, exposition: Exposition) -> None:
        """Swap ``exposition`` in, with the facts known; /-/ready follows its snapshot (a
        restart's rendering is ready at once, and not any more if the state decoded after
        it is not)."""
        with self._lock:
            facts = self._current.snapshot.facts
            if exposition.snapshot.facts != facts:
                exposition = exposition.with_facts(facts)
            self._current = exposition
            if exposition.snapshot.ready:
                self.ready.set()
            else:
                self.ready.clear()

    def note(self, change: Callable[[Facts], Facts]) -> None:
        """Apply ``change`` to the facts served (a ``NoteFacts``): a copy of the current
        exposition with the new facts, nothing rendered again. Called by the worker
        threads, at every answer from Codat."""
        with self._lock:
            current = self._current
            facts = change(current.snapshot.facts)
            if facts != current.snapshot.facts:
                self._current = current.with_facts(facts)
