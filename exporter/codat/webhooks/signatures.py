"""That a webhook came from Codat: its Svix signature, its age, and that it is not a replay.

Codat delivers webhooks through Svix, signed the Standard Webhooks way: three headers,
``svix-id``, ``svix-timestamp`` (Unix seconds) and ``svix-signature``, a space-separated
list of ``v1,<base64 HMAC-SHA256>`` entries (more than one while Codat rotates a secret).
Svix's unbranded option names them ``webhook-id``, ``webhook-timestamp`` and
``webhook-signature``; as in Svix's own libraries both are accepted, the ``svix-`` one
first when a delivery carries both. The HMAC key is the base64 part of the ``whsec_...``
secret shown in Codat's portal, and the signed text is ``f"{id}.{timestamp}.{raw body}"``.

Verification matters although a webhook only hastens work: an unauthenticated endpoint that
triggers Codat requests would let anyone spend the daily request quota. Every delivery
refused here ends in one ``Result``, the ``result`` label of
``codat_exporter_webhooks_total{event_type, result}``::

    codat_exporter_webhooks_total{event_type="read.completed",result="ok"} 41
    codat_exporter_webhooks_total{event_type="other",result="bad_signature"} 2
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import threading
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
    """The ``svix-signature`` value Codat sends, e.g. ``v1,g0hM9SsE...``: tests and benchmarks
    sign the deliveries they make as Codat would."""
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
