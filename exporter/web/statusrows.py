"""The status page's table of pairs (``exporter.web.statuspage`` puts it on the page): a row
per pair, each with its next step (``exporter.exposition.nextstep``), and one row for the
pairs of a company that share a cause, which expands to them without JavaScript (a
checkbox and a CSS ``:has`` rule).

A row reads::

    Acme Ltd  8a21..  invoices  AuthError stale  2026-11-23 10:00 UTC (3 h ago)
    3 h 0 min / 2 h 0 min (1.5x)  "Token expired"  Xero: Deauthorized  poll ok
    customer must relink

and the pairs of the demo's deauthorized company, one row::

    Copper Dental Ltd: Xero deauthorized, 12 data types, customer must relink

At most ``ROW_LIMIT`` pairs are rendered (the JSON returns every pair, never grouped).
Every value from Codat goes through ``e``; a connection's ``linkUrl`` is shown as text to
copy (never a link to follow), only with ``status_page.show_link_urls``.
"""

from __future__ import annotations

from collections.abc import Sequence

from exporter.core.phrases import plural
from exporter.exposition.assess import HEALTHY, PairState
from exporter.exposition.nextstep import (
    MUST_LINK,
    Step,
    cause,
    connection_of,
    next_step,
    said,
)
from exporter.exposition.platforms import source_type
from exporter.web.filters import connections_for
from exporter.web.status import FleetStatus
from exporter.web.statusapi import STATUS_API_PATH
from exporter.web.statustables import LABELS, ROW_LIMIT, e, relink_link, span, when

COLUMNS = ("Company", "Data type", "Status", "Last successful sync", "Age / max age",
           "Latest sync", "Connection", "Poll", "Next step")  # fmt: skip
CELLS = ("company", "type", "status", "synced", "age num", "reason", "connection", "poll", "step")
"""Each column's cell class: the phone layout shows some of them only, each labelled."""
_NONE_READ = '<span class="muted">none read</span>'


def _latest_sync(state: PairState, now: float) -> str:
    """Why the latest sync failed, paused or waits; a pause once, with its end."""
    sync = state.sync
    refresh = state.company.refreshes.get(state.item.data_type)
    parts = []
    if refresh is not None and refresh.queued_at is not None:
        parts.append(
            e(f"refresh queued {when(refresh.queued_at, now)}, attempt {refresh.attempts}")
        )
    if sync is None:
        return "<br>".join(parts)
    if sync.error_message:
        parts.append(f'<span class="msg">{e(sync.error_message)}</span>')
    if state.paused_until is not None:
        parts.append(e(f"paused until {when(state.paused_until, now)}"))
    elif state.status_description:
        parts.append(e(state.status_description))
    if state.pair.in_progress and sync.requested is not None and state.paused_until is None:
        progress = f", {sync.progress} %" if sync.progress is not None else ""
        parts.append(e(f"requested {when(sync.requested, now)}{progress}"))
    return "<br>".join(parts)


def _connections(state: PairState) -> str:
    """The connection the pair syncs through, as its next step and the JSON take it; when
    that cannot be told, those that may serve it; or why there is none."""
    company, data_type = state.company, state.item.data_type
    one = connection_of(state)
    shown = (one,) if one is not None else connections_for(company, data_type)
    if shown:
        return "<br>".join(e(f"{c.platform}: {c.status}") for c in shown)
    if company.connections:
        return f'<span class="muted">{e(f"no {source_type(data_type)} connection")}</span>'
    return _NONE_READ


def _step(step: Step | None, state: PairState, status: FleetStatus) -> str:
    if step is None:
        return ""
    return _step_name(step, state) + _link(step, state, status)


def _step_name(step: Step, state: PairState) -> str:
    return f'<span class="step step-{e(step.code)}">{e(said(state, step))}</span>'


def _link(step: Step, state: PairState, status: FleetStatus) -> str:
    """The relink link, when the step is a link or relink and the page may show links."""
    return relink_link(connection_of(state), status) if step in MUST_LINK else ""


