"""What the Codat contract (../shared/codat) says that the exporter relies on.

The status list is ``PullOperation.status`` of Codat's Platform API 3.0.0; the facts about
never-synced data types and date forms come from Codat's docs (see the contract README).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

from exporter.core.integrations import integration_key, link_url
from exporter.core.snapshot import CompanyInfo, ConnectionState, DataTypeStatus, SyncDetail

KNOWN_STATUSES: tuple[str, ...] = (
    "Initial",
    "Queued",
    "Fetching",
    "MapQueued",
    "Mapping",
    "Complete",
    "FetchError",
    "MapError",
    "InternalError",
    "ProcessingQueued",
    "Processing",
    "ProcessingError",
    "ValidationQueued",
    "Validating",
    "ValidationError",
    "AuthError",
    "Cancelled",
    "NotSupported",
    "RateLimitError",
    "PermissionsError",
    "PrerequisiteNotMet",
)

# The routes the exporter calls, as the contract spells them (also the `endpoint` label).
DATA_STATUS = "/companies/{companyId}/dataStatus"
COMPANY = "/companies/{companyId}"
COMPANIES = "/companies"
CONNECTIONS = "/companies/{companyId}/connections"
SYNC_SETTINGS = "/companies/{companyId}/syncSettings"
QUEUE_DATA_TYPE = "/companies/{companyId}/data/queue/{dataType}"
PULL_OPERATION = "/companies/{companyId}/data/history/{datasetId}"

NEVER_SYNCED = "NeverSynced"
"""Exported for a data type Codat lists without a ``currentStatus``: it was never synced."""

UNKNOWN_STATUS = "Unknown"
"""Exported for a ``currentStatus`` that is not a plain word (it could not be a real status)."""

IN_PROGRESS_STATUSES: tuple[str, ...] = (
    "Initial", "Queued", "Fetching", "MapQueued", "Mapping", "ProcessingQueued", "Processing",
    "ValidationQueued", "Validating",
)  # fmt: skip
"""A sync that has not ended yet: queued, or one of its stages running."""

CONNECTION_STATUSES: tuple[str, ...] = ("PendingAuth", "Linked", "Unlinked", "Deauthorized")
"""``Connection.status`` (dataConnectionStatus) of the contract."""

ERROR_STATUSES: tuple[str, ...] = (
    "FetchError",
    "MapError",
    "ValidationError",
    "ProcessingError",
    "InternalError",
    "RateLimitError",
    "PermissionsError",
    "PrerequisiteNotMet",
)

DATA_TYPES: tuple[str, ...] = (
    "accountTransactions", "balanceSheet", "bankAccounts", "bankTransactions",
    "billCreditNotes", "billPayments", "bills", "cashFlowStatement", "chartOfAccounts",
    "company", "creditNotes", "customers", "directCosts", "directIncomes", "invoices",
    "itemReceipts", "items", "journalEntries", "journals", "paymentMethods", "payments",
    "profitAndLoss", "purchaseOrders", "salesOrders", "suppliers", "taxRates",
    "trackingCategories", "transfers", "banking-accountBalances", "banking-accounts",
    "banking-transactionCategories", "banking-transactions", "commerce-companyInfo",
    "commerce-customers", "commerce-disputes", "commerce-locations", "commerce-orders",
    "commerce-paymentMethods", "commerce-payments", "commerce-productCategories",
    "commerce-products", "commerce-taxComponents", "commerce-transactions",
)  # fmt: skip

_PLAIN_WORD = re.compile(r"[A-Za-z]{1,64}")


def normalise_status(raw: object) -> str:
    """Map a ``currentStatus`` value to the label we export.

    >>> normalise_status(None), normalise_status("Complete"), normalise_status("Paused")
    ('NeverSynced', 'Complete', 'Paused')
    >>> normalise_status("<script>")
    'Unknown'

    A status Codat adds later is passed through when it looks like one (letters only, at
    most 64); anything else would only add junk series, so it becomes ``Unknown``.
    """
    if raw is None:
        return NEVER_SYNCED
    if isinstance(raw, str) and _PLAIN_WORD.fullmatch(raw):
        return raw
    return UNKNOWN_STATUS


_DATETIME = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[Tt ](?P<h>\d{2}):(?P<m>\d{2}):(?P<s>\d{2})(?:\.(?P<frac>\d{1,7}))?"
    r"(?P<tz>[Zz]|[+-]\d{2}:?\d{2})?)?"
)


def parse_datetime(text: str) -> float:
    """Parse a Codat DateTime into Unix seconds.

    Accepts the three forms Codat documents, with 0-7 fractional digits, and bare dates:

    >>> parse_datetime("2021-11-15T06:00:00Z") == parse_datetime("2021-11-15T01:00:00-05:00")
    True
    >>> parse_datetime("2022-11-14T11:18:37.2798351Z")
    1668424717.279835
    >>> parse_datetime("2021-11-15")
    1636934400.0

    Unqualified times (``2021-11-15T01:00:00``) are the business's local time, which the
    API does not tell; they are taken as UTC, whatever the exporter's own time zone.
    Raises ``ValueError`` for anything else, including impossible dates.
    """
    if not isinstance(text, str):
        raise ValueError(f"not a date string: {type(text).__name__}")
    match = _DATETIME.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a Codat DateTime: {text[:64]!r}")
    year, month, day = (int(part) for part in match["date"].split("-"))
    tz = _parse_offset(match["tz"])
    if match["h"] is None:
        moment = datetime(year, month, day, tzinfo=UTC)
    else:
        moment = datetime(
            year, month, day, int(match["h"]), int(match["m"]), int(match["s"]), tzinfo=tz
        )
    fraction = float("0." + match["frac"]) if match["frac"] else 0.0
    return moment.timestamp() + fraction


def _parse_offset(tz: str | None) -> timezone:
    if tz is None or tz in "Zz":
        return UTC
    sign = -1 if tz[0] == "-" else 1
    digits = tz[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:])
    if hours > 23 or minutes > 59:
        raise ValueError(f"bad UTC offset {tz!r}")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


class ShapeError(ValueError):
    """A 200 response whose JSON does not have the contract's shape."""


