"""Heal what can heal itself (``refresh``, off by default): queue a new sync of a pair whose
latest sync keeps failing with a transient error, as an operator would after reading the
alert. Codat's docs: an AuthError needs the customer to relink, but "other error states may
be resolved by queueing a new synchronization after waiting some time".

Which pairs and when (backoff, caps) is ``exporter.codat.refreshpolicy``; this module acts on
it. A due refresh is ``POST /companies/{companyId}/data/queue/{dataType}`` (with the failed
sync's connection when known). Codat answering with the pull operation already in flight,
or 409, is ``already_in_progress``, not an error. Another 4xx (429 aside, which pauses the
client as any request does) stops that pair's refreshes for the day, logged once.

Each refresh queued (or, ``dry_run``, only logged) is one log line with company, data type,
status and attempt, and counts in ``codat_exporter_refreshes_total{data_type, result}``::

    refresh queued: company 8a210b68-... invoices, FetchError, attempt 2
    codat_exporter_refreshes_total{data_type="invoices",result="queued"} 2

Each is written to the refresh journal (``exporter.codat.refreshjournal``) before its POST is
sent, so that no kill, stop or restart resets the caps or the backoff; a refresh the journal
cannot take is not sent (``journal_error``). The state file keeps the rest (when each pair
began failing), and neither can lower what the other says.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from exporter.codat.client import CodatClient
from exporter.codat.errors import ApiKeyRejected, CodatError
from exporter.codat.refreshjournal import QUEUED, RESET, STOPPED, Entry, Journal, utc_day
from exporter.codat.refreshpolicy import (
    Key,
    Pair,
    backing_off,
    capped,
    failing_since,
    later,
    next_due,
    wanted,
)
from exporter.config.sections import RefreshConfig
from exporter.core.clock import Clock
from exporter.core.contract import IN_PROGRESS_STATUSES, QUEUE_DATA_TYPE
from exporter.core.snapshot import CompanyState, DataTypeStatus, RefreshMark, SyncDetail
from exporter.exposition.instruments import ExporterMetrics

log = logging.getLogger(__name__)

_RUNNING = frozenset(IN_PROGRESS_STATUSES)
DAY = 86400.0
RESULTS = ("queued", "dry_run", "already_in_progress", "capped", "rejected", "error",
           "journal_error")  # fmt: skip


Counts = tuple[str, int, dict[str, int], dict[Key, Pair]]
"""A day, its refreshes for the fleet and per company, and each pair's state."""


