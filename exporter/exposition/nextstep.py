"""Who must act on a pair, and what they do: its *next step*, derived here only, from its
Codat status, its connection and its latest sync's pull operation, and shown by the status
page (a column and its legend) and the JSON (``next_step``, a stable code).

Codat's docs ("Data status") say what each case needs: AuthError, the customer authorizes
the connection again; an error during the platform's maintenance, wait and queue again; a
sync Queued for hours on an on-premise package, the customer's connector is offline. The
first step of ``STEPS`` whose test holds is the pair's; a healthy pair has none, unless a
Deauthorized connection serves it (nothing will sync until the company relinks)::

    >>> [step.code for step in STEPS]  # doctest: +NORMALIZE_WHITESPACE
    ['relink', 'link', 'paused', 'connector_offline', 'platform_incident', 'retrying',
     'rate_limited', 'contact_codat', 'syncing', 'check_settings', 'refresh_capped',
     'queue_sync']
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from datetime import UTC, datetime

from exporter.core.contract import NEVER_SYNCED
from exporter.core.snapshot import ConnectionState
from exporter.exposition.assess import AUTH_ERROR, PairState
from exporter.exposition.platforms import PLATFORM_ERRORS, pair_connection, serving, source_type

RELINK_STATUSES = frozenset((AUTH_ERROR, "PermissionsError"))
"""Latest-sync statuses the company fixes by authorizing the connection again (a
PermissionsError: the user who linked may not read that data)."""
RELINK_CONNECTIONS = frozenset(("Deauthorized", "Unlinked"))
"""Connection statuses the company authorizes again: revoked or unlinked."""
LINK_CONNECTIONS = frozenset(("PendingAuth",))
"""Connection statuses the company authorizes for the first time: never linked yet."""
GONE = RELINK_CONNECTIONS | LINK_CONNECTIONS
"""Connection statuses through which nothing syncs until the company (re)links."""
SETTINGS_STATUSES = frozenset(("NotSupported", "PrerequisiteNotMet"))
RATE_LIMIT_ERROR = "RateLimitError"


@dataclass(frozen=True)
class Step:
    code: str
    """Stable: the JSON's ``next_step``, the page's ``data-next-step``, docs' tables."""
    text: str
    """What the page's "Next step" column says."""
    who: str
    """Who acts, for the legend."""
    when: str
    """When it is the pair's next step, for the legend."""


RELINK = Step(
    "relink", "customer must relink", "the customer",
    "its latest sync ended in AuthError or PermissionsError, or its connection is "
    "Deauthorized or Unlinked: the company authorizes the connection again",
)  # fmt: skip
LINK = Step(
    "link", "customer must link", "the customer",
    "its connection is PendingAuth: the company has never authorized it, and does so by "
    "following its link",
)  # fmt: skip
PAUSED = Step(
    "paused", "paused by Codat: wait", "nobody",
    "Codat paused its syncs until a time still ahead; they resume by themselves",
)  # fmt: skip
CONNECTOR_OFFLINE = Step(
    "connector_offline", "on-premise connector offline", "the customer",
    "its sync has waited for hours on an on-premise integration (QuickBooks Desktop, "
    "Sage 50 ...): the machine running the connector is off or offline",
)  # fmt: skip
PLATFORM_INCIDENT = Step(
    "platform_incident", "platform failing for many companies: wait", "nobody",
    "it fails on a platform on which many companies fail at once (an outage or "
    "maintenance): queue again once the platform is back",
)  # fmt: skip
RETRYING = Step(
    "retrying", "retrying", "the exporter",
    "the exporter refreshes it (refresh.enabled): a refresh is queued, or due at the time "
    "shown (its backoff)",
)  # fmt: skip
RATE_LIMITED = Step(
    "rate_limited", "platform rate limit: wait", "nobody, unless it persists: you",
    "its latest sync ended in RateLimitError: the platform throttled Codat, which usually "
    "clears by the next scheduled sync; queuing more syncs only adds to the load. If it "
    "persists, spread the company's sync schedule",
)  # fmt: skip
CONTACT_CODAT = Step(
    "contact_codat", "contact Codat", "Codat support",
    "its latest sync ended in InternalError, or has been queued or running for hours on "
    "a cloud platform: an error inside Codat",
)  # fmt: skip
SYNCING = Step(
    "syncing", "sync running: wait", "nobody",
    "a sync of it is queued or running, not for long yet",
)  # fmt: skip
CHECK_SETTINGS = Step(
    "check_settings", "check its sync settings", "you",
    "it never synced, its platform does not support it (NotSupported) or lacks a "
    "prerequisite (PrerequisiteNotMet), or the company has no connection of its source "
    "type (a commerce-* data type, no Commerce connection): enable it, or stop expecting it",
)  # fmt: skip
REFRESH_CAPPED = Step(
    "refresh_capped", "refreshes capped today: queue a sync", "you",
    "the exporter would refresh it (refresh.enabled), but today's caps "
    "(refresh.max_per_day, refresh.max_per_company_per_day) are reached: none before "
    "00:00 UTC",
)  # fmt: skip
QUEUE_SYNC = Step(
    "queue_sync", "queue a sync", "you",
    "its latest sync failed (FetchError, MapError ...) or its data is past its max age: "
    "queue a sync; if it fails again, read its error",
)  # fmt: skip

