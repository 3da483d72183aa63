"""The exporter's own health: polling (cycle progress and the state file included),
requests to Codat (codes, latency, 429s, pull operation reads), the daily quota, discovery,
webhooks, sync refreshes and shards, and its process (memory, CPU, HTTP requests refused)."""

from __future__ import annotations

from typing import Any

from exporter.core.families import (
    API_DURATION,
    API_REQUESTS,
    BUILD_INFO,
    COMPANIES,
    COMPANY_LAST_SUCCESS,
    COMPANY_UP,
    CYCLE_PROGRESS,
    DISCOVERY_FAILURES,
    ESTIMATED_DAILY,
    HTTP_REJECTED,
    LAST_DISCOVERY,
    LAST_POLL,
    POLL_DURATION,
    POLL_ERRORS,
    PULL_OPERATION_ERRORS,
    QUOTA_LIMIT,
    QUOTA_REMAINING,
    QUOTA_RESET,
    RATE_LIMITED,
    REFRESHES,
    REQUESTS_DEFERRED,
    SHARD_INFO,
    STATE_FILE_ERRORS,
    WEBHOOKS,
)
from monitoring.dashboards.common import (
    EXPORTER_UID,
    JOB,
    company_link,
    job_variable,
)
from monitoring.panels import (
    Layout,
    by_name,
    dashboard,
    stat,
    table,
    target,
    thresholds,
    timeseries,
)


