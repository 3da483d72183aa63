"""A company listed in ``companies.ids`` that Codat answers 404 (issue 16, item 4): a typo,
another account's id, or a company deleted in Codat. It stays visible as not found, on
/metrics, the status page, its JSON and the log, until the configuration changes; one that
discovery found and Codat deleted leaves (tests/codat/test_client.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from exporter.poll.statefile import load
from exporter.web.status import NOT_FOUND_TEXT
from tests.config.test_series import FLEET_PRESET
from tests.harness import Harness
from tests.statusfleet import poll_rows

README_ID = "8a210b68-6988-11ed-a1eb-0242ac120002"
"""The id README's "Use it with Codat" configures; the simulated Codat does not know it."""
UP = "codat_exporter_company_up"
NOT_FOUND = "codat_exporter_company_not_found"
SYNCED = "codat_data_type_last_successful_sync_timestamp_seconds"
LAST_SUCCESS = "codat_exporter_company_last_poll_success_timestamp_seconds"


def said(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def test_should_keep_readmes_example_id_on_metrics_as_down_and_not_found(
    make_harness: Callable[..., Harness], caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: README's config, against a Codat that does not know the id
    harness = make_harness(companies={"ids": [README_ID]})
    # Act: two cycles, as a user would leave it running
    with caplog.at_level(logging.INFO, logger="exporter"):
        first = harness.poll()
        harness.clock.advance(harness.config.poll.interval)
        harness.poll()
    scrape = harness.scrape()
    ready = harness.get("/-/ready")
    # Check: down, not found, counted as a failed company; ready, as it serves
    assert (first.failed, first.gone) == (1, 0)
    assert scrape.value(UP, company_id=README_ID) == 0
    assert scrape.value(NOT_FOUND, company_id=README_ID) == 1
    assert scrape.value("codat_exporter_companies") == 1
    assert scrape.value("codat_exporter_poll_errors_total", reason="not_found") == 2
    assert ready.status_code == 200
    # Check: said once for the episode, as not found, never as gone
    assert said(caplog, README_ID)[0] == (
        f"company {README_ID} not found in Codat (404): check companies.ids; shown with "
        "codat_exporter_company_up 0, no values yet"
    )
    assert len(said(caplog, f"{README_ID} not found in Codat")) == 1
    assert not said(caplog, "no longer exists")


def test_should_list_readmes_example_id_on_the_status_page_and_its_json_with_the_reason(
    make_harness: Callable[..., Harness],
) -> None:
    # Prepare
    harness = make_harness(companies={"ids": [README_ID]})
    harness.poll()
    # Act: the page, the page as the alert links to it, and the JSON
    page = harness.get("/").text
    linked = harness.get(f"/?company={README_ID}").text
    body = harness.get("/api/v1/status").json()
    # Check
    assert "0 companies monitored" not in page
    assert "1 company monitored, 0 polled successfully" in page
    for html in (page, linked):
        assert [(r["company-id"], r["last_poll_cell"], r["why_cell"]) for r in poll_rows(html)] == [
            (README_ID, "never", NOT_FOUND_TEXT)
        ]
    assert NOT_FOUND_TEXT == "not found in Codat (404): check companies.ids"
    assert (body["summary"]["companies"], body["summary"]["companies_up"]) == (1, 0)
    assert body["companies"] == [
        {"company_id": README_ID, "company_name": "", "up": False, "poll_error": "not_found",
         "poll_error_message": NOT_FOUND_TEXT, "last_poll_success": None, "connections": []}
    ]  # fmt: skip


def test_should_keep_the_last_good_values_of_a_listed_company_that_codat_deleted(
    make_harness: Callable[..., Harness], fleet_ids: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: polled fine, then deleted in Codat while still listed
    harness = make_harness()
    deleted, other = fleet_ids[0], fleet_ids[1]
    harness.poll()
    before = harness.scrape()
    harness.fleet.remove(deleted)
    harness.clock.advance(harness.config.poll.interval)
    # Act
    with caplog.at_level(logging.INFO, logger="exporter"):
        harness.poll()
    after = harness.scrape()
    page = harness.get(f"/?company={deleted}").text
    # Check: still there, down and not found, with its last good values and their time
    assert after.companies() == before.companies()
    assert after.value(UP, company_id=deleted) == 0
    assert after.value(NOT_FOUND, company_id=deleted) == 1
    assert after.value(UP, company_id=other) == 1
    assert not after.find(NOT_FOUND, company_id=other)
    assert after.find(SYNCED, company_id=deleted) == before.find(SYNCED, company_id=deleted)
    assert after.value(LAST_SUCCESS, company_id=deleted) == before.value(
        LAST_SUCCESS, company_id=deleted
    )
    assert said(caplog, f"company {deleted} not found in Codat (404)")[0].endswith(
        "keeping its last good values"
    )
    assert [r["why_cell"] for r in poll_rows(page)] == [NOT_FOUND_TEXT]


def test_should_show_a_listed_company_as_up_once_codat_finds_it(
    make_harness: Callable[..., Harness], fleet_ids: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: not found for a cycle (the id was restored in Codat), then found
    harness = make_harness()
    company = fleet_ids[0]
    kept = harness.fleet.companies[company]
    harness.fleet.remove(company)
    harness.poll()
    harness.fleet.companies[company] = kept
    harness.clock.advance(harness.config.poll.interval)
    # Act
    with caplog.at_level(logging.INFO, logger="exporter"):
        harness.poll()
    scrape = harness.scrape()
    body = harness.get(f"/api/v1/status?company={company}").json()
    # Check
    assert scrape.value(UP, company_id=company) == 1
    assert not scrape.find(NOT_FOUND)
    assert scrape.find(SYNCED, company_id=company)
    assert said(caplog, f"company {company}: poll succeeded again")
    assert (body["companies"][0]["poll_error"], body["companies"][0]["poll_error_message"]) == (
        None, None,
    )  # fmt: skip


def test_should_keep_the_not_found_company_for_the_alert_under_the_fleet_preset(
    make_harness: Callable[..., Harness],
) -> None:
    # Prepare
    harness = make_harness(companies={"ids": [README_ID]}, metrics=FLEET_PRESET)
    # Act
    harness.poll()
    scrape = harness.scrape()
    # Check
    assert scrape.value(UP, company_id=README_ID) == 0
    assert scrape.value(NOT_FOUND, company_id=README_ID) == 1


def test_should_still_show_the_not_found_company_and_why_after_a_restart(
    make_harness: Callable[..., Harness], fleet_ids: list[str], tmp_path: Path
) -> None:
    # Prepare: one exporter polls once, writes its state file and stops
    path = tmp_path / "state.json"
    sections = {"companies": {"ids": [README_ID, fleet_ids[0]]}, "state": {"file": str(path)}}
    before = make_harness(**sections)
    before.poll()
    before.close()
    # Act: the next one loads the file (the state decoded, rendered again) before any poll
    after = make_harness(**sections)
    saved = load(path, after.config.shard)
    assert saved is not None
    after.poller.restore(saved)
    scrape = after.scrape()
    body = after.get(f"/api/v1/status?company={README_ID}").json()
    # Check
    assert scrape.value(NOT_FOUND, company_id=README_ID) == 1
    assert not scrape.find(NOT_FOUND, company_id=fleet_ids[0])
    assert body["companies"][0]["poll_error_message"] == NOT_FOUND_TEXT
