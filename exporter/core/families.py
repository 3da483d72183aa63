"""Every metric the exporter publishes: names, types, labels and HELP, in one place.

The collector renders from these specs, ``python -m exporter.reference`` writes the metrics
reference (docs/metrics.md) from them, and the dashboard and alert tests check their
queries against them, so a rename cannot leave a stale copy behind.

The exporter's own counters and histogram are kept by ``exporter.exposition.instruments``
from the specs declared here; the families of the snapshot's facts are
``exporter.exposition.facts``'.
"""

from __future__ import annotations

from dataclasses import dataclass

PAIR = ("company_id", "company_name", "data_type")
COMPANY = ("company_id", "company_name")
CONNECTION = (*COMPANY, "connection_id", "platform", "source_type", "status")


@dataclass(frozen=True)
class MetricSpec:
    name: str
    type: str
    labels: tuple[str, ...]
    help: str
    """May contain ``{interval}``, the configured poll interval (e.g. ``5m``)."""

    def help_text(self, interval: str) -> str:
        return self.help.format(interval=interval)

    def fixed_help(self) -> str:
        """The HELP of a family whose text no setting changes (the instruments'), its doubled
        braces undone; a KeyError for one that needs ``{interval}``.

        >>> PULL_OPERATION_ERRORS.fixed_help()[:70]
        'Failed reads of a pull operation (GET /companies/{companyId}/data/hist'
        """
        return self.help.format()


FROM_POLL = "From the company's last successful poll; polls run every {interval}."

