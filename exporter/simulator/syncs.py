"""The syncs of one simulated data type, each a pure function of (seed, company, data type, k).

Sync *k* is requested at ``phase + k * period`` and runs for a seeded while (a minute to a
quarter of its period, at most three hours; a tenth of a period under ten minutes),
through Codat's stages (Queued, Fetching, ...) to its outcome: Complete, or the error its
profile pins or chance picks. Nothing is stored: dataStatus and the pull operations
(``exporter.simulator.pulloperations``) are computed from the clock, so they agree at any
instant. A sync's id encodes k, so looking one up needs no table. A data type's entry in
dataStatus at some instant::

    {"dataType": "invoices", "currentStatus": "Fetching",
     "latestSyncId": "5b0e...", "lastSuccessfulSync": "2026-11-23T10:04:40.104Z",
     "latestSuccessfulSyncId": "8c31..."}

A pinned data type (``shows_progress`` off) shows its outcome as soon as a sync appears; its
pull operation says it was requested that long before. A ``Hold`` keeps one sync waiting:
"Initial" and "Paused until <DateTime>", or "Queued" for an on-premise connector whose
machine is offline (for ever, here). No sync is requested while it waits and runs.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from exporter.core.contract import ERROR_STATUSES, IN_PROGRESS_STATUSES
from exporter.simulator.dates import format_datetime

MINUTE = 60.0
HOUR = 3600.0
IN_PROGRESS = ("Queued", "Fetching", "MapQueued", "Mapping", "ProcessingQueued", "Processing",
               "ValidationQueued", "Validating")  # fmt: skip
"""The stages a running sync shows, in order."""
COMPLETE = "Complete"
HISTORY_SCAN = 5000
"""Syncs looked back over for the last successful one."""


@dataclass(frozen=True)
class Hold:
    """Sync ``sync`` waits until ``until`` (inf: never runs), showing ``status``."""

    sync: int
    until: float
    status: str
    description: str | None = None


@dataclass
class SimDataType:
    data_type: str
    period: float
    phase: float
    first_sync: float
    fail_rate: float = 0.03
    never_synced: bool = False
    fail_since: float | None = None
    fail_until: float = math.inf
    fail_status: str = "FetchError"
    date_style: str = "z3"
    shows_progress: bool = True
    """Whether a sync shows Queued, Fetching, ... while it runs (off: pinned statuses)."""
    hold: Hold | None = None
    refreshes: list[float] = field(default_factory=list)
    """When syncs were queued on demand (``POST .../data/queue/{dataType}``), oldest first."""
    outages: list[tuple[float, float, str]] = field(default_factory=list)
    """(since, until, status): its platform's outages, which fail every sync requested
    meanwhile with that status, unless a pinned failure already does
    (``Fleet.outage``)."""

    def outage_at(self, moment: float) -> str | None:
        """The status an outage fails a sync requested at ``moment`` with, if any."""
        return next((status for since, until, status in self.outages
                     if since <= moment < until), None)  # fmt: skip


@dataclass(frozen=True)
class Sync:
    k: int
    requested: float
    appeared: float
    """When it became the data type's latest sync (dataStatus ``latestSyncId``)."""
    started: float
    """When it began to run: after its hold, if it has one."""
    ended: float
    """When its outcome showed; inf for one that never ends."""
    outcome: str


ON_DEMAND = 1 << 40
"""k of the first sync queued on demand: far above any scheduled sync's."""
REFRESH_FAILS = 0.2
"""Chance that a sync queued on demand, outside a pinned failure, fails again."""
_ID_SPACE = 1 << 48
"""The last 6 bytes of a pull operation's id hold its k (scrambled)."""
_SCRAMBLE = 0x9E3779B97F4B
"""Odd, so k -> k * _SCRAMBLE mod 2**48 is a bijection: consecutive ids do not look so."""
_UNSCRAMBLE = pow(_SCRAMBLE, -1, _ID_SPACE)


