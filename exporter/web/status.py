"""What the status page (``/``) and ``GET /api/v1/status`` show: the current snapshot's pairs
judged now (``exporter.exposition.assess``), filtered and sorted, with the fleet's summary.

Data flows snapshot -> ``build`` -> ``FleetStatus`` -> ``statuspage.render`` (HTML) or
``to_json`` (the API), so the page and the API never disagree.

Filters are query parameters, each repeated or comma-separated (values of one parameter
are alternatives; parameters combine): ``status`` (a state of ``STATES`` or a Codat
``currentStatus``, any case), ``company`` (part of a company's id or name, any case),
``data_type`` (a data type, any case), ``connection`` (a connection status of
``CONNECTION_STATUSES``, any case) and ``platform`` (a connection's platform name, any
case), and ``all=1`` (healthy pairs too). Without ``status`` the pairs that need attention
are listed (every pair with ``all=1``). An unknown status or connection status, or an
``all`` that is not a yes or no, is answered 400; other parameters are ignored.

``connection`` and ``platform`` choose companies, one connection matching both: the
companies (``FleetStatus.companies``, the API's ``companies``) are those with such a
connection, whatever their pairs' states, and their pairs listed are those such a
connection serves (``connections_for``). ``FleetStatus.relink`` are the companies the page
lists with their connections ("Connections to relink"): of those, the ones with a
connection of the asked status, Deauthorized when none is asked, on an asked platform.

Order: by age / max age, highest first. Never-synced pairs have no age, so they follow
every pair that has one (they are the least urgent in the alert rules: info), by company
name and data type, as are ties.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, NamedTuple, overload
from urllib.parse import parse_qs, urlencode
from weakref import WeakKeyDictionary

from exporter.core.contract import CONNECTION_STATUSES, KNOWN_STATUSES, NEVER_SYNCED, UNKNOWN_STATUS
from exporter.core.families import LAST_DISCOVERY, QUOTA_LIMIT, QUOTA_REMAINING, QUOTA_RESET
from exporter.core.snapshot import CompanyState, ConnectionState, DataTypeStatus
from exporter.exposition import assess
from exporter.exposition.assess import FleetPairs, Pair, PairCounts, PairState
from exporter.exposition.instruments import ExporterMetrics
from exporter.exposition.render import Exposition

STATUS_API_PATH = "/api/v1/status"
JSON_TYPE = "application/json"
JSON_BATCH = 1000

STATES: tuple[str, ...] = (
    assess.AUTH_ERROR, assess.FAILING, assess.STALE, assess.STUCK, NEVER_SYNCED, assess.PAUSED,
    assess.IN_PROGRESS, assess.HEALTHY,
)  # fmt: skip
"""What ``status`` may name besides a Codat status, worst first."""

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")
_CONNECTION_RANK = {"Deauthorized": 0, "Unlinked": 1, "PendingAuth": 2, "Linked": 4}
"""Which connection status a pair's row shows when its company has several: the worst."""
DEAUTHORIZED = "Deauthorized"
"""The connection status whose companies must relink: listed on the page without a filter."""


class Answer(NamedTuple):
    """An HTTP answer, as ``web.Handler._send`` takes it."""

    status: int
    body: bytes
    content_type: str
    headers: dict[str, str]


class FilterError(ValueError):
    """A filter that cannot mean anything; the message says which and what is allowed."""


