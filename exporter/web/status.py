"""What the status page (``/``) and ``GET /api/v1/status`` show: the current snapshot's pairs
judged now (``exporter.exposition.assess``), filtered (``exporter.web.filters``) and sorted,
with the fleet's summary.

Data flows snapshot -> ``build`` -> ``FleetStatus`` -> ``statuspage.render`` (HTML) or
``statusapi.json_body`` (the API), so the page and the API never disagree; the quota and
discovery facts come from the snapshot too (``Facts``), where the gauges read them.

Order: by age / max age, highest first. Never-synced pairs have no age, so they follow
every pair that has one (they are the least urgent in the alert rules: info), by company
name and data type, as are ties.
"""

from __future__ import annotations

import threading
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple, overload
from weakref import WeakKeyDictionary

from exporter.config.sections import StatusPageConfig
from exporter.config.sharding import Shard, shard_of
from exporter.core.families import QUOTA_LIMIT, QUOTA_REMAINING, QUOTA_RESET
from exporter.core.snapshot import CompanyState, DiscoveryFacts
from exporter.exposition import platforms
from exporter.exposition.assess import FleetPairs, PairCounts, PairState
from exporter.exposition.nextstep import next_step
from exporter.exposition.render import Exposition, Rendered
from exporter.web.filters import FilterError, Filters, parse_filters

DEFAULT_PAGE = StatusPageConfig()
"""The status page's settings when none are given (tests, the exporter's defaults)."""
UNSHARDED = Shard()
"""The one replica that polls every company: no sharding."""


class Answer(NamedTuple):
    """An HTTP answer, as ``handler.Handler._send`` takes it: the page and the API make one."""

    status: int
    body: bytes
    content_type: str
    headers: dict[str, str]


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
    """Every company that the company, connection and platform filters match, by name; of
    those, with ``next_step=relink,link`` (or one), the ones that must (``relink``)."""
    rows: Sequence[PairState]
    """Every pair that the filters match, in the page's order."""
    healthy_unlisted: int
    """The healthy pairs the filters match but for ``all=1``: the caption counts them."""
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
    discovery: DiscoveryFacts = field(default_factory=DiscoveryFacts)
    relink: tuple[CompanyState, ...] = ()
    """The companies the page lists with their connections (``Filters.relinks``), by name."""
    platforms: tuple[str, ...] = ()
    """Every connection platform of the fleet, sorted."""
    page: StatusPageConfig = DEFAULT_PAGE
    incidents: Mapping[str, int] = field(default_factory=dict)
    """The platforms in an incident (``platform_incident_companies`` or more companies
    failing on each, ``exposition.platforms``), with how many, by name."""
    shard: Shard = UNSHARDED
    """This replica's share of the fleet; ``Shard()`` (every company) when not sharded."""
    elsewhere: tuple[tuple[str, int], ...] = ()
    """Sharded, each ``company`` filter value that matches no company here, with the shard
    that polls a company of that id: alerts link to ``/?company=<id>`` on any replica."""

    @property
    def ready(self) -> bool:
        return not self.not_ready_reason


def _healthy_unlisted(pairs: FleetPairs, filters: Filters, chosen: _Chooser, listed: int) -> int:
    """The healthy pairs the filters would match with ``all=1``: those the caption says
    are not listed."""
    if filters.all or filters.statuses or filters.next_steps:
        return 0
    if not filters.narrowed:
        return len(pairs) - listed
    return sum(1 for _ in chosen(replace(filters, all=True))) - listed


@dataclass(frozen=True)
class _Chooser:
    """The pairs that filters match, in no order: those of the companies matched, when
    companies are asked for (few), or else from ``FleetPairs``' lists by state (quick at
    fleet scale); for a next step, those of the companies that must link or relink when it
    is one of theirs, else every pair judged."""

    pairs: FleetPairs
    companies: list[CompanyState]
    must_link: tuple[CompanyState, ...]
    incidents: Container[str]
    now: float

    def __call__(self, filters: Filters) -> Iterable[int]:
        pairs, now = self.pairs, self.now
        if filters.by_company:
            mine = (pairs.pair(i) for c in self.companies for i in pairs.by_company[c.company_id])
            chosen: Iterable[int] = [pair.rank for pair in mine if filters.matches(pair, now)]
        elif filters.statuses:
            chosen = {i for status in filters.statuses for i in pairs.having(status, now)}
        elif filters.must_link:
            chosen = [i for c in self.must_link for i in pairs.by_company[c.company_id]]
        else:
            chosen = (
                range(len(pairs)) if filters.all or filters.next_steps else pairs.attention(now)
            )
        if filters.data_types:
            chosen = [i for i in chosen if filters.matches_type(pairs.items[i])]
        if filters.next_steps:
            chosen = [i for i in chosen if self._step(i) in filters.next_steps]
        return chosen

    def _step(self, index: int) -> str:
        step = next_step(PairState(self.pairs.pair(index), self.now), self.incidents)
        return step.code if step is not None else ""


