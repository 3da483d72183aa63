"""Codat's webhooks: verify that Codat sent them, then say what the exporter should do.

Codat delivers webhooks through Svix, signed the Standard Webhooks way: three headers,
``svix-id``, ``svix-timestamp`` (Unix seconds) and ``svix-signature``, a space-separated
list of ``v1,<base64 HMAC-SHA256>`` entries (more than one while Codat rotates a secret).
Svix's unbranded option names them ``webhook-id``, ``webhook-timestamp`` and
``webhook-signature``; as in Svix's own libraries both are accepted, the ``svix-`` one
first when a delivery carries both. The HMAC key is the base64 part of the ``whsec_...``
secret shown in Codat's portal, and the signed text is ``f"{id}.{timestamp}.{raw body}"``.

A webhook only ever *hastens* work the poller would do anyway, so a lost or rejected one
costs freshness, never correctness. Verification still matters: an unauthenticated
endpoint that triggers Codat requests would let anyone spend the daily request quota.

Every delivery ends in one ``Result``, the ``result`` label of
``codat_exporter_webhooks_total{event_type, result}``::

    codat_exporter_webhooks_total{event_type="read.completed",result="ok"} 41
    codat_exporter_webhooks_total{event_type="other",result="bad_signature"} 2

Typical use in a request handler::

    verdict = verifier.verify(self.headers, body)
    event = parse_event(body) if verdict.ok else None
    if event and event.company_id and event.action is Action.REPOLL_DATA_STATUS:
        repolls.push(event.company_id)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from exporter.config.secrets import parse_secret
from exporter.core.clock import Clock

DEFAULT_TOLERANCE = 300.0  # seconds either way, as Svix's own libraries use
DEFAULT_REPLAY_CACHE_SIZE = 10_000

_TIMESTAMP = re.compile(r"[0-9]{1,15}")


class Result(StrEnum):
    """Why a delivery was accepted or refused; the value is the metric label."""

    OK = "ok"
    MISSING_HEADERS = "missing_headers"
    BAD_TIMESTAMP = "bad_timestamp"
    STALE = "stale"
    BAD_SIGNATURE = "bad_signature"
    REPLAYED = "replayed"


RESULTS: tuple[str, ...] = tuple(r.value for r in Result)


@dataclass(frozen=True)
class Verdict:
    result: Result
    webhook_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.result is Result.OK


class HeaderSource(Protocol):
    """A plain mapping, or the ``http.client.HTTPMessage`` that http.server hands a handler."""

    def items(self) -> Iterable[tuple[str, Any]]: ...


class WebhookVerifier:
    """Checks signature, age and uniqueness of each delivery; safe to share between threads.

    Checks run cheapest and least trusting first. The replay cache is consulted and filled
    only once the signature is valid, so forged requests can neither fill it nor learn
    from it which ids were seen. An id has to be remembered only until its own timestamp
    leaves the tolerance window: after that a replay of the same request fails as stale.
    """

    def __init__(
        self,
        secret: str,
        clock: Clock,
        tolerance: float = DEFAULT_TOLERANCE,
        *,
        replay_cache_size: int = DEFAULT_REPLAY_CACHE_SIZE,
    ) -> None:
        if tolerance <= 0:
            raise ValueError("tolerance must be positive")
        if replay_cache_size < 1:
            raise ValueError("replay_cache_size must be at least 1")
        self._key = parse_secret(secret)
        self._clock = clock
        self._tolerance = tolerance
        self._cache_size = replay_cache_size
        # sha256(webhook-id) -> wall-clock time after which a replay would be stale anyway.
        # Hashing bounds each entry's size whatever the length of the id.
        self._seen: OrderedDict[bytes, float] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"WebhookVerifier(tolerance={self._tolerance:g}, secret=<hidden>)"

    def verify(self, headers: HeaderSource, body: bytes) -> Verdict:
        msg_id, timestamp, signatures = _webhook_headers(headers)
        if not msg_id or not timestamp or not signatures:
            return Verdict(Result.MISSING_HEADERS, msg_id or None)
        if not _TIMESTAMP.fullmatch(timestamp):
            return Verdict(Result.BAD_TIMESTAMP, msg_id)
        sent_at = int(timestamp)
        if abs(self._clock.time() - sent_at) > self._tolerance:
            return Verdict(Result.STALE, msg_id)
        if not self._signature_matches(msg_id, timestamp, body, signatures):
            return Verdict(Result.BAD_SIGNATURE, msg_id)
        if not self._first_sighting(msg_id, sent_at + self._tolerance):
            return Verdict(Result.REPLAYED, msg_id)
        return Verdict(Result.OK, msg_id)

    def _signature_matches(self, msg_id: str, timestamp: str, body: bytes, header: str) -> bool:
        expected = _mac(self._key, msg_id, timestamp, body)
        matched = False
        for entry in header.split():
            version, _, encoded = entry.partition(",")
            if version != "v1":  # e.g. v1a (asymmetric): not ours to check
                continue
            try:
                given = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                continue
            # No early exit: the time taken does not depend on which entry matched.
            matched |= hmac.compare_digest(given, expected)
        return matched

    def _first_sighting(self, msg_id: str, expires_at: float) -> bool:
        key = hashlib.sha256(msg_id.encode()).digest()
        now = self._clock.time()
        with self._lock:
            while self._seen:
                oldest_key, oldest_expiry = next(iter(self._seen.items()))
                if oldest_expiry >= now:
                    break
                del self._seen[oldest_key]
            expiry = self._seen.get(key)
            if expiry is not None and expiry >= now:
                return False
            self._seen[key] = expires_at
            self._seen.move_to_end(key)
            while len(self._seen) > self._cache_size:
                # Only validly signed deliveries get here, so only a burst from Codat
                # itself could evict a live entry.
                self._seen.popitem(last=False)
            return True


_HEADER_PREFIXES = ("svix-", "webhook-")
"""Svix's default header names first, then its unbranded ones."""
_HEADER_FIELDS = ("id", "timestamp", "signature")


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``svix-signature`` value Codat sends, e.g. ``v1,g0hM9SsE...``; for the simulator."""
    mac = _mac(parse_secret(secret), msg_id, str(timestamp), body)
    return f"v1,{base64.b64encode(mac).decode()}"


def _mac(key: bytes, msg_id: str, timestamp: str, body: bytes) -> bytes:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return hmac.new(key, signed, hashlib.sha256).digest()


def _webhook_headers(headers: HeaderSource) -> tuple[str | None, ...]:
    """(id, timestamp, signature): each the first value of its ``svix-`` header, else of
    its ``webhook-`` header, as Svix's libraries read them; names are case-insensitive."""
    wanted = {prefix + field for prefix in _HEADER_PREFIXES for field in _HEADER_FIELDS}
    found: dict[str, str] = {}
    for name, value in headers.items():
        lower = str(name).lower()
        if lower in wanted and lower not in found:
            found[lower] = str(value).strip()
    return tuple(
        next((found[p + field] for p in _HEADER_PREFIXES if p + field in found), None)
        for field in _HEADER_FIELDS
    )