STEPS = (RELINK, LINK, PAUSED, CONNECTOR_OFFLINE, PLATFORM_INCIDENT, RETRYING, RATE_LIMITED,
         CONTACT_CODAT, SYNCING, CHECK_SETTINGS, REFRESH_CAPPED, QUEUE_SYNC)  # fmt: skip
"""Every next step, in the order they are tried: the legend's rows."""
BY_CODE = {step.code: step for step in STEPS}
MUST_LINK = (RELINK, LINK)
"""The steps only the customer takes, in Codat's link flow: "Connections to link or relink"."""


def next_step(state: PairState, incidents: Container[str] = ()) -> Step | None:
    """The pair's next step at its instant; ``incidents``: the platforms in an incident
    (``platforms.incidents``)."""
    pair = state.pair
    connection = pair_connection(pair.company, pair.item, pair.sync)
    status = pair.item.status
    if status in RELINK_STATUSES or (
        connection is not None and connection.status in RELINK_CONNECTIONS
    ):
        return RELINK
    if connection is not None and connection.status in LINK_CONNECTIONS:
        return LINK
    if state.healthy:
        return None
    if state.paused_until is not None:
        return PAUSED
    if unserved(state):
        return CHECK_SETTINGS
    stuck = pair.stuck(state.now)
    if stuck and connection is not None and connection.on_premise:
        return CONNECTOR_OFFLINE
    if status in PLATFORM_ERRORS and connection is not None and connection.platform in incidents:
        return PLATFORM_INCIDENT
    refresh = pair.company.refreshes.get(pair.item.data_type)
    if refresh is not None and refresh.due_at is not None and not pair.in_progress:
        return RETRYING
    if status == RATE_LIMIT_ERROR:
        return RATE_LIMITED
    if status == "InternalError" or stuck:
        return CONTACT_CODAT
    if pair.in_progress:
        return SYNCING
    if pair.never_synced or status in SETTINGS_STATUSES:
        return CHECK_SETTINGS
    if refresh is not None and refresh.capped:
        return REFRESH_CAPPED
    return QUEUE_SYNC


def said(state: PairState, step: Step) -> str:
    """The step's words for the pair: a retry says when (``08:00`` is UTC)::

    retrying (refresh queued 12:00 UTC)
    retrying (refresh due 14:00 UTC)
    """
    refresh = state.company.refreshes.get(state.item.data_type)
    if step is not RETRYING or refresh is None or refresh.due_at is None:
        return step.text
    sync, queued = state.sync, refresh.queued_at
    if queued is not None and (sync is None or sync.requested is None or sync.requested < queued):
        return f"{step.text} (refresh queued {_clock(queued, state.now)})"
    if refresh.due_at <= state.now:
        return f"{step.text} (refresh due at the next poll)"
    return f"{step.text} (refresh due {_clock(refresh.due_at, state.now)})"


def _clock(moment: float, now: float) -> str:
    """``14:00 UTC`` on ``now``'s UTC day, else ``2026-11-24 00:00 UTC``."""
    at = datetime.fromtimestamp(moment, UTC)
    same_day = at.date() == datetime.fromtimestamp(now, UTC).date()
    return at.strftime("%H:%M UTC" if same_day else "%Y-%m-%d %H:%M UTC")


def cause(state: PairState, step: Step) -> str:
    """What the step answers, in a few words, the same for every pair of a company that
    shares it: the status page collapses such pairs into one row ("Xero deauthorized").

    >>> from exporter.exposition.assess import Pair
    >>> from exporter.core.snapshot import CompanyState, DataTypeStatus
    >>> xero = ConnectionState("k1", "Xero", "Accounting", "Deauthorized")
    >>> company = CompanyState("c1", "Acme", True, 0.0, (), connections=(xero,))
    >>> item = DataTypeStatus("bills", "AuthError", 0.0)
    >>> cause(PairState(Pair(company, item, 3600.0, None), 60.0), RELINK)
    'Xero deauthorized'
    """
    pair = state.pair
    connection = pair_connection(pair.company, pair.item, pair.sync)
    platform = connection.platform if connection is not None and connection.platform else ""
    status = pair.item.status
    if step is CHECK_SETTINGS and unserved(state):
        return f"no {source_type(pair.item.data_type)} connection"
    if step in MUST_LINK and connection is not None and connection.status in GONE:
        return f"{platform or 'connection'} {_GONE_SAID[connection.status]}"
    if step is PAUSED:
        return "paused by Codat"
    if step in (CONNECTOR_OFFLINE, CONTACT_CODAT) and state.pair.stuck(state.now):
        return f"{platform or 'sync'} queued for hours"
    message = pair.sync.error_message if pair.sync is not None else None
    said = f"{status}: {message}" if message else _SAID.get(status, status)
    return f"{platform} {said}" if platform and step is PLATFORM_INCIDENT else said


_SAID = {"Complete": "past its max age", NEVER_SYNCED: "never synced"}
_GONE_SAID = {
    "Deauthorized": "deauthorized",
    "Unlinked": "unlinked",
    "PendingAuth": "not linked yet",
}


def unserved(state: PairState) -> bool:
    """Whether the company's connections are known and none of them serves the pair's data
    type (``platforms.serving``): nothing can sync it."""
    company = state.company
    return bool(company.connections) and not serving(company, state.item.data_type)


def connection_of(state: PairState) -> ConnectionState | None:
    """The connection the pair's latest sync ran on (``platforms.pair_connection``)."""
    return pair_connection(state.company, state.item, state.sync)
