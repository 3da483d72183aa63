"""The YAML configuration (``--config.file``), declared once as frozen dataclasses.

Each section is a dataclass and each of its ``setting()`` fields a key, with its type,
default and description; ``exporter.config.settings`` reads a file against them, and README's
table is generated from them. Every problem becomes one ``ConfigError`` naming the key::

    poll.intervall: unknown key; did you mean interval?
    codat.timeout: '30 seconds' is not a duration (use e.g. 90s, 5m, 1h30m, 2d)

A data type name the contract does not list is a warning rather than an error (Codat adds
data types), carried on ``Config.warnings``::

    freshness.max_age.invoice: unknown data type; did you mean invoices?

``${VAR}`` in any string value is replaced from the environment before validation. Company
ids are canonical (lower case) from here on, so an id matches however it was written.
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from exporter.config.durations import format_duration, parse_duration
from exporter.config.listen import parse_listen_address
from exporter.config.secrets import parse_secret
from exporter.config.settings import (
    BOOL,
    DURATION,
    STRING,
    TEXT,
    ConfigError,
    Kind,
    Reading,
    Where,
    did_you_mean,
    join,
    list_of,
    number,
    read_section,
    read_yaml,
    section,
    setting,
    shown,
    whole_number,
)
from exporter.config.sharding import MAX_SHARDS, Shard, ShardingError, resolve_shard
from exporter.core.contract import DATA_TYPES
from exporter.core.families import SCRAPE_METRICS, SNAPSHOT_METRICS
from exporter.core.phrases import plural

__all__ = [
    "CodatConfig",
    "CompaniesConfig",
    "Config",
    "ConfigError",
    "ConnectionsConfig",
    "DataTypesConfig",
    "DiagnosticsConfig",
    "FreshnessConfig",
    "MetricsConfig",
    "PollConfig",
    "RefreshConfig",
    "StateConfig",
    "WebhooksConfig",
    "format_duration",
    "load_config",
    "parse_config",
    "parse_duration",
]

DEFAULT_BASE_URL = "https://api.codat.io"
FILTERABLE = tuple(spec.name for spec in (*SNAPSHOT_METRICS, *SCRAPE_METRICS))
"""The families ``metrics.allowlist`` and ``metrics.denylist`` apply to."""

# --- kinds of value only this file has ------------------------------------------------------


def _base_url(value: Any, at: Where) -> str:
    """The API root, without credentials: a ``user:password@`` part would end up in logs
    and errors, so it is refused without echoing the URL."""
    url = STRING.read(value, at).rstrip("/")
    if "@" in url:  # checked first: no message below may show a user:password@ part
        raise ConfigError(f"{at}: must not carry credentials; set codat.api_key instead")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not 0-65535
    except ValueError as exc:
        raise ConfigError(f"{at}: not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{at}: {url!r} is not an http(s) URL")
    if parts.query or parts.fragment:
        raise ConfigError(f"{at}: {url!r} must not have a query or fragment")
    return url


_AUTHORIZATION_HEADER = re.compile(r"(authorization\s*:\s*)?basic\s+\S", re.IGNORECASE)


def _api_key(value: Any, at: Where) -> str:
    """The raw key. ``Basic <base64>`` is the header the exporter makes from it: pasted
    instead, it would be encoded twice and rejected by Codat with nothing to say why."""
    key = STRING.read(value, at)
    if _AUTHORIZATION_HEADER.match(key):
        raise ConfigError(
            f"{at}: this is an Authorization header (Basic ...), not the API key; give the "
            "key as Codat's portal shows it, the exporter encodes it"
        )
    return key


def _company_id(value: Any, at: Where) -> str:
    """A Codat company id (a UUID) in canonical form: lower case, hyphenated."""
    text = STRING.read(value, at)
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise ConfigError(f"{at}: {text!r} is not a Codat company id (a UUID)") from None


def _company_ids(value: Any, at: Where) -> tuple[str, ...]:
    ids = list_of(COMPANY_ID).read(value, at)
    seen: set[str] = set()
    for i, company_id in enumerate(ids):
        if company_id in seen:
            raise ConfigError(f"{at.item(i)}: company {company_id} is listed twice")
        seen.add(company_id)
    return ids


def _check_data_type(name: str, at: Where, named: bool) -> None:
    """Warn about a name Codat's contract does not list; ``named``: ``at`` already shows it."""
    if name not in DATA_TYPES:
        which = "" if named else f" {shown(name)}"
        at.warn(f"unknown data type{which}{did_you_mean(name, DATA_TYPES)}")


