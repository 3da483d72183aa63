"""Where the exporter's memory goes at fleet scale: peak RSS with features switched off, and
(with ``--trace``) live memory by allocation site and by owner.

    .venv/bin/python bench/memory.py --variant nodiag:diagnostics.pull_operations=false
    .venv/bin/python bench/memory.py --trace 8

Each variant is an exporter process of its own (``exporter_proc.py``, ``--set`` for each
setting) that polls the same simulated Codat twice at no latency, as ``run.py``'s scrape
runs do, then serves three plain and three gzip scrapes; its VmHWM and VmRSS are read after
the polls and after the scrapes. ``--trace N`` runs tracemalloc (N frames) in each exporter
and prints where its live memory is after the scrapes; tracemalloc's own bookkeeping
inflates RSS then, so traced runs say where, untraced runs say how much.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import requests
from common import Child, log, machine, start_child
from run import scrape


def variant(text: str) -> tuple[str, list[str]]:
    label, _, settings = text.partition(":")
    return label, [s for s in settings.split(",") if s]


def measure(sim: Child, companies: int, label: str, settings: list[str], trace: int,
            top: int, status_page: bool = False) -> dict[str, object]:  # fmt: skip
    args = ["--base-url", sim.hello["url"], "--concurrency", "16"]
    for setting in settings:
        args += ["--set", setting]
    if trace:
        args += ["--trace", str(trace)]
    result: dict[str, object] = {"variant": label, "settings": settings}
    with start_child(label, "exporter_proc.py", *args) as child:
        for rep in range(2):
            if rep and trace:
                child.ask(30, "arm")
            cycle = child.ask(300 + companies * (0.5 if trace else 0.1), "cycle")  # traced: slow
            if cycle["succeeded"] != companies:
                raise RuntimeError(f"{label}: polled {cycle['succeeded']} of {companies}")
        result["after_polls"] = child.memory()
        url = child.ask(30, "serve")["url"]
        if status_page:
            requests.get(url + "/", timeout=300).raise_for_status()
        plain = [scrape(url, compressed=False)[0] for _ in range(3)]
        gzipped = [scrape(url, compressed=True)[0] for _ in range(3)]
        result["scrape_s"] = {"plain": plain, "gzip": gzipped}
        result["after_scrapes"] = child.memory()
        if trace:
            result["report"] = child.ask(3600, "memory", top=top)
    log(f"  {label}: after polls {result['after_polls']}, after scrapes {result['after_scrapes']}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--companies", type=int, default=10_000)
    parser.add_argument("--variant", action="append", type=variant, default=[],
                        metavar="LABEL:SECTION.KEY=VALUE,...",
                        help="an exporter with these settings changed; repeatable")  # fmt: skip
    parser.add_argument("--only", action="store_true", help="no default variant")
    parser.add_argument("--trace", type=int, default=0, metavar="FRAMES")
    parser.add_argument("--top", type=int, default=30, help="allocation sites to list")
    parser.add_argument("--status-page", action="store_true",
                        help="GET / once before the scrapes")  # fmt: skip
    args = parser.parse_args()
    variants = ([] if args.only else [("default", [])]) + args.variant
    started = time.monotonic()
    results = []
    with open("/proc/loadavg", encoding="ascii") as load:
        load_start = load.read().split()[:3]
    sim_args = ("--companies", str(args.companies), "--data-types", "25")
    with start_child("simulator", "sim_proc.py", *sim_args) as sim:
        for label, settings in variants:
            results.append(measure(sim, args.companies, label, settings, args.trace, args.top,
                                   args.status_page))  # fmt: skip
    with open("/proc/loadavg", encoding="ascii") as load:
        load_end = load.read().split()[:3]
    json.dump({"machine": machine(), "load": [load_start, load_end],
               "minutes": (time.monotonic() - started) / 60, "results": results},
              sys.stdout, indent=1)  # fmt: skip
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