class Refresher:
    key = "refresh"

    def __init__(
        self,
        config: RefreshConfig,
        client: CodatClient,
        metrics: ExporterMetrics,
        clock: Clock,
        journal: Journal | None = None,
    ) -> None:
        self._config = config
        self._client = client
        self._metrics = metrics
        self._clock = clock
        self._journal = journal
        """None only in a dry run: nothing is sent (the state file keeps its counts)."""
        self._replayed = False
        self._journal_failing = False
        self._pairs: dict[Key, Pair] = {}
        self._day = utc_day(clock.time())
        self._fleet_today = 0
        self._company_today: dict[str, int] = {}
        self._lock = threading.Lock()
        with self._lock:
            self._replay()

    def consider(
        self,
        company_id: str,
        data_types: Iterable[DataTypeStatus],
        syncs: Mapping[str, SyncDetail],
        max_ages: Mapping[str, float],
        deadline: float,
    ) -> dict[str, RefreshMark]:
        """Refresh what is due among a company's pairs, just polled; the marks of its pairs
        that have been refreshed or are to be (for the status page)."""
        now = self._clock.time()
        marks: dict[str, RefreshMark] = {}
        for item in data_types:
            key = (company_id, item.data_type)
            sync = syncs.get(item.data_type)
            if sync is not None and sync.sync_id != item.latest_sync_id:
                sync = None
            max_age = max_ages.get(item.data_type)
            if not wanted(self._config, item, sync, max_age, now):
                with self._lock:
                    if item.status not in _RUNNING:
                        self._forget(key, now)  # recovered (or never wanted): start over
                    known = self._pairs.get(key)
                if known is not None and known.queued_at is not None:
                    marks[item.data_type] = RefreshMark(known.queued_at, known.attempts)
                continue
            self._maybe_refresh(key, item, sync, max_age, now=now, deadline=deadline)
            with self._lock:
                known = self._pairs.get(key)
                if known is not None:
                    marks[item.data_type] = self._mark(known, company_id, now)
        return marks

    def _mark(self, known: Pair, company_id: str, now: float) -> RefreshMark:
        """A pair to refresh, as the status page tells it: when its next refresh is due, or
        that today's caps leave it none; the caller holds _lock."""
        if known.stopped_on == self._day:
            return RefreshMark(known.queued_at, known.attempts)
        due = next_due(self._config, known)
        if known.queued_at == now:  # just queued: that one is what the page tells
            return RefreshMark(known.queued_at, known.attempts, due)
        midnight = (now // DAY + 1) * DAY
        company_today = self._company_today.get(company_id, 0)
        if due < midnight and capped(self._config, self._fleet_today, company_today):
            return RefreshMark(known.queued_at, known.attempts, capped=True)
        return RefreshMark(known.queued_at, known.attempts, due)

    def _maybe_refresh(
        self,
        key: Key,
        item: DataTypeStatus,
        sync: SyncDetail | None,
        max_age: float | None,
        *,
        now: float,
        deadline: float,
    ) -> None:
        config = self._config
        with self._lock:
            # ``now`` was read before the company's earlier pairs were refreshed; another
            # worker may have counted refreshes on a later day since.
            now = max(now, self._clock.time())
            self._roll_day(now)
            replayed = self._replay()
            known = self._pairs.get(key)
            if known is None:
                known = Pair(failing_since=failing_since(item, sync, max_age, now))
                self._pairs[key] = known
            if known.stopped_on == self._day or backing_off(config, known, now):
                return
            company_id = key[0]
            if capped(config, self._fleet_today, self._company_today.get(company_id, 0)):
                if known.capped_on != self._day:
                    self._pairs[key] = replace(known, capped_on=self._day)
                    self._count(item.data_type, "capped")
                    log.info("refresh of company %s %s capped for today (%s)", company_id,
                             item.data_type, item.status)  # fmt: skip
                return
            attempt = known.attempts + 1
            if not (replayed and self._record(Entry(QUEUED, *key, now, attempt))):
                self._count(item.data_type, "journal_error")
                return
            self._fleet_today += 1
            self._company_today[company_id] = self._company_today.get(company_id, 0) + 1
            self._pairs[key] = replace(known, attempts=attempt, queued_at=now)
        if config.dry_run:
            self._count(item.data_type, "dry_run")
            log.info("refresh (dry run, not queued): company %s %s, %s, attempt %d",
                     key[0], item.data_type, item.status, attempt)  # fmt: skip
            return
        self._queue(key, item, sync, attempt, deadline)

    def _queue(
        self,
        key: Key,
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
                    self._record(Entry(STOPPED, *key, self._clock.time()))
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
        """Start the counts of a new UTC day; never of an earlier one (a wall clock stepped
        back): that would forget the refreshes counted today, and allow them again."""
        day = utc_day(now)
        if day > self._day:
            self._day, self._fleet_today, self._company_today = day, 0, {}
            self._compact()

    def _forget(self, key: Key, now: float) -> None:
        """Start a pair over; the caller holds _lock."""
        dropped = self._pairs.pop(key, None)
        if dropped is not None and dropped.attempts:
            self._record(Entry(RESET, *key, now))

    # --- the journal: the caller holds _lock ----------------------------------------------

    def _replay(self) -> bool:
        """Take in what the journal says has been done (once), and compact it; False while
        it cannot be read, when no refresh may be sent."""
        journal = self._journal
        if journal is None:
            return self._config.dry_run  # sending needs a journal (config: state.file)
        if self._replayed:
            return True
        try:
            entries = journal.read()
        except OSError as exc:
            self._journal_failed(journal, exc)
            return False
        self._replayed = True
        fleet, companies, pairs = _replayed(entries, self._day)
        self._merge(self._day, fleet, companies, pairs)
        if entries:
            log.info("refresh journal %s: %d refreshes today, %d pairs with refreshes",
                     journal.path, fleet, len(pairs))  # fmt: skip
        self._compact()
        return True

    def _record(self, entry: Entry) -> bool:
        """Append ``entry`` to the journal, durably; False (logged once) when it cannot be."""
        if self._journal is None:
            return True
        try:
            self._journal.append(entry)
        except OSError as exc:
            self._journal_failed(self._journal, exc)
            return False
        if self._journal_failing:
            log.info("refresh journal %s written again", self._journal.path)
            self._journal_failing = False
        return True

    def _compact(self) -> None:
        """Rewrite the journal as today's entries and each pair's latest refresh before."""
        if self._journal is None or not self._replayed:
            return
        carried = [
            Entry(QUEUED, company, data_type, pair.queued_at, pair.attempts)
            for (company, data_type), pair in self._pairs.items()
            if pair.queued_at is not None and utc_day(pair.queued_at) < self._day
        ]
        try:
            self._journal.compact(self._day, carried)
        except OSError as exc:
            self._journal_failed(self._journal, exc)

    def _journal_failed(self, journal: Journal, exc: OSError) -> None:
        level = logging.DEBUG if self._journal_failing else logging.WARNING
        log.log(level, "refresh journal %s cannot be read or written (%s): no refresh is sent "
                "until it can", journal.path, exc.strerror or exc)  # fmt: skip
        self._journal_failing = True

    def _merge(
        self, day: str, fleet: int, companies: Mapping[str, int], pairs: Mapping[Key, Pair]
    ) -> None:
        """Take in counts and pairs from the journal or the state file, keeping the higher
        count and the later refresh: a file written before the journal's latest entries
        cannot lower them."""
        if day == self._day:
            self._fleet_today = max(self._fleet_today, fleet)
            for company_id, count in companies.items():
                counted = self._company_today.get(company_id, 0)
                self._company_today[company_id] = max(counted, count)
        for key, pair in pairs.items():
            known = self._pairs.get(key)
            self._pairs[key] = pair if known is None else later(known, pair)

    def _count(self, data_type: str, result: str) -> None:
        self._metrics.refreshes.labels(data_type, result).inc()

    def forget_all_but(self, kept: set[str]) -> None:
        with self._lock:
            for key in [k for k in self._pairs if k[0] not in kept]:
                del self._pairs[key]

    def saved(self) -> dict[str, Any]:
        """Its section of the state file (``exporter.poll.components``): when each pair began
        failing, besides what the journal holds (counts, attempts), which it cannot lower."""
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

    def checked(self, saved: Any) -> Counts | None:
        """Anything malformed is ignored whole (the journal still says what was refreshed),
        not a reason to ignore the rest of the state file."""
        if not isinstance(saved, dict):
            return None
        try:
            pairs = {
                (str(c), str(d)): Pair(
                    float(since),
                    int(attempts),
                    None if queued is None else float(queued),
                    str(stopped),
                    str(capped),
                )
                for c, d, since, attempts, queued, stopped, capped in saved.get("pairs", [])
            }
            companies = {str(k): int(v) for k, v in dict(saved.get("company_today", {})).items()}
            return str(saved.get("day", "")), int(saved.get("fleet_today", 0)), companies, pairs
        except (TypeError, ValueError):
            log.warning("state file: refresh section malformed; the refresh journal alone "
                        "says what was refreshed")  # fmt: skip
            return None

    def restore(self, checked: Counts | None, companies: Mapping[str, CompanyState]) -> None:
        """Take in the state file's counts and pairs; neither lowers what the journal says."""
        if checked is not None:
            with self._lock:
                self._merge(*checked)


def _replayed(entries: Iterable[Entry], day: str) -> tuple[int, dict[str, int], dict[Key, Pair]]:
    """(refreshes on ``day``, per company, each pair's refreshes) the journal says."""
    fleet, companies, pairs = 0, dict[str, int](), dict[Key, Pair]()
    for entry in entries:
        key = (entry.company, entry.data_type)
        if entry.kind == QUEUED:
            if entry.day == day:
                fleet += 1
                companies[entry.company] = companies.get(entry.company, 0) + 1
            known = pairs.get(key, Pair(failing_since=entry.at))
            pairs[key] = replace(known, attempts=entry.attempt, queued_at=entry.at)
        elif entry.kind == STOPPED:
            pairs[key] = replace(pairs.get(key, Pair(entry.at)), stopped_on=entry.day)
        else:
            pairs.pop(key, None)
    return fleet, companies, pairs
