"""The state file's state, encoded and decoded: the companies' states, when the last cycle
ended, and each component's own section (``exporter.poll.components``).

The ``state`` section is JSON lines: the first of what is fleet-wide, then one per company
with what its last poll showed, so that decoding never holds the interpreter for long in
one ``json.loads`` (a scrape served meanwhile gets its share)::

    {"last_poll":1795435200.0,"poll_duration":0.4}
    {"id":"8a210b68-...","name":"Acme Ltd","created":1764633600.0,"up":true,"poll_error":"",
     "not_found":false,"polled":1795435200.0,"types":[["invoices","Complete",1795431317.9,
     "3e7f58e3-...","3e7f58e3-..."]],"connections":[["75b1...","Xero","Accounting","Linked",
     false]],"schedules":{},"syncs":{}}

Each component's section is one JSON document, a section of the file of its own. Version 3
(read, never written) kept them in the state section: the fleet line's ``listed`` and
``listed_at`` (discovery), ``fetched`` (side values) and ``extra.refresh``, and each
company line's ``seen`` (diagnostics); decoding moves them where version 4 has them.

Everything is checked as it is decoded; a document that is not what ``encode`` writes
raises StateFileError naming the first problem, and nothing of it is used.
"""

from __future__ import annotations

import gc
import json
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from exporter.codat.diagnostics import SyncDiagnostics
from exporter.codat.discovery import Discovery
from exporter.codat.refresh import Refresher
from exporter.codat.sidevalues import SideValues
from exporter.core.decoding import (
    as_bool,
    as_dict,
    as_list,
    as_number,
    as_optional_str,
    as_str,
    as_time,
)
from exporter.core.snapshot import CompanyState, ConnectionState, DataTypeStatus, SyncDetail


class StateFileError(ValueError):
    """Why a state file cannot be used; the message is for one log line."""


@dataclass(frozen=True)
class SavedState:
    """Everything the file holds, decoded."""

    saved_at: float
    companies: Mapping[str, CompanyState]
    last_poll: float | None = None
    poll_duration: float | None = None
    sections: Mapping[str, Any] = field(default_factory=dict)
    """Each component's section, by its key, as JSON values (checked when restored)."""


@contextmanager
def collection_paused() -> Iterator[None]:
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


def encode(state: SavedState) -> tuple[list[bytes], dict[str, bytes]]:
    """The state section as its pieces, newlines included (``statefile.save`` writes them
    as they are: joined, they would be a second copy, 70 MB at 10,000 x 25), and each
    component's section."""
    pieces = [_json({"last_poll": state.last_poll, "poll_duration": state.poll_duration})]
    for company in state.companies.values():
        pieces += (b"\n", _json(_encode_company(company)))
    return pieces, {key: _json(section) for key, section in state.sections.items()}


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


def decode(
    document: bytes, sections: Mapping[str, bytes], saved_at: float, version: int
) -> SavedState:
    """The state of a file of ``version`` (3 or 4), its sections checked; StateFileError."""
    try:
        lines = _lines(document)
        fleet = as_dict(next(lines))
        companies: dict[str, CompanyState] = {}
        seen: dict[str, Any] = {}
        for line in lines:
            raw = as_dict(line)
            company = _decode_company(raw)
            companies[company.company_id] = company
            if version == 3 and as_dict(raw["seen"]):
                seen[company.company_id] = raw["seen"]
        if version == 3:
            decoded = _version_3_sections(fleet, seen, saved_at)
        else:
            decoded = {key: _loads(key, data) for key, data in sections.items()}
        return SavedState(
            saved_at=saved_at,
            companies=companies,
            last_poll=as_time(fleet.get("last_poll")),
            poll_duration=as_time(fleet.get("poll_duration")),
            sections=decoded,
        )
    except (KeyError, IndexError, TypeError, ValueError, OverflowError, StopIteration) as exc:
        if isinstance(exc, StateFileError):
            raise
        raise StateFileError(f"malformed content ({type(exc).__name__}: {exc})") from None


def _version_3_sections(
    fleet: Mapping[str, Any], seen: dict[str, Any], saved_at: float
) -> dict[str, Any]:
    """Version 3's fleet line and companies' ``seen``, as version 4's sections."""
    sections: dict[str, Any] = {SyncDiagnostics.key: seen}
    if fleet.get("listed") is not None:
        listed_at = fleet.get("listed_at")
        sections[Discovery.key] = {
            "listed": fleet["listed"],
            "listed_at": saved_at if listed_at is None else listed_at,
        }
    if fleet.get("fetched"):
        sections[SideValues.key] = fleet["fetched"]
    refresh = as_dict(fleet.get("extra") or {}).get("refresh")
    if refresh is not None:
        sections[Refresher.key] = refresh
    return sections


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


def _loads(key: str, data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        raise StateFileError(f"its section {key!r} is not valid JSON") from None


def _encode_company(company: CompanyState) -> dict[str, Any]:
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
    }


def _decode_company(raw: dict[str, Any]) -> CompanyState:
    return CompanyState(
        company_id=as_str(raw["id"]),
        name=as_str(raw["name"]),
        created=as_time(raw["created"]),
        up=as_bool(raw["up"]),
        poll_error=as_str(raw.get("poll_error", "")),  # these two: absent from older files
        not_found=as_bool(raw.get("not_found", False)),
        last_poll_success=as_time(raw["polled"]),
        data_types=tuple(map(_data_type, map(as_list, as_list(raw["types"])))),
        connections=tuple(map(_connection, map(as_list, as_list(raw["connections"])))),
        sync_schedules={
            sys.intern(as_str(k)): as_number(v) for k, v in as_dict(raw["schedules"]).items()
        },
        syncs={
            as_str(k): SyncDetail(
                as_str(v[0]),
                as_str(v[1]),
                as_optional_str(v[2]),
                as_optional_str(v[3]),
                as_time(v[4]),
                as_time(v[5]),
                None if v[6] is None else int(as_number(v[6])),
                as_time(v[7]),
                as_str(v[8]) if len(v) > 8 else "",  # connection_id: absent from older files
            )
            for k, v in as_dict(raw["syncs"]).items()
        },
    )


def _connection(item: list[Any]) -> ConnectionState:
    """``on_premise`` is absent from older files."""
    on_premise = len(item) > 4 and as_bool(item[4])
    return ConnectionState(as_str(item[0]), as_str(item[1]), as_str(item[2]), as_str(item[3]),
                           on_premise)  # fmt: skip


def _data_type(item: list[Any]) -> DataTypeStatus:
    """As ``codat.parse_data_statuses`` builds it: names and statuses interned, one string
    for a sync that is both the latest and the latest successful (the polls after a restart
    keep a restored pair's objects as long as it does not change)."""
    latest, successful = as_str(item[3]), as_str(item[4])
    return DataTypeStatus(sys.intern(as_str(item[0])), sys.intern(as_str(item[1])),
                          as_time(item[2]), latest,
                          latest if successful == latest else successful)  # fmt: skip
