"""The refresh journal: every refresh written down, durably, before its POST is sent.

The refresh caps and backoff (``exporter.codat.refreshpolicy``) limit the only writes the
exporter makes to Codat, so what they count must outlive the process at the moment it acts,
not at the end of a cycle: a crash loop, or a rollout in the middle of a long cycle, would
otherwise start every process with a clean slate and send the day's refreshes again, each
time. The journal sits beside the state file (``<state.file>.refreshes``; each replica and
shard has its own) and holds one JSON line per decision::

    {"refresh":"queued","company":"8a21...","data_type":"invoices","at":1795435200.0,"attempt":1}
    {"refresh":"stopped","company":"8a21...","data_type":"bills","at":1795435260.5,"attempt":0}
    {"refresh":"reset","company":"8a21...","data_type":"invoices","at":1795442400.0,"attempt":0}

``queued`` is appended and fsynced before the POST is sent: a kill between the two costs a
cap slot, never a refresh over the cap. ``stopped`` follows a refusal (a 4xx: no more that
pair's UTC day), ``reset`` a pair that recovered (its backoff starts over). At start the
journal is read and replayed, so today's counts and each pair's attempts and last refresh
are what was acted on, whatever the state file says. A line cut short by a kill in the
middle of an append is ignored: its POST was never sent.

It stays small: a day's lines are bounded by the day's caps, and it is rewritten
atomically (``atomicfile.write``) at start and when the UTC day rolls, keeping
today's lines and each refreshed pair's latest refresh.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from exporter.core import atomicfile

log = logging.getLogger(__name__)

SUFFIX = ".refreshes"
QUEUED = "queued"
STOPPED = "stopped"
RESET = "reset"
KINDS = (QUEUED, STOPPED, RESET)


def journal_path(state_file: str) -> Path:
    """Where the journal of the replica whose state file is ``state_file`` lives."""
    return Path(state_file + SUFFIX)


def utc_day(moment: float) -> str:
    """The UTC day of Unix time ``moment``, the caps' day.

    >>> utc_day(1795435200.0)
    '2026-11-23'
    """
    return datetime.fromtimestamp(moment, UTC).date().isoformat()


@dataclass(frozen=True)
class Entry:
    """One decision: ``kind`` (one of KINDS) for a pair at Unix time ``at``."""

    kind: str
    company: str
    data_type: str
    at: float
    attempt: int = 0

    @property
    def day(self) -> str:
        return utc_day(self.at)

    def line(self) -> bytes:
        fields = {"refresh": self.kind, "company": self.company, "data_type": self.data_type,
                  "at": self.at, "attempt": self.attempt}  # fmt: skip
        return json.dumps(fields, separators=(",", ":"), allow_nan=False).encode() + b"\n"

    @classmethod
    def parse(cls, line: bytes) -> Entry | None:
        """The entry of a whole line; None for anything else (a torn or foreign line)."""
        try:
            fields: Any = json.loads(line)
            entry = cls(str(fields["refresh"]), str(fields["company"]),
                        str(fields["data_type"]), float(fields["at"]),
                        int(fields["attempt"]))  # fmt: skip
        except (ValueError, TypeError, KeyError, RecursionError, OverflowError):
            return None
        if entry.kind not in KINDS or not math.isfinite(entry.at):
            return None
        return entry


class Journal:
    """The journal file of one replica; ``entries`` are those it holds, oldest first.
    Every method that touches the disk raises OSError when the disk refuses."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.entries: list[Entry] = []
        self._torn = False
        """Whether the file may end in a partial line, which the next append must close."""

    def read(self) -> list[Entry]:
        """Read the file (none yet: empty); lines that are not entries are skipped, and
        said once unless it is only the last one, cut short by a kill."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            data = b""
        *whole, tail = data.split(b"\n")
        entries = [Entry.parse(line) for line in whole if line.strip()]
        self.entries = [entry for entry in entries if entry is not None]
        if len(self.entries) < len(entries):
            log.warning("refresh journal %s: %d unreadable lines skipped", self.path,
                        len(entries) - len(self.entries))  # fmt: skip
        last = Entry.parse(tail) if tail else None
        if last is not None:  # whole but for its newline: counted, to be safe
            self.entries.append(last)
        self._torn = bool(tail)
        return list(self.entries)

    def append(self, entry: Entry) -> None:
        """Add ``entry`` and fsync it: once this returns, a restart replays it."""
        data = (b"\n" if self._torn else b"") + entry.line()
        created = not self.path.exists()
        handle = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            self._torn = True  # until the whole line is down
            view = memoryview(data)
            while view:
                view = view[os.write(handle, view) :]
            os.fsync(handle)
        finally:
            os.close(handle)
        self._torn = False
        if created:
            _fsync_directory(self.path.parent)
        self.entries.append(entry)

    def compact(self, today: str, carried: Iterable[Entry]) -> None:
        """Rewrite it as ``carried`` (each refreshed pair's latest refresh before today)
        followed by its entries of ``today`` (and later, should the clock have gone back)."""
        kept = [*carried, *(e for e in self.entries if e.day >= today)]
        atomicfile.write(self.path, b"".join(entry.line() for entry in kept))
        self.entries, self._torn = kept, False


def _fsync_directory(directory: Path) -> None:
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)
