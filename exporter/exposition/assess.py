"""Which company x data type pairs need attention: the one judgement that the cycle's log
line, the status page and the fleet aggregates share, so that they never disagree.

A pair is *stale* when its last successful sync is older than its max age (never-synced
pairs have no age: they are counted apart, as the alert rules do), *failing* when its latest
sync ended in an error status other than AuthError, and in *AuthError* when the company must
relink its books. It is *paused* while its latest sync's pull operation says "Paused until"
a time still ahead, *in progress* while that sync is queued or running, and *stuck* when it
has been so for more than ``STUCK_AFTER`` since it was requested.

A pair that is none of stale, failing, AuthError, never synced, paused or stuck is healthy:
one merely in progress is, as every sync spends some time so.

The status page judges the whole fleet on every request, so what holds until the next
snapshot (thresholds, latest-sync details, status) is worked out once per snapshot
(``FleetPairs``), and judging a pair at an instant is a few comparisons.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

from exporter.config.series import FreshnessConfig
from exporter.core.contract import ERROR_STATUSES, IN_PROGRESS_STATUSES, NEVER_SYNCED
from exporter.core.snapshot import CompanyState, DataTypeStatus, Snapshot, SyncDetail

AUTH_ERROR = "AuthError"
STUCK_AFTER = 6 * 3600.0
"""Seconds since a queued or running sync was requested after which it counts as stuck:
declared here only, and the default ``threshold`` of the alert CodatDataTypeSyncStuck
(``monitoring.config`` reads it), so that the page calls stuck what the alert fires for.
Six hours, not one: a first sync of years of books, or a large one, can run for hours,
while an on-premise connector whose machine is offline leaves its sync queued for good."""

STALE, FAILING, PAUSED, STUCK, IN_PROGRESS, HEALTHY = (
    "stale", "failing", "paused", "stuck", "in_progress", "healthy",
)  # fmt: skip
"""Names of the states, as the status page's filter and its JSON spell them; AuthError and
NeverSynced are spelt as the status they are."""

_FAILING = frozenset(ERROR_STATUSES)
_RUNNING = frozenset(IN_PROGRESS_STATUSES)


def max_age(company: CompanyState, item: DataTypeStatus, freshness: FreshnessConfig) -> float:
    """The pair's staleness threshold in seconds (see ``FreshnessConfig.max_age_for``)."""
    return freshness.max_age_for(
        item.data_type, company.company_id, company.sync_schedules.get(item.data_type)
    )


def latest_sync(company: CompanyState, item: DataTypeStatus) -> SyncDetail | None:
    """The pull operation read for the pair's latest sync, if it is still the latest."""
    sync = company.syncs.get(item.data_type)
    return sync if sync is not None and sync.sync_id == item.latest_sync_id else None


class Pair(NamedTuple):
    """What of a pair's judgement holds until the next snapshot (a tuple: there are
    250,000 of them at fleet scale, made after every poll)."""

    company: CompanyState
    item: DataTypeStatus
    max_age: float
    sync: SyncDetail | None
    """The latest sync's pull operation, when read (``latest_sync``)."""
    rank: int = 0
    """Its number in ``FleetPairs``: by company name, company id and data type."""

    @classmethod
    def of(
        cls, company: CompanyState, item: DataTypeStatus, freshness: FreshnessConfig, rank: int = 0
    ) -> Pair:
        sync = latest_sync(company, item) if company.syncs else None
        return cls(company, item, max_age(company, item, freshness), sync, rank)

    @property
    def failing(self) -> bool:
        return self.item.status in _FAILING

    @property
    def auth_error(self) -> bool:
        return self.item.status == AUTH_ERROR

    @property
    def never_synced(self) -> bool:
        return self.item.last_successful_sync is None and self.item.status == NEVER_SYNCED

    @property
    def in_progress(self) -> bool:
        return self.item.status in _RUNNING

    @property
    def fixed_problem(self) -> bool:
        """Failing, AuthError or never synced: a problem whatever the time."""
        return self.failing or self.auth_error or self.never_synced

    @property
    def paused_until(self) -> float | None:
        return self.sync.paused_until if self.sync is not None else None

    @property
    def requested(self) -> float | None:
        """When the sync in progress was requested; None unless one is and that is known."""
        return self.sync.requested if self.sync is not None and self.in_progress else None

    def stale(self, now: float) -> bool:
        last = self.item.last_successful_sync
        return last is not None and now - last > self.max_age

    def paused(self, now: float) -> bool:
        until = self.paused_until
        return until is not None and until > now

    def stuck(self, now: float) -> bool:
        requested = self.requested
        return requested is not None and now - requested > STUCK_AFTER

    def healthy(self, now: float) -> bool:
        return not (self.fixed_problem or self.stale(now) or self.paused(now) or self.stuck(now))