def build(selector: str) -> dict[str, Any]:
    requests = f"{API_REQUESTS.name}{{{JOB}}}"
    layout = Layout()
    layout.row("Now")
    for title, description, expr, options in (
        (
            "Targets up",
            "Scrape targets of the selected jobs that Prometheus reaches.",
            f"sum(up{{{JOB}}})",
            {"steps": thresholds((None, "red"), (1, "green"))},
        ),
        (
            "Version",
            "Exporter versions running.",
            f"count by (version) ({BUILD_INFO.name}{{{JOB}}})",
            {"legend": "{{version}}", "text_mode": "name"},
        ),
        ("Companies monitored", "In the last poll cycle.", f"sum({COMPANIES.name}{{{JOB}}})", {}),
        (
            "Companies polled OK",
            "Whose last poll succeeded.",
            f"sum({COMPANY_UP.name}{{{JOB}}})",
            {},
        ),
        (
            "Last cycle ended",
            "Time since the last poll cycle ended.",
            f"time() - max({LAST_POLL.name}{{{JOB}}})",
            {"unit": "dtdurations"},
        ),
        (
            "Last cycle took",
            "Duration of the last poll cycle.",
            f"max({POLL_DURATION.name}{{{JOB}}})",
            {"unit": "s"},
        ),
    ):
        layout.add(stat(title, description, expr, **options), 4, 4)

    layout.row("Polling")
    layout.add(
        timeseries(
            "Poll cycle duration",
            "Seconds each poll cycle took; it must stay below the poll interval.",
            [target(f"{POLL_DURATION.name}{{{JOB}}}", "{{instance}}")],
            unit="s",
        ),
        12,
        8,
    )
    layout.add(
        timeseries(
            "Companies up and down",
            "Companies whose last poll succeeded (up) or failed (down).",
            [
                target(f"sum by (instance) ({COMPANY_UP.name}{{{JOB}}})", "{{instance}} up"),
                target(
                    f"count by (instance) ({COMPANY_UP.name}{{{JOB}}} == 0)",
                    "{{instance}} down",
                    ref="B",
                ),
            ],
        ),
        12,
        8,
    )
    layout.add(
        timeseries(
            "Poll errors by reason",
            "Failed company polls, by reason.",
            [
                target(
                    f"sum by (reason) (increase({POLL_ERRORS.name}{{{JOB}}}[$__rate_interval]))",
                    "{{reason}}",
                )
            ],
        ),
        12,
        8,
    )
    layout.add(
        table(
            "Companies not polled",
            "Companies whose last poll failed, with the time since their last good one.",
            [
                target(f"{COMPANY_UP.name}{{{JOB}}} == 0", ref="A"),
                target(
                    f"time() - {COMPANY_LAST_SUCCESS.name}{{{JOB}}} and on (job, instance, "
                    f"company_id) {COMPANY_UP.name}{{{JOB}}} == 0",
                    ref="B",
                ),
            ],
            columns={"company_name": "Company", "Value #B": "Last successful poll"},
            overrides=[company_link(), by_name("Last successful poll", ("unit", "dtdurations"))],
        ),
        12,
        8,
    )
    layout.add(
        timeseries(
            "Cycle progress",
            "Share of each exporter's companies its running poll cycle has polled (1 between "
            "cycles): a first cycle after a start without a state file climbs from 0.",
            [target(f"{CYCLE_PROGRESS.name}{{{JOB}}}", "{{instance}}")],
            unit="percentunit",
        ),
        12,
        8,
    )
    layout.add(
        timeseries(
            "State file write errors",
            "Failed writes of the state file (state.file), written after each cycle: while "
            "they last, a restart would serve older values, or none until its first cycle "
            "ends. The log says why.",
            [
                target(
                    f"sum by (instance) (increase({STATE_FILE_ERRORS.name}{{{JOB}}}"
                    "[$__rate_interval]))",
                    "{{instance}}",
                )
            ],
            steps=thresholds((None, "green"), (1, "red")),
        ),
        12,
        8,
    )

    layout.row("Codat API")
    layout.add(
        timeseries(
            "API requests by endpoint and code",
            "Requests to Codat per second, by route and HTTP status (error: no response).",
            [
                target(
                    f"sum by (endpoint, code) (rate({requests}[$__rate_interval]))",
                    "{{endpoint}} {{code}}",
                )
            ],
            unit="reqps",
        ),
        12,
        8,
    )
    buckets = f"{API_DURATION.name}_bucket{{{JOB}}}"
    layout.add(
        timeseries(
            "API latency",
            "Request duration quantiles by route, body read included.",
            [
                target(
                    f"histogram_quantile({q}, sum by (le, endpoint) "
                    f"(rate({buckets}[$__rate_interval])))",
                    f"p{round(q * 100)} {{{{endpoint}}}}",
                    ref=ref,
                )
                for q, ref in ((0.5, "A"), (0.9, "B"), (0.99, "C"))
            ],
            unit="s",
        ),
        12,
        8,
    )
    layout.add(
        timeseries(
            "Rate-limited requests (429)",
            "Requests Codat refused with 429 Too Many Requests, the exporter's own pauses for "
            "codat.max_requests_per_minute, and the requests it left for a later poll so that "
            "every dataStatus came first (deferred), per second.",
            [
                target(
                    f'sum by (endpoint) (rate({API_REQUESTS.name}{{{JOB}, code="429"}}'
                    "[$__rate_interval]))",
                    "{{endpoint}}",
                ),
                target(
                    f"sum by (instance) (rate({RATE_LIMITED.name}{{{JOB}}}[$__rate_interval]))",
                    "pauses of {{instance}}",
                    ref="B",
                ),
                target(
                    f"sum by (endpoint) (rate({REQUESTS_DEFERRED.name}{{{JOB}}}"
                    "[$__rate_interval]))",
                    "deferred {{endpoint}}",
                    ref="C",
                ),
            ],
            unit="reqps",
        ),
        12,
        8,
    )
    layout.add(
        timeseries(
            "Rejected requests (401/403)",
            "Requests Codat refused as unauthorised: the API key is wrong or revoked.",
            [
                target(
                    f"sum by (endpoint, code) (rate({API_REQUESTS.name}{{{JOB}, "
                    'code=~"401|403"}[$__rate_interval]))',
                    "{{endpoint}} {{code}}",
                )
            ],
            unit="reqps",
        ),
        12,
        8,
    )

    layout.add(
        timeseries(
            "Pull operation read errors by reason",
            "Failed reads of pull operations (why a sync failed, paused or is queued) per "
            "second; they never fail a company's poll, but the diagnostics they carry are "
            "missing meanwhile.",
            [
                target(
                    f"sum by (reason) (rate({PULL_OPERATION_ERRORS.name}{{{JOB}}}"
                    "[$__rate_interval]))",
                    "{{reason}}",
                )
            ],
            unit="reqps",
        ),
        12,
        8,
    )

    layout.row("Quota, discovery, webhooks and shards")
    layout.add(
        timeseries(
            "Daily request quota",
            "Codat's daily quota and what is left of it (from its X-Rate-Limit headers), "
            "against the requests a day the configuration needs: keep the estimate below "
            "the limit.",
            [
                target(f"max by (instance) ({QUOTA_LIMIT.name}{{{JOB}}})", "limit", ref="A"),
                target(
                    f"min by (instance) ({QUOTA_REMAINING.name}{{{JOB}}})", "remaining", ref="B"
                ),
                target(
                    f"max by (instance) ({ESTIMATED_DAILY.name}{{{JOB}}})",
                    "estimated need",
                    ref="C",
                ),
            ],
        ),
        12,
        8,
    )
    for title, description, expr, unit in (
        (
            "Quota resets in",
            "Time until Codat's daily quota resets.",
            f"max({QUOTA_RESET.name}{{{JOB}}}) - time()",
            "dtdurations",
        ),
        (
            "Last discovery",
            "Time since the company list was last read from Codat.",
            f"time() - max({LAST_DISCOVERY.name}{{{JOB}}})",
            "dtdurations",
        ),
        (
            "Shards reporting",
            "Replicas of the selected jobs reporting their shard; compare with the shards "
            "label in the exposition.",
            f"count({SHARD_INFO.name}{{{JOB}}})",
            "short",
        ),
    ):
        layout.add(stat(title, description, expr, unit=unit), 4, 4)
    layout.add(
        timeseries(
            "Discovery failures",
            "Failed company discoveries (GET /companies) per second: the last known list "
            "is kept meanwhile.",
            [
                target(
                    f"sum by (instance) (rate({DISCOVERY_FAILURES.name}{{{JOB}}}"
                    "[$__rate_interval]))",
                    "{{instance}}",
                )
            ],
            unit="reqps",
        ),
        12,
        8,
    )
    layout.add(
        timeseries(
            "Webhooks by event type and result",
            "Webhook deliveries from Codat per second; any result but ok is refused.",
            [
                target(
                    f"sum by (event_type, result) (rate({WEBHOOKS.name}{{{JOB}}}"
                    "[$__rate_interval]))",
                    "{{event_type}} {{result}}",
                )
            ],
            unit="reqps",
        ),
        12,
        8,
    )
    layout.add(
        timeseries(
            "Sync refreshes by result",
            "Syncs the exporter queued for failing pairs (refresh.enabled; dry_run only logs "
            "them), per hour: a rise means transient failures, capped that the daily cap "
            "held some back.",
            [
                target(
                    f"sum by (result) (increase({REFRESHES.name}{{{JOB}}}[1h]))",
                    "{{result}}",
                )
            ],
        ),
        12,
        8,
    )

    layout.row("Process")
    layout.add(
        timeseries(
            "Memory",
            "Resident memory of the exporter process.",
            [target(f"process_resident_memory_bytes{{{JOB}}}", "{{instance}}")],
            unit="bytes",
        ),
        12,
        7,
    )
    layout.add(
        timeseries(
            "CPU",
            "CPU time the exporter process uses per second.",
            [target(f"rate(process_cpu_seconds_total{{{JOB}}}[$__rate_interval])", "{{instance}}")],
            unit="percentunit",
        ),
        12,
        7,
    )
    layout.add(
        timeseries(
            "HTTP requests refused",
            "Requests to the exporter answered 503 because --web.max-requests responses "
            "were already being served, per second: scrapes may fail.",
            [
                target(
                    f"sum by (instance) (rate({HTTP_REJECTED.name}{{{JOB}}}[$__rate_interval]))",
                    "{{instance}}",
                )
            ],
            unit="reqps",
        ),
        12,
        7,
    )
    return dashboard(
        EXPORTER_UID,
        "Codat freshness / Exporter health",
        "The exporter's polling, its requests to Codat and its process. Generated by "
        "monitoring/generate.py; edit the generator, not this JSON.",
        [job_variable(selector)],
        layout,
    )
