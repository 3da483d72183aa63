"""Time as a dependency, so that tests move time instead of waiting for it.

Every component that reads the time or sleeps takes a ``Clock``. Production uses
``SystemClock``; tests pass a clock they advance by hand, so a Retry-After of 30 s or
an age of two days costs no real time.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock Unix time, for timestamps and ages."""

    def monotonic(self) -> float:
        """Monotonic seconds, for deadlines and durations."""

    def sleep(self, seconds: float) -> None:
        """Wait, e.g. between retries."""


class SystemClock:
    def __init__(self, stop: threading.Event | None = None) -> None:
        # Sleeping on an event lets shutdown interrupt a retry back-off at once.
        self._stop = stop or threading.Event()

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stop.wait(seconds)