TESTS: dict[str, Callable[[Pair, float], bool]] = {
    AUTH_ERROR: lambda pair, now: pair.auth_error,
    FAILING: lambda pair, now: pair.failing,
    STALE: Pair.stale,
    STUCK: Pair.stuck,
    NEVER_SYNCED: lambda pair, now: pair.never_synced,
    PAUSED: Pair.paused,
    HEALTHY: Pair.healthy,
    IN_PROGRESS: lambda pair, now: pair.in_progress,
}
"""Each state's test at an instant, worst first: the one definition the filters, the counts
and ``PairState.states`` use."""


@dataclass(frozen=True, slots=True)
class PairState:
    """One pair judged at one instant."""

    pair: Pair
    now: float

    @property
    def company(self) -> CompanyState:
        return self.pair.company

    @property
    def item(self) -> DataTypeStatus:
        return self.pair.item

    @property
    def max_age(self) -> float:
        return self.pair.max_age

    @property
    def sync(self) -> SyncDetail | None:
        return self.pair.sync

    @property
    def age(self) -> float | None:
        """Seconds since the last successful sync; None when it never synced."""
        last = self.pair.item.last_successful_sync
        return None if last is None else self.now - last

    @property
    def stale(self) -> bool:
        return self.pair.stale(self.now)

    @property
    def paused_until(self) -> float | None:
        """When Codat's pause of the latest sync ends, while that is still ahead: once it
        has passed the pair is no longer paused, and /metrics drops the pause too."""
        return self.pair.paused_until if self.pair.paused(self.now) else None

    @property
    def status_description(self) -> str | None:
        """The latest sync's ``statusDescription``, unless it is a "Paused until <time>"
        whose time has passed: a reason that no longer holds."""
        sync = self.pair.sync
        if sync is None or (sync.paused_until is not None and self.paused_until is None):
            return None
        return sync.status_description

    @property
    def healthy(self) -> bool:
        return self.pair.healthy(self.now)

    @property
    def states(self) -> tuple[str, ...]:
        """What the pair is, worst first: ``('AuthError', 'stale')``, ``('healthy',
        'in_progress')``."""
        return tuple(name for name, test in TESTS.items() if test(self.pair, self.now))


def judge(
    company: CompanyState, item: DataTypeStatus, freshness: FreshnessConfig, now: float
) -> PairState:
    """The pair's state at ``now`` (Unix seconds)."""
    return PairState(Pair.of(company, item, freshness), now)


@dataclass(frozen=True)
class PairCounts:
    """How many pairs of a snapshot are in each state."""

    pairs: int = 0
    stale: int = 0
    failing: int = 0
    auth_error: int = 0
    never_synced: int = 0
    paused: int = 0
    in_progress: int = 0
    stuck: int = 0
    healthy: int = 0

    def summary(self) -> str:
        """For the cycle's log line: ``33 stale, 17 failing, 13 in AuthError, 2 never synced``."""
        return (
            f"{self.stale:,} stale, {self.failing:,} failing, {self.auth_error:,} in AuthError, "
            f"{self.never_synced:,} never synced"
        )


