"""What a user sees when Codat fails: the exporter keeps answering, one company's failure
stays with that company, the last good values stay, and each failure is logged and counted."""

from __future__ import annotations

import email.utils
import logging
from collections.abc import Callable

import pytest

from exporter.core.contract import DATA_STATUS
from exporter.simulator.faults import Fault
from tests.guarded import guarded_poll
from tests.harness import Harness, Scrape

UP = "codat_exporter_company_up"
TS = "codat_data_type_last_successful_sync_timestamp_seconds"
LAST_SUCCESS = "codat_exporter_company_last_poll_success_timestamp_seconds"
REQUESTS = "codat_exporter_api_requests_total"
ERRORS = "codat_exporter_poll_errors_total"


def ups(scrape: Scrape) -> dict[str, float]:
    return {s.labels["company_id"]: s.value for s in scrape.find(UP)}


def test_should_log_a_rejected_key_once_per_cycle_and_not_retry(
    make_harness: Callable[..., Harness], caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare
    harness = make_harness(codat={"api_key": "wrong-key-7d1e"})
    # Act
    with caplog.at_level(logging.INFO):
        result = harness.poll()
    scrape = harness.scrape()
    # Check
    companies = len(harness.fleet.companies)
    assert result.failed == companies
    assert set(ups(scrape).values()) == {0}
    rejected = [r for r in caplog.records if "Codat rejected the API key" in r.getMessage()]
    assert len(rejected) == 1
    assert sum(harness.codat.requests.values()) == companies, "one request each, no retry"
    assert sum(s.value for s in scrape.find(REQUESTS, code="401")) == companies
    assert scrape.value(ERRORS, reason="api_key_rejected") == companies
    assert "wrong-key-7d1e" not in caplog.text


def test_should_honour_retry_after_in_seconds(harness: Harness, fleet_ids: list[str]) -> None:
    # Prepare
    harness.fleet.inject(fleet_ids[0], Fault("status", 429, retry_after="30", times=1,
                                             endpoint=DATA_STATUS))  # fmt: skip
    # Act
    result = harness.poll()
    # Check
    assert result.all_succeeded
    assert harness.clock.sleeps[0] == 30.0
    assert sum(harness.clock.sleeps[1:]) < 1, "after the pause, requests go at the steady rate"
    assert harness.scrape().value(REQUESTS, endpoint=DATA_STATUS, code="429") == 1


def test_should_honour_retry_after_as_an_http_date(harness: Harness, fleet_ids: list[str]) -> None:
    # Prepare
    when = email.utils.formatdate(harness.clock.time() + 45, usegmt=True)
    harness.fleet.inject(fleet_ids[0], Fault("status", 429, retry_after=when, times=1,
                                             endpoint=DATA_STATUS))  # fmt: skip
    # Act
    result = harness.poll()
    # Check
    assert result.all_succeeded
    assert harness.clock.sleeps[0] == pytest.approx(45.0)


def test_should_retry_server_errors_with_growing_backoff_then_succeed(
    harness: Harness, fleet_ids: list[str]
) -> None:
    # Prepare
    harness.fleet.inject(fleet_ids[0], Fault("status", 503, times=2, endpoint=DATA_STATUS))
    # Act
    result = harness.poll()
    scrape = harness.scrape()
    # Check
    assert result.all_succeeded
    assert scrape.value(REQUESTS, endpoint=DATA_STATUS, code="503") == 2
    first, second = harness.clock.sleeps
    assert 1.0 <= first <= 2.0 <= second <= 4.0  # backoff_base 2 s: [b/2, b], then [b, 2b]


def test_should_pause_every_worker_on_a_429_and_give_up_when_it_outlasts_the_interval(
    make_harness: Callable[..., Harness], fleet_ids: list[str]
) -> None:
    # Prepare: the first company polled is told to come back in an hour
    harness = make_harness(codat={"max_concurrency": 1}, poll={"interval": "1m"})
    harness.fleet.inject(
        fleet_ids[0], Fault("status", 429, retry_after="3600", endpoint=DATA_STATUS)
    )
    # Act
    result = harness.poll()
    scrape = harness.scrape()
    # Check: nobody waited an hour, and nobody else kept sending into the 429
    assert result.failed == len(fleet_ids)
    assert sum(harness.clock.sleeps) < 60
    assert scrape.value("codat_exporter_rate_limited_total") == 1
    assert scrape.value(ERRORS, reason="rate_limited") == len(fleet_ids)
    assert harness.codat.requests[DATA_STATUS] == 1


def test_should_not_retry_server_errors_past_the_poll_interval(
    make_harness: Callable[..., Harness], fleet_ids: list[str]
) -> None:
    # Prepare
    harness = make_harness(poll={"interval": "1m"})
    harness.fleet.inject(fleet_ids[1], Fault("status", 500, endpoint=DATA_STATUS))
    # Act
    result = harness.poll()
    scrape = harness.scrape()
    # Check
    assert result.failed == 1
    assert 0 < sum(harness.clock.sleeps) < 60
    assert ups(scrape)[fleet_ids[1]] == 0
    assert scrape.value(ERRORS, reason="http_error") == 1


def test_should_time_out_a_slow_company_without_holding_up_the_others(
    make_harness: Callable[..., Harness], fleet_ids: list[str]
) -> None:
    # Prepare: Codat never answers for one company (two attempts of 1 s fit in the cycle)
    harness = make_harness(codat={"timeout": "1s"}, poll={"interval": "3s"})
    harness.fleet.inject(fleet_ids[0], Fault("hang", endpoint=DATA_STATUS))
    # Act
    result, _ = guarded_poll(harness)
    harness.fleet.clear_faults()
    scrape = harness.scrape()
    # Check
    assert result.failed == 1
    assert ups(scrape) == {c: (0 if c == fleet_ids[0] else 1) for c in fleet_ids}
    assert scrape.value(ERRORS, reason="timeout") == 1
    assert scrape.value(REQUESTS, endpoint=DATA_STATUS, code="error") == 2


def test_should_bound_the_whole_request_when_the_body_trickles(
    make_harness: Callable[..., Harness], fleet_ids: list[str]
) -> None:
    # Prepare: a byte every 50 ms, each within the 1 s read timeout, of a body without end
    harness = make_harness(codat={"timeout": "1s"})
    trickle = Fault("trickle", seconds=0.05, times=1, endpoint=DATA_STATUS)
    harness.fleet.inject(fleet_ids[0], trickle)
    # Act
    result, _ = guarded_poll(harness)
    trickle.released.set()
    # Check: the first attempt was cut off at the deadline and the retry succeeded
    assert result.all_succeeded
    assert harness.scrape().value(REQUESTS, endpoint=DATA_STATUS, code="error") == 1


@pytest.mark.parametrize("kind", ["malformed", "wrong_shape", "truncated", "html"])
def test_should_keep_last_good_values_while_a_company_returns_bad_bodies(
    harness: Harness, fleet_ids: list[str], kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare
    broken = fleet_ids[0]
    harness.poll()
    good = harness.scrape()
    harness.fleet.inject(broken, Fault(kind, status=200 if kind == "html" else 500,
                                       endpoint=DATA_STATUS))  # fmt: skip
    harness.clock.advance(300)
    # Act
    with caplog.at_level(logging.WARNING):
        harness.poll()
        harness.clock.advance(300)
        harness.poll()
    bad = harness.scrape()
    # Check
    assert ups(bad)[broken] == 0
    assert bad.find(TS, company_id=broken) == good.find(TS, company_id=broken)
    assert bad.value(LAST_SUCCESS, company_id=broken) == good.value(LAST_SUCCESS, company_id=broken)
    assert bad.value(ERRORS, reason="malformed_response") == 2
    warnings = [r for r in caplog.records if broken in r.getMessage()]
    assert len(warnings) == 1, "a failure is logged once, not once per cycle"
    assert all(v == 1 for c, v in ups(bad).items() if c != broken)


def test_should_fail_the_poll_on_a_date_that_does_not_parse(
    harness: Harness, fleet_ids: list[str]
) -> None:
    # Prepare
    bad = {
        "dataType": "bills",
        "currentStatus": "Complete",
        "lastSuccessfulSync": "2024-09-01T23:59:99Z",
    }
    harness.fleet.override(fleet_ids[0], {"bills": bad})
    # Act
    harness.poll()
    scrape = harness.scrape()
    # Check
    assert ups(scrape)[fleet_ids[0]] == 0
    assert scrape.value(ERRORS, reason="malformed_response") == 1


def test_should_recover_on_the_first_good_poll(
    harness: Harness, fleet_ids: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare
    harness.fleet.inject(fleet_ids[0], Fault("malformed", endpoint=DATA_STATUS))
    harness.poll()
    harness.fleet.clear_faults()
    harness.clock.advance(300)
    # Act
    with caplog.at_level(logging.INFO):
        harness.poll()
    scrape = harness.scrape()
    # Check
    assert ups(scrape)[fleet_ids[0]] == 1
    assert scrape.value(LAST_SUCCESS, company_id=fleet_ids[0]) == harness.clock.time()
    assert any("succeeded again" in r.getMessage() for r in caplog.records)


def test_should_drop_a_discovered_company_that_codat_no_longer_has(
    make_harness: Callable[..., Harness], fleet_ids: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: discovery found it (a company of companies.ids stays:
    # tests/poll/test_company_not_found.py)
    harness = make_harness(companies={"ids": [], "discover": True})
    gone = fleet_ids[0]
    harness.poll()
    assert gone in harness.scrape().companies()
    harness.fleet.remove(gone)
    # Act
    with caplog.at_level(logging.INFO, logger="exporter"):
        result = harness.poll()
    scrape = harness.scrape()
    # Check
    assert result.gone == 1
    assert gone not in scrape.companies()
    assert gone not in scrape.text
    assert scrape.value("codat_exporter_companies") == len(fleet_ids) - 1
    assert f"company {gone} no longer exists in Codat (404); dropped from /metrics" in caplog.text
    assert "not found in Codat" not in caplog.text


def test_should_keep_serving_metrics_when_codat_is_unreachable(
    make_harness: Callable[..., Harness], fleet_ids: list[str]
) -> None:
    # Prepare: nothing listens on port 1
    harness = make_harness(codat={"base_url": "http://127.0.0.1:1"}, poll={"interval": "10s"})
    # Act
    result = harness.poll()
    scrape = harness.scrape()
    # Check
    assert result.failed == len(fleet_ids)
    assert set(ups(scrape).values()) == {0}
    assert scrape.value(ERRORS, reason="connection_error") == len(fleet_ids)
    assert harness.get("/-/ready").status_code == 200


def test_should_name_every_failure_reason_in_the_metric_from_the_start(harness: Harness) -> None:
    # Prepare
    from exporter.codat import errors

    reasons = {cls.reason for cls in vars(errors).values()
               if isinstance(cls, type) and issubclass(cls, errors.CodatError)}  # fmt: skip
    # Act
    scrape = harness.scrape()
    # Check
    exported = {s.labels["reason"]: s.value for s in scrape.find(ERRORS)}
    assert reasons <= set(exported)
    assert set(exported.values()) == {0}


def test_should_stop_reading_a_body_over_the_size_cap(
    make_harness: Callable[..., Harness], fleet_ids: list[str]
) -> None:
    # Prepare
    harness = make_harness(codat={"max_response_bytes": 100_000})
    harness.fleet.inject(fleet_ids[0], Fault("oversized", size=5_000_000, endpoint=DATA_STATUS))
    # Act
    result = harness.poll()
    scrape = harness.scrape()
    # Check
    assert result.failed == 1
    assert ups(scrape)[fleet_ids[0]] == 0
    assert scrape.value(ERRORS, reason="malformed_response") == 1


def test_should_reach_codat_through_the_proxy_from_the_environment(
    make_harness: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch, fleet_ids: list[str]
) -> None:
    # Prepare: codat.invalid does not resolve, so only the proxy (the simulator) can answer
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    proxy = make_harness().codat.url
    monkeypatch.setenv("HTTP_PROXY", proxy)
    harness = make_harness(codat={"base_url": "http://codat.invalid"})
    monkeypatch.delenv("HTTP_PROXY")  # read once, at start; the test's own scrapes go direct
    # Act
    result = harness.poll()
    # Check
    assert result.all_succeeded
    assert len(harness.scrape().find(UP)) == len(fleet_ids)


@pytest.mark.parametrize(("retry_after", "retried"), [("58", True), ("59", False)])
def test_should_start_a_retry_only_when_it_could_finish_before_the_poll_deadline(
    make_harness: Callable[..., Harness], fleet_ids: list[str], retry_after: str, retried: bool
) -> None:
    # Prepare: the deadline is 59.5 s away; a retry needs its wait plus min(timeout, 1 s)
    harness = make_harness(codat={"timeout": "2s"}, poll={"interval": "59s500ms"},
                           companies={"ids": fleet_ids[:1]})  # fmt: skip
    harness.fleet.inject(fleet_ids[0], Fault("status", 503, retry_after=retry_after, times=1,
                                             endpoint=DATA_STATUS))  # fmt: skip
    # Act
    result = harness.poll()
    scrape = harness.scrape()
    # Check: after 59 s a request would have half a second, too little: not sent at all
    assert result.all_succeeded is retried
    assert ups(scrape) == {fleet_ids[0]: 1 if retried else 0}
    assert harness.codat.requests[DATA_STATUS] == (2 if retried else 1)
    assert sum(harness.clock.sleeps) == pytest.approx(float(retry_after) if retried else 0, abs=1)
