"""One company's poll, on a worker: what is due of its name, sync settings and connections
(``exporter.codat.sidevalues``), its dataStatus, the pull operations of what changed
(``exporter.codat.diagnostics``) and the refreshes due (``exporter.codat.refresh``), as
one ``Outcome``; and the workers, ``codat.max_concurrency`` threads shared by the cycle and
the webhook re-polls.

One company's failure never touches another: every error becomes the company's outcome,
with its ``codat_exporter_poll_errors_total`` reason. A dataStatus 404 means the company
does not exist: one of ``companies.ids`` stays, down and not found (the user must fix the
list); any other is gone.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import replace

from exporter.codat.client import CodatClient
from exporter.codat.diagnostics import SyncDiagnostics
from exporter.codat.errors import CodatError, NotFound
from exporter.codat.refresh import Refresher
from exporter.codat.sidevalues import SideValues
from exporter.config.sections import Config
from exporter.core.clock import Clock
from exporter.core.contract import ShapeError, parse_data_statuses
from exporter.core.snapshot import CompanyState, DataTypeStatus, Outcome, RefreshMark, SyncDetail

log = logging.getLogger("exporter.poll.poller")


def _unchanged_kept(
    read: tuple[DataTypeStatus, ...], known: tuple[DataTypeStatus, ...]
) -> tuple[DataTypeStatus, ...]:
    """``read`` with each pair that did not change since ``known`` the known object itself:
    a cycle holds the fleet's previous states until it ends, and most pairs do not change
    between two polls, so this keeps one copy of them instead of two."""
    if read == known:
        return known
    before = {item.data_type: item for item in known}
    return tuple(item if before.get(item.data_type) != item else before[item.data_type]
                 for item in read)  # fmt: skip


class CompanyPoll:
    def __init__(
        self,
        config: Config,
        client: CodatClient,
        clock: Clock,
        side: SideValues,
        *,
        diagnostics: SyncDiagnostics | None,
        refresher: Refresher | None,
        known: Callable[[str], CompanyState | None],
        stopping: threading.Event,
    ) -> None:
        """``known``: the company's state as the fleet has it (None before its first poll)."""
        self._config = config
        self._client = client
        self._clock = clock
        self._side = side
        self._diagnostics = diagnostics
        self._refresher = refresher
        self._known = known
        self._stopping = stopping
        self._configured = frozenset(config.companies.ids)
        """Companies a 404 leaves visible as not found: the user listed them, so a typo or
        a deleted company must show, where a discovered one that Codat deleted just leaves."""

    def poll(
        self, company_id: str, deadline: float, defer: bool = False, later: bool = False
    ) -> Outcome:
        """``defer``: a first cycle too long for the rate limit, whose connections and sync
        settings are spread over the cycles that follow instead of tripling this one;
        ``later``: a first cycle within it, whose connections, sync settings, pull operations
        and refreshes (which need the sync schedules) ``rest`` does after every company's
        dataStatus."""
        if self._stopping.is_set():
            return Outcome(company_id, error="stopping", reason="stopping")
        try:
            side_failure = self._side.refresh(company_id, deadline, defer=defer, details=not later)
            body = self._client.data_status(company_id, deadline)
            data_types = parse_data_statuses(body, self._config.data_types.selects)
            known = self._known(company_id)
            if body == {} and known is not None and known.data_types:
                # A company that listed data types does not lose them all at once; a company
                # with nothing connected yet answers {} and is fine.
                raise ShapeError(f"dataStatus is empty; it listed {len(known.data_types)} before")
            if known is not None:
                data_types = _unchanged_kept(data_types, known.data_types)
            syncs = {} if later else self._syncs(company_id, data_types, deadline)
            refreshes = {} if later else self._refresh(company_id, data_types, syncs, deadline)
        except NotFound as exc:
            if company_id in self._configured:
                return self._failed(company_id, str(exc), exc.reason)
            return Outcome(company_id, error=str(exc), reason=exc.reason, gone=True)
        except CodatError as exc:
            return self._failed(company_id, str(exc), exc.reason)
        except ShapeError as exc:
            return self._failed(company_id, f"GET dataStatus: {exc}", "malformed_response")
        except Exception as exc:  # a bug must not take the other companies down
            log.exception("unexpected error polling company %s", company_id)
            return self._failed(company_id, type(exc).__name__, "internal_error")
        if side_failure is not None:
            return Outcome(company_id, data_types, error=str(side_failure),
                           reason=side_failure.reason, at=self._clock.monotonic(),
                           syncs=syncs, refreshes=refreshes)  # fmt: skip
        return Outcome(company_id, data_types, at=self._clock.monotonic(), syncs=syncs,
                       refreshes=refreshes)  # fmt: skip

    def rest(self, outcome: Outcome, deadline: float) -> Outcome:
        """What ``later`` left of a company's poll: its sync settings and connections, its
        pull operations, then its refreshes; a failure shows the company down, as in
        ``poll``."""
        company_id = outcome.company_id
        data_types = outcome.data_types or ()
        try:
            failure = self._side.refresh(company_id, deadline, name=False)
            syncs = self._syncs(company_id, data_types, deadline)
            refreshes = self._refresh(company_id, data_types, syncs, deadline)
        except CodatError as exc:  # a rejected API key
            failure, syncs, refreshes = exc, outcome.syncs, {}
        except Exception as exc:  # a bug must not take the other companies down
            log.exception("unexpected error polling company %s", company_id)
            return replace(outcome, error=type(exc).__name__, reason="internal_error")
        if failure is None or outcome.reason:
            return replace(outcome, syncs=syncs, refreshes=refreshes)
        return replace(outcome, error=str(failure), reason=failure.reason, syncs=syncs,
                       refreshes=refreshes)  # fmt: skip

    def _syncs(
        self, company_id: str, data_types: tuple[DataTypeStatus, ...], deadline: float
    ) -> Mapping[str, SyncDetail]:
        if self._diagnostics is None:
            return {}
        return self._diagnostics.update(company_id, data_types, deadline)

    def _refresh(
        self,
        company_id: str,
        data_types: tuple[DataTypeStatus, ...],
        syncs: Mapping[str, SyncDetail],
        deadline: float,
    ) -> dict[str, RefreshMark]:
        if self._refresher is None:
            return {}
        freshness = self._config.freshness
        schedules = self._side.sync_schedules(company_id)
        max_ages = {
            item.data_type: freshness.max_age_for(
                item.data_type, company_id, schedules.get(item.data_type)
            )
            for item in data_types
        }
        return self._refresher.consider(company_id, data_types, syncs, max_ages, deadline)

    def _failed(self, company_id: str, error: str, reason: str) -> Outcome:
        return Outcome(company_id, error=error, reason=reason, at=self._clock.monotonic())


