"""The poll loop: every ``poll.interval``, fetch each company's data status and publish a
new snapshot.

One APScheduler job runs the whole cycle, so nothing it does can overlap: discovery first
when it is due (``companies.discovery_interval``), then one task per company, handed to
``codat.max_concurrency`` workers and spread over the interval rather than fired as a
burst. A company's task also refreshes, when due, its name (hourly, unless discovery gave
it), its sync settings (with discovery) and its connections (``connections.interval``).

One company's failure never touches another: a failed company keeps its last good data
types, with ``codat_exporter_company_up`` 0, until a poll succeeds again. A 404 means the
company no longer exists; it leaves the next snapshot, as does a company that discovery no
longer lists. Failures are logged once per episode (when a company starts failing or fails
differently), not once per cycle, and 401/403 once per cycle for the whole fleet.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from apscheduler.schedulers.background import BackgroundScheduler

from exporter import budget
from exporter.client import (
    COMPANIES,
    CONNECTIONS,
    SYNC_SETTINGS,
    ApiKeyRejected,
    CodatClient,
    CodatError,
    MalformedResponse,
    NotFound,
)
from exporter.clock import Clock
from exporter.codat import (
    ShapeError,
    company_info,
    parse_company,
    parse_connections,
    parse_data_statuses,
    parse_sync_schedules,
    text,
)
from exporter.collector import Exposition
from exporter.config import Config
from exporter.metrics import ESTIMATED_DAILY, LAST_DISCOVERY, ExporterMetrics
from exporter.state import (
    CompanyInfo,
    CompanyState,
    ConnectionState,
    DataTypeStatus,
    Snapshot,
    SnapshotStore,
)
from exporter.webhooks import WebhookReceiver

log = logging.getLogger(__name__)

NAME_REFRESH_SECONDS = 3600.0
_NOTHING_KNOWN = CompanyInfo()
SPREAD = 0.8
"""Share of the interval the cycle's requests are spread over; the rest absorbs retries."""
CONNECTIONS_PAGE_SIZE = 100
T = TypeVar("T")


@dataclass(frozen=True)
class Outcome:
    company_id: str
    data_types: tuple[DataTypeStatus, ...] | None = None
    """None when the dataStatus request failed."""
    error: str = ""
    reason: str = ""
    """Why some request of the company's poll failed; empty when all succeeded."""
    gone: bool = False
    at: float = 0.0
    """Monotonic time the poll finished: of two results for a company, the later wins."""


@dataclass(frozen=True)
class CycleResult:
    succeeded: int
    failed: int
    gone: int

    @property
    def all_succeeded(self) -> bool:
        return self.failed == 0 and self.gone == 0


