"""Log lines per poll cycle when the rate limit binds (issue 18, part 4): how many
WARNING-or-worse lines each cycle writes, and every line in all, at 10,000 companies.

    .venv/bin/python bench/log_lines.py                                  # 10,000 companies
    .venv/bin/python bench/log_lines.py --tree /tmp/main --label before  # another tree's code
    .venv/bin/python bench/log_lines.py --output bench/RESULTS.md        # ... and record it

Everything runs in this process on loopback, as ``refresh_day.py`` does: the simulator
(``--companies`` x 25 data types, discovery) over real HTTP, the exporter's poller with a
clock that moves only when slept on, so that the rate limiter's waits cost no real time
and a cycle is as long as the limit makes it. Each ``--per-minute`` is one run of
``--cycles`` cycles five minutes apart, with the production defaults otherwise
(connections, pull operations, sync durations): 2,400 a minute fits the 10,000 dataStatus
requests of a cycle (12,000 turns) but not the rest; 1,200 fits half of them; with
``:history500`` every pull-operation read fails as well (Codat's history endpoint down).
The target: at most 20 WARNING-or-worse lines a cycle at 10,000 companies.
``--tree`` imports the exporter from another checkout (``git archive`` of a commit).
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

parser = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
parser.add_argument("--companies", type=int, default=10_000)
parser.add_argument("--per-minute", default="2400,1200,2400:history500",
                    help="runs, comma-separated: a limit a minute, with ':history500' every "
                    "pull-operation read answering HTTP 500")  # fmt: skip
parser.add_argument("--cycles", type=int, default=3)
parser.add_argument("--tree", help="import the exporter from this checkout")
parser.add_argument("--label", default="this tree", help="what the summary calls the run")
parser.add_argument("--output", type=Path, help="insert the summary into this file")
ARGS = parser.parse_args()
sys.path.insert(0, ARGS.tree or str(Path(__file__).resolve().parent.parent))

from common import StepClock, insert_below_title, machine  # noqa: E402

from exporter.codat.client import CodatClient  # noqa: E402
from exporter.config.load import parse_config  # noqa: E402
from exporter.core.contract import PULL_OPERATION  # noqa: E402
from exporter.core.snapshot import Snapshot  # noqa: E402
from exporter.exposition.instruments import ExporterMetrics  # noqa: E402
from exporter.exposition.render import Exposition  # noqa: E402
from exporter.exposition.store import SnapshotStore  # noqa: E402
from exporter.poll.poller import Poller  # noqa: E402
from exporter.simulator.faults import Fault  # noqa: E402
from exporter.simulator.fleet import Fleet  # noqa: E402
from exporter.simulator.server import SimulatedCodat  # noqa: E402

API_KEY = "bench-key"
START = 1_795_435_200.0  # 2026-11-23T12:00:00Z
INTERVAL = 300.0
TARGET = 20
"""WARNING-or-worse lines a cycle, at most."""


class Tally(logging.Handler):
    """Counts the exporter's log records by level, and keeps the warnings' first words."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.levels: Counter[str] = Counter()
        self.warnings: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.levels[record.levelname] += 1
        if record.levelno >= logging.WARNING:
            self.warnings[" ".join(record.getMessage().split()[:4])] += 1


def one_run(run: str) -> list[dict[str, Any]]:
    limit, _, fault = run.partition(":")
    per_minute = int(limit)
    clock = StepClock(START)
    fleet = Fleet.generate(clock, companies=ARGS.companies, seed=7)
    if fault == "history500":
        for company_id in fleet.companies:
            fleet.inject(company_id, Fault("status", 500, endpoint=PULL_OPERATION))
    codat = SimulatedCodat(fleet, API_KEY).start()
    config = parse_config({
        "codat": {"base_url": codat.url, "api_key": API_KEY, "timeout": "5s",
                  "max_concurrency": 8, "max_requests_per_minute": per_minute},
        "poll": {"interval": f"{int(INTERVAL)}s"},
        "companies": {"discover": True, "page_size": 2000, "discovery_interval": "1d"},
    })  # fmt: skip
    metrics = ExporterMetrics()
    client = CodatClient(config.codat, metrics, clock, rng=random.Random(7))
    store = SnapshotStore(Exposition(Snapshot(), config.freshness, config.poll.interval))
    poller = Poller(config, client, store, metrics, clock, spread=False, quota_warning=False)
    tally = Tally()
    logger = logging.getLogger("exporter")
    logger.addHandler(tally)
    logger.setLevel(logging.INFO)
    cycles = []
    try:
        for cycle in range(1, ARGS.cycles + 1):
            tally.levels.clear()
            tally.warnings.clear()
            before = dict(codat.requests)
            began = time.monotonic()
            result = poller.run_cycle()
            served = {r: n - before.get(r, 0) for r, n in codat.requests.items()}
            cycles.append({
                "run": run, "cycle": cycle,
                "warnings": tally.levels["WARNING"] + tally.levels["ERROR"]
                + tally.levels["CRITICAL"],
                "lines": sum(tally.levels.values()), "failed": result.failed,
                "polled": result.succeeded, "data_status": served.get(
                    "/companies/{companyId}/dataStatus", 0),
                "requests": sum(served.values()), "seconds": time.monotonic() - began,
                "top": tally.warnings.most_common(2),
            })  # fmt: skip
            print(cycles[-1], file=sys.stderr, flush=True)
            clock.advance(INTERVAL)
    finally:
        logger.removeHandler(tally)
        poller.stop()
        client.close()
        codat.stop()
    return cycles


def summary(rows: list[dict[str, Any]], minutes: float) -> str:
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    tree = f": the exporter of {ARGS.tree}" if ARGS.tree else ""
    lines = [
        f"## Log lines per cycle when the rate limit binds ({ARGS.label})",
        "",
        f"Run {started}, {minutes:.1f} minutes, with `bench/log_lines.py --companies "
        f"{ARGS.companies} --per-minute {ARGS.per_minute} --cycles {ARGS.cycles}` "
        f"({ARGS.companies:,} companies x 25 data types, discovery, a cycle every 5 minutes "
        f"of an injected clock; {ARGS.label}{tree}). Target: at most {TARGET} WARNING-or-worse "
        "lines a cycle. Machine: " + machine() + ".",
        "",
        "| limit /min | cycle | WARNING+ lines | all lines | target | companies polled | "
        "failed | dataStatus served | requests | most frequent warnings |",
        "|---:|---:|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        met = "met" if r["warnings"] <= TARGET else "NOT met"
        top = "; ".join(f"{n:,} x {text!r}" for text, n in r["top"]) or "-"
        lines.append(
            f"| {r['run']} | {r['cycle']} | {r['warnings']:,} | {r['lines']:,} | "
            f"**{met}** | {r['polled']:,} | {r['failed']:,} | {r['data_status']:,} | "
            f"{r['requests']:,} | {top} |"
        )
    return "\n".join(lines)


def main() -> int:
    logging.getLogger("exporter").propagate = False
    began = time.monotonic()
    rows = [row for run in ARGS.per_minute.split(",") for row in one_run(run)]
    text = summary(rows, (time.monotonic() - began) / 60)
    print(text)
    if ARGS.output:
        insert_below_title(ARGS.output, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
