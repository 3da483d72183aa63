"""Renders a snapshot into the Prometheus text format, sized for 10,000 companies x 25 data
types (about 750,000 series and 175 MB of text).

prometheus_client's own rendering builds a Python object per sample on every scrape: about
14 s a scrape at that size here. A snapshot changes only once per poll, so ``Exposition``
renders everything but the ages when the snapshot is published, and keeps it compressed:
each family is fed line by line into its own gzip member (about 15 MB in all, with no
175 MB string ever built). The ages, the one value that changes every second, are kept as
%-templates of a few thousand lines each, zlib-compressed (41 MB of text at 10,000 x 25,
2 MB kept; inflating them costs a scrape about 0.03 s), so a scrape formats them with one
C-level ``template % ages`` per piece::

    codat_data_type_last_successful_sync_age_seconds{company_id="8a21...",\\
        company_name="Acme",data_type="invoices"} %r

A scrape is a sequence of pieces (``pieces``), written to the socket as they come: for
gzip, the stored members followed by a fresh member for the ages and the exporter's own
metrics (a gzip stream may hold several members, RFC 1952, and Prometheus reads them all);
for plain text, the members inflated a piece at a time. Measured in bench/RESULTS.md.
"""

from __future__ import annotations

import bisect
import copy
import hashlib
import json
import math
import sys
import zlib
from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from exporter import __version__
from exporter.config.durations import format_duration
from exporter.config.series import ALL_FAMILIES, FreshnessConfig, MetricsConfig
from exporter.core import contract as codat
from exporter.core import families as metrics
from exporter.core.contract import (
    CONNECTION_STATUSES,
    IN_PROGRESS_STATUSES,
    KNOWN_STATUSES,
    NEVER_SYNCED,
)
from exporter.core.families import (
    AGE_BUCKETS,
    COMPANIES,
    COMPANIES_BY_STATUS,
    COMPANY_CREATED,
    COMPANY_LAST_SUCCESS,
    COMPANY_NOT_FOUND,
    COMPANY_UP,
    CONNECTION_STATUS,
    CONNECTIONS,
    LAST_POLL,
    LAST_SYNC_AGE,
    LAST_SYNC_TIMESTAMP,
    LATEST_SYNC_REQUESTED,
    MAX_AGE,
    PAUSED_UNTIL,
    PLATFORM_FAILING,
    POLL_DURATION,
    STALE_COMPANIES,
    STATUS,
    SYNC_AGE,
    MetricSpec,
)
from exporter.core.snapshot import CompanyState, Snapshot
from exporter.exposition import assess, platforms

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
GZIP_LEVEL = 1  # the text is large and regular; level 1 gets most of the ratio for little CPU
AGE_PIECE = 4000
"""Age lines per %-template (about 0.6 MB of text)."""
INFLATE_PIECE = 128 * 1024
"""Compressed bytes inflated at a time for a plain scrape (about 1 MB of text)."""

_PER_COMPANY = (LAST_SYNC_TIMESTAMP, STATUS, MAX_AGE, PAUSED_UNTIL, LATEST_SYNC_REQUESTED,
                COMPANIES_BY_STATUS, CONNECTION_STATUS, CONNECTIONS, COMPANY_UP,
                COMPANY_NOT_FOUND, COMPANY_LAST_SUCCESS, COMPANY_CREATED)  # fmt: skip
_RUNNING = frozenset(IN_PROGRESS_STATUSES)
"""Snapshot families in the order they are written; the fleet-wide ones follow."""


def escape(value: str) -> str:
    r"""Escape a label value for the text format: backslash, double quote and newline.

    >>> escape('Caf\u00e9 "Ol\u00e9"\n\\')
    'Café \\"Olé\\"\\n\\\\'
    """
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def number(value: float) -> str:
    """Whole numbers without '.0' (smaller bodies), anything else as Python's shortest repr."""
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def header(spec: MetricSpec, interval: str) -> str:
    help_text = spec.help_text(interval).replace("\\", "\\\\").replace("\n", "\\n")
    return f"# HELP {spec.name} {help_text}\n# TYPE {spec.name} {spec.type}\n"


