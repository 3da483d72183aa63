"""The kinds of value only the exporter's config file has, beyond the engine's durations,
booleans, strings and numbers (``exporter.config.settings``).

Each refuses what would fail later, or fail silently, with one line naming the key: a URL
carrying credentials, an ``Authorization`` header pasted as the key, a company listed twice,
a metric family no list applies to. Company ids are canonical (lower case) from here on, so
an id matches however it was written.

A data type name the contract does not list is a warning rather than an error (Codat adds
data types), carried on ``Config.warnings``::

    freshness.max_age.invoice: unknown data type; did you mean invoices?
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from exporter.config.listen import parse_listen_address
from exporter.config.settings import (
    DURATION,
    STRING,
    TEXT,
    ConfigError,
    Kind,
    Where,
    did_you_mean,
    list_of,
    shown,
)
from exporter.config.sharding import MAX_SHARDS
from exporter.core.contract import DATA_TYPES
from exporter.core.families import SCRAPE_METRICS, SNAPSHOT_METRICS

FILTERABLE = tuple(spec.name for spec in (*SNAPSHOT_METRICS, *SCRAPE_METRICS))
"""The families ``metrics.allowlist`` and ``metrics.denylist`` apply to."""
NEVER_REFRESHED = ("AuthError", "NotSupported", "PermissionsError", "PrerequisiteNotMet")
"""Statuses a new sync cannot fix (the customer must act), so refreshing only costs quota."""
REFRESHABLE = ("FetchError", "MapError", "ValidationError", "ProcessingError", "InternalError",
               "RateLimitError")  # fmt: skip


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
HOST_PORT = Kind("host:port", _listen_address)
PATH = Kind("path", _path)
FAMILY_PATTERNS = list_of(Kind("family", _family_pattern), "list of family names or regexes")
REFRESH_STATUSES = list_of(Kind("status", _refresh_status), "list of statuses")
SHARD_COUNT = Kind(f"integer, 1-{MAX_SHARDS:,}", _as_given)
SHARD_INDEX = Kind("integer from 0, or `auto`", _as_given)
