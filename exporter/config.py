"""The YAML configuration, validated up front into frozen dataclasses.

Every problem becomes one ``ConfigError`` whose message names the key path, e.g.::

    poll.intervall: unknown key; did you mean interval?
    codat.timeout: '30 seconds' is not a duration (use e.g. 90s, 5m, 1h30m, 2d)

``${VAR}`` in any string value is replaced from the environment before validation.
"""

from __future__ import annotations

import difflib
import os
import re
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import yaml

from exporter.sharding import Shard, ShardingError, resolve_shard

T = TypeVar("T")

DEFAULT_BASE_URL = "https://api.codat.io"


class ConfigError(Exception):
    """A configuration problem, already phrased for the operator (one line, key first)."""


@dataclass(frozen=True)
class CodatConfig:
    api_key: str = field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    timeout: float = 30.0
    max_concurrency: int = 4
    max_requests_per_minute: int = 600
    max_response_bytes: int = 10 * 1024 * 1024


@dataclass(frozen=True)
class PollConfig:
    interval: float = 300.0


@dataclass(frozen=True)
class CompaniesConfig:
    ids: tuple[str, ...] = ()
    discover: bool = False
    discovery_interval: float = 3600.0
    page_size: int = 1000
    tags: str = ""
    query: str = ""
    exclude: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ConnectionsConfig:
    enabled: bool = True
    interval: float = 1800.0


@dataclass(frozen=True)
class WebhooksConfig:
    enabled: bool = False
    secret: str = field(default="", repr=False)
    listen_address: str = ""
    """Empty: POST /webhooks/codat on the main listener."""
    max_body_bytes: int = 256 * 1024
    debounce: float = 5.0


@dataclass(frozen=True)
class DataTypesConfig:
    include: frozenset[str] = frozenset()
    exclude: frozenset[str] = frozenset()

    def selects(self, data_type: str) -> bool:
        if self.include and data_type not in self.include:
            return False
        return data_type not in self.exclude


@dataclass(frozen=True)
class FreshnessConfig:
    default_max_age: float = 26 * 3600.0
    max_age: Mapping[str, float] = field(default_factory=dict)
    from_sync_settings: bool = False
    sync_schedule_factor: float = 2.0
    companies: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
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
class Config:
    codat: CodatConfig
    poll: PollConfig = PollConfig()
    companies: CompaniesConfig = CompaniesConfig()
    data_types: DataTypesConfig = DataTypesConfig()
    freshness: FreshnessConfig = FreshnessConfig()
    connections: ConnectionsConfig = ConnectionsConfig()
    shard: Shard = field(default_factory=Shard)
    webhooks: WebhooksConfig = WebhooksConfig()

    def summary(self) -> str:
        """One line for ``--check-config`` and the start-up log; never shows the key."""
        companies = self.companies
        if companies.discover:
            which = f"companies discovered every {format_duration(companies.discovery_interval)}"
            if companies.ids:
                which += f" plus {len(companies.ids)} listed"
        else:
            which = f"{len(companies.ids)} companies"
        if self.shard.count > 1:
            which += f" ({self.shard})"
        return (
            f"{which}, poll every {format_duration(self.poll.interval)} from "
            f"{self.codat.base_url}, {self.codat.max_concurrency} concurrent requests"
        )


# --- durations ---------------------------------------------------------------------------

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w)")


def parse_duration(text: str) -> float:
    """``90s``, ``5m``, ``1h30m``, ``2d``, ``250ms`` -> seconds (Prometheus-style units)."""
    pos, total, last_rank = 0, 0.0, -1
    ranks = list(_UNITS)
    while pos < len(text):
        match = _DURATION.match(text, pos)
        if match is None:
            raise ValueError(text)
        rank = len(ranks) - ranks.index(match[2])
        if rank <= last_rank:
            raise ValueError(text)  # units must go from largest to smallest, once each
        last_rank = rank
        total += int(match[1]) * _UNITS[match[2]]
        pos = match.end()
    if pos == 0:
        raise ValueError(text)
    return total


