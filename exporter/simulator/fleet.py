"""A seeded fleet of simulated Codat companies whose data status is a function of time.

Each data type syncs every ``period`` seconds from a fixed phase. Whether sync *k* succeeds
is a hash of (seed, company, data type, k), so the whole history exists without being
stored: asking at any instant gives a consistent answer, and moving an injected clock
forward makes syncs complete, fail and recover (``exporter.simulator.syncs``; each sync is
also a pull operation, served by the history routes). Its first companies are the scenario
profiles of ``exporter.simulator.profiles``.

Tests can also replace any company's dataStatus body or connections verbatim (``override``,
``override_connections``), inject faults (``inject``, ``exporter.simulator.faults``), which
the server takes before answering, and make listings page inconsistently (``paging``).
"""

from __future__ import annotations

import hashlib
import math
import random
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from exporter.core.clock import Clock
from exporter.core.contract import IN_PROGRESS_STATUSES
from exporter.simulator.conventions import CONSISTENT
from exporter.simulator.dates import format_datetime
from exporter.simulator.faults import Fault
from exporter.simulator.profiles import DAY, INTEGRATIONS, PROFILES, SimCompany, make_company
from exporter.simulator.pulloperations import History, pull_operation_body
from exporter.simulator.syncs import HOUR, Sync, Timeline, unit


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
    """One of ``conventions.PAGING_STYLES``: whether ``_links.next`` and ``totalResults``
    agree on the last page."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def generate(
        cls, clock: Clock, companies: int = 20, seed: int = 1, data_types_per_company: int = 12
    ) -> Fleet:
        """A fleet whose first companies are the scenario profiles, the rest healthy."""
        fleet = cls(clock=clock, seed=seed, epoch=clock.time())
        rng = random.Random(seed)  # noqa: S311 - simulation, not cryptography
        for index in range(companies):
            profile = PROFILES[index] if index < len(PROFILES) else "healthy"
            company = make_company(rng, index, profile, data_types_per_company, fleet.epoch)
            fleet.companies[company.id] = company
        return fleet

    # --- the state at an instant --------------------------------------------------------

    def _unit(self, company_id: str, data_type: str, k: int, salt: str = "") -> float:
        return unit(self.seed, company_id, data_type, k, salt)

    def timeline(self, company_id: str, data_type: str) -> Timeline:
        """Every sync of the pair (KeyError for a company or data type it does not have)."""
        company = self.companies[company_id]
        key = company.accounting[0]
        connection_id = _uuid(f"{self.seed}:{company_id}:connection:{key}")
        return Timeline(self.seed, company_id, company.data_types[data_type], connection_id)

    def _timelines(self, company_id: str) -> list[Timeline]:
        return [self.timeline(company_id, name) for name in self.companies[company_id].data_types]

    def data_status(self, company_id: str) -> Any:
        """The dataStatus body for a company at the clock's current time."""
        with self._lock:
            if company_id in self.overrides:
                return self.overrides[company_id]
            company = self.companies[company_id]
        now = self.clock.time()
        return {
            name: self.timeline(company.id, name).data_status(now) for name in company.data_types
        }

    def pull_operation(self, company_id: str, sync_id: str) -> dict[str, Any] | None:
        """The PullOperation ``sync_id`` names at the clock's time; None for an id that names
        no sync of the company requested by then."""
        try:
            parsed = uuid.UUID(sync_id)
        except ValueError:
            return None
        if str(parsed) != sync_id.lower():
            return None  # only the canonical form, as Codat writes them
        now = self.clock.time()
        for timeline in self._timelines(company_id):
            sync: Sync | None = timeline.resolve(parsed, now)
            if sync is not None:
                return pull_operation_body(timeline, sync, now)
        return None

    def queue(self, company_id: str, data_type: str) -> dict[str, Any] | None:
        """``POST /companies/{companyId}/data/queue/{dataType}``: a new sync of the pair,
        requested now, that runs like any other and ends Complete or fails again (a pinned
        failure holds; otherwise with chance REFRESH_FAILS). While the pair's latest sync is
        queued or running, nothing new is queued and that one is answered. None for a pair
        the company does not have."""
        company = self.companies.get(company_id)
        if company is None or data_type not in company.data_types:
            return None
        now = self.clock.time()
        timeline = self.timeline(company_id, data_type)
        latest = timeline.latest(now)
        with self._lock:
            if latest is None or timeline.status(latest, now) not in IN_PROGRESS_STATUSES:
                company.data_types[data_type].refreshes.append(now)
                latest = timeline.latest(now)
        assert latest is not None
        return pull_operation_body(timeline, latest, now)

    def pull_operations(self, company_id: str) -> History:
        """The company's pull operations at the clock's time, the newest first."""
        return History(self._timelines(company_id), self.clock.time())

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
        key, platform = company.accounting
        platforms = [(key, platform, "Accounting", status)]
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

    def integration(self, key: str) -> dict[str, Any] | None:
        """The Integration ``key`` names (``GET /integrations/{platformKey}``), or None."""
        if key not in INTEGRATIONS:
            return None
        name, source_type, offline = INTEGRATIONS[key]
        return {
            "key": key,
            "logoUrl": f"https://static.codat.io/public/officialLogos/Square/{key}.png",
            "name": name,
            "enabled": True,
            "sourceId": _uuid(f"source:{key}"),
            "sourceType": source_type,
            "integrationId": _uuid(f"integration:{key}"),
            "isOfflineConnector": offline,
            "isBeta": False,
            "dataProvidedBy": "Codat",
        }

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

    def upper_case(self, company_id: str) -> str:
        """List the company under its id in upper case (tests: Codat's ids are UUIDs, which
        a listing may spell in either case); returns that id."""
        shouted = company_id.upper()
        with self._lock:
            company = self.companies.pop(company_id)
            company.id = shouted
            self.companies[shouted] = company
        return shouted

    def stored_id(self, company_id: str) -> str:
        """The id the company is kept under, found in any case, as Codat finds a UUID;
        ``company_id`` itself when no company has it."""
        if company_id in self.companies:
            return company_id
        wanted = company_id.lower()
        return next((c for c in list(self.companies) if c.lower() == wanted), company_id)

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
        company = make_company(rng, len(self.companies) + 100, profile, data_types, self.epoch)
        with self._lock:
            self.companies[company.id] = company
        return company.id

    def outage(
        self, platform: str, since: float, until: float = math.inf, status: str = "FetchError"
    ) -> list[str]:
        """Every sync that the accounting connections on ``platform`` (a name: "Xero")
        request from ``since`` to ``until`` fails with ``status``, as in the platform's
        outage or maintenance, unless a profile already fails it; the companies hit."""
        hit = [c for c in self.companies.values() if c.accounting[1] == platform]
        with self._lock:
            for company in hit:
                for sim in company.data_types.values():
                    sim.outages.append((since, until, status))
        return [company.id for company in hit]

    def ids_by_profile(self, profile: str) -> Iterator[str]:
        return (c.id for c in self.companies.values() if c.profile == profile)


def _uuid(text: str) -> str:
    digest = hashlib.blake2b(text.encode(), digest_size=16).digest()
    return str(uuid.UUID(bytes=digest, version=4))
