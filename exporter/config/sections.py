"""The YAML configuration (``--config.file``), declared once as frozen dataclasses.

Each section is a dataclass and each of its ``setting()`` fields a key, with its type,
default and description; ``exporter.config.load`` reads a file against them, and README's
table is generated from them (``exporter.config.document``). Every problem becomes one
``ConfigError`` naming the key::

    poll.intervall: unknown key; did you mean interval?
    codat.timeout: '30 seconds' is not a duration (use e.g. 90s, 5m, 1h30m, 2d)

Here: the sections about Codat, the companies and the process, and ``Config``, the whole
file. The sections that shape the series (``data_types``, ``freshness``, ``metrics``) are
in ``exporter.config.series``; the kinds of value only this file has, in
``exporter.config.kinds``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exporter.config.durations import format_duration
from exporter.config.kinds import (
    API_KEY,
    BASE_URL,
    COMPANY_ID_SET,
    COMPANY_IDS,
    HOST_PORT,
    PATH,
    REFRESH_STATUSES,
    REFRESHABLE,
    SHARD_COUNT,
    SHARD_INDEX,
)
from exporter.config.secrets import parse_secret
from exporter.config.series import DataTypesConfig, FreshnessConfig, MetricsConfig
from exporter.config.settings import (
    BOOL,
    DURATION,
    TEXT,
    ConfigError,
    Kind,
    Where,
    number,
    read_section,
    section,
    setting,
    shown,
    whole_number,
)
from exporter.config.sharding import Shard, ShardingError, resolve_shard
from exporter.core.phrases import plural

DEFAULT_BASE_URL = "https://api.codat.io"


@dataclass(frozen=True)
class CodatConfig:
    """``codat``: where Codat's API is, the key, and how hard the exporter may use it."""

    api_key: str = setting(
        API_KEY, "the raw API key (not the `Basic …` header: the exporter encodes it); "
        "`${VAR}` reads it from the environment", from_file=True, repr=False,
    )  # fmt: skip
    base_url: str = setting(
        BASE_URL, "Codat Platform API root: http(s), no credentials, query or fragment",
        default=DEFAULT_BASE_URL,
    )  # fmt: skip
    timeout: float = setting(DURATION, "limit for one whole request attempt", default=30.0)
    max_concurrency: int = setting(
        whole_number(64), "requests to Codat in flight at once", default=4
    )
    max_requests_per_minute: int = setting(
        whole_number(100_000), "client-side rate limit shared by all workers", default=600
    )
    max_response_bytes: int = setting(
        whole_number(1 << 30), "largest response body read (10 MiB); larger fails the request",
        default=10 * 1024 * 1024,
    )  # fmt: skip


@dataclass(frozen=True)
class PollConfig:
    """``poll``: how often every company's data status is read."""

    interval: float = setting(DURATION, "time between poll cycles", default=300.0)


@dataclass(frozen=True)
class CompaniesConfig:
    """``companies``: which companies to monitor, listed, discovered or both."""

    ids: tuple[str, ...] = setting(
        COMPANY_IDS, "company ids (UUIDs) to monitor; at least one unless `discover`", default=()
    )
    discover: bool = setting(BOOL, "list companies with `GET /companies`", default=False)
    discovery_interval: float = setting(
        DURATION, "how often discovery lists the companies again", default=3600.0
    )
    page_size: int = setting(whole_number(2000), "companies per page of the listing", default=1000)
    tags: str = setting(
        TEXT, "Codat's tags filter for discovery, e.g. `region=uk && team=lending`", default=""
    )
    query: str = setting(TEXT, "Codat query string for discovery", default="")
    exclude: frozenset[str] = setting(
        COMPANY_ID_SET, "company ids never to monitor, discovered or listed", default=frozenset()
    )

    def check(self, at: Where) -> None:
        if not self.ids and not self.discover:
            raise ConfigError(
                f"{at.key('ids')}: list at least one Codat company id, "
                f"or set {at.key('discover')}: true"
            )


@dataclass(frozen=True)
class ConnectionsConfig:
    """``connections``: whether and how often each company's connections are read."""

    enabled: bool = setting(BOOL, "poll each company's connections", default=True)
    interval: float = setting(DURATION, "how often connections refresh", default=1800.0)


