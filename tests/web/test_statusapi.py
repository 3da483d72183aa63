"""``GET /api/v1/status`` (issue 9, part 2): the status page's data for scripts, with the
same filters and every matching pair, checked over real HTTP; and the demo fleet's page and
JSON checked against what /metrics says of the same pairs."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from exporter.core.snapshot import DiscoveryFacts, Facts
from exporter.demo import start_demo
from tests.harness import START, FakeClock, Harness, Scrape
from tests.promtools import ROOT
from tests.statusfleet import (
    HOUR,
    Servers,
    company,
    fleet,
    pair,
    pairs_of,
    relink_fleet,
    relink_rows,
    table_rows,
)


@pytest.fixture
def serve() -> Iterator[Servers]:
    servers = Servers()
    yield servers
    servers.close()


def by_pair(body: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(p["company_id"], p["data_type"]): p for p in body["pairs"]}


def test_should_describe_each_pair_with_the_fields_the_docs_document(serve: Servers) -> None:
    # Prepare
    server = fleet(serve)
    # Act
    pairs = by_pair(server.api())
    # Check
    assert pairs["c1", "invoices"] == {
        "company_id": "c1", "company_name": "Acme Ltd", "data_type": "invoices",
        "status": "Complete", "states": ["stale"],
        "last_successful_sync": "2026-11-23T07:00:00Z", "age_seconds": 18000.0,
        "max_age_seconds": 7200.0, "stale": True, "paused_until": None,
        "latest_sync_requested": None, "error_message": None, "status_description": None,
        "refresh_queued_at": None, "refresh_attempts": 0, "refresh_due_at": None,
        "connection_status": "Deauthorized",
        "connection_platform": "Xero", "company_up": True, "next_step": "relink",
    }  # fmt: skip
    assert pairs["c1", "bills"]["error_message"] == "Token expired"
    assert pairs["c1", "bills"]["stale"] is False
    never = pairs["c2", "payments"]
    assert (never["last_successful_sync"], never["age_seconds"], never["stale"]) == (
        None, None, False,
    )  # fmt: skip
    paused = pairs["c3", "bills"]
    assert paused["paused_until"] == "2026-11-23T13:00:00Z"
    assert paused["status_description"] == "Paused until 2026-11-23T13:00:00Z"
    assert pairs["c2", "items"]["latest_sync_requested"] == "2026-11-23T05:00:00Z"
    assert pairs["c2", "items"]["connection_status"] is None


def test_should_sum_up_the_fleet_and_list_its_companies(serve: Servers) -> None:
    # Prepare
    server = fleet(serve)
    server.store.note(lambda facts: Facts(
        quota_remaining=20939, quota_limit=21000, quota_reset=START + 12 * HOUR,
        discovery=DiscoveryFacts(last_success=START - 600),
    ))  # fmt: skip
    server.clock.advance(30)
    # Act
    body = server.api("?status=AuthError")
    # Check
    assert body["generated_at"] == "2026-11-23T12:00:30Z"
    assert datetime.fromisoformat(body["generated_at"]).timestamp() == START + 30
    assert (body["ready"], body["not_ready_reason"]) == (True, None)
    assert body["summary"] == {
        "companies": 3, "companies_up": 3, "pairs": 8, "stale": 2, "failing": 1,
        "auth_error": 1, "never_synced": 1, "paused": 1, "in_progress": 2, "stuck": 1,
        "healthy": 2, "matching": 1, "last_cycle_end": "2026-11-23T11:59:40Z",
        "last_cycle_duration_seconds": 12.5, "quota_remaining": 20939.0,
        "quota_limit": 21000.0, "quota_reset": "2026-11-24T00:00:00Z",
        "discovery": {"used": True, "last_success": "2026-11-23T11:50:00Z", "failures": 0},
        "platform_incidents": {}, "shard": None,
    }  # fmt: skip
    assert body["filters"] == {"status": ["AuthError"], "company": [], "data_type": [],
                               "connection": [], "platform": [], "next_step": [],
                               "all": False}  # fmt: skip
    xero = [{"connection_id": "k1", "platform": "Xero", "source_type": "Accounting",
             "status": "Deauthorized", "on_premise": False, "link_url": None}]  # fmt: skip
    assert body["companies"] == [
        {"company_id": c, "company_name": n, "up": True, "poll_error": None,
         "poll_error_message": None, "last_poll_success": "2026-11-23T11:59:30Z",
         "connections": k}
        for c, n, k in (("c1", "Acme Ltd", xero), ("c2", "Bolt Inc", []), ("c3", "Cobalt", []))
    ]  # fmt: skip


@pytest.mark.parametrize(
    "query",
    ["", "all=1", "status=stale", "status=healthy", "status=in_progress,NeverSynced",
     "status=Queued", "data_type=invoices", "company=c2", "company=acme&all=1",
     "status=stale&data_type=invoices", "connection=Deauthorized", "platform=xero&all=1",
     "connection=Linked"],
)  # fmt: skip
def test_should_list_the_same_pairs_in_the_same_order_as_the_page(
    serve: Servers, query: str
) -> None:
    # Prepare
    server = fleet(serve)
    # Act
    page, api = server.rows(f"/?{query}"), server.api(f"?{query}")
    # Check: the page collapses a company's pairs that share a next step (and cause) into
    # one row, where the first of them is; otherwise the same order
    assert pairs_of(page) == grouped(api["pairs"])
    states = {(p["company_id"], p["data_type"]): " ".join(p["states"]) for p in api["pairs"]}
    assert [row["states"] for row in page] == [states[pair] for pair in pairs_of(page)]
    steps = {(p["company_id"], p["data_type"]): p["next_step"] or "" for p in api["pairs"]}
    assert [row["next-step"] for row in page] == [steps[pair] for pair in pairs_of(page)]


def grouped(pairs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The API's pairs, those of one company with one next step where the first is (in
    ``fleet`` a next step has one cause per company)."""
    groups: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for p in pairs:
        key = (p["company_id"], p["next_step"] or "")
        groups.setdefault(key, []).append((p["company_id"], p["data_type"]))
    return [pair for members in groups.values() for pair in members]


