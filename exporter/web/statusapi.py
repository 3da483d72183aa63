"""``GET /api/v1/status``: a ``FleetStatus`` (``exporter.web.status``) as JSON, for scripts:
every matching pair (no row limit) and every company the filters match. Times are RFC 3339
in UTC, ``null`` when unknown. The body starts (docs/status-page.md, "The JSON API", has it
whole)::

    {"generated_at":"2026-11-23T12:00:00Z","ready":true,"not_ready_reason":null,
     "summary":{"companies":3,"companies_up":3,"pairs":8,"stale":2,...},
     "filters":{"status":["failing"],"company":["c2"],...},
     "pairs":[{"company_id":"c2","company_name":"Bolt Inc","data_type":"invoices",...}],
     "companies":[{"company_id":"c2","company_name":"Bolt Inc","up":true,...}]}
"""

from __future__ import annotations

import json
from collections.abc import Container
from datetime import UTC, datetime
from typing import Any

from exporter.core.families import QUOTA_LIMIT, QUOTA_REMAINING, QUOTA_RESET
from exporter.core.snapshot import CompanyState, ConnectionState
from exporter.exposition.assess import PairState
from exporter.exposition.nextstep import GONE, connection_of, next_step
from exporter.web.filters import FilterError
from exporter.web.status import Answer, FleetStatus, poll_error_text

STATUS_API_PATH = "/api/v1/status"
JSON_TYPE = "application/json"
JSON_BATCH = 1000


def rfc3339(moment: float | None) -> str | None:
    """``2026-11-23T12:00:00Z``, with milliseconds when there are any.

    >>> rfc3339(1795435200.0), rfc3339(1795435200.25), rfc3339(None)
    ('2026-11-23T12:00:00Z', '2026-11-23T12:00:00.250Z', None)
    """
    if moment is None:
        return None
    spec = "seconds" if moment == int(moment) else "milliseconds"
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec=spec).replace("+00:00", "Z")


def pair_json(state: PairState, incidents: Container[str] = ()) -> dict[str, Any]:
    """``incidents``: the platforms in an incident (``FleetStatus.incidents``)."""
    item, sync = state.item, state.sync
    step = next_step(state, incidents)
    connection = connection_of(state)
    refresh = state.company.refreshes.get(item.data_type)
    return {
        "company_id": state.company.company_id,
        "company_name": state.company.name,
        "data_type": item.data_type,
        "status": item.status,
        "states": list(state.states),
        "last_successful_sync": rfc3339(item.last_successful_sync),
        "age_seconds": None if state.age is None else round(state.age, 3),
        "max_age_seconds": state.max_age,
        "stale": state.stale,
        "paused_until": rfc3339(state.paused_until),
        "latest_sync_requested": rfc3339(sync.requested if sync else None),
        "error_message": sync.error_message if sync else None,
        "status_description": state.status_description,
        "refresh_queued_at": rfc3339(refresh.queued_at if refresh else None),
        "refresh_attempts": refresh.attempts if refresh else 0,
        "refresh_due_at": rfc3339(refresh.due_at if refresh else None),
        "connection_status": connection.status if connection else None,
        "connection_platform": connection.platform if connection else None,
        "company_up": state.company.up,
        "next_step": step.code if step is not None else None,
    }


def head_json(status: FleetStatus) -> dict[str, Any]:
    """What the API's body says before its ``pairs`` and ``companies`` (docs/status-page.md,
    "The JSON API", has a sample)."""
    counts = status.counts
    discovery = status.discovery
    return {
        "generated_at": rfc3339(status.generated_at),
        "ready": status.ready,
        "not_ready_reason": status.not_ready_reason or None,
        "summary": {
            "companies": status.monitored,
            "companies_up": status.companies_up,
            "pairs": counts.pairs,
            "stale": counts.stale,
            "failing": counts.failing,
            "auth_error": counts.auth_error,
            "never_synced": counts.never_synced,
            "paused": counts.paused,
            "in_progress": counts.in_progress,
            "stuck": counts.stuck,
            "healthy": counts.healthy,
            "matching": len(status.rows),
            "last_cycle_end": rfc3339(status.last_cycle_end),
            "last_cycle_duration_seconds": status.last_cycle_duration,
            "quota_remaining": status.quota.get(QUOTA_REMAINING.name),
            "quota_limit": status.quota.get(QUOTA_LIMIT.name),
            "quota_reset": rfc3339(status.quota.get(QUOTA_RESET.name)),
            "discovery": {
                "used": discovery.used,
                "last_success": rfc3339(discovery.last_success),
                "failures": discovery.failures,
            },
            "platform_incidents": dict(status.incidents),
            "shard": (
                {"index": status.shard.index, "count": status.shard.count}
                if status.shard.count > 1
                else None
            ),
        },
        "filters": {
            "status": list(status.filters.statuses),
            "company": list(status.filters.companies),
            "data_type": list(status.filters.data_types),
            "connection": list(status.filters.connections),
            "platform": list(status.filters.platforms),
            "next_step": list(status.filters.next_steps),
            "all": status.filters.all,
        },
        "elsewhere": [{"company": needle, "shard": owner} for needle, owner in status.elsewhere],
    }


def company_json(company: CompanyState, links: bool = False) -> dict[str, Any]:
    """``links``: ``status_page.show_link_urls``."""
    return {
        "company_id": company.company_id,
        "company_name": company.name,
        "up": company.up,
        "poll_error": company.poll_error or None,
        "poll_error_message": poll_error_text(company),
        "last_poll_success": rfc3339(company.last_poll_success),
        "connections": [connection_json(c, links) for c in company.connections],
    }


def connection_json(connection: ConnectionState, links: bool = False) -> dict[str, Any]:
    """``link_url``: where the company relinks it, only with ``links`` and only for a
    connection nothing syncs through (Deauthorized, Unlinked, PendingAuth); else null."""
    shown = links and connection.status in GONE and connection.link_url
    return {
        "connection_id": connection.connection_id,
        "platform": connection.platform,
        "source_type": connection.source_type,
        "status": connection.status,
        "on_premise": connection.on_premise,
        "link_url": connection.link_url if shown else None,
    }


def json_body(status: FleetStatus) -> bytes:
    """The API's body, compact: ``head_json`` then ``pairs`` and ``companies``, encoded
    ``JSON_BATCH`` at a time, so that no more dicts than that are alive at once (250,000
    would cost GC passes and memory)."""
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    rows, companies = status.rows, status.companies
    incidents, links = status.incidents, status.page.show_link_urls
    pairs = ",".join(
        dumps([pair_json(state, incidents) for state in rows[start : start + JSON_BATCH]])[1:-1]
        for start in range(0, len(rows), JSON_BATCH)
    )
    listed = ",".join(
        dumps([company_json(c, links) for c in companies[start : start + JSON_BATCH]])[1:-1]
        for start in range(0, len(companies), JSON_BATCH)
    )
    head = dumps(head_json(status))
    return f'{head[:-1]},"pairs":[{pairs}],"companies":[{listed}]}}'.encode()


def answer(status: FleetStatus, error: FilterError | None = None) -> Answer:
    """``GET /api/v1/status``: 200 with ``json_body``, or 400 with ``{"error": ...}``."""
    headers = {"X-Content-Type-Options": "nosniff"}
    if error is not None:
        body = json.dumps({"error": str(error)})
        return Answer(400, body.encode(), JSON_TYPE, headers)
    return Answer(200, json_body(status), JSON_TYPE, headers)