class _Member:
    """One family compressed into one gzip member as its lines are rendered."""

    def __init__(self, spec: MetricSpec, interval: str) -> None:
        self._header = header(spec, interval).encode()
        self._deflate = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
        self._out: list[bytes] = []
        self._empty = True

    def add(self, text: str) -> None:
        if not text:
            return
        if self._empty:
            self._out.append(self._deflate.compress(self._header))
            self._empty = False
        self._out.append(self._deflate.compress(text.encode()))

    def finish(self) -> bytes:
        """The member, or nothing for a family without samples (it is left out)."""
        if self._empty:
            return b""
        self._out.append(self._deflate.flush())
        return b"".join(self._out)


class _Discard(_Member):
    """Where the lines of a family that ``metrics.denylist`` drops go."""

    def __init__(self) -> None:
        pass

    def add(self, text: str) -> None:
        pass


class Exposition:
    """The text of one snapshot: everything but the ages rendered once, at construction."""

    def __init__(
        self,
        snapshot: Snapshot,
        freshness: FreshnessConfig,
        interval: float,
        families: MetricsConfig = ALL_FAMILIES,
    ) -> None:
        self.snapshot = snapshot
        self._families = families
        self._exports = families.exports
        self.freshness = freshness
        """The thresholds the snapshot was rendered with: the status page judges by them."""
        self._interval = format_duration(interval)
        self._age_header = header(LAST_SYNC_AGE, self._interval).encode()
        self._age_pieces: list[tuple[bytes, array[float]]] = []
        self._synced: dict[str, array[float]] = {}
        """Per data type, the sorted lastSuccessfulSync times, for the scrape-time aggregates."""
        self._stale_at: dict[str, array[float]] = {}
        """Per data type, the sorted times each pair turns stale (sync + max age)."""
        self._members = self._render(freshness)

    def with_snapshot(self, snapshot: Snapshot) -> Exposition:
        """This rendering, holding ``snapshot`` instead: for a snapshot rebuilt from the same
        state this one was rendered from (a restart), without rendering it again."""
        twin = copy.copy(self)
        twin.snapshot = snapshot
        return twin

    def saved(self) -> bytes:
        """What was rendered, for the state file: a restart serves it before it decodes the
        state itself. A line of JSON (the sizes, and a fingerprint of what the text depends
        on) and then the bytes: the gzip members, each age template (zlib) with its
        timestamps, the aggregates' sorted times. About 20 MB at 10,000 x 25."""
        blobs: list[bytes] = list(self._members)
        ages = []
        for template, timestamps in self._age_pieces:
            blobs += (template, timestamps.tobytes())
            ages.append([len(blobs[-2]), len(timestamps)])
        times: dict[str, list[list[object]]] = {"synced": [], "stale_at": []}
        for kind, by_type in (("synced", self._synced), ("stale_at", self._stale_at)):
            for data_type, values in by_type.items():
                blobs.append(values.tobytes())
                times[kind].append([data_type, len(values)])
        snap = self.snapshot
        index = {
            "fingerprint": _fingerprint(self.freshness, self._interval, self._families),
            "byteorder": sys.byteorder,
            "members": [len(m) for m in self._members],
            "ages": ages,
            **times,
            "snapshot": [snap.monitored, snap.poll_duration, snap.last_poll, snap.unready_reason],
        }
        return b"".join([json.dumps(index, separators=(",", ":")).encode(), b"\n", *blobs])

    @classmethod
    def restored(
        cls, data: bytes, freshness: FreshnessConfig, interval: float,
        families: MetricsConfig = ALL_FAMILIES,
    ) -> Exposition | None:  # fmt: skip
        """The rendering ``saved`` wrote, holding a snapshot with no companies yet
        (``Snapshot.loading``); None when the text would differ under this configuration
        or this build (the caller then renders the decoded state).

        ValueError naming the first problem when ``data`` is not what ``saved`` writes:
        its index, times and age templates are checked so that none fails later, at a
        scrape. The gzip members are taken as they are (inflating them all would cost what
        serving at once saves); the state file's checksum is what vouches for them."""
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
            text = zlib.decompress(kept)
            if text.count(b"%r") - text.count(b"%%r") != count:
                raise ValueError("an age template does not match its timestamps")
            return kept

        monitored, duration, last_poll, unready = index["snapshot"]
        snapshot = Snapshot(monitored=monitored, poll_duration=duration, last_poll=last_poll,
                            unready_reason=unready, loading=True)  # fmt: skip
        exposition = cls(snapshot, freshness, interval, families)  # no companies: instant
        exposition._members = [bytes(take(size)) for size in index["members"]]
        exposition._age_pieces = [
            (template(size, count), floats(count)) for size, count in index["ages"]
        ]
        exposition._synced = {d: floats(count) for d, count in index["synced"]}
        exposition._stale_at = {d: floats(count) for d, count in index["stale_at"]}
        if at != len(view):
            raise ValueError("the rendered text is longer than its index says")
        return exposition

    def _render(self, freshness: FreshnessConfig) -> list[bytes]:
        members = {
            spec.name: _Member(spec, self._interval)
            for spec in _PER_COMPANY
            if self._exports(spec.name)
        }
        skipped = _Discard()  # takes the lines of families not exported
        synced: dict[str, list[float]] = {}
        stale_at: dict[str, list[float]] = {}
        template: list[bytes] = []
        timestamps = array("d")
        counts: Counter[tuple[str, str]] = Counter()
        connection_counts: Counter[tuple[str, str]] = Counter()
        polled_at = self.snapshot.last_poll or 0.0
        for company in self.snapshot.companies.values():
            lines = self._company_lines(company, freshness, template, timestamps, polled_at)
            for name, text in lines:
                members.get(name, skipped).add(text)
            for item in company.data_types:
                if item.last_successful_sync is not None:
                    synced.setdefault(item.data_type, []).append(item.last_successful_sync)
                    stale_at.setdefault(item.data_type, []).append(
                        item.last_successful_sync + assess.max_age(company, item, freshness)
                    )
                else:
                    synced.setdefault(item.data_type, [])
                    stale_at.setdefault(item.data_type, [])
            if len(timestamps) >= AGE_PIECE:
                self._age_pieces.append((zlib.compress(b"".join(template), GZIP_LEVEL), timestamps))
                template, timestamps = [], array("d")
            counts.update((item.data_type, item.status) for item in company.data_types)
            connection_counts.update((c.platform, c.status) for c in company.connections)
        if timestamps:
            self._age_pieces.append((zlib.compress(b"".join(template), GZIP_LEVEL), timestamps))
        if not self._exports(LAST_SYNC_AGE.name):
            self._age_pieces = []
        self._synced = {d: array("d", sorted(v)) for d, v in sorted(synced.items())}
        self._stale_at = {d: array("d", sorted(v)) for d, v in sorted(stale_at.items())}

        extra = sorted({s for _, s in counts} - {*KNOWN_STATUSES, NEVER_SYNCED})
        for data_type in sorted({d for d, _ in counts}):
            members.get(COMPANIES_BY_STATUS.name, skipped).add("".join(
                f'{COMPANIES_BY_STATUS.name}{{data_type="{escape(data_type)}",'
                f'status="{escape(status)}"}} {counts[data_type, status]}\n'
                for status in (*KNOWN_STATUSES, NEVER_SYNCED, *extra)
            ))  # fmt: skip
        seen = {s for _, s in connection_counts} - set(CONNECTION_STATUSES)
        for platform in sorted({p for p, _ in connection_counts}):
            members.get(CONNECTIONS.name, skipped).add("".join(
                f'{CONNECTIONS.name}{{platform="{escape(platform)}",status="{escape(status)}"}} '
                f"{connection_counts[platform, status]}\n"
                for status in (*CONNECTION_STATUSES, *sorted(seen))
            ))  # fmt: skip

        snap = self.snapshot
        fleet = [(COMPANIES, snap.monitored), (POLL_DURATION, snap.poll_duration),
                 (LAST_POLL, snap.last_poll)]  # fmt: skip
        ordered = list(members.values())
        if self._exports(PLATFORM_FAILING.name):
            member = _Member(PLATFORM_FAILING, self._interval)
            member.add("".join(
                f'{PLATFORM_FAILING.name}{{platform="{escape(platform)}"}} {count}\n'
                for platform, count in platforms.failing_companies(snap.companies.values()).items()
            ))  # fmt: skip
            ordered.append(member)
        for spec, value in fleet:
            if not self._exports(spec.name):
                continue
            member = _Member(spec, self._interval)
            if value is not None:
                member.add(f"{spec.name} {number(value)}\n")
            ordered.append(member)
        return [body for body in (member.finish() for member in ordered) if body]

    @staticmethod
    def _company_lines(
        company: CompanyState,
        freshness: FreshnessConfig,
        template: list[bytes],
        timestamps: array[float],
        polled_at: float,
    ) -> Iterator[tuple[str, str]]:
        """(family, text) for one company; its age lines go to ``template``. A pause that
        ended before ``polled_at`` is no longer exported."""
        labels = f'company_id="{escape(company.company_id)}",company_name="{escape(company.name)}"'
        yield COMPANY_UP.name, f"{COMPANY_UP.name}{{{labels}}} {int(company.up)}\n"
        if company.not_found:
            yield COMPANY_NOT_FOUND.name, f"{COMPANY_NOT_FOUND.name}{{{labels}}} 1\n"
        if company.last_poll_success is not None:
            yield (
                COMPANY_LAST_SUCCESS.name,
                (f"{COMPANY_LAST_SUCCESS.name}{{{labels}}} {number(company.last_poll_success)}\n"),
            )
        if company.created is not None:
            yield (
                COMPANY_CREATED.name,
                f"{COMPANY_CREATED.name}{{{labels}}} {number(company.created)}\n",
            )
        yield (
            CONNECTION_STATUS.name,
            "".join(
                f'{CONNECTION_STATUS.name}{{{labels},connection_id="{escape(c.connection_id)}",'
                f'platform="{escape(c.platform)}",source_type="{escape(c.source_type)}",'
                f'status="{escape(c.status)}"}} 1\n'
                for c in company.connections
            ),
        )
        synced, statuses, max_ages, ages, paused, requested = [], [], [], [], [], []
        for item in company.data_types:
            pair = f'{labels},data_type="{escape(item.data_type)}"'
            sync = company.syncs.get(item.data_type)
            if sync is not None and sync.sync_id == item.latest_sync_id:
                if sync.paused_until is not None and sync.paused_until > polled_at:
                    paused.append(f"{PAUSED_UNTIL.name}{{{pair}}} {number(sync.paused_until)}\n")
                if sync.requested is not None and item.status in _RUNNING:
                    requested.append(
                        f"{LATEST_SYNC_REQUESTED.name}{{{pair}}} {number(sync.requested)}\n"
                    )
            statuses.append(f'{STATUS.name}{{{pair},status="{escape(item.status)}"}} 1\n')
            max_ages.append(
                f"{MAX_AGE.name}{{{pair}}} {number(assess.max_age(company, item, freshness))}\n"
            )
            if item.last_successful_sync is not None:
                synced.append(
                    f"{LAST_SYNC_TIMESTAMP.name}{{{pair}}} {number(item.last_successful_sync)}\n"
                )
                ages.append(f"{LAST_SYNC_AGE.name}{{{pair.replace('%', '%%')}}} %r\n")
                timestamps.append(item.last_successful_sync)
        yield LAST_SYNC_TIMESTAMP.name, "".join(synced)
        yield STATUS.name, "".join(statuses)
        yield MAX_AGE.name, "".join(max_ages)
        yield PAUSED_UNTIL.name, "".join(paused)
        yield LATEST_SYNC_REQUESTED.name, "".join(requested)
        template.append("".join(ages).encode())

    def _ages(self, now: float) -> Iterator[bytes]:
        if self._age_pieces:
            yield self._age_header
        for template, timestamps in self._age_pieces:
            yield zlib.decompress(template) % tuple([now - ts for ts in timestamps])
        yield self._aggregates(now)

    def _aggregates(self, now: float) -> bytes:
        """The fleet's per data type figures at ``now``: a bisection per data type and
        bucket over the sorted times, so a few hundred series cost microseconds::

            codat_data_type_stale_companies{data_type="invoices"} 33
            codat_data_type_sync_age_seconds_bucket{data_type="invoices",le="3600"} 120
        """
        out: list[str] = []
        if self._stale_at and self._exports(STALE_COMPANIES.name):
            out.append(header(STALE_COMPANIES, self._interval))
            for data_type, times in self._stale_at.items():
                stale = bisect.bisect_left(times, now)
                out.append(f'{STALE_COMPANIES.name}{{data_type="{escape(data_type)}"}} {stale}\n')
        if self._synced and self._exports(SYNC_AGE.name):
            out.append(header(SYNC_AGE, self._interval))
            name = SYNC_AGE.name
            for data_type, synced in self._synced.items():
                label = f'data_type="{escape(data_type)}"'
                count = len(synced)
                for bound in AGE_BUCKETS:
                    within = count - bisect.bisect_left(synced, now - bound)
                    out.append(f'{name}_bucket{{{label},le="{bound!r}"}} {within}\n')
                out.append(f'{name}_bucket{{{label},le="+Inf"}} {count}\n')
                out.append(f"{name}_sum{{{label}}} {number(count * now - math.fsum(synced))}\n")
                out.append(f"{name}_count{{{label}}} {count}\n")
        return "".join(out).encode()

    def pieces(self, now: float, extra: bytes = b"", compress: bool = False) -> Iterator[bytes]:
        """The body of a scrape at ``now``, piece by piece; ``extra`` is rendered text."""
        if not compress:
            for member in self._members:
                inflate = zlib.decompressobj(31)
                for start in range(0, len(member), INFLATE_PIECE):
                    yield inflate.decompress(member[start : start + INFLATE_PIECE])
                yield inflate.flush()
            yield from self._ages(now)
            yield extra
            return
        yield from self._members
        deflate = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
        for piece in self._ages(now):
            yield deflate.compress(piece)
        yield deflate.compress(extra) + deflate.flush()

    def render(self, now: float, extra: bytes = b"", compress: bool = False) -> bytes:
        """The whole body at once, for ``--once`` and tests; /metrics streams ``pieces``."""
        return b"".join(self.pieces(now, extra, compress))


def _fingerprint(freshness: FreshnessConfig, interval: str, families: MetricsConfig) -> str:
    """What the rendered text depends on besides the snapshot: the thresholds (max ages),
    the interval (in HELP), the families exported, and the code that renders it (this
    version, and the source of the modules whose output is in the text, so that two builds
    of one version never take each other's text)."""
    key = repr((__version__, _RENDERING_CODE, freshness, interval, families))
    return hashlib.sha256(key.encode()).hexdigest()


def _source(module: Any) -> bytes:
    """A module's source, or nothing where it is not on disk (the version still counts)."""
    try:
        return Path(module.__file__ or "").read_bytes()
    except OSError:
        return b""


_RENDERING_CODE = hashlib.sha256(
    b"".join(map(_source, (sys.modules[__name__], assess, codat, metrics, platforms)))
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
