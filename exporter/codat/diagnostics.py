"""Why a sync failed, what paused it, how long syncs take: read from Codat's pull operations
(``GET /companies/{companyId}/data/history/{datasetId}``), only when dataStatus says
something changed.

- A pair whose latest sync is not Complete has that sync's pull operation read once: when
  its ``latestSyncId`` is new, or when the same sync has since ended in an error. Its
  ``errorMessage`` and ``statusDescription`` (e.g. "Paused until 2022-10-23T00:00:00Z") go
  to the status page, its ``requested`` time to
  ``codat_data_type_latest_sync_requested_timestamp_seconds`` while it is queued or running.
- With ``diagnostics.sync_durations``, a pair whose ``latestSuccessfulSyncId`` changes has
  that sync's pull operation read, and completed - requested is observed in
  ``codat_data_type_sync_duration_seconds``. The ids seen at the first poll are only
  remembered: a restart does not re-read the whole fleet's history.

A cycle in which nothing changed reads nothing. A failed read never fails the company's
poll: it counts in ``codat_exporter_pull_operation_errors_total`` and in the cycle's one
line of pull operations that failed (``exporter.codat.unread``; a warning only when one of
them is new), and is tried again at the next poll. Reads are ``REST`` requests
(``exporter.codat.ratelimit``): one the rate limit leaves no turn for is deferred to a
later poll, no failure at all. Thread-safe: workers of several companies update it at once.

Its section of the state file (``exporter.poll.components``) is what was read, so that a
restart reads nothing again: per company and data type, the latest sync id, the status it
had when read, and the latest successful sync id::

    {"8a210b68-...": {"invoices": ["5600506a-...", "Queued", "3e7f58e3-..."]}}
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from exporter.codat.client import CodatClient
from exporter.codat.errors import ApiKeyRejected, CodatError, Deferred
from exporter.codat.ratelimit import REST
from exporter.codat.unread import PULL_OPERATIONS, Unread
from exporter.core.contract import (
    IN_PROGRESS_STATUSES,
    PULL_OPERATION,
    ShapeError,
    parse_pull_operation,
)
from exporter.core.decoding import as_dict, as_list, as_str
from exporter.core.snapshot import CompanyState, DataTypeStatus, SyncDetail
from exporter.exposition.instruments import ExporterMetrics

COMPLETE = "Complete"
_RUNNING = frozenset(IN_PROGRESS_STATUSES)


@dataclass(frozen=True, slots=True)  # one per pair: 64 bytes each instead of 104
class _Seen:
    """What was last read for a pair."""

    sync_id: str
    status: str
    """The pair's currentStatus when its detail was read."""
    detail: SyncDetail | None
    successful_id: str


Seen = Mapping[str, Mapping[str, Sequence[str]]]
"""Per company and data type: (latest sync id, status seen, latest successful sync id)."""