class Workers:
    """Company polls on worker threads. Once stopped, what is still queued is skipped."""

    def __init__(self, poll: CompanyPoll, threads: int, stopping: threading.Event) -> None:
        self._poll = poll
        self._stopping = stopping
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="poll")

    def submit(
        self, company_id: str, deadline: float, *, defer: bool = False, later: bool = False
    ) -> Future[Outcome] | None:
        """The company's poll, queued (``CompanyPoll.poll``); None once stopped."""
        try:
            return self._executor.submit(self._poll.poll, company_id, deadline, defer, later)
        except RuntimeError:  # shut down meanwhile: stopping
            return None

    def rest(self, outcomes: list[Outcome], deadline: float) -> list[Outcome]:
        """The first cycle's second pass, once every dataStatus is in: the rest of the poll
        of each company whose dataStatus was read (``CompanyPoll.rest``)."""
        futures = []
        for outcome in outcomes:
            if outcome.data_types is None or self._stopping.is_set():
                continue
            try:
                futures.append(self._executor.submit(self._poll.rest, outcome, deadline))
            except RuntimeError:  # shut down meanwhile: stopping
                break
        finished = {outcome.company_id: outcome for outcome in results(futures)}
        return [finished.get(outcome.company_id, outcome) for outcome in outcomes]

    def stop(self, *, wait: bool) -> None:
        self._executor.shutdown(wait=wait, cancel_futures=True)


def results(futures: Iterable[Future[Outcome]]) -> list[Outcome]:
    """Outcomes of the polls that ran; those cancelled by a stop have none."""
    outcomes = []
    for future in futures:
        try:
            outcomes.append(future.result())
        except CancelledError:
            continue
    return outcomes