class FleetPairs:
    """Every pair of a snapshot, numbered in the order of company name, company id and data
    type, and judged at any instant as often as the status page is read.

    Built once per snapshot. At 250,000 pairs, objects made per pair would cost more in
    garbage-collector passes than in their making, so the pairs are kept in columns (lists
    of references, arrays of floats) and a ``Pair`` is made only for a pair shown. The
    pairs in a state are found from lists kept by status, the stale ones in one pass over
    two arrays."""

    def __init__(self, snapshot: Snapshot, freshness: FreshnessConfig) -> None:
        self.companies = tuple(
            sorted(snapshot.companies.values(), key=lambda c: (c.name.lower(), c.company_id))
        )
        self.by_company: dict[str, range] = {}
        self.items: list[DataTypeStatus] = []
        self._company_of: list[CompanyState] = []
        self._max_ages = array("d")
        self._lasts = array("d")
        """Last successful syncs, NaN for never: no comparison with NaN is true."""
        self._syncs: dict[int, SyncDetail] = {}
        for company in self.companies:
            start = len(self.items)
            for item in sorted(company.data_types, key=lambda item: item.data_type):
                if company.syncs and (sync := latest_sync(company, item)) is not None:
                    self._syncs[len(self.items)] = sync
                self.items.append(item)
                self._company_of.append(company)
                self._max_ages.append(max_age(company, item, freshness))
                last = item.last_successful_sync
                self._lasts.append(math.nan if last is None else last)
            self.by_company[company.company_id] = range(start, len(self.items))
        self.by_status: dict[str, list[int]] = {}
        for index, item in enumerate(self.items):
            self.by_status.setdefault(item.status, []).append(index)
        read = [self.pair(index) for index in self._syncs]
        self._paused = [(p.paused_until, p.rank) for p in read if p.paused_until is not None]
        self._running = [(p.requested, p.rank) for p in read if p.requested is not None]

        def having_status(statuses: Iterable[str]) -> list[int]:
            return [index for status in statuses for index in self.by_status.get(status, ())]

        never = [i for i in self.by_status.get(NEVER_SYNCED, ()) if self.pair(i).never_synced]
        self._by_state = {
            AUTH_ERROR: having_status([AUTH_ERROR]),
            FAILING: having_status(sorted(_FAILING)),
            NEVER_SYNCED: never,
            IN_PROGRESS: having_status(sorted(_RUNNING)),
        }
        self._fixed = {*self._by_state[AUTH_ERROR], *self._by_state[FAILING], *never}
        self._at: tuple[float, list[int], set[int]] = (math.nan, [], set())
        """The latest instant judged, its stale pairs and those not healthy."""

    def __len__(self) -> int:
        return len(self.items)

    def pair(self, index: int) -> Pair:
        return Pair(
            self._company_of[index],
            self.items[index],
            self._max_ages[index],
            self._syncs.get(index),
            index,
        )

    def _judged(self, now: float) -> tuple[list[int], set[int]]:
        """The stale pairs at ``now`` and those not healthy, kept for the next call at the
        same instant (a page asks for both)."""
        at, stale, unhealthy = self._at
        if at != now:
            pairs = enumerate(zip(self._lasts, self._max_ages, strict=True))
            stale = [index for index, (last, threshold) in pairs if now - last > threshold]
            unhealthy = self._fixed.union(stale, self._paused_at(now), self._stuck_at(now))
            self._at = (now, stale, unhealthy)
        return stale, unhealthy

    def _paused_at(self, now: float) -> list[int]:
        return [index for until, index in self._paused if until > now]

    def _stuck_at(self, now: float) -> list[int]:
        return [index for requested, index in self._running if now - requested > STUCK_AFTER]

    def attention(self, now: float) -> set[int]:
        """The pairs that are not healthy at ``now``."""
        return self._judged(now)[1]

    def having(self, name: str, now: float) -> list[int]:
        """The pairs in state ``name`` (of ``TESTS``) at ``now``, or else with that Codat
        ``currentStatus``."""
        if name == STALE:
            return self._judged(now)[0]
        if name == PAUSED:
            return self._paused_at(now)
        if name == STUCK:
            return self._stuck_at(now)
        if name == HEALTHY:
            unhealthy = self.attention(now)
            return [index for index in range(len(self.items)) if index not in unhealthy]
        if name in self._by_state:
            return self._by_state[name]
        return self.by_status.get(name, [])

    def ordered(self, indexes: Iterable[int], now: float) -> list[int]:
        """Highest age / max age first, never-synced pairs last, ties in number order.
        Sorted by a list of keys, so that no object is made per pair."""
        chosen = sorted(indexes)
        lasts, max_ages, inf = self._lasts, self._max_ages, math.inf
        keys = [
            inf if lasts[i] != lasts[i] else (lasts[i] - now) / max_ages[i] if max_ages[i] else -inf
            for i in chosen
        ]
        return [chosen[k] for k in sorted(range(len(chosen)), key=keys.__getitem__)]

    def counts(self, now: float) -> PairCounts:
        """How many pairs are in each state at ``now``."""
        stale, unhealthy = self._judged(now)
        return PairCounts(
            pairs=len(self.items),
            stale=len(stale),
            failing=len(self._by_state[FAILING]),
            auth_error=len(self._by_state[AUTH_ERROR]),
            never_synced=len(self._by_state[NEVER_SYNCED]),
            paused=len(self._paused_at(now)),
            in_progress=len(self._by_state[IN_PROGRESS]),
            stuck=len(self._stuck_at(now)),
            healthy=len(self.items) - len(unhealthy),
        )


def count_pairs(snapshot: Snapshot, freshness: FreshnessConfig, now: float) -> PairCounts:
    """Count the snapshot's pairs by state at ``now`` (Unix seconds)."""
    return FleetPairs(snapshot, freshness).counts(now)
