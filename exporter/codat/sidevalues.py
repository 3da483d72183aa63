"""What a company's poll fetches besides its data status, each only when due: its name and
creation time (hourly, unless discovery lists them), its sync settings (with
``freshness.from_sync_settings``, every ``freshness.sync_settings_interval``) and its
connections (``connections.interval``).

A failed fetch keeps the last value and is returned to the poll, which then shows the
company down while its data status still updates. Every fetch but that of a name not known
yet (a label) is a ``REST`` request (``exporter.codat.ratelimit``): one the rate limit
defers is no failure, keeps the last value, is due again at the next poll, and counts in
the cycle's line of requests deferred (``exporter.codat.unread``). Worker threads fill these
caches while the scheduler thread and webhooks read, expire and prune them, so every access
holds one lock.

Its section of the state file (``exporter.poll.components``) is when each value was read,
by kind and company (the values themselves are in the companies' states), so that a restart
reads none again before it is due::

    {"names": {}, "connections": {"8a210b68-...": 1795435200.0}, "sync_settings": {...}}
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from exporter.codat.client import CodatClient
from exporter.codat.errors import ApiKeyRejected, CodatError, Deferred, MalformedResponse
from exporter.codat.integrations import Integrations
from exporter.codat.ratelimit import FIRST, REST
from exporter.codat.unread import Unread
from exporter.config.sections import Config
from exporter.core.clock import Clock
from exporter.core.contract import (
    CONNECTIONS,
    SYNC_SETTINGS,
    ShapeError,
    parse_company,
    parse_connections,
    parse_sync_schedules,
)
from exporter.core.decoding import as_dict, as_number, as_str
from exporter.core.snapshot import CompanyInfo, CompanyState, ConnectionState
from exporter.exposition.nextstep import GONE

NAME_REFRESH_INTERVAL = 3600.0
"""Seconds between two reads of a company's name and creation time, when discovery does not
list them; ``exporter.poll.budget`` counts them at this pace too."""
CONNECTIONS_PAGE_SIZE = 100
_NOTHING_KNOWN = CompanyInfo()
_KINDS = ("names", "connections", "sync_settings")
"""The caches' names in the state file, in the order of ``_caches``."""
T = TypeVar("T")


@dataclass(frozen=True)
class _Fetched:
    value: Any
    """None: not fetched yet, only planned (see ``refresh``'s ``defer``)."""
    at: float
    """Monotonic time of the fetch."""


Fetched = dict[str, dict[str, float]]
"""When each value was read (Unix seconds), by kind and company."""


