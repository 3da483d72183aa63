"""A simulated day of refreshes (issue "Heal what can heal itself"): the same fleet of
simulated companies with transient sync failures, polled every 15 minutes for 24 hours of an
injected clock, once without ``refresh`` and once with it. Prints, for each run, how many
failing pairs healed, how many refresh requests that cost, and how long the pairs that
failed spent stale (median and p95), so the two can be compared::

    .venv/bin/python bench/refresh_day.py --companies 1000 --fail-rate 0.05

Everything runs in this process on loopback: the simulator over real HTTP, the exporter's
poller with a fake clock that only moves when told (or slept on). Both runs see the very
same syncs, since a sync's outcome is a hash of (seed, company, data type, k).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import StepClock

from exporter.codat.client import CodatClient
from exporter.config.load import parse_config
from exporter.core.contract import ERROR_STATUSES, QUEUE_DATA_TYPE
from exporter.core.snapshot import Snapshot
from exporter.exposition.instruments import ExporterMetrics
from exporter.exposition.render import Exposition
from exporter.exposition.store import SnapshotStore
from exporter.poll.poller import Poller
from exporter.simulator.fleet import Fleet
from exporter.simulator.server import SimulatedCodat
from exporter.simulator.syncs import HOUR

API_KEY = "bench-key"
START = 1_795_435_200.0  # 2026-11-23T12:00:00Z
INTERVAL = 900.0
DAY = 24 * HOUR


def fleet_for(clock: StepClock, args: argparse.Namespace) -> Fleet:
    """The seeded fleet, every healthy data type syncing daily with ``fail_rate`` failures."""
    fleet = Fleet.generate(clock, companies=args.companies, seed=args.seed)
    for company in fleet.companies.values():
        if company.profile != "healthy":
            continue
        for sim in company.data_types.values():
            sim.fail_rate, sim.period = args.fail_rate, DAY
    return fleet


def run_day(args: argparse.Namespace, refresh: bool) -> dict[str, Any]:
    clock = StepClock(START)
    fleet = fleet_for(clock, args)
    healthy = {c.id for c in fleet.companies.values() if c.profile == "healthy"}
    codat = SimulatedCodat(fleet, API_KEY).start()
    raw: dict[str, Any] = {
        "codat": {"base_url": codat.url, "api_key": API_KEY, "timeout": "5s",
                  "max_concurrency": 8, "max_requests_per_minute": 100_000},
        "poll": {"interval": f"{int(INTERVAL)}s"},
        "companies": {"discover": True, "page_size": 2000, "discovery_interval": "1d"},
        "connections": {"enabled": False},
        "diagnostics": {"sync_durations": False},
    }  # fmt: skip
    files = tempfile.TemporaryDirectory(prefix="refresh-day-")
    if refresh:  # its journal beside a state file, as refreshes need
        raw["refresh"] = {"enabled": True, "after": "1h", "backoff": 2,
                          "max_per_company_per_day": 5, "max_per_day": 100_000}  # fmt: skip
        raw["state"] = {"file": str(Path(files.name) / "state.json")}
    config = parse_config(raw)
    metrics = ExporterMetrics()
    client = CodatClient(config.codat, metrics, clock, rng=random.Random(args.seed))
    store = SnapshotStore(Exposition(Snapshot(), config.freshness, config.poll.interval))
    poller = Poller(config, client, store, metrics, clock, spread=False, quota_warning=False)
    stale_seconds: dict[tuple[str, str], float] = {}
    failed: set[tuple[str, str]] = set()
    was_failing: dict[tuple[str, str], bool] = {}
    healed: set[tuple[str, str]] = set()
    began = time.monotonic()
    try:
        for _ in range(int(DAY / INTERVAL)):
            poller.run_cycle()
            now = clock.time()
            for company in store.current.snapshot.companies.values():
                if company.company_id not in healthy:
                    continue
                for item in company.data_types:
                    key = (company.company_id, item.data_type)
                    failing = item.status in ERROR_STATUSES
                    if failing:
                        failed.add(key)
                    elif was_failing.get(key) and item.status == "Complete":
                        healed.add(key)
                    was_failing[key] = failing
                    max_age = config.freshness.max_age_for(item.data_type, company.company_id)
                    synced = item.last_successful_sync
                    if synced is not None and now - synced > max_age:
                        stale_seconds[key] = stale_seconds.get(key, 0.0) + INTERVAL
            clock.advance(INTERVAL)
    finally:
        poller.stop()
        client.close()
        codat.stop()
        files.cleanup()
    per_pair = sorted(stale_seconds.get(key, 0.0) for key in failed)
    return {
        "refresh": refresh,
        "pairs": sum(len(fleet.companies[c].data_types) for c in healthy),
        "pairs_that_failed": len(failed),
        "healed_within_the_day": len(healed),
        "refresh_requests": codat.requests.get(QUEUE_DATA_TYPE, 0),
        "requests": sum(codat.requests.values()),
        "stale_hours_median": statistics.median(per_pair) / HOUR if per_pair else 0.0,
        "stale_hours_p95": per_pair[int(0.95 * (len(per_pair) - 1))] / HOUR if per_pair else 0.0,
        "seconds": round(time.monotonic() - began, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--companies", type=int, default=1000)
    parser.add_argument("--fail-rate", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    logging.getLogger("exporter").setLevel(logging.ERROR)
    runs = [run_day(args, refresh=False), run_day(args, refresh=True)]
    if args.json:
        print(json.dumps(runs))
        return 0
    print(f"A simulated day: {args.companies:,} companies, {args.fail_rate:.0%} of syncs fail "
          "transiently, polled every 15 min")  # fmt: skip
    for run in runs:
        print(
            f"- refresh {'on ' if run['refresh'] else 'off'}: {run['pairs_that_failed']:,} of "
            f"{run['pairs']:,} pairs failed, {run['healed_within_the_day']:,} healed within the "
            f"day, {run['refresh_requests']:,} refresh requests ({run['requests']:,} requests "
            f"in all); stale time of the failed pairs: median {run['stale_hours_median']:.2f} h, "
            f"p95 {run['stale_hours_p95']:.2f} h ({run['seconds']} s)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
