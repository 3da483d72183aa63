"""The poll loop: every ``poll.interval``, fetch each company's data status and publish a
new snapshot.

Companies are polled concurrently (``codat.max_concurrency`` workers). One company's failure
never touches another: a failed company keeps its last good data types, with
``codat_exporter_company_up`` 0, until a poll succeeds again. A 404 means the company no
longer exists in Codat; it leaves the next snapshot.

Failures are logged once per episode (when a company starts failing or fails differently),
not once per cycle, and 401/403 is logged once per cycle for the whole fleet.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler

from exporter.client import ApiKeyRejected, CodatClient, CodatError, NotFound
from exporter.clock import Clock
from exporter.codat import ShapeError, parse_company_name, parse_data_statuses
from exporter.collector import Exposition
from exporter.config import Config
from exporter.metrics import ExporterMetrics
from exporter.state import CompanyState, DataTypeStatus, Snapshot, SnapshotStore

log = logging.getLogger(__name__)

NAME_REFRESH_SECONDS = 3600.0


@dataclass(frozen=True)
class Outcome:
    company_id: str
    data_types: tuple[DataTypeStatus, ...] | None = None
    """None when the poll failed."""
    error: str = ""
    reason: str = ""
    gone: bool = False
    skipped: bool = False


@dataclass(frozen=True)
class CycleResult:
    succeeded: int
    failed: int
    gone: int

    @property
    def all_succeeded(self) -> bool:
        return self.failed == 0 and self.gone == 0


class Poller:
    def __init__(
        self,
        config: Config,
        client: CodatClient,
        store: SnapshotStore,
        metrics: ExporterMetrics,
        clock: Clock,
    ) -> None:
        self._config = config
        self._client = client
        self._store = store
        self._metrics = metrics
        self._clock = clock
        self._executor = ThreadPoolExecutor(
            max_workers=config.codat.max_concurrency, thread_name_prefix="poll"
        )
        self._stopping = threading.Event()
        self._cycle_lock = threading.Lock()
        self._names: dict[str, tuple[str, float]] = {}
        self._failing: dict[str, str] = {}

    def stop(self) -> None:
        """Skip what is still queued; requests in flight end within their timeout."""
        self._stopping.set()
        self._executor.shutdown(wait=True, cancel_futures=True)

    def run_cycle(self) -> CycleResult:
        """Poll every company once and publish the new snapshot."""
        with self._cycle_lock:
            started = self._clock.monotonic()
            deadline = started + self._config.poll.interval
            futures = [
                self._executor.submit(self._poll_company, company_id, deadline)
                for company_id in self._config.companies.ids
            ]
            outcomes = [future.result() for future in futures]
            if self._stopping.is_set():
                return CycleResult(0, 0, 0)
            self._log_cycle(outcomes)
            previous = self._store.current.snapshot
            now = self._clock.time()
            companies: dict[str, CompanyState] = {}
            for outcome in outcomes:
                if outcome.gone:
                    continue
                companies[outcome.company_id] = self._company_state(
                    outcome, previous.companies.get(outcome.company_id), now
                )
            snapshot = Snapshot(
                companies=companies,
                monitored=len(companies),
                poll_duration=self._clock.monotonic() - started,
                last_poll=self._clock.time(),
            )
            self._store.publish(
                Exposition(snapshot, self._config.freshness, self._config.poll.interval)
            )
            gone = sum(1 for o in outcomes if o.gone)
            failed = sum(1 for o in outcomes if o.data_types is None and not o.gone)
            return CycleResult(len(outcomes) - failed - gone, failed, gone)

    def _company_state(
        self, outcome: Outcome, previous: CompanyState | None, now: float
    ) -> CompanyState:
        name = self._names.get(outcome.company_id, ("", 0.0))[0]
        if outcome.data_types is not None:
            return CompanyState(outcome.company_id, name, True, now, outcome.data_types)
        if previous is None:
            return CompanyState(outcome.company_id, name, False, None, ())
        return CompanyState(
            outcome.company_id, name, False, previous.last_poll_success, previous.data_types
        )

    def _poll_company(self, company_id: str, deadline: float) -> Outcome:
        if self._stopping.is_set():
            return Outcome(company_id, skipped=True)
        self._refresh_name(company_id, deadline)
        try:
            body = self._client.data_status(company_id, deadline)
            data_types = parse_data_statuses(body, self._config.data_types.selects)
        except NotFound as exc:
            return Outcome(company_id, error=str(exc), reason=exc.reason, gone=True)
        except CodatError as exc:
            return Outcome(company_id, error=str(exc), reason=exc.reason)
        except ShapeError as exc:
            return Outcome(company_id, error=f"GET dataStatus: {exc}", reason="malformed_response")
        except Exception as exc:  # a bug must not take the other companies down
            log.exception("unexpected error polling company %s", company_id)
            return Outcome(company_id, error=type(exc).__name__, reason="internal_error")
        return Outcome(company_id, data_types=data_types)

    def _refresh_name(self, company_id: str, deadline: float) -> None:
        known = self._names.get(company_id)
        if known is not None and self._clock.monotonic() - known[1] < NAME_REFRESH_SECONDS:
            return
        try:
            name = parse_company_name(self._client.company(company_id, deadline))
        except (CodatError, ShapeError) as exc:
            log.debug("company %s: name not refreshed: %s", company_id, exc)
            return
        self._names[company_id] = (name, self._clock.monotonic())

    def _log_cycle(self, outcomes: list[Outcome]) -> None:
        rejected = [o for o in outcomes if o.reason == ApiKeyRejected.reason]
        if rejected:
            log.error(
                "Codat rejected the API key for %d of %d companies (%s); check codat.api_key",
                len(rejected), len(outcomes), rejected[0].error,
            )  # fmt: skip
        for outcome in outcomes:
            company_id = outcome.company_id
            if outcome.reason:
                self._metrics.poll_errors.labels(outcome.reason).inc()
            if outcome.gone:
                log.warning("company %s no longer exists in Codat (404); dropped from /metrics",
                            company_id)  # fmt: skip
                self._failing.pop(company_id, None)
                self._names.pop(company_id, None)
            elif outcome.data_types is None:
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


def start_scheduler(poller: Poller, interval: float) -> BackgroundScheduler:
    """Run ``poller.run_cycle`` now and then every ``interval``; a slow cycle never overlaps
    the next (one instance at most; missed runs coalesce into one)."""
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
    scheduler.start()
    return scheduler