def _data_types(value: Any, at: Where) -> frozenset[str]:
    names = list_of(STRING).read(value, at)
    for i, name in enumerate(names):
        _check_data_type(name, at.item(i), named=False)
    return frozenset(names)


def _max_ages(value: Any, at: Where) -> Mapping[str, float]:
    if not isinstance(value, dict):
        raise ConfigError(f"{at}: must be a mapping of data type to duration")
    ages = {str(name): DURATION.read(age, at.key(str(name))) for name, age in value.items()}
    for name in ages:
        _check_data_type(name, at.key(name), named=True)
    return ages


def _company_overrides(value: Any, at: Where) -> Mapping[str, Mapping[str, float]]:
    if not isinstance(value, dict):
        raise ConfigError(f"{at}: must be a mapping of company id to {{max_age: ...}}")
    overrides: dict[str, Mapping[str, float]] = {}
    for key, entry in value.items():
        where = at.key(str(key))
        company_id = _company_id(key, where)
        if company_id in overrides:
            raise ConfigError(f"{where}: company {company_id} is listed twice")
        overrides[company_id] = read_section(CompanyFreshness, entry, where).max_age
    return overrides


def _listen_address(value: Any, at: Where) -> str:
    address = TEXT.read(value, at)
    if address:
        try:
            parse_listen_address(address)
        except ValueError as exc:
            raise ConfigError(f"{at}: {exc}") from None
    return address


def _path(value: Any, at: Where) -> str:
    path = TEXT.read(value, at)
    if "\0" in path:  # no file has one; opening it would raise, not fail
        raise ConfigError(f"{at}: {shown(path)}: a NUL byte in the path")
    return path


def _as_given(value: Any, at: Where) -> Any:
    """Left for ``resolve_shard``, which checks it after the environment's overrides."""
    return value


COMPANY_ID = Kind("company id", _company_id)
API_KEY = Kind("string", _api_key)
BASE_URL = Kind("URL", _base_url)
COMPANY_IDS = Kind("list of company ids", _company_ids)
COMPANY_ID_SET = Kind("list of company ids", lambda v, at: frozenset(_company_ids(v, at)))
DATA_TYPE_SET = Kind("list of data types", _data_types)
MAX_AGES = Kind("mapping of data type to duration", _max_ages)
COMPANY_OVERRIDES = Kind("mapping of company id to `{max_age: …}`", _company_overrides)
HOST_PORT = Kind("host:port", _listen_address)
PATH = Kind("path", _path)
_NO_ENTRIES: Mapping[str, Any] = MappingProxyType({})


# --- the sections ---------------------------------------------------------------------------


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


def _family_pattern(value: Any, at: Where) -> str:
    """A family name or an anchored regular expression matching some filterable family."""
    text = STRING.read(value, at)
    try:
        pattern = re.compile(text)
    except re.error as exc:
        raise ConfigError(f"{at}: {text!r} is not a regular expression ({exc})") from None
    if not any(pattern.fullmatch(name) for name in FILTERABLE):
        raise ConfigError(
            f"{at}: {text!r} matches no metric family this list applies to"
            f"{did_you_mean(text, FILTERABLE)}"
        )
    return text


FAMILY_PATTERNS = list_of(Kind("family", _family_pattern), "list of family names or regexes")


