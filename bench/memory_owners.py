"""Where an exporter process' live memory is, for ``memory.py``: by allocation site
(``tracemalloc``, each block charged to the innermost frame in the exporter's own code) and
by owner (the deep size of each structure the poller and the current exposition hold,
every object counted once, for the first owner that reaches it).

    {"rss": {"VmHWM": 528.1, "VmRSS": 521.0}, "traced_mb": 402.3, "traced_peak_mb": 431.0,
     "sites": [["exporter/statefile.py:230", 41.2, 250000], ...],
     "owners": [["fleet._states (CompanyState, DataTypeStatus, ...)", 150.2], ...]}
"""

from __future__ import annotations

import gc
import sys
import tracemalloc
import types
from collections import defaultdict
from pathlib import Path
from typing import Any

from common import memory_status

from exporter.codat.diagnostics import SyncDiagnostics
from exporter.exposition.render import Exposition
from exporter.exposition.store import SnapshotStore
from exporter.poll.poller import Poller

MB = 1e6
_ROOT = str(Path(__file__).resolve().parent.parent)
_NOT_DATA = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType,
             types.MethodType, types.CodeType, types.FrameType)  # fmt: skip


class PublishWatch:
    """Once armed, a tracemalloc snapshot at each ``SnapshotStore.publish``, the moment a
    cycle's peak is live: the new exposition rendered, the previous one still served, the
    previous states and the cycle's outcomes still held. The last one is kept."""

    def __init__(self, store: SnapshotStore) -> None:
        self.armed = False
        self.snapshot: tracemalloc.Snapshot | None = None
        self.traced = 0
        publish = store.publish

        def watched(exposition: Exposition) -> None:
            if self.armed:
                self.traced = tracemalloc.get_traced_memory()[0]
                self.snapshot = tracemalloc.take_snapshot()
            publish(exposition)

        store.publish = watched  # type: ignore[method-assign]


def memory_report(
    poller: Poller, store: SnapshotStore, top: int, watch: PublishWatch | None = None
) -> dict[str, Any]:
    gc.collect()
    report: dict[str, Any] = {"rss": memory_status()}
    if tracemalloc.is_tracing():
        current, peak = tracemalloc.get_traced_memory()
        report["traced_mb"], report["traced_peak_mb"] = current / MB, peak / MB
        report["sites"] = _sites(tracemalloc.take_snapshot(), top)
    if watch is not None and watch.snapshot is not None:
        report["traced_at_publish_mb"] = watch.traced / MB
        report["sites_at_publish"] = _sites(watch.snapshot, top)
        watch.snapshot = None
    report["owners"] = _owners(poller, store)
    return report


def _sites(snapshot: tracemalloc.Snapshot, top: int) -> list[list[Any]]:
    """MB and blocks per innermost frame in this repository (else the innermost frame)."""
    size: dict[str, int] = defaultdict(int)
    count: dict[str, int] = defaultdict(int)
    for trace in snapshot.traces:
        frames = list(reversed(trace.traceback))  # most recent first
        chosen = next((f for f in frames if f.filename.startswith(_ROOT)), frames[0])
        where = f"{chosen.filename.removeprefix(_ROOT + '/')}:{chosen.lineno}"
        size[where] += trace.size
        count[where] += 1
    ranked = sorted(size, key=size.__getitem__, reverse=True)[:top]
    return [[where, size[where] / MB, count[where]] for where in ranked]


def _owners(poller: Poller, store: SnapshotStore) -> list[list[Any]]:
    """Deep size per owner, in this order (an object shared by two counts for the first)."""
    exposition = store.current
    rendered = exposition.rendered
    side = poller._side
    fleet = poller._fleet
    diagnostics = next((c for c in poller._components if isinstance(c, SyncDiagnostics)), None)
    roots: list[tuple[str, list[object]]] = [
        ("fleet._states: CompanyState, DataTypeStatus, connections, schedules, syncs",
         [fleet._states]),
        ("snapshot.companies (its own dict)", [exposition.snapshot.companies]),
        ("fleet._state_at", [fleet._state_at]),
        ("exposition: gzip members", [rendered.members]),
        ("exposition: age %-templates and their timestamps", [rendered.ages]),
        ("exposition: aggregates' sorted times", [rendered.synced, rendered.stale_at]),
        ("diagnostics._seen and _failed",
         [] if diagnostics is None else [diagnostics._seen, diagnostics._failed]),
        ("side values: names", [side._names]),
        ("side values: connections", [side._connections]),
        ("side values: sync schedules", [side._schedules]),
        ("discovery listing", [] if poller._discovery is None else [poller._discovery._companies]),
        ("failure log", [poller._failures._failing]),
    ]  # fmt: skip
    seen: set[int] = set()
    return [[name, _deep_size(objects, seen) / MB] for name, objects in roots]


def _deep_size(objects: list[object], seen: set[int]) -> int:
    total = 0
    stack = list(objects)
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, _NOT_DATA):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total
