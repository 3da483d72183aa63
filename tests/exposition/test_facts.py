"""The facts on the snapshot (the quota Codat's answers state, how discovery goes, the request
estimate): one source for the gauges and the status page, swapped in without rendering the
companies again. Real HTTP against the simulator, injected clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from exporter.core.contract import COMPANIES
from exporter.core.snapshot import DiscoveryFacts, Facts
from exporter.exposition.facts import facts_text
from exporter.simulator.faults import LISTING, Fault
from exporter.web import status
from tests.harness import START, Harness

REGISTRY_TEXT = """\
# HELP codat_exporter_discovery_failures_total Company discoveries (GET /companies) that failed; the last known list is kept.
# TYPE codat_exporter_discovery_failures_total counter
codat_exporter_discovery_failures_total 2.0
# HELP codat_api_quota_limit Codat's daily request quota for this client (X-Rate-Limit-Limit of the latest response).
# TYPE codat_api_quota_limit gauge
codat_api_quota_limit 21000.0
# HELP codat_api_quota_remaining Requests left in Codat's daily quota (X-Rate-Limit-Remaining of the latest response).
# TYPE codat_api_quota_remaining gauge
codat_api_quota_remaining 20939.0
# HELP codat_api_quota_reset_timestamp_seconds Unix time the daily quota resets (X-Rate-Limit-Reset of the latest response).
# TYPE codat_api_quota_reset_timestamp_seconds gauge
codat_api_quota_reset_timestamp_seconds 1.7954784e+09
# HELP codat_exporter_estimated_daily_requests Requests a day the whole fleet's configuration needs (all shards), estimated at start and after each discovery; compare with codat_api_quota_limit.
# TYPE codat_exporter_estimated_daily_requests gauge
codat_exporter_estimated_daily_requests 1.4640005e+06
# HELP codat_exporter_last_discovery_success_timestamp_seconds Unix time of the last successful company discovery.
# TYPE codat_exporter_last_discovery_success_timestamp_seconds gauge
codat_exporter_last_discovery_success_timestamp_seconds 1.795434600123e+09
"""  # noqa: E501
"""These families as the exporter's prometheus_client registry rendered them, before they
travelled on the snapshot (its gauges and counter, set to the same values)."""


def test_should_render_the_facts_as_the_registry_rendered_them() -> None:
    # Prepare
    facts = Facts(
        quota_limit=21000, quota_remaining=20939, quota_reset=1795478400,
        estimated_daily_requests=1464000.5,
        discovery=DiscoveryFacts(last_success=1795434600.123, failures=2),
    )  # fmt: skip
    # Act
    text = facts_text(facts).decode()
    unknown = facts_text(Facts()).decode()
    # Check: the same names, HELP and numbers; a gauge not known yet has no sample
    assert text == REGISTRY_TEXT
    assert unknown == "".join(REGISTRY_TEXT.splitlines(keepends=True)[:3]).replace("2.0", "0.0")


def test_should_show_the_page_and_the_gauges_the_same_facts(
    make_harness: Callable[..., Harness],
) -> None:
    # Prepare: discovery, and one worker so that the last answer read is the last sent
    harness = make_harness(
        companies={"ids": [], "discover": True, "discovery_interval": "1h"},
        codat={"max_concurrency": 1},
    )
    harness.poll()
    harness.fleet.inject(LISTING, Fault("status", status=503, endpoint=COMPANIES))
    harness.clock.advance(3600)
    # Act
    harness.poll()
    scrape = harness.scrape()
    summary = harness.get("/api/v1/status").json()["summary"]
    facts = harness.store.current.snapshot.facts
    # Check: one source, three readers
    assert facts.quota_remaining is not None and facts.estimated_daily_requests is not None
    assert scrape.value("codat_api_quota_remaining") == summary["quota_remaining"]
    assert summary["quota_remaining"] == facts.quota_remaining
    assert scrape.value("codat_api_quota_limit") == summary["quota_limit"] == facts.quota_limit
    reset = datetime.fromisoformat(summary["quota_reset"]).timestamp()
    assert scrape.value("codat_api_quota_reset_timestamp_seconds") == reset == facts.quota_reset
    last = datetime.fromisoformat(summary["discovery"]["last_success"]).timestamp()
    assert scrape.value("codat_exporter_last_discovery_success_timestamp_seconds") == last
    assert last == facts.discovery.last_success == START
    assert scrape.value("codat_exporter_discovery_failures_total") == 1
    assert summary["discovery"] == {"used": True, "last_success": "2026-11-23T12:00:00Z",
                                    "failures": 1}  # fmt: skip
    assert scrape.value("codat_exporter_estimated_daily_requests") == (
        facts.estimated_daily_requests
    )


def test_should_swap_in_a_new_fact_without_rendering_the_companies_again(
    harness: Harness,
) -> None:
    # Prepare: a snapshot published, its status page built once
    harness.poll()
    before = harness.store.current
    assert harness.get("/").status_code == 200
    # Act
    harness.store.note(lambda facts: replace(facts, quota_remaining=17.0))
    after = harness.store.current
    # Check: the new fact served; the same rendering and companies, the page's index too
    assert harness.scrape().value("codat_api_quota_remaining") == 17.0
    assert harness.get("/api/v1/status").json()["summary"]["quota_remaining"] == 17.0
    assert after is not before and after.rendered is before.rendered
    assert after.snapshot.companies is before.snapshot.companies
    assert status._index(after) is status._index(before)