@dataclass(frozen=True)
class MetricsConfig:
    """``metrics``: which of the families rendered from the snapshot are exported, as
    kube-state-metrics' ``--metric-allowlist`` / ``--metric-denylist``: a name or a regular
    expression matching whole names. The exporter's own counters are always exported."""

    allowlist: tuple[str, ...] = setting(
        FAMILY_PATTERNS, "export only these families (empty: all)", default=()
    )
    denylist: tuple[str, ...] = setting(
        FAMILY_PATTERNS, "never export these families; config.example.yaml shows the fleet "
        "preset's list (README)", default=(),
    )  # fmt: skip

    def check(self, at: Where) -> None:
        if self.allowlist and self.denylist:
            raise ConfigError(f"{at.key('allowlist')}: set allowlist or denylist, not both")

    def exports(self, family: str) -> bool:
        """Whether ``family`` is on /metrics.

        >>> MetricsConfig(denylist=("codat_data_type_status", "codat_data_type_last_.*")).exports(
        ...     "codat_data_type_last_successful_sync_age_seconds")
        False
        """
        if self.allowlist:
            return any(re.fullmatch(p, family) for p in self.allowlist)
        return not any(re.fullmatch(p, family) for p in self.denylist)


ALL_FAMILIES = MetricsConfig()


NEVER_REFRESHED = ("AuthError", "NotSupported", "PermissionsError", "PrerequisiteNotMet")
"""Statuses a new sync cannot fix (the customer must act), so refreshing only costs quota."""
REFRESHABLE = ("FetchError", "MapError", "ValidationError", "ProcessingError", "InternalError",
               "RateLimitError")  # fmt: skip


def _refresh_status(value: Any, at: Where) -> str:
    status = STRING.read(value, at)
    if status in NEVER_REFRESHED:
        raise ConfigError(
            f"{at}: {status} is never refreshed: a new sync cannot fix it, the customer must act"
        )
    if status not in REFRESHABLE:
        raise ConfigError(
            f"{at}: {status!r} is not a status a refresh can fix (one of {', '.join(REFRESHABLE)})"
        )
    return status


