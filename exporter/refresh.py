"""Heal what can heal itself (``refresh``, off by default): queue a new sync of a pair whose
latest sync keeps failing with a transient error, as an operator would after reading the
alert. Codat's docs: an AuthError needs the customer to relink, but "other error states may
be resolved by queueing a new synchronization after waiting some time".

For each pair of a company just polled:

- Only the configured statuses (FetchError, MapError, ... by default; never AuthError,
  NotSupported, PermissionsError, PrerequisiteNotMet), and, with ``refresh.stale``, a
  Complete pair past its max age. Never a paused pair, never one whose latest sync is
  queued or running: at most one refresh in flight per pair.
- The first refresh once the pair has been failing ``refresh.after`` (from its pull
  operation's completed or requested time, else from when the exporter first saw it
  failing); each further one waits ``refresh.backoff`` times longer than the last.
- At most ``max_per_company_per_day`` per company and ``max_per_day`` for this replica per
  UTC day; the caps reset at 00:00 UTC, as Codat's quota does.
- ``POST /companies/{companyId}/data/queue/{dataType}`` (with the failed sync's connection
  when known). Codat answering with the pull operation already in flight, or 409, is
  ``already_in_progress``, not an error. Another 4xx (429 aside, which pauses the client as
  any request does) stops that pair's refreshes for the day, logged once.
- A pair that recovers (Complete and fresh) forgets its attempts: its backoff starts over.

Each refresh queued (or, ``dry_run``, only logged) is one log line with company, data type,
status and attempt, and counts in ``codat_exporter_refreshes_total{data_type, result}``.
What it knows is kept in the state file, so a restart resets neither caps nor backoff.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from exporter.client import QUEUE_DATA_TYPE, ApiKeyRejected, CodatClient, CodatError
from exporter.clock import Clock
from exporter.codat import IN_PROGRESS_STATUSES
from exporter.config import RefreshConfig
from exporter.metrics import ExporterMetrics
from exporter.state import DataTypeStatus, RefreshMark, SyncDetail

log = logging.getLogger(__name__)

COMPLETE = "Complete"
_RUNNING = frozenset(IN_PROGRESS_STATUSES)
RESULTS = ("queued", "dry_run", "already_in_progress", "capped", "rejected", "error")


@dataclass(frozen=True)
class _Pair:
    """What is known of one failing pair's refreshes."""

    failing_since: float
    attempts: int = 0
    queued_at: float | None = None
    stopped_on: str = ""
    """The UTC day a 4xx stopped its refreshes, or ""."""
    capped_on: str = ""
    """The UTC day its refresh was last counted as capped, so a cap counts once a day."""


