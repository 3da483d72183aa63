"""The state file (``state.file``): what the exporter knew at its last cycle, so that a
restart or a rollout is not blind.

Without it, nothing is on /metrics after a start until companies are polled again (about
17 minutes for 10,000 companies at 600 requests a minute). With it, the first scrape after
a start already has every company's last known values, with their original
``codat_exporter_company_last_poll_success_timestamp_seconds``, and the poller resumes
where it was: the discovery listing, names, connections, sync schedules and the pull
operations already read.

The file is written after every cycle atomically (``atomicfile.write``: a temporary file
beside it, fsync, rename, fsync of the directory), so a crash leaves the old file or the new
one, never half of one; the temporary file a kill leaves is removed at the next start. Its
first line is a JSON header: a format name, a version, the shard it belongs to, and the size
and CRC-32 of each section that follows::

    {"format":"codat-freshness-exporter/state","version":4,"shard":[0,1],
     "saved_at":1764633600.0,"sections":[["rendered",20713422,2841103372],
     ["state",64698311,95110230],["discovery",612034,3318040511],...]}

``rendered`` is the snapshot's exposition as it was served (``exporter.exposition.saved``),
so a restart serves /metrics at once, before it decodes ``state`` (the companies) and the
components' sections (``exporter.poll.statecodec``). Version 3's files are read too. A file
that is missing, unreadable, corrupt, of another version or of another shard is logged once
and ignored, never fatal, and never half loaded: ``read`` checks every section's size and
checksum before anything is used, and the state is decoded whole. One that is not a regular
file (a symlink is followed), or is larger than ``state.max_file_bytes``, is ignored the
same way without a byte of it read. Times are Unix seconds; the poller turns them back into
its monotonic clock.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from exporter.config.sections import StateConfig
from exporter.config.sharding import Shard
from exporter.core import atomicfile
from exporter.core.decoding import as_list, as_number, as_str, as_whole
from exporter.exposition.instruments import ExporterMetrics
from exporter.poll import statecodec
from exporter.poll.statecodec import SavedState, StateFileError, collection_paused

log = logging.getLogger(__name__)

FORMAT = "codat-freshness-exporter/state"
VERSION = 4
READABLE = (3, VERSION)
"""The versions ``read`` takes: this one, and the one before (``statecodec`` says how)."""
RENDERED = "rendered"
STATE = "state"


def save(
    path: str | os.PathLike[str], state: SavedState, shard: Shard, rendered: bytes = b""
) -> None:
    """Write ``state`` and its ``rendered`` exposition to ``path`` atomically; OSError when
    the disk refuses."""
    with collection_paused():
        pieces, components = statecodec.encode(state)
    sections = {RENDERED: [rendered], STATE: pieces, **{k: [v] for k, v in components.items()}}
    everything = [piece for section in sections.values() for piece in section]
    atomicfile.write(path, [_header(shard, state.saved_at, sections), *everything])


class Writer:
    """Saves after every cycle. A write the disk refuses counts in
    ``codat_exporter_state_file_errors_total`` and is logged once until one succeeds again;
    the polls go on either way."""

    def __init__(self, path: str, shard: Shard, metrics: ExporterMetrics) -> None:
        self._path, self._shard, self._metrics = path, shard, metrics
        self._failing = False

    def write(self, state: SavedState, rendered: bytes) -> None:
        try:
            save(self._path, state, self._shard, rendered)
        except OSError as exc:
            self._metrics.state_file_errors.inc()
            level = logging.DEBUG if self._failing else logging.WARNING
            _poller_log.log(level, "cannot write the state file %s: %s", self._path,
                            exc.strerror or exc)  # fmt: skip
            self._failing = True
        else:
            if self._failing:
                _poller_log.info("state file %s written again", self._path)
            self._failing = False


_poller_log = logging.getLogger("exporter.poll.poller")
"""Where a write's failure was always logged: the cycle's log."""


def pack(shard: Shard, saved_at: float, sections: Mapping[str, bytes]) -> bytes:
    """A whole file: the header line, then each section's bytes in order."""
    header = _header(shard, saved_at, {name: [data] for name, data in sections.items()})
    return b"".join([header, *sections.values()])


