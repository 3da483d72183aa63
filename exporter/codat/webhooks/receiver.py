"""From a verified delivery to the poller's work, without keeping Codat waiting.

A lost or refused webhook costs freshness, never correctness: it only hastens a poll the
poller makes at its next cycle anyway. The web server answers each delivery with the status
``handle`` returns, and the scheduler calls ``tick`` every second::

    receiver.handle(headers, body)  # 200 (queued, or nothing to do) or 401 (refused)
    receiver.tick()                 # the due drops, connection refreshes and re-polls
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any, Protocol

from exporter.codat.webhooks.events import OTHER, Action, parse_event
from exporter.codat.webhooks.signatures import HeaderSource, WebhookVerifier
from exporter.core.clock import Clock


class DebounceQueue:
    """Company ids waiting for a re-poll, each with the earliest time it may run.

    Codat sends one ``read.completed`` per product read, so a company with several products
    produces a burst. The first push schedules the company ``delay`` seconds ahead; pushes
    while it waits change nothing, so the burst costs one re-poll and a steady stream of
    events still gets its re-poll on time. Times are the clock's monotonic seconds::

        queue.push("0498e921-...")       # due at now + 5s
        queue.push("0498e921-...")       # no change
        queue.pop_due()                  # [] before, ["0498e921-..."] from then on
    """

    def __init__(self, clock: Clock, delay: float = 5.0) -> None:
        self._clock = clock
        self._delay = delay
        self._due: dict[str, float] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._due)

    def push(self, company_id: str) -> None:
        with self._lock:
            self._due.setdefault(company_id, self._clock.monotonic() + self._delay)

    def discard(self, company_id: str) -> None:
        """Forget a pending re-poll, e.g. when ``company.deleted`` arrives."""
        with self._lock:
            self._due.pop(company_id, None)

    def pop_due(self) -> list[str]:
        """Remove and return the ids whose time has come, earliest first."""
        now = self._clock.monotonic()
        with self._lock:
            ready = sorted((t, c) for c, t in self._due.items() if t <= now)
            for _, company_id in ready:
                del self._due[company_id]
        return [company_id for _, company_id in ready]

    def seconds_until_next(self) -> float | None:
        """How long the consumer may sleep before something is due; ``None`` when empty."""
        with self._lock:
            if not self._due:
                return None
            return max(0.0, min(self._due.values()) - self._clock.monotonic())


class WebhookTarget(Protocol):
    """What the receiver asks of the poller."""

    def poll_companies(self, company_ids: Iterable[str]) -> None: ...
    def expire_connections(self, company_ids: Iterable[str]) -> None: ...
    def drop_company(self, company_id: str) -> None: ...


class WebhookReceiver:
    """From a delivery to an action, answering at once: events are only queued here.

    Codat gives up on an endpoint that takes more than 15 s and retries a failed delivery
    for a day, so ``handle`` verifies, counts and enqueues; ``tick`` (every second, on the
    scheduler) does the work, with read.completed bursts debounced into one re-poll.
    """

    def __init__(
        self,
        verifier: WebhookVerifier,
        clock: Clock,
        counter: Any,
        target: WebhookTarget,
        debounce: float = 5.0,
    ) -> None:
        self._verifier = verifier
        self._counter = counter
        self._target = target
        self._repolls = DebounceQueue(clock, debounce)
        self._connections = DebounceQueue(clock, debounce)
        self._drops = DebounceQueue(clock, 0.0)

    def count(self, label: str, result: str) -> None:
        self._counter.labels(label, result).inc()

    def handle(self, headers: HeaderSource, body: bytes) -> int:
        """Verify and enqueue one delivery; returns the HTTP status to answer with."""
        verdict = self._verifier.verify(headers, body)
        if not verdict.ok:
            self.count(OTHER, str(verdict.result))
            return 401
        event = parse_event(body)
        if event is None:
            self.count(OTHER, "invalid_payload")
            return 200  # signed by Codat, so a retry would not change it
        self.count(event.label, "ok")
        if event.company_id is None:
            return 200
        if event.action is Action.REPOLL_DATA_STATUS:
            self._repolls.push(event.company_id)
        elif event.action is Action.REFRESH_CONNECTIONS:
            self._connections.push(event.company_id)
        elif event.action is Action.DROP_COMPANY:
            self._repolls.discard(event.company_id)
            self._connections.discard(event.company_id)
            self._drops.push(event.company_id)
        return 200

    def tick(self) -> None:
        for company_id in self._drops.pop_due():
            self._target.drop_company(company_id)
        connections = self._connections.pop_due()
        self._target.expire_connections(connections)
        due = dict.fromkeys([*self._repolls.pop_due(), *connections])
        if due:
            self._target.poll_companies(due)
