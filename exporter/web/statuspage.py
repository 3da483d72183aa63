"""The status page at ``/``: a ``FleetStatus`` (``exporter.web.status``) as one HTML page that
reads without JavaScript, images, fonts or anything else from elsewhere.

A header counts the fleet's pairs by state (each count links to the pairs it counts), says
when the last cycle ended and how long it took, the quota left and how discovery goes. A
plain GET form filters; the tables below it (``exporter.web.statustables``) list what the
filters match. The Content-Security-Policy forbids scripts and allows the one style sheet
by its hash, so even a value that escaped escaping would stay inert.
"""

from __future__ import annotations

import base64
import hashlib

from exporter import __version__
from exporter.core.contract import CONNECTION_STATUSES, KNOWN_STATUSES, NEVER_SYNCED
from exporter.core.families import QUOTA_LIMIT, QUOTA_REMAINING, QUOTA_RESET
from exporter.core.phrases import plural
from exporter.exposition import assess
from exporter.exposition.nextstep import STEPS
from exporter.web.filters import STATES, FilterError
from exporter.web.status import Answer, FleetStatus
from exporter.web.statusapi import STATUS_API_PATH
from exporter.web.statuslegend import incidents_banner, legend
from exporter.web.statusrows import pairs_table
from exporter.web.statustables import LABELS, e, failed_polls_table, relink_section, span, when

HTML_TYPE = "text/html; charset=utf-8"

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1b1f24;background:#f6f7f9}
header,main,footer{padding:12px 20px}
header{background:#fff;border-bottom:1px solid #d0d4da}
h1{font-size:20px;margin:0 0 4px}
h2{font-size:16px;margin:16px 0 6px}
nav a{margin-right:14px}
.notready,.relink{background:#fde2e1;border:1px solid #d93025;padding:6px 10px;margin:8px 0}
.error,.elsewhere{background:#fff4ce;border:1px solid #b58900;padding:6px 10px;margin:8px 0}
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
.incident{background:#fdebd3;border:1px solid #e37400;padding:6px 10px;margin:8px 0}
code.link{font-size:12px;background:#f1f3f4;padding:0 3px;user-select:all;
overflow-wrap:anywhere}
.step{font-weight:600}
tbody.group tr.member{display:none}
tbody.group:has(.expand:checked) tr.member{display:table-row}
tbody.group:has(.expand:checked) .more{visibility:hidden}
tr.summary td{background:#fbfbfc;border-left:4px solid #9aa0a6}
tr.summary label{display:block;font-size:14px;color:inherit;cursor:pointer}
.more{font-size:12px;color:#1a73e8;margin-right:4px}
dl.legend{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:4px 0}
dl.legend dt{font-weight:600}
dl.legend dd{margin:0}
@media (max-width:640px){
header,main,footer{padding:8px}
td{overflow-wrap:anywhere}
nav a{display:inline-block;margin:0 10px 4px 0}
table#pairs,table#pairs caption,table#pairs tbody,table#pairs tr,table#pairs td{display:block}
table#pairs thead,table#pairs td.synced,table#pairs td.connection,table#pairs td.poll{display:none}
table#pairs tr{border-bottom:1px solid #d0d4da;padding:4px 0}
table#pairs td{border:0;padding:1px 8px}
table#pairs td.company,table#pairs td.type{display:inline-block}
table#pairs tbody.group tr.member{display:none}
table#pairs tbody.group:has(.expand:checked) tr.member{display:block}
td.age::before{content:"Age / max age: ";color:#5f6873}
td.reason:not(:empty)::before{content:"Why: ";color:#5f6873}
td.step:not(:empty)::before{content:"Next step: ";color:#5f6873}
td.num{text-align:left}
dl.legend{grid-template-columns:1fr}
dl.legend dd{margin:0 0 6px}
}
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

_HINTS = {
    assess.STUCK: f"queued or running for more than {span(assess.STUCK_AFTER)} since requested "
    "(CodatDataTypeSyncStuck's default threshold)",
}
"""Each count's tooltip, for a state whose name leaves its threshold unsaid."""


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
        + f'href="/{e(query(status=(name,)))}"><b>{count:,}</b>{e(LABELS[name])}</a></li>'
        for name, count in chips
    )
    return f'<ul class="counts">{items}</ul>'


def _facts(status: FleetStatus) -> str:
    now = status.generated_at
    sharded = f"{str(status.shard).capitalize()}: " if status.shard.count > 1 else ""
    facts = [
        f"{sharded}{plural(status.monitored, 'company')} monitored, {status.companies_up:,} "
        f"polled successfully in the last cycle; {status.counts.pairs:,} company x data type "
        f"pair{'' if status.counts.pairs == 1 else 's'}."
    ]
    if sharded:
        facts.append(
            f"The fleet is split between {status.shard.count:,} replicas (sharding): this "
            "page shows only this shard's companies."
        )
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
            f"{e(LABELS.get(name, name) if group == 'State' else name)}</option>"
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
    asked = ",".join(filters.next_steps)
    steps = ['<option value="">any</option>']
    if len(filters.next_steps) > 1:
        steps.append(f'<option value="{e(asked)}" selected>{e(asked)}</option>')
    steps += [
        f'<option value="{e(step.code)}"{" selected" if asked == step.code else ""}>'
        f"{e(step.text)}</option>"
        for step in STEPS
    ]
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
        f'<label>Next step<select name="next_step">{"".join(steps)}</select></label>'
        '<label><span><input type="checkbox" name="all" value="1"'
        f"{' checked' if filters.all else ''}> healthy pairs too</span></label>"
        '<button type="submit">Filter</button> <a href="/">clear</a></form>'
    )


def _elsewhere(status: FleetStatus) -> str:
    """Sharded, where a company asked for that this shard does not monitor is: an alert's
    link to ``/?company=<id>`` may reach any replica."""
    shard, lines = status.shard, []
    for needle, owner in status.elsewhere:
        if owner == shard.index:
            said = (
                f"No company here matches \u201c{needle}\u201d. A company with that id "
                f"would be polled by this shard ({shard}), which does not monitor it: check "
                "companies.ids, or whether discovery lists it."
            )
        else:
            said = (
                f"No company on this shard ({shard}) matches \u201c{needle}\u201d: this "
                f"company is monitored by shard {owner} of {shard.count}, if it is an id. "
                "Open that replica's status page."
            )
        lines.append(f'<p class="elsewhere" data-shard="{owner}">{e(said)}</p>')
    return "".join(lines)


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
        content = (
            _elsewhere(status)
            + relink_section(status)
            + pairs_table(status)
            + legend()
            + failed_polls_table(status)
        )
    api = f"{STATUS_API_PATH}{status.filters.query()}"
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>Codat freshness exporter</h1>"
        f'<nav><a href="/metrics">/metrics</a><a href="/-/healthy">/-/healthy</a>'
        f'<a href="/-/ready">/-/ready</a><a href="{e(api)}">{e(STATUS_API_PATH)}</a>'
        f'<span class="muted">version {e(__version__)}</span></nav>'
        f"{notice}{incidents_banner(status)}{_counts(status)}{_facts(status)}</header>"
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
