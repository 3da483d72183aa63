"""Will the exporter fit in Codat's daily request quota and in its own per-minute rate
limit? An estimate for a start-up warning.

Codat allows a client 1,000 x (1 + active connected companies) requests per UTC day, and
answers 429 to everything after that until 00:00 UTC: a fleet polled too often goes dark for
the rest of the day, and takes down every other integration that uses the same API key. So
the exporter estimates its own daily use at start-up and says which poll interval would fit.

What a day costs, with ``N`` companies:

- polls: N dataStatus requests every poll interval;
- discovery: ceil(N / page size) pages of GET /companies every discovery interval, by every
  shard (each replica lists the whole fleet to pick its share; the quota is per client);
- connections: N requests every connections interval, when enabled;
- sync settings: N requests every ``freshness.sync_settings_interval``, when
  ``freshness.from_sync_settings``;
- company names: N requests every ``NAME_REFRESH_INTERVAL`` (an hour), only without
  discovery (the company list has names);
- pull operations (``diagnostics``): about one read per sync of each data type of each
  company for each of ``sync_durations`` (its successful sync) and ``pull_operations`` (a
  latest sync that failed, paused or queued). Codat syncs each data type daily by default;
  where the companies' sync schedules are read (``freshness.from_sync_settings``), their
  syncs a day are counted instead (24 for an hourly schedule). The data types per company
  are those of the last poll, ``ASSUMED_DATA_TYPES`` before the first.

Discovery runs at the start of a cycle, and connections, sync settings and names are read
during a company's poll, each when due: at most once a poll, so an interval shorter than the
poll interval counts as the poll interval (connections every 30m, polls every 2h: 12 a day,
not 48).

Retries and the first round at start-up come on top; they are not counted.

The same requests must also fit ``codat.max_requests_per_minute``, the client-side limit each
replica keeps: a cycle that cannot make all its requests before the next one starts leaves
companies unpolled (``rate_limited``). The average rate a replica needs, its share of the day's
requests spread over 1,440 minutes, is checked against that limit too:

>>> print(estimate_daily_requests(5000, 300, discovery_interval=3600, page_size=1000,
...                               per_minute_limit=600).warning())  # doctest: +NORMALIZE_WHITESPACE
Codat rate limit: the exporter needs about 1,000 requests a minute, more than
codat.max_requests_per_minute (600); polls every 5m: 1,440,000, discovery: 120. Set
poll.interval to 10m or longer.

>>> estimate = estimate_daily_requests(companies=1000, poll_interval=60)
>>> estimate.total, estimate.quota, estimate.fits
(1464000.0, 1001000, False)
>>> estimate.suggested_interval
120.0
>>> print(estimate.warning())  # doctest: +NORMALIZE_WHITESPACE
Codat daily quota: the exporter needs about 1,464,000 requests a day, more than the
1,001,000 allowed (1,000 x (1 + 1,000 companies)); polls every 1m: 1,440,000, company
names every 1h: 24,000. Set poll.interval to 2m or longer.
>>> estimate_daily_requests(companies=1000, poll_interval=300).warning() is None
True
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from exporter.codat.sidevalues import NAME_REFRESH_INTERVAL
from exporter.config.durations import format_duration
from exporter.config.sections import Config
from exporter.core.phrases import plural
from exporter.core.snapshot import CompanyState

DAY = 86400.0
REQUESTS_PER_COMPANY = 1000
ASSUMED_DATA_TYPES = 25
"""Data types per company before the first poll has told."""

FRIENDLY_INTERVALS = tuple(
    float(seconds)
    for seconds in (
        *(60 * m for m in (1, 2, 5, 10, 15, 20, 30)),
        *(3600 * h for h in (1, 2, 3, 4, 6, 8, 12, 24)),
    )
)
"""The poll intervals ``suggested_interval`` picks from, 1m to 1d. Nothing shorter than a
minute can be needed: polling alone allows one request per company every 43 s at best."""


@dataclass(frozen=True)
class Estimate:
    """Requests per day by kind, against the quota. Build it with ``estimate_daily_requests``."""

    companies: int
    poll_interval: float
    quota: int
    """Codat's daily quota for the client: 1,000 x (1 + quota_companies)."""
    quota_companies: int
    quota_share: float
    """The fraction of the quota the exporter may use; the rest is left to other clients."""
    polls: float
    discovery: float
    connections: float
    sync_settings: float
    names: float
    pull_operations: float
    suggested_interval: float | None
    """The shortest of ``FRIENDLY_INTERVALS`` that fits, when the poll interval does not;
    None when it fits, or when not even 1d would."""
    shards: int = 1
    per_minute_limit: int | None = None
    """``codat.max_requests_per_minute`` of each replica; None: not checked."""
    refreshes: float = 0.0
    """At most ``refresh.max_per_day`` a replica, when refreshes are queued."""
    least_besides_polls: float = 0.0
    """When not even polling once a day fits: what the other requests need then."""

    @property
    def total(self) -> float:
        return (
            self.polls + self.discovery + self.connections + self.sync_settings + self.names
            + self.pull_operations + self.refreshes
        )  # fmt: skip

    @property
    def allowed(self) -> float:
        """The requests a day the exporter may make: the quota times ``quota_share``."""
        return self.quota * self.quota_share

    @property
    def per_minute(self) -> float:
        """The average requests a minute one replica makes (its share of the day's total)."""
        return self.total / self.shards / (DAY / 60)

    @property
    def fits_quota(self) -> bool:
        return self.total <= self.allowed

    @property
    def fits_rate(self) -> bool:
        return self.per_minute_limit is None or self.per_minute <= self.per_minute_limit

    @property
    def fits(self) -> bool:
        return self.fits_quota and self.fits_rate

    def breakdown(self) -> str:
        """The non-zero kinds, for a log line: ``polls every 1m: 1,440,000, ...``."""
        parts = [
            (f"polls every {format_duration(self.poll_interval)}", self.polls),
            ("discovery", self.discovery),
            ("connections", self.connections),
            ("sync settings", self.sync_settings),
            (f"company names every {format_duration(NAME_REFRESH_INTERVAL)}", self.names),
            ("pull operations", self.pull_operations),
            ("refreshes at most", self.refreshes),
        ]
        return ", ".join(f"{label}: {count:,.0f}" for label, count in parts if count)

    def warning(self) -> str | None:
        """The start-up warning when the estimate is over the quota, the rate limit or both
        (each said, the breakdown once)."""
        if self.fits:
            return None
        problems = [self._quota_problem()] if not self.fits_quota else []
        if not self.fits_rate:
            problems.append(
                f"Codat rate limit: the exporter needs about {self.per_minute:,.0f} requests a "
                f"minute, more than codat.max_requests_per_minute ({self.per_minute_limit:,})"
            )
        first, *more = problems
        text = " ".join([f"{first}; {self.breakdown()}.", *(f"{m}." for m in more)])
        if self.suggested_interval is not None:
            return (
                f"{text} Set poll.interval to {format_duration(self.suggested_interval)} or longer."
            )
        diagnostics = (
            ", or read fewer pull operations (diagnostics)" if self.pull_operations else ""
        )
        return (
            f"{text} Even polling once a day would not fit: the other requests alone would "
            f"need {self.least_besides_polls:,.0f}; make discovery, connections or sync "
            f"settings less frequent{diagnostics}."
        )

    def _quota_problem(self) -> str:
        if self.quota_share == 1:
            limit = f"the {self.quota:,} allowed"
        else:
            limit = (
                f"its {self.quota_share * 100:g}% share ({self.allowed:,.0f}) "
                f"of the {self.quota:,} allowed"
            )
        return (
            f"Codat daily quota: the exporter needs about {self.total:,.0f} requests a day, "
            f"more than {limit} ({REQUESTS_PER_COMPANY:,} x (1 + "
            f"{plural(self.quota_companies, 'company')}))"
        )