@dataclass(frozen=True)
class WebhooksConfig:
    """``webhooks``: Codat's events, which hasten polls the exporter would make anyway."""

    enabled: bool = setting(
        BOOL, "accept Codat's webhooks at `POST /webhooks/codat`", default=False
    )
    secret: str = setting(
        TEXT, "Codat's signing secret, `whsec_…`; required when enabled (or `secret_file`, "
        "a file holding it)", default="", repr=False, from_file=True,
    )  # fmt: skip
    listen_address: str = setting(
        HOST_PORT, "a separate `host:port` for webhooks, on another port than "
        "`--web.listen-address` (empty: the main listener)", default="",
    )  # fmt: skip
    max_body_bytes: int = setting(
        whole_number(16 << 20), "larger deliveries get 413", default=256 << 10
    )
    debounce: float = setting(
        DURATION, "wait before re-polling a company, so a burst of events costs one poll",
        default=5.0,
    )  # fmt: skip

    def check(self, at: Where) -> None:
        if self.enabled:
            if not self.secret:
                where = at.key("secret")
                raise ConfigError(f"{where}: required when {at.key('enabled')} is true")
            parse_secret(self.secret, str(at.key("secret")))


@dataclass(frozen=True)
class DiagnosticsConfig:
    """``diagnostics``: what is read of Codat's pull operations (``exporter.codat.diagnostics``)."""

    pull_operations: bool = setting(
        BOOL, "read the pull operation of a latest sync that is not Complete (why it failed, "
        "paused or queued), once per sync", default=True,
    )  # fmt: skip
    sync_durations: bool = setting(
        BOOL, "read each new successful sync's pull operation for "
        "`codat_data_type_sync_duration_seconds`", default=True,
    )  # fmt: skip


@dataclass(frozen=True)
class RefreshConfig:
    """``refresh``: queue a new sync of a pair that keeps failing with a transient error
    (``exporter.codat.refresh``). Off by default: it writes to Codat, and each sync costs quota."""

    enabled: bool = setting(BOOL, "queue syncs for pairs failing transiently", default=False)
    dry_run: bool = setting(
        BOOL, "log and count what would be queued, queue nothing", default=False
    )
    statuses: tuple[str, ...] = setting(
        REFRESH_STATUSES, "the statuses that are refreshed (never AuthError, NotSupported, "
        "PermissionsError, PrerequisiteNotMet)", default=REFRESHABLE,
    )  # fmt: skip
    after: float = setting(
        DURATION, "how long a pair must have been failing before its first refresh",
        default=3600.0,
    )  # fmt: skip
    backoff: float = setting(
        number(100), "each further refresh of the same failing pair waits this many times "
        "longer", default=2.0,
    )  # fmt: skip
    max_per_company_per_day: int = setting(
        whole_number(1000), "refreshes per company per UTC day", default=5
    )
    max_per_day: int = setting(
        whole_number(1_000_000), "refreshes per UTC day for this replica (divide the fleet's "
        "by the shards)", default=500,
    )  # fmt: skip
    stale: bool = setting(
        BOOL, "also refresh a Complete pair that is past its max age", default=False
    )


@dataclass(frozen=True)
class StateConfig:
    """``state``: what the exporter knew at its last cycle, kept for a restart."""

    file: str = setting(
        PATH, "path of the state file, written after every cycle and read at start, so a "
        "restart is not blind (empty: off); its directory must exist and be writable. "
        "Required by `refresh`, whose journal `<file>.refreshes` sits beside it",
        default="",
    )  # fmt: skip
    max_file_bytes: int = setting(
        whole_number(1 << 36), "largest state file read at start (1 GiB); a larger one, "
        "or one that is not a regular file, is logged and ignored, not read",
        default=1 << 30,
    )  # fmt: skip

    def check_directory(self) -> None:
        """Refuse a state file that could never be written, or whose writes would replace what
        is not the exporter's: its directory missing or not writable, the path a directory,
        or a device itself (``/dev/null``: its first save would replace the device). What
        else is there that is not a state file (a FIFO, a symlink to ``/dev/zero``, a file of
        2 GB) is the file's content, not the configuration: the start logs it once and
        ignores it (``atomicfile.read``), and the first save replaces it. Checked by
        ``--check-config`` and at start (``cli.check_start``), not by ``parse_config``: a
        directory that goes away later is a runtime failure, logged and retried every
        cycle."""
        if not self.file:
            return
        path = Path(self.file)
        directory = path.parent
        if path.is_dir():
            raise ConfigError(f"state.file: {shown(self.file)} is a directory; name a file in it")
        if not path.is_symlink() and (path.is_char_device() or path.is_block_device()):
            raise ConfigError(f"state.file: {shown(self.file)} is not a regular file")
        if not directory.is_dir():
            raise ConfigError(f"state.file: directory {shown(str(directory))} does not exist")
        if not os.access(directory, os.W_OK | os.X_OK):
            raise ConfigError(
                f"state.file: directory {shown(str(directory))} is not writable by this user"
            )


