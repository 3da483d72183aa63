"""The simulated Codat in a process of its own, as ``python -m exporter.simulator`` runs it,
plus two controls the benchmark needs from outside that process.

``{"cmd": "latency", "seconds": 0.05}`` sets the latency added to every request, so that a
poller's first cycle (which also fetches every company's name) can run at no latency and only
the steady-state cycles are measured at 50 ms; ``{"cmd": "requests"}`` answers the requests
served so far by route template, the server-side count to check the exporter's own;
``{"cmd": "ids"}`` answers the company ids, for a config that lists them.
With ``--frozen``, its wall clock stops at its start (``common.FrozenClock``, whose time it
answers first): every poll, however late, sees the same fleet.

    python bench/sim_proc.py --companies 1000 --data-types 25
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from common import API_KEY, DATA_TYPES, FrozenClock, send, serve_commands

from exporter.core.clock import SystemClock
from exporter.simulator.fleet import Fleet
from exporter.simulator.server import SimulatedCodat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--companies", type=int, required=True)
    parser.add_argument("--data-types", type=int, default=DATA_TYPES)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--frozen", action="store_true", help="stop the wall clock at start")
    args = parser.parse_args()
    clock = FrozenClock(time.time()) if args.frozen else SystemClock()
    fleet = Fleet.generate(clock, args.companies, args.seed, args.data_types)
    server = SimulatedCodat(fleet, API_KEY, "127.0.0.1", 0, args.latency).start()

    def set_latency(command: dict[str, Any]) -> dict[str, Any]:
        server.latency = float(command["seconds"])
        return {"latency": server.latency}

    def requests_served(_: dict[str, Any]) -> dict[str, Any]:
        return {"requests": dict(server.requests)}

    def company_ids(_: dict[str, Any]) -> dict[str, Any]:
        return {"ids": sorted(fleet.companies)}

    try:
        send({"url": server.url, "companies": len(fleet.companies), "time": clock.time()})
        serve_commands({"latency": set_latency, "requests": requests_served, "ids": company_ids})
    finally:
        server.stop()


if __name__ == "__main__":
    main()
