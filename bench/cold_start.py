"""A cold start (no state file): how long until every company's freshness is on /metrics.

    .venv/bin/python bench/cold_start.py                                  # 1,000 companies, 600/min
    .venv/bin/python bench/cold_start.py --companies 10000 --per-minute 3000 --interval 10m
    .venv/bin/python bench/cold_start.py --tree /tmp/main --label before  # another tree's exporter
    .venv/bin/python bench/cold_start.py --output bench/RESULTS.md        # ... and record it

One simulated Codat (``sim_proc.py``, ``--companies`` x 25 data types, real clock, no
latency) serves, in turn, one ``python -m exporter`` per mode, each started afresh with no
state file and the production defaults but for the rate limit (``--per-minute``, default
600, the exporter's default) and ``--interval`` (``poll.interval``, default 5m; a first
cycle cut short by it leaves the rest to the next cycle, an interval later): ``listed``
names every company in ``companies.ids`` (their names then cost a request each),
``discovery`` lists them (``companies.discover``, names from the listing). /metrics is read
(gzip, as Prometheus asks) every ``--every`` seconds from the process' start until every
company has a
``codat_exporter_company_last_poll_success_timestamp_seconds`` series with its
``company_name``: its dataStatus has been read and published, under its name.

The clock cannot be faked across processes, so this runs in real time: the **bound** is
what the dataStatus requests alone take at the rate limit (1,000 at 10 a second: 100 s);
the targets are 1.1x the bound with discovery and 2.2x with listed ids (a name and a
dataStatus per company). The requests the simulator served until then, by route, say where
the time went. ``--tree`` runs the exporter of another checkout (``git archive`` of a
commit), for a before/after comparison with the same script.
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
import yaml
from common import API_KEY, DATA_TYPES, Child, insert_below_title, log, machine, start_child
from prometheus_bill import EXPORTER_LISTENING, stop, wait_for_log

from exporter.core.families import COMPANY_LAST_SUCCESS

TARGETS = {"discovery": 1.1, "listed": 2.2}
"""The start's time over the bound, at most."""
LIMIT = 3600.0
"""Seconds a start may take before the run gives up on it."""
ROUTES = {
    "/companies": "listing", "/companies/{companyId}": "names",
    "/companies/{companyId}/dataStatus": "dataStatus",
    "/companies/{companyId}/data/history/{datasetId}": "pull operations",
    "/companies/{companyId}/connections": "connections",
    "/companies/{companyId}/syncSettings": "sync settings",
    "/integrations/{platformKey}": "integrations",
}  # fmt: skip
"""Short names of the routes, for the summary."""
NAMED = re.compile(rb'company_id="[^"]+",company_name="[^"]+"')


def settings(
    base_url: str, mode: str, ids: list[str], per_minute: int, interval: str
) -> dict[str, Any]:
    companies: dict[str, Any] = (
        {"discover": True} if mode == "discovery" else {"ids": ids, "discover": False}
    )
    return {
        "codat": {"base_url": base_url, "api_key": API_KEY, "max_requests_per_minute": per_minute},
        "poll": {"interval": interval},
        "companies": companies,
    }


def named_companies(body: bytes) -> int:
    """Companies with a last-poll-success series and a non-empty name, in an exposition."""
    prefix = b"\n" + COMPANY_LAST_SUCCESS.name.encode() + b"{"
    return sum(1 for chunk in body.split(prefix)[1:] if NAMED.match(chunk.split(b"}", 1)[0]))


