"""Shared by the status page, API and browser tests: snapshots made to order, served by the
exporter's real HTTP server with a fake clock, and the page's table read back as a person
would read it."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import requests

from exporter.config.sections import StatusPageConfig
from exporter.config.series import FreshnessConfig
from exporter.config.sharding import Shard
from exporter.core.snapshot import (
    CompanyState,
    ConnectionState,
    DataTypeStatus,
    Snapshot,
    SyncDetail,
)
from exporter.exposition.instruments import ExporterMetrics
from exporter.exposition.render import Exposition
from exporter.exposition.store import SnapshotStore
from exporter.web.server import ExporterServer
from exporter.web.status import DEFAULT_PAGE
from exporter.web.webconfig import WebConfig
from tests.harness import START, FakeClock

HOUR = 3600.0
FRESHNESS = FreshnessConfig(default_max_age=2 * HOUR)


def pair(
    data_type: str, status: str = "Complete", age: float | None = 60.0, sync_id: str = ""
) -> DataTypeStatus:
    """A data type last synced ``age`` seconds before START (None: never)."""
    last = None if age is None else START - age
    return DataTypeStatus(data_type, status, last, latest_sync_id=sync_id or f"s-{data_type}")


def company(
    company_id: str,
    *items: DataTypeStatus,
    name: str = "",
    up: bool = True,
    connections: tuple[ConnectionState, ...] = (),
    syncs: dict[str, SyncDetail] | None = None,
) -> CompanyState:
    return CompanyState(
        company_id=company_id,
        name=name or f"Company {company_id}",
        up=up,
        last_poll_success=START - 30 if up else START - 5 * HOUR,
        data_types=items,
        connections=connections,
        syncs=syncs or {},
    )


def snapshot(*companies: CompanyState, **fields: Any) -> Snapshot:
    return Snapshot(
        companies={c.company_id: c for c in companies},
        monitored=len(companies),
        poll_duration=fields.pop("poll_duration", 12.5),
        last_poll=fields.pop("last_poll", START - 20),
        **fields,
    )


@dataclass
class StatusServer:
    """The exporter's HTTP server over a snapshot of the test's making."""

    snapshot: Snapshot
    clock: FakeClock = field(default_factory=FakeClock)
    freshness: FreshnessConfig = FRESHNESS
    web_config: WebConfig | None = None
    metrics: ExporterMetrics = field(default_factory=ExporterMetrics)
    page: StatusPageConfig = DEFAULT_PAGE
    shard: Shard = field(default_factory=Shard)

    def __post_init__(self) -> None:
        self.store = SnapshotStore(Exposition(self.snapshot, self.freshness, 300.0))
        self.store.publish(self.store.current)
        self.server = ExporterServer(
            "127.0.0.1:0",
            self.store,
            self.metrics,
            self.clock,
            web_config=self.web_config,
            status_page=self.page,
            shard=self.shard,
        )
        self.server.start()

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.server.url + path, timeout=10, **kwargs)

    def rows(self, path: str = "/") -> list[dict[str, str]]:
        response = self.get(path)
        assert response.status_code == 200, response.text
        return table_rows(response.text)

    def api(self, query: str = "") -> dict[str, Any]:
        response = self.get("/api/v1/status" + query)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def close(self) -> None:
        self.server.stop()


PAIR_CELLS = ("company", "data_type", "status", "last_sync", "ages", "latest_sync",
              "connection", "poll", "next_step")  # fmt: skip
RELINK_CELLS = ("company", "connections")
POLL_CELLS = ("company", "last_poll", "why")


class _Rows(HTMLParser):
    """A table's rows: each row's data-* attributes, plus its cells' text and links."""

    def __init__(self, table: str, names: tuple[str, ...]) -> None:
        super().__init__()
        self.rows: list[dict[str, str]] = []
        self._table, self._names = table, names
        self._cells: list[str] | None = None
        self._in_table = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "table":
            self._in_table = found.get("id") == self._table
        elif tag == "tr" and self._in_table and "data-company-id" in found:
            self.rows.append({k.removeprefix("data-"): v or "" for k, v in found.items()})
            self._cells = []
        elif tag == "td" and self._cells is not None:
            self._cells.append("")
        elif tag == "a" and self._cells:
            self.rows[-1].setdefault(
                f"{self._names[len(self._cells) - 1]}_link", found.get("href") or ""
            )

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr" and self._cells is not None:
            cells = (" ".join(cell.split()) for cell in self._cells)
            self.rows[-1].update(zip((f"{n}_cell" for n in self._names), cells, strict=True))
            self._cells = None
        elif tag == "table":
            self._in_table = False

    def handle_data(self, data: str) -> None:
        if self._cells:
            self._cells[-1] += data + " "


def table_rows(page: str) -> list[dict[str, str]]:
    """``[{"company-id": ..., "data-type": ..., "status": ..., "states": "AuthError stale",
    "company_cell": "Acme Ltd c1", "latest_sync_cell": ..., ...}]``"""
    parser = _Rows("pairs", PAIR_CELLS)
    parser.feed(page)
    return parser.rows