LAST_SYNC_TIMESTAMP = MetricSpec(
    "codat_data_type_last_successful_sync_timestamp_seconds", "gauge", PAIR,
    "Unix time of the data type's lastSuccessfulSync in Codat; absent until it has synced "
    "once. " + FROM_POLL,
)  # fmt: skip
LAST_SYNC_AGE = MetricSpec(
    "codat_data_type_last_successful_sync_age_seconds", "gauge", PAIR,
    "Seconds since the data type's lastSuccessfulSync, computed at scrape time. " + FROM_POLL,
)  # fmt: skip
STATUS = MetricSpec(
    "codat_data_type_status", "gauge", (*PAIR, "status"),
    "1 for the data type's currentStatus in Codat (NeverSynced: never synced; Unknown: "
    "not a valid status). " + FROM_POLL,
)  # fmt: skip
MAX_AGE = MetricSpec(
    "codat_data_type_max_age_seconds", "gauge", PAIR,
    "Staleness threshold of the pair from the configuration: the data is stale while "
    "codat_data_type_last_successful_sync_age_seconds is above it.",
)  # fmt: skip
PAUSED_UNTIL = MetricSpec(
    "codat_data_type_sync_paused_until_timestamp_seconds", "gauge", PAIR,
    "Unix time until which Codat paused the data type's syncs (its latest pull operation's "
    'statusDescription "Paused until ..."); present only while paused. ' + FROM_POLL,
)  # fmt: skip
LATEST_SYNC_REQUESTED = MetricSpec(
    "codat_data_type_latest_sync_requested_timestamp_seconds", "gauge", PAIR,
    "Unix time the data type's latest sync was requested, present while that sync is queued "
    "or in progress (Initial .. Validating), so that a stuck sync shows. From its pull "
    "operation, read once per new sync. " + FROM_POLL,
)  # fmt: skip
STALE_COMPANIES = MetricSpec(
    "codat_data_type_stale_companies", "gauge", ("data_type",),
    "Companies whose data type is stale (last successful sync older than its max age), "
    "computed at scrape time, so it moves between polls. Exact without any per-pair series. "
    + FROM_POLL,
)  # fmt: skip
SYNC_AGE = MetricSpec(
    "codat_data_type_sync_age_seconds", "histogram", ("data_type",),
    "The fleet's ages of the data type's last successful sync (seconds, buckets from an hour "
    "to a week), computed at scrape time; never-synced pairs are not in it. " + FROM_POLL,
)  # fmt: skip
COMPANIES_BY_STATUS = MetricSpec(
    "codat_data_type_companies", "gauge", ("data_type", "status"),
    "Monitored companies whose data type is in each currentStatus, zeros included. "
    "From each company's last successful poll; polls run every {interval}.",
)  # fmt: skip
COMPANY_UP = MetricSpec(
    "codat_exporter_company_up", "gauge", COMPANY,
    "1 if the last poll of the company succeeded, 0 if it failed (its last good data-type "
    "values stay exported). Polls run every {interval}.",
)  # fmt: skip
COMPANY_NOT_FOUND = MetricSpec(
    "codat_exporter_company_not_found", "gauge", COMPANY,
    "1 while Codat answers 404 for a company listed in companies.ids (its "
    "codat_exporter_company_up is 0): a typo, or a company deleted in Codat. Absent for every "
    "other company. Polls run every {interval}.",
)  # fmt: skip
COMPANY_LAST_SUCCESS = MetricSpec(
    "codat_exporter_company_last_poll_success_timestamp_seconds", "gauge", COMPANY,
    "Unix time of the company's last successful poll: the age of its codat_data_type_* "
    "values. Polls run every {interval}.",
)  # fmt: skip
COMPANY_CREATED = MetricSpec(
    "codat_company_created_timestamp_seconds", "gauge", COMPANY,
    "Unix time the company was created in Codat (Company.created); read with its name, from "
    "discovery or hourly from GET /companies/{{companyId}}; absent until read.",
)  # fmt: skip
COMPANIES = MetricSpec(
    "codat_exporter_companies", "gauge", (),
    "Companies monitored in the last poll cycle. Polls run every {interval}.",
)  # fmt: skip
POLL_DURATION = MetricSpec(
    "codat_exporter_poll_duration_seconds", "gauge", (),
    "Seconds the last full poll cycle took. Polls run every {interval}.",
)  # fmt: skip
LAST_POLL = MetricSpec(
    "codat_exporter_last_poll_timestamp_seconds", "gauge", (),
    "Unix time the last full poll cycle ended. Polls run every {interval}.",
)  # fmt: skip
API_REQUESTS = MetricSpec(
    "codat_exporter_api_requests_total", "counter", ("endpoint", "code"),
    "Requests to the Codat API by route template and HTTP status (error: no response), "
    "retries included. Updated as requests complete.",
)  # fmt: skip
API_DURATION = MetricSpec(
    "codat_exporter_api_request_duration_seconds", "histogram", ("endpoint",),
    "Duration of requests to the Codat API by route template, body read included. "
    "Updated as requests complete.",
)  # fmt: skip
CYCLE_PROGRESS = MetricSpec(
    "codat_exporter_cycle_progress_ratio", "gauge", (),
    "Share of this shard's companies the running poll cycle has polled (1 between cycles). "
    "Updated as polls complete.",
)  # fmt: skip
STATE_FILE_ERRORS = MetricSpec(
    "codat_exporter_state_file_errors_total", "counter", (),
    "Failed writes of the state file (state.file); the exporter goes on without it. Updated "
    "after each cycle.",
)  # fmt: skip
REFRESHES = MetricSpec(
    "codat_exporter_refreshes_total", "counter", ("data_type", "result"),
    "Syncs the exporter queued for failing pairs (refresh.enabled), by data type and result: "
    "queued, dry_run, already_in_progress, capped, rejected, error, journal_error (not sent: "
    "the refresh journal beside the state file could not be written). Updated as it happens.",
)  # fmt: skip
SYNC_DURATION = MetricSpec(
    "codat_data_type_sync_duration_seconds", "histogram", ("data_type",),
    "Seconds from requested to completed of each successful sync seen, read from its pull "
    "operation when latestSuccessfulSyncId changes (diagnostics.sync_durations). Updated as "
    "new syncs are seen.",
)  # fmt: skip
PULL_OPERATION_ERRORS = MetricSpec(
    "codat_exporter_pull_operation_errors_total", "counter", ("reason",),
    "Failed reads of a pull operation (GET /companies/{{companyId}}/data/history/{{datasetId}})"
    " by reason, as for codat_exporter_poll_errors_total; they never fail the company's poll. "
    "Updated as reads complete.",
)  # fmt: skip
POLL_ERRORS = MetricSpec(
    "codat_exporter_poll_errors_total", "counter", ("reason",),
    "Failed company polls by reason (api_key_rejected, not_found, http_error, "
    "malformed_response, timeout, connection_error, rate_limited, internal_error). "
    "Updated as polls complete.",
)  # fmt: skip
CONNECTION_STATUS = MetricSpec(
    "codat_connection_status", "gauge", CONNECTION,
    "1 for the connection's current status (PendingAuth, Linked, Unlinked, Deauthorized). "
    "Refreshed every connections.interval.",
)  # fmt: skip
CONNECTIONS = MetricSpec(
    "codat_connections", "gauge", ("platform", "status"),
    "Connections of monitored companies in each status, zeros included for the four "
    "statuses of every platform seen. Refreshed every connections.interval.",
)  # fmt: skip
PLATFORM_FAILING = MetricSpec(
    "codat_platform_failing_companies", "gauge", ("platform",),
    "Companies with a data type whose latest sync, run through a connection on the platform "
    "(its pull operation's connectionId), ended in an error a new sync may fix (FetchError, "
    "MapError, ValidationError, ProcessingError, InternalError, RateLimitError): many at "
    "once is the platform's outage or maintenance. 0 for every other platform of a "
    "connection. " + FROM_POLL,
)  # fmt: skip
QUOTA_LIMIT = MetricSpec(
    "codat_api_quota_limit", "gauge", (),
    "Codat's daily request quota for this client (X-Rate-Limit-Limit of the latest response).",
)  # fmt: skip
QUOTA_REMAINING = MetricSpec(
    "codat_api_quota_remaining", "gauge", (),
    "Requests left in Codat's daily quota (X-Rate-Limit-Remaining of the latest response).",
)  # fmt: skip
QUOTA_RESET = MetricSpec(
    "codat_api_quota_reset_timestamp_seconds", "gauge", (),
    "Unix time the daily quota resets (X-Rate-Limit-Reset of the latest response).",
)  # fmt: skip
RATE_LIMITED = MetricSpec(
    "codat_exporter_rate_limited_total", "counter", (),
    "429 answers from Codat; each pauses the whole client until its Retry-After.",
)  # fmt: skip
REQUESTS_DEFERRED = MetricSpec(
    "codat_exporter_requests_deferred_total", "counter", ("endpoint",),
    "Requests of lower priority (pull operations, connections, sync settings, integrations, "
    "names already known) left for a later poll because the client-side rate limit "
    "(codat.max_requests_per_minute) left no turn for them before the cycle's dataStatus "
    "requests, by route template; growing means the limit binds. Updated as it happens.",
)  # fmt: skip
ESTIMATED_DAILY = MetricSpec(
    "codat_exporter_estimated_daily_requests", "gauge", (),
    "Requests a day the whole fleet's configuration needs (all shards), estimated at start "
    "and after each discovery; compare with codat_api_quota_limit.",
)  # fmt: skip
DISCOVERY_FAILURES = MetricSpec(
    "codat_exporter_discovery_failures_total", "counter", (),
    "Company discoveries (GET /companies) that failed; the last known list is kept.",
)  # fmt: skip
LAST_DISCOVERY = MetricSpec(
    "codat_exporter_last_discovery_success_timestamp_seconds", "gauge", (),
    "Unix time of the last successful company discovery.",
)  # fmt: skip
SHARD_INFO = MetricSpec(
    "codat_exporter_shard_info", "gauge", ("shard", "shards"),
    "Always 1; which shard of how many this replica is (companies split by company id).",
)  # fmt: skip
WEBHOOKS = MetricSpec(
    "codat_exporter_webhooks_total", "counter", ("event_type", "result"),
    "Webhook deliveries from Codat by event type (other: unknown or unverified) and result "
    "(ok, missing_headers, bad_timestamp, stale, bad_signature, replayed, too_large, "
    "invalid_payload).",
)  # fmt: skip
HTTP_REJECTED = MetricSpec(
    "codat_exporter_http_requests_rejected_total", "counter", (),
    "Requests to the exporter's HTTP listeners answered 503 because --web.max-requests "
    "responses were already being served.",
)  # fmt: skip
BUILD_INFO = MetricSpec(
    "codat_exporter_build_info", "gauge", ("version",),
    "Always 1; the version label is the exporter's version.",
)  # fmt: skip

