"""Fleet scale: discovery, connections, thresholds from sync settings, quota, spreading,
sharding. Real HTTP against the simulator, injected clock."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from exporter.config.sharding import shard_of
from exporter.core.contract import COMPANIES, DATA_STATUS, SYNC_SETTINGS
from exporter.simulator.faults import LISTING, Fault
from exporter.simulator.fleet import Fleet
from tests.harness import FakeClock, Harness, Scrape

UP = "codat_exporter_company_up"
MAX_AGE = "codat_data_type_max_age_seconds"
CREATED = "codat_company_created_timestamp_seconds"
ESTIMATED_DAILY = "codat_exporter_estimated_daily_requests"


def companies_up(scrape: Scrape) -> set[str]:
    return {s.labels["company_id"] for s in scrape.find(UP)}


def discovering(**companies: object) -> dict[str, object]:
    return {"ids": [], "discover": True, **companies}


def test_should_discover_every_company_over_several_pages(
    make_harness: Callable[..., Harness], fleet_ids: list[str]
) -> None:
    # Prepare
    harness = make_harness(companies=discovering(page_size=3))
    # Act
    harness.poll()
    scrape = harness.scrape()
    # Check
    assert companies_up(scrape) == set(fleet_ids)
    pages = [
        (q["page"], q["pageSize"]) for _, route, _, q in harness.codat.log if route == COMPANIES
    ]
    assert pages == [("1", "3"), ("2", "3"), ("3", "3")]
    names = {s.labels["company_name"] for s in scrape.find(UP)}
    assert names == {c.name for c in harness.fleet.companies.values()}
    created = {s.labels["company_id"]: s.value for s in scrape.find(CREATED)}
    assert created == pytest.approx({i: c.created for i, c in harness.fleet.companies.items()},
                                    abs=0.001)  # fmt: skip
    assert "/companies/{companyId}" not in harness.codat.requests, "names came from the listing"


def test_should_pass_the_tag_filter_and_add_and_exclude_ids(
    make_harness: Callable[..., Harness], fleet: Fleet
) -> None:
    # Prepare
    uk = sorted(i for i, c in fleet.companies.items() if c.tags["region"] == "uk")
    other = next(i for i, c in fleet.companies.items() if c.tags["region"] != "uk")
    harness = make_harness(
        companies=discovering(tags="region=uk", query="name~Ltd", ids=[other], exclude=[uk[0]])
    )
    # Act
    harness.poll()
    # Check
    assert companies_up(harness.scrape()) == {*uk[1:], other}
    query = next(q for _, route, _, q in harness.codat.log if route == COMPANIES)
    assert (query["tags"], query["query"]) == ("region=uk", "name~Ltd")


def test_should_lower_case_a_discovered_company_id_and_still_exclude_it(
    make_harness: Callable[..., Harness], fleet: Fleet, fleet_ids: list[str]
) -> None:
    # Prepare: Codat lists two companies under upper-case ids; one of them is excluded
    for company_id in fleet_ids[:2]:
        fleet.upper_case(company_id)
    harness = make_harness(companies=discovering(exclude=[fleet_ids[1]]))
    # Act
    harness.poll()
    scrape = harness.scrape()
    # Check: in lower case on every series, the excluded one on none
    expected = {fleet_ids[0], *fleet_ids[2:]}
    assert companies_up(scrape) == expected
    assert {s.labels["company_id"] for s in scrape.find("codat_data_type_status")} == expected


def test_should_drop_a_company_after_the_discovery_that_no_longer_lists_it(
    make_harness: Callable[..., Harness], fleet_ids: list[str]
) -> None:
    # Prepare
    harness = make_harness(companies=discovering(discovery_interval="1h"))
    harness.poll()
    harness.fleet.remove(fleet_ids[0])
    added = harness.fleet.add()
    # Act
    harness.clock.advance(3600)
    harness.poll()
    # Check
    assert companies_up(harness.scrape()) == {*fleet_ids[1:], added}


def test_should_keep_the_last_list_when_discovery_fails(
    make_harness: Callable[..., Harness], fleet_ids: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare
    harness = make_harness(companies=discovering(discovery_interval="5m"))
    harness.poll()
    harness.fleet.inject(LISTING, Fault("status", 500, endpoint=COMPANIES))
    harness.clock.advance(300)
    # Act
    with caplog.at_level(logging.WARNING):
        harness.poll()
    scrape = harness.scrape()
    # Check
    assert companies_up(scrape) == set(fleet_ids)
    assert {s.value for s in scrape.find(UP)} == {1}
    assert scrape.value("codat_exporter_discovery_failures_total") == 1
    assert any("keeping the last list of 8" in r.getMessage() for r in caplog.records)


def test_should_export_connection_statuses_with_zeros(
    make_harness: Callable[..., Harness], fleet: Fleet
) -> None:
    # Prepare
    harness = make_harness()
    deauthorized = next(fleet.ids_by_profile("auth_error"))
    # Act
    harness.poll()
    scrape = harness.scrape()
    # Check
    xero = scrape.find("codat_connection_status", company_id=deauthorized, platform="Xero")
    assert [(s.labels["status"], s.labels["source_type"], s.value) for s in xero] == [
        ("Deauthorized", "Accounting", 1)
    ]
    counts = {
        s.labels["status"]: s.value for s in scrape.find("codat_connections", platform="Xero")
    }
    assert counts == {"PendingAuth": 1, "Linked": 6, "Unlinked": 0, "Deauthorized": 1}
    platforms = {s.labels["platform"] for s in scrape.find("codat_connections")}
    assert "Xero" in platforms
    assert all(len(scrape.find("codat_connections", platform=p)) == 4 for p in platforms)


def test_should_refresh_connections_on_their_own_interval(
    make_harness: Callable[..., Harness], fleet_ids: list[str]
) -> None:
    # Prepare
    harness = make_harness(connections={"interval": "30m"})
    harness.poll()
    harness.fleet.companies[fleet_ids[0]].connection_status = "Unlinked"
    # Act
    harness.clock.advance(600)
    harness.poll()
    early = harness.scrape()
    harness.clock.advance(1800)
    harness.poll()
    late = harness.scrape()

    # Check
    def xero_status(scrape: Scrape) -> str:
        (sample,) = scrape.find("codat_connection_status", company_id=fleet_ids[0], platform="Xero")
        return sample.labels["status"]

    assert xero_status(early) != "Unlinked"
    assert xero_status(late) == "Unlinked"
    assert harness.codat.requests["/companies/{companyId}/connections"] == 2 * len(fleet_ids)


def test_should_resolve_thresholds_in_order_override_type_schedule_default(
    make_harness: Callable[..., Harness], fleet: Fleet
) -> None:
    # Prepare
    company = next(fleet.ids_by_profile("healthy"))
    sims = fleet.companies[company].data_types
    scheduled = next(d for d in sims if d not in ("invoices", "bills"))
    hours = max(1, round(sims[scheduled].period / 3600))
    harness = make_harness(freshness={
        "from_sync_settings": True, "sync_schedule_factor": 3, "default_max_age": "1d",
        "max_age": {"invoices": "6h", "bills": "5h"},
        "companies": {company: {"max_age": {"bills": "2h"}}},
    })  # fmt: skip
    # Act
    harness.poll()
    scrape = harness.scrape()

    # Check
    def max_age(data_type: str) -> float:
        return scrape.value(MAX_AGE, company_id=company, data_type=data_type)

    assert max_age("bills") == 2 * 3600, "per-company override first"
    assert max_age("invoices") == 6 * 3600, "then the per data type value"
    assert max_age(scheduled) == hours * 3600 * 3, "then syncSchedule x factor"


def test_should_fall_back_to_the_default_when_the_schedule_is_off(
    make_harness: Callable[..., Harness], fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    company = next(fleet.ids_by_profile("healthy"))
    harness = make_harness(freshness={"from_sync_settings": True, "default_max_age": "1d"})
    body = fleet.sync_settings(company)
    body["settings"][0]["syncSchedule"] = 0
    off = body["settings"][0]["dataType"]
    monkeypatch.setattr(fleet, "sync_settings", lambda company_id: body)
    # Act
    harness.poll()
    # Check
    assert harness.scrape().value(MAX_AGE, company_id=company, data_type=off) == 86400


def test_should_read_sync_settings_every_sync_settings_interval_without_discovery(
    make_harness: Callable[..., Harness], clock: FakeClock, fleet_ids: list[str]
) -> None:
    # Prepare: listed companies, sync settings every 3h; discovery's 1h must not pace them
    harness = make_harness(
        companies={"discovery_interval": "1h"},
        freshness={"from_sync_settings": True, "sync_settings_interval": "3h"},
    )

    def sync_settings_read() -> int:
        return harness.codat.requests.get(SYNC_SETTINGS, 0)

    # Act
    harness.poll()
    first = sync_settings_read()
    clock.advance(3600 + 1)
    harness.poll()
    after_an_hour = sync_settings_read()
    clock.advance(2 * 3600)
    harness.poll()
    after_three_hours = sync_settings_read()
    # Check
    companies = len(fleet_ids)
    assert (first, after_an_hour, after_three_hours) == (companies, companies, 2 * companies)


def test_should_count_sync_settings_at_their_own_interval_in_the_estimate(
    make_harness: Callable[..., Harness], fleet_ids: list[str]
) -> None:
    # Prepare: the same fleet reading sync settings hourly and every 3h, without discovery
    hourly, three_hourly = (
        make_harness(freshness={"from_sync_settings": True, "sync_settings_interval": every})
        for every in ("1h", "3h")
    )
    # Act
    hourly.poll()
    three_hourly.poll()
    # Check: 24 reads a company a day against 8
    estimated = [h.scrape().value(ESTIMATED_DAILY) for h in (hourly, three_hourly)]
    assert estimated[0] - estimated[1] == len(fleet_ids) * (24 - 8)


def test_should_export_the_quota_headers(make_harness: Callable[..., Harness]) -> None:
    # Prepare: one worker, so the last response recorded is the last one sent
    harness = make_harness(codat={"max_concurrency": 1})
    # Act
    harness.poll()
    scrape = harness.scrape()
    # Check
    requests_made = sum(harness.codat.requests.values())
    assert scrape.value("codat_api_quota_limit") == 1000 * (1 + len(harness.fleet.companies))
    assert scrape.value("codat_api_quota_remaining") == 9000 - requests_made
    assert scrape.value("codat_api_quota_reset_timestamp_seconds") == 1_795_478_400  # next 00:00Z


def test_should_not_export_quota_before_codat_has_answered(harness: Harness) -> None:
    assert harness.scrape().find("codat_api_quota_remaining") == []


def test_should_hold_every_worker_during_a_429_pause(
    make_harness: Callable[..., Harness], fleet_ids: list[str]
) -> None:
    # Prepare
    harness = make_harness(codat={"max_concurrency": 4})
    start = harness.clock.time()
    harness.fleet.inject(fleet_ids[0], Fault("status", 429, retry_after="30", times=1,
                                             endpoint=DATA_STATUS))  # fmt: skip
    # Act
    result = harness.poll()
    # Check
    assert result.all_succeeded
    times = [t for t, route, _, _ in harness.codat.log if route == DATA_STATUS]
    first_429 = times[0] if harness.codat.log else start
    later = [t for t in times if t > first_429]
    assert later, "requests after the 429"
    assert all(t >= start + 30 for t in later)


def test_should_warn_when_the_fleet_would_exceed_the_daily_quota(
    make_harness: Callable[..., Harness], caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: 8 companies allow 9,000 requests a day; polling every minute needs 11,520
    harness = make_harness(poll={"interval": "1m"}, connections={"enabled": False})
    # Act
    with caplog.at_level(logging.WARNING):
        harness.poll()
    scrape = harness.scrape()
    # Check
    assert scrape.value("codat_exporter_estimated_daily_requests") > 9000
    assert any("Set poll.interval to 2m or longer" in r.getMessage() for r in caplog.records)


def test_should_warn_of_the_per_minute_limit_too_when_over_the_daily_quota(
    make_harness: Callable[..., Harness], caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: polling 8 companies every minute exceeds 9,000 a day and 5 a minute
    harness = make_harness(
        poll={"interval": "1m"}, codat={"max_requests_per_minute": 5},
        connections={"enabled": False},
    )  # fmt: skip
    # Act
    with caplog.at_level(logging.WARNING, logger="exporter"):
        harness.poll()
    # Check: one line says both, then the interval that fits both
    (warning,) = [r.getMessage() for r in caplog.records if "Codat daily quota" in r.getMessage()]
    assert "more than codat.max_requests_per_minute (5)" in warning
    assert warning.endswith("Set poll.interval to 2m or longer.")


def test_should_not_warn_when_the_fleet_fits(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        harness.poll()
    assert not any("daily quota" in r.getMessage() for r in caplog.records)
    assert harness.scrape().value("codat_exporter_estimated_daily_requests") < 9000


def test_should_spread_a_cycles_polls_over_the_interval(
    make_harness: Callable[..., Harness],
) -> None:
    # Prepare: 8 companies over 80% of a 10 s interval is one every second of the injected
    # clock, which the poller sleeps on between hand-offs
    harness = make_harness(
        spread=True,
        poll={"interval": "10s"},
        codat={"max_concurrency": 8},
        connections={"enabled": False},
        diagnostics={"pull_operations": False, "sync_durations": False},
    )
    first = harness.poll()  # the first cycle is not spread: there is nothing to show yet
    first_sleeps = list(harness.clock.sleeps)
    harness.clock.sleeps.clear()
    # Act
    result = harness.poll()
    # Check: seven waits of a second, none in the first cycle
    assert first.all_succeeded and result.all_succeeded
    assert first_sleeps == []
    assert harness.clock.sleeps == pytest.approx([1.0] * 7)


def test_should_split_the_fleet_across_shards_without_overlap(
    make_harness: Callable[..., Harness], fleet_ids: list[str]
) -> None:
    # Prepare
    shards = [make_harness(companies=discovering(), sharding={"shards": 2, "shard": i})
              for i in (0, 1)]  # fmt: skip
    # Act
    for shard in shards:
        shard.poll()
    seen = [companies_up(shard.scrape()) for shard in shards]
    # Check
    assert seen[0] | seen[1] == set(fleet_ids)
    assert seen[0] & seen[1] == set()
    assert seen[0] == {c for c in fleet_ids if shard_of(c, 2) == 0}
    info = shards[1].scrape().find("codat_exporter_shard_info")
    assert [(s.labels["shard"], s.labels["shards"]) for s in info] == [("1", "2")]


def test_should_forget_companies_that_churn_out_of_the_fleet(
    make_harness: Callable[..., Harness], fleet_ids: list[str]
) -> None:
    # Prepare: every hour a company leaves and another joins
    harness = make_harness(companies=discovering(discovery_interval="1h"))
    harness.poll()
    # Act
    for leaving in fleet_ids[:5]:
        harness.fleet.remove(leaving)
        harness.fleet.add()
        harness.clock.advance(3600)
        harness.poll()
    # Check: what the poller remembers is bounded by the fleet, not by its history
    current = set(harness.fleet.companies)
    assert harness.poller.remembered() <= current
    assert companies_up(harness.scrape()) == current