class Refresher:
    def __init__(
        self, config: RefreshConfig, client: CodatClient, metrics: ExporterMetrics, clock: Clock
    ) -> None:
        self._config = config
        self._client = client
        self._metrics = metrics
        self._clock = clock
        self._pairs: dict[tuple[str, str], _Pair] = {}
        self._day = ""
        self._fleet_today = 0
        self._company_today: dict[str, int] = {}
        self._lock = threading.Lock()

    def consider(
        self,
        company_id: str,
        data_types: Iterable[DataTypeStatus],
        syncs: Mapping[str, SyncDetail],
        max_ages: Mapping[str, float],
        deadline: float,
    ) -> dict[str, RefreshMark]:
        """Refresh what is due among a company's pairs, just polled; the marks of its pairs
        that have been refreshed (for the status page)."""
        now = self._clock.time()
        marks: dict[str, RefreshMark] = {}
        for item in data_types:
            key = (company_id, item.data_type)
            sync = syncs.get(item.data_type)
            if sync is not None and sync.sync_id != item.latest_sync_id:
                sync = None
            if not self._wanted(item, sync, max_ages.get(item.data_type), now):
                with self._lock:
                    if item.status not in _RUNNING:
                        self._pairs.pop(key, None)  # recovered (or never wanted): start over
                    known = self._pairs.get(key)
            else:
                self._maybe_refresh(key, item, sync, now, deadline)
                with self._lock:
                    known = self._pairs.get(key)
            if known is not None and known.queued_at is not None:
                marks[item.data_type] = RefreshMark(known.queued_at, known.attempts)
        return marks

    def _wanted(
        self, item: DataTypeStatus, sync: SyncDetail | None, max_age: float | None, now: float
    ) -> bool:
        if sync is not None and sync.paused_until is not None and sync.paused_until > now:
            return False
        if item.status in self._config.statuses:
            return True
        if not self._config.stale or item.status != COMPLETE:
            return False
        synced = item.last_successful_sync
        return synced is not None and max_age is not None and now - synced > max_age

    def _maybe_refresh(
        self,
        key: tuple[str, str],
        item: DataTypeStatus,
        sync: SyncDetail | None,
        now: float,
        deadline: float,
    ) -> None:
        config = self._config
        with self._lock:
            self._roll_day(now)
            known = self._pairs.get(key)
            if known is None:
                since = (sync.completed or sync.requested) if sync is not None else None
                known = _Pair(failing_since=min(since or now, now))
                self._pairs[key] = known
            if known.stopped_on == self._day:
                return
            waited_from = known.failing_since if known.queued_at is None else known.queued_at
            wait = config.after * config.backoff**known.attempts
            if now - waited_from < wait:
                return
            company_id = key[0]
            if (
                self._fleet_today >= config.max_per_day
                or self._company_today.get(company_id, 0) >= config.max_per_company_per_day
            ):
                if known.capped_on != self._day:
                    self._pairs[key] = replace(known, capped_on=self._day)
                    self._count(item.data_type, "capped")
                    log.info("refresh of company %s %s capped for today (%s)", company_id,
                             item.data_type, item.status)  # fmt: skip
                return
            self._fleet_today += 1
            self._company_today[company_id] = self._company_today.get(company_id, 0) + 1
            attempt = known.attempts + 1
            self._pairs[key] = replace(known, attempts=attempt, queued_at=now)
        if config.dry_run:
            self._count(item.data_type, "dry_run")
            log.info("refresh (dry run, not queued): company %s %s, %s, attempt %d",
                     key[0], item.data_type, item.status, attempt)  # fmt: skip
            return
        self._queue(key, item, sync, attempt, deadline)

    def _queue(
        self,
        key: tuple[str, str],
        item: DataTypeStatus,
        sync: SyncDetail | None,
        attempt: int,
        deadline: float,
    ) -> None:
        company_id, data_type = key
        params = {"connectionId": sync.connection_id} if sync and sync.connection_id else None
        try:
            body = self._client.post_json(
                QUEUE_DATA_TYPE, deadline, params, companyId=company_id, dataType=data_type
            )
        except ApiKeyRejected:
            raise
        except CodatError as exc:
            status = exc.status or 0
            if status == 409:
                self._count(data_type, "already_in_progress")
                return
            if 400 <= status < 500 and status != 429:
                self._count(data_type, "rejected")
                with self._lock:
                    known = self._pairs.get(key)
                    if known is not None:
                        self._pairs[key] = replace(known, stopped_on=self._day)
                log.warning("company %s %s: Codat refused the refresh (%s); no more today",
                            company_id, data_type, exc)  # fmt: skip
                return
            self._count(data_type, "error")
            log.warning("company %s %s: refresh failed: %s", company_id, data_type, exc)
            return
        if isinstance(body, dict) and body.get("id") == item.latest_sync_id:
            self._count(data_type, "already_in_progress")
            return
        self._count(data_type, "queued")
        log.info("refresh queued: company %s %s, %s, attempt %d", company_id, data_type,
                 item.status, attempt)  # fmt: skip

    def _roll_day(self, now: float) -> None:
        day = datetime.fromtimestamp(now, UTC).date().isoformat()
        if day != self._day:
            self._day, self._fleet_today, self._company_today = day, 0, {}

    def _count(self, data_type: str, result: str) -> None:
        self._metrics.refreshes.labels(data_type, result).inc()

    def forget_all_but(self, kept: set[str]) -> None:
        with self._lock:
            for key in [k for k in self._pairs if k[0] not in kept]:
                del self._pairs[key]

    def saved(self) -> dict[str, Any]:
        """Caps and backoff for the state file, so a restart resets neither."""
        with self._lock:
            return {
                "day": self._day,
                "fleet_today": self._fleet_today,
                "company_today": dict(self._company_today),
                "pairs": [
                    [c, d, p.failing_since, p.attempts, p.queued_at, p.stopped_on, p.capped_on]
                    for (c, d), p in self._pairs.items()
                ],
            }

    def restore(self, saved: Mapping[str, Any]) -> None:
        """Resume from ``saved`` (from the state file); anything malformed is ignored whole."""
        try:
            pairs = {
                (str(c), str(d)): _Pair(
                    float(since),
                    int(attempts),
                    None if queued is None else float(queued),
                    str(stopped),
                    str(capped),
                )
                for c, d, since, attempts, queued, stopped, capped in saved.get("pairs", [])
            }
            day = str(saved.get("day", ""))
            fleet = int(saved.get("fleet_today", 0))
            companies = {str(k): int(v) for k, v in dict(saved.get("company_today", {})).items()}
        except (TypeError, ValueError):
            log.warning("state file: refresh section malformed; caps and backoff start over")
            return
        with self._lock:
            self._pairs, self._day = pairs, day
            self._fleet_today, self._company_today = fleet, companies