SNAPSHOT_METRICS = (
    LAST_SYNC_TIMESTAMP, STATUS, MAX_AGE, PAUSED_UNTIL, LATEST_SYNC_REQUESTED,
    COMPANIES_BY_STATUS, CONNECTION_STATUS, CONNECTIONS, PLATFORM_FAILING, COMPANY_UP,
    COMPANY_NOT_FOUND, COMPANY_LAST_SUCCESS, COMPANY_CREATED, COMPANIES, POLL_DURATION,
    LAST_POLL,
)  # fmt: skip
"""Rendered once per poll from the snapshot."""

SCRAPE_METRICS = (LAST_SYNC_AGE, STALE_COMPANIES, SYNC_AGE)
"""Rendered on every scrape: they change every second."""

PER_PAIR_METRICS = (
    LAST_SYNC_TIMESTAMP, LAST_SYNC_AGE, STATUS, MAX_AGE, PAUSED_UNTIL, LATEST_SYNC_REQUESTED,
)  # fmt: skip
PER_PAIR = frozenset(spec.name for spec in PER_PAIR_METRICS)
"""Families with a series per company x data type: the bulk of the series bill, which
``metrics.denylist`` can cut (the fleet preset)."""

FLEET_PRESET_DENYLIST = tuple(
    spec.name
    for spec in (*PER_PAIR_METRICS, COMPANY_LAST_SUCCESS, COMPANY_CREATED, CONNECTION_STATUS)
)
"""The fleet preset's ``metrics.denylist``, the one declaration of it (config.example.yaml
shows it, a test holds the two equal): every per-pair family, and every per-company one but
``codat_exporter_company_up``, which ``CodatExporterCompanyPollFailing`` needs to name the
company, and ``codat_exporter_company_not_found`` (``CodatExporterCompanyNotFound``), whose
only series are the listed companies Codat does not know. At 10,000 companies x 25 data
types that leaves about 11,800 series of the default's million (docs/metrics.md, "The
series bill and the fleet preset"); the preset's rules and Fleet dashboard read none of these
families."""

