"""A prototype of the state section encoded and decoded with msgspec (issue 19: one restart
mechanism), for ``restart.py`` to measure against today's ``exporter.poll.statecodec``. Not
used by the exporter.

The section is msgspec JSON: a line for what is fleet-wide, then one line per company, an
array in the field order of ``exporter.core.snapshot.CompanyState`` (``array_like`` Structs,
so the file stays as compact as today's); the components' sections are today's::

    {"last_poll":1796630933.67,"poll_duration":105.2}
    ["000d9c75-...","Juniper Farms Ltd",true,1796630933.6,[["banking-accounts","Complete",
     1796628596.67,"6b66...","6b66..."],...],[["75b1...","Plaid","Banking","Linked"]],
     {"invoices":1.0,...},1773148353.697,{...},{},"",false]

Two ways to decode it: ``decode_structs`` gives the Struct mirrors themselves (what the
exporter would hold if ``exporter.core.snapshot``'s dataclasses became msgspec Structs of the same
field names: the collector and the poller's restore only read attributes), and ``decode``
builds today's frozen dataclasses from them. msgspec checks every type as it decodes (a
string where a string belongs, a number or null for a time); it does not check that a
number is finite, which today's decoder does.

``install`` makes ``exporter.poll.statecodec`` write and read this section instead of its own,
and write no rendering, so that ``python -m exporter`` restarts the simpler way: decode,
render, listen (``restart_proto.py``); with ``keep_rendering``, today's way with this
section (serve the kept rendering, decode meanwhile).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import msgspec

from exporter.core.snapshot import (
    CompanyState,
    ConnectionState,
    DataTypeStatus,
    RefreshMark,
    SyncDetail,
)
from exporter.poll import statecodec, statefile
from exporter.poll.statecodec import SavedState, StateFileError, collection_paused


class DataTypeS(msgspec.Struct, array_like=True, frozen=True, gc=False):
    data_type: str
    status: str
    last_successful_sync: float | None
    latest_sync_id: str = ""
    latest_successful_sync_id: str = ""


class ConnectionS(msgspec.Struct, array_like=True, frozen=True, gc=False):
    connection_id: str
    platform: str
    source_type: str
    status: str


class SyncS(msgspec.Struct, array_like=True, frozen=True, gc=False):
    sync_id: str
    status: str
    error_message: str | None = None
    status_description: str | None = None
    requested: float | None = None
    completed: float | None = None
    progress: int | None = None
    paused_until: float | None = None
    connection_id: str = ""


class RefreshS(msgspec.Struct, array_like=True, frozen=True, gc=False):
    queued_at: float | None
    attempts: int


class CompanyS(msgspec.Struct, array_like=True, frozen=True, gc=False):
    company_id: str
    name: str
    up: bool
    last_poll_success: float | None
    data_types: tuple[DataTypeS, ...]
    connections: tuple[ConnectionS, ...] = ()
    sync_schedules: dict[str, float] = {}
    created: float | None = None
    syncs: dict[str, SyncS] = {}
    refreshes: dict[str, RefreshS] = {}
    poll_error: str = ""
    not_found: bool = False


class Fleet(msgspec.Struct):
    last_poll: float | None
    poll_duration: float | None


_ENCODER = msgspec.json.Encoder()
_FLEET = msgspec.json.Decoder(Fleet)
_LINE = msgspec.json.Decoder(CompanyS)


def fleet_of(state: SavedState) -> Fleet:
    return Fleet(state.last_poll, state.poll_duration)


def encode(state: SavedState) -> bytes:
    """The state section, from today's dataclasses (each company copied into its Struct
    mirror first: the cost of keeping the dataclasses)."""
    with collection_paused():
        return _encode(state)


def _encode(state: SavedState) -> bytes:
    encode_one = _ENCODER.encode
    lines = [encode_one(fleet_of(state))]
    lines += (encode_one(_mirror(c)) for c in state.companies.values())
    return b"\n".join(lines)


def encode_structs(fleet: Fleet, companies: Mapping[str, Any]) -> bytes:
    """The state section from Structs (``decode_structs``' companies): what saving costs when
    the state is held as Structs."""
    encode_one = _ENCODER.encode
    lines = [encode_one(fleet)]
    lines += (encode_one(c) for c in companies.values())
    return b"\n".join(lines)


def decode_structs(data: bytes, saved_at: float) -> SavedState:
    """The section decoded into the Struct mirrors; StateFileError when it is malformed."""
    with collection_paused():  # as exporter.poll.statefile decodes
        return _decode(data, saved_at, lambda company: company)


def decode(data: bytes, saved_at: float) -> SavedState:
    """The section decoded and built into today's frozen dataclasses."""
    with collection_paused():
        return _decode(data, saved_at, dataclass_of)


def _decode(data: bytes, saved_at: float, build: Callable[[CompanyS], Any]) -> SavedState:
    lines = _lines(data)
    try:
        fleet = _FLEET.decode(next(lines))
        companies: dict[str, Any] = {}
        decode_line = _LINE.decode
        for line in lines:
            company = decode_line(line)
            companies[company.company_id] = build(company)
    except msgspec.DecodeError as exc:
        raise StateFileError(f"malformed content ({exc})") from None
    return SavedState(saved_at=saved_at, companies=companies, last_poll=fleet.last_poll,
                      poll_duration=fleet.poll_duration)  # fmt: skip


_KEYED_LINE = msgspec.json.Decoder(CompanyState)


def encode_keyed(state: SavedState) -> bytes:
    """The keyed variant: no mirror, each company's dataclasses encoded as they are, objects
    keyed by field name, decoded straight into the frozen dataclasses (in C)."""
    with collection_paused():
        return _encode_keyed(state)


def _encode_keyed(state: SavedState) -> bytes:
    encode_one = _ENCODER.encode
    lines = [encode_one(fleet_of(state))]
    lines += (encode_one(c) for c in state.companies.values())
    return b"\n".join(lines)


def decode_keyed(data: bytes, saved_at: float) -> SavedState:
    """The keyed variant decoded straight into today's dataclasses."""
    with collection_paused():
        return _decode_keyed(data, saved_at)


def _decode_keyed(data: bytes, saved_at: float) -> SavedState:
    lines = _lines(data)
    try:
        fleet = _FLEET.decode(next(lines))
        companies: dict[str, CompanyState] = {}
        decode_line = _KEYED_LINE.decode
        for line in lines:
            company = decode_line(line)
            companies[company.company_id] = company
    except msgspec.DecodeError as exc:
        raise StateFileError(f"malformed content ({exc})") from None
    return SavedState(saved_at=saved_at, companies=companies, last_poll=fleet.last_poll,
                      poll_duration=fleet.poll_duration)  # fmt: skip


def _lines(data: bytes) -> Iterator[memoryview]:
    """Each line of ``data``, without copying it (a split would copy the whole section)."""
    view, start = memoryview(data), 0
    while start <= len(data):
        end = data.find(b"\n", start)
        end = len(data) if end < 0 else end
        yield view[start:end]
        start = end + 1


def mirror(companies: Mapping[str, CompanyState]) -> dict[str, CompanyS]:
    return {k: _mirror(c) for k, c in companies.items()}


def _mirror(c: CompanyState) -> CompanyS:
    return CompanyS(
        c.company_id, c.name, c.up, c.last_poll_success,
        tuple([DataTypeS(d.data_type, d.status, d.last_successful_sync, d.latest_sync_id,
                         d.latest_successful_sync_id) for d in c.data_types]),
        tuple([ConnectionS(x.connection_id, x.platform, x.source_type, x.status)
               for x in c.connections]),
        dict(c.sync_schedules), c.created,
        {k: SyncS(s.sync_id, s.status, s.error_message, s.status_description, s.requested,
                  s.completed, s.progress, s.paused_until, s.connection_id)
         for k, s in c.syncs.items()},
        {k: RefreshS(r.queued_at, r.attempts) for k, r in c.refreshes.items()},
        c.poll_error, c.not_found,
    )  # fmt: skip


def dataclass_of(c: CompanyS) -> CompanyState:
    return CompanyState(
        c.company_id, c.name, c.up, c.last_poll_success,
        tuple([DataTypeStatus(d.data_type, d.status, d.last_successful_sync, d.latest_sync_id,
                              d.latest_successful_sync_id) for d in c.data_types]),
        tuple([ConnectionState(x.connection_id, x.platform, x.source_type, x.status)
               for x in c.connections]),
        c.sync_schedules, c.created,
        {k: SyncDetail(s.sync_id, s.status, s.error_message, s.status_description,
                       s.requested, s.completed, s.progress, s.paused_until, s.connection_id)
         for k, s in c.syncs.items()},
        {k: RefreshMark(r.queued_at, r.attempts) for k, r in c.refreshes.items()},
        c.poll_error, c.not_found,
    )  # fmt: skip


def install(structs: bool = False, keep_rendering: bool = False) -> None:
    """Make ``exporter.poll.statecodec`` use this state section (the components' sections
    stay today's) and, unless ``keep_rendering``, keep no rendering: ``statefile.save``
    drops the rendering it is given (so ``app.run`` decodes and renders before it
    listens)."""
    encoding, decoding, saving = statecodec.encode, statecodec.decode, statefile.save

    def encode_section(state: SavedState) -> tuple[list[bytes], dict[str, bytes]]:
        return [_encode(state)], encoding(replace(state, companies={}))[1]

    def decode_section(
        document: bytes, sections: Mapping[str, bytes], saved_at: float, version: int
    ) -> SavedState:
        proto = (_decode(document, saved_at, lambda c: c) if structs
                 else _decode(document, saved_at, dataclass_of))  # fmt: skip
        rest = decoding(_ENCODER.encode(fleet_of(proto)), sections, saved_at, version)
        return replace(proto, sections=rest.sections)

    def save(path: Any, state: SavedState, shard: Any, rendered: bytes = b"") -> None:
        saving(path, state, shard)

    statecodec.encode = encode_section
    statecodec.decode = decode_section
    if not keep_rendering:
        statefile.save = save


@contextmanager
def installed(structs: bool = False, keep_rendering: bool = False) -> Iterator[None]:
    """``install`` for the block only (the benchmark times both codecs in one process)."""
    kept = statecodec.encode, statecodec.decode, statefile.save
    install(structs, keep_rendering)
    try:
        yield
    finally:
        statecodec.encode, statecodec.decode, statefile.save = kept