def one_start(
    simulator: Child, workdir: Path, mode: str, companies: int, per_minute: int, interval: str,
    every: float, tree: str | None,
) -> dict[str, Any]:  # fmt: skip
    ids = simulator.ask(60, "ids")["ids"] if mode == "listed" else []
    config = workdir / f"{mode}.yml"
    url = simulator.hello["url"]
    config.write_text(yaml.safe_dump(settings(url, mode, ids, per_minute, interval)))
    log_path = workdir / f"{mode}.log"
    env = dict(os.environ, PYTHONPATH=tree) if tree else None
    argv = [sys.executable, "-m", "exporter", "--config.file", str(config),
            "--web.listen-address", "127.0.0.1:0"]  # fmt: skip
    before = simulator.ask(60, "requests")["requests"]
    began = time.monotonic()
    with log_path.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                   cwd=tree or None)  # fmt: skip
    try:
        url = wait_for_log(log_path, EXPORTER_LISTENING, process, 120)
        seen, milestones = 0, {}
        while seen < companies:
            if time.monotonic() - began > LIMIT:
                raise RuntimeError(f"{mode}: {seen} of {companies} companies after {LIMIT:.0f}s")
            time.sleep(every)
            with requests.get(url + "/metrics", headers={"Accept-Encoding": "gzip"},
                              stream=True, timeout=120) as response:  # fmt: skip
                raw = response.raw.read(decode_content=False)
            at = time.monotonic() - began
            body = gzip.decompress(raw) if response.headers.get("Content-Encoding") else raw
            seen = named_companies(body)
            for share in (0.5, 0.9, 1.0):
                if seen >= share * companies and share not in milestones:
                    milestones[share] = at
        after = simulator.ask(60, "requests")["requests"]
    finally:
        stop(process)
    served = {route: after.get(route, 0) - before.get(route, 0) for route in after}
    bound = companies / (per_minute / 60)
    result: dict[str, Any] = {"mode": mode, "seconds": milestones[1.0], "half": milestones[0.5],
              "ninety": milestones[0.9], "bound": bound,
              "requests": {r: n for r, n in sorted(served.items()) if n}}  # fmt: skip
    log(
        f"  {mode}: every company on /metrics after {result['seconds']:.0f}s "
        f"({result['seconds'] / bound:.2f}x the bound of {bound:.0f}s); requests {served}"
    )
    return result


def summary(args: argparse.Namespace, results: list[dict[str, Any]], minutes: float) -> str:
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"## A cold start: every company's freshness on /metrics ({args.label})",
        "",
        f"Run {started}, {minutes:.1f} minutes, with `bench/cold_start.py --companies "
        f"{args.companies} --per-minute {args.per_minute} --interval {args.interval} --modes "
        f"{args.modes}` ({args.companies:,} companies x "
        f"{DATA_TYPES} data types, no latency, /metrics read every {args.every:g}s; "
        f"{args.label}{f': the exporter of {args.tree}' if args.tree else ''}).",
        f"Machine: {machine()}. Load average at the end: {load()}.",
        "",
        "| mode | every company s | bound s | x bound | target | 50% s | 90% s | requests "
        "served until then |",
        "|---|---:|---:|---:|---|---:|---:|---|",
    ]
    for r in results:
        ratio = r["seconds"] / r["bound"]
        target = TARGETS[r["mode"]]
        met = "met" if ratio <= target else "NOT met"
        served = ", ".join(f"{ROUTES.get(route, route)} {n:,}"
                           for route, n in r["requests"].items())  # fmt: skip
        lines.append(
            f"| {r['mode']} | {r['seconds']:.0f} | {r['bound']:.0f} | {ratio:.2f} | "
            f"<= {target}x: **{met}** | {r['half']:.0f} | {r['ninety']:.0f} | {served} |"
        )
    return "\n".join(lines)


def load() -> str:
    with open("/proc/loadavg", encoding="ascii") as averages:
        return " ".join(averages.read().split()[:3])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--companies", type=int, default=1000)
    parser.add_argument("--per-minute", type=int, default=600, help="codat.max_requests_per_minute")
    parser.add_argument("--interval", default="5m", help="poll.interval (5m, the default)")
    parser.add_argument("--modes", default="discovery,listed", help="discovery, listed or both")
    parser.add_argument("--every", type=float, default=1.0, help="seconds between /metrics reads")
    parser.add_argument("--tree", help="run the exporter of this checkout (PYTHONPATH)")
    parser.add_argument("--label", default="this tree", help="what the summary calls the run")
    parser.add_argument("--output", type=Path, help="insert the summary into this file")
    args = parser.parse_args()
    began = time.monotonic()
    results = []
    with (
        tempfile.TemporaryDirectory(prefix="cold-start-") as workdir,
        start_child("simulator", "sim_proc.py", "--companies", str(args.companies),
                    "--data-types", str(DATA_TYPES)) as simulator,
    ):  # fmt: skip
        log(f"simulator: {simulator.hello['companies']} companies at {simulator.hello['url']}")
        for mode in args.modes.split(","):
            results.append(one_start(simulator, Path(workdir), mode, args.companies,
                                     args.per_minute, args.interval, args.every,
                                     args.tree))  # fmt: skip
    text = summary(args, results, (time.monotonic() - began) / 60)
    print(text)
    if args.output:
        insert_below_title(args.output, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
