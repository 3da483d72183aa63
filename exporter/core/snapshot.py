"""The poll's result: an immutable snapshot, swapped in whole after every cycle.

Nothing here is updated in place. /metrics reads whatever snapshot is current, so a
company that vanished from the last poll simply is not in it: there are no long-lived
label sets to purge. What the exporter learns between two snapshots (the quota Codat's
answers state, how discovery goes, the request estimate) travels on the snapshot too, as
``Facts``: the gauges and the status page read them there, from one place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

NOT_FOUND = "not_found"
"""The poll error of a request Codat answers 404 (``client.NotFound``)."""


@dataclass(frozen=True, slots=True)
class DataTypeStatus:
    data_type: str
    status: str
    last_successful_sync: float | None
    """Unix seconds, or None when the data type never synced successfully."""
    latest_sync_id: str = ""
    """The pull operation of the latest sync (``latestSyncId``); empty when not given."""
    latest_successful_sync_id: str = ""


@dataclass(frozen=True, slots=True)
class SyncDetail:
    """What the pull operation of a pair's latest sync says, read only when that sync is
    not Complete: why it failed, what paused it, when it was requested.

    ``error_message`` and ``status_description`` are free text: shown on the status page,
    never label values."""

    sync_id: str
    status: str
    error_message: str | None = None
    status_description: str | None = None
    requested: float | None = None
    """Unix seconds."""
    completed: float | None = None
    progress: int | None = None
    paused_until: float | None = None
    """From a ``statusDescription`` of "Paused until <DateTime>"."""
    connection_id: str = ""
    """The connection the sync ran on, when the pull operation says."""


@dataclass(frozen=True, slots=True)
class RefreshMark:
    """What the exporter's refreshes (``exporter.codat.refresh``) do for a pair: the latest
    one queued, and, while the pair is one to refresh, when the next is due or that the
    day's caps leave it none (the status page's next step says which)."""

    queued_at: float | None
    """Unix seconds of the latest one; None before the first."""
    attempts: int
    """Refreshes of this failure so far (reset when the pair recovers)."""
    due_at: float | None = None
    """When the next one is due (its backoff over), sent at the first poll from then; None
    when the pair is not one to refresh, or gets none today (refused, or ``capped``)."""
    capped: bool = False
    """Today's caps (``refresh.max_per_day``, ``max_per_company_per_day``) are reached and
    its next refresh is due before 00:00 UTC: none until then."""


@dataclass(frozen=True, slots=True)
class ConnectionState:
    connection_id: str
    platform: str
    source_type: str
    status: str
    on_premise: bool = False
    """Its integration runs on the customer's own machine (``Integration.isOfflineConnector``
    of its ``integrationKey``): a sync waits Queued until that machine is online."""
    link_url: str = field(default="", repr=False, compare=False)
    """The connection's ``linkUrl``, kept only with ``status_page.show_link_urls``: a
    capability (whoever holds it can link a data source to the company), so it is never in
    metrics, logs or the state file, and only the status page and its JSON show it."""
    integration_key: str = ""
    """Codat's four-character key of the connection's integration (``gbol``: Xero)."""


@dataclass(frozen=True, slots=True)
class CompanyInfo:
    """What Codat says of the company itself, from the listing or GET /companies/{id}."""

    name: str = ""
    """Empty until read."""
    created: float | None = None
    """Unix seconds the company was created in Codat, when read."""


@dataclass(frozen=True, slots=True)
class CompanyState:
    company_id: str
    name: str
    up: bool
    """Whether the latest poll succeeded; when it did not, ``data_types`` are the last good."""
    last_poll_success: float | None
    data_types: tuple[DataTypeStatus, ...]
    connections: tuple[ConnectionState, ...] = ()
    sync_schedules: Mapping[str, float] = field(default_factory=dict)
    """Codat's ``syncSchedule`` (hours) per data type, when read (freshness.from_sync_settings)."""
    created: float | None = None
    """Unix seconds the company was created in Codat, when read."""
    syncs: Mapping[str, SyncDetail] = field(default_factory=dict)
    """Per data type, the latest sync's pull operation when it is not Complete."""
    refreshes: Mapping[str, RefreshMark] = field(default_factory=dict)
    """Per data type, the refresh queued for it while it fails (``refresh.enabled``)."""
    poll_error: str = ""
    """Why the latest poll failed, as ``codat_exporter_poll_errors_total`` counts it
    (``timeout``, ``not_found`` ...); empty while ``up``."""
    not_found: bool = False
    """Codat answered the latest poll's dataStatus with 404: a company of ``companies.ids``
    it does not know (one that discovery found leaves the snapshot instead). A 404 for
    only its name, connections or sync settings is a failure like any other."""