class SideValues:
    key = "side_values"

    def __init__(
        self,
        config: Config,
        client: CodatClient,
        clock: Clock,
        listed: Callable[[], Mapping[str, CompanyInfo]],
        unread: Unread,
    ) -> None:
        self._config = config
        self._client = client
        self._clock = clock
        self._listed = listed
        """The discovery listing, whose names and creation times need no request."""
        self._names: dict[str, _Fetched] = {}
        self._connections: dict[str, _Fetched] = {}
        self._schedules: dict[str, _Fetched] = {}
        self._unread = unread
        self._integrations = Integrations(client, clock, unread)
        self._lock = threading.Lock()

    def refresh(
        self,
        company_id: str,
        deadline: float,
        *,
        defer: bool = False,
        name: bool = True,
        details: bool = True,
    ) -> CodatError | None:
        """Fetch what is due for the company; the first failure, or None.

        ``defer`` (the first cycle): sync settings and connections not known yet are not
        fetched now but planned for a moment spread over the cycles that follow, so that a
        start costs one request per company, not three. The name is fetched at once: it is
        a label, and a label that changes later would double the company's series.
        ``name`` and ``details`` (sync settings and connections) choose what is considered,
        so that a first cycle can read every name first and the details after.

        A rejected API key is raised instead: the data status request would be rejected too.
        """
        config = self._config
        client = self._client
        failures: list[CodatError | None] = []
        if name and company_id not in self._listed():
            # A name not known yet is a label of every series: it goes with the dataStatus.
            priority = REST if self._value(self._names, company_id, None) else FIRST
            failures.append(self._refresh(
                self._names, company_id, NAME_REFRESH_INTERVAL, "name",
                lambda: parse_company(client.company(company_id, deadline, priority)),
            ))  # fmt: skip
        if details and config.freshness.from_sync_settings:
            failures.append(self._refresh(
                self._schedules, company_id, config.freshness.sync_settings_interval,
                "sync settings",
                lambda: parse_sync_schedules(
                    client.get_json(SYNC_SETTINGS, deadline, priority=REST, companyId=company_id)
                ), defer=defer,
            ))  # fmt: skip
        if details and config.connections.enabled:
            keep_links = config.status_page.show_link_urls
            failures.append(self._refresh(
                self._connections, company_id, config.connections.interval, "connections",
                lambda: self._on_premise(parse_connections(client.get_pages(
                    CONNECTIONS, deadline, CONNECTIONS_PAGE_SIZE, priority=REST,
                    companyId=company_id,
                ), keep_links), deadline), defer=defer,
            ))  # fmt: skip
        return next((failure for failure in failures if failure is not None), None)

    def names_due(self, company_ids: Iterable[str]) -> int:
        """How many of these companies' polls will ask for a name not known yet (``FIRST``
        requests, as their dataStatus)."""
        listed = self._listed()
        with self._lock:
            return sum(1 for c in company_ids if c not in listed and c not in self._names)

    def _on_premise(
        self, connections: tuple[ConnectionState, ...], deadline: float
    ) -> tuple[ConnectionState, ...]:
        """The connections, each marked when its integration runs on the customer's machine."""
        return tuple(
            replace(c, on_premise=True)
            if c.integration_key and self._integrations.on_premise(c.integration_key, deadline)
            else c
            for c in connections
        )

    def info(self, company_id: str) -> CompanyInfo:
        listed = self._listed().get(company_id)
        if listed is not None:
            return listed
        known: CompanyInfo = self._value(self._names, company_id, _NOTHING_KNOWN)
        return known

    def connections(self, company_id: str) -> tuple[ConnectionState, ...]:
        known: tuple[ConnectionState, ...] = self._value(self._connections, company_id, ())
        return known

    def sync_schedules(self, company_id: str) -> Mapping[str, float]:
        known: Mapping[str, float] = self._value(self._schedules, company_id, {})
        return known

    def expire_connections(self, company_ids: Iterable[str]) -> None:
        """Make the next poll of these companies fetch their connections, whatever the interval."""
        with self._lock:
            for company_id in company_ids:
                self._connections.pop(company_id, None)

    def forget(self, company_id: str) -> None:
        with self._lock:
            for cache in self._caches():
                cache.pop(company_id, None)

    def forget_all_but(self, kept: set[str]) -> None:
        """Drop what is known of companies no longer polled, so churn cannot grow it."""
        with self._lock:
            for cache in self._caches():
                for company_id in cache.keys() - kept:
                    del cache[company_id]

    def saved(self) -> Fetched:
        offset = self._clock.time() - self._clock.monotonic()
        with self._lock:
            return {
                kind: {c: known.at + offset for c, known in cache.items()}
                for kind, cache in zip(_KINDS, self._caches(), strict=True)
            }

    def checked(self, saved: Any) -> Fetched:
        return {
            as_str(kind): {as_str(c): as_number(at) for c, at in as_dict(by_company).items()}
            for kind, by_company in as_dict(saved or {}).items()
        }

    def restore(self, checked: Fetched, companies: Mapping[str, CompanyState]) -> None:
        """Resume from a state file: each value as the companies' states have it, read when
        the section says.

        The state file keeps no ``linkUrl``: with ``status_page.show_link_urls``, the
        connections of a company with one to (re)link are due at once, so that the page
        shows where to relink after the first cycle, not a ``connections.interval`` later."""
        now = self._clock.monotonic()
        offset = now - self._clock.time()
        relinks = self._config.status_page.show_link_urls
        with self._lock:
            for company in companies.values():
                values = (
                    CompanyInfo(company.name, company.created),
                    company.connections,
                    company.sync_schedules,
                )
                for kind, cache, value in zip(_KINDS, self._caches(), values, strict=True):
                    at = checked.get(kind, {}).get(company.company_id)
                    if at is None:
                        continue
                    if cache is self._connections and relinks and _deauthorized(value):
                        at = now - offset - self._config.connections.interval
                    cache[company.company_id] = _Fetched(value, at + offset)

    def companies(self) -> set[str]:
        """Every company something is known of."""
        with self._lock:
            return {company_id for cache in self._caches() for company_id in cache}

    def _first_due(self, company_id: str, every: float) -> float:
        """A moment after the first cycle and within ``every`` of now, the same for a company
        on every start, so that the deferred fetches of a fleet spread evenly."""
        poll = self._config.poll.interval
        share = zlib.crc32(company_id.encode()) / 2**32
        return self._clock.monotonic() + poll + share * max(0.0, every - poll)

    def _caches(self) -> tuple[dict[str, _Fetched], ...]:
        return self._names, self._connections, self._schedules

    def _value(self, cache: dict[str, _Fetched], company_id: str, default: Any) -> Any:
        with self._lock:
            known = cache.get(company_id)
        return default if known is None or known.value is None else known.value

    def _refresh(
        self,
        cache: dict[str, _Fetched],
        company_id: str,
        every: float,
        what: str,
        fetch: Callable[[], T],
        *,
        defer: bool = False,
    ) -> CodatError | None:
        now = self._clock.monotonic()
        with self._lock:
            known = cache.get(company_id)
            if known is None and defer:
                cache[company_id] = _Fetched(None, self._first_due(company_id, every) - every)
                return None
        if known is not None and now - known.at < every:
            return None
        try:
            value = fetch()
        except ApiKeyRejected:
            raise
        except Deferred:
            self._unread.deferred("names" if what == "name" else what)
            return None
        except CodatError as exc:
            return exc
        except ShapeError as exc:
            return MalformedResponse(f"{what}: {exc}")
        with self._lock:
            cache[company_id] = _Fetched(value, now)
        return None


def _deauthorized(connections: object) -> bool:
    """Whether one of the connections is one to (re)link, whose link the page shows."""
    return isinstance(connections, tuple) and any(
        isinstance(c, ConnectionState) and c.status in GONE for c in connections
    )
