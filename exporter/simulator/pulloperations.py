"""Each simulated sync as Codat's PullOperation, alone (``GET .../data/history/{datasetId}``)
or in a company's history, newest first (``GET .../data/history``)::

    {"id": "5b0e...", "dataType": "invoices", "status": "FetchError", "progress": 37,
     "errorMessage": "The source platform returned 503 Service Unavailable",
     "requested": "2026-11-23T11:00:12.4409121Z", "completed": "2026-11-23T11:04:40.1...Z",
     "isCompleted": false, "isErrored": true, ...}

A held sync says why it waits in ``statusDescription`` ("Paused until <DateTime>"), and
every error status carries an ``errorMessage``.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from itertools import islice
from typing import Any, overload

from exporter.core.contract import IN_PROGRESS_STATUSES
from exporter.simulator.dates import format_datetime
from exporter.simulator.syncs import COMPLETE, IN_PROGRESS, Sync, Timeline

ERROR_MESSAGES = {
    "FetchError": "The source platform returned 503 Service Unavailable",
    "AuthError": "The access token has expired or been revoked",
    "MapError": "Could not map a record: it refers to an account that does not exist",
    "ValidationError": "Validation failed: the totals do not match the source platform's",
    "ProcessingError": "Processing failed after the data was fetched",
    "InternalError": "An internal error occurred in Codat; the sync can be retried",
    "RateLimitError": "The source platform answered 429 Too Many Requests",
    "PermissionsError": "The connected user has no permission to read this data",
    "PrerequisiteNotMet": "A data type this one depends on has not synced successfully yet",
}
"""A pull operation's ``errorMessage`` per error status (every error status has one)."""

DESCRIPTIONS = {
    "Cancelled": "Cancelled: a newer sync of this data type was queued",
    "NotSupported": "The source platform does not support this data type",
}
"""A pull operation's ``statusDescription`` per status, besides a hold's."""


def pull_operation_body(timeline: Timeline, sync: Sync, now: float) -> dict[str, Any]:
    """The PullOperation of ``timeline``'s ``sync`` as Codat would return it at ``now``."""
    status = timeline.status(sync, now)
    body: dict[str, Any] = {
        "id": timeline.sync_id(sync.k),
        "companyId": timeline.company_id,
        "connectionId": timeline.connection_id,
        "dataType": timeline.sim.data_type,
        "status": status,
        "requested": format_datetime(sync.requested, "z7"),
        "progress": _progress(timeline, sync, status, now),
        "isCompleted": status == COMPLETE,
        "isErrored": status in ERROR_MESSAGES,
    }
    hold = timeline.sim.hold
    description = hold.description if hold is not None and now < sync.started else None
    description = description or DESCRIPTIONS.get(status)
    if description is not None:
        body["statusDescription"] = description
    if status in ERROR_MESSAGES:
        body["errorMessage"] = ERROR_MESSAGES[status]
    if now >= sync.ended:
        body["completed"] = format_datetime(sync.ended, "z7")
    return body


def _progress(timeline: Timeline, sync: Sync, status: str, now: float) -> int:
    if status == COMPLETE:
        return 100
    if timeline.sim.shows_progress and sync.started <= now < sync.ended:
        return max(1, min(99, int(100 * (now - sync.started) / (sync.ended - sync.started))))
    if status in IN_PROGRESS:
        return 100 * IN_PROGRESS.index(status) // len(IN_PROGRESS)
    if status in IN_PROGRESS_STATUSES:
        return 0  # Initial: not started
    return 5 + int(90 * timeline.unit(sync.k, "progress"))  # where it stopped


class History(Sequence[dict[str, Any]]):
    """A company's pull operations at ``now``, the newest first, built only as sliced: a
    company's history holds a sync per data type per period since it was created."""

    def __init__(self, timelines: Sequence[Timeline], now: float) -> None:
        self._timelines = {t.sim.data_type: t for t in timelines}
        self._now = now

    def __len__(self) -> int:
        return sum(t.count(self._now) for t in self._timelines.values())

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, int):
            found = self[index : index + 1] if index >= 0 else []
            if not found:
                raise IndexError(index)
            return found[0]
        start, stop, step = index.indices(len(self))
        merged = heapq.merge(
            *(t.newest_first(self._now) for t in self._timelines.values()),
            key=lambda entry: (-entry[0], entry[1]),
        )
        result = []
        for _, data_type, k in islice(merged, start, stop, step):
            timeline = self._timelines[data_type]
            result.append(pull_operation_body(timeline, timeline.sync(k), self._now))
        return result