@dataclass(frozen=True)
class Outcome:
    """One company's poll, as the workers report it."""

    company_id: str
    data_types: tuple[DataTypeStatus, ...] | None = None
    """The data types read, or None when the dataStatus request failed."""
    error: str = ""
    reason: str = ""
    """Why some request of the company's poll failed; empty when all succeeded."""
    gone: bool = False
    """Codat answered 404 for a company discovery found: it leaves the snapshot. A company
    of ``companies.ids`` is never gone, only failing with ``not_found``."""
    at: float = 0.0
    """Monotonic time the poll finished: of two results for a company, the later wins."""
    syncs: Mapping[str, SyncDetail] = field(default_factory=dict)
    """With ``data_types``: the latest-sync details read (``exporter.codat.diagnostics``)."""
    refreshes: Mapping[str, RefreshMark] = field(default_factory=dict)

    @property
    def not_found(self) -> bool:
        """Codat answered the dataStatus request with 404, and the company stays."""
        return self.reason == NOT_FOUND and self.data_types is None and not self.gone


@dataclass(frozen=True, slots=True)
class DiscoveryFacts:
    """How company discovery goes since the start: ``used`` once it has succeeded or
    failed once (without it the fleet is ``companies.ids``)."""

    last_success: float | None = None
    """Unix seconds of the last listing that succeeded."""
    failures: int = 0

    @property
    def used(self) -> bool:
        return self.last_success is not None or self.failures > 0


@dataclass(frozen=True, slots=True)
class Facts:
    """What the exporter knows of Codat and of itself besides the companies, each None
    until known (its gauge has no sample until then: ``codat_api_quota_remaining 0``
    before Codat has answered once would fire the quota alert for nothing).

    Reported as it happens through a ``NoteFacts``; nothing here is saved in the state
    file, so a restart knows them again once Codat answers and the first cycle runs."""

    quota_limit: float | None = None
    """Codat's daily request quota (X-Rate-Limit-Limit of the latest answer)."""
    quota_remaining: float | None = None
    quota_reset: float | None = None
    """Unix seconds the quota resets."""
    estimated_daily_requests: float | None = None
    """What the configuration needs a day, all shards (``exporter.poll.budget``)."""
    discovery: DiscoveryFacts = DiscoveryFacts()

    def with_quota(
        self, limit: float | None, remaining: float | None, reset: float | None
    ) -> Facts:
        """These facts with what an answer's X-Rate-Limit headers said (None: not said)."""
        return replace(
            self,
            quota_limit=self.quota_limit if limit is None else limit,
            quota_remaining=self.quota_remaining if remaining is None else remaining,
            quota_reset=self.quota_reset if reset is None else reset,
        )

    def discovered(self, at: float) -> Facts:
        return replace(self, discovery=replace(self.discovery, last_success=at))

    def discovery_failed(self) -> Facts:
        discovery = self.discovery
        return replace(self, discovery=replace(discovery, failures=discovery.failures + 1))


NoteFacts = Callable[[Callable[[Facts], Facts]], None]
"""How a part reports a fact: it hands over a change, applied to the current facts at once
(``SnapshotStore.note``), so that two parts reporting together lose nothing. Wired at start:
the parts that learn facts (the client, discovery, the budget) know nothing of the store."""


def ignore_facts(change: Callable[[Facts], Facts]) -> None:
    """The ``NoteFacts`` of a part that nothing reads the facts of (a benchmark's client)."""


@dataclass(frozen=True)
class Snapshot:
    companies: Mapping[str, CompanyState] = field(default_factory=dict)
    monitored: int = 0
    poll_duration: float | None = None
    last_poll: float | None = None
    """Unix time the cycle that produced this snapshot ended; None before the first."""
    unready_reason: str = ""
    """Why this fleet is not the one configured, e.g. discovery has never succeeded, so
    "0 companies, all fine" would be a lie; empty when it is."""
    loading: bool = False
    """Just after a restart: /metrics serves the rendering kept in the state file while
    the companies themselves are decoded (a few seconds at 10,000), so ``companies`` is
    still empty; the status page waits for them."""
    facts: Facts = Facts()

    @property
    def complete(self) -> bool:
        return self.last_poll is not None

    @property
    def ready(self) -> bool:
        """What ``/-/ready`` answers: data is served (a cycle has ended, a state file was
        loaded, or the first cycle has published some companies) for the configured fleet."""
        served = self.complete or bool(self.companies) or self.loading
        return served and not self.unready_reason
