"""The status page at ``/``: a ``FleetStatus`` (``exporter.web.status``) as one HTML page that
reads without JavaScript, images, fonts or anything else from elsewhere.

A header counts the fleet's pairs by state (each count links to the pairs it counts), says
when the last cycle ended and how long it took, the quota left and how discovery goes. A
plain GET form filters; the table lists the matching pairs, at most ``ROW_LIMIT`` of them
(the JSON API returns all). Above it, when the filters choose companies (``company``,
``connection``, ``platform``), "Connections to relink" lists those with a connection of the
asked status (Deauthorized when none is asked), each with all its connections, whatever
its pairs' states; unfiltered, one line counts the companies with a Deauthorized connection
and links to that list. Every value from Codat or the configuration is escaped, and the
Content-Security-Policy forbids scripts, so a company named ``<script>`` stays text.

A row reads::

    Acme Ltd  8a21..  invoices  AuthError stale  2026-11-23 10:00 UTC (3 h ago)
    3 h 0 min / 2 h 0 min (1.5x)  "Token expired"  Xero: Deauthorized  poll ok
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from html import escape

from exporter import __version__
from exporter.core.contract import CONNECTION_STATUSES, KNOWN_STATUSES, NEVER_SYNCED
from exporter.core.families import QUOTA_LIMIT, QUOTA_REMAINING, QUOTA_RESET
from exporter.core.snapshot import CompanyState
from exporter.exposition import assess
from exporter.exposition.assess import PairState
from exporter.web.status import (
    DEAUTHORIZED,
    STATES,
    STATUS_API_PATH,
    Answer,
    FilterError,
    Filters,
    FleetStatus,
    connections_for,
    poll_error_text,
)

ROW_LIMIT = 1000
"""Rows rendered at most: 1,000 rows is a page a browser shows at once; more is a filter's
job (or the JSON API's)."""

HTML_TYPE = "text/html; charset=utf-8"

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1b1f24;background:#f6f7f9}
header,main,footer{padding:12px 20px}
header{background:#fff;border-bottom:1px solid #d0d4da}
h1{font-size:20px;margin:0 0 4px}
h2{font-size:16px;margin:16px 0 6px}
nav a{margin-right:14px}
.notready,.relink{background:#fde2e1;border:1px solid #d93025;padding:6px 10px;margin:8px 0}
.error{background:#fff4ce;border:1px solid #b58900;padding:6px 10px;margin:8px 0}
.counts{display:flex;flex-wrap:wrap;gap:8px;margin:10px 0;padding:0;list-style:none}
.counts a{display:block;padding:6px 10px;border-radius:4px;text-decoration:none;color:inherit;
border-left:4px solid}
.counts a.zero{opacity:.55}
.counts b{font-size:18px;margin-right:4px}
.facts{margin:4px 0;padding:0;list-style:none;color:#3c434c}
form{display:flex;flex-wrap:wrap;gap:10px;align-items:end;margin:8px 0}
label{display:flex;flex-direction:column;font-size:12px;color:#3c434c}
input,select,button{font:inherit;padding:3px 6px}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{border-bottom:1px solid #e3e6ea;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#eef0f3;font-size:12px;position:sticky;top:0}
td.num{text-align:right;white-space:nowrap}
small,.muted{color:#5f6873}
.badge{display:inline-block;padding:0 6px;margin:1px 2px 1px 0;border-radius:3px;
font-size:12px;background:#e3e6ea}
.AuthError{background:#fde2e1;border-color:#d93025}
.failing{background:#fdebd3;border-color:#e37400}
.stale{background:#fff4ce;border-color:#b58900}
.stuck{background:#efe3fb;border-color:#8430ce}
.NeverSynced{background:#e8eaed;border-color:#5f6368}
.paused{background:#e1ecfb;border-color:#1a73e8}
.in_progress{background:#e6f4f1;border-color:#12877a}
.healthy{background:#e6f4ea;border-color:#188038}
tr.AuthError td:first-child,tr.failing td:first-child,tr.stale td:first-child,
tr.stuck td:first-child,tr.NeverSynced td:first-child,tr.paused td:first-child{
border-left:4px solid;border-left-color:inherit}
tr.AuthError,tr.failing,tr.stale,tr.stuck,tr.NeverSynced,tr.paused,tr.healthy{background:#fff}
.msg{color:#a50e0e}
caption{text-align:left;padding:6px 0;caption-side:top}
"""

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; "
    f"style-src 'sha256-{base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()}'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
"""No script, font, image or frame may load; the one style sheet is allowed by its hash."""

PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

_LABELS = {
    assess.AUTH_ERROR: "AuthError",
    assess.FAILING: "failing",
    assess.STALE: "stale",
    assess.STUCK: "stuck",
    NEVER_SYNCED: "never synced",
    assess.PAUSED: "paused",
    assess.IN_PROGRESS: "in progress",
    assess.HEALTHY: "healthy",
}


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

_HINTS = {
    assess.STUCK: f"queued or running for more than {span(assess.STUCK_AFTER)} since requested "
    "(CodatDataTypeSyncStuck's default threshold)",
}
"""Each count's tooltip, for a state whose name leaves its threshold unsaid."""


def when(moment: float, now: float) -> str:
    """``2026-11-23 10:00 UTC (3 h ago)``, or ``(in 2 h)`` for a time ahead."""
    absolute = datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M UTC")
    relative = f"in {span(moment - now)}" if moment > now else f"{span(now - moment)} ago"
    return f"{absolute} ({relative})"


def _counts(status: FleetStatus) -> str:
    counts, query = status.counts, status.filters.query
    chips = (
        (assess.STALE, counts.stale),
        (assess.FAILING, counts.failing),
        (assess.AUTH_ERROR, counts.auth_error),
        (NEVER_SYNCED, counts.never_synced),
        (assess.PAUSED, counts.paused),
        (assess.STUCK, counts.stuck),
        (assess.IN_PROGRESS, counts.in_progress),
        (assess.HEALTHY, counts.healthy),
    )
    items = "".join(
        f'<li><a class="{e(name)}{" zero" if not count else ""}" '
        + (f'title="{e(_HINTS[name])}" ' if name in _HINTS else "")
        + f'href="/{e(query(status=(name,)))}"><b>{count:,}</b>{e(_LABELS[name])}</a></li>'
        for name, count in chips
    )
    return f'<ul class="counts">{items}</ul>'


def _facts(status: FleetStatus) -> str:
    now = status.generated_at
    facts = [
        f"{status.monitored:,} companies monitored, {status.companies_up:,} polled "
        f"successfully in the last cycle; {status.counts.pairs:,} company x data type pairs."
    ]
    if status.last_cycle_end is not None:
        took = status.last_cycle_duration
        facts.append(
            f"Last poll cycle ended {when(status.last_cycle_end, now)}"
            + (f" and took {took:.1f} s." if took is not None else ".")
        )
    remaining = status.quota.get(QUOTA_REMAINING.name)
    if remaining is None:
        facts.append("Codat's daily quota: not known yet (no answer from Codat).")
    else:
        limit = status.quota.get(QUOTA_LIMIT.name)
        reset = status.quota.get(QUOTA_RESET.name)
        facts.append(
            f"Codat's daily quota: {remaining:,.0f}"
            + (f" of {limit:,.0f}" if limit is not None else "")
            + " requests left"
            + (f", resets {when(reset, now)}." if reset is not None else ".")
        )
    discovery = status.discovery
    if not discovery.used:
        facts.append("Companies: as listed in the configuration (no discovery).")
    else:
        last = discovery.last_success
        facts.append(
            "Company discovery (GET /companies): "
            + (f"last succeeded {when(last, now)}" if last is not None else "never succeeded")
            + f", {discovery.failures:,} failed since the exporter started."
        )
    return '<ul class="facts">' + "".join(f"<li>{e(fact)}</li>" for fact in facts) + "</ul>"


def _form(status: FleetStatus) -> str:
    filters = status.filters
    chosen = ",".join(filters.statuses)
    options = ['<option value="">needs attention</option>']
    if len(filters.statuses) > 1:
        options.append(f'<option value="{e(chosen)}" selected>{e(chosen)}</option>')
    for group, names in (("State", STATES), ("Codat status", KNOWN_STATUSES)):
        inner = "".join(
            f'<option value="{e(name)}"{" selected" if chosen == name else ""}>'
            f"{e(_LABELS.get(name, name) if group == 'State' else name)}</option>"
            for name in names
        )
        options.append(f'<optgroup label="{e(group)}">{inner}</optgroup>')
    known = "".join(f'<option value="{e(name)}"></option>' for name in status.data_types)
    linked = ",".join(filters.connections)
    connections = ['<option value="">any</option>']
    if linked and linked not in CONNECTION_STATUSES:
        connections.append(f'<option value="{e(linked)}" selected>{e(linked)}</option>')
    connections += [
        f'<option value="{e(name)}"{" selected" if linked == name else ""}>{e(name)}</option>'
        for name in CONNECTION_STATUSES
    ]
    platforms = "".join(f'<option value="{e(name)}"></option>' for name in status.platforms)
    return (
        '<form method="get" action="/">'
        f'<label>Status<select name="status">{"".join(options)}</select></label>'
        '<label>Company<input name="company" placeholder="id or part of the name" '
        f'value="{e(",".join(filters.companies))}"></label>'
        '<label>Data type<input name="data_type" list="data-types" placeholder="any" '
        f'value="{e(",".join(filters.data_types))}"></label>'
        f'<datalist id="data-types">{known}</datalist>'
        f'<label>Connection<select name="connection">{"".join(connections)}</select></label>'
        '<label>Platform<input name="platform" list="platforms" placeholder="any" '
        f'value="{e(",".join(filters.platforms))}"></label>'
        f'<datalist id="platforms">{platforms}</datalist>'
        '<label><span><input type="checkbox" name="all" value="1"'
        f"{' checked' if filters.all else ''}> healthy pairs too</span></label>"
        '<button type="submit">Filter</button> <a href="/">clear</a></form>'
    )


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
        f'<span class="badge {e(name)}">{e(_LABELS[name])}</span>' for name in state.states
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


def _table(status: FleetStatus) -> str:
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


def _relink(status: FleetStatus) -> str:
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


def _failed_polls(status: FleetStatus) -> str:
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


def render(status: FleetStatus, error: str = "") -> str:
    """The whole page; ``error`` (a filter that was refused) replaces the table."""
    counts = status.counts
    title = (
        f"{counts.stale:,} stale, {counts.failing:,} failing, {counts.auth_error:,} AuthError"
        " - Codat freshness"
    )
    notice = ""
    if not status.ready:
        notice = f'<p class="notready">Not ready: {e(status.not_ready_reason)}.</p>'
    if error:
        content = f'<p class="error">Filter not applied: {e(error)}.</p>'
    else:
        content = _relink(status) + _table(status) + _failed_polls(status)
    api = f"{STATUS_API_PATH}{status.filters.query()}"
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>Codat freshness exporter</h1>"
        f'<nav><a href="/metrics">/metrics</a><a href="/-/healthy">/-/healthy</a>'
        f'<a href="/-/ready">/-/ready</a><a href="{e(api)}">{e(STATUS_API_PATH)}</a>'
        f'<span class="muted">version {e(__version__)}</span></nav>'
        f"{notice}{_counts(status)}{_facts(status)}</header>"
        f"<main>{_form(status)}{content}</main>"
        "<footer><small>Times in UTC. /metrics: data freshness and exporter health; "
        "/-/healthy: 200 while the process runs; /-/ready: 200 once data is served (a "
        f"company polled, or a state file loaded); {e(STATUS_API_PATH)}: this page as JSON, "
        "every matching pair.</small></footer></body></html>\n"
    )


def answer(status: FleetStatus, error: FilterError | None = None) -> Answer:
    """The HTTP answer: 200, or 400 with the page explaining a refused filter."""
    body = render(status, str(error) if error else "").encode()
    return Answer(400 if error else 200, body, HTML_TYPE, dict(PAGE_HEADERS))
