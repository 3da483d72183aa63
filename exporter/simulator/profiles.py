"""The generated companies: names, data types, schedules, and the scenario profiles that
pin the cases a user must see.

``Fleet.generate`` gives its first ten companies these profiles (``PROFILES``) and the rest
``healthy``: ``auth_error`` (AuthError everywhere, the connection Deauthorized), ``stale``
(invoices and bills failing for 30 hours), ``never_synced`` (all but three data types),
``first_failed`` (created three hours ago, two data types PrerequisiteNotMet),
``recovering`` (payments failing until three minutes after start), ``degrading``
(customers failing from two minutes after start), ``showcase`` (a data type in each
status), ``healthy``, ``paused`` (Codat pauses the customers sync until about two hours
after start) and ``on_premise`` (a desktop connector's bills sync queued for ever).
Everything is drawn from the seed, so a seed gives the same fleet on every run.
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass, field

from exporter.core.contract import DATA_TYPES, KNOWN_STATUSES
from exporter.simulator.dates import format_datetime
from exporter.simulator.syncs import HOUR, Hold, SimDataType

DAY = 24 * HOUR
DATE_STYLES = ("z3", "z7", "offset", "unqualified", "z0", "z6")
"""The date forms companies write lastSuccessfulSync in, one style per company in turn."""
PROFILES = ("auth_error", "stale", "never_synced", "first_failed", "recovering", "degrading",
            "showcase", "healthy", "paused", "on_premise")  # fmt: skip
"""The first companies' profiles; the eighth stays healthy: tests of an eight-company fleet
need one."""

_FIRST = ("Acme", "Bramble", "Copper", "Delta", "Ember", "Fjord", "Granite", "Harbour",
          "Indigo", "Juniper", "Kestrel", "Lumen", "Meridian", "Northwind", "Oakridge",
          "Pioneer", "Quarry", "Riverside", "Summit", "Tidewater")  # fmt: skip
_SECOND = ("Bakery", "Logistics", "Analytics", "Outfitters", "Dental", "Brewing", "Joinery",
           "Studios", "Farms", "Freight", "Pharmacy", "Robotics")  # fmt: skip
_SUFFIX = ("Ltd", "LLC", "Inc", "GmbH", "& Co", "Plc")

PAUSED = "customers"
"""The data type whose latest sync the ``paused`` company's Codat has paused."""
QUEUED = "bills"
"""The data type whose sync the ``on_premise`` company's offline connector leaves queued."""
ON_PREMISE_PLATFORM = ("pqsw", "QuickBooks Desktop")
"""A desktop accounting package: Codat reaches it through a connector on the customer's
machine, which syncs only while that machine is online."""
CLOUD_PLATFORM = ("gbol", "Xero")
"""Every other company's accounting platform, unless a test moves it (``SimCompany.platform``)."""
INTEGRATIONS = {
    "gbol": ("Xero", "Accounting", False),
    "qhyg": ("QuickBooks Online", "Accounting", False),
    "pqsw": ("QuickBooks Desktop", "Accounting", True),
    "ugxp": ("Plaid", "Banking", False),
}
"""The integrations it knows (``GET /integrations/{platformKey}``): key -> name, source
type, and whether it runs on the customer's machine (``isOfflineConnector``)."""


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
    platform: tuple[str, str] | None = None
    """Overrides the profile's accounting platform, (key, name) of ``INTEGRATIONS`` (tests:
    many companies on one platform, a few on another)."""

    @property
    def accounting(self) -> tuple[str, str]:
        """(integration key, platform name) of its accounting connection."""
        if self.platform is not None:
            return self.platform
        return ON_PREMISE_PLATFORM if self.profile == "on_premise" else CLOUD_PLATFORM


def make_company(
    rng: random.Random, index: int, profile: str, count: int, epoch: float
) -> SimCompany:
    """Company ``index`` of a fleet generated at Unix time ``epoch``, with ``count`` data
    types, as ``profile`` pins it; ``rng`` draws its id, name and schedules."""
    company_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    name = f"{rng.choice(_FIRST)} {rng.choice(_SECOND)} {rng.choice(_SUFFIX)}"
    if index == 1:
        name = "O'Brien & Daughters Ltd"
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
        _apply_profile(sim, profile, position, epoch)
        data_types[data_type] = sim
    if profile == "showcase":
        data_types["company"].date_style = "date"
    tags = {"profile": profile, "region": ("uk", "us", "de")[index % 3]}
    return SimCompany(company_id, name, created, profile, data_types, tags)


def _apply_profile(sim: SimDataType, profile: str, position: int, epoch: float) -> None:
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
    elif profile == "paused" and sim.data_type == PAUSED:
        until = math.ceil((epoch + 2 * HOUR) / HOUR) * HOUR
        k = _hold_at(sim, epoch - 1.5 * HOUR)
        description = f"Paused until {format_datetime(until, 'z3')}"
        sim.hold, sim.fail_rate = Hold(k, until, "Initial", description), 0.0
    elif profile == "on_premise" and sim.data_type == QUEUED:
        k = _hold_at(sim, epoch - 7 * HOUR)
        sim.hold, sim.fail_rate = Hold(k, math.inf, "Queued"), 0.0
    if profile in ("auth_error", "stale", "first_failed", "showcase"):
        sim.fail_rate = 0.0


def _hold_at(sim: SimDataType, requested: float) -> int:
    """Make a sync of ``sim`` requested at ``requested`` (twice a day, so that its last
    good data stays within the derived max age while it waits); that sync's k."""
    sim.period = 12 * HOUR
    sim.phase = requested % sim.period
    return round((requested - sim.phase) / sim.period)
