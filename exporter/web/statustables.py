"""The status page's tables besides the pairs (``exporter.web.statusrows``), and how the
page writes a value: escaped (``e``), a duration (``span``), a time (``when``), a link to
relink (``relink_link``).

Above the pairs, when the filters choose companies (``company``, ``connection``,
``platform``) or ask for the customer's next steps (``next_step=relink,link``), "Connections
to link or relink" lists those with a connection of the asked status (when none is asked,
those that must link or relink: ``Filters.relinks``), each with all its connections,
whatever its pairs' states (unfiltered, one line counts the companies that must link or
relink and links to that list); below them, the companies whose latest poll failed.
Every value from Codat or the configuration goes through ``e``, so a company named
``<script>`` stays text.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape

from exporter.core.contract import NEVER_SYNCED
from exporter.core.phrases import plural
from exporter.core.snapshot import CompanyState, ConnectionState
from exporter.exposition import assess
from exporter.exposition.nextstep import GONE, MUST_LINK
from exporter.web.filters import DEAUTHORIZED, Filters
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


def _connection(status: str) -> str:
    return f'<span class="badge {e(_CONNECTION_BADGES.get(status, ""))}">{e(status)}</span>'


def relink_link(connection: ConnectionState | None, status: FleetStatus) -> str:
    """Where the company relinks the connection (its ``linkUrl``), as text to copy into an
    email, not a link to follow: only with ``status_page.show_link_urls``, for a connection
    nothing syncs through."""
    if connection is None or connection.status not in GONE or not connection.link_url:
        return ""
    if not status.page.show_link_urls:
        return ""
    return f' <small>link:</small> <code class="link">{e(connection.link_url)}</code>'


def _relink_row(company: CompanyState, status: FleetStatus) -> str:
    link = "/" + Filters(companies=(company.company_id,)).query()
    connections = "<br>".join(
        f"{_connection(c.status)} {e(c.platform or '?')} ({e(c.source_type or '?')}) "
        f"<small>{e(c.connection_id)}</small>{relink_link(c, status)}"
        for c in company.connections
    )
    return (
        f'<tr data-company-id="{e(company.company_id)}">'
        f'<td><a href="{e(link)}">{e(company.name)}</a><br><small>{e(company.company_id)}'
        f"</small></td><td>{connections}</td></tr>"
    )


MUST_LINK_CODES = tuple(step.code for step in MUST_LINK)
_WHO_MUST_LINK = (
    "that must link or relink a connection (one Deauthorized, Unlinked or PendingAuth, or a "
    "data type whose latest sync ended in AuthError or PermissionsError)"
)


def relink_section(status: FleetStatus) -> str:
    """The "Connections to link or relink" section when the filters choose companies or
    ask for the customer's next steps; else a line that counts the companies that must link
    or relink and links to them."""
    filters, listed = status.filters, status.relink
    if not filters.by_company and not filters.must_link:
        if not listed:
            return ""
        link = "/" + filters.query(next_step=MUST_LINK_CODES)
        return (
            f'<p class="relink"><a href="{e(link)}">{e(plural(len(listed), "company"))} '
            "must link or relink a connection</a>: nothing syncs through it until the "
            "company authorizes it.</p>"
        )
    if not listed and not filters.connections:
        return ""
    on = f" on {' or '.join(filters.platforms)}" if filters.platforms else ""
    if filters.connections:
        which = f"with a connection {' or '.join(filters.connections)}{on}"
    else:
        which = _WHO_MUST_LINK + on
    shown = min(len(listed), ROW_LIMIT)
    caption = (
        f"Showing {shown:,} of {plural(len(listed), 'company')} {which}, "
        "whatever their pairs' states, each with all its connections"
    )
    if len(listed) > ROW_LIMIT:
        caption += f"; read all from {STATUS_API_PATH}{filters.query()}"
    caption += "."
    if not filters.connections:
        heading = "Connections to link or relink"
    elif set(filters.connections) <= {DEAUTHORIZED, "Unlinked"}:
        heading = "Connections to relink"
    else:
        heading = f"Connections {' or '.join(filters.connections)}"
    rows = "".join(_relink_row(company, status) for company in listed[:ROW_LIMIT])
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
