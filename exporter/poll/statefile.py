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

    {"format":"codat-freshness-exporter/state","version":3,"shard":[0,1],
     "saved_at":1764633600.0,"sections":[["rendered",20713422,2841103372],
     ["state",71698311,95110230]]}

``rendered`` is the snapshot's exposition as it was served (``Exposition.saved``), so a
restart serves /metrics at once, before it decodes ``state``: JSON lines, the first of
what is fleet-wide (the discovery listing, when each side value was fetched), then one per
company with what the poller needs to resume it. A line at a time, the decoding lets the
server answer scrapes meanwhile. A file that is missing, unreadable, corrupt, of another
version or of another shard is logged once and ignored, never fatal, and never half loaded:
``read`` checks every section's size and checksum before anything is used, and ``state``
decodes the document whole. One that is not a regular file (a symlink is followed), or is
larger than ``state.max_file_bytes``, is ignored the same way without a byte of it read.
Times are Unix seconds; the poller turns them back into its monotonic clock.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import os
import sys
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporter.config.sections import StateConfig
from exporter.config.sharding import Shard
from exporter.core import atomicfile
from exporter.core.snapshot import (
    CompanyInfo,
    CompanyState,
    ConnectionState,
    DataTypeStatus,
    SyncDetail,
)

log = logging.getLogger(__name__)

FORMAT = "codat-freshness-exporter/state"
VERSION = 3


@dataclass(frozen=True)
class SavedState:
    """Everything the file holds, decoded."""

    saved_at: float
    companies: Mapping[str, CompanyState]
    last_poll: float | None = None
    poll_duration: float | None = None
    listed: Mapping[str, CompanyInfo] | None = None
    """The discovery listing; None when discovery had not succeeded (or is off)."""
    listed_at: float | None = None
    fetched: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    """Per side value (``names``, ``connections``, ``sync_settings``): when each company's
    was fetched."""
    seen_syncs: Mapping[str, Mapping[str, tuple[str, str, str]]] = field(default_factory=dict)
    """Per company and data type: (latest sync id, status seen, latest successful sync id)."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Sections of later features, kept as they are."""


class StateFileError(ValueError):
    """Why a state file cannot be used; the message is for one log line."""


@contextmanager
def _collection_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a whole state is encoded or decoded.

    A state is millions of new containers, none of them garbage, and every collection
    while they are built scans them again: at 10,000 companies x 25 data types that was
    about half of ``load``'s time and a third of ``save``'s (bench/RESULTS.md). Reference
    counting still frees everything as usual; the collector resumes, as it was, when the
    block ends.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def save(
    path: str | os.PathLike[str], state: SavedState, shard: Shard, rendered: bytes = b""
) -> None:
    """Write ``state`` and its ``rendered`` exposition to ``path`` atomically; OSError when
    the disk refuses."""
    with _collection_paused():
        lines = _encode_lines(state)
    sections = {RENDERED: [rendered], STATE: lines}
    pieces = [piece for section in sections.values() for piece in section]
    atomicfile.write(path, [_header(shard, state.saved_at, sections), *pieces])


RENDERED = "rendered"
STATE = "state"


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
    newline = data.find(b"\n")
    line = data[:newline] if newline >= 0 else data
    try:
        header = json.loads(line)
    except (ValueError, RecursionError):
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise StateFileError("not a codat-freshness-exporter state file")
    if header.get("version") != VERSION:
        raise StateFileError(
            f"version {header.get('version')!r}; this exporter reads version {VERSION}"
        )
    if header.get("shard") != [shard.index, shard.count]:
        raise StateFileError(
            f"written by shard {header.get('shard')!r}, this is {shard.index} of {shard.count}"
        )
    sections: dict[str, bytes] = {}
    at = newline + 1  # the sections are sliced from the file itself: no copy of it all
    try:
        saved_at = _number(header["saved_at"])
        for name, size, crc in _list(header["sections"]):
            section = data[at : at + _int(size)]
            at += len(section)
            if len(section) != size:
                raise StateFileError(f"section {name!r} is cut short (a copy, not a crash?)")
            if zlib.crc32(section) != crc:
                raise StateFileError(f"section {name!r} does not match its checksum")
            sections[_str(name)] = section
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        if isinstance(exc, StateFileError):
            raise
        raise StateFileError(f"malformed header ({type(exc).__name__}: {exc})") from None
    if newline < 0 or at != len(data) or STATE not in sections:
        raise StateFileError("its size does not match its header")
    return saved_at, sections


