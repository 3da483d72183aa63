"""The poll loop: every ``poll.interval``, fetch each company's data status and publish a
new snapshot.

One APScheduler job runs the whole cycle, so nothing it does can overlap: discovery first
when it is due (``exporter.codat.discovery``), then one task per company, handed to
``codat.max_concurrency`` workers and spread over the interval rather than fired as a
burst. A company's task also refreshes what is due of its name, sync settings and
connections (``exporter.codat.sidevalues``); in the first cycle, sync settings and connections
follow every company's dataStatus instead of preceding each.

Companies are polled longest-unpolled first: when the rate limit lets a cycle reach only
some of them, the ones it missed lead the next cycle, so every company is still polled
within ceil(companies / capacity) cycles instead of the same tail failing forever.

One company's failure never touches another: a failed company keeps its last good data
types, with ``codat_exporter_company_up`` 0, until a poll succeeds again. A dataStatus 404
means the company does not exist: one of ``companies.ids`` stays, down and not found (the
user must fix the list); any other leaves the next snapshot, as does a company that
discovery no longer lists. ``exporter.poll.failurelog`` says what the log says of failures.
Every cycle ends with one INFO line::

    poll cycle: 20 companies polled, 2 failed; data types: 33 stale, 17 failing,
    13 in AuthError, 2 never synced; took 1.2s
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

from exporter.codat.client import CodatClient
from exporter.codat.diagnostics import SyncDiagnostics
from exporter.codat.discovery import Discovery
from exporter.codat.errors import CodatError, NotFound
from exporter.codat.refresh import Refresher
from exporter.codat.refreshjournal import Journal, journal_path
from exporter.codat.sidevalues import SideValues
from exporter.config.sections import Config
from exporter.core.clock import Clock
from exporter.core.contract import ShapeError, company_id, parse_data_statuses
from exporter.core.phrases import plural
from exporter.core.snapshot import (
    CompanyInfo,
    CompanyState,
    DataTypeStatus,
    Outcome,
    RefreshMark,
    Snapshot,
    SyncDetail,
)
from exporter.exposition.assess import count_pairs
from exporter.exposition.instruments import ExporterMetrics
from exporter.exposition.render import Exposition
from exporter.exposition.saved import saved
from exporter.exposition.store import SnapshotStore
from exporter.poll import budget, statefile
from exporter.poll.failurelog import FailureLog
from exporter.poll.progress import Progress
from exporter.poll.statefile import SavedState

log = logging.getLogger(__name__)

SPREAD = 0.8
"""Share of the interval the cycle's requests are spread over; the rest absorbs retries."""
PUBLISH_EVERY = 5.0
"""Seconds between the first cycle's partial snapshots."""

_NOT_LISTED: Mapping[str, CompanyInfo] = {}


@dataclass(frozen=True)
class CycleResult:
    succeeded: int
    failed: int
    gone: int
    discovery_failed: bool = False

    @property
    def all_succeeded(self) -> bool:
        return self.failed == 0 and self.gone == 0 and not self.discovery_failed


def _journal(config: Config) -> Journal | None:
    """The refresh journal, beside the state file; none for a dry run, which sends nothing
    (and whose log lines would otherwise spend the caps of the day it is turned off)."""
    if config.refresh.dry_run or not config.state.file:
        return None
    return Journal(journal_path(config.state.file))


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


