"""How a request to Codat failed, as a type the callers can tell apart.

Each type's ``reason`` is the label value it counts under in
``codat_exporter_poll_errors_total{reason}``, so the log, the metric and the status page name
a failure the same way::

    codat_exporter_poll_errors_total{reason="api_key_rejected"} 0
    codat_exporter_poll_errors_total{reason="timeout"} 3

Callers catch ``ApiKeyRejected`` apart from the rest: the key is wrong for every request, so
one company's poll cannot work around it; and ``Deferred``, which is no failure.
``Retryable`` never leaves the client: it carries a failure that another attempt may cure,
with the wait Codat asked for.
"""

from __future__ import annotations

import json

from exporter.core.snapshot import NOT_FOUND


class CodatError(Exception):
    """A request that failed for good. ``reason`` is the poll-error metric's label value."""

    reason = "http_error"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ApiKeyRejected(CodatError):
    reason = "api_key_rejected"


class NotFound(CodatError):
    reason = NOT_FOUND


class MalformedResponse(CodatError):
    reason = "malformed_response"


class RequestTimeout(CodatError):
    reason = "timeout"


class ConnectionFailed(CodatError):
    reason = "connection_error"


class RateLimited(CodatError):
    reason = "rate_limited"


class Deferred(RateLimited):
    """A REST request (``exporter.codat.ratelimit``) the rate limit left no turn for, so that
    the cycle's dataStatus requests keep theirs: not a failure, made again at a later poll.
    Its callers catch it apart; one that did not would count it as rate-limited."""


class Retryable(Exception):
    """``error``, which another attempt may cure; ``retry_after``: Codat's wait, if it said."""

    def __init__(self, error: CodatError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


def describe_error_body(body: bytes) -> str:
    """The useful part of Codat's ErrorMessage, for a log line.

    >>> describe_error_body(b'{"statusCode": 500, "error": "Boom", "correlationId": "c-1"}')
    "statusCode=500 error='Boom' correlationId=c-1"
    >>> describe_error_body(b"<html>Bad gateway</html>")
    'non-JSON body (24 bytes)'
    """
    try:
        doc = json.loads(body)
    except ValueError:
        return f"non-JSON body ({len(body)} bytes)"
    if not isinstance(doc, dict):
        return f"unexpected error body ({len(body)} bytes)"
    parts = []
    if "statusCode" in doc:
        parts.append(f"statusCode={doc['statusCode']!s:.10}")
    if "error" in doc:
        parts.append(f"error={str(doc['error'])[:200]!r}")
    if "correlationId" in doc:
        parts.append(f"correlationId={doc['correlationId']!s:.64}")
    return " ".join(parts) or f"error body without ErrorMessage fields ({len(body)} bytes)"


def connection_gist(exc: BaseException) -> str:
    """A connection error's gist, without urllib3's nested reprs.

    >>> connection_gist(OSError("HTTPConnectionPool(...): [Errno 111] Connection refused"))
    'connection refused'
    """
    text = str(exc)
    for marker in (
        "Connection refused",
        "Connection reset",
        "Name or service not known",
        "timed out",
        "Remote end closed connection",
        "IncompleteRead",
    ):
        if marker in text:
            return marker.lower()
    return type(exc).__name__