def relink_rows(page: str) -> list[dict[str, str]]:
    """The "Connections to relink" table's rows: ``[{"company-id": "c1", "company_cell":
    "Acme Ltd c1", "company_link": "/?company=c1", "connections_cell": "Deauthorized Xero
    (Accounting) k1"}]``"""
    parser = _Rows("connections", RELINK_CELLS)
    parser.feed(page)
    return parser.rows


def poll_rows(page: str) -> list[dict[str, str]]:
    """The "Companies whose latest poll failed" table's rows: ``[{"company-id": "c1",
    "company_cell": "Acme Ltd c1", "last_poll_cell": "never", "why_cell": "not found in
    Codat (404): check companies.ids"}]``"""
    parser = _Rows("polls", POLL_CELLS)
    parser.feed(page)
    return parser.rows


def pairs_of(rows: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [(row["company-id"], row["data-type"]) for row in rows]


class Servers:
    """Starts ``StatusServer``s for a test and stops them all after it."""

    def __init__(self) -> None:
        self._made: list[StatusServer] = []

    def __call__(self, *companies: CompanyState, **kwargs: Any) -> StatusServer:
        made = StatusServer(snapshot(*companies, **kwargs.pop("snapshot_fields", {})), **kwargs)
        self._made.append(made)
        return made

    def close(self) -> None:
        for made in self._made:
            made.close()


def fleet(serve: Servers, **kwargs: Any) -> StatusServer:
    """c1 Acme: invoices stale, bills AuthError, customers healthy; its Xero connection
    Deauthorized. c2 Bolt: invoices failing and stale, payments never synced, items queued
    for 7 h (stuck), accounts queued for 5 minutes (healthy). c3 Cobalt: bills paused for
    another hour. Max age 2 h."""
    return serve(*fleet_companies(), **kwargs)


def fleet_companies() -> tuple[CompanyState, ...]:
    """``fleet``'s companies."""
    acme = company(
        "c1",
        pair("invoices", age=5 * HOUR),
        pair("bills", "AuthError", age=HOUR),
        pair("customers"),
        name="Acme Ltd",
        connections=(ConnectionState("k1", "Xero", "Accounting", "Deauthorized"),),
        syncs={"bills": SyncDetail("s-bills", "AuthError", error_message="Token expired")},
    )
    bolt = company(
        "c2",
        pair("invoices", "FetchError", age=3 * HOUR),
        pair("payments", "NeverSynced", age=None),
        pair("items", "Queued"),
        pair("accounts", "Queued"),
        name="Bolt Inc",
        syncs={
            "invoices": SyncDetail("s-invoices", "FetchError", error_message="Xero answered 500"),
            "items": SyncDetail("s-items", "Queued", requested=START - 7 * HOUR),
            "accounts": SyncDetail("s-accounts", "Queued", requested=START - 300),
        },
    )
    cobalt = company(
        "c3",
        pair("bills", age=HOUR / 2),
        name="Cobalt",
        syncs={
            "bills": SyncDetail(
                "s-bills", "Complete", status_description="Paused until 2026-11-23T13:00:00Z",
                paused_until=START + HOUR,
            )
        },
    )  # fmt: skip
    return acme, bolt, cobalt


NEEDS_ATTENTION = [
    ("c1", "invoices"),  # 2.5 x its max age
    ("c2", "invoices"),  # 1.5 x
    ("c1", "bills"),  # 0.5 x
    ("c3", "bills"),  # 0.25 x, paused
    ("c2", "items"),  # stuck
    ("c2", "payments"),  # never synced: last
]
"""In the JSON's order, by age / max age."""
ON_THE_PAGE = [("c1", "invoices"), ("c1", "bills"), *NEEDS_ATTENTION[1:2], *NEEDS_ATTENTION[3:]]
"""In the page's: c1's two pairs share a cause (its Xero connection is Deauthorized), so
they are one row where the first of them is."""


def relink_fleet(serve: Servers, **kwargs: Any) -> StatusServer:
    """``fleet`` (c1 Acme: Xero Deauthorized) and three companies whose pairs are all
    healthy: c6 Dormant Ltd, Xero Deauthorized; c7 Quill, QuickBooks Online Deauthorized and
    Plaid Linked; c8 Steady, Xero Linked; and the ``extra`` companies."""
    dormant = company(
        "c6",
        pair("invoices"),
        pair("bills"),
        name="Dormant Ltd",
        connections=(ConnectionState("k6", "Xero", "Accounting", "Deauthorized"),),
    )
    quill = company(
        "c7",
        pair("invoices"),
        pair("banking-accounts"),
        name="Quill",
        connections=(
            ConnectionState("k7", "QuickBooks Online", "Accounting", "Deauthorized"),
            ConnectionState("k8", "Plaid", "Banking", "Linked"),
        ),
    )
    steady = company(
        "c8", pair("invoices"), name="Steady",
        connections=(ConnectionState("k9", "Xero", "Accounting", "Linked"),),
    )  # fmt: skip
    return serve(*fleet_companies(), dormant, quill, steady, *kwargs.pop("extra", ()), **kwargs)
