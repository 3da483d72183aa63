"""Where rendering a whole snapshot's /metrics goes (``Exposition`` of a decoded state file),
the step a restart without the kept rendering would add before its first full scrape.

    .venv/bin/python bench/render_cost.py /tmp/restart-10k/today.state /tmp/restart-10k/fill.yml

Each figure is the median of ``--reps`` runs, the garbage collector paused as a restart
would pause it: the rendering as today; the same with every gzip member's deflate replaced
by nothing (what formatting costs); deflating the same text alone at the same level; and
the parts of the formatting one at a time over every pair: ``assess.max_age`` (called twice
per pair today), ``number`` of the sync times and of the max ages, ``escape`` of each data
type, and the f-strings of the three per-pair lines with their values already at hand.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from exporter.config.load import parse_config
from exporter.core.snapshot import Snapshot
from exporter.exposition import assess
from exporter.exposition.render import Exposition
from exporter.exposition.text import GZIP_LEVEL, escape, number
from exporter.poll import statefile


def median_seconds(reps: int, action: Callable[[], Any]) -> float:
    seconds = []
    for _ in range(reps):
        gc.collect()
        gc.disable()
        began = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - began)
        gc.enable()
    return statistics.median(seconds)


class _NoDeflate:
    def compress(self, data: bytes) -> bytes:
        return b""

    def flush(self) -> bytes:
        return b""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("state", type=Path, help="a state file (today's format)")
    parser.add_argument("config", type=Path, help="the configuration it was written under")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    config = parse_config(yaml.safe_load(args.config.read_text()))
    found = statefile.read(args.state, config.shard)
    state = None if found is None else found.state()
    if state is None:
        raise SystemExit(f"{args.state}: no state to render")
    snapshot = Snapshot(companies=dict(state.companies), monitored=len(state.companies),
                        poll_duration=state.poll_duration, last_poll=state.last_poll)  # fmt: skip
    freshness = config.freshness
    pairs = [(c, d) for c in snapshot.companies.values() for d in c.data_types]
    reps = args.reps
    figures: dict[str, float] = {}
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"{len(snapshot.companies):,} companies, {len(pairs):,} pairs")  # fmt: skip

    def render() -> Exposition:
        return Exposition(snapshot, freshness, config.poll.interval, config.metrics)

    figures["render as today"] = median_seconds(reps, render)
    rendered = render()
    text = b"".join(zlib.decompress(member, 31) for member in rendered.rendered.members)
    deflate = zlib.compressobj  # the collector's module is this one
    zlib.compressobj = lambda *_: _NoDeflate()  # type: ignore[assignment]
    try:
        figures["render, members not deflated"] = median_seconds(reps, render)
    finally:
        zlib.compressobj = deflate

    def deflate_alone() -> None:
        compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
        for start in range(0, len(text), 1 << 20):
            compressor.compress(text[start : start + (1 << 20)])
        compressor.flush()

    figures[f"deflate the {len(text) / 1e6:.0f} MB of members' text alone"] = median_seconds(
        reps, deflate_alone
    )
    ages = sum(len(template) for template, _ in rendered.rendered.ages)
    figures[f"(age templates: {ages / 1e6:.0f} MB, not deflated)"] = 0.0
    figures["assess.max_age, once per pair"] = median_seconds(
        reps, lambda: [assess.max_age(c, d, freshness) for c, d in pairs]
    )
    max_ages = [assess.max_age(c, d, freshness) for c, d in pairs]
    synced = [d.last_successful_sync for _, d in pairs if d.last_successful_sync is not None]
    figures["number() of every sync time"] = median_seconds(
        reps, lambda: [number(t) for t in synced]
    )
    figures["number() of every max age"] = median_seconds(
        reps, lambda: [number(t) for t in max_ages]
    )
    figures["escape() of every pair's data type"] = median_seconds(
        reps, lambda: [escape(d.data_type) for _, d in pairs]
    )
    labels = [f'company_id="{c.company_id}",company_name="{c.name}"' for c, _ in pairs]

    def lines() -> None:
        for (_, item), company, max_age in zip(pairs, labels, max_ages, strict=True):
            pair = f'{company},data_type="{item.data_type}"'
            _ = f'codat_data_type_status{{{pair},status="{item.status}"}} 1\n'
            _ = f"codat_data_type_max_age_seconds{{{pair}}} {max_age}\n"
            _ = f"codat_data_type_last_successful_sync_timestamp_seconds{{{pair}}} {max_age}\n"

    figures["f-strings of 3 lines per pair, values at hand"] = median_seconds(reps, lines)
    width = max(map(len, figures))
    for name, seconds in figures.items():
        print(f"{name:<{width}}  {seconds:6.3f} s" if seconds else name)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