def unit(*parts: object) -> float:
    """A number in [0, 1) that only ``parts`` decide."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass(frozen=True)
class Timeline:
    """Every sync of one company's data type; ``connection_id`` is its pull operations'."""

    seed: int
    company_id: str
    sim: SimDataType
    connection_id: str = field(compare=False)

    def unit(self, k: int, salt: str = "") -> float:
        return unit(self.seed, self.company_id, self.sim.data_type, k, salt)

    @cached_property
    def first(self) -> int:
        return math.ceil((self.sim.first_sync - self.sim.phase) / self.sim.period)

    def base(self, k: int) -> float:
        return self.sim.phase + k * self.sim.period

    def outcome(self, k: int) -> str:
        sim = self.sim
        if k >= ON_DEMAND:  # on demand: a pinned failure still holds, chance may fail it again
            requested = sim.refreshes[k - ON_DEMAND]
            if sim.fail_since is not None and sim.fail_since <= requested < sim.fail_until:
                return sim.fail_status
            if (outage := sim.outage_at(requested)) is not None:
                return outage
            if self.unit(k) < REFRESH_FAILS:
                return ERROR_STATUSES[int(self.unit(k, "status") * len(ERROR_STATUSES))]
            return COMPLETE
        if sim.fail_since is not None and sim.fail_since <= self.base(k) < sim.fail_until:
            return sim.fail_status
        if (outage := sim.outage_at(self.base(k))) is not None:
            return outage
        if self.unit(k) < sim.fail_rate:
            return ERROR_STATUSES[int(self.unit(k, "status") * len(ERROR_STATUSES))]
        return COMPLETE

    def took(self, k: int) -> float:
        """Seconds sync k runs for (sub-second digits included, so dates show them)."""
        period = self.sim.period
        if period < 10 * MINUTE:
            return period * 0.1 + self.unit(k, "fraction")
        low, high = MINUTE, min(period / 4, 3 * HOUR)
        return low * math.pow(high / low, self.unit(k, "took"))

    def sync(self, k: int) -> Sync:
        if k >= ON_DEMAND:
            requested = self.sim.refreshes[k - ON_DEMAND]
            ended = requested + self.took(k) if self.sim.shows_progress else requested
            return Sync(k, requested, requested, requested, ended, self.outcome(k))
        base, took, outcome = self.base(k), self.took(k), self.outcome(k)
        if not self.sim.shows_progress:
            ended = math.inf if outcome in IN_PROGRESS_STATUSES else base
            return Sync(k, base - took, base, base - took, ended, outcome)
        hold = self.sim.hold
        started = max(base, hold.until) if hold is not None and hold.sync == k else base
        return Sync(k, base, base, started, started + took, outcome)

    @cached_property
    def _hold_end(self) -> float:
        return -math.inf if self.sim.hold is None else self.sync(self.sim.hold.sync).ended

    def _skipped(self, k: int) -> bool:
        """Not requested: it was due while the held sync waited or ran."""
        hold = self.sim.hold
        return hold is not None and k > hold.sync and self.base(k) < self._hold_end

    def exists(self, k: int) -> bool:
        if k >= ON_DEMAND:
            return k - ON_DEMAND < len(self.sim.refreshes)
        return not self.sim.never_synced and k >= self.first and not self._skipped(k)

    def _queued(self, now: float) -> list[int]:
        """The on-demand syncs requested by ``now``, oldest first."""
        return [ON_DEMAND + n for n, at in enumerate(self.sim.refreshes) if at <= now]

    def latest(self, now: float) -> Sync | None:
        """The sync dataStatus names at ``now`` (``latestSyncId``); None before the first."""
        scheduled = self._scheduled(now)
        queued = self._queued(now)
        if queued:
            on_demand = self.sync(queued[-1])
            if scheduled is None or on_demand.appeared >= scheduled.appeared:
                return on_demand
        return scheduled

    def _scheduled(self, now: float) -> Sync | None:
        if self.sim.never_synced or now < self.sim.first_sync:
            return None
        k = math.floor((now - self.sim.phase) / self.sim.period)
        if self._skipped(k):
            k = self.sim.hold.sync if self.sim.hold is not None else k
        return self.sync(k) if k >= self.first else None

    def status(self, sync: Sync, now: float) -> str:
        if now >= sync.ended:
            return sync.outcome
        if now < sync.started and self.sim.hold is not None:
            return self.sim.hold.status
        if not self.sim.shows_progress:
            return sync.outcome
        stage = int((now - sync.started) / (sync.ended - sync.started) * len(IN_PROGRESS))
        return IN_PROGRESS[min(stage, len(IN_PROGRESS) - 1)]

    def last_success(self, latest: Sync, now: float) -> Sync | None:
        """The latest sync that completed by ``now`` (``latestSuccessfulSyncId``)."""
        found = [
            sync for sync in map(self.sync, self._queued(now))
            if sync.outcome == COMPLETE and sync.ended <= now
        ]  # fmt: skip
        scheduled = latest if latest.k < ON_DEMAND else self._scheduled(now)
        if scheduled is not None:
            for k in range(scheduled.k, max(self.first, scheduled.k - HISTORY_SCAN) - 1, -1):
                if self.outcome(k) != COMPLETE or not self.exists(k):
                    continue
                sync = scheduled if k == scheduled.k else self.sync(k)
                if sync.ended <= now:
                    found.append(sync)
                    break
        return max(found, key=lambda sync: sync.ended, default=None)

    def data_status(self, now: float) -> dict[str, Any]:
        """The DataStatus entry at ``now``; lastSuccessfulSync in the data type's date style."""
        entry: dict[str, Any] = {"dataType": self.sim.data_type}
        latest = self.latest(now)
        if latest is None:
            return entry
        entry["currentStatus"] = self.status(latest, now)
        entry["latestSyncId"] = self.sync_id(latest.k)
        success = self.last_success(latest, now)
        if success is not None:
            entry["lastSuccessfulSync"] = format_datetime(success.ended, self.sim.date_style)
            entry["latestSuccessfulSyncId"] = self.sync_id(success.k)
        return entry

    # --- ids, and every sync shown so far -----------------------------------------------

    @cached_property
    def _id_prefix(self) -> tuple[bytes, int]:
        digest = hashlib.blake2b(
            f"{self.seed}:{self.company_id}:{self.sim.data_type}:sync".encode(), digest_size=16
        ).digest()
        versioned = uuid.UUID(bytes=digest, version=4).bytes  # sets bits of bytes 6 and 8
        return versioned[:10], int.from_bytes(digest[10:], "big")

    def sync_id(self, k: int) -> str:
        prefix, mask = self._id_prefix
        low = (k * _SCRAMBLE + mask) % _ID_SPACE
        return str(uuid.UUID(bytes=prefix + low.to_bytes(6, "big")))

    def k_of(self, sync_id: uuid.UUID) -> int | None:
        """The sync an id names, if it is one of this data type's; whether it exists aside."""
        prefix, mask = self._id_prefix
        if sync_id.bytes[:10] != prefix:
            return None
        return ((int.from_bytes(sync_id.bytes[10:], "big") - mask) * _UNSCRAMBLE) % _ID_SPACE

    def resolve(self, sync_id: uuid.UUID, now: float) -> Sync | None:
        """The sync ``sync_id`` names, if it had been requested (and shown) by ``now``."""
        k = self.k_of(sync_id)
        if k is None or not self.exists(k):
            return None
        sync = self.sync(k)
        return sync if sync.appeared <= now else None

    def newest_first(self, now: float) -> Iterator[tuple[float, str, int]]:
        """(appeared, data type, k) of every sync shown by ``now``, the newest first."""
        queued = [(self.sync(k).appeared, self.sim.data_type, k) for k in self._queued(now)]
        yield from heapq.merge(reversed(queued), self._scheduled_newest_first(now),
                               key=lambda entry: -entry[0])  # fmt: skip

    def _scheduled_newest_first(self, now: float) -> Iterator[tuple[float, str, int]]:
        latest = self._scheduled(now)
        if latest is None:
            return
        for k in range(latest.k, self.first - 1, -1):
            if self.exists(k):
                yield self.base(k), self.sim.data_type, k

    def count(self, now: float) -> int:
        return len(self._queued(now)) + self._scheduled_count(now)

    def _scheduled_count(self, now: float) -> int:
        latest = self._scheduled(now)
        if latest is None:
            return 0
        skipped = 0
        if self.sim.hold is not None and latest.k > self.sim.hold.sync:  # so it has ended
            last_skipped = math.ceil((self._hold_end - self.sim.phase) / self.sim.period) - 1
            skipped = max(0, min(latest.k, last_skipped) - max(self.sim.hold.sync, self.first - 1))
        return latest.k - self.first + 1 - skipped
