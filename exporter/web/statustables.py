"""The status page's tables (``exporter.web.statuspage`` puts them on the page), and how the
page writes a value: escaped (``e``), a duration (``span``), a time (``when``).

Three tables: the matching pairs, at most ``ROW_LIMIT`` of them (the JSON API returns all);
above them, when the filters choose companies (``company``, ``connection``, ``platform``),
"Connections to relink" lists those with a connection of the asked status (Deauthorized
when none is asked), each with all its connections, whatever its pairs' states
(unfiltered, one line counts the companies with a Deauthorized connection and links to that
list); below them, the companies whose latest poll failed. Every value from Codat or the
configuration goes through ``e``, so a company named ``<script>`` stays text.

A row of the pairs reads::

    Acme Ltd  8a21..  invoices  AuthError stale  2026-11-23 10:00 UTC (3 h ago)
    3 h 0 min / 2 h 0 min (1.5x)  "Token expired"  Xero: Deauthorized  poll ok
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape

from exporter.core.contract import NEVER_SYNCED
from exporter.core.snapshot import CompanyState
from exporter.exposition import assess
from exporter.exposition.assess import PairState
from exporter.web.filters import DEAUTHORIZED, Filters, connections_for
from exporter.web.status import FleetStatus, poll_error_text
from exporter.web.statusapi import STATUS_API_PATH

ROW_LIMIT = 1000
"""Rows rendered at most: 1,000 rows is a page a browser shows at once; more is a filter's
job (or the JSON API's)."""

LABELS = {
    assess.AUTH_ERROR: "AuthError",
    assess.FAILING: "failing",
    assess.STALE: "stale",
    assess.STUCK: "stuck",
    NEVER_SYNCED: "never synced",
    assess.PAUSED: "paused",
    assess.IN_PROGRESS: "in progress",
    assess.HEALTHY: "healthy",
}
"""How the page names each state: in the badges, the counts and the form's options."""


def e(value: object) -> str:
    """Escaped for HTML text and for a double-quoted attribute."""
    return escape(str(value), quote=True)


def span(seconds: float) -> str:
    """A duration as people read it.

    >>> span(42), span(720), span(3 * 3600 + 600), span(7200), span(2 * 86400 + 4 * 3600)
    ('42 s', '12 min', '3 h 10 min', '2 h', '2 d 4 h')
    """
    seconds = abs(seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days:,} d {hours} h" if hours else f"{days:,} d"


_CONNECTION_BADGES = {
    "Deauthorized": assess.AUTH_ERROR,
    "Unlinked": assess.FAILING,
    "PendingAuth": assess.STALE,
    "Linked": assess.HEALTHY,
}
"""A connection status's badge, in the colour of the pair state it compares with."""


def when(moment: float, now: float) -> str:
    """``2026-11-23 10:00 UTC (3 h ago)``, or ``(in 2 h)`` for a time ahead."""
    absolute = datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M UTC")
    relative = f"in {span(moment - now)}" if moment > now else f"{span(now - moment)} ago"
    return f"{absolute} ({relative})"


def _latest_sync(state: PairState, now: float) -> str:
    sync = state.sync
    refresh = state.company.refreshes.get(state.item.data_type)
    parts = []
    if refresh is not None:
        parts.append(
            e(f"refresh queued {when(refresh.queued_at, now)}, attempt {refresh.attempts}")
        )
    if sync is None:
        return "<br>".join(parts)
    if sync.error_message:
        parts.append(f'<span class="msg">{e(sync.error_message)}</span>')
    if state.status_description:
        parts.append(e(state.status_description))
    if state.paused_until is not None:
        parts.append(e(f"paused until {when(state.paused_until, now)}"))
    if state.pair.in_progress and sync.requested is not None:
        progress = f", {sync.progress} %" if sync.progress is not None else ""
        parts.append(e(f"requested {when(sync.requested, now)}{progress}"))
    return "<br>".join(parts)


_NONE_READ = '<span class="muted">none read</span>'


def _row(state: PairState, now: float) -> str:
    company, item = state.company, state.item
    worst = state.states[0]
    badges = "".join(
        f'<span class="badge {e(name)}">{e(LABELS[name])}</span>' for name in state.states
    )
    synced = (
        e(when(item.last_successful_sync, now))
        if item.last_successful_sync is not None
        else '<span class="muted">never</span>'
    )
    if state.age is None:
        ages = f"- / {e(span(state.max_age))}"
    else:
        ratio = f" ({state.age / state.max_age:.1f}\u00d7)" if state.max_age > 0 else ""
        ages = e(f"{span(state.age)} / {span(state.max_age)}{ratio}")
    connections = "<br>".join(
        e(f"{c.platform}: {c.status}") for c in connections_for(company, item.data_type)
    )
    if company.up:
        poll = "ok"
    else:
        last = company.last_poll_success
        poll = "not found in Codat (404)" if company.not_found else "failing"
        poll += f"; last ok {when(last, now)}" if last is not None else ""
    return (
        f'<tr class="{e(worst)}" data-company-id="{e(company.company_id)}" '
        f'data-data-type="{e(item.data_type)}" data-status="{e(item.status)}" '
        f'data-states="{e(" ".join(state.states))}">'
        f"<td>{e(company.name)}<br><small>{e(company.company_id)}"
        f"</small></td><td>{e(item.data_type)}</td>"
        f"<td>{e(item.status)}<br>{badges}</td><td>{synced}</td>"
        f'<td class="num">{ages}</td><td>{_latest_sync(state, now)}</td>'
        f"<td>{connections or _NONE_READ}</td>"
        f"<td>{e(poll)}</td></tr>"
    )


def pairs_table(status: FleetStatus) -> str:
    rows, filters = status.rows, status.filters
    what = (
        "matching pairs"
        if filters.statuses
        else ("pairs" if filters.all else "pairs that need attention")
    )
    shown = min(len(rows), ROW_LIMIT)
    caption = f"Showing {shown:,} of {len(rows):,} {what}"
    if len(rows) > ROW_LIMIT:
        caption += (
            f"; narrow with the filters, or read all {len(rows):,} from "
            f"{STATUS_API_PATH}{filters.query()}"
        )
    caption += ". "
    if not filters.all and not filters.statuses and status.counts.healthy:
        caption += f'{status.counts.healthy:,} healthy pairs not listed: tick "healthy pairs too". '
    caption += "Highest age / max age first; never-synced pairs last."
    head = "".join(
        f"<th>{name}</th>"
        for name in ("Company", "Data type", "Status", "Last successful sync",
                     "Age / max age", "Latest sync", "Connection", "Poll")
    )  # fmt: skip
    body = "".join(_row(state, status.generated_at) for state in rows[:ROW_LIMIT])
    return (
        f'<table id="pairs"><caption>{e(caption)}</caption><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>"
    )


def _connection(status: str) -> str:
    return f'<span class="badge {e(_CONNECTION_BADGES.get(status, ""))}">{e(status)}</span>'


def _relink_row(company: CompanyState) -> str:
    link = "/" + Filters(companies=(company.company_id,)).query()
    connections = "<br>".join(
        f"{_connection(c.status)} {e(c.platform or '?')} ({e(c.source_type or '?')}) "
        f"<small>{e(c.connection_id)}</small>"
        for c in company.connections
    )
    return (
        f'<tr data-company-id="{e(company.company_id)}">'
        f'<td><a href="{e(link)}">{e(company.name)}</a><br><small>{e(company.company_id)}'
        f"</small></td><td>{connections}</td></tr>"
    )


def relink_section(status: FleetStatus) -> str:
    """The "Connections to relink" section when the filters choose companies; unfiltered,
    a line that counts the companies with a Deauthorized connection and links to them."""
    filters, listed = status.filters, status.relink
    if not filters.by_company:
        if not listed:
            return ""
        link = "/" + filters.query(connection=(DEAUTHORIZED,))
        return (
            f'<p class="relink"><a href="{e(link)}">{len(listed):,} '
            f"compan{'y has' if len(listed) == 1 else 'ies have'} a Deauthorized connection"
            "</a>: nothing syncs through a deauthorized connection until its company "
            "relinks it.</p>"
        )
    if not listed and not filters.connections:
        return ""
    statuses = " or ".join(filters.connections or (DEAUTHORIZED,))
    on = f" on {' or '.join(filters.platforms)}" if filters.platforms else ""
    shown = min(len(listed), ROW_LIMIT)
    caption = (
        f"Showing {shown:,} of {len(listed):,} companies with a connection {statuses}{on}, "
        "whatever their pairs' states, each with all its connections"
    )
    if len(listed) > ROW_LIMIT:
        caption += f"; read all from {STATUS_API_PATH}{filters.query()}"
    caption += "."
    relinking = set(filters.connections) <= {DEAUTHORIZED, "Unlinked"}
    heading = "Connections to relink" if relinking else f"Connections {statuses}"
    rows = "".join(_relink_row(company) for company in listed[:ROW_LIMIT])
    return (
        f"<h2>{e(heading)} ({len(listed):,})</h2>"
        f'<table id="connections"><caption>{e(caption)}</caption><thead><tr>'
        "<th>Company</th><th>Connections (status, platform, source type, id)</th></tr>"
        f"</thead><tbody>{rows}</tbody></table><h2>Pairs</h2>"
    )


def failed_polls_table(status: FleetStatus) -> str:
    down = [c for c in status.companies if not c.up]
    if not down:
        return ""
    now = status.generated_at
    rows = "".join(
        f'<tr data-company-id="{e(c.company_id)}"><td>{e(c.name)}<br><small>'
        f"{e(c.company_id)}</small></td><td>"
        + (e(when(c.last_poll_success, now)) if c.last_poll_success is not None else "never")
        + f"</td><td>{e(poll_error_text(c))}</td></tr>"
        for c in down[:ROW_LIMIT]
    )
    return (
        f"<h2>Companies whose latest poll failed ({len(down):,})</h2>"
        '<table id="polls"><thead><tr><th>Company</th><th>Last successful poll</th>'
        f"<th>Why</th></tr></thead><tbody>{rows}</tbody></table>"
    )