def estimate_for(
    config: Config,
    companies: int,
    *,
    data_types: float = ASSUMED_DATA_TYPES,
    syncs_per_day: float = 1.0,
) -> Estimate:
    """A day's requests under ``config`` for ``companies`` (the whole fleet, all shards),
    with ``data_types`` per company syncing ``syncs_per_day`` times a day (``fleet_shape``
    tells both from the last poll)."""
    discover, connections = config.companies.discover, config.connections
    freshness, diagnostics, refresh = config.freshness, config.diagnostics, config.refresh
    return estimate_daily_requests(
        companies,
        config.poll.interval,
        shards=config.shard.count,
        discovery_interval=config.companies.discovery_interval if discover else None,
        page_size=config.companies.page_size,
        connections_interval=connections.interval if connections.enabled else None,
        sync_settings_interval=(
            freshness.sync_settings_interval if freshness.from_sync_settings else None
        ),
        per_minute_limit=config.codat.max_requests_per_minute,
        pull_operation_reads=diagnostics.pull_operations + diagnostics.sync_durations,
        data_types=data_types,
        syncs_per_day=syncs_per_day,
        refreshes=(
            refresh.max_per_day * config.shard.count
            if refresh.enabled and not refresh.dry_run
            else 0
        ),
    )


def fleet_size(config: Config, listed: Iterable[str] = ()) -> int:
    """The companies of the whole fleet (all shards) an estimate is for: those discovery
    ``listed`` and ``companies.ids``, less ``companies.exclude``."""
    companies = config.companies
    return len({*listed, *companies.ids} - companies.exclude)


