"""HTTP to Codat: one session, Basic auth, a whole-exchange deadline, bounded retries.

Each request attempt has a deadline for the *whole* exchange (connect, headers and body),
read against it by ``exporter.codat.responses``, which also turns the answer into JSON or
the typed error of ``exporter.codat.errors``.

Retries (connection errors, timeouts, 408, 429, 5xx) back off exponentially with jitter,
honour ``Retry-After`` (seconds or an HTTP date), and stop before the caller's deadline,
so a cycle's retries never outlast the poll interval. 401/403 and 404 are not retried.

Every request first takes a turn from one ``RateLimiter`` shared by all workers
(``codat.max_requests_per_minute``), and a 429 pauses that limiter, so the whole client
waits out Retry-After rather than each thread on its own. A request is ``FIRST`` unless its
caller says ``priority=REST``; a REST request the limiter leaves no turn for raises
``Deferred`` and counts in ``codat_exporter_requests_deferred_total``. The X-Rate-Limit-* headers of
every response are noted as the snapshot's quota facts (``note_facts``), which the quota
gauges and the status page read.
"""

from __future__ import annotations

import base64
import os
import random
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import requests
import urllib3
from requests.adapters import HTTPAdapter

from exporter import __version__
from exporter.codat.errors import (
    ApiKeyRejected,
    CodatError,
    ConnectionFailed,
    Deferred,
    MalformedResponse,
    NotFound,
    RateLimited,
    RequestTimeout,
    Retryable,
    connection_gist,
)
from exporter.codat.ratelimit import FIRST, REST, Priority, RateLimiter
from exporter.codat.responses import (
    BodyTimeout,
    decode,
    page_results,
    parse_quota_count,
    parse_quota_reset,
    read_body,
)
from exporter.config.sections import CodatConfig
from exporter.core.clock import Clock
from exporter.core.contract import COMPANY, DATA_STATUS
from exporter.core.snapshot import NoteFacts, ignore_facts
from exporter.exposition.instruments import ExporterMetrics

MAX_PAGES = 10_000