def _header(shard: Shard, saved_at: float, sections: Mapping[str, Sequence[bytes]]) -> bytes:
    """The header line, newline included, of sections given as their pieces."""

    def crc32(pieces: Sequence[bytes]) -> int:
        value = 0
        for piece in pieces:
            value = zlib.crc32(piece, value)
        return value

    header = {
        "format": FORMAT,
        "version": VERSION,
        "shard": [shard.index, shard.count],
        "saved_at": saved_at,
        "sections": [[name, sum(map(len, pieces)), crc32(pieces)]
                     for name, pieces in sections.items()],
    }  # fmt: skip
    return json.dumps(header, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def unpack(data: bytes, shard: Shard) -> tuple[float, dict[str, bytes]]:
    """The save time and the sections of a whole file; StateFileError naming the first
    problem."""
    _, saved_at, sections = _unpack(data, shard)
    return saved_at, sections


def _unpack(data: bytes, shard: Shard) -> tuple[int, float, dict[str, bytes]]:
    """``unpack``, with the file's version first."""
    newline = data.find(b"\n")
    line = data[:newline] if newline >= 0 else data
    try:
        header = json.loads(line)
    except (ValueError, RecursionError):
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise StateFileError("not a codat-freshness-exporter state file")
    version = header.get("version")
    if version not in READABLE or isinstance(version, bool):
        raise StateFileError(
            f"version {version!r}; this exporter reads versions {READABLE[0]} to {VERSION}"
        )
    if header.get("shard") != [shard.index, shard.count]:
        raise StateFileError(
            f"written by shard {header.get('shard')!r}, this is {shard.index} of {shard.count}"
        )
    sections: dict[str, bytes] = {}
    at = newline + 1  # the sections are sliced from the file itself: no copy of it all
    try:
        saved_at = as_number(header["saved_at"])
        for name, size, crc in as_list(header["sections"]):
            section = data[at : at + as_whole(size)]
            at += len(section)
            if len(section) != size:
                raise StateFileError(f"section {name!r} is cut short (a copy, not a crash?)")
            if zlib.crc32(section) != crc:
                raise StateFileError(f"section {name!r} does not match its checksum")
            sections[as_str(name)] = section
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        if isinstance(exc, StateFileError):
            raise
        raise StateFileError(f"malformed header ({type(exc).__name__}: {exc})") from None
    if newline < 0 or at != len(data) or STATE not in sections:
        raise StateFileError("its size does not match its header")
    return version, saved_at, sections


@dataclass(frozen=True)
class StateFile:
    """A state file read whole and checked (format, version, shard, sizes, checksums),
    its state not decoded yet: a restart serves ``rendered`` first."""

    path: Path
    saved_at: float
    rendered: bytes
    """``exposition.saved`` of the snapshot the state holds; empty when it was not kept."""
    document: bytes
    """The state section: the companies."""
    sections: Mapping[str, bytes]
    """The components' sections, by key."""
    version: int

    def state(self) -> SavedState | None:
        """The decoded state, or None (logged once) when it cannot be used."""
        try:
            with collection_paused():
                state = statecodec.decode(self.document, self.sections, self.saved_at, self.version)
        except StateFileError as exc:
            log.warning("state file %s ignored: %s", self.path, exc)
            return None
        log.info("state file %s: %d companies as of its save", self.path, len(state.companies))
        return state


MAX_FILE_BYTES = StateConfig().max_file_bytes
"""``state.max_file_bytes``' default, for callers without a configuration."""


def read(
    path: str | os.PathLike[str], shard: Shard, max_bytes: int = MAX_FILE_BYTES
) -> StateFile | None:
    """The file in ``path``, checked, or None (logged once) when there is none to use: a
    file that is not a regular one (through symlinks) or is larger than ``max_bytes`` is
    not read at all."""
    target = Path(path)
    try:
        data = atomicfile.read(target, max_bytes, "state.max_file_bytes")
    except FileNotFoundError:
        log.info("state file %s does not exist yet; starting without one", target)
        return None
    except atomicfile.Refused as exc:
        log.warning("state file %s ignored: %s; starting without it", target, exc)
        return None
    except OSError as exc:
        log.warning("state file %s cannot be read (%s); starting without it", target,
                    exc.strerror)  # fmt: skip
        return None
    try:
        version, saved_at, sections = _unpack(data, shard)
    except StateFileError as exc:
        log.warning("state file %s ignored: %s", target, exc)
        return None
    rendered, document = sections.pop(RENDERED, b""), sections.pop(STATE)
    return StateFile(target, saved_at, rendered, document, sections, version)


def load(
    path: str | os.PathLike[str], shard: Shard, max_bytes: int = MAX_FILE_BYTES
) -> SavedState | None:
    """The state in ``path``, or None (logged once) when there is none that can be used."""
    found = read(path, shard, max_bytes)
    return None if found is None else found.state()


def decode(data: bytes, shard: Shard) -> SavedState:
    """Decode a whole file; StateFileError naming the first problem."""
    version, saved_at, sections = _unpack(data, shard)
    document = sections.pop(STATE)
    sections.pop(RENDERED, None)
    with collection_paused():
        return statecodec.decode(document, sections, saved_at, version)
