"""The poll loop: every ``poll.interval``, fetch each company's data status and publish a
new snapshot.

One APScheduler job runs the whole cycle, so nothing it does can overlap: discovery first
when it is due (``exporter.codat.discovery``), then one task per company
(``exporter.poll.company``), handed to ``codat.max_concurrency`` workers and spread over the
interval rather than fired as a burst. In the first cycle, sync settings and connections
follow every company's dataStatus instead of preceding each, and the fleet is published as
it comes (``exporter.poll.fleet``, the states' one owner).

Companies are polled longest-unpolled first: when the rate limit lets a cycle reach only
some of them, the ones it missed lead the next cycle, so every company is still polled
within ceil(companies / capacity) cycles instead of the same tail failing forever.

A company that discovery no longer lists leaves the next snapshot, as does one Codat answers
404 (``exporter.poll.company`` says which stay). ``exporter.poll.failurelog`` says what the
log says of failures. Every cycle ends with one INFO line::

    poll cycle: 20 companies polled, 2 failed; data types: 33 stale, 17 failing,
    13 in AuthError, 2 never synced; took 1.2s
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any

from exporter.codat.client import CodatClient
from exporter.codat.diagnostics import SyncDiagnostics
from exporter.codat.discovery import Discovery
from exporter.codat.refresh import Refresher
from exporter.codat.refreshjournal import Journal, journal_path
from exporter.codat.sidevalues import SideValues
from exporter.codat.unread import Unread
from exporter.config.sections import Config
from exporter.core.clock import Clock
from exporter.core.contract import company_id
from exporter.core.phrases import plural
from exporter.core.snapshot import CompanyInfo, Outcome, Snapshot
from exporter.exposition.assess import count_pairs
from exporter.exposition.instruments import ExporterMetrics
from exporter.exposition.render import Exposition
from exporter.exposition.saved import saved
from exporter.exposition.store import SnapshotStore
from exporter.poll import budget, components, statefile
from exporter.poll.company import CompanyPoll, Workers, results
from exporter.poll.components import Component
from exporter.poll.failurelog import FailureLog
from exporter.poll.fleet import Fleet
from exporter.poll.progress import Progress
from exporter.poll.statecodec import SavedState

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
        self._stopping = threading.Event()
        self._cycle_lock = threading.Lock()
        self._discovery = (
            Discovery(config.companies, client, metrics, clock, store.note)
            if config.companies.discover
            else None
        )
        self._unread = Unread()
        self._side = SideValues(config, client, clock, self._listed, self._unread)
        diagnostics = (
            SyncDiagnostics(
                client, metrics, self._unread, sync_durations=config.diagnostics.sync_durations
            )
            if config.diagnostics.pull_operations
            else None
        )
        refresher = (
            Refresher(config.refresh, client, metrics, clock, _journal(config))
            if config.refresh.enabled
            else None
        )
        self._failures = FailureLog(metrics)
        self._components: list[Component[Any]] = [
            c
            for c in (self._discovery, self._side, diagnostics, refresher, self._failures)
            if c is not None
        ]
        """What the poller keeps besides the fleet's states: restored, saved and pruned
        alike (``exporter.poll.components``)."""
        self._fleet = Fleet(config, store, clock, self._side, self._unready)
        company = CompanyPoll(config, client, clock, self._side, diagnostics=diagnostics,
                              refresher=refresher, known=self._fleet.state,
                              stopping=self._stopping)  # fmt: skip
        self._workers = Workers(company, config.codat.max_concurrency, self._stopping)
        self._writer = (
            statefile.Writer(config.state.file, config.shard, metrics)
            if config.state.file
            else None
        )
        self._estimated_for: tuple[int, int, float] | None = None
        """The fleet size and data types per company the last estimate was made for."""
        metrics.shard_info.labels(str(config.shard.index), str(config.shard.count)).set(1)

    def stop(self, *, wait: bool = True) -> None:
        """Skip what is still queued; requests in flight end within their timeout (waited
        for unless ``wait`` is False)."""
        self._stopping.set()
        self._client.limiter.close()
        self._workers.stop(wait=wait)

    def _listed(self) -> Mapping[str, CompanyInfo]:
        return self._discovery.companies if self._discovery else _NOT_LISTED

    def _unready(self) -> str:
        discovery = self._discovery
        if discovery is not None and not discovery.succeeded:
            return f"company discovery has not succeeded yet ({discovery.error or 'running'})"
        return ""

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
            self._failures.record(outcomes, self._fleet.has_values)
            self._unread.tell(self._config.codat.max_requests_per_minute)
            snapshot = self._fleet.end_cycle(outcomes, started)
            kept = set(targets) - {o.company_id for o in outcomes if o.gone}
            components.forget_all_but(self._components, kept)
            self._fleet.forget_all_but(kept)
            gone = sum(1 for o in outcomes if o.gone)
            failed = sum(1 for o in outcomes if o.reason and not o.gone)
            result = CycleResult(len(outcomes) - failed - gone, failed, gone, discovery_failed)
            self._log_summary(result, snapshot)
            self._save_state()
            return result

    def saved_state(self) -> SavedState:
        """What the state file keeps: the snapshot and what the components need to resume."""
        return self._fleet.saved(components.saved_sections(self._components))[0]

    def restore(self, state: SavedState, rendered: Exposition | None = None) -> None:
        """Resume from a state file and publish its snapshot at once (``Fleet.restore``);
        StateFileError, with nothing restored, when a component's section is malformed."""
        with self._cycle_lock:
            components.restore_all(self._components, state.sections, state.companies)
            self._fleet.restore(state, rendered)

    def _save_state(self) -> None:
        if self._writer is not None:
            state, served = self._fleet.saved(components.saved_sections(self._components))
            self._writer.write(state, saved(served))

    def remembered(self) -> set[str]:
        """Every company the poller keeps anything about (bounded by the fleet, not history)."""
        return self._fleet.remembered() | self._side.companies() | self._failures.companies()

    def _longest_unpolled_first(self, targets: list[str]) -> list[str]:
        """Never-polled companies first, then by their last successful poll, oldest first;
        ties keep the listing's order."""
        last = self._fleet.last_successes()

        def since(company_id: str) -> float:
            polled = last.get(company_id)
            return -math.inf if polled is None else polled

        return sorted(targets, key=since)

    def poll_companies(self, company_ids: Iterable[str]) -> None:
        """Re-poll some monitored companies now (webhooks) and publish; others are ignored."""
        monitored = set(self.targets())
        wanted = [c for c in dict.fromkeys(map(company_id, company_ids)) if c in monitored]
        if not wanted or self._stopping.is_set():
            return
        deadline = self._clock.monotonic() + self._config.poll.interval
        submitted = [self._workers.submit(c, deadline) for c in wanted]
        outcomes = results(f for f in submitted if f is not None)
        self._failures.record(outcomes, self._fleet.has_values, whole_cycle=False)
        self._fleet.merge(outcomes)
        for outcome in outcomes:
            if outcome.gone:
                self._side.forget(outcome.company_id)

    def expire_connections(self, company_ids: Iterable[str]) -> None:
        """Make the next poll of these companies fetch their connections, whatever the interval."""
        self._side.expire_connections(map(company_id, company_ids))

    def drop_company(self, deleted: str) -> None:
        """Forget a company Codat deleted; it stays out until a poll finds it again. One of
        ``companies.ids`` is polled instead, so that it shows as not found as long as it is
        listed."""
        if company_id(deleted) in self._config.companies.ids:
            self.poll_companies([deleted])
        elif self._fleet.drop(company_id(deleted)):
            log.info("company %s deleted in Codat; dropped from /metrics", company_id(deleted))

    def _poll_all(self, targets: list[str], started: float, deadline: float) -> list[Outcome]:
        """Hand each company to the workers, spaced evenly over SPREAD of the interval.

        The first cycle is not spread, and publishes as it goes (every PUBLISH_EVERY
        seconds): until then there is nothing to show at all. Unless they are deferred for
        the rate limit (``defer``), it reads every company's name and dataStatus before any
        company's sync settings, connections and pull operations (``later``), so that a
        start limited by latency shows every company's data first.

        The limiter keeps the turns of the dataStatus requests and unknown names from the
        rest (``RateLimiter.reserve``) until a timeout before the deadline; in a first cycle
        until all are made, so that a cold start shows every company before anything else."""
        step = self._config.poll.interval * SPREAD / len(targets) if targets else 0.0
        first = not self._fleet.polled_once
        spread = self._spread and not first
        defer = first and self._first_cycle_too_long(len(targets))
        later = first and not defer
        progress = Progress(len(targets), self._clock, self._metrics, first,
                             self._config.codat.max_requests_per_minute)  # fmt: skip
        limiter = self._client.limiter
        limiter.reserve(len(targets) + self._side.names_due(targets),
                        started if first else deadline - self._config.codat.timeout)  # fmt: skip
        futures: list[Future[Outcome]] = []
        for index, target in enumerate(targets):
            if spread and index:
                wait = started + index * step - self._clock.monotonic()
                if wait > 0:
                    self._clock.sleep(wait)
            if self._stopping.is_set():
                break
            future = self._workers.submit(target, deadline, defer=defer, later=later)
            if future is None:
                break
            future.add_done_callback(progress.done)
            futures.append(future)
        if first:
            self._publish_as_they_come(futures, progress)
        outcomes = results(futures)
        limiter.reserve(0)
        if later and not self._stopping.is_set():  # a stopped cycle publishes nothing
            self._fleet.merge(outcomes)  # every dataStatus on /metrics now, not after the rest
            outcomes = self._workers.rest(outcomes, deadline)
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
            self._fleet.merge(results(f for f in futures if f.done()))
            published_at = self._clock.monotonic()

    def _estimate_budget(self) -> None:
        """Note the fleet's daily request estimate; warn when it exceeds Codat's quota or
        the per-minute rate limit. Runs at start and whenever the fleet's size changes."""
        config = self._config
        companies = budget.fleet_size(config, self._listed())
        data_types, syncs_per_day = budget.fleet_shape(self._fleet.states())
        key = (companies, round(data_types), round(syncs_per_day, 1))
        if key == self._estimated_for:
            return
        resized = self._estimated_for is None or self._estimated_for[0] != companies
        self._estimated_for = key
        estimate = budget.estimate_for(
            config, companies, data_types=data_types, syncs_per_day=syncs_per_day
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