@dataclass(frozen=True)
class RefreshConfig:
    """``refresh``: queue a new sync of a pair that keeps failing with a transient error
    (``exporter.codat.refresh``). Off by default: it writes to Codat, and each sync costs quota."""

    enabled: bool = setting(BOOL, "queue syncs for pairs failing transiently", default=False)
    dry_run: bool = setting(
        BOOL, "log and count what would be queued, queue nothing", default=False
    )
    statuses: tuple[str, ...] = setting(
        list_of(Kind("status", _refresh_status), "list of statuses"),
        "the statuses that are refreshed (never AuthError, NotSupported, PermissionsError, "
        "PrerequisiteNotMet)", default=REFRESHABLE,
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


@dataclass(frozen=True)
class DataTypesConfig:
    """``data_types``: which of the data types Codat reports become series."""

    include: frozenset[str] = setting(
        DATA_TYPE_SET, "only these data types (empty: all)", default=frozenset()
    )
    exclude: frozenset[str] = setting(DATA_TYPE_SET, "never these data types", default=frozenset())

    def selects(self, data_type: str) -> bool:
        if self.include and data_type not in self.include:
            return False
        return data_type not in self.exclude


@dataclass(frozen=True)
class CompanyFreshness:
    """One entry of ``freshness.companies``."""

    max_age: Mapping[str, float] = setting(
        MAX_AGES, "this company's per data type thresholds", default=_NO_ENTRIES
    )


@dataclass(frozen=True)
class FreshnessConfig:
    """``freshness``: how old a data type's last successful sync may be before it is stale."""

    default_max_age: float = setting(
        DURATION, "staleness threshold for every data type", default=26 * 3600.0
    )
    max_age: Mapping[str, float] = setting(
        MAX_AGES, "per data type thresholds, e.g. `{invoices: 6h}`", default=_NO_ENTRIES
    )
    from_sync_settings: bool = setting(
        BOOL, "derive thresholds from Codat's sync schedules", default=False
    )
    sync_settings_interval: float = setting(
        DURATION, "how often each company's sync schedules are read again, with "
        "`from_sync_settings`", default=3600.0,
    )  # fmt: skip
    sync_schedule_factor: float = setting(
        number(100), "derived threshold = syncSchedule hours x this", default=2.0
    )
    companies: Mapping[str, Mapping[str, float]] = setting(
        COMPANY_OVERRIDES, "per company thresholds: `{<id>: {max_age: {invoices: 2h}}}`",
        default=_NO_ENTRIES,
    )  # fmt: skip
    """Per company id: per data type max age, overriding everything else."""

    def max_age_for(
        self, data_type: str, company_id: str = "", sync_schedule_hours: float | None = None
    ) -> float:
        """The effective threshold, first match wins:

        1. ``freshness.companies.<id>.max_age.<data type>``
        2. ``freshness.max_age.<data type>``
        3. the company's Codat ``syncSchedule`` (hours) x ``sync_schedule_factor``, when
           ``from_sync_settings`` and the schedule is on (above 0)
        4. ``freshness.default_max_age``

        >>> f = FreshnessConfig(max_age={"invoices": 21600}, from_sync_settings=True,
        ...                     companies={"c1": {"bills": 7200}})
        >>> [f.max_age_for("bills", "c1", 24), f.max_age_for("invoices", "c2", 24),
        ...  f.max_age_for("bills", "c2", 24), f.max_age_for("bills", "c2", 0)]
        [7200, 21600, 172800.0, 93600.0]
        """
        per_company = self.companies.get(company_id)
        if per_company and data_type in per_company:
            return per_company[data_type]
        if data_type in self.max_age:
            return self.max_age[data_type]
        if self.from_sync_settings and sync_schedule_hours and sync_schedule_hours > 0:
            return sync_schedule_hours * 3600.0 * self.sync_schedule_factor
        return self.default_max_age


@dataclass(frozen=True)
class ShardingKeys:
    """The ``sharding`` section as written; ``Config.shard`` is what it resolves to."""

    shards: int = setting(
        Kind(f"integer, 1-{MAX_SHARDS:,}", _as_given),
        "replicas sharing the fleet (env `CODAT_EXPORTER_SHARDS`)",
        default=1,
    )  # fmt: skip
    shard: int | str = setting(
        Kind("integer from 0, or `auto`", _as_given),
        "this replica's index, or `auto` from the hostname ordinal (env `CODAT_EXPORTER_SHARD`)",
        default="auto",
    )  # fmt: skip


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


# --- loading --------------------------------------------------------------------------------


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read, substitute and validate a config file; raise ``ConfigError`` on any problem."""
    environ = os.environ if environ is None else environ
    raw = read_yaml(path, "config file")
    return parse_config(_substitute(raw, "", environ), environ)


def parse_config(
    raw: Any, environ: Mapping[str, str] | None = None, hostname: str | None = None
) -> Config:
    """Validate an already-loaded mapping (used by ``load_config`` and by ``--demo``).

    ``environ`` and ``hostname`` only matter to ``sharding`` (env overrides, ``shard: auto``).
    """
    reading = Reading(
        os.environ if environ is None else environ,
        socket.gethostname() if hostname is None else hostname,
    )
    config = read_section(Config, raw, Where(reading))
    return replace(config, warnings=tuple(reading.warnings))


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$\$")


def _substitute(value: Any, path: str, environ: Mapping[str, str]) -> Any:
    if isinstance(value, str):

        def variable(match: re.Match[str]) -> str:
            if match[0] == "$$":
                return "$"
            if match[1] not in environ:
                raise ConfigError(f"{path or '<top>'}: environment variable {match[1]} is not set")
            return environ[match[1]]

        return _VAR.sub(variable, value)
    if isinstance(value, dict):
        return {k: _substitute(v, join(path, str(k)), environ) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, f"{path}[{i}]", environ) for i, v in enumerate(value)]
    return value