_DATA_TYPE_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,99}")


def parse_data_statuses(body: object, selects: Callable[[str], bool]) -> tuple[DataTypeStatus, ...]:
    """Interpret a ``DataStatuses`` body (object keyed by data type) for the data types kept.

    >>> parse_data_statuses({"invoices": {"dataType": "invoices", "currentStatus": "Complete",
    ...     "lastSuccessfulSync": "2024-01-01T00:00:00Z", "latestSyncId": "ad47",
    ...     "latestSuccessfulSyncId": "ad47"}, "suppliers": {"dataType": "suppliers"}},
    ...     lambda _: True)  # doctest: +NORMALIZE_WHITESPACE
    (DataTypeStatus(data_type='invoices', status='Complete', last_successful_sync=1704067200.0,
                    latest_sync_id='ad47', latest_successful_sync_id='ad47'),
     DataTypeStatus(data_type='suppliers', status='NeverSynced', last_successful_sync=None,
                    latest_sync_id='', latest_successful_sync_id=''))

    Any entry of the wrong shape or with a date that does not parse raises ``ShapeError``:
    the whole body is then suspect, and the company's last good values are kept instead.
    """
    if not isinstance(body, dict):
        raise ShapeError(f"dataStatus is {type(body).__name__}, not an object keyed by data type")
    result = []
    for key, entry in body.items():
        if entry is None:
            continue  # DataStatuses marks every property nullable
        if not isinstance(entry, dict):
            raise ShapeError(
                f"dataStatus[{str(key)[:64]!r}] is {type(entry).__name__}, not an object"
            )
        if not _DATA_TYPE_KEY.fullmatch(key):
            raise ShapeError(f"dataStatus key {key[:64]!r} is not a data type name")
        if not selects(key):
            continue
        status = normalise_status(entry.get("currentStatus"))
        raw_sync = entry.get("lastSuccessfulSync")
        try:
            last_sync = None if raw_sync is None else parse_datetime(raw_sync)
        except ValueError as exc:
            raise ShapeError(f"dataStatus[{key!r}].lastSuccessfulSync: {exc}") from None
        latest = _sync_id(entry.get("latestSyncId"))
        successful = _sync_id(entry.get("latestSuccessfulSyncId"))
        # One string for every company's "invoices" and "Complete", and one for a sync that
        # is both the latest and the latest successful: at 10,000 x 25 these copies were
        # about half of what the pairs held (bench/memory.py).
        result.append(DataTypeStatus(
            sys.intern(key), sys.intern(status), last_sync, latest,
            latest if successful == latest else successful,
        ))  # fmt: skip
    result.sort(key=lambda item: item.data_type)
    return tuple(result)


def _sync_id(value: object) -> str:
    """A pull operation id, or "" for anything that could not be one (it is only sent back
    to Codat, quoted, and compared)."""
    return text(value) if isinstance(value, str) and 0 < len(value) <= 64 else ""


_PAUSED_UNTIL = re.compile(r"\s*Paused until\s+(\S+)", re.IGNORECASE)
MAX_DETAIL = 500
"""Characters of a pull operation's errorMessage or statusDescription kept."""


def paused_until(description: str | None) -> float | None:
    """The end of a pause Codat describes as "Paused until <DateTime>", else None.

    >>> paused_until("Paused until 2022-10-23T00:00:00.000Z"), paused_until("Fetching")
    (1666483200.0, None)
    """
    match = _PAUSED_UNTIL.match(description or "")
    if match is None:
        return None
    try:
        return parse_datetime(match[1].rstrip("."))
    except ValueError:
        return None