PLATFORM_INCIDENT_COMPANIES = 10
"""Companies failing at once on one platform that make it an incident: the status page's
default, and that of the alert CodatPlatformSyncFailures (``monitoring.config`` reads it)."""


@dataclass(frozen=True)
class StatusPageConfig:
    """``status_page``: what the status page (``/``) and its JSON show besides the pairs."""

    show_link_urls: bool = setting(
        BOOL, "show the `linkUrl` of each connection to (re)link (Deauthorized, Unlinked, "
        "PendingAuth), where its company authorizes it; off: the exporter does not even keep "
        "it, as whoever holds the link can authorize a data source for that company",
        default=False,
    )  # fmt: skip
    platform_incident_companies: int = setting(
        whole_number(1_000_000), "companies failing at once on one platform that make the "
        "page call it an incident (a banner, and \"wait\" as their next step); keep it equal "
        "to CodatPlatformSyncFailures' `companies` in monitoring/config.yml",
        default=PLATFORM_INCIDENT_COMPANIES,
    )  # fmt: skip


@dataclass(frozen=True)
class ShardingKeys:
    """The ``sharding`` section as written; ``Config.shard`` is what it resolves to."""

    shards: int = setting(
        SHARD_COUNT, "replicas sharing the fleet (env `CODAT_EXPORTER_SHARDS`)", default=1
    )
    shard: int | str = setting(
        SHARD_INDEX,
        "this replica's index, or `auto` from the hostname ordinal (env `CODAT_EXPORTER_SHARD`)",
        default="auto",
    )


def _shard(raw: Any, at: Where) -> Shard:
    keys = read_section(ShardingKeys, raw, at)
    reading = at.reading
    try:
        return resolve_shard(keys.shard, keys.shards, reading.hostname, reading.environ)
    except ShardingError as exc:
        raise ConfigError(f"{exc.key}: {exc}") from None


@dataclass(frozen=True)
class Config:
    """The whole file: a field per section, so a new section is one more field here."""

    codat: CodatConfig = section(CodatConfig, required=True)
    poll: PollConfig = section(PollConfig)
    companies: CompaniesConfig = section(CompaniesConfig)
    data_types: DataTypesConfig = section(DataTypesConfig)
    freshness: FreshnessConfig = section(FreshnessConfig)
    connections: ConnectionsConfig = section(ConnectionsConfig)
    shard: Shard = setting(
        Kind("section", _shard, section=ShardingKeys), "", key="sharding", default=Shard()
    )
    webhooks: WebhooksConfig = section(WebhooksConfig)
    diagnostics: DiagnosticsConfig = section(DiagnosticsConfig)
    state: StateConfig = section(StateConfig)
    metrics: MetricsConfig = section(MetricsConfig)
    refresh: RefreshConfig = section(RefreshConfig)
    status_page: StatusPageConfig = section(StatusPageConfig)
    warnings: tuple[str, ...] = ()
    """Accepted but doubtful values, one line each, key first."""

    def check(self, at: Where) -> None:
        if self.refresh.enabled and not self.refresh.dry_run and not self.state.file:
            raise ConfigError(
                f"{at.key('state').key('file')}: required when {at.key('refresh').key('enabled')}"
                " is true (without dry_run): each refresh is written beside it before it is "
                "sent, so that no restart resets the refresh caps"
            )

    def summary(self) -> str:
        """One line for ``--check-config`` and the start-up log; never shows the key."""
        companies = self.companies
        if companies.discover:
            which = f"companies discovered every {format_duration(companies.discovery_interval)}"
            if companies.ids:
                which += f" plus {len(companies.ids)} listed"
        else:
            which = plural(len(companies.ids), "company")
        if self.shard.count > 1:
            which += f" ({self.shard})"
        return (
            f"{which}, poll every {format_duration(self.poll.interval)} from "
            f"{self.codat.base_url}, {self.codat.max_concurrency} concurrent requests"
        )
