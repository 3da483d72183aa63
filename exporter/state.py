"""The poll's result: an immutable snapshot, swapped in whole after every cycle.

Nothing here is updated in place. /metrics reads whatever snapshot is current, so a
company that vanished from the last poll simply is not in it: there are no long-lived
label sets to purge.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from exporter.collector import Exposition


@dataclass(frozen=True, slots=True)
class DataTypeStatus:
    data_type: str
    status: str
    last_successful_sync: float | None
    """Unix seconds, or None when the data type never synced successfully."""


@dataclass(frozen=True, slots=True)
class ConnectionState:
    connection_id: str
    platform: str
    source_type: str
    status: str


@dataclass(frozen=True, slots=True)
class CompanyInfo:
    """What Codat says of the company itself, from the listing or GET /companies/{id}."""

    name: str = ""
    """Empty until read."""
    created: float | None = None
    """Unix seconds the company was created in Codat, when read."""


@dataclass(frozen=True, slots=True)
class CompanyState:
    company_id: str
    name: str
    up: bool
    """Whether the latest poll succeeded; when it did not, ``data_types`` are the last good."""
    last_poll_success: float | None
    data_types: tuple[DataTypeStatus, ...]
    connections: tuple[ConnectionState, ...] = ()
    sync_schedules: Mapping[str, float] = field(default_factory=dict)
    """Codat's ``syncSchedule`` (hours) per data type, when read (freshness.from_sync_settings)."""
    created: float | None = None
    """Unix seconds the company was created in Codat, when read."""


@dataclass(frozen=True)
class Snapshot:
    companies: Mapping[str, CompanyState] = field(default_factory=dict)
    monitored: int = 0
    poll_duration: float | None = None
    last_poll: float | None = None
    """Unix time the cycle that produced this snapshot ended; None before the first."""

    @property
    def complete(self) -> bool:
        return self.last_poll is not None


class SnapshotStore:
    """Holds the current snapshot and its rendered exposition; swaps are atomic."""

    def __init__(self, initial: Exposition) -> None:
        self._current = initial
        self._lock = threading.Lock()
        self.ready = threading.Event()
        """Set once the first full poll cycle has published: /-/ready answers 200."""

    @property
    def current(self) -> Exposition:
        return self._current

    def publish(self, exposition: Exposition) -> None:
        with self._lock:
            self._current = exposition
        if exposition.snapshot.complete:
            self.ready.set()
