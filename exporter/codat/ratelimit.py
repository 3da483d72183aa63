"""One request rate for the whole Codat client, however many worker threads share it.

Codat answers 429 with ``Retry-After`` when a client goes over its limits (1,000 requests a
minute per IP, the daily quota). Workers that each backed off on their own would keep the
others hammering a limit already hit, so every request first takes a turn here:

- ``codat.max_requests_per_minute`` (default 600) is kept with GCRA, a token bucket without
  the tokens: requests are spread one every 60/limit seconds (0.1 s at 600), with a burst
  allowance of one second's worth (10 at 600) after a quiet spell, never 600 at the top of
  each minute. No 60 s window holds more than limit + burst - 1 requests.
- A 429's ``Retry-After`` pauses the whole client: ``pause_until`` holds back every caller,
  waiting or yet to come, and afterwards requests resume at the steady rate, without the
  burst, so the end of a pause is not met with a volley.

Callers queue first come, first served, and only the head of the queue waits on the clock;
the others wait for their turn. Exactly one thread sleeps at a time, so a test clock whose
``sleep()`` just moves time on gives the same deterministic timeline with many threads as
with one. The clock's ``sleep()`` must either wait or advance the clock; one that returns
without either would make the head spin.

A caller whose turn cannot come by its deadline is told at once (``acquire`` returns False)
rather than after waiting: during a long pause, polls fail fast as rate-limited instead of
holding workers.

Two priorities, so that the rate limit, when it binds, costs the values /metrics is for
last: ``FIRST`` (dataStatus, the company list, a name not known yet, refreshes) and
``REST`` (pull operations, connections, sync settings, integrations, a known name again).
A waiting FIRST request goes ahead of every waiting REST one, and the poll cycle
``reserve``s the turns of the FIRST requests it still has to make: a REST request is
refused at once (to be made at a later poll) when taking its turn would leave them too few
turns before the reservation's end. So REST requests use only what is left: the turns the
FIRST ones leave idle, and the cycle's end once they are all made. A reservation that ends
at once (a cold start's) refuses every REST request until the FIRST ones are all made.

Sample timeline at 600 a minute, burst 10, from idle::

    t=0.0  requests 1-10      (the burst)
    t=0.1  request 11, t=0.2 request 12, ...   (one every 0.1 s)
    429 with Retry-After: 30 at t=5 -> pause_until(35): nothing until t=35, then one every 0.1 s
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from enum import IntEnum

from exporter.core.clock import Clock

# Sums of the interval in floating point drift by picoseconds; a turn due within this much
# is taken now, not after a pointless sleep.
_SLACK = 1e-6


class Priority(IntEnum):
    FIRST = 0
    """What /metrics is for: dataStatus, the company list, a name not known yet (a label),
    and refreshes (few, each already counted against their caps)."""
    REST = 1
    """What uses only the turns FIRST requests leave: pull operations, connections, sync
    settings, integrations, and names already known."""


FIRST = Priority.FIRST
REST = Priority.REST


@dataclass(eq=False)
class _Ticket:
    priority: Priority


class RateLimiter:
    """Thread-safe; all times are on ``clock.monotonic()``'s scale.

    ``burst`` defaults to one second's worth of requests, at least 1.
    """

    def __init__(self, per_minute: int, clock: Clock, *, burst: int | None = None) -> None:
        if isinstance(per_minute, bool) or not isinstance(per_minute, int) or per_minute < 1:
            raise ValueError(f"per_minute must be a whole number of at least 1, not {per_minute!r}")
        if burst is None:
            burst = max(1, per_minute // 60)
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ValueError(f"burst must be a whole number of at least 1, not {burst!r}")
        self._per_minute = per_minute
        self._burst = burst
        self._clock = clock
        self._interval = 60.0 / per_minute
        self._tolerance = (burst - 1) * self._interval
        self._turns = threading.Condition(threading.Lock())
        self._queue: list[_Ticket] = []
        """Waiting callers: FIRST ones ahead of REST ones, each first come, first served."""
        # GCRA's "theoretical arrival time": the next request conforms once
        # now >= tat - tolerance.
        self._tat = -math.inf
        self._paused = -math.inf
        self._closed = False
        self._reserved = 0
        """FIRST requests still to come before ``_reserved_until``, whose turns REST
        requests leave them."""
        self._reserved_until = math.inf
        self._sleeping = False
        """Whether a caller sleeps on the clock (for its turn), the lock released."""

    def __repr__(self) -> str:
        return f"RateLimiter({self._per_minute}/min, burst {self._burst})"

    @property
    def burst(self) -> int:
        return self._burst

    @property
    def paused_until(self) -> float | None:
        """When the client-wide pause ends (monotonic), or None if the client is not paused."""
        with self._turns:
            until = self._paused
        return until if until > self._clock.monotonic() else None

    def acquire(self, deadline: float, priority: Priority = FIRST) -> bool:
        """Wait for this request's turn; True when it may go now.

        False, without waiting, as soon as the turn is known to come after ``deadline``
        (monotonic), or for a REST request, to come too late to leave the reserved FIRST
        requests their turns (``reserve``); False once the limiter is closed. A refused
        caller uses up no turn.
        """
        ticket = _Ticket(priority)
        with self._turns:
            if priority is FIRST:
                self._reserved = max(0, self._reserved - 1)
                ahead = sum(1 for t in self._queue if t.priority is FIRST)
                self._queue.insert(ahead, ticket)
            else:
                self._queue.append(ticket)
            try:
                return self._wait_for_turn(ticket, deadline)
            finally:
                self._queue.remove(ticket)
                self._turns.notify_all()

    def reserve(self, count: int, until: float = math.inf) -> None:
        """Keep the turns of ``count`` FIRST requests to come before ``until`` (monotonic)
        from REST requests; each FIRST request that asks for a turn takes one off, granted
        or not. ``reserve(0)`` ends the reservation (the cycle is over)."""
        with self._turns:
            self._reserved, self._reserved_until = max(0, count), until
            self._turns.notify_all()

    def pause_until(self, monotonic_time: float) -> None:
        """Hold back every request until ``monotonic_time``; a pause is never shortened."""
        with self._turns:
            if monotonic_time <= self._paused:
                return
            self._paused = monotonic_time
            self._tat = max(self._tat, monotonic_time + self._tolerance)
            self._turns.notify_all()

    def close(self) -> None:
        """Refuse every request, waiting or to come: for shutdown.

        Set the clock's stop event first: a stopped ``SystemClock`` returns from ``sleep()``
        at once, and until ``close()`` the head of the queue would spin until its turn.
        """
        with self._turns:
            self._closed = True
            self._turns.notify_all()

    def _wait_for_turn(self, ticket: _Ticket, deadline: float) -> bool:
        while not self._closed:
            now = self._clock.monotonic()
            position = self._queue.index(ticket)
            turn = max(now, self._paused, self._tat - self._tolerance + position * self._interval)
            if turn - _SLACK > deadline:
                return False
            if (
                ticket.priority is REST
                and self._reserved
                and (turn + self._reserved * self._interval - _SLACK > self._reserved_until)
            ):
                return False
            if position > 0 or (self._sleeping and turn - _SLACK > now):
                # A FIRST request that went ahead of a REST one already asleep waits for it
                # to wake: one sleeper at a time keeps a test clock's timeline whole.
                self._turns.wait()
            elif turn - _SLACK > now:
                # Sleep without the lock, so that others can queue up and a 429 can pause
                # the client meanwhile; the loop then looks again.
                self._sleeping = True
                self._turns.release()
                try:
                    self._clock.sleep(turn - now)
                finally:
                    self._turns.acquire()
                    self._sleeping = False
                    self._turns.notify_all()
            else:
                self._tat = max(self._tat, now) + self._interval
                return True
        return False