@dataclass(frozen=True)
class Filters:
    statuses: tuple[str, ...] = ()
    """Canonical spellings (``AuthError``, ``stale``, ``Queued``)."""
    companies: tuple[str, ...] = ()
    data_types: tuple[str, ...] = ()
    all: bool = False
    connections: tuple[str, ...] = ()
    """Connection statuses, canonical (``Deauthorized``)."""
    platforms: tuple[str, ...] = ()

    @property
    def narrowed(self) -> bool:
        return bool(self.statuses or self.data_types or self.by_company)

    @property
    def by_company(self) -> bool:
        """Whether the filters choose companies: the page then lists their pairs one by one."""
        return bool(self.companies or self.connections or self.platforms)

    @cached_property
    def _platforms(self) -> frozenset[str]:
        return frozenset(platform.lower() for platform in self.platforms)

    def matches_connection(self, connection: ConnectionState) -> bool:
        """Whether the connection is of an asked status on an asked platform."""
        return (not self.connections or connection.status in self.connections) and (
            not self._platforms or connection.platform.lower() in self._platforms
        )

    def relinks(self, company: CompanyState) -> bool:
        """Whether the page lists the company with its connections: it has one on an asked
        platform of an asked status, or Deauthorized when no status is asked."""
        statuses = self.connections or (DEAUTHORIZED,)
        return any(c.status in statuses and self.matches_connection(c) for c in company.connections)

    @cached_property
    def _needles(self) -> tuple[str, ...]:
        return tuple(needle.lower() for needle in self.companies)

    @cached_property
    def _types(self) -> frozenset[str]:
        return frozenset(data_type.lower() for data_type in self.data_types)

    def matches_company(self, company: CompanyState) -> bool:
        if (self.connections or self.platforms) and not any(
            self.matches_connection(c) for c in company.connections
        ):
            return False
        if not self.companies:
            return True
        haystack = f"{company.company_id}\n{company.name}".lower()
        return any(needle in haystack for needle in self._needles)

    @cached_property
    def _tests(self) -> tuple[tuple[str, Callable[[Pair, float], bool] | None], ...]:
        return tuple((status, assess.TESTS.get(status)) for status in self.statuses)

    def matches_type(self, item: DataTypeStatus) -> bool:
        return not self._types or item.data_type.lower() in self._types

    def matches(self, pair: Pair, now: float) -> bool:
        """Whether the pair is listed at ``now`` (its company already matched)."""
        if not self.matches_type(pair.item):
            return False
        if (self.connections or self.platforms) and not self._served(pair):
            return False
        if self._tests:
            return any(
                pair.item.status == status if test is None else test(pair, now)
                for status, test in self._tests
            )
        return self.all or not pair.healthy(now)

    def _served(self, pair: Pair) -> bool:
        """Whether a connection of the asked status and platform serves the pair: quick when
        every connection of its company matches (most have one)."""
        connections = pair.company.connections
        if all(self.matches_connection(c) for c in connections):
            return True
        serving = connections_for(pair.company, pair.item.data_type)
        return any(self.matches_connection(c) for c in serving)

    def query(self, **changes: Any) -> str:
        """These filters as a query string, ``changes`` applied: ``?status=stale&all=1``."""
        values = {"status": self.statuses, "company": self.companies,
                  "data_type": self.data_types, "connection": self.connections,
                  "platform": self.platforms, "all": self.all, **changes}  # fmt: skip
        pairs = [(k, ",".join(v)) for k, v in values.items() if k != "all" and v]
        if values["all"]:
            pairs.append(("all", "1"))
        return "?" + urlencode(pairs) if pairs else ""


def parse_filters(
    query: str, seen_statuses: Iterable[str] = (), seen_connections: Iterable[str] = ()
) -> Filters:
    """The filters of a query string; ``seen_statuses`` and ``seen_connections`` (connection
    statuses) are valid besides the known ones.

    >>> parse_filters("status=authError,stale&company=Acme&all=yes")  # doctest: +ELLIPSIS
    Filters(statuses=('AuthError', 'stale'), companies=('Acme',), data_types=(), all=True, ...)
    >>> parse_filters("connection=deauthorized&platform=QuickBooks+Online").connections
    ('Deauthorized',)
    >>> parse_filters("status=Bogus")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    exporter.web.status.FilterError: status: unknown value 'Bogus'; one of AuthError, failing, ...
    >>> parse_filters("connection=Revoked")
    Traceback (most recent call last):
    exporter.web.status.FilterError: connection: unknown value 'Revoked'; one of PendingAuth, \
Linked, Unlinked, Deauthorized, Unknown
    """
    params = parse_qs(query, keep_blank_values=True)

    def values(name: str) -> tuple[str, ...]:
        split = (part.strip() for value in params.get(name, ()) for part in value.split(","))
        return tuple(dict.fromkeys(part for part in split if part))

    def canonical(name: str, known: tuple[str, ...], seen: Iterable[str]) -> tuple[str, ...]:
        spellings = {s.lower(): s for s in (*known, *seen)}
        chosen = []
        for value in values(name):
            if value.lower() not in spellings:
                allowed = ", ".join(dict.fromkeys(known))
                raise FilterError(f"{name}: unknown value {value!r}; one of {allowed}")
            chosen.append(spellings[value.lower()])
        return tuple(dict.fromkeys(chosen))

    statuses = canonical("status", (*STATES, *KNOWN_STATUSES, UNKNOWN_STATUS), seen_statuses)
    connections = canonical("connection", (*CONNECTION_STATUSES, UNKNOWN_STATUS), seen_connections)
    flag = params.get("all", ["0"])[-1].strip().lower()
    if flag not in (*_TRUE, *_FALSE):
        raise FilterError(f"all: {flag!r} is neither 1 nor 0")
    return Filters(
        statuses,
        values("company"),
        values("data_type"),
        flag in _TRUE,
        connections,
        values("platform"),
    )