def parse_pull_operation(body: object) -> SyncDetail:
    """A PullOperation body -> what the exporter keeps of it; ShapeError without an id and
    a status. A date that does not parse is left out rather than failing: the detail is a
    diagnosis, not a measurement."""
    if not isinstance(body, dict) or not isinstance(body.get("id"), str):
        raise ShapeError("pull operation without an id")
    status = body.get("status")
    if not isinstance(status, str):
        raise ShapeError("pull operation without a status")
    description = _detail(body.get("statusDescription"))
    progress = body.get("progress")
    return SyncDetail(
        sync_id=text(body["id"][:64]),
        status=normalise_status(status),
        error_message=_detail(body.get("errorMessage")),
        status_description=description,
        requested=_optional_datetime(body.get("requested")),
        completed=_optional_datetime(body.get("completed")),
        progress=progress if isinstance(progress, int) and not isinstance(progress, bool) else None,
        paused_until=paused_until(description),
        connection_id=_sync_id(body.get("connectionId")),
    )


def _detail(value: object) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    value = text(value.strip())
    return value if len(value) <= MAX_DETAIL else value[: MAX_DETAIL - 1] + "\u2026"


def _optional_datetime(value: object) -> float | None:
    try:
        return parse_datetime(value) if isinstance(value, str) else None
    except ValueError:
        return None


MAX_NAME = 256
"""Characters of a company name kept as a label value; longer ones end in an ellipsis."""

_SURROGATE = re.compile("[\ud800-\udfff]")


def text(value: str) -> str:
    """A string from Codat, safe to export: JSON can carry lone surrogates (``"\\ud800"``),
    which have no UTF-8 form and would fail the rendering of every company's metrics. Each
    becomes U+FFFD.

    >>> text("Caf\\u00e9 \\ud800!") == "Caf\\u00e9 \\ufffd!"
    True
    """
    return _SURROGATE.sub("\ufffd", value)


_UUID = re.compile(r"[0-9A-Fa-f]{8}-(?:[0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}")


def company_id(raw: str) -> str:
    """A company id as the exporter keys it: Codat's ids are UUIDs, whose case carries no
    meaning, so one in upper case is the same company; lower-cased. Anything else is kept
    as it is, since it is only ever sent back to Codat.

    >>> company_id("8A210B68-6988-11ED-A1EB-0242AC120002"), company_id("Not-A-UUID")
    ('8a210b68-6988-11ed-a1eb-0242ac120002', 'Not-A-UUID')
    """
    return raw.lower() if _UUID.fullmatch(raw) else raw


def parse_company(body: object) -> CompanyInfo:
    """The ``name`` and ``created`` of a Company body (GET /companies/{companyId});
    ShapeError when it has no name. A ``created`` that is missing or does not parse is
    left out rather than failing the poll: nothing but the NeverSynced alert needs it."""
    if not isinstance(body, dict) or not isinstance(body.get("name"), str):
        raise ShapeError("company body has no name")
    return company_info(body)


def company_info(item: dict[str, object]) -> CompanyInfo:
    """What a Company object (or an item of the company listing) says of the company."""
    created = item.get("created")
    try:
        created_at = parse_datetime(created) if isinstance(created, str) else None
    except ValueError:
        created_at = None
    name = text(str(item.get("name") or ""))
    if len(name) > MAX_NAME:
        name = name[: MAX_NAME - 1] + "\u2026"
    return CompanyInfo(name, created_at)


def parse_connections(items: list[object], keep_links: bool = False) -> tuple[ConnectionState, ...]:
    """Connection objects (from the paged listing) -> what the connection metrics and the
    status page need; each ``linkUrl`` only with ``keep_links`` (``link_url``)."""
    result = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise ShapeError("connection without an id")
        result.append(
            ConnectionState(
                connection_id=text(item["id"][:64]),
                platform=_label(item.get("platformName")),
                source_type=_label(item.get("sourceType")),
                status=normalise_status(item.get("status"))
                if item.get("status") is not None
                else UNKNOWN_STATUS,
                link_url=link_url(item.get("linkUrl")) if keep_links else "",
                integration_key=integration_key(item.get("integrationKey")),
            )
        )
    return tuple(sorted(result, key=lambda c: c.connection_id))


def parse_sync_schedules(body: object) -> dict[str, float]:
    """CompanySyncSettings -> ``syncSchedule`` hours per data type."""
    if not isinstance(body, dict) or not isinstance(body.get("settings"), list):
        raise ShapeError("syncSettings has no settings list")
    schedules = {}
    for setting in body["settings"]:
        if not isinstance(setting, dict) or not isinstance(setting.get("dataType"), str):
            raise ShapeError("sync setting without a dataType")
        hours = setting.get("syncSchedule")
        if isinstance(hours, int | float) and not isinstance(hours, bool):
            schedules[sys.intern(setting["dataType"])] = float(hours)
    return schedules


def _label(value: object) -> str:
    return text(value[:100]) if isinstance(value, str) else ""