class SyncDiagnostics:
    key = "diagnostics"

    def __init__(
        self,
        client: CodatClient,
        metrics: ExporterMetrics,
        unread: Unread,
        *,
        sync_durations: bool = True,
    ) -> None:
        self._client = client
        self._metrics = metrics
        self._unread = unread
        self._sync_durations = sync_durations
        self._seen: dict[str, dict[str, _Seen]] = {}
        self._failed: set[tuple[str, str]] = set()
        """(company, pull operation) reads that failed and were told."""
        self._lock = threading.Lock()

    def update(
        self, company_id: str, data_types: Iterable[DataTypeStatus], deadline: float
    ) -> Mapping[str, SyncDetail]:
        """Read what is new for the company's pairs; its latest-sync details by data type."""
        with self._lock:
            known = dict(self._seen.get(company_id, {}))
        first_poll = not known
        current: dict[str, _Seen] = {}
        for item in data_types:
            before = known.get(item.data_type)
            detail = before.detail if before and before.sync_id == item.latest_sync_id else None
            status_seen = before.status if before else ""
            if self._needs_detail(item, before):
                read = self._read(company_id, item.latest_sync_id, deadline)
                if read is not None:
                    detail, status_seen = read, item.status
            elif item.status == COMPLETE:
                detail, status_seen = None, item.status
            successful = item.latest_successful_sync_id
            if (
                self._sync_durations and not first_poll and successful
                and before is not None and successful != before.successful_id
                and not self._observe(company_id, item.data_type, successful, deadline)
            ):  # fmt: skip
                successful = before.successful_id  # not read: try again at the next poll
            current[item.data_type] = _Seen(item.latest_sync_id, status_seen, detail, successful)
        with self._lock:
            self._seen[company_id] = current
        return {name: seen.detail for name, seen in current.items() if seen.detail is not None}

    def saved(self) -> Seen:
        with self._lock:
            return {
                company_id: {
                    d: (seen.sync_id, seen.status, seen.successful_id) for d, seen in by.items()
                }
                for company_id, by in self._seen.items()
            }

    def checked(self, saved: Any) -> Seen:
        """The section itself, every value checked in place: a copy of it would be 30 MB
        more at 10,000 x 25 while the state restores."""
        seen: Seen = as_dict(saved or {})
        for company_id, by in seen.items():
            as_str(company_id)
            for data_type, ids in as_dict(by).items():
                as_str(data_type)
                if len(as_list(ids)) != 3:
                    raise ValueError(f"expected 3 sync ids and statuses, found {len(ids)}")
                for value in ids:
                    as_str(value)
        return seen

    def restore(self, checked: Seen, companies: Mapping[str, CompanyState]) -> None:
        """Resume from a state file, so that nothing read before the restart is read again;
        the details read are in the companies' states."""
        with self._lock:
            for company_id, by in checked.items():
                company = companies.get(company_id)
                known = company.syncs if company is not None else {}
                self._seen[company_id] = {
                    d: _Seen(sync_id, status, known.get(d), successful)
                    for d, (sync_id, status, successful) in by.items()
                }

    def forget_all_but(self, kept: set[str]) -> None:
        with self._lock:
            for company_id in self._seen.keys() - kept:
                del self._seen[company_id]
            self._failed = {pair for pair in self._failed if pair[0] in kept}

    @staticmethod
    def _needs_detail(item: DataTypeStatus, before: _Seen | None) -> bool:
        if item.status == COMPLETE or not item.latest_sync_id:
            return False
        if before is None or before.sync_id != item.latest_sync_id or before.detail is None:
            return True
        # The same sync: read again only once it has ended (in an error, say), not at each
        # of its stages.
        return before.status != item.status and item.status not in _RUNNING

    def _observe(self, company_id: str, data_type: str, sync_id: str, deadline: float) -> bool:
        detail = self._read(company_id, sync_id, deadline)
        if detail is None:
            return False
        if detail.requested is not None and detail.completed is not None:
            took = detail.completed - detail.requested
            if took >= 0:
                self._metrics.sync_duration.labels(data_type).observe(took)
        return True

    def _read(self, company_id: str, sync_id: str, deadline: float) -> SyncDetail | None:
        try:
            body = self._client.get_json(
                PULL_OPERATION, deadline, priority=REST, companyId=company_id, datasetId=sync_id
            )
            detail = parse_pull_operation(body)
        except ApiKeyRejected:
            raise
        except Deferred:
            self._unread.deferred(PULL_OPERATIONS.label)
            return None
        except CodatError as exc:
            self._failed_read(company_id, sync_id, exc.reason, str(exc))
            return None
        except ShapeError as exc:
            self._failed_read(company_id, sync_id, "malformed_response", f"{PULL_OPERATION}: {exc}")
            return None
        with self._lock:
            self._failed.discard((company_id, sync_id))
        return detail

    def _failed_read(self, company_id: str, sync_id: str, reason: str, error: str) -> None:
        self._metrics.pull_operation_errors.labels(reason).inc()
        with self._lock:
            first = (company_id, sync_id) not in self._failed
            self._failed.add((company_id, sync_id))
        self._unread.failed(PULL_OPERATIONS, reason, company_id,
                            f"company {company_id}: pull operation {sync_id}: {error}",
                            new=first)  # fmt: skip