REGISTRY_METRICS = (
    API_REQUESTS, API_DURATION, SYNC_DURATION, POLL_ERRORS, PULL_OPERATION_ERRORS,
    RATE_LIMITED, REQUESTS_DEFERRED, QUOTA_LIMIT, QUOTA_REMAINING, QUOTA_RESET, ESTIMATED_DAILY,
    DISCOVERY_FAILURES, LAST_DISCOVERY, SHARD_INFO, WEBHOOKS, HTTP_REJECTED, CYCLE_PROGRESS,
    STATE_FILE_ERRORS, REFRESHES, BUILD_INFO,
)  # fmt: skip
"""The exporter's own, updated as things happen: kept by prometheus_client in its private
registry, but for the quota, discovery and estimate families, rendered from the snapshot's
facts (``exporter.exposition.facts``)."""

ALL_METRICS = (*SNAPSHOT_METRICS, *SCRAPE_METRICS, *REGISTRY_METRICS)

POLL_ERROR_REASONS = (
    "api_key_rejected", "not_found", "http_error", "malformed_response", "timeout",
    "connection_error", "rate_limited", "internal_error",
)  # fmt: skip
"""Every ``reason`` value, exported at 0 from the start so that rate() sees the first error."""

AGE_BUCKETS = tuple(3600.0 * h for h in (1, 2, 4, 6, 12, 24, 26, 36, 48, 72, 96, 168))
"""Hours to a week: thresholds are typically 6 h to 2 days."""
REQUEST_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SYNC_BUCKETS = (60.0, 300.0, 900.0, 1800.0, 3600.0, 2 * 3600.0, 4 * 3600.0, 8 * 3600.0,
                12 * 3600.0, 86400.0)  # fmt: skip
"""A minute to a day: Codat's syncs take from seconds to hours (a first sync of years of
history)."""