def _row(state: PairState, step: Step | None, status: FleetStatus, member: bool) -> str:
    now = status.generated_at
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
    connections = _connections(state)
    if company.up:
        poll = "ok"
    else:
        last = company.last_poll_success
        poll = "not found in Codat (404)" if company.not_found else "failing"
        poll += f"; last ok {when(last, now)}" if last is not None else ""
    cells = (
        f"{e(company.name)}<br><small>{e(company.company_id)}</small>",
        e(item.data_type),
        f"{e(item.status)}<br>{badges}",
        synced,
        ages,
        _latest_sync(state, now),
        connections,
        e(poll),
        _step(step, state, status),
    )
    tds = "".join(
        f'<td class="{name}">{cell}</td>' for name, cell in zip(CELLS, cells, strict=True)
    )
    return (
        f'<tr class="{e(worst)}{" member" if member else ""}" '
        f'data-company-id="{e(company.company_id)}" data-data-type="{e(item.data_type)}" '
        f'data-status="{e(item.status)}" data-states="{e(" ".join(state.states))}" '
        f'data-next-step="{e(step.code if step else "")}">{tds}</tr>'
    )


def _grouped(
    states: Sequence[PairState], status: FleetStatus
) -> list[tuple[Step | None, str, list[PairState]]]:
    """The pairs, those of a company with the same next step and cause together, each
    group where its first pair is."""
    groups: dict[tuple[str, str, str], tuple[Step | None, str, list[PairState]]] = {}
    for state in states:
        step = next_step(state, status.incidents)
        why = cause(state, step) if step is not None else ""
        key = (state.company.company_id, step.code if step else "", why)
        groups.setdefault(key, (step, why, []))[2].append(state)
    return list(groups.values())


def _group(step: Step | None, why: str, members: list[PairState], status: FleetStatus) -> str:
    """The company's row of one cause ("healthy" for pairs with no next step). Its relink
    link stays outside the label that folds and unfolds the row: a tap to select the link
    for copying must not fold the row too."""
    first = members[0]
    company = first.company
    said = f"{company.name}: {why or HEALTHY}, {plural(len(members), 'data type')}"
    text = e(said)
    link = ""
    if step is not None:
        text += ", " + _step_name(step, first)
        link = _link(step, first, status)
    rows = "".join(_row(state, step, status, member=True) for state in members)
    return (
        f'<tbody class="group" data-group="{e(company.company_id)}" '
        f'data-next-step="{e(step.code if step else "")}"><tr class="summary">'
        f'<td colspan="{len(COLUMNS)}"><label><input type="checkbox" class="expand"> '
        f'<span class="more">show</span> {text}</label>{link}</td></tr>{rows}</tbody>'
    )


def pairs_table(status: FleetStatus) -> str:
    rows, filters = status.rows, status.filters
    one = len(rows) == 1
    what = (
        f"matching pair{'' if one else 's'}"
        if filters.statuses or filters.next_steps
        else (f"pair{'' if one else 's'}" if filters.all else
              f"pair{' that needs' if one else 's that need'} attention")
    )  # fmt: skip
    shown = min(len(rows), ROW_LIMIT)
    caption = f"Showing {shown:,} of {len(rows):,} {what}"
    if len(rows) > ROW_LIMIT:
        caption += (
            f"; narrow with the filters, or read all {len(rows):,} from "
            f"{STATUS_API_PATH}{filters.query()}"
        )
    caption += ". "
    if status.healthy_unlisted:
        healthy = f"{status.healthy_unlisted:,} healthy pair" + "s" * (status.healthy_unlisted != 1)
        caption += f'{healthy} not listed: tick "healthy pairs too". '
    caption += (
        "Highest age / max age first; never-synced pairs last; a company's pairs with one "
        "cause in one row, ticked to show them."
    )
    head = "".join(f'<th class="{c}">{name}</th>' for c, name in zip(CELLS, COLUMNS, strict=True))
    body, singles = [], []
    for step, why, members in _grouped(rows[:ROW_LIMIT], status):
        if len(members) == 1:
            singles.append(_row(members[0], step, status, member=False))
            continue
        if singles:
            body.append(f"<tbody>{''.join(singles)}</tbody>")
            singles = []
        body.append(_group(step, why, members, status))
    if singles or not body:
        body.append(f"<tbody>{''.join(singles)}</tbody>")
    return (
        f'<table id="pairs"><caption>{e(caption)}</caption><thead><tr>{head}</tr></thead>'
        f"{''.join(body)}</table>"
    )
