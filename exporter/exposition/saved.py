"""The rendering kept in the state file, so that a restart serves /metrics from its first
request, before it decodes the state itself (a few seconds at 10,000 companies).

``saved`` writes a line of JSON (the sizes, and a fingerprint of what the text depends on)
and then the bytes: the gzip members, each age template (zlib) with its timestamps, the
aggregates' sorted times. About 20 MB at 10,000 x 25::

    {"fingerprint":"f07187...","byteorder":"little","members":[1911,1515,...],
     "ages":[[1037,89]],"synced":[["bills",7],...],"stale_at":[...],
     "snapshot":[8,0.4,1795435200.0,""]}

The fingerprint vouches that this build, under this configuration, would render the same
text from the same snapshot: it covers the thresholds (max ages are in the text), the poll
interval (in the HELP lines), the families exported, the exporter's version and the source
of the modules whose output is in the text or whose layout is in these bytes. It does not
vouch for the bytes themselves (the state file's checksum does), nor for the snapshot's
facts, which are rendered at every scrape and never kept.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import zlib
from array import array
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from exporter import __version__
from exporter.config.durations import format_duration
from exporter.config.series import ALL_FAMILIES, FreshnessConfig, MetricsConfig
from exporter.core import contract, families
from exporter.core.snapshot import Snapshot
from exporter.exposition import assess, platforms, render, text
from exporter.exposition.render import Exposition, Rendered


def saved(exposition: Exposition) -> bytes:
    """What was rendered of ``exposition``, for the state file."""
    rendered = exposition.rendered
    blobs: list[bytes] = list(rendered.members)
    ages = []
    for template, timestamps in rendered.ages:
        blobs += (template, timestamps.tobytes())
        ages.append([len(blobs[-2]), len(timestamps)])
    times: dict[str, list[list[object]]] = {"synced": [], "stale_at": []}
    for kind, by_type in (("synced", rendered.synced), ("stale_at", rendered.stale_at)):
        for data_type, values in by_type.items():
            blobs.append(values.tobytes())
            times[kind].append([data_type, len(values)])
    snap = exposition.snapshot
    interval = format_duration(exposition.interval)
    index = {
        "fingerprint": _fingerprint(exposition.freshness, interval, exposition.families),
        "byteorder": sys.byteorder,
        "members": [len(m) for m in rendered.members],
        "ages": ages,
        **times,
        "snapshot": [snap.monitored, snap.poll_duration, snap.last_poll, snap.unready_reason],
    }
    return b"".join([json.dumps(index, separators=(",", ":")).encode(), b"\n", *blobs])


def restored(
    data: bytes, freshness: FreshnessConfig, interval: float,
    families: MetricsConfig = ALL_FAMILIES,
) -> Exposition | None:  # fmt: skip
    """The exposition ``saved`` wrote, holding a snapshot with no companies yet
    (``Snapshot.loading``); None when the text would differ under this configuration or
    this build (the caller then renders the decoded state).

    ValueError naming the first problem when ``data`` is not what ``saved`` writes: its
    index, times and age templates are checked so that none fails later, at a scrape. The
    gzip members are taken as they are (inflating them all would cost what serving at once
    saves); the state file's checksum is what vouches for them."""
    newline = data.find(b"\n")
    index = _index(data[:newline] if newline >= 0 else data)
    if index["fingerprint"] != _fingerprint(freshness, format_duration(interval), families):
        return None
    if index["byteorder"] != sys.byteorder:
        return None
    view = memoryview(data)[newline + 1 :]
    at = 0

    def take(size: int) -> memoryview:
        nonlocal at
        if at + size > len(view):
            raise ValueError("the rendered text is shorter than its index says")
        at += size
        return view[at - size : at]

    def floats(count: int) -> array[float]:
        values = array("d")
        values.frombytes(take(count * values.itemsize))
        if not all(map(math.isfinite, values)):
            raise ValueError("a time in the rendered text is not finite")
        return values

    def template(size: int, count: int) -> bytes:
        kept = bytes(take(size))
        inflated = zlib.decompress(kept)
        if inflated.count(b"%r") - inflated.count(b"%%r") != count:
            raise ValueError("an age template does not match its timestamps")
        return kept

    monitored, duration, last_poll, unready = index["snapshot"]
    snapshot = Snapshot(monitored=monitored, poll_duration=duration, last_poll=last_poll,
                        unready_reason=unready, loading=True)  # fmt: skip
    rendered = Rendered(
        [bytes(take(size)) for size in index["members"]],
        [(template(size, count), floats(count)) for size, count in index["ages"]],
        {d: floats(count) for d, count in index["synced"]},
        {d: floats(count) for d, count in index["stale_at"]},
    )
    if at != len(view):
        raise ValueError("the rendered text is longer than its index says")
    return Exposition(snapshot, freshness, interval, families, rendered)


def _fingerprint(freshness: FreshnessConfig, interval: str, families: MetricsConfig) -> str:
    """What the rendered text depends on besides the snapshot: the thresholds (max ages),
    the interval (in HELP), the families exported, and the code that renders it (this
    version, and the source of the modules whose output is in the text, so that two builds
    of one version never take each other's text)."""
    key = repr((__version__, _RENDERING_CODE, freshness, interval, families))
    return hashlib.sha256(key.encode()).hexdigest()


def _source(module: ModuleType) -> bytes:
    """A module's source, or nothing where it is not on disk (the version still counts)."""
    try:
        return Path(module.__file__ or "").read_bytes()
    except OSError:
        return b""


_RENDERING_CODE = hashlib.sha256(
    b"".join(
        map(_source, (render, text, sys.modules[__name__], assess, platforms, contract, families))
    )
).hexdigest()


def _index(line: bytes) -> dict[str, Any]:
    """The index line of a saved rendering, every field's type checked; ValueError."""
    try:
        index = json.loads(line)
    except (ValueError, RecursionError):
        raise ValueError("the rendered text's index is not valid JSON") from None
    if not isinstance(index, dict):
        raise ValueError("the rendered text's index is not an object")

    def whole(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    def time(value: Any) -> bool:
        return value is None or (
            isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        )

    def pairs(key: str, first: Callable[[Any], bool]) -> bool:
        items = index.get(key)
        return isinstance(items, list) and all(
            isinstance(i, list) and len(i) == 2 and first(i[0]) and whole(i[1]) for i in items
        )

    members, snapshot = index.get("members"), index.get("snapshot")
    checks = {
        "fingerprint": isinstance(index.get("fingerprint"), str),
        "byteorder": isinstance(index.get("byteorder"), str),
        "members": isinstance(members, list) and all(map(whole, members)),
        "ages": pairs("ages", whole),
        "synced": pairs("synced", lambda d: isinstance(d, str)),
        "stale_at": pairs("stale_at", lambda d: isinstance(d, str)),
        "snapshot": isinstance(snapshot, list) and len(snapshot) == 4 and whole(snapshot[0])
        and time(snapshot[1]) and time(snapshot[2]) and isinstance(snapshot[3], str),
    }  # fmt: skip
    wrong = [key for key, ok in checks.items() if not ok]
    if wrong:
        raise ValueError(f"the rendered text's index has a malformed {wrong[0]!r}")
    return index
