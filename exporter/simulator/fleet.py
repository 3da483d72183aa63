"""A seeded fleet of simulated Codat companies whose data status is a function of time.

Each data type syncs every ``period`` seconds from a fixed phase. Whether sync *k* succeeds
is a hash of (seed, company, data type, k), so the whole history exists without being
stored: asking at any instant gives a consistent answer, and moving an injected clock
forward makes syncs complete, fail and recover. Scenario profiles pin the cases a user
must see (AuthError, stale, never synced, first sync failed, recovering, every status).

Tests can also replace any company's dataStatus body or connections verbatim (``override``,
``override_connections``), inject
faults (``inject``), which the server applies before answering, and make listings page
inconsistently (``paging``).
"""

from __future__ import annotations

import hashlib
import math
import random
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from exporter.clock import Clock
from exporter.codat import DATA_TYPES, ERROR_STATUSES, KNOWN_STATUSES

HOUR = 3600.0
DAY = 24 * HOUR
IN_PROGRESS = ("Queued", "Fetching", "MapQueued", "Mapping", "ProcessingQueued", "Processing",
               "ValidationQueued", "Validating")  # fmt: skip
DATE_STYLES = ("z3", "z7", "offset", "unqualified", "z0", "z6")

_FIRST = ("Acme", "Bramble", "Copper", "Delta", "Ember", "Fjord", "Granite", "Harbour",
          "Indigo", "Juniper", "Kestrel", "Lumen", "Meridian", "Northwind", "Oakridge",
          "Pioneer", "Quarry", "Riverside", "Summit", "Tidewater")  # fmt: skip
_SECOND = ("Bakery", "Logistics", "Analytics", "Outfitters", "Dental", "Brewing", "Joinery",
           "Studios", "Farms", "Freight", "Pharmacy", "Robotics")  # fmt: skip
_SUFFIX = ("Ltd", "LLC", "Inc", "GmbH", "& Co", "Plc")

CONSISTENT = "consistent"
NEXT_ON_LAST_PAGE = "next_on_last_page"
"""Every page links a next one, the last too (past it come empty pages); totalResults is right."""
TOTAL_TOO_HIGH = "total_too_high"
"""totalResults counts a page more than there is; the last page links no next one."""
PAGING_STYLES = (CONSISTENT, NEXT_ON_LAST_PAGE, TOTAL_TOO_HIGH)


@dataclass
class SimDataType:
    data_type: str
    period: float
    phase: float
    first_sync: float
    fail_rate: float = 0.03
    never_synced: bool = False
    fail_since: float | None = None
    fail_until: float = math.inf
    fail_status: str = "FetchError"
    date_style: str = "z3"
    shows_progress: bool = True
    """Whether a sync shows Queued, Fetching, ... while it runs (off: pinned statuses)."""


@dataclass
class SimCompany:
    id: str
    name: str
    created: float
    profile: str
    data_types: dict[str, SimDataType]
    tags: dict[str, str] = field(default_factory=dict)
    connection_status: str | None = None
    """Overrides the profile's connection status (tests: a connection being deauthorized)."""


@dataclass
class Fault:
    """What the server does instead of (or before) answering normally.

    kind: ``status`` (HTTP ``status`` with an ErrorMessage), ``html`` (``status`` with an HTML
    page), ``latency`` (wait ``seconds`` then answer), ``malformed`` (200, not JSON),
    ``wrong_shape`` (200, a JSON list), ``truncated`` (200, JSON cut short), ``reset``
    (close the connection), ``cut`` (200 and half the body its Content-Length announces,
    then reset), ``empty`` (200, ``{}``), ``oversized`` (200, a JSON body of ``size`` bytes).

    Three never finish on their own, so that a test of the client's timeouts does not
    depend on how fast the machine is: ``hang`` (no answer at all), ``stall`` (200 and half
    the body, then nothing) and ``trickle`` (200, then a byte every ``seconds`` of a body
    that never ends). Each holds its connection until the fault is cleared (``released``
    is set) or the server stops, then closes it.
    """

    kind: str
    status: int = 500
    seconds: float = 0.0
    retry_after: str | None = None
    size: int = 11 * 1024 * 1024
    times: int | None = None
    """How many requests it applies to; None: until cleared."""
    endpoint: str | None = None
    """Only requests to this route template, e.g. '/companies/{companyId}/dataStatus'."""
    released: threading.Event = field(default_factory=threading.Event, repr=False)