@dataclass
class _Refreshed:
    """A per-company side value (name, connections, schedules) and when it was fetched."""

    value: Any
    at: float


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
        self._discovered: dict[str, CompanyInfo] | None = None
        self._discovered_at: float | None = None
        self._discovery_failing = False
        self._names: dict[str, _Refreshed] = {}
        self._connections: dict[str, _Refreshed] = {}
        self._schedules: dict[str, _Refreshed] = {}
        self._failing: dict[str, str] = {}
        self._states: dict[str, CompanyState] = {}
        self._state_at: dict[str, float] = {}
        self._states_lock = threading.Lock()
        """Guards _states while a cycle and webhook re-polls both publish."""
        self._last_cycle: tuple[float, float] | None = None
        self._estimated_for: int | None = None
        metrics.shard_info.labels(str(config.shard.index), str(config.shard.count)).set(1)

    def stop(self) -> None:
        """Skip what is still queued; requests in flight end within their timeout."""
        self._stopping.set()
        self._client.limiter.close()
        self._executor.shutdown(wait=True, cancel_futures=True)

    def targets(self) -> list[str]:
        """This shard's companies: discovered plus listed, minus excluded, in a stable order."""
        companies = self._config.companies
        ids = dict.fromkeys([*(self._discovered or {}), *companies.ids])
        return [c for c in ids if c not in companies.exclude and self._config.shard.owns(c)]

    def run_cycle(self) -> CycleResult:
        """Discover if due, poll every company once, and publish the new snapshot."""
        with self._cycle_lock:
            started = self._clock.monotonic()
            deadline = started + self._config.poll.interval
            companies = self._config.companies
            if companies.discover and self._due(
                self._discovered_at, started, companies.discovery_interval
            ):
                self._discover(deadline)
            self._estimate_budget()
            targets = self.targets()
            outcomes = self._poll_all(targets, started, deadline)
            if self._stopping.is_set():
                return CycleResult(0, 0, 0)
            self._log_cycle(outcomes)
            with self._states_lock:
                previous, self._states = self._states, {}
                for outcome in outcomes:
                    if not outcome.gone:
                        self._merge(outcome, previous.get(outcome.company_id))
                self._last_cycle = (self._clock.monotonic() - started, self._clock.time())
                self._publish()
            self._forget_all_but(set(targets) - {o.company_id for o in outcomes if o.gone})
            gone = sum(1 for o in outcomes if o.gone)
            failed = sum(1 for o in outcomes if o.reason and not o.gone)
            return CycleResult(len(outcomes) - failed - gone, failed, gone)

    def _caches(self) -> list[dict[str, Any]]:
        return [self._state_at, self._names, self._connections, self._schedules, self._failing]

    def remembered(self) -> set[str]:
        """Every company the poller keeps anything about (bounded by the fleet, not history)."""
        with self._states_lock:
            return {company_id for cache in self._caches() for company_id in cache}

    def _forget_all_but(self, kept: set[str]) -> None:
        """Drop what is remembered of companies no longer polled, so churn cannot grow it."""
        with self._states_lock:
            for cache in self._caches():
                for company_id in cache.keys() - kept:
                    del cache[company_id]

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
        by_key = {company_id.lower(): company_id for company_id in self.targets()}
        wanted = [by_key[c.lower()] for c in company_ids if c.lower() in by_key]
        if not wanted or self._stopping.is_set():
            return
        deadline = self._clock.monotonic() + self._config.poll.interval
        submitted = [self._submit(c, deadline) for c in wanted]
        outcomes = self._results(f for f in submitted if f is not None)
        self._log_cycle(outcomes, whole_cycle=False)
        with self._states_lock:
            for outcome in outcomes:
                if outcome.gone:
                    self._states.pop(outcome.company_id, None)
                else:
                    self._merge(outcome, self._states.get(outcome.company_id))
            self._publish()

    def expire_connections(self, company_ids: Iterable[str]) -> None:
        """Make the next poll of these companies fetch their connections, whatever the interval."""
        wanted = {c.lower() for c in company_ids}
        for key in [c for c in self._connections if c.lower() in wanted]:
            self._connections.pop(key, None)

    def drop_company(self, company_id: str) -> None:
        """Forget a company Codat deleted; it stays out until a poll finds it again."""
        with self._states_lock:
            for key in [c for c in self._states if c.lower() == company_id.lower()]:
                del self._states[key]
                log.info("company %s deleted in Codat; dropped from /metrics", key)
            self._publish()

    def _publish(self) -> None:
        """Render and swap in the current states; the caller holds _states_lock."""
        duration, ended = self._last_cycle or (None, None)
        snapshot = Snapshot(
            companies=dict(self._states),
            monitored=len(self._states),
            poll_duration=duration,
            last_poll=ended,
        )
        self._store.publish(
            Exposition(snapshot, self._config.freshness, self._config.poll.interval)
        )

    def _poll_all(self, targets: list[str], started: float, deadline: float) -> list[Outcome]:
        """Hand each company to the workers, spaced evenly over SPREAD of the interval.

        The first cycle is not spread: until it ends there is nothing to show at all."""
        step = self._config.poll.interval * SPREAD / len(targets) if targets else 0.0
        spread = self._spread and self._last_cycle is not None
        futures: list[tuple[str, Future[Outcome]]] = []
        for index, company_id in enumerate(targets):
            if spread and index:
                wait = started + index * step - self._clock.monotonic()
                if wait > 0:
                    self._clock.sleep(wait)
            if self._stopping.is_set():
                break
            future = self._submit(company_id, deadline)
            if future is None:
                break
            futures.append((company_id, future))
        return self._results(future for _, future in futures)

    def _submit(self, company_id: str, deadline: float) -> Future[Outcome] | None:
        try:
            return self._executor.submit(self._poll_company, company_id, deadline)
        except RuntimeError:  # shut down meanwhile: stopping
            return None

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
        connections = self._connections.get(company_id)
        schedules = self._schedules.get(company_id)
        info = self._info_of(company_id)
        base = CompanyState(
            company_id=company_id,
            name=info.name,
            created=info.created,
            up=not outcome.reason,
            last_poll_success=now,
            data_types=outcome.data_types or (),
            connections=connections.value if connections else (),
            sync_schedules=schedules.value if schedules else {},
        )
        if outcome.data_types is not None:
            return base
        if previous is None:
            return replace(base, last_poll_success=None)
        return replace(
            base, last_poll_success=previous.last_poll_success, data_types=previous.data_types
        )

    def _info_of(self, company_id: str) -> CompanyInfo:
        if self._discovered and company_id in self._discovered:
            return self._discovered[company_id]
        known = self._names.get(company_id)
        return known.value if known else _NOTHING_KNOWN

    # --- one company ----------------------------------------------------------------------

    def _poll_company(self, company_id: str, deadline: float) -> Outcome:
        if self._stopping.is_set():
            return Outcome(company_id, error="stopping", reason="stopping")
        try:
            side_failure = self._refresh_side_values(company_id, deadline)
            body = self._client.data_status(company_id, deadline)
            data_types = parse_data_statuses(body, self._config.data_types.selects)
            known = self._states.get(company_id)
            if body == {} and known is not None and known.data_types:
                # A company that listed data types does not lose them all at once; a company
                # with nothing connected yet answers {} and is fine.
                raise ShapeError(f"dataStatus is empty; it listed {len(known.data_types)} before")
        except NotFound as exc:
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
                           reason=side_failure.reason, at=self._clock.monotonic())  # fmt: skip
        return Outcome(company_id, data_types=data_types, at=self._clock.monotonic())

    def _failed(self, company_id: str, error: str, reason: str) -> Outcome:
        return Outcome(company_id, error=error, reason=reason, at=self._clock.monotonic())

    def _refresh_side_values(self, company_id: str, deadline: float) -> CodatError | None:
        """Name, sync settings and connections, each when due; a failure keeps the last value
        and is returned, so that the company shows down while its data status still updates."""
        config = self._config
        client = self._client
        failures: list[CodatError | None] = []
        if not (self._discovered and company_id in self._discovered):
            failures.append(self._refresh(
                self._names, company_id, NAME_REFRESH_SECONDS, "name",
                lambda: parse_company(client.company(company_id, deadline)),
            ))  # fmt: skip
        if config.freshness.from_sync_settings:
            failures.append(self._refresh(
                self._schedules, company_id, config.companies.discovery_interval, "sync settings",
                lambda: parse_sync_schedules(
                    client.get_json(SYNC_SETTINGS, deadline, companyId=company_id)
                ),
            ))  # fmt: skip
        if config.connections.enabled:
            failures.append(self._refresh(
                self._connections, company_id, config.connections.interval, "connections",
                lambda: self._fetch_connections(company_id, deadline),
            ))  # fmt: skip
        return next((failure for failure in failures if failure is not None), None)

    def _fetch_connections(self, company_id: str, deadline: float) -> tuple[ConnectionState, ...]:
        items = self._client.get_pages(
            CONNECTIONS, deadline, CONNECTIONS_PAGE_SIZE, companyId=company_id
        )
        return parse_connections(items)

    def _refresh(
        self,
        cache: dict[str, _Refreshed],
        company_id: str,
        every: float,
        what: str,
        fetch: Callable[[], T],
    ) -> CodatError | None:
        now = self._clock.monotonic()
        known = cache.get(company_id)
        if not self._due(known.at if known else None, now, every):
            return None
        try:
            cache[company_id] = _Refreshed(fetch(), now)
        except ApiKeyRejected:
            raise  # the data status request would be rejected too; fail fast
        except CodatError as exc:
            return exc
        except ShapeError as exc:
            return MalformedResponse(f"{what}: {exc}")
        return None

    @staticmethod
    def _due(last: float | None, now: float, every: float) -> bool:
        return last is None or now - last >= every

    # --- fleet ------------------------------------------------------------------------------

    def _discover(self, deadline: float) -> None:
        companies = self._config.companies
        params = {k: v for k, v in (("tags", companies.tags), ("query", companies.query)) if v}
        try:
            items = self._client.get_pages(COMPANIES, deadline, companies.page_size, params)
            found = {
                text(item["id"]): company_info(item)
                for item in items
                if isinstance(item, dict) and isinstance(item.get("id"), str)
            }
        except CodatError as exc:
            self._metrics.discovery_failures.inc()
            kept = len(self._discovered or {})
            # Once per outage, like a company's failure: it is retried every cycle meanwhile.
            level = logging.DEBUG if self._discovery_failing else logging.WARNING
            log.log(level, "company discovery failed; keeping the last list of %d: %s", kept, exc)
            self._discovery_failing = True
            return
        if self._discovery_failing:
            log.info("company discovery succeeded again")
            self._discovery_failing = False
        if self._discovered is not None:
            dropped = self._discovered.keys() - found.keys()
            if dropped:
                log.info("discovery: %d companies no longer listed, dropping them", len(dropped))
        self._discovered = found
        self._discovered_at = self._clock.monotonic()
        self._metrics.latest.set(LAST_DISCOVERY, self._clock.time())
        log.info("discovered %d companies (%d on this shard)", len(found), len(self.targets()))

    def _estimate_budget(self) -> None:
        """Export the fleet's daily request estimate; warn when it exceeds Codat's quota."""
        config = self._config
        ids = {*(self._discovered or {}), *config.companies.ids} - config.companies.exclude
        if len(ids) == self._estimated_for:
            return
        self._estimated_for = len(ids)
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
            sync_settings_interval=config.companies.discovery_interval
            if config.freshness.from_sync_settings
            else None,
        )
        self._metrics.latest.set(ESTIMATED_DAILY, estimate.total)
        warning = estimate.warning()
        if warning and self._quota_warning:
            log.warning("%s", warning)

    def _log_cycle(self, outcomes: Iterable[Outcome], whole_cycle: bool = True) -> None:
        outcomes = list(outcomes)
        rejected = [o for o in outcomes if o.reason == ApiKeyRejected.reason]
        if rejected and whole_cycle:
            log.error(
                "Codat rejected the API key for %d of %d companies (company %s: %s); "
                "check codat.api_key",
                len(rejected), len(outcomes), rejected[0].company_id, rejected[0].error,
            )  # fmt: skip
        for outcome in outcomes:
            company_id = outcome.company_id
            if outcome.reason:
                self._metrics.poll_errors.labels(outcome.reason).inc()
            if outcome.gone:
                log.warning("company %s no longer exists in Codat (404); dropped from /metrics",
                            company_id)  # fmt: skip
                for cache in (self._failing, self._names, self._connections, self._schedules):
                    cache.pop(company_id, None)
            elif outcome.reason:
                if outcome.reason == ApiKeyRejected.reason:
                    self._failing[company_id] = outcome.reason
                elif self._failing.get(company_id) != outcome.reason:
                    log.warning("company %s: poll failed, keeping its last good values: %s",
                                company_id, outcome.error)  # fmt: skip
                    self._failing[company_id] = outcome.reason
                else:
                    log.debug("company %s: poll still failing: %s", company_id, outcome.error)
            elif self._failing.pop(company_id, None) is not None:
                log.info("company %s: poll succeeded again", company_id)


def start_scheduler(
    poller: Poller, interval: float, webhooks: WebhookReceiver | None = None
) -> BackgroundScheduler:
    """Run ``poller.run_cycle`` now and then every ``interval``; a slow cycle never overlaps
    the next (one instance at most; missed runs coalesce into one). Webhook work, if any,
    runs every second beside it."""
    scheduler = BackgroundScheduler(timezone=UTC)
    scheduler.add_job(
        poller.run_cycle,
        "interval",
        seconds=interval,
        next_run_time=datetime.now(UTC),
        max_instances=1,
        coalesce=True,
        misfire_grace_time=max(1, int(interval)),
        id="poll",
        name="poll Codat data status",
    )
    if webhooks is not None:
        scheduler.add_job(
            webhooks.tick, "interval", seconds=1, max_instances=1, coalesce=True,
            id="webhooks", name="act on Codat webhooks",
        )  # fmt: skip
    scheduler.start()
    return scheduler
