"""Renders a snapshot into the Prometheus text format.

prometheus_client's own rendering builds a Python object per sample on every scrape; at
10,000 companies x 25 data types that is seconds of CPU. A snapshot changes only once per
poll, so ``Exposition`` renders everything but the ages once, when the snapshot is
published, and keeps it as bytes (and lazily as a gzip member). A scrape then formats only
the ages, the one value that changes every second, from prepared series prefixes:

    codat_data_type_last_successful_sync_age_seconds{company_id="8a21...",\
        company_name="Acme",data_type="invoices"} 5423.25

Gzip bodies are the cached static member followed by a fresh member for the ages; a
gzip stream may hold several members (RFC 1952), and Prometheus reads them all.
"""

from __future__ import annotations

import gzip
import threading
from array import array
from collections import Counter
from collections.abc import Iterable

from exporter.codat import CONNECTION_STATUSES, KNOWN_STATUSES, NEVER_SYNCED
from exporter.config import FreshnessConfig, format_duration
from exporter.metrics import (
    COMPANIES,
    COMPANIES_BY_STATUS,
    COMPANY_LAST_SUCCESS,
    COMPANY_UP,
    CONNECTION_STATUS,
    CONNECTIONS,
    LAST_POLL,
    LAST_SYNC_AGE,
    LAST_SYNC_TIMESTAMP,
    MAX_AGE,
    POLL_DURATION,
    STATUS,
    MetricSpec,
)
from exporter.state import Snapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
GZIP_LEVEL = (
    1  # the body is large and regular; level 1 gets most of the ratio for a fraction of the CPU
)


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


class Exposition:
    """The text of one snapshot: everything but the ages rendered once, at construction."""

    def __init__(self, snapshot: Snapshot, freshness: FreshnessConfig, interval: float) -> None:
        self.snapshot = snapshot
        self._interval = format_duration(interval)
        self._age_prefixes: list[str] = []
        self._age_timestamps = array("d")
        self.static = self._render_static(freshness).encode()
        self._static_gzip: bytes | None = None
        self._gzip_lock = threading.Lock()

    def _render_static(self, freshness: FreshnessConfig) -> str:
        timestamps: list[str] = []
        statuses: list[str] = []
        max_ages: list[str] = []
        company_up: list[str] = []
        company_success: list[str] = []
        connections: list[str] = []
        connection_counts: Counter[tuple[str, str]] = Counter()
        counts: Counter[tuple[str, str]] = Counter()
        data_types_seen: set[str] = set()
        extra_statuses: set[str] = set()
        age_name = LAST_SYNC_AGE.name + "{"
        for company in self.snapshot.companies.values():
            company_labels = (
                f'company_id="{escape(company.company_id)}",company_name="{escape(company.name)}"'
            )
            company_up.append(f"{COMPANY_UP.name}{{{company_labels}}} {int(company.up)}\n")
            if company.last_poll_success is not None:
                company_success.append(
                    f"{COMPANY_LAST_SUCCESS.name}{{{company_labels}}} "
                    f"{number(company.last_poll_success)}\n"
                )
            for conn in company.connections:
                connections.append(
                    f"{CONNECTION_STATUS.name}{{{company_labels},"
                    f'connection_id="{escape(conn.connection_id)}",'
                    f'platform="{escape(conn.platform)}",source_type="{escape(conn.source_type)}",'
                    f'status="{escape(conn.status)}"}} 1\n'
                )
                connection_counts[conn.platform, conn.status] += 1
            for item in company.data_types:
                labels = f'{company_labels},data_type="{escape(item.data_type)}"'
                statuses.append(f'{STATUS.name}{{{labels},status="{escape(item.status)}"}} 1\n')
                max_age = freshness.max_age_for(
                    item.data_type, company.company_id, company.sync_schedules.get(item.data_type)
                )
                max_ages.append(f"{MAX_AGE.name}{{{labels}}} {number(max_age)}\n")
                if item.last_successful_sync is not None:
                    timestamps.append(
                        f"{LAST_SYNC_TIMESTAMP.name}{{{labels}}} "
                        f"{number(item.last_successful_sync)}\n"
                    )
                    self._age_prefixes.append(f"{age_name}{labels}}} ")
                    self._age_timestamps.append(item.last_successful_sync)
                counts[item.data_type, item.status] += 1
                data_types_seen.add(item.data_type)
                if item.status not in KNOWN_STATUSES and item.status != NEVER_SYNCED:
                    extra_statuses.add(item.status)

        all_statuses = (*KNOWN_STATUSES, NEVER_SYNCED, *sorted(extra_statuses))
        by_status = [
            f'{COMPANIES_BY_STATUS.name}{{data_type="{escape(data_type)}",status="{status}"}} '
            f"{counts[data_type, status]}\n"
            for data_type in sorted(data_types_seen)
            for status in all_statuses
        ]
        platforms = sorted({platform for platform, _ in connection_counts})
        connection_statuses = (
            *CONNECTION_STATUSES,
            *sorted({s for _, s in connection_counts} - set(CONNECTION_STATUSES)),
        )
        by_platform = [
            f'{CONNECTIONS.name}{{platform="{escape(platform)}",status="{escape(status)}"}} '
            f"{connection_counts[platform, status]}\n"
            for platform in platforms
            for status in connection_statuses
        ]
        snap = self.snapshot
        return "".join(
            [
                *self._family(LAST_SYNC_TIMESTAMP, timestamps),
                *self._family(STATUS, statuses),
                *self._family(MAX_AGE, max_ages),
                *self._family(COMPANIES_BY_STATUS, by_status),
                *self._family(CONNECTION_STATUS, connections),
                *self._family(CONNECTIONS, by_platform),
                *self._family(COMPANY_UP, company_up),
                *self._family(COMPANY_LAST_SUCCESS, company_success),
                *self._family(COMPANIES, [f"{COMPANIES.name} {snap.monitored}\n"]),
                *self._optional(POLL_DURATION, snap.poll_duration),
                *self._optional(LAST_POLL, snap.last_poll),
            ]
        )

    def _family(self, spec: MetricSpec, lines: list[str]) -> Iterable[str]:
        return [header(spec, self._interval), *lines] if lines else []

    def _optional(self, spec: MetricSpec, value: float | None) -> Iterable[str]:
        return [] if value is None else self._family(spec, [f"{spec.name} {number(value)}\n"])

    def ages(self, now: float) -> bytes:
        """The age family, computed for ``now``: the only per-scrape rendering."""
        if not self._age_prefixes:
            return b""
        body = [header(LAST_SYNC_AGE, self._interval)]
        body += [
            f"{prefix}{now - ts!r}\n"
            for prefix, ts in zip(self._age_prefixes, self._age_timestamps, strict=True)
        ]
        return "".join(body).encode()

    def static_gzip(self) -> bytes:
        with self._gzip_lock:
            if self._static_gzip is None:
                self._static_gzip = gzip.compress(self.static, GZIP_LEVEL, mtime=0)
            return self._static_gzip

    def render(self, now: float, extra: bytes = b"", compress: bool = False) -> bytes:
        """The whole body for a scrape at ``now``; ``extra`` is already-rendered text."""
        dynamic = self.ages(now) + extra
        if not compress:
            return self.static + dynamic
        return self.static_gzip() + gzip.compress(dynamic, GZIP_LEVEL, mtime=0)