@dataclass(frozen=True)
class Discovery:
    """Whether the fleet comes from ``GET /companies`` and how that goes, as far as the
    exporter's own metrics tell: ``used`` once discovery has succeeded or failed once."""

    used: bool
    last_success: float | None
    failures: int


class Rows(Sequence[PairState]):
    """The matching pairs in the page's order, each a ``PairState`` only once read: a page
    reads 1,000 of them, and 40,000 objects made for nothing would cost GC passes."""

    def __init__(self, pairs: FleetPairs, indexes: list[int], now: float) -> None:
        self._pairs, self._indexes, self._now = pairs, indexes, now

    def __len__(self) -> int:
        return len(self._indexes)

    @overload
    def __getitem__(self, at: int) -> PairState: ...
    @overload
    def __getitem__(self, at: slice) -> Sequence[PairState]: ...
    def __getitem__(self, at: int | slice) -> PairState | Sequence[PairState]:
        if isinstance(at, slice):
            return Rows(self._pairs, self._indexes[at], self._now)
        return PairState(self._pairs.pair(self._indexes[at]), self._now)


@dataclass(frozen=True)
class FleetStatus:
    generated_at: float
    not_ready_reason: str
    """Why ``/-/ready`` answers 503; empty when ready."""
    counts: PairCounts
    """Over the whole fleet, whatever the filters."""
    companies: tuple[CompanyState, ...]
    """Every company that the company, connection and platform filters match, by name."""
    rows: Sequence[PairState]
    """Every pair that the filters match, in the page's order."""
    filters: Filters
    last_cycle_end: float | None
    last_cycle_duration: float | None
    monitored: int
    data_types: tuple[str, ...]
    """Every data type of the fleet, sorted."""
    companies_up: int
    """Companies whose latest poll succeeded, in the whole fleet."""
    quota: Mapping[str, float] = field(default_factory=dict)
    """``codat_api_quota_*`` values by metric name, once Codat has sent them."""
    discovery: Discovery = Discovery(False, None, 0)
    relink: tuple[CompanyState, ...] = ()
    """The companies the page lists with their connections (``Filters.relinks``), by name."""
    platforms: tuple[str, ...] = ()
    """Every connection platform of the fleet, sorted."""

    @property
    def ready(self) -> bool:
        return not self.not_ready_reason


def _matching(
    pairs: FleetPairs, filters: Filters, companies: list[CompanyState], now: float
) -> Rows:
    """The pairs that ``filters`` match, in the page's order: those of the companies
    matched, when companies are asked for (few), or else from ``FleetPairs``' lists by state
    (quick at fleet scale)."""
    if filters.by_company:
        mine = (pairs.pair(i) for c in companies for i in pairs.by_company[c.company_id])
        chosen: Iterable[int] = [pair.rank for pair in mine if filters.matches(pair, now)]
    elif filters.statuses:
        chosen = {i for status in filters.statuses for i in pairs.having(status, now)}
    else:
        chosen = range(len(pairs)) if filters.all else pairs.attention(now)
    if filters.data_types:
        chosen = [i for i in chosen if filters.matches_type(pairs.items[i])]
    return Rows(pairs, pairs.ordered(chosen, now), now)


@dataclass(frozen=True)
class _Index:
    """What a snapshot's status page needs that holds until the next snapshot."""

    pairs: FleetPairs
    data_types: tuple[str, ...]
    statuses: frozenset[str]
    companies_up: int
    connection_statuses: frozenset[str]
    platforms: tuple[str, ...]
    deauthorized: tuple[CompanyState, ...]
    """The companies with a Deauthorized connection, by name."""


_INDEXES: WeakKeyDictionary[Exposition, _Index] = WeakKeyDictionary()
_INDEX_LOCK = threading.Lock()


def _index(exposition: Exposition) -> _Index:
    """Built by the first request after each poll (about 0.5 s at 250,000 pairs), then
    shared by every request until the exposition is replaced and dropped."""
    with _INDEX_LOCK:
        found = _INDEXES.get(exposition)
        if found is None:
            snapshot = exposition.snapshot
            pairs = FleetPairs(snapshot, exposition.freshness)
            connections = [c for company in pairs.companies for c in company.connections]
            unfiltered = Filters()
            found = _INDEXES[exposition] = _Index(
                pairs,
                tuple(sorted({item.data_type for item in pairs.items})),
                frozenset(pairs.by_status),
                sum(company.up for company in snapshot.companies.values()),
                frozenset(c.status for c in connections),
                tuple(sorted({c.platform for c in connections if c.platform}, key=str.lower)),
                tuple(c for c in pairs.companies if unfiltered.relinks(c)),
            )
        return found


