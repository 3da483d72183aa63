"""Sizing before a start: the largest fleet a config fits, and a config that fits a fleet of
N companies, both from the estimate the start-up log warns with (``exporter.poll.budget``).

``--check-config`` prints ``check(config)``. For the companies ``companies.ids`` lists, the
day's requests against Codat's daily quota and the minute's against
``codat.max_requests_per_minute``, and the start-up warning when they are over. With
discovery, whose fleet is known only once Codat lists it, what one company costs and the
largest fleet that fits:

>>> from exporter.config.load import parse_config
>>> config = parse_config({"codat": {"api_key": "k"}, "companies": {"discover": True}})
>>> print("\\n".join(check(config).lines))  # doctest: +NORMALIZE_WHITESPACE
requests for each company: about 386 a day (polls every 5m: 288, connections: 48,
pull operations: 50), besides discovery's pages
largest fleet this config fits: 2,238 companies by codat.max_requests_per_minute
(600 a minute); any number by Codat's daily quota (a company adds 1,000 a day to it)
with room to spare (80% of each limit, as the sizing table keeps): 1,790 companies

docs/configuration.md's sizing table (``table``) and README's shorter one (``summary``) are
``suggest`` for a few fleet sizes, written by ``python -m exporter.reference``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from exporter.config.durations import format_duration
from exporter.config.load import parse_config
from exporter.config.sections import Config
from exporter.core.phrases import plural
from exporter.poll.budget import (
    ASSUMED_DATA_TYPES,
    FRIENDLY_INTERVALS,
    REQUESTS_PER_COMPANY,
    Estimate,
    estimate_for,
    fleet_size,
)

LARGEST_SEARCHED = 100_000_000
"""Companies: a fleet that fits beyond this fits any number."""
HEADROOM = 0.8
"""The share of Codat's daily quota and of the per-minute limit a suggested config uses at
most. The rest is for what the estimate does not count (retries, the first round after a
start, webhooks' re-polls) and for the other clients of the same API key."""
FLEET_REQUESTS_PER_MINUTE = 600
"""The whole fleet's requests a minute in the sizing table, as the Kubernetes manifests and
chart give it: Codat allows 1,000 per IP, and the replicas share one egress IP with the
cluster's other clients of Codat."""
COMPANIES_PER_REPLICA = 10_000
"""The most companies the sizing table gives one replica: the fleet bench/ measures (25 data
types each). More replicas split memory and a failure's reach, not Codat's per-IP limit."""
MEASURED_PEAK_RSS = ((1_000, 81.0), (10_000, 295.0))
"""(companies, MB): the exporter's peak RSS polling and serving companies x 25 data types
(bench/RESULTS.md, "GET /metrics"; tests/poll/test_sizing.py holds these to it)."""
MEMORY_HEADROOM = 1.5
"""Memory per replica: the measured peak, on the straight line through ``MEASURED_PEAK_RSS``,
plus a half, which also covers a restart from the state file (it peaks higher than a poll:
bench/RESULTS.md, bench/restart.py; tests/poll/test_sizing.py holds the two together)."""
TABLE_FLEETS = (100, 1_000, 5_000, 10_000)
_MIB = 2**20
_REQUEST_STEP = 64
"""MiB: memory requests are rounded up to a multiple of this."""


@dataclass(frozen=True)
class Check:
    """What ``--check-config`` prints (``lines``) and warns (``warning``, the start-up log's)."""

    lines: tuple[str, ...]
    warning: str | None


def check(config: Config) -> Check:
    """The request budget of ``config`` before it starts: the listed companies' estimate as
    the start-up log makes it, and with discovery the cost of a company and the largest fleet
    that fits (the listed companies among them)."""
    discover = config.companies.discover
    companies = fleet_size(config)
    estimate = estimate_for(config, companies)
    lines = []
    if companies or not discover:
        which = plural(companies, "company")
        which = f"the {which} listed" if discover else which
        lines.append(f"requests for {which}: {_usage(estimate)}; {estimate.breakdown() or 'none'}")
    if discover:
        lines += [_per_company(config), _largest(config), _roomy(config)]
    return Check(tuple(lines), estimate.warning())


def _usage(estimate: Estimate) -> str:
    share = "" if estimate.quota_share == 1 else f"{estimate.quota_share * 100:g}% of "
    each = " per replica" if estimate.shards > 1 else ""
    return (
        f"about {estimate.total:,.0f} a day of {share}the {estimate.quota:,} Codat allows "
        f"({REQUESTS_PER_COMPANY:,} x (1 + {plural(estimate.quota_companies, 'company')})); about "
        f"{_rate(estimate.per_minute)} a minute{each} of codat.max_requests_per_minute "
        f"({estimate.per_minute_limit:,})"
    )


def _rate(per_minute: float) -> str:
    return f"{per_minute:.1f}" if per_minute < 10 else f"{per_minute:,.0f}"


def _per_company(config: Config) -> str:
    one = replace(estimate_for(config, 1), discovery=0.0, refreshes=0.0)
    return (
        f"requests for each company: about {one.total:,.0f} a day ({one.breakdown()}), "
        "besides discovery's pages"
    )


def largest_fleet(config: Config) -> tuple[int | None, int | None]:
    """The most companies ``config`` fits (all shards) by the per-minute limit and by Codat's
    daily quota, as the start-up estimate counts them; None: any number."""
    by_rate = _search(lambda n: estimate_for(config, n).fits_rate)
    by_quota = _search(lambda n: estimate_for(config, n).fits_quota)
    return by_rate, by_quota


def _largest(config: Config) -> str:
    by_rate, by_quota = largest_fleet(config)
    each = " per replica" if config.shard.count > 1 else ""
    rate = (
        f"by codat.max_requests_per_minute ({config.codat.max_requests_per_minute:,} a "
        f"minute{each})"
    )
    quota = f"by Codat's daily quota (a company adds {REQUESTS_PER_COMPANY:,} a day to it)"
    limits = sorted([(by_rate, rate), (by_quota, quota)], key=lambda n: _most(n[0]))
    (first, first_by), (second, second_by) = limits
    fleet = "any number of companies" if first is None else plural(first, "company")
    return f"largest fleet this config fits: {fleet} {first_by}; {_count(second)} {second_by}"


def _roomy(config: Config) -> str:
    """The largest fleet ``sized``: what the sizing table would start with this config."""
    fleet = _search(lambda n: sized(config, n))
    most = "any number of companies" if fleet is None else plural(fleet, "company")
    return f"with room to spare ({HEADROOM:.0%} of each limit, as the sizing table keeps): {most}"


def _most(companies: int | None) -> int:
    return LARGEST_SEARCHED if companies is None else companies


def _count(companies: int | None) -> str:
    return "any number" if companies is None else f"{companies:,}"


def _search(fits: Callable[[int], bool]) -> int | None:
    """The most companies for which ``fits``, which holds up to some number and not beyond;
    None when it still holds at ``LARGEST_SEARCHED``."""
    if fits(LARGEST_SEARCHED):
        return None
    low, high = -1, LARGEST_SEARCHED
    while high - low > 1:  # at most log2(LARGEST_SEARCHED) + 1 steps
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return max(low, 0)


@dataclass(frozen=True)
class Sizing:
    """A config for ``companies``, as the sizing table shows it."""

    companies: int
    config: Config
    estimate: Estimate

    @property
    def replicas(self) -> int:
        return self.config.shard.count

    @property
    def memory_mb(self) -> float:
        return memory_mb(math.ceil(self.companies / self.replicas))

    @property
    def memory_request(self) -> str:
        """``memory_mb`` as a Kubernetes memory request, rounded up: ``512Mi``."""
        return f"{math.ceil(self.memory_mb * 1e6 / _MIB / _REQUEST_STEP) * _REQUEST_STEP}Mi"


def sized(config: Config, companies: int) -> bool:
    """Whether ``config`` fits ``companies`` within ``HEADROOM`` of both limits."""
    estimate = estimate_for(config, companies)
    limit = estimate.per_minute_limit
    return estimate.total <= HEADROOM * estimate.allowed and (
        limit is None or estimate.per_minute <= HEADROOM * limit
    )


def suggest(companies: int) -> Sizing | None:
    """The Kubernetes base's config (discovery, connections and diagnostics as by default)
    for ``companies``: one replica per ``COMPANIES_PER_REPLICA`` sharing
    ``FLEET_REQUESTS_PER_MINUTE``, polling at the shortest of ``FRIENDLY_INTERVALS`` that
    is ``sized``; None when not even once a day is.

    >>> sizing = suggest(5000)
    >>> format_duration(sizing.config.poll.interval), sizing.replicas, sizing.memory_request
    ('1h', 1, '256Mi')
    """
    replicas = max(1, math.ceil(companies / COMPANIES_PER_REPLICA))
    base = parse_config(
        {
            "codat": {
                "api_key": "sizing",
                "max_requests_per_minute": FLEET_REQUESTS_PER_MINUTE // replicas,
            },
            "companies": {"discover": True},
            "sharding": {"shards": replicas, "shard": 0},
        },
        environ={},
        hostname="sizing",
    )
    for interval in FRIENDLY_INTERVALS:
        config = replace(base, poll=replace(base.poll, interval=interval))
        if sized(config, companies):
            return Sizing(companies, config, estimate_for(config, companies))
    return None


def memory_mb(companies: int) -> float:
    """MB (10^6 bytes) one replica polling ``companies`` should be given: the peak RSS the
    benchmark measured, as a line through ``MEASURED_PEAK_RSS``, plus ``MEMORY_HEADROOM``.

    >>> round(memory_mb(1_000)), round(memory_mb(10_000))
    (122, 442)
    """
    base, per_company = _memory_line()
    return MEMORY_HEADROOM * (base + per_company * companies)


def _memory_line() -> tuple[float, float]:
    """MB at no company, and MB per company, through the two measured peaks."""
    (few, few_mb), (many, many_mb) = MEASURED_PEAK_RSS
    per_company = (many_mb - few_mb) / (many - few)
    return few_mb - per_company * few, per_company


def table() -> str:
    """docs/configuration.md's sizing table, ``suggest`` for each of ``TABLE_FLEETS``."""
    rows = [
        "| companies | `poll.interval` | replicas (`sharding.shards`) | "
        "`codat.max_requests_per_minute` each | requests a minute each | requests a day "
        "(of Codat's quota) | memory per replica (request) |",
        "|---:|---|---:|---:|---:|---:|---|",
    ]
    for companies in TABLE_FLEETS:
        sizing = suggest(companies)
        if sizing is None:
            rows.append(f"| {companies:,} | does not fit, even polling once a day | | | | | |")
            continue
        config, estimate = sizing.config, sizing.estimate
        rows.append(
            f"| {companies:,} | {format_duration(config.poll.interval)} | {sizing.replicas} | "
            f"{config.codat.max_requests_per_minute:,} | {estimate.per_minute:,.0f} | "
            f"{estimate.total:,.0f} ({estimate.total / estimate.quota:.0%}) | "
            f"{sizing.memory_mb:,.0f} MB ({sizing.memory_request}) |"
        )
    return "\n".join(rows) + "\n\n" + _assumptions()


def summary() -> str:
    """README's short sizing table: ``table``'s rows, fewer columns, the same figures."""
    rows = [
        "| companies | `poll.interval` | replicas | requests a minute | memory per replica |",
        "|---:|---|---:|---:|---:|",
    ]
    for companies in TABLE_FLEETS:
        sizing = suggest(companies)
        if sizing is None:
            rows.append(f"| {companies:,} | does not fit | | | |")
            continue
        rows.append(
            f"| {companies:,} | {format_duration(sizing.config.poll.interval)} | "
            f"{sizing.replicas} | {sizing.estimate.per_minute * sizing.replicas:,.0f} | "
            f"{sizing.memory_request} |"
        )
    return "\n".join(rows)


def _assumptions() -> str:
    base, per_company = _memory_line()
    (few, few_mb), (many, many_mb) = MEASURED_PEAK_RSS
    return (
        f"Each row is the shortest `poll.interval` that keeps the estimate within "
        f"{HEADROOM:.0%} of Codat's daily quota and of the per-minute limit, with the "
        f"Kubernetes base's config: discovery, connections and diagnostics as by default, "
        f"{ASSUMED_DATA_TYPES} data types a company synced daily, "
        f"{FLEET_REQUESTS_PER_MINUTE} requests a minute for the whole fleet (one egress IP), "
        f"and a replica per {COMPANIES_PER_REPLICA:,} companies. Memory is the exporter's peak "
        f"RSS measured at {few:,} and {many:,} companies ({few_mb:.0f} and {many_mb:.0f} MB, "
        f"bench/RESULTS.md) on a straight line, about {base:.0f} MB plus "
        f"{per_company * 1000:.0f} KB a company, plus {MEMORY_HEADROOM - 1:.0%} headroom, "
        f"which covers a restart from the state file (its peak is higher)."
    )