@dataclass(frozen=True)
class _Index:
    """What a snapshot's status page needs that holds until the next snapshot."""

    companies: Mapping[str, CompanyState]
    """The snapshot's, which the index is of."""
    pairs: FleetPairs
    data_types: tuple[str, ...]
    statuses: frozenset[str]
    companies_up: int
    connection_statuses: frozenset[str]
    platforms: tuple[str, ...]
    must_link: tuple[CompanyState, ...]
    """The companies that must link or relink (``Filters.relinks``), by name."""
    failing: Mapping[str, int]
    """Per platform, the companies failing on it (``platforms.failing_companies``)."""


_INDEXES: WeakKeyDictionary[Rendered, _Index] = WeakKeyDictionary()
_INDEX_LOCK = threading.Lock()


def _index(exposition: Exposition) -> _Index:
    """Built by the first request after each poll (about 0.5 s at 250,000 pairs), then
    shared by every request until the rendering is replaced and dropped: the expositions
    the store makes of it as facts change (``Exposition.with_facts``) hold the same
    companies."""
    snapshot = exposition.snapshot
    with _INDEX_LOCK:
        found = _INDEXES.get(exposition.rendered)
        if found is None or found.companies is not snapshot.companies:
            pairs = FleetPairs(snapshot, exposition.freshness)
            connections = [c for company in pairs.companies for c in company.connections]
            unfiltered = Filters()
            found = _INDEXES[exposition.rendered] = _Index(
                snapshot.companies,
                pairs,
                tuple(sorted({item.data_type for item in pairs.items})),
                frozenset(pairs.by_status),
                sum(company.up for company in snapshot.companies.values()),
                frozenset(c.status for c in connections),
                tuple(sorted({c.platform for c in connections if c.platform}, key=str.lower)),
                tuple(c for c in pairs.companies if unfiltered.relinks(c)),
                platforms.failing_companies(pairs.companies),
            )
        return found


def build(
    exposition: Exposition,
    now: float,
    filters: Filters,
    not_ready_reason: str = "",
    *,
    page: StatusPageConfig = DEFAULT_PAGE,
    shard: Shard = UNSHARDED,
) -> FleetStatus:
    """Judge the exposition's snapshot at ``now`` and keep the pairs that match."""
    snapshot = exposition.snapshot
    index = _index(exposition)
    companies = [c for c in index.pairs.companies if filters.matches_company(c)]
    incidents = platforms.incidents(index.failing, page.platform_incident_companies)
    chosen = _Chooser(index.pairs, companies, index.must_link, incidents, now)
    rows = Rows(index.pairs, index.pairs.ordered(chosen(filters), now), now)
    if filters.by_company or filters.must_link:
        listed = companies if filters.by_company else index.must_link
        relink = tuple(c for c in listed if filters.relinks(c))
    else:
        relink = index.must_link  # the page only counts them
    facts = snapshot.facts
    quota = ((QUOTA_LIMIT, facts.quota_limit), (QUOTA_REMAINING, facts.quota_remaining),
             (QUOTA_RESET, facts.quota_reset))  # fmt: skip
    return FleetStatus(
        generated_at=now,
        not_ready_reason=not_ready_reason,
        counts=index.pairs.counts(now),
        companies=relink if filters.must_link else tuple(companies),
        rows=rows,
        healthy_unlisted=_healthy_unlisted(index.pairs, filters, chosen, len(rows)),
        filters=filters,
        last_cycle_end=snapshot.last_poll,
        last_cycle_duration=snapshot.poll_duration,
        monitored=snapshot.monitored,
        data_types=index.data_types,
        companies_up=index.companies_up,
        quota={spec.name: value for spec, value in quota if value is not None},
        discovery=facts.discovery,
        relink=relink,
        platforms=index.platforms,
        page=page,
        incidents=incidents,
        shard=shard,
        elsewhere=_elsewhere(filters, index.pairs.companies, shard),
    )


def _elsewhere(
    filters: Filters, companies: Sequence[CompanyState], shard: Shard
) -> tuple[tuple[str, int], ...]:
    """``FleetStatus.elsewhere``: what ``company`` asks for that this shard has not, and
    which shard polls a company of that id."""
    if shard.count == 1:
        return ()
    return tuple(
        (needle, shard_of(needle, shard.count))
        for needle in filters.companies
        if not any(Filters(companies=(needle,)).matches_company(c) for c in companies)
    )


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


def for_request(
    exposition: Exposition,
    now: float,
    query: str,
    not_ready_reason: str = "",
    *,
    page: StatusPageConfig = DEFAULT_PAGE,
    shard: Shard = UNSHARDED,
) -> tuple[FleetStatus, FilterError | None]:
    """The status a request's query string asks for; with a refused filter, the unfiltered
    status and why it was refused."""
    try:
        index = _index(exposition)
        filters, error = parse_filters(query, index.statuses, index.connection_statuses), None
    except FilterError as refused:
        filters, error = Filters(), refused
    return build(exposition, now, filters, not_ready_reason, page=page, shard=shard), error
