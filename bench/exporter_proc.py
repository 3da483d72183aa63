"""The exporter in a process of its own, wired as ``exporter.app.run`` wires it (config from
``parse_config``, ``CodatClient``, ``SnapshotStore``, ``Poller``, ``ExporterServer``), driven
by the benchmark instead of the scheduler so that each poll cycle can be timed on its own.

One difference: the poller runs with ``spread=False``. In production a cycle's requests are
spaced evenly over 80 % of ``poll.interval``, so a cycle lasts that long by design whatever
the exporter could do; the benchmark measures what it can do (the fastest cycle, which says
how short ``poll.interval`` may be for a fleet).

Commands: ``cycle`` runs ``Poller.run_cycle`` once and answers its wall time and the requests
it made by route (from the exporter's own ``codat_exporter_api_requests_total``); ``serve``
starts ``ExporterServer`` on a free loopback port and answers its URL.

``--fleet-preset`` denies what the fleet preset (docs/metrics.md) denies (``metrics.denylist``: the
per-pair families and every per-company one but ``codat_exporter_company_up``);
``--frozen-time T`` stops the exporter's wall clock at T (``common.FrozenClock``);
``--set section.key=VALUE`` (YAML value, repeatable) changes one setting of the config, e.g.
``--set diagnostics.pull_operations=false``. ``--trace N`` starts ``tracemalloc`` with N
frames before anything is built, for the ``memory`` command (``memory.py``), which answers
where the live memory is: by allocation site and by owner, and (after ``arm``) where it
was at the last snapshot publish, the moment of a cycle's peak.

    python bench/exporter_proc.py --base-url http://127.0.0.1:PORT --concurrency 16
"""

from __future__ import annotations

import argparse
import os
import time
import tracemalloc
from typing import Any

import yaml
from common import FrozenClock, exporter_settings, send, serve_commands
from memory_owners import PublishWatch, memory_report

from exporter.codat.client import CodatClient
from exporter.config.load import parse_config
from exporter.core.clock import SystemClock
from exporter.core.families import FLEET_PRESET_DENYLIST
from exporter.core.snapshot import Snapshot
from exporter.exposition.instruments import ExporterMetrics
from exporter.exposition.render import Exposition
from exporter.exposition.store import SnapshotStore
from exporter.poll.poller import Poller
from exporter.web.server import ExporterServer


def requests_by_endpoint(metrics: ExporterMetrics) -> dict[str, dict[str, float]]:
    """{endpoint: {code: count}} from the exporter's own request counter."""
    counts: dict[str, dict[str, float]] = {}
    for family in metrics.api_requests.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                by_code = counts.setdefault(sample.labels["endpoint"], {})
                by_code[sample.labels["code"]] = sample.value
    return counts


def delta(
    after: dict[str, dict[str, float]], before: dict[str, dict[str, float]]
) -> dict[str, dict[str, int]]:
    return {
        endpoint: {
            code: int(value - before.get(endpoint, {}).get(code, 0.0))
            for code, value in codes.items()
            if value != before.get(endpoint, {}).get(code, 0.0)
        }
        for endpoint, codes in after.items()
        if codes != before.get(endpoint)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--fleet-preset", action="store_true", help="the fleet preset's denylist")
    parser.add_argument("--frozen-time", type=float, help="stop the wall clock at this Unix time")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="change one setting (a YAML value); repeatable")  # fmt: skip
    parser.add_argument("--trace", type=int, default=0, metavar="FRAMES",
                        help="tracemalloc with so many frames (the memory command)")  # fmt: skip
    args = parser.parse_args()
    if args.trace:
        tracemalloc.start(args.trace)
    denylist = list(FLEET_PRESET_DENYLIST) if args.fleet_preset else []
    settings = exporter_settings(args.base_url, args.concurrency, denylist)
    for assignment in args.set:
        key, _, value = assignment.partition("=")
        section, _, name = key.partition(".")
        settings.setdefault(section, {})[name] = yaml.safe_load(value)
    config = parse_config(settings)
    clock = SystemClock() if args.frozen_time is None else FrozenClock(args.frozen_time)
    metrics = ExporterMetrics()
    store = SnapshotStore(Exposition(Snapshot(), config.freshness, config.poll.interval))
    client = CodatClient(config.codat, metrics, clock, note_facts=store.note)
    server_class = ExporterServer
    poller = Poller(config, client, store, metrics, clock, spread=False)
    servers: list[ExporterServer] = []

    def cycle(_: dict[str, Any]) -> dict[str, Any]:
        before = requests_by_endpoint(metrics)
        cpu, started = time.process_time(), time.monotonic()
        result = poller.run_cycle()
        seconds = time.monotonic() - started
        snapshot = store.current.snapshot
        return {
            "seconds": seconds,
            "poll_duration": snapshot.poll_duration,
            "cpu_seconds": time.process_time() - cpu,
            "companies": snapshot.monitored,
            "succeeded": result.succeeded,
            "failed": result.failed,
            "gone": result.gone,
            "requests": delta(requests_by_endpoint(metrics), before),
        }

    def serve(_: dict[str, Any]) -> dict[str, Any]:
        server = server_class("127.0.0.1:0", store, metrics, clock)
        server.start()
        servers.append(server)
        return {"url": server.url}

    watch = PublishWatch(store) if args.trace else None

    def memory(command: dict[str, Any]) -> dict[str, Any]:
        return memory_report(poller, store, int(command.get("top", 30)), watch)

    def arm(_: dict[str, Any]) -> dict[str, Any]:
        if watch is not None:
            watch.armed = True
        return {"armed": watch is not None}

    try:
        send({"pid": os.getpid()})
        serve_commands({"cycle": cycle, "serve": serve, "memory": memory, "arm": arm})
    finally:
        for server in servers:
            server.stop()
        poller.stop()
        client.close()


if __name__ == "__main__":
    main()
