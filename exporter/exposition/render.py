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
for plain text, the members inflated a piece at a time. The facts (``Facts`` on the
snapshot: the quota, the discovery, the estimate) are rendered at every scrape too
(``exporter.exposition.facts``). Measured in bench/RESULTS.md.

The state file keeps what was rendered (``exporter.exposition.saved``), so that a restart
serves it before it decodes the state.
"""

from __future__ import annotations

import bisect
import copy
import math
import zlib
from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace

from exporter.config.durations import format_duration
from exporter.config.series import ALL_FAMILIES, FreshnessConfig, MetricsConfig
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
)
from exporter.core.snapshot import CompanyState, Facts, Snapshot
from exporter.exposition import assess, platforms
from exporter.exposition.facts import facts_text
from exporter.exposition.text import GZIP_LEVEL, Discard, Member, escape, header, number

AGE_PIECE = 4000
"""Age lines per %-template (about 0.6 MB of text)."""
INFLATE_PIECE = 128 * 1024
"""Compressed bytes inflated at a time for a plain scrape (about 1 MB of text)."""

_PER_COMPANY = (LAST_SYNC_TIMESTAMP, STATUS, MAX_AGE, PAUSED_UNTIL, LATEST_SYNC_REQUESTED,
                COMPANIES_BY_STATUS, CONNECTION_STATUS, CONNECTIONS, COMPANY_UP,
                COMPANY_NOT_FOUND, COMPANY_LAST_SUCCESS, COMPANY_CREATED)  # fmt: skip
"""Snapshot families in the order they are written; the fleet-wide ones follow."""
_RUNNING = frozenset(IN_PROGRESS_STATUSES)


@dataclass(frozen=True, eq=False)
class Rendered:
    """What a snapshot's text is made of once rendered, shared by every exposition of that
    snapshot (``Exposition.with_facts``) and kept in the state file (``saved``)."""

    members: list[bytes]
    """Each family's gzip member, in order; a family without samples has none."""
    ages: list[tuple[bytes, array[float]]]
    """The age lines: zlib-compressed %-templates, each with its sync times."""
    synced: dict[str, array[float]]
    """Per data type, the sorted lastSuccessfulSync times, for the scrape-time aggregates."""
    stale_at: dict[str, array[float]]
    """Per data type, the sorted times each pair turns stale (sync + max age)."""


class Exposition:
    """The text of one snapshot: everything but the ages (and the facts) rendered once, at
    construction, unless ``rendered`` is given (a restart's, from the state file)."""

    def __init__(
        self,
        snapshot: Snapshot,
        freshness: FreshnessConfig,
        interval: float,
        families: MetricsConfig = ALL_FAMILIES,
        rendered: Rendered | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.families = families
        self._exports = families.exports
        self.freshness = freshness
        """The thresholds the snapshot was rendered with: the status page judges by them,
        so that the page and the max ages on /metrics never disagree."""
        self.interval = interval
        self._interval = format_duration(interval)
        self._age_header = header(LAST_SYNC_AGE, self._interval).encode()
        self.rendered = self._render(freshness) if rendered is None else rendered

    def with_snapshot(self, snapshot: Snapshot) -> Exposition:
        """This rendering, holding ``snapshot`` instead: for a snapshot rebuilt from the same
        state this one was rendered from (a restart), without rendering it again."""
        return Exposition(snapshot, self.freshness, self.interval, self.families, self.rendered)

    def with_facts(self, facts: Facts) -> Exposition:
        """This exposition with other facts: a copy of a few references, no rendering
        (``SnapshotStore.note`` makes one whenever a fact changes)."""
        twin = copy.copy(self)
        twin.snapshot = replace(self.snapshot, facts=facts)
        return twin

    def _render(self, freshness: FreshnessConfig) -> Rendered:
        members = {
            spec.name: Member(spec, self._interval)
            for spec in _PER_COMPANY
            if self._exports(spec.name)
        }
        skipped = Discard()  # takes the lines of families not exported
        synced: dict[str, list[float]] = {}
        stale_at: dict[str, list[float]] = {}
        template: list[bytes] = []
        timestamps = array("d")
        ages: list[tuple[bytes, array[float]]] = []
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
                ages.append((zlib.compress(b"".join(template), GZIP_LEVEL), timestamps))
                template, timestamps = [], array("d")
            counts.update((item.data_type, item.status) for item in company.data_types)
            connection_counts.update((c.platform, c.status) for c in company.connections)
        if timestamps:
            ages.append((zlib.compress(b"".join(template), GZIP_LEVEL), timestamps))
        if not self._exports(LAST_SYNC_AGE.name):
            ages = []

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
            member = Member(PLATFORM_FAILING, self._interval)
            member.add("".join(
                f'{PLATFORM_FAILING.name}{{platform="{escape(platform)}"}} {count}\n'
                for platform, count in platforms.failing_companies(snap.companies.values()).items()
            ))  # fmt: skip
            ordered.append(member)
        for spec, value in fleet:
            if not self._exports(spec.name):
                continue
            member = Member(spec, self._interval)
            if value is not None:
                member.add(f"{spec.name} {number(value)}\n")
            ordered.append(member)
        return Rendered(
            [body for body in (member.finish() for member in ordered) if body],
            ages,
            {d: array("d", sorted(v)) for d, v in sorted(synced.items())},
            {d: array("d", sorted(v)) for d, v in sorted(stale_at.items())},
        )

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
        ages = self.rendered.ages
        if ages:
            yield self._age_header
        for template, timestamps in ages:
            yield zlib.decompress(template) % tuple([now - ts for ts in timestamps])
        yield self._aggregates(now)

    def _aggregates(self, now: float) -> bytes:
        """The fleet's per data type figures at ``now``: a bisection per data type and
        bucket over the sorted times, so a few hundred series cost microseconds::

            codat_data_type_stale_companies{data_type="invoices"} 33
            codat_data_type_sync_age_seconds_bucket{data_type="invoices",le="3600"} 120
        """
        out: list[str] = []
        stale_at, synced_at = self.rendered.stale_at, self.rendered.synced
        if stale_at and self._exports(STALE_COMPANIES.name):
            out.append(header(STALE_COMPANIES, self._interval))
            for data_type, times in stale_at.items():
                stale = bisect.bisect_left(times, now)
                out.append(f'{STALE_COMPANIES.name}{{data_type="{escape(data_type)}"}} {stale}\n')
        if synced_at and self._exports(SYNC_AGE.name):
            out.append(header(SYNC_AGE, self._interval))
            name = SYNC_AGE.name
            for data_type, synced in synced_at.items():
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
        members = self.rendered.members
        facts = facts_text(self.snapshot.facts)
        if not compress:
            for member in members:
                inflate = zlib.decompressobj(31)
                for start in range(0, len(member), INFLATE_PIECE):
                    yield inflate.decompress(member[start : start + INFLATE_PIECE])
                yield inflate.flush()
            yield from self._ages(now)
            yield facts + extra
            return
        yield from members
        deflate = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
        for piece in self._ages(now):
            yield deflate.compress(piece)
        yield deflate.compress(facts + extra) + deflate.flush()

    def render(self, now: float, extra: bytes = b"", compress: bool = False) -> bytes:
        """The whole body at once, for ``--once`` and tests; /metrics streams ``pieces``."""
        return b"".join(self.pieces(now, extra, compress))