@pytest.mark.parametrize(
    "status", ["", "stale", "failing", "AuthError", "NeverSynced", "paused", "stuck",
               "in_progress", "healthy", "Queued", "Complete"],
)  # fmt: skip
def test_should_judge_a_pair_alike_with_or_without_a_company_filter(
    serve: Servers, status: str
) -> None:
    # Prepare: a company filter judges its pairs one by one, the fleet view by lists
    server = fleet(serve)
    query = f"status={status}" if status else ""
    # Act
    fleetwide = by_pair(server.api(f"?{query}"))
    per_company = [by_pair(server.api(f"?{query}&company=c{n}")) for n in (1, 2, 3)]
    # Check
    assert fleetwide == {k: v for found in per_company for k, v in found.items()}


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [("FetchError,NeverSynced", [("c2", "invoices"), ("c2", "payments")]),
     ("NeverSynced,stuck", [("c2", "items"), ("c2", "payments")])],
)  # fmt: skip
def test_should_list_the_pairs_of_any_of_several_statuses_of_the_asked_company(
    serve: Servers, statuses: str, expected: list[tuple[str, str]]
) -> None:
    # Prepare: c2 Bolt has invoices FetchError, payments NeverSynced, items stuck
    server = fleet(serve)
    query = f"status={statuses}&company=c2"
    # Act
    page, api = server.rows(f"/?{query}"), server.api(f"?{query}")
    # Check
    assert pairs_of(page) == expected
    assert [(p["company_id"], p["data_type"]) for p in api["pairs"]] == expected


def test_should_return_every_matching_pair_beyond_the_pages_row_limit(serve: Servers) -> None:
    # Prepare: 1,100 healthy pairs and one stale
    types = [f"type{n:02d}" for n in range(25)]
    companies = [company(f"c{i:02d}", *(pair(t) for t in types)) for i in range(44)]
    server = serve(*companies, company("z", pair("invoices", age=3 * HOUR)))
    # Act
    default, everything = server.api(), server.api("?all=1")
    # Check
    assert [(p["company_id"], p["data_type"]) for p in default["pairs"]] == [("z", "invoices")]
    assert len(everything["pairs"]) == everything["summary"]["matching"] == 1101
    assert everything["pairs"][0]["company_id"] == "z"  # the stale one first


