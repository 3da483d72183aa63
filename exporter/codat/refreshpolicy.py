"""Which failing pair to refresh, and when (``refresh``): the rules, with no side effects.

For each pair of a company just polled:

- Only the configured statuses (FetchError, MapError, ... by default; never AuthError,
  NotSupported, PermissionsError, PrerequisiteNotMet), and, with ``refresh.stale``, a
  Complete pair past its max age. Never a paused pair, never one whose latest sync is
  queued or running: at most one refresh in flight per pair.
- The first refresh once the pair has been failing ``refresh.after`` (from its pull
  operation's completed or requested time, else from when the exporter first saw it
  failing; a stale Complete pair from when it became stale, its last successful sync plus
  its max age); each further one waits ``refresh.backoff`` times longer than the last.
  With the defaults (``after: 1h``, ``backoff: 2``), a pair failing since 09:00 is due
  at 10:00, then 12:00, 16:00 and 00:00, each taken at the first poll from then.
- At most ``max_per_company_per_day`` per company and ``max_per_day`` for this replica per
  UTC day; the caps reset at 00:00 UTC, as Codat's quota does.
- A pair that recovers (Complete and fresh) forgets its attempts: its backoff starts over.

``exporter.codat.refresh`` applies them, sends the refreshes and keeps the counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from exporter.config.sections import RefreshConfig
from exporter.core.snapshot import DataTypeStatus, SyncDetail

COMPLETE = "Complete"

Key = tuple[str, str]
"""(company id, data type)."""


@dataclass(frozen=True)
class Pair:
    """What is known of one failing pair's refreshes."""

    failing_since: float
    attempts: int = 0
    queued_at: float | None = None
    stopped_on: str = ""
    """The UTC day a 4xx stopped its refreshes, or ""."""
    capped_on: str = ""
    """The UTC day its refresh was last counted as capped, so a cap counts once a day."""


def later(known: Pair, other: Pair) -> Pair:
    """What two accounts of a pair say together: the later refresh and its attempts, the
    earlier failure, the later stop and cap; neither can lower what the other says."""
    refreshed = max(known, other, key=lambda p: -math.inf if p.queued_at is None else p.queued_at)
    return Pair(
        min(known.failing_since, other.failing_since),
        refreshed.attempts,
        refreshed.queued_at,
        max(known.stopped_on, other.stopped_on),
        max(known.capped_on, other.capped_on),
    )


def wanted(
    config: RefreshConfig,
    item: DataTypeStatus,
    sync: SyncDetail | None,
    max_age: float | None,
    now: float,
) -> bool:
    """Whether the pair is one to refresh, its backoff and the caps aside."""
    if sync is not None and sync.paused_until is not None and sync.paused_until > now:
        return False
    if item.status in config.statuses:
        return True
    if not config.stale or item.status != COMPLETE:
        return False
    synced = item.last_successful_sync
    return synced is not None and max_age is not None and now - synced > max_age


def failing_since(
    item: DataTypeStatus, sync: SyncDetail | None, max_age: float | None, now: float
) -> float:
    """When a pair newly seen wanting a refresh began to: when it became stale (a Complete
    pair), else when its failed sync ended or was requested, else now."""
    since: float | None = None
    if item.status == COMPLETE:
        synced = item.last_successful_sync
        since = None if synced is None or max_age is None else synced + max_age
    elif sync is not None:
        since = sync.completed or sync.requested
    return now if since is None else min(since, now)


def next_due(config: RefreshConfig, pair: Pair) -> float:
    """When the pair's next refresh is due: ``after`` from when it began failing, then
    ``backoff`` times longer after each refresh."""
    waited_from = pair.failing_since if pair.queued_at is None else pair.queued_at
    return waited_from + config.after * config.backoff**pair.attempts


def backing_off(config: RefreshConfig, pair: Pair, now: float) -> bool:
    """Whether the pair's next refresh is not due yet (``next_due``)."""
    return now < next_due(config, pair)


def capped(config: RefreshConfig, fleet_today: int, company_today: int) -> bool:
    """Whether today's refreshes, of the replica or of the company, have reached a cap."""
    return fleet_today >= config.max_per_day or company_today >= config.max_per_company_per_day