def _encode(state: SavedState) -> bytes:
    """The state section: a line of what is fleet-wide, then a line per company (its
    seen syncs with it), so that decoding never holds the interpreter for long in one
    ``json.loads``: the server thread answers scrapes meanwhile."""
    return b"".join(_encode_lines(state))


def _encode_lines(state: SavedState) -> list[bytes]:
    """``_encode``'s section as its pieces, newlines included: ``save`` writes them as they
    are, since joining them would hold a second copy (70 MB at 10,000 x 25)."""
    fleet = {
        "last_poll": state.last_poll,
        "poll_duration": state.poll_duration,
        "listed": None
        if state.listed is None
        else {k: [v.name, v.created] for k, v in state.listed.items()},
        "listed_at": state.listed_at,
        "fetched": state.fetched,
        "extra": state.extra,
    }
    seen = state.seen_syncs
    pieces = [_json(fleet)]
    for company in state.companies.values():
        pieces += (b"\n", _json(_encode_company(company, seen.get(company.company_id))))
    return pieces


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


@dataclass(frozen=True)
class StateFile:
    """A state file read whole and checked (format, version, shard, sizes, checksums),
    its state not decoded yet: a restart serves ``rendered`` first."""

    path: Path
    saved_at: float
    rendered: bytes
    """``Exposition.saved`` of the snapshot the state holds; empty when it was not kept."""
    document: bytes

    def state(self) -> SavedState | None:
        """The decoded state, or None (logged once) when it cannot be used."""
        try:
            with _collection_paused():
                state = _decode(self.document, self.saved_at)
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
        saved_at, sections = unpack(data, shard)
    except StateFileError as exc:
        log.warning("state file %s ignored: %s", target, exc)
        return None
    return StateFile(target, saved_at, sections.get(RENDERED, b""), sections[STATE])


def load(
    path: str | os.PathLike[str], shard: Shard, max_bytes: int = MAX_FILE_BYTES
) -> SavedState | None:
    """The state in ``path``, or None (logged once) when there is none that can be used."""
    found = read(path, shard, max_bytes)
    return None if found is None else found.state()


def decode(data: bytes, shard: Shard) -> SavedState:
    """Decode a whole file; StateFileError naming the first problem."""
    saved_at, sections = unpack(data, shard)
    with _collection_paused():
        return _decode(sections[STATE], saved_at)


def _decode(data: bytes, saved_at: float) -> SavedState:
    lines = _lines(data)
    try:
        fleet = _dict(next(lines))
        companies: dict[str, CompanyState] = {}
        seen: dict[str, dict[str, tuple[str, str, str]]] = {}
        for line in lines:
            company, company_seen = _decode_company(line)
            companies[company.company_id] = company
            if company_seen:
                seen[company.company_id] = company_seen
        listed_raw = fleet.get("listed")
        listed = None if listed_raw is None else {
            _str(k): CompanyInfo(_str(v[0]), _time(v[1])) for k, v in _dict(listed_raw).items()
        }  # fmt: skip
        fetched = {
            _str(kind): {_str(c): _number(at) for c, at in _dict(by_company).items()}
            for kind, by_company in _dict(fleet.get("fetched") or {}).items()
        }
        return SavedState(
            saved_at=saved_at,
            companies=companies,
            last_poll=_time(fleet.get("last_poll")),
            poll_duration=_time(fleet.get("poll_duration")),
            listed=listed,
            listed_at=_time(fleet.get("listed_at")),
            fetched=fetched,
            seen_syncs=seen,
            extra=_dict(fleet.get("extra") or {}),
        )
    except (KeyError, IndexError, TypeError, ValueError, OverflowError, StopIteration) as exc:
        if isinstance(exc, StateFileError):
            raise
        raise StateFileError(f"malformed content ({type(exc).__name__}: {exc})") from None


