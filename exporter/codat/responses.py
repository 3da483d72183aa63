"""Reading what Codat answered: the body, what its status means, the waits its headers ask
for, and where a paged listing ends.

The body is read in chunks against a deadline for the whole exchange and a size cap:
``requests``' own timeout is per socket read, so a server trickling a byte a second would
otherwise hold a worker forever, and a body without end would fill the memory. A 200 is
JSON or ``MalformedResponse``; any other status becomes the error it means, retryable or
not, with Codat's ErrorMessage in its message::

    GET /companies/{companyId}/dataStatus: HTTP 503 (statusCode=503 error='Busy' correlationId=c-1)
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping
from typing import Any

import requests

from exporter.codat.errors import (
    ApiKeyRejected,
    CodatError,
    MalformedResponse,
    NotFound,
    RateLimited,
    Retryable,
    describe_error_body,
)
from exporter.core.clock import Clock
from exporter.core.contract import parse_datetime

RETRYABLE = frozenset({408, 429, 500, 502, 503, 504})


class BodyTimeout(Exception):
    """The body did not arrive whole before the exchange's deadline."""


def read_body(response: requests.Response, io_deadline: float, max_bytes: int, what: str) -> bytes:
    """The whole body of ``response``, read by ``io_deadline`` (``time.monotonic()``'s scale).

    BodyTimeout past the deadline; MalformedResponse (with the status: Codat did answer)
    beyond ``max_bytes``, read no further. ``what`` names the request in that message.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        if time.monotonic() > io_deadline:
            raise BodyTimeout
        chunk = response.raw.read1(65536, decode_content=True)
        if not chunk:
            break
        size += len(chunk)
        if size > max_bytes:
            raise MalformedResponse(
                f"{what}: body larger than {max_bytes} bytes; not read further",
                status=response.status_code,
            )
        chunks.append(chunk)
    return b"".join(chunks)


def decode(what: str, status: int, headers: Mapping[str, str], body: bytes, clock: Clock) -> Any:
    """The JSON of a 200; otherwise raises what the status means (``Retryable`` for those
    another attempt may cure). ``what`` is the method and route template: ``GET /companies``."""
    if status == 200:
        try:
            return json.loads(body)
        except ValueError:
            raise MalformedResponse(
                f"{what}: HTTP 200 with a body that is not JSON ({len(body)} bytes)",
                status=status,
            ) from None
    detail = f"{what}: HTTP {status} ({describe_error_body(body)})"
    if status in (401, 403):
        raise ApiKeyRejected(detail, status=status)
    if status == 404:
        raise NotFound(detail, status=status)
    if status in RETRYABLE:
        error_type = RateLimited if status == 429 else CodatError
        retry_after = parse_retry_after(headers.get("Retry-After"), clock.time())
        raise Retryable(error_type(detail, status=status), retry_after)
    raise CodatError(detail, status=status)


def page_results(body: Any, route: str, page: int, page_size: int) -> tuple[list[Any], bool]:
    """(``results``, whether it is the last page) of page ``page`` of a Codat listing.

    The last page is the one without ``_links.next``, an empty one, or the one that reaches
    ``totalResults``; a page of the wrong shape raises MalformedResponse.
    """
    if not isinstance(body, dict) or not isinstance(body.get("results"), list):
        raise MalformedResponse(f"GET {route}: page {page} has no results list")
    results: list[Any] = body["results"]
    total = body.get("totalResults")
    links = body.get("_links")
    links = links if isinstance(links, dict) else {}
    if not results or "next" not in links:
        return results, True
    return results, isinstance(total, int) and page * page_size >= total


def parse_quota_count(value: str | None) -> float | None:
    """X-Rate-Limit-Limit or X-Rate-Limit-Remaining: a whole number of requests, or None."""
    value = (value or "").strip()
    return float(value) if value.isdigit() else None


def parse_quota_reset(value: str | None, now: float) -> float | None:
    """X-Rate-Limit-Reset as Unix time. Codat does not document its form, so accept Unix
    seconds, seconds from now, a Codat DateTime or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        number = float(value)
        return number if number > 1e9 else now + number
    try:
        return parse_datetime(value)
    except ValueError:
        pass
    after = parse_retry_after(value, now)
    return None if after is None else now + after


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header, given as seconds or as an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)