def fleet_shape(states: Sequence[CompanyState]) -> tuple[float, float]:
    """The data types per company and the syncs a day of the fleet's average data type, as
    the companies' last polls tell; ``ASSUMED_DATA_TYPES`` and daily before any."""
    if not states:
        return ASSUMED_DATA_TYPES, 1.0
    return sum(len(state.data_types) for state in states) / len(states), syncs_per_day(states)


def syncs_per_day(states: Sequence[CompanyState]) -> float:
    """Syncs a day of the fleet's average data type: Codat's ``syncSchedule`` (hours) where
    it was read, daily where not.

    >>> from exporter.core.snapshot import DataTypeStatus
    >>> pairs = tuple(DataTypeStatus(d, "Complete", 0.0) for d in ("invoices", "bills"))
    >>> syncs_per_day([CompanyState("c", "", True, 0.0, pairs, sync_schedules={"invoices": 1})])
    12.5
    """
    if not any(state.sync_schedules for state in states):
        return 1.0
    pairs = syncs = 0.0
    for state in states:
        schedules = state.sync_schedules
        for item in state.data_types:
            hours = schedules.get(item.data_type, 24.0)
            syncs += 24.0 / hours if hours > 0 else 1.0
        pairs += len(state.data_types)
    return syncs / pairs if pairs else 1.0


def estimate_daily_requests(
    companies: int,
    poll_interval: float,
    *,
    shards: int = 1,
    discovery_interval: float | None = None,
    page_size: int = 100,
    connections_interval: float | None = None,
    sync_settings_interval: float | None = None,
    quota_companies: int | None = None,
    quota_share: float = 1.0,
    per_minute_limit: int | None = None,
    pull_operation_reads: int = 0,
    data_types: float = ASSUMED_DATA_TYPES,
    syncs_per_day: float = 1.0,
    refreshes: int = 0,
) -> Estimate:
    """Estimate a day's requests for the whole fleet; intervals in seconds, None = disabled.

    ``pull_operation_reads`` is how many reads per sync of a data type ``diagnostics``
    makes (0 to 2), for ``data_types`` per company syncing ``syncs_per_day`` times a day.

    ``companies`` is the whole fleet, across all shards. ``quota_companies`` is what Codat's
    quota counts, the companies with an active connection; it defaults to ``companies``.

    >>> e = estimate_daily_requests(5000, 900, shards=4, discovery_interval=3600,
    ...                             page_size=500, sync_settings_interval=3600)
    >>> e.polls, e.discovery, e.sync_settings, e.names, e.fits
    (480000.0, 960.0, 120000.0, 0.0, True)
    >>> e = estimate_daily_requests(5000, 7200, discovery_interval=3600, connections_interval=1800)
    >>> e.polls, e.discovery, e.connections  # discovery and connections once a poll at most
    (60000.0, 600.0, 60000.0)
    """
    _check(companies >= 0, f"companies must be 0 or more, not {companies}")
    _check(syncs_per_day > 0, f"syncs_per_day must be over 0, not {syncs_per_day}")
    _check(shards >= 1, f"shards must be at least 1, not {shards}")
    _check(page_size >= 1, f"page_size must be at least 1, not {page_size}")
    _check(0 < quota_share <= 1, f"quota_share must be over 0 and at most 1, not {quota_share}")
    for name, interval in (
        ("poll_interval", poll_interval),
        ("discovery_interval", discovery_interval),
        ("connections_interval", connections_interval),
        ("sync_settings_interval", sync_settings_interval),
    ):
        _check(interval is None or interval > 0, f"{name} must be over 0s, not {interval}")
    counted = companies if quota_companies is None else quota_companies
    _check(counted >= 0, f"quota_companies must be 0 or more, not {counted}")

    pages = max(1, math.ceil(companies / page_size))
    names_interval = NAME_REFRESH_INTERVAL if discovery_interval is None else None

    def polling_every(poll: float) -> Estimate:
        def per_day(requests: float, interval: float | None) -> float:
            return 0.0 if interval is None else requests * DAY / max(interval, poll)

        return Estimate(
            companies=companies,
            poll_interval=poll,
            quota=REQUESTS_PER_COMPANY * (1 + counted),
            quota_companies=counted,
            quota_share=quota_share,
            polls=per_day(companies, poll),
            discovery=per_day(shards * pages, discovery_interval),
            connections=per_day(companies, connections_interval),
            sync_settings=per_day(companies, sync_settings_interval),
            names=per_day(companies, names_interval),
            pull_operations=companies * data_types * syncs_per_day * pull_operation_reads,
            refreshes=float(refreshes),
            suggested_interval=None,
            shards=shards,
            per_minute_limit=per_minute_limit,
        )

    estimate = polling_every(poll_interval)
    if estimate.fits:
        return estimate
    for interval in FRIENDLY_INTERVALS:
        if polling_every(interval).fits:
            return replace(estimate, suggested_interval=interval)
    daily = polling_every(FRIENDLY_INTERVALS[-1])
    return replace(estimate, least_besides_polls=daily.total - daily.polls)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)