def build(
    exposition: Exposition,
    metrics: ExporterMetrics,
    now: float,
    filters: Filters,
    not_ready_reason: str = "",
) -> FleetStatus:
    """Judge the exposition's snapshot at ``now`` and keep the pairs that match."""
    snapshot = exposition.snapshot
    index = _index(exposition)
    companies = [c for c in index.pairs.companies if filters.matches_company(c)]
    rows = _matching(index.pairs, filters, companies, now)
    relink = (
        tuple(c for c in companies if filters.relinks(c))
        if filters.by_company
        else index.deauthorized
    )
    latest = {family.name: family.samples[0].value for family in metrics.latest.collect()}
    failures = int(next(iter(metrics.discovery_failures.collect())).samples[0].value)
    last_discovery = latest.get(LAST_DISCOVERY.name)
    return FleetStatus(
        generated_at=now,
        not_ready_reason=not_ready_reason,
        counts=index.pairs.counts(now),
        companies=tuple(companies),
        rows=rows,
        filters=filters,
        last_cycle_end=snapshot.last_poll,
        last_cycle_duration=snapshot.poll_duration,
        monitored=snapshot.monitored,
        data_types=index.data_types,
        companies_up=index.companies_up,
        quota={k: v for k, v in latest.items() if k in _QUOTA},
        discovery=Discovery(last_discovery is not None or failures > 0, last_discovery, failures),
        relink=relink,
        platforms=index.platforms,
    )


_QUOTA = {QUOTA_LIMIT.name, QUOTA_REMAINING.name, QUOTA_RESET.name}


def connections_for(company: CompanyState, data_type: str) -> tuple[ConnectionState, ...]:
    """The company's connections that serve the data type, as Codat names data types:
    ``banking-*`` from Banking sources, ``commerce-*`` from Commerce ones, the rest from
    Accounting; all of them when none is of that source type. Worst status first."""
    prefix, _, rest = data_type.partition("-")
    source = prefix.capitalize() if rest and prefix in ("banking", "commerce") else "Accounting"
    serving = [c for c in company.connections if c.source_type == source]
    chosen = serving or list(company.connections)
    return tuple(sorted(chosen, key=lambda c: _CONNECTION_RANK.get(c.status, 3)))


def rfc3339(moment: float | None) -> str | None:
    """``2026-11-23T12:00:00Z``, with milliseconds when there are any.

    >>> rfc3339(1795435200.0), rfc3339(1795435200.25), rfc3339(None)
    ('2026-11-23T12:00:00Z', '2026-11-23T12:00:00.250Z', None)
    """
    if moment is None:
        return None
    spec = "seconds" if moment == int(moment) else "milliseconds"
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec=spec).replace("+00:00", "Z")


def pair_json(state: PairState) -> dict[str, Any]:
    item, sync = state.item, state.sync
    connections = connections_for(state.company, item.data_type)
    refresh = state.company.refreshes.get(item.data_type)
    return {
        "company_id": state.company.company_id,
        "company_name": state.company.name,
        "data_type": item.data_type,
        "status": item.status,
        "states": list(state.states),
        "last_successful_sync": rfc3339(item.last_successful_sync),
        "age_seconds": None if state.age is None else round(state.age, 3),
        "max_age_seconds": state.max_age,
        "stale": state.stale,
        "paused_until": rfc3339(state.paused_until),
        "latest_sync_requested": rfc3339(sync.requested if sync else None),
        "error_message": sync.error_message if sync else None,
        "status_description": state.status_description,
        "refresh_queued_at": rfc3339(refresh.queued_at if refresh else None),
        "refresh_attempts": refresh.attempts if refresh else 0,
        "connection_status": connections[0].status if connections else None,
        "connection_platform": connections[0].platform if connections else None,
        "company_up": state.company.up,
    }