class CodatClient:
    def __init__(
        self,
        config: CodatConfig,
        metrics: ExporterMetrics,
        clock: Clock,
        *,
        max_attempts: int = 5,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        max_body_bytes: int | None = None,
        rng: random.Random | None = None,
        note_facts: NoteFacts = ignore_facts,
    ) -> None:
        self._base_url = config.base_url
        self._timeout = config.timeout
        self._metrics = metrics
        self._clock = clock
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._max_body_bytes = max_body_bytes or config.max_response_bytes
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._note_facts = note_facts
        self.limiter = RateLimiter(config.max_requests_per_minute, clock)
        token = base64.b64encode(config.api_key.encode()).decode()
        self._session = requests.Session()
        self._session.headers.update(
            {
                "Authorization": f"Basic {token}",
                "User-Agent": f"codat-freshness-exporter/{__version__}",
                "Accept": "application/json",
            }
        )
        # requests re-reads the whole environment (proxies, CA bundle, ~/.netrc) on every
        # request when trust_env is on: ~15% of the client's CPU. Resolve it once instead.
        self._session.trust_env = False
        self._session.proxies = dict(requests.utils.get_environ_proxies(config.base_url))
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if bundle:
            self._session.verify = bundle
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=config.max_concurrency)
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)

    def __repr__(self) -> str:
        return f"CodatClient({self._base_url!r})"

    def close(self) -> None:
        self.limiter.close()
        self._session.close()

    def data_status(self, company_id: str, deadline: float) -> Any:
        return self.get_json(DATA_STATUS, deadline, companyId=company_id)

    def company(self, company_id: str, deadline: float, priority: Priority = FIRST) -> Any:
        return self.get_json(COMPANY, deadline, priority=priority, companyId=company_id)

    def get_pages(
        self,
        route: str,
        deadline: float,
        page_size: int,
        params: Mapping[str, str | int] | None = None,
        *,
        priority: Priority = FIRST,
        **path: str,
    ) -> list[Any]:
        """Every ``results`` item of a paged Codat listing, following pages to the last.

        Stops at the page the envelope says is last (no ``_links.next``, or the page that
        reaches ``totalResults``); a page of the wrong shape raises MalformedResponse.
        """
        items: list[Any] = []
        for page in range(1, MAX_PAGES + 1):
            body = self.get_json(
                route, deadline, {**(params or {}), "page": page, "pageSize": page_size},
                priority=priority, **path,
            )  # fmt: skip
            results, last = page_results(body, route, page, page_size)
            items.extend(results)
            if last:
                return items
        raise MalformedResponse(f"GET {route}: more than {MAX_PAGES} pages")

    def get_json(
        self,
        route: str,
        deadline: float,
        params: Mapping[str, str | int] | None = None,
        *,
        priority: Priority = FIRST,
        **path: str,
    ) -> Any:
        """GET ``route`` (a template such as DATA_STATUS) and return the decoded JSON.

        ``deadline`` is on the clock's monotonic scale; no retry starts that could not
        finish before it. ``priority`` (``exporter.codat.ratelimit``): a REST request
        raises ``Deferred`` when the rate limit leaves it no turn.
        """
        return self._request("GET", route, deadline, params, priority, **path)

    def post_json(
        self,
        route: str,
        deadline: float,
        params: Mapping[str, str | int] | None = None,
        **path: str,
    ) -> Any:
        """POST ``route`` with no body (Codat's queue routes) and return the decoded JSON.

        Retried only when Codat said it did not act (429, 503): after a timeout or a broken
        connection the request may have been carried out, and a second one would queue
        twice."""
        return self._request("POST", route, deadline, params, FIRST, **path)

    def _request(
        self,
        method: str,
        route: str,
        deadline: float,
        params: Mapping[str, str | int] | None,
        priority: Priority,
        **path: str,
    ) -> Any:
        # Ids are UUIDs, but a discovered one is whatever Codat lists: quoted, a "/", "?" or
        # "#" in it cannot turn the request into one for another resource.
        url = self._base_url + route.format(**{k: quote(v, safe="") for k, v in path.items()})
        last: CodatError | None = None
        # A REST request starts in no turn that leaves it less than a whole timeout: it
        # would fail, where waiting for a later poll costs nothing. Once started, its
        # retries are any request's: deferring a request half made would only waste it.
        last_turn = deadline - self._timeout if priority is REST else deadline
        for attempt in range(1, self._max_attempts + 1):
            started = last is not None
            if not self.limiter.acquire(deadline if started else last_turn,
                                        FIRST if started else priority):  # fmt: skip
                if last is None and priority is REST:
                    self._metrics.requests_deferred.labels(route).inc()
                    raise Deferred(f"{method} {route}: deferred: the rate limit leaves no turn "
                                   "for it this cycle")  # fmt: skip
                raise last or RateLimited(
                    f"{method} {route}: the client-side rate limit (or a 429 pause) would pass "
                    "the poll deadline"
                )
            wait: float | None = None
            try:
                return self._attempt(method, url, route, params, deadline)
            except (ApiKeyRejected, NotFound, MalformedResponse):
                raise
            except Retryable as exc:
                last, wait = exc.error, exc.retry_after
                if method != "GET" and last.status not in (429, 503):
                    raise last from None
            if wait is None:
                ceiling = min(self._backoff_cap, self._backoff_base * 2 ** (attempt - 1))
                wait = ceiling / 2 + self._rng.uniform(0, ceiling / 2)
            if isinstance(last, RateLimited):
                # Pause every worker, even when this one gives up: they would hit the same 429.
                self._metrics.rate_limited.inc()
                self.limiter.pause_until(self._clock.monotonic() + wait)
            if attempt == self._max_attempts:
                break
            if self._clock.monotonic() + wait + min(self._timeout, 1.0) > deadline:
                last = type(last)(
                    f"{last}; not retried: next try would pass the poll deadline",
                    status=last.status,
                )
                break
            if not isinstance(last, RateLimited):  # a 429's pause is waited out in acquire()
                self._clock.sleep(wait)
        assert last is not None
        raise last

    def _attempt(
        self,
        method: str,
        url: str,
        route: str,
        params: Mapping[str, str | int] | None,
        deadline: float,
    ) -> Any:
        what = f"{method} {route}"
        budget = min(self._timeout, deadline - self._clock.monotonic())
        if budget <= 0:
            raise Retryable(RequestTimeout(f"{what}: no time left before the poll deadline"))
        started = time.monotonic()
        io_deadline = started + budget
        code = "error"
        try:
            status, headers, body = self._exchange(method, url, params, io_deadline, budget)
            code = str(status)
            self._record_quota(headers)
        except MalformedResponse as exc:  # a body over the cap: Codat did answer
            code = str(exc.status) if exc.status is not None else code
            raise
        except BodyTimeout:
            raise Retryable(
                RequestTimeout(f"{what}: no complete answer within {budget:.3g}s")
            ) from None
        except (requests.Timeout, urllib3.exceptions.TimeoutError):
            # urllib3's own errors come from reading the body ourselves (raw.read1), which
            # requests does not wrap: a stall mid-body, a connection cut short.
            raise Retryable(RequestTimeout(f"{what}: timed out after {budget:.3g}s")) from None
        except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
            raise Retryable(ConnectionFailed(f"{what}: {connection_gist(exc)}")) from None
        finally:
            self._metrics.request_done(route, code, time.monotonic() - started)
        return decode(what, status, headers, body, self._clock)

    def _exchange(
        self,
        method: str,
        url: str,
        params: Mapping[str, str | int] | None,
        io_deadline: float,
        budget: float,
    ) -> tuple[int, Mapping[str, str], bytes]:
        with self._session.request(
            method, url, params=params, timeout=(budget, budget), stream=True,
            allow_redirects=False,
        ) as response:  # fmt: skip
            what = f"{method} {url.removeprefix(self._base_url)}"
            body = read_body(response, io_deadline, self._max_body_bytes, what)
            return response.status_code, response.headers, body

    def _record_quota(self, headers: Mapping[str, str]) -> None:
        limit = parse_quota_count(headers.get("X-Rate-Limit-Limit"))
        remaining = parse_quota_count(headers.get("X-Rate-Limit-Remaining"))
        reset = parse_quota_reset(headers.get("X-Rate-Limit-Reset"), self._clock.time())
        if (limit, remaining, reset) != (None, None, None):
            self._note_facts(lambda facts: facts.with_quota(limit, remaining, reset))