def format_duration(seconds: float) -> str:
    """The inverse of ``parse_duration`` for display: 5400 -> '1h30m'."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    out, rest = "", int(seconds)
    for unit in ("d", "h", "m", "s"):
        size = int(_UNITS[unit])
        if rest >= size:
            out += f"{rest // size}{unit}"
            rest %= size
    return out or "0s"


# --- loading -----------------------------------------------------------------------------


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read, substitute and validate a config file; raise ``ConfigError`` on any problem."""
    environ = os.environ if environ is None else environ
    raw = read_yaml(path, "config file")
    return parse_config(_substitute(raw, "", environ), environ)


def read_yaml(path: str | os.PathLike[str], what: str) -> Any:
    """A YAML file's content ({} when empty), or a ConfigError naming the file and line.

    The message gives YAML's description of the problem, never the offending text, which
    may be a secret on a line of its own.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: {what} is not UTF-8 text") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}{where}: not valid YAML: {problem}") from None
    except RecursionError:  # PyYAML's parser recurses once per level of nesting
        raise ConfigError(f"{path}: not valid YAML: nested too deeply") from None
    return {} if raw is None else raw


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$\$")


def _substitute(value: Any, path: str, environ: Mapping[str, str]) -> Any:
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            if match[0] == "$$":
                return "$"
            if match[1] not in environ:
                raise ConfigError(f"{path or '<top>'}: environment variable {match[1]} is not set")
            return environ[match[1]]

        return _VAR.sub(replace, value)
    if isinstance(value, dict):
        return {k: _substitute(v, _join(path, str(k)), environ) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, f"{path}[{i}]", environ) for i, v in enumerate(value)]
    return value


def _join(path: str, key: str) -> str:
    key = _shown(key)
    return f"{path}.{key}" if path else key


def _shown(text: str) -> str:
    """``text`` for an error message, quoted when it would break the message's one line."""
    return text if text.isprintable() and text else repr(text)


def _section(raw: Any, path: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path or '<top>'}: must be a mapping, not {_kind(raw)}")
    for key in raw:
        if not isinstance(key, str) or key not in allowed:
            hint = difflib.get_close_matches(str(key), allowed, n=1)
            suggestion = (
                f"; did you mean {hint[0]}?" if hint else f"; known keys: {', '.join(allowed)}"
            )
            raise ConfigError(f"{_join(path, str(key))}: unknown key{suggestion}")
    return raw


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__
    )


def _get(
    section: dict[str, Any], path: str, key: str, conv: Callable[[Any, str], T], default: T
) -> T:
    if key not in section or section[key] is None:
        return default
    return conv(section[key], _join(path, key))


MAX_DURATION = 10 * 365 * 86400.0
"""Longer would be a mistake, and far longer overflows the scheduler's timedelta."""


def _duration(value: Any, path: str) -> float:
    if isinstance(value, str):
        try:
            seconds = parse_duration(value.strip())
        except (ValueError, OverflowError):  # overflow: more digits than a float holds
            pass
        else:
            if seconds <= 0:
                raise ConfigError(f"{path}: must be longer than 0s")
            if seconds > MAX_DURATION:
                raise ConfigError(f"{path}: must be at most 3650d")
            return seconds
    raise ConfigError(f"{path}: {value!r} is not a duration (use e.g. 90s, 5m, 1h30m, 2d)")