# --- interpreting the payload ------------------------------------------------------------


class Action(StrEnum):
    """What the exporter does about an event."""

    REPOLL_DATA_STATUS = "repoll_data_status"
    REFRESH_CONNECTIONS = "refresh_connections"
    DROP_COMPANY = "drop_company"
    IGNORE = "ignore"


# Event types that get their own metric label; anything else is counted as "other", so a
# sender cannot create label values at will. Names from Codat-Platform.yaml's webhooks.
_REPOLL = ("read.completed", "read.completed.initial")
_CONNECTION = (
    "connection.created",
    "connection.connected",
    "connection.failed",
    "connection.disconnected",
    "connection.reconnected",
    "connection.deleted",
)
_DROP = ("company.deleted",)
OTHER = "other"
EVENT_TYPE_LABELS: tuple[str, ...] = (*_REPOLL, *_CONNECTION, *_DROP, OTHER)


@dataclass(frozen=True)
class Event:
    """One interpreted webhook, e.g.::

    Event(event_type="read.completed", label="read.completed",
          action=Action.REPOLL_DATA_STATUS,
          company_id="0498e921-9b53-4396-a412-4f2f5983b0a2",
          event_id="743ec94a-8aa4-44bb-8bd4-e1855ee0e74b")
    """

    event_type: str  # as sent; unbounded, so for logs only
    label: str  # one of EVENT_TYPE_LABELS
    action: Action
    company_id: str | None = None
    event_id: str | None = None


def event_label(event_type: str) -> str:
    return event_type if event_type in EVENT_TYPE_LABELS else OTHER


def parse_event(body: bytes) -> Event | None:
    """Interpret a verified body; ``None`` when it is not a Codat webhook we can act on.

    ``read.completed`` and ``connection.*`` name the company in
    ``payload.referenceCompany.id`` (ReadCompletedWebhook, ConnectionWebhook);
    ``company.deleted`` carries the company itself, so its id is ``payload.id``
    (CompanyWebhook). Any ``connection.*`` refreshes connections, though only the six types
    in the spec get their own label. Any other type is a valid ``Action.IGNORE`` event, since
    Codat adds event types over time. ``None`` means the body is not JSON with an
    ``eventType``, or an event we act on lacks a company id that is a UUID.
    """
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("eventType"), str):
        return None
    event_type: str = doc["eventType"]
    event_id = doc.get("id") if isinstance(doc.get("id"), str) else None
    payload = doc.get("payload")
    payload = payload if isinstance(payload, dict) else {}

    if event_type in _REPOLL:
        action, company = Action.REPOLL_DATA_STATUS, _reference_company_id(payload)
    elif event_type.startswith("connection."):
        action, company = Action.REFRESH_CONNECTIONS, _reference_company_id(payload)
    elif event_type in _DROP:
        action, company = Action.DROP_COMPANY, _company_id(payload.get("id"))
    else:
        return Event(event_type, OTHER, Action.IGNORE, None, event_id)
    if company is None:
        return None
    return Event(event_type, event_label(event_type), action, company, event_id)


def _reference_company_id(payload: dict[str, Any]) -> str | None:
    reference = payload.get("referenceCompany")
    return _company_id(reference.get("id")) if isinstance(reference, dict) else None


def _company_id(value: Any) -> str | None:
    """The id as Codat sent it, if it is a UUID (Codat company ids are)."""
    if not isinstance(value, str):
        return None
    try:
        uuid.UUID(value)
    except ValueError:
        return None
    return value


# --- debouncing re-polls -----------------------------------------------------------------


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