@dataclass
class Fleet:
    clock: Clock
    seed: int = 1
    companies: dict[str, SimCompany] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    connection_overrides: dict[str, list[Any]] = field(default_factory=dict)
    faults: dict[str, list[Fault]] = field(default_factory=dict)
    epoch: float = 0.0
    paging: str = CONSISTENT
    """One of PAGING_STYLES: whether ``_links.next`` and ``totalResults`` agree on the last page."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def generate(
        cls, clock: Clock, companies: int = 20, seed: int = 1, data_types_per_company: int = 12
    ) -> Fleet:
        """A fleet whose first companies are the scenario profiles, the rest healthy."""
        fleet = cls(clock=clock, seed=seed, epoch=clock.time())
        rng = random.Random(seed)  # noqa: S311 - simulation, not cryptography
        profiles = ["auth_error", "stale", "never_synced", "first_failed", "recovering",
                    "degrading", "showcase"]  # fmt: skip
        for index in range(companies):
            profile = profiles[index] if index < len(profiles) else "healthy"
            company = fleet._make_company(rng, index, profile, data_types_per_company)
            fleet.companies[company.id] = company
        return fleet

    def _make_company(self, rng: random.Random, index: int, profile: str, count: int) -> SimCompany:
        company_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        name = f"{rng.choice(_FIRST)} {rng.choice(_SECOND)} {rng.choice(_SUFFIX)}"
        if index == 1:
            name = "O'Brien & Daughters Ltd"
        epoch = self.epoch
        created = epoch - rng.uniform(30, 400) * DAY
        style = DATE_STYLES[index % len(DATE_STYLES)]
        if profile == "showcase":
            chosen = list(DATA_TYPES[: len(KNOWN_STATUSES)])
        else:
            chosen = ["invoices", "bills", "customers", "payments", "suppliers"]
            others = [d for d in DATA_TYPES if d not in chosen]
            chosen += rng.sample(others, max(0, min(count, len(DATA_TYPES)) - len(chosen)))
        if profile == "first_failed":
            created = epoch - 3 * HOUR
        data_types = {}
        for position, data_type in enumerate(chosen):
            period = HOUR if data_type == "invoices" else rng.choice([HOUR, 4 * HOUR, 12 * HOUR])
            sim = SimDataType(
                data_type=data_type,
                period=period,
                phase=rng.uniform(0, period),
                first_sync=created + rng.uniform(0, HOUR),
                date_style=style,
            )
            self._apply_profile(sim, profile, position)
            data_types[data_type] = sim
        if profile == "showcase":
            data_types["company"].date_style = "date"
        tags = {"profile": profile, "region": ("uk", "us", "de")[index % 3]}
        return SimCompany(company_id, name, created, profile, data_types, tags)

    def _apply_profile(self, sim: SimDataType, profile: str, position: int) -> None:
        epoch = self.epoch
        if profile == "auth_error":
            sim.fail_since, sim.fail_status = epoch - 2 * DAY, "AuthError"
        elif profile == "stale" and sim.data_type in ("invoices", "bills"):
            sim.fail_since, sim.fail_status = epoch - 30 * HOUR, "FetchError"
        elif profile == "never_synced" and position >= 3:
            sim.never_synced = True
        elif profile == "first_failed" and sim.data_type in ("invoices", "payments"):
            sim.fail_since, sim.fail_status = 0.0, "PrerequisiteNotMet"
        elif profile == "recovering" and sim.data_type == "payments":
            sim.fail_since, sim.fail_until = epoch - 3 * HOUR, epoch + 3 * 60
            sim.period, sim.phase, sim.fail_status = 60.0, 0.0, "FetchError"
        elif profile == "degrading" and sim.data_type == "customers":
            sim.fail_since, sim.fail_status = epoch + 2 * 60, "MapError"
            sim.period, sim.phase = 60.0, 0.0
        elif profile == "showcase":
            # Hourly syncs, so that every pinned status has replaced the last good one by start.
            sim.fail_since, sim.fail_status = epoch - 2 * HOUR, KNOWN_STATUSES[position]
            sim.period, sim.fail_rate, sim.shows_progress = HOUR, 0.0, False
        if profile in ("auth_error", "stale", "first_failed", "showcase"):
            sim.fail_rate = 0.0

    # --- the state at an instant --------------------------------------------------------

    def _unit(self, company_id: str, data_type: str, k: int, salt: str = "") -> float:
        digest = hashlib.blake2b(
            f"{self.seed}:{company_id}:{data_type}:{k}:{salt}".encode(), digest_size=8
        ).digest()
        return int.from_bytes(digest, "big") / 2**64

    def _outcome(self, company_id: str, sim: SimDataType, k: int) -> str:
        start = sim.phase + k * sim.period
        if sim.fail_since is not None and sim.fail_since <= start < sim.fail_until:
            return sim.fail_status
        if self._unit(company_id, sim.data_type, k) < sim.fail_rate:
            choice = self._unit(company_id, sim.data_type, k, "status")
            return ERROR_STATUSES[int(choice * len(ERROR_STATUSES))]
        return "Complete"

    def data_type_status(self, company_id: str, sim: SimDataType, now: float) -> dict[str, Any]:
        """One DataStatus entry as Codat would return it at ``now``."""
        entry: dict[str, Any] = {"dataType": sim.data_type}
        if sim.never_synced or now < sim.first_sync:
            return entry
        k_first = math.ceil((sim.first_sync - sim.phase) / sim.period)
        k_now = math.floor((now - sim.phase) / sim.period)
        if k_now < k_first:
            return entry
        duration = min(sim.period * 0.1, 300.0)
        started = sim.phase + k_now * sim.period
        if sim.shows_progress and now - started < duration:
            fraction = (now - started) / duration
            entry["currentStatus"] = IN_PROGRESS[int(fraction * len(IN_PROGRESS))]
            completed = k_now - 1
        else:
            entry["currentStatus"] = self._outcome(company_id, sim, k_now)
            completed = k_now
        entry["latestSyncId"] = self._sync_id(company_id, sim.data_type, k_now)
        for k in range(completed, max(k_first, completed - 5000) - 1, -1):
            if self._outcome(company_id, sim, k) == "Complete":
                moment = sim.phase + k * sim.period + duration
                moment += self._unit(company_id, sim.data_type, k, "fraction")
                entry["lastSuccessfulSync"] = format_datetime(moment, sim.date_style)
                entry["latestSuccessfulSyncId"] = self._sync_id(company_id, sim.data_type, k)
                break
        return entry

    def _sync_id(self, company_id: str, data_type: str, k: int) -> str:
        return _uuid(f"{self.seed}:{company_id}:{data_type}:{k}:sync")

    def data_status(self, company_id: str) -> Any:
        """The dataStatus body for a company at the clock's current time."""
        with self._lock:
            if company_id in self.overrides:
                return self.overrides[company_id]
            company = self.companies[company_id]
        now = self.clock.time()
        return {
            name: self.data_type_status(company_id, sim, now)
            for name, sim in company.data_types.items()
        }

    def company_body(self, company_id: str) -> dict[str, Any]:
        company = self.companies[company_id]
        return {
            "id": company.id,
            "name": company.name,
            "description": f"Simulated company ({company.profile})",
            "redirect": f"https://link.codat.io/company/{company.id}",
            "created": format_datetime(company.created, "z3"),
            "lastSync": format_datetime(max(company.created, self.clock.time() - 600), "z7"),
            "createdByUserName": "simulator",
            "products": ["lending"],
            "tags": dict(company.tags),
            "referenceSubsidiaryCompanies": [],
            "dataConnections": self.connections(company_id),
        }

    def connections(self, company_id: str) -> list[dict[str, Any]]:
        """The company's Connection objects: an accounting one, and a bank feed for some."""
        with self._lock:
            if company_id in self.connection_overrides:
                return list(self.connection_overrides[company_id])
            company = self.companies[company_id]
        status = company.connection_status
        if status is None:
            status = {"auth_error": "Deauthorized", "first_failed": "PendingAuth"}.get(
                company.profile, "Linked"
            )
        platforms = [("gbol", "Xero", "Accounting", status)]
        if self._unit(company.id, "", 0, "bank") < 0.4:
            platforms.append(("ugxp", "Plaid", "Banking", "Linked"))
        result = []
        for key, platform, source_type, connection_status in platforms:
            connection_id = _uuid(f"{self.seed}:{company.id}:connection:{key}")
            result.append({
                "id": connection_id,
                "integrationId": _uuid(f"integration:{key}"),
                "integrationKey": key,
                "sourceId": _uuid(f"source:{key}"),
                "sourceType": source_type,
                "platformName": platform,
                "linkUrl": f"https://link-api.codat.io/companies/{company.id}/connections/"
                f"{connection_id}/start",
                "status": connection_status,
                "created": format_datetime(company.created, "z0"),
            })  # fmt: skip
        return result

    def sync_settings(self, company_id: str) -> dict[str, Any]:
        """CompanySyncSettings: each data type's schedule is its sync period, in whole hours."""
        company = self.companies[company_id]
        return {
            "companyId": company.id,
            "settings": [
                {
                    "dataType": sim.data_type,
                    "fetchOnFirstLink": True,
                    "syncSchedule": max(1, round(sim.period / HOUR)),
                    "syncOrder": order,
                    "syncFromUtc": format_datetime(company.created - 365 * DAY, "z3"),
                    "monthsToSync": 24,
                    "isLocked": False,
                }
                for order, sim in enumerate(company.data_types.values())
            ],
            "overridesDefaults": False,
        }

    # --- test controls ------------------------------------------------------------------

    def override(self, company_id: str, body: Any) -> None:
        """Serve ``body`` (any JSON value, or bytes verbatim) as this company's dataStatus."""
        with self._lock:
            self.overrides[company_id] = body

    def override_connections(self, company_id: str, items: list[Any]) -> None:
        """Serve ``items`` (any JSON values) as this company's connections."""
        with self._lock:
            self.connection_overrides[company_id] = list(items)

    def inject(self, company_id: str, fault: Fault) -> None:
        with self._lock:
            self.faults.setdefault(company_id, []).append(fault)

    def clear_faults(self, company_id: str | None = None) -> None:
        """Stop injecting them, and let go of the requests they hold."""
        with self._lock:
            if company_id is None:
                cleared = [f for queue in self.faults.values() for f in queue]
                self.faults.clear()
            else:
                cleared = self.faults.pop(company_id, [])
        for fault in cleared:
            fault.released.set()

    def remove(self, company_id: str) -> None:
        """Delete the company: every endpoint answers 404 for it from now on."""
        with self._lock:
            self.companies.pop(company_id, None)
            self.overrides.pop(company_id, None)
            self.connection_overrides.pop(company_id, None)

    def take_fault(self, company_id: str, endpoint: str) -> Fault | None:
        with self._lock:
            queue = self.faults.get(company_id, [])
            for fault in queue:
                if fault.endpoint not in (None, endpoint):
                    continue
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        queue.remove(fault)
                return fault
        return None

    def add(self, profile: str = "healthy", data_types: int = 12) -> str:
        """A new company (tests: discovery picking it up); returns its id."""
        rng = random.Random(f"{self.seed}:{len(self.companies)}:added")  # noqa: S311
        company = self._make_company(rng, len(self.companies) + 100, profile, data_types)
        with self._lock:
            self.companies[company.id] = company
        return company.id

    def ids_by_profile(self, profile: str) -> Iterator[str]:
        return (c.id for c in self.companies.values() if c.profile == profile)


def _uuid(text: str) -> str:
    digest = hashlib.blake2b(text.encode(), digest_size=16).digest()
    return str(uuid.UUID(bytes=digest, version=4))


def format_datetime(moment: float, style: str) -> str:
    """Render Unix time in one of the forms Codat uses (see the contract README)."""
    when = datetime.fromtimestamp(moment, UTC)
    micro = f"{when.microsecond:06d}"
    base = when.strftime("%Y-%m-%dT%H:%M:%S")
    match style:
        case "z0":
            return base + "Z"
        case "z3":
            return f"{base}.{micro[:3]}Z"
        case "z6":
            return f"{base}.{micro}Z"
        case "z7":
            return f"{base}.{micro}{int(moment * 1e7) % 10}Z"
        case "unqualified":
            return f"{base}.{micro[:3]}"
        case "date":
            return when.strftime("%Y-%m-%d")
        case "offset":
            local = when.astimezone(timezone(timedelta(hours=-5)))
            return local.strftime("%Y-%m-%dT%H:%M:%S") + f".{micro[:2]}-05:00"
    raise ValueError(f"unknown date style {style!r}")
