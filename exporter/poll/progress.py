"""How far a poll cycle is, for the operator watching a long first cycle after a start."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future

from exporter.core.clock import Clock
from exporter.core.phrases import plural
from exporter.core.snapshot import Outcome
from exporter.exposition.instruments import ExporterMetrics

log = logging.getLogger("exporter.poll.poller")

PROGRESS_EVERY = 30.0
"""Seconds between a long cycle's progress lines."""


class Progress:
    """How far a cycle is: ``codat_exporter_cycle_progress_ratio``, and a log line at least
    every PROGRESS_EVERY seconds of a long cycle::

        first cycle: 4,000 of 10,000 companies, about 10 min left at 600 requests/min

    ``done`` runs on the worker threads as each poll ends."""

    def __init__(
        self, total: int, clock: Clock, metrics: ExporterMetrics, first: bool, per_minute: int
    ) -> None:
        self._total = total
        self._clock = clock
        self._metrics = metrics
        self._what = "first cycle" if first else "poll cycle"
        self._per_minute = per_minute
        self._done = 0
        self._started = self._logged = clock.monotonic()
        self._lock = threading.Condition()
        metrics.cycle_progress.set(0 if total else 1)

    def wait_for_more(self, submitted: int) -> bool:
        """Wait (a second at most) for a poll to end; False once all ``submitted`` have."""
        with self._lock:
            if self._done >= submitted:
                return False
            self._lock.wait(timeout=1.0)
            return self._done < submitted

    def done(self, _future: Future[Outcome]) -> None:
        with self._lock:
            self._done += 1
            self._lock.notify_all()
            done, now = self._done, self._clock.monotonic()
            self._metrics.cycle_progress.set(done / self._total)
            if now - self._logged < PROGRESS_EVERY or done == self._total:
                return
            self._logged = now
        left = (self._total - done) * (now - self._started) / done
        log.info("%s: %s of %s, about %s left at %s requests/min", self._what,
                 f"{done:,}", plural(self._total, "company"), _minutes(left),
                 f"{self._per_minute:,}")  # fmt: skip


def _minutes(seconds: float) -> str:
    """``45 s``, ``6 min``, ``2 h 5 min``: how long is left, as a person would say it."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h {minutes % 60} min"
