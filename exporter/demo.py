"""``--demo``: a simulated Codat on a free loopback port, and a config pointing at it.

The fleet is the simulator's seeded one (about 20 companies), discovered through
``GET /companies`` as a real fleet would be, with thresholds derived from each company's sync
settings unless set per data type. It always contains the cases worth seeing: an AuthError
company, stale data types, never-synced and first-failed
data types, one data type recovering and one starting to fail a few minutes in, one whose
sync Codat paused until a couple of hours after start, and one on-premise (QuickBooks
Desktop) connector's sync queued for hours. The status page shows each connection's
link to relink (``status_page.show_link_urls``). Refreshes are on (``refresh``), against the
simulator only, so a transient failure is seen healing; its state file (and the refresh
journal beside it, which refreshes need) is kept in ``state_dir``, a directory of the run's
own.
"""

from __future__ import annotations

from pathlib import Path

from exporter.config.load import parse_config
from exporter.config.sections import Config
from exporter.core.clock import Clock
from exporter.simulator.fleet import Fleet
from exporter.simulator.server import DEFAULT_API_KEY, SimulatedCodat

DEMO_API_KEY = DEFAULT_API_KEY
DEMO_COMPANIES = 20
DEMO_INTERVAL = "15s"


def start_demo(
    clock: Clock, state_dir: str, companies: int = DEMO_COMPANIES
) -> tuple[SimulatedCodat, Config]:
    fleet = Fleet.generate(clock, companies=companies, seed=1)
    simulator = SimulatedCodat(fleet, DEMO_API_KEY).start()
    config = parse_config(
        {
            # The simulator is in-process: no need to pace requests as for api.codat.io.
            "codat": {
                "base_url": simulator.url,
                "api_key": DEMO_API_KEY,
                "timeout": "10s",
                "max_requests_per_minute": 60_000,
            },
            "poll": {"interval": DEMO_INTERVAL},
            "companies": {"discover": True, "discovery_interval": "10m"},
            "connections": {"interval": "5m"},
            "freshness": {
                "default_max_age": "26h",
                "max_age": {"invoices": "6h"},
                "from_sync_settings": True,
            },
            # Writes only to its own simulator: a transient failure is refreshed after a
            # minute and heals; the pinned ones (an outage, AuthError) stay, as they would.
            "refresh": {"enabled": True, "after": "1m", "backoff": 2},
            "state": {"file": str(Path(state_dir) / "state.json")},
            # The simulator's link URLs lead nowhere: the demo shows where they appear.
            "status_page": {"show_link_urls": True},
        }
    )
    return simulator, config
