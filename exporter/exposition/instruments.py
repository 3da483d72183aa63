"""The exporter's own instrumentation: counters, histograms and gauges of what it does
(requests to Codat, poll errors, webhooks, refreshes), in a private registry.

Their label sets are small and fixed, so prometheus_client's classes suit them; the
families rendered from the snapshot are ``exporter.exposition.render``'s, and those of the
snapshot's facts (the quota, discovery, the estimate) ``exporter.exposition.facts``'. Names,
types and HELP come from ``exporter.core.families``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.process_collector import ProcessCollector

from exporter import __version__
from exporter.core.contract import COMPANY, CONNECTIONS, PULL_OPERATION, SYNC_SETTINGS
from exporter.core.families import (
    API_DURATION,
    API_REQUESTS,
    BUILD_INFO,
    CYCLE_PROGRESS,
    HTTP_REJECTED,
    POLL_ERROR_REASONS,
    POLL_ERRORS,
    PULL_OPERATION_ERRORS,
    RATE_LIMITED,
    REFRESHES,
    REQUEST_BUCKETS,
    REQUESTS_DEFERRED,
    SHARD_INFO,
    STATE_FILE_ERRORS,
    SYNC_BUCKETS,
    SYNC_DURATION,
    WEBHOOKS,
    MetricSpec,
)
from exporter.core.integrations import INTEGRATION

DEFERRABLE = (PULL_OPERATION, CONNECTIONS, SYNC_SETTINGS, COMPANY, INTEGRATION)
"""The routes of the requests the rate limit may defer (``exporter.codat.ratelimit.REST``)."""


def _base(spec: MetricSpec) -> str:
    return spec.name.removesuffix("_total")


class ExporterMetrics:
    """The exporter's own instrumentation, in a registry of its own (no global state)."""

    def __init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created series only double the counters' series count
        self.registry = CollectorRegistry(auto_describe=True)
        self.api_requests = Counter(
            _base(API_REQUESTS),
            API_REQUESTS.fixed_help(),
            API_REQUESTS.labels,
            registry=self.registry,
        )
        self.api_duration = Histogram(
            API_DURATION.name,
            API_DURATION.fixed_help(),
            API_DURATION.labels,
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.poll_errors = Counter(
            _base(POLL_ERRORS), POLL_ERRORS.fixed_help(), POLL_ERRORS.labels, registry=self.registry
        )
        for reason in POLL_ERROR_REASONS:
            self.poll_errors.labels(reason)
        self.pull_operation_errors = Counter(
            _base(PULL_OPERATION_ERRORS),
            PULL_OPERATION_ERRORS.fixed_help(),
            PULL_OPERATION_ERRORS.labels,
            registry=self.registry,
        )
        for reason in POLL_ERROR_REASONS:
            self.pull_operation_errors.labels(reason)
        self.sync_duration = Histogram(
            SYNC_DURATION.name,
            SYNC_DURATION.fixed_help(),
            SYNC_DURATION.labels,
            buckets=SYNC_BUCKETS,
            registry=self.registry,
        )
        self.rate_limited = Counter(
            _base(RATE_LIMITED), RATE_LIMITED.fixed_help(), registry=self.registry
        )
        self.requests_deferred = Counter(
            _base(REQUESTS_DEFERRED), REQUESTS_DEFERRED.fixed_help(), REQUESTS_DEFERRED.labels,
            registry=self.registry,
        )  # fmt: skip
        for route in DEFERRABLE:
            self.requests_deferred.labels(route)
        self.cycle_progress = Gauge(
            CYCLE_PROGRESS.name, CYCLE_PROGRESS.fixed_help(), registry=self.registry
        )
        self.refreshes = Counter(
            _base(REFRESHES), REFRESHES.fixed_help(), REFRESHES.labels, registry=self.registry
        )
        self.state_file_errors = Counter(
            _base(STATE_FILE_ERRORS), STATE_FILE_ERRORS.fixed_help(), registry=self.registry
        )
        self.shard_info = self._gauge(SHARD_INFO)
        self.webhooks = Counter(
            _base(WEBHOOKS), WEBHOOKS.fixed_help(), WEBHOOKS.labels, registry=self.registry
        )
        self.http_rejected = Counter(
            _base(HTTP_REJECTED), HTTP_REJECTED.fixed_help(), registry=self.registry
        )
        self._gauge(BUILD_INFO).labels(__version__).set(1)
        ProcessCollector(registry=self.registry)

    def _gauge(self, spec: MetricSpec) -> Gauge:
        return Gauge(spec.name, spec.fixed_help(), spec.labels, registry=self.registry)

    def request_done(self, endpoint: str, code: str, seconds: float) -> None:
        self.api_requests.labels(endpoint, code).inc()
        self.api_duration.labels(endpoint).observe(seconds)