def _lines(data: bytes) -> Iterator[Any]:
    """Each line of ``data`` decoded, one at a time."""
    start = 0
    while start <= len(data):
        end = data.find(b"\n", start)
        end = len(data) if end < 0 else end
        try:
            yield json.loads(data[start:end])
        except (ValueError, RecursionError):
            raise StateFileError("its state is not valid JSON") from None
        start = end + 1


def _encode_company(
    company: CompanyState, seen: Mapping[str, tuple[str, str, str]] | None
) -> dict[str, Any]:
    return {
        "id": company.company_id,
        "name": company.name,
        "created": company.created,
        "up": company.up,
        "poll_error": company.poll_error,
        "not_found": company.not_found,
        "polled": company.last_poll_success,
        "types": [
            [
                d.data_type,
                d.status,
                d.last_successful_sync,
                d.latest_sync_id,
                d.latest_successful_sync_id,
            ]
            for d in company.data_types
        ],
        "connections": [  # no linkUrl: a capability, not to be left at rest on a volume
            [c.connection_id, c.platform, c.source_type, c.status, c.on_premise]
            for c in company.connections
        ],
        "schedules": dict(company.sync_schedules),
        "syncs": {
            data_type: [
                s.sync_id,
                s.status,
                s.error_message,
                s.status_description,
                s.requested,
                s.completed,
                s.progress,
                s.paused_until,
                s.connection_id,
            ]
            for data_type, s in company.syncs.items()
        },
        "seen": seen or {},
    }


def _decode_company(item: Any) -> tuple[CompanyState, dict[str, tuple[str, str, str]]]:
    raw = _dict(item)
    seen = {_str(d): (_str(v[0]), _str(v[1]), _str(v[2])) for d, v in _dict(raw["seen"]).items()}
    return CompanyState(
        company_id=_str(raw["id"]),
        name=_str(raw["name"]),
        created=_time(raw["created"]),
        up=_bool(raw["up"]),
        poll_error=_str(raw.get("poll_error", "")),  # these two: absent from older files
        not_found=_bool(raw.get("not_found", False)),
        last_poll_success=_time(raw["polled"]),
        data_types=tuple(map(_data_type, map(_list, _list(raw["types"])))),
        connections=tuple(map(_connection, map(_list, _list(raw["connections"])))),
        sync_schedules={
            sys.intern(_str(k)): _number(v) for k, v in _dict(raw["schedules"]).items()
        },
        syncs={
            _str(k): SyncDetail(
                _str(v[0]),
                _str(v[1]),
                _optional_str(v[2]),
                _optional_str(v[3]),
                _time(v[4]),
                _time(v[5]),
                None if v[6] is None else int(_number(v[6])),
                _time(v[7]),
                _str(v[8]) if len(v) > 8 else "",  # connection_id: absent from older files
            )
            for k, v in _dict(raw["syncs"]).items()
        },
    ), seen


def _connection(item: list[Any]) -> ConnectionState:
    """``on_premise`` is absent from older files."""
    on_premise = len(item) > 4 and _bool(item[4])
    return ConnectionState(_str(item[0]), _str(item[1]), _str(item[2]), _str(item[3]), on_premise)


def _data_type(item: list[Any]) -> DataTypeStatus:
    """As ``codat.parse_data_statuses`` builds it: names and statuses interned, one string
    for a sync that is both the latest and the latest successful (the polls after a restart
    keep a restored pair's objects as long as it does not change)."""
    latest, successful = _str(item[3]), _str(item[4])
    return DataTypeStatus(sys.intern(_str(item[0])), sys.intern(_str(item[1])), _time(item[2]),
                          latest, latest if successful == latest else successful)  # fmt: skip


def _dict(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, found {type(value).__name__}")
    return value


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list, found {type(value).__name__}")
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, found {type(value).__name__}")
    return value


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected a whole number, found {type(value).__name__}")
    return value


def _optional_str(value: Any) -> str | None:
    return None if value is None else _str(value)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, found {type(value).__name__}")
    return value


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, found {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, found {value}")
    return float(value)


def _time(value: Any) -> float | None:
    return None if value is None else _number(value)