class Poller:
    def __init__(
        self,
        config: Config,
        client: CodatClient,
        store: SnapshotStore,
        metrics: ExporterMetrics,
        clock: Clock,
        *,
        spread: bool = True,
        quota_warning: bool = True,
    ) -> None:
        self._config = config
        self._client = client
        self._store = store
        self._metrics = metrics
        self._clock = clock
        self._spread = spread
        self._quota_warning = quota_warning
        self._executor = ThreadPoolExecutor(
            max_workers=config.codat.max_concurrency, thread_name_prefix="poll"
        )
        self._stopping = threading.Event()
        self._cycle_lock = threading.Lock()
        self._discovery = (
            Discovery(config.companies, client, metrics, clock, store.note)
            if config.companies.discover
            else None
        )
        self._side = SideValues(config, client, clock, self._listed)
        self._diagnostics = (
            SyncDiagnostics(client, metrics, sync_durations=config.diagnostics.sync_durations)
            if config.diagnostics.pull_operations
            else None
        )
        self._failures = FailureLog(metrics)
        self._refresher = (
            Refresher(config.refresh, client, metrics, clock, _journal(config))
            if config.refresh.enabled
            else None
        )
        self._configured = frozenset(config.companies.ids)
        """Companies a 404 leaves visible as not found: the user listed them, so a typo or
        a deleted company must show, where a discovered one that Codat deleted just leaves."""
        self._states: dict[str, CompanyState] = {}
        self._state_at: dict[str, float] = {}
        self._states_lock = threading.Lock()
        """Guards _states while a cycle and webhook re-polls both publish."""
        self._last_cycle: tuple[float, float] | None = None
        self._state_failing = False
        self._estimated_for: tuple[int, int, float] | None = None
        """The fleet size and data types per company the last estimate was made for."""
        metrics.shard_info.labels(str(config.shard.index), str(config.shard.count)).set(1)

    def stop(self, *, wait: bool = True) -> None:
        """Skip what is still queued; requests in flight end within their timeout (waited
        for unless ``wait`` is False)."""
        self._stopping.set()
        self._client.limiter.close()
        self._executor.shutdown(wait=wait, cancel_futures=True)

    def _listed(self) -> Mapping[str, CompanyInfo]:
        return self._discovery.companies if self._discovery else _NOT_LISTED

    def targets(self) -> list[str]:
        """This shard's companies: discovered plus listed, minus excluded, in a stable order."""
        companies = self._config.companies
        discovered = self._listed()
        ids = dict.fromkeys([*discovered, *companies.ids])
        return [c for c in ids if c not in companies.exclude and self._config.shard.owns(c)]

    def run_cycle(self) -> CycleResult:
        """Discover if due, poll every company once, and publish the new snapshot."""
        with self._cycle_lock:
            started = self._clock.monotonic()
            deadline = started + self._config.poll.interval
            discovery = self._discovery
            discovery_failed = False
            if discovery is not None and discovery.due():
                discovery_failed = not discovery.run(deadline)
                if not discovery_failed:
                    log.info("discovered %s (%d on this shard)",
                             plural(len(discovery.companies), "company"),
                             len(self.targets()))  # fmt: skip
            self._estimate_budget()
            targets = self.targets()
            outcomes = self._poll_all(self._longest_unpolled_first(targets), started, deadline)
            if self._stopping.is_set():
                return CycleResult(0, 0, 0)
            self._failures.record(outcomes, self._has_values)
            with self._states_lock:
                previous, self._states = self._states, {}
                for outcome in outcomes:
                    if not outcome.gone:
                        self._merge(outcome, previous.get(outcome.company_id))
                self._last_cycle = (self._clock.monotonic() - started, self._clock.time())
                snapshot = self._publish()
            kept = set(targets) - {o.company_id for o in outcomes if o.gone}
            self._side.forget_all_but(kept)
            self._failures.forget_all_but(kept)
            if self._diagnostics is not None:
                self._diagnostics.forget_all_but(kept)
            if self._refresher is not None:
                self._refresher.forget_all_but(kept)
            with self._states_lock:
                for company_id in self._state_at.keys() - kept:
                    del self._state_at[company_id]
            gone = sum(1 for o in outcomes if o.gone)
            failed = sum(1 for o in outcomes if o.reason and not o.gone)
            result = CycleResult(len(outcomes) - failed - gone, failed, gone, discovery_failed)
            self._log_summary(result, snapshot)
            self._save_state()
            return result

    def saved_state(self) -> SavedState:
        """What the state file keeps: the snapshot and what the poller needs to resume."""
        with self._states_lock:
            return self._saved_state()

    def _saved_state(self) -> SavedState:
        """``saved_state``; the caller holds _states_lock."""
        discovery = self._discovery.saved() if self._discovery else None
        duration, ended = self._last_cycle or (None, None)
        return SavedState(
            saved_at=self._clock.time(),
            companies=dict(self._states),
            last_poll=ended,
            poll_duration=duration,
            listed=None if discovery is None else discovery[0],
            listed_at=None if discovery is None else discovery[1],
            fetched=self._side.saved(),
            seen_syncs=self._diagnostics.saved() if self._diagnostics else {},
            extra={"refresh": self._refresher.saved()} if self._refresher else {},
        )

    def restore(self, state: SavedState, rendered: Exposition | None = None) -> None:
        """Resume from a state file and publish its snapshot at once (before any poll).

        Each company keeps what its last poll before the restart said, ``up`` included,
        and its original last-poll-success time, until it is polled again. ``rendered`` is
        the file's own rendering of that snapshot (``exposition.saved``): published with
        the decoded companies, it saves rendering them again."""
        with self._cycle_lock, self._states_lock:
            if self._discovery is not None and state.listed is not None:
                self._discovery.restore(state.listed, state.listed_at or state.saved_at)
            self._side.restore(state.companies.values(), state.fetched)
            if self._diagnostics is not None:
                details = {c: s.syncs for c, s in state.companies.items()}
                self._diagnostics.restore(state.seen_syncs, details)
            if self._refresher is not None and isinstance(state.extra.get("refresh"), dict):
                self._refresher.restore(state.extra["refresh"])
            self._states = dict(state.companies)
            self._state_at = dict.fromkeys(state.companies, -math.inf)
            if state.last_poll is not None:
                self._last_cycle = (state.poll_duration or 0.0, state.last_poll)
            self._publish(rendered)

    def _save_state(self) -> None:
        path = self._config.state.file
        if not path:
            return
        with self._states_lock:  # the states and what was rendered from them, together
            state, served = self._saved_state(), self._store.current
        try:
            statefile.save(path, state, self._config.shard, saved(served))
        except OSError as exc:
            self._metrics.state_file_errors.inc()
            level = logging.DEBUG if self._state_failing else logging.WARNING
            log.log(level, "cannot write the state file %s: %s", path, exc.strerror or exc)
            self._state_failing = True
        else:
            if self._state_failing:
                log.info("state file %s written again", path)
            self._state_failing = False

    def remembered(self) -> set[str]:
        """Every company the poller keeps anything about (bounded by the fleet, not history)."""
        with self._states_lock:
            states = set(self._state_at)
        return states | self._side.companies() | self._failures.companies()

    def _longest_unpolled_first(self, targets: list[str]) -> list[str]:
        """Never-polled companies first, then by their last successful poll, oldest first;
        ties keep the listing's order."""
        with self._states_lock:
            last = {c: s.last_poll_success for c, s in self._states.items()}

        def since(company_id: str) -> float:
            polled = last.get(company_id)
            return -math.inf if polled is None else polled

        return sorted(targets, key=since)

    def _has_values(self, company_id: str) -> bool:
        state = self._states.get(company_id)
        return state is not None and bool(state.data_types)

    def _merge(self, outcome: Outcome, previous: CompanyState | None) -> None:
        """Record a company's result unless a later one (a webhook re-poll) is already in."""
        company_id = outcome.company_id
        if previous is not None and self._state_at.get(company_id, 0.0) > outcome.at:
            self._states[company_id] = previous
            return
        self._states[company_id] = self._company_state(outcome, previous, self._clock.time())
        self._state_at[company_id] = outcome.at

    def poll_companies(self, company_ids: Iterable[str]) -> None:
        """Re-poll some monitored companies now (webhooks) and publish; others are ignored."""
        monitored = set(self.targets())
        wanted = [c for c in dict.fromkeys(map(company_id, company_ids)) if c in monitored]
        if not wanted or self._stopping.is_set():
            return
        deadline = self._clock.monotonic() + self._config.poll.interval
        submitted = [self._submit(c, deadline) for c in wanted]
        outcomes = self._results(f for f in submitted if f is not None)
        self._failures.record(outcomes, self._has_values, whole_cycle=False)
        with self._states_lock:
            for outcome in outcomes:
                if outcome.gone:
                    self._states.pop(outcome.company_id, None)
                    self._side.forget(outcome.company_id)
                else:
                    self._merge(outcome, self._states.get(outcome.company_id))
            self._publish()

    def expire_connections(self, company_ids: Iterable[str]) -> None:
        """Make the next poll of these companies fetch their connections, whatever the interval."""
        self._side.expire_connections(map(company_id, company_ids))

    def drop_company(self, deleted: str) -> None:
        """Forget a company Codat deleted; it stays out until a poll finds it again. One of
        ``companies.ids`` is polled instead, so that it shows as not found as long as it is
        listed."""
        if company_id(deleted) in self._configured:
            self.poll_companies([deleted])
            return
        with self._states_lock:
            if self._states.pop(company_id(deleted), None) is not None:
                log.info("company %s deleted in Codat; dropped from /metrics", company_id(deleted))
            self._publish()

    def _publish(self, rendered: Exposition | None = None) -> Snapshot:
        """Render and swap in the current states; the caller holds _states_lock."""
        duration, ended = self._last_cycle or (None, None)
        discovery = self._discovery
        unready = ""
        if discovery is not None and not discovery.succeeded:
            unready = f"company discovery has not succeeded yet ({discovery.error or 'running'})"
        snapshot = Snapshot(
            companies=dict(self._states),
            monitored=len(self._states),
            poll_duration=duration,
            last_poll=ended,
            unready_reason=unready,
        )
        config = self._config
        if rendered is not None:
            exposition = rendered.with_snapshot(snapshot)
        else:
            exposition = Exposition(snapshot, config.freshness, config.poll.interval,
                                    config.metrics)  # fmt: skip
        self._store.publish(exposition)
        return snapshot

    def _poll_all(self, targets: list[str], started: float, deadline: float) -> list[Outcome]:
        """Hand each company to the workers, spaced evenly over SPREAD of the interval.

        The first cycle is not spread, and publishes as it goes (every PUBLISH_EVERY
        seconds): until then there is nothing to show at all. Unless they are deferred for
        the rate limit (``defer``), it reads every company's name and dataStatus before any
        company's sync settings and connections (``later``), so that a start limited by
        latency shows every company's data first."""
        step = self._config.poll.interval * SPREAD / len(targets) if targets else 0.0
        first = self._last_cycle is None
        spread = self._spread and not first
        defer = first and self._first_cycle_too_long(len(targets))
        later = first and not defer
        progress = Progress(len(targets), self._clock, self._metrics, first,
                             self._config.codat.max_requests_per_minute)  # fmt: skip
        futures: list[Future[Outcome]] = []
        for index, target in enumerate(targets):
            if spread and index:
                wait = started + index * step - self._clock.monotonic()
                if wait > 0:
                    self._clock.sleep(wait)
            if self._stopping.is_set():
                break
            future = self._submit(target, deadline, defer=defer, later=later)
            if future is None:
                break
            future.add_done_callback(progress.done)
            futures.append(future)
        if first:
            self._publish_as_they_come(futures, progress)
        outcomes = self._results(futures)
        if later:
            outcomes = self._poll_later(outcomes, deadline)
        self._metrics.cycle_progress.set(1)
        return outcomes

    def _first_cycle_too_long(self, companies: int) -> bool:
        """Whether fetching every company's side values in the first cycle would need more
        than the rate limit allows in one poll interval; only then are they deferred."""
        config = self._config
        kinds = config.connections.enabled + config.freshness.from_sync_settings
        per_interval = config.codat.max_requests_per_minute * config.poll.interval / 60
        return companies * (1 + kinds) > per_interval

    def _publish_as_they_come(self, futures: list[Future[Outcome]], progress: Progress) -> None:
        """Merge and publish finished polls every PUBLISH_EVERY seconds until all are in."""
        published_at = self._clock.monotonic()
        while progress.wait_for_more(len(futures)) and not self._stopping.is_set():
            if self._clock.monotonic() - published_at < PUBLISH_EVERY:
                continue
            done = self._results(f for f in futures if f.done())
            with self._states_lock:
                for outcome in done:
                    if not outcome.gone:
                        self._merge(outcome, self._states.get(outcome.company_id))
                self._publish()
            published_at = self._clock.monotonic()

    def _submit(
        self, company_id: str, deadline: float, *, defer: bool = False, later: bool = False
    ) -> Future[Outcome] | None:
        try:
            return self._executor.submit(self._poll_company, company_id, deadline, defer, later)
        except RuntimeError:  # shut down meanwhile: stopping
            return None

    def _poll_later(self, outcomes: list[Outcome], deadline: float) -> list[Outcome]:
        """The first cycle's second pass, once every dataStatus is in: on the workers, the
        rest of the poll of each company whose dataStatus was read."""
        futures = []
        for outcome in outcomes:
            if outcome.data_types is None or self._stopping.is_set():
                continue
            try:
                futures.append(self._executor.submit(self._poll_rest, outcome, deadline))
            except RuntimeError:  # shut down meanwhile: stopping
                break
        finished = {outcome.company_id: outcome for outcome in self._results(futures)}
        return [finished.get(outcome.company_id, outcome) for outcome in outcomes]

    @staticmethod
    def _results(futures: Iterable[Future[Outcome]]) -> list[Outcome]:
        """Outcomes of the tasks that ran; those cancelled by stop() have none."""
        outcomes = []
        for future in futures:
            try:
                outcomes.append(future.result())
            except CancelledError:
                continue
        return outcomes

    def _company_state(
        self, outcome: Outcome, previous: CompanyState | None, now: float
    ) -> CompanyState:
        company_id = outcome.company_id
        info = self._side.info(company_id)
        base = CompanyState(
            company_id=company_id,
            name=info.name,
            created=info.created,
            up=not outcome.reason,
            last_poll_success=now,
            data_types=outcome.data_types or (),
            connections=self._side.connections(company_id),
            sync_schedules=self._side.sync_schedules(company_id),
            syncs=outcome.syncs,
            refreshes=outcome.refreshes,
            poll_error=outcome.reason,
            not_found=outcome.not_found,
        )
        if outcome.data_types is not None:
            return base
        if previous is None:
            return replace(base, last_poll_success=None)
        return replace(
            base,
            last_poll_success=previous.last_poll_success,
            data_types=previous.data_types,
            syncs=previous.syncs,
            refreshes=previous.refreshes,
        )

    # --- one company ----------------------------------------------------------------------

    def _poll_company(
        self, company_id: str, deadline: float, defer: bool = False, later: bool = False
    ) -> Outcome:
        """One company's poll; ``defer``: a first cycle too long for the rate limit, whose
        connections and sync settings are spread over the cycles that follow instead of
        tripling this one; ``later``: a first cycle within it, whose connections, sync
        settings and refreshes (which need the sync schedules) ``_poll_rest`` does after
        every company's dataStatus."""
        if self._stopping.is_set():
            return Outcome(company_id, error="stopping", reason="stopping")
        try:
            side_failure = self._side.refresh(company_id, deadline, defer=defer, details=not later)
            body = self._client.data_status(company_id, deadline)
            data_types = parse_data_statuses(body, self._config.data_types.selects)
            known = self._states.get(company_id)
            if body == {} and known is not None and known.data_types:
                # A company that listed data types does not lose them all at once; a company
                # with nothing connected yet answers {} and is fine.
                raise ShapeError(f"dataStatus is empty; it listed {len(known.data_types)} before")
            if known is not None:
                data_types = _unchanged_kept(data_types, known.data_types)
            syncs = (
                self._diagnostics.update(company_id, data_types, deadline)
                if self._diagnostics is not None
                else {}
            )
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

    def _poll_rest(self, outcome: Outcome, deadline: float) -> Outcome:
        """What ``later`` left of a company's poll: its sync settings and connections, then
        its refreshes; a failure shows the company down, as in ``_poll_company``."""
        company_id = outcome.company_id
        try:
            failure = self._side.refresh(company_id, deadline, name=False)
            refreshes = self._refresh(company_id, outcome.data_types or (), outcome.syncs, deadline)
        except CodatError as exc:  # a rejected API key
            failure, refreshes = exc, {}
        except Exception as exc:  # a bug must not take the other companies down
            log.exception("unexpected error polling company %s", company_id)
            return replace(outcome, error=type(exc).__name__, reason="internal_error")
        if failure is None or outcome.reason:
            return replace(outcome, refreshes=refreshes)
        return replace(outcome, error=str(failure), reason=failure.reason, refreshes=refreshes)

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

    # --- fleet ------------------------------------------------------------------------------

    def _estimate_budget(self) -> None:
        """Note the fleet's daily request estimate; warn when it exceeds Codat's quota or
        the per-minute rate limit. Runs at start and whenever the fleet's size changes."""
        config = self._config
        ids = {*self._listed(), *config.companies.ids} - config.companies.exclude
        with self._states_lock:
            states = list(self._states.values())
        data_types = (
            sum(len(state.data_types) for state in states) / len(states)
            if states
            else budget.ASSUMED_DATA_TYPES
        )
        syncs_per_day = budget.syncs_per_day(states)
        key = (len(ids), round(data_types), round(syncs_per_day, 1))
        if key == self._estimated_for:
            return
        resized = self._estimated_for is None or self._estimated_for[0] != len(ids)
        self._estimated_for = key
        discover = config.companies.discover
        estimate = budget.estimate_daily_requests(
            len(ids),
            config.poll.interval,
            shards=config.shard.count,
            discovery_interval=config.companies.discovery_interval if discover else None,
            page_size=config.companies.page_size,
            connections_interval=config.connections.interval
            if config.connections.enabled
            else None,
            sync_settings_interval=config.freshness.sync_settings_interval
            if config.freshness.from_sync_settings
            else None,
            per_minute_limit=config.codat.max_requests_per_minute,
            pull_operation_reads=(
                config.diagnostics.pull_operations + config.diagnostics.sync_durations
            ),
            data_types=data_types,
            syncs_per_day=syncs_per_day,
            refreshes=(
                config.refresh.max_per_day * config.shard.count
                if config.refresh.enabled and not config.refresh.dry_run
                else 0
            ),
        )
        self._store.note(lambda facts: replace(facts, estimated_daily_requests=estimate.total))
        warning = estimate.warning()
        if warning and self._quota_warning and resized:  # said again only for a new fleet size
            log.warning("%s", warning)

    def _log_summary(self, result: CycleResult, snapshot: Snapshot) -> None:
        counts = count_pairs(snapshot, self._config.freshness, self._clock.time())
        polled = result.succeeded + result.failed + result.gone
        gone = f", {result.gone} gone" if result.gone else ""
        log.info("poll cycle: %s polled, %d failed%s; data types: %s; took %.1fs",
                 plural(polled, "company"), result.failed, gone, counts.summary(),
                 snapshot.poll_duration or 0.0)  # fmt: skip