def _positive_int(limit: int) -> Callable[[Any, str], int]:
    def conv(value: Any, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
            raise ConfigError(f"{path}: must be a whole number from 1 to {limit}, not {value!r}")
        return value

    return conv


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{path}: must be true or false, not {value!r}")
    return value


def _factor(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 100:
        raise ConfigError(f"{path}: must be a number above 0 and at most 100, not {value!r}")
    return float(value)


def _string(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{path}: must be a non-empty string")
    return value.strip()


def _text(value: Any, path: str) -> str:
    """A string that may be empty (empty: not set)."""
    if not isinstance(value, str):
        raise ConfigError(f"{path}: must be a string, not {_kind(value)}")
    return value.strip()


def _string_list(value: Any, path: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{path}: must be a list, not {_kind(value)}")
    return tuple(_string(item, f"{path}[{i}]") for i, item in enumerate(value))


def _company_ids(value: Any, path: str) -> tuple[str, ...]:
    ids = _string_list(value, path)
    seen: set[str] = set()
    for i, company_id in enumerate(ids):
        try:
            canonical = str(uuid.UUID(company_id))
        except ValueError:
            raise ConfigError(
                f"{path}[{i}]: {company_id!r} is not a Codat company id (a UUID)"
            ) from None
        if canonical in seen:
            raise ConfigError(f"{path}[{i}]: company {company_id} is listed twice")
        seen.add(canonical)
    return ids


def _base_url(value: Any, path: str) -> str:
    """The API root, without credentials: a ``user:password@`` part would end up in logs
    and errors, so it is refused without echoing the URL."""
    url = _string(value, path).rstrip("/")
    if "@" in url:  # checked first: no message below may show a user:password@ part
        raise ConfigError(f"{path}: must not carry credentials; set codat.api_key instead")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not 0-65535
    except ValueError as exc:
        raise ConfigError(f"{path}: not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{path}: {url!r} is not an http(s) URL")
    if parts.query or parts.fragment:
        raise ConfigError(f"{path}: {url!r} must not have a query or fragment")
    return url


def _max_ages(value: Any, path: str) -> dict[str, float]:
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: must be a mapping of data type to duration")
    return {str(k): _duration(v, _join(path, str(k))) for k, v in value.items()}


_NO_MAX_AGES: dict[str, float] = {}
_NO_OVERRIDES: dict[str, dict[str, float]] = {}


def _company_overrides(value: Any, path: str) -> dict[str, dict[str, float]]:
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: must be a mapping of company id to {{max_age: ...}}")
    result: dict[str, dict[str, float]] = {}
    for company_id, section in value.items():
        where = _join(path, str(company_id))
        _company_ids([company_id], where)
        entry = _section(section, where, ("max_age",))
        result[str(company_id)] = _get(entry, where, "max_age", _max_ages, _NO_MAX_AGES)
    return result


def _api_key(codat: dict[str, Any]) -> str:
    has_key, has_file = codat.get("api_key") is not None, codat.get("api_key_file") is not None
    if has_key == has_file:
        raise ConfigError("codat.api_key: set exactly one of codat.api_key and codat.api_key_file")
    if has_key:
        return _string(codat["api_key"], "codat.api_key")
    key_path = _string(codat["api_key_file"], "codat.api_key_file")
    try:
        key = Path(key_path).read_text(encoding="utf-8").strip()
    except (OSError, ValueError) as exc:
        reason = {UnicodeDecodeError: "not UTF-8 text", ValueError: "a NUL byte in the path"}.get(
            type(exc), getattr(exc, "strerror", None) or "unreadable"
        )
        raise ConfigError(f"codat.api_key_file: cannot read {_shown(key_path)}: {reason}") from None
    if not key:
        raise ConfigError(f"codat.api_key_file: {_shown(key_path)} is empty")
    return key


def parse_config(
    raw: Any, environ: Mapping[str, str] | None = None, hostname: str | None = None
) -> Config:
    """Validate an already-loaded mapping (used by ``load_config`` and by ``--demo``).

    ``environ`` and ``hostname`` only matter to ``sharding`` (env overrides, ``shard: auto``).
    """
    top = _section(raw, "", (
        "codat", "poll", "companies", "data_types", "freshness", "connections", "sharding",
        "webhooks",
    ))  # fmt: skip
    codat = _section(top.get("codat"), "codat", (
        "base_url", "api_key", "api_key_file", "timeout", "max_concurrency",
        "max_requests_per_minute", "max_response_bytes",
    ))  # fmt: skip
    poll = _section(top.get("poll"), "poll", ("interval",))
    companies = _section(top.get("companies"), "companies", (
        "ids", "discover", "discovery_interval", "page_size", "tags", "query", "exclude",
    ))  # fmt: skip
    data_types = _section(top.get("data_types"), "data_types", ("include", "exclude"))
    freshness = _section(top.get("freshness"), "freshness", (
        "default_max_age", "max_age", "from_sync_settings", "sync_schedule_factor", "companies",
    ))  # fmt: skip
    connections = _section(top.get("connections"), "connections", ("enabled", "interval"))
    sharding = _section(top.get("sharding"), "sharding", ("shards", "shard"))

    no_ids: tuple[str, ...] = ()  # typed empty default for _get
    ids = _get(companies, "companies", "ids", _company_ids, no_ids)
    discover = _get(companies, "companies", "discover", _bool, False)
    if not ids and not discover:
        raise ConfigError(
            "companies.ids: list at least one Codat company id, or set companies.discover: true"
        )
    defaults = FreshnessConfig()
    return Config(
        codat=CodatConfig(
            api_key=_api_key(codat),
            base_url=_get(codat, "codat", "base_url", _base_url, DEFAULT_BASE_URL),
            timeout=_get(codat, "codat", "timeout", _duration, 30.0),
            max_concurrency=_get(codat, "codat", "max_concurrency", _positive_int(64), 4),
            max_requests_per_minute=_get(
                codat, "codat", "max_requests_per_minute", _positive_int(100_000), 600
            ),
            max_response_bytes=_get(
                codat, "codat", "max_response_bytes", _positive_int(1 << 30), 10 * 1024 * 1024
            ),
        ),
        poll=PollConfig(interval=_get(poll, "poll", "interval", _duration, 300.0)),
        companies=CompaniesConfig(
            ids=ids,
            discover=discover,
            discovery_interval=_get(
                companies, "companies", "discovery_interval", _duration, 3600.0
            ),
            page_size=_get(companies, "companies", "page_size", _positive_int(2000), 1000),
            tags=_get(companies, "companies", "tags", _text, ""),
            query=_get(companies, "companies", "query", _text, ""),
            exclude=frozenset(_get(companies, "companies", "exclude", _company_ids, no_ids)),
        ),
        data_types=DataTypesConfig(
            include=frozenset(_get(data_types, "data_types", "include", _string_list, no_ids)),
            exclude=frozenset(_get(data_types, "data_types", "exclude", _string_list, no_ids)),
        ),
        freshness=FreshnessConfig(
            default_max_age=_get(
                freshness, "freshness", "default_max_age", _duration, defaults.default_max_age
            ),
            max_age=_get(freshness, "freshness", "max_age", _max_ages, _NO_MAX_AGES),
            from_sync_settings=_get(freshness, "freshness", "from_sync_settings", _bool, False),
            sync_schedule_factor=_get(freshness, "freshness", "sync_schedule_factor", _factor, 2.0),
            companies=_get(freshness, "freshness", "companies", _company_overrides, _NO_OVERRIDES),
        ),
        connections=ConnectionsConfig(
            enabled=_get(connections, "connections", "enabled", _bool, True),
            interval=_get(connections, "connections", "interval", _duration, 1800.0),
        ),
        shard=_shard(sharding, environ, hostname),
        webhooks=_webhooks(top.get("webhooks")),
    )


def _webhooks(raw: Any) -> WebhooksConfig:
    section = _section(raw, "webhooks", (
        "enabled", "secret", "listen_address", "max_body_bytes", "debounce",
    ))  # fmt: skip
    enabled = _get(section, "webhooks", "enabled", _bool, False)
    secret = _get(section, "webhooks", "secret", _text, "")
    if enabled:
        from exporter.webhooks import parse_secret  # validates whsec_<base64>

        if not secret:
            raise ConfigError("webhooks.secret: required when webhooks.enabled is true")
        parse_secret(secret, "webhooks.secret")
    listen = _get(section, "webhooks", "listen_address", _text, "")
    if listen and not re.fullmatch(r"(\[[0-9A-Fa-f:]+\]|[^:]*):\d{1,5}", listen):
        raise ConfigError(f"webhooks.listen_address: {listen!r} is not host:port")
    return WebhooksConfig(
        enabled=enabled,
        secret=secret,
        listen_address=listen,
        max_body_bytes=_get(
            section, "webhooks", "max_body_bytes", _positive_int(16 << 20), 256 << 10
        ),
        debounce=_get(section, "webhooks", "debounce", _duration, 5.0),
    )


def _shard(
    sharding: dict[str, Any], environ: Mapping[str, str] | None, hostname: str | None
) -> Shard:
    shard: Any = sharding.get("shard")
    shards: Any = sharding.get("shards")
    try:
        return resolve_shard(
            "auto" if shard is None else shard,
            1 if shards is None else shards,
            socket.gethostname() if hostname is None else hostname,
            os.environ if environ is None else environ,
        )
    except ShardingError as exc:
        raise ConfigError(f"{exc.key}: {exc}") from None
