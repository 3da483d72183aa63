"""Render time of the status page (``/``) and its JSON (``/api/v1/status``) at fleet scale.

Builds a snapshot of 10,000 companies x 25 data types directly (no simulator, no poll: the
page's cost is judging and rendering a snapshot, not getting it), in the mix of states a
large fleet shows (about 8 % stale, 3 % failing, 2 % AuthError, 1 % never synced, 4 % in
progress of which some stuck, a few paused; the rest healthy), then times, median of
``--reps`` runs each:

- the per-snapshot index that the first request after each poll builds,
- the page as ``/`` serves it by default (pairs that need attention, at most ROW_LIMIT rows),
- the page filtered to one company (what an alert's link opens),
- the JSON of every pair (``?all=1``), what an operator's script reads,

and one real ``GET /`` and ``GET /api/v1/status`` over loopback HTTP from the exporter's own
server, so the figure includes the HTTP path too.

    .venv/bin/python bench/status_page.py              # 10,000 x 25, 5 runs
    .venv/bin/python bench/status_page.py --companies 1000 --reps 3

Prints a Markdown summary; nothing fails when the 1 s target is missed, the summary says.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import sys
import time
from collections.abc import Callable

import requests

from exporter.config.series import FreshnessConfig
from exporter.core.clock import SystemClock
from exporter.core.contract import DATA_TYPES, ERROR_STATUSES, IN_PROGRESS_STATUSES
from exporter.core.snapshot import (
    CompanyState,
    ConnectionState,
    DataTypeStatus,
    Snapshot,
    SyncDetail,
)
from exporter.exposition.assess import FleetPairs
from exporter.exposition.instruments import ExporterMetrics
from exporter.exposition.render import Exposition
from exporter.exposition.store import SnapshotStore
from exporter.web import statuspage
from exporter.web.server import ExporterServer
from exporter.web.status import for_request
from exporter.web.statusapi import answer

TARGET = 1.0
"""Seconds the issue allows for the page at 10,000 x 25."""


def make_snapshot(companies: int, data_types: int, now: float, seed: int = 1) -> Snapshot:
    rng = random.Random(seed)
    states: dict[str, CompanyState] = {}
    for index in range(companies):
        company_id = f"{index:08x}-6988-11ed-a1eb-0242ac120002"
        items, syncs = [], {}
        for data_type in DATA_TYPES[:data_types]:
            roll = rng.random()
            sync_id = f"{company_id}-{data_type}"
            last: float | None = now - rng.uniform(60, 20 * 3600)
            status = "Complete"
            if roll < 0.08:
                last = now - rng.uniform(27 * 3600, 9 * 86400)
            elif roll < 0.11:
                status = rng.choice(ERROR_STATUSES)
                syncs[data_type] = SyncDetail(sync_id, status, error_message="Fetch failed")
            elif roll < 0.13:
                status = "AuthError"
                syncs[data_type] = SyncDetail(sync_id, status, error_message="Token expired")
            elif roll < 0.14:
                status, last = "NeverSynced", None
            elif roll < 0.18:
                status = rng.choice(IN_PROGRESS_STATUSES)
                requested = now - rng.uniform(10, 3 * 3600)
                syncs[data_type] = SyncDetail(sync_id, status, requested=requested)
            elif roll < 0.181:
                syncs[data_type] = SyncDetail(
                    sync_id, status, status_description="Paused until tomorrow",
                    paused_until=now + 86400,
                )  # fmt: skip
            items.append(DataTypeStatus(data_type, status, last, latest_sync_id=sync_id))
        states[company_id] = CompanyState(
            company_id=company_id,
            name=f"Company {index:05d} Ltd",
            up=rng.random() > 0.005,
            last_poll_success=now - 60,
            data_types=tuple(items),
            connections=(ConnectionState(f"conn-{index}", "Xero", "Accounting", "Linked"),),
            syncs=syncs,
        )
    return Snapshot(states, len(states), poll_duration=37.0, last_poll=now - 30)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


def median_seconds(run: Callable[[], object], reps: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(reps):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--companies", type=int, default=10_000)
    parser.add_argument("--data-types", type=int, default=25)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()

    clock = SystemClock()
    now = clock.time()
    print(f"building {args.companies:,} x {args.data_types} ...", file=sys.stderr)
    snapshot = make_snapshot(args.companies, args.data_types, now)
    freshness = FreshnessConfig(default_max_age=26 * 3600.0)
    exposition = Exposition(snapshot, freshness, 300.0)
    metrics = ExporterMetrics()
    one = next(iter(snapshot.companies))

    def page(query: str) -> Callable[[], bytes]:
        return lambda: statuspage.answer(*for_request(exposition, now, query)).body

    def api(query: str) -> Callable[[], bytes]:
        return lambda: answer(*for_request(exposition, now, query)).body

    cases = [
        (
            "per-snapshot index (`FleetPairs`, built by the first request after each poll)",
            lambda: FleetPairs(snapshot, freshness),
        ),
        ("page `/` (needs attention, capped)", page("")),
        (f"page `/?company={one}`", page(f"company={one}")),
        ("JSON `/api/v1/status` (needs attention, all rows)", api("")),
        ("JSON `/api/v1/status?all=1` (every pair)", api("all=1")),
    ]
    rows = []
    for name, run in cases:
        print(f"timing {name} ...", file=sys.stderr)
        seconds, body = median_seconds(run, args.reps)
        rows.append((name, seconds, len(body) if isinstance(body, bytes) else None))

    store = SnapshotStore(exposition)
    server = ExporterServer("127.0.0.1:0", store, metrics, clock)
    server.start()
    try:
        http = []
        for path in ("/", "/api/v1/status"):
            start = time.perf_counter()
            response = requests.get(server.url + path, timeout=60)
            http.append((path, time.perf_counter() - start, response.status_code,
                         len(response.content)))  # fmt: skip
    finally:
        server.stop()

    pairs = sum(len(c.data_types) for c in snapshot.companies.values())
    index, default = rows[0][1], rows[1][1]
    print(f"### Status page at {args.companies:,} x {args.data_types} ({pairs:,} pairs)\n")
    print(
        f"Load average while measuring: {' '.join(f'{x:.1f}' for x in os.getloadavg())} "
        f"on {os.cpu_count()} cores; peak RSS of the process {peak_mb():,.0f} MB.\n"
    )
    for what, seconds in (
        ("page `/` at the default filter", default),
        ("the first page `/` after a poll (index + page)", index + default),
    ):
        verdict = "met" if seconds <= TARGET else f"missed by {seconds - TARGET:.2f}s"
        print(f"- {what}: median {seconds:.3f}s (target <= {TARGET:.1f}s): **{verdict}**")
    print(f"\n| rendered | median of {args.reps} s | bytes |")
    print("|---|---:|---:|")
    for name, seconds, size in rows:
        print(f"| {name} | {seconds:.3f} | {'' if size is None else f'{size:,}'} |")
    print("\nOne real request each over loopback HTTP (the exporter's server):\n")
    print("| GET | s | status | bytes |")
    print("|---|---:|---:|---:|")
    for path, seconds, code, size in http:
        print(f"| `{path}` | {seconds:.3f} | {code} | {size:,} |")


if __name__ == "__main__":
    main()
