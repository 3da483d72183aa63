"""The exposition currently served: swapped in whole when a poll publishes, read by every
scrape and page, and what ``/-/ready`` answers."""

from __future__ import annotations

import threading

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
        """Swap ``exposition`` in; /-/ready follows its snapshot (a restart's rendering is
        ready at once, and not any more if the state decoded after it is not)."""
        with self._lock:
            self._current = exposition
            if exposition.snapshot.ready:
                self.ready.set()
            else:
                self.ready.clear()