def test_should_list_the_companies_with_a_connection_of_the_asked_status_on_the_platform(
    serve: Servers,
) -> None:
    # Prepare: c6 Dormant's pairs are all healthy, its Xero connection Deauthorized
    server = relink_fleet(serve)
    # Act
    body = server.api("?connection=deauthorized&platform=XERO")
    page = relink_rows(server.get("/?connection=deauthorized&platform=XERO").text)
    # Check
    assert [c["company_id"] for c in body["companies"]] == ["c1", "c6"]
    assert [c["company_id"] for c in body["companies"]] == [row["company-id"] for row in page]
    assert body["companies"][1] == {
        "company_id": "c6", "company_name": "Dormant Ltd", "up": True, "poll_error": None,
        "poll_error_message": None, "last_poll_success": "2026-11-23T11:59:30Z",
        "connections": [{"connection_id": "k6", "platform": "Xero",
                         "source_type": "Accounting", "status": "Deauthorized",
                         "on_premise": False, "link_url": None}],
    }  # fmt: skip
    assert (body["filters"]["connection"], body["filters"]["platform"]) == (
        ["Deauthorized"], ["XERO"],
    )  # fmt: skip
    assert list(by_pair(body)) == [("c1", "invoices"), ("c1", "bills")]


@pytest.mark.parametrize("query", ["?status=Bogus", "?all=perhaps", "?connection=Revoked"])
def test_should_answer_400_in_json_for_a_filter_that_means_nothing(
    serve: Servers, query: str
) -> None:
    # Prepare
    server = fleet(serve)
    # Act
    response = server.get("/api/v1/status" + query)
    # Check
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/json"
    assert set(response.json()) == {"error"}
    assert response.json()["error"].split(":")[0] == query[1:].partition("=")[0]


def test_should_say_in_json_why_it_is_not_ready(serve: Servers) -> None:
    # Prepare
    reason = "company discovery has not succeeded yet (HTTP 503)"
    server = serve(snapshot_fields={"unready_reason": reason})
    # Act
    body = server.api()
    # Check
    assert (body["ready"], body["not_ready_reason"]) == (False, reason)
    assert body["pairs"] == [] and body["summary"]["pairs"] == 0


def stale_in_metrics(scrape: Scrape) -> set[tuple[str, str]]:
    """The pairs /metrics shows as stale: age above max age."""
    ages = {(s.labels["company_id"], s.labels["data_type"]): s.value
            for s in scrape.find("codat_data_type_last_successful_sync_age_seconds")}  # fmt: skip
    limits = {(s.labels["company_id"], s.labels["data_type"]): s.value
              for s in scrape.find("codat_data_type_max_age_seconds")}  # fmt: skip
    return {key for key, age in ages.items() if age > limits[key]}


@pytest.fixture
def demo(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> Iterator[Harness]:
    """The demo's fleet and config, polled once by the real exporter."""
    caplog.set_level(logging.ERROR)
    clock = FakeClock()
    simulator, config = start_demo(clock, str(tmp_path))
    harness = Harness(config, clock, simulator)
    harness.poll()
    yield harness
    harness.close()
    simulator.stop()


def test_should_show_every_pair_metrics_calls_stale_and_agree_with_metrics_on_each(
    demo: Harness,
) -> None:
    # Act
    scrape = demo.scrape()
    api = demo.get("/api/v1/status").json()
    page = table_rows(demo.get("/").text)
    # Check
    listed = by_pair(api)
    stale = stale_in_metrics(scrape)
    assert stale and stale <= set(listed)
    assert set(pairs_of(page)) == set(listed)
    assert {k for k, p in listed.items() if p["stale"]} == stale
    assert api["summary"]["stale"] == len(stale)
    for (company_id, data_type), entry in listed.items():
        labels = {"company_id": company_id, "data_type": data_type}
        assert scrape.value("codat_data_type_status", status=entry["status"], **labels) == 1
        assert scrape.value("codat_data_type_max_age_seconds", **labels) == entry["max_age_seconds"]


def docs_sample() -> dict[str, Any]:
    """The JSON sample of docs/status-page.md's "The JSON API" section."""
    page = (ROOT / "docs" / "status-page.md").read_text(encoding="utf-8")
    section = page.split("\n## The JSON API\n", 1)[1]
    sample: dict[str, Any] = json.loads(section.split("```json\n", 1)[1].split("```", 1)[0])
    return sample


def test_should_answer_with_the_fields_of_the_docs_sample(serve: Servers) -> None:
    # Prepare
    sample = docs_sample()
    server = fleet(serve)
    # Act
    body = server.api("?status=failing&company=c2")
    # Check
    assert body.keys() == sample.keys()
    assert body["summary"].keys() == sample["summary"].keys()
    assert body["pairs"][0].keys() == sample["pairs"][0].keys()
    assert body["companies"][0].keys() == sample["companies"][0].keys()
    assert body["pairs"] == sample["pairs"]
    assert body["filters"] == sample["filters"]