def head_json(status: FleetStatus) -> dict[str, Any]:
    """What the API's body says before its ``pairs`` and ``companies`` (README, "Status
    page and JSON API", has a sample)."""
    counts = status.counts
    discovery = status.discovery
    return {
        "generated_at": rfc3339(status.generated_at),
        "ready": status.ready,
        "not_ready_reason": status.not_ready_reason or None,
        "summary": {
            "companies": status.monitored,
            "companies_up": status.companies_up,
            "pairs": counts.pairs,
            "stale": counts.stale,
            "failing": counts.failing,
            "auth_error": counts.auth_error,
            "never_synced": counts.never_synced,
            "paused": counts.paused,
            "in_progress": counts.in_progress,
            "stuck": counts.stuck,
            "healthy": counts.healthy,
            "matching": len(status.rows),
            "last_cycle_end": rfc3339(status.last_cycle_end),
            "last_cycle_duration_seconds": status.last_cycle_duration,
            "quota_remaining": status.quota.get(QUOTA_REMAINING.name),
            "quota_limit": status.quota.get(QUOTA_LIMIT.name),
            "quota_reset": rfc3339(status.quota.get(QUOTA_RESET.name)),
            "discovery": {
                "used": discovery.used,
                "last_success": rfc3339(discovery.last_success),
                "failures": discovery.failures,
            },
        },
        "filters": {
            "status": list(status.filters.statuses),
            "company": list(status.filters.companies),
            "data_type": list(status.filters.data_types),
            "connection": list(status.filters.connections),
            "platform": list(status.filters.platforms),
            "all": status.filters.all,
        },
    }


NOT_FOUND_TEXT = "not found in Codat (404): check companies.ids"


def poll_error_text(company: CompanyState) -> str | None:
    """Why the company's latest poll failed, as the page and the API say it; None while up.

    >>> poll_error_text(CompanyState("c1", "", False, None, (), not_found=True))
    'not found in Codat (404): check companies.ids'
    >>> poll_error_text(CompanyState("c1", "", False, None, (), poll_error="timeout"))
    "poll failed (timeout); the exporter's log says more"
    """
    if company.up:
        return None
    if company.not_found:
        return NOT_FOUND_TEXT
    reason = f" ({company.poll_error})" if company.poll_error else ""
    return f"poll failed{reason}; the exporter's log says more"


def company_json(company: CompanyState) -> dict[str, Any]:
    return {
        "company_id": company.company_id,
        "company_name": company.name,
        "up": company.up,
        "poll_error": company.poll_error or None,
        "poll_error_message": poll_error_text(company),
        "last_poll_success": rfc3339(company.last_poll_success),
        "connections": [connection_json(c) for c in company.connections],
    }


def connection_json(connection: ConnectionState) -> dict[str, str]:
    return {
        "connection_id": connection.connection_id,
        "platform": connection.platform,
        "source_type": connection.source_type,
        "status": connection.status,
    }


def json_body(status: FleetStatus) -> bytes:
    """The API's body, compact: ``head_json`` then ``pairs`` and ``companies``, encoded
    ``JSON_BATCH`` at a time, so that no more dicts than that are alive at once (250,000
    would cost GC passes and memory)."""
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    rows, companies = status.rows, status.companies
    pairs = ",".join(
        dumps([pair_json(state) for state in rows[start : start + JSON_BATCH]])[1:-1]
        for start in range(0, len(rows), JSON_BATCH)
    )
    listed = ",".join(
        dumps([company_json(company) for company in companies[start : start + JSON_BATCH]])[1:-1]
        for start in range(0, len(companies), JSON_BATCH)
    )
    head = dumps(head_json(status))
    return f'{head[:-1]},"pairs":[{pairs}],"companies":[{listed}]}}'.encode()


def for_request(
    exposition: Exposition,
    metrics: ExporterMetrics,
    now: float,
    query: str,
    not_ready_reason: str = "",
) -> tuple[FleetStatus, FilterError | None]:
    """The status a request's query string asks for; with a refused filter, the unfiltered
    status and why it was refused."""
    try:
        index = _index(exposition)
        filters, error = parse_filters(query, index.statuses, index.connection_statuses), None
    except FilterError as refused:
        filters, error = Filters(), refused
    return build(exposition, metrics, now, filters, not_ready_reason), error


def answer(status: FleetStatus, error: FilterError | None = None) -> Answer:
    """``GET /api/v1/status``: 200 with ``json_body``, or 400 with ``{"error": ...}``."""
    headers = {"X-Content-Type-Options": "nosniff"}
    if error is not None:
        body = json.dumps({"error": str(error)})
        return Answer(400, body.encode(), JSON_TYPE, headers)
    return Answer(200, json_body(status), JSON_TYPE, headers)
