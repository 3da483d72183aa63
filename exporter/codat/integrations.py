"""Which integrations run on the customer's own machine, read from Codat's
``GET /integrations/{platformKey}`` (``isOfflineConnector``) once a day per integration key
for the whole fleet: a handful of requests a day, whatever the number of companies.

A connection on such an integration (QuickBooks Desktop, Sage 50 ...) syncs only while
the customer's machine runs its connector; a sync that waits Queued for hours there means
that machine is offline, which the status page says as the pair's next step. A read that
fails leaves the integration taken as a cloud one and is tried again after ``RETRY``; it
never fails a company's poll, and the cycle's line of integrations that failed tells it
(``exporter.codat.unread``). A read is a ``REST`` request (``exporter.codat.ratelimit``):
one the rate limit defers leaves what was known and is made again at the next ask.
Thread-safe: the workers of several companies ask at once.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from exporter.codat.client import CodatClient
from exporter.codat.errors import ApiKeyRejected, CodatError, Deferred, NotFound
from exporter.codat.ratelimit import REST
from exporter.codat.unread import INTEGRATIONS, Unread
from exporter.core.clock import Clock
from exporter.core.integrations import INTEGRATION, IntegrationShapeError, parse_integration

EVERY = 86400.0
"""Seconds an integration's answer is kept: Codat does not move a platform on premises."""
RETRY = 900.0
"""Seconds before a failed read is tried again."""


@dataclass(frozen=True, slots=True)
class _Known:
    on_premise: bool
    until: float
    """Monotonic time after which it is read again."""


class Integrations:
    def __init__(self, client: CodatClient, clock: Clock, unread: Unread) -> None:
        self._client = client
        self._clock = clock
        self._unread = unread
        self._known: dict[str, _Known] = {}
        self._reading: dict[str, threading.Event] = {}
        """Keys being read, each with the event set when its read ends."""
        self._lock = threading.Lock()

    def on_premise(self, key: str, deadline: float) -> bool:
        """Whether integration ``key`` runs on the customer's machine; read when due.

        A worker that asks while another reads the same key waits for that read (until
        ``deadline`` at most), so that the companies polled meanwhile are not all taken as
        cloud ones until their connections are read again. False while not known: never read,
        or its read failed. A rejected API key is raised: every other request would be
        rejected too."""
        now = self._clock.monotonic()
        with self._lock:
            known = self._known.get(key)
            if known is not None and now < known.until:
                return known.on_premise
            reading = self._reading.get(key)
            if reading is None:
                self._reading[key] = threading.Event()
        if reading is not None:
            reading.wait(max(0.0, deadline - self._clock.monotonic()))
            with self._lock:
                known = self._known.get(key)
            return known.on_premise if known is not None else False
        try:
            try:
                on_premise, keep = self._read(key, deadline), EVERY
            except ApiKeyRejected:
                raise
            except Deferred:
                self._unread.deferred(INTEGRATIONS.label)
                return known.on_premise if known is not None else False
            except (CodatError, IntegrationShapeError) as exc:
                reason = exc.reason if isinstance(exc, CodatError) else "malformed_response"
                on_premise, keep = (known.on_premise if known else False), RETRY
                self._unread.failed(INTEGRATIONS, reason, "", f"integration {key}: {exc}",
                                    new=known is None)  # fmt: skip
            with self._lock:
                self._known[key] = _Known(on_premise, now + keep)
        finally:
            with self._lock:
                ended = self._reading.pop(key)
            ended.set()
        return on_premise

    def _read(self, key: str, deadline: float) -> bool:
        try:
            body = self._client.get_json(INTEGRATION, deadline, priority=REST, platformKey=key)
            return parse_integration(body)
        except NotFound:
            return False  # an integration Codat does not know is no connector of ours
