"""Issue 5's fault matrix: every fault Codat can answer with, on every request the exporter
makes, each checked the same way. /metrics keeps answering, what failed keeps its last good
value, the failure is logged once with the company id and counted, the company's up gauge
says 0, and the first good poll brings it back.

A company's poll is all its requests of the cycle (dataStatus; name, connections and sync
settings when due), so each scenario advances the clock past those intervals before the
faulty cycles and again before the recovery cycle. Between baseline and fault, the good
answers change, so that "kept its last good value" and "took the new value on recovery" are
both visible on /metrics. The company list (discovery) has its own semantics: the last list
is kept, the failure counted, every company stays up.

Retried faults are injected until cleared. The poll interval is short (3 s), so that a
retried request gives up after its second attempt (back-offs of 1-2 s, then 2-4 s; no retry
starts that could pass the cycle's deadline); 429s get 10 s, as each attempt pauses the whole
client for its Retry-After. Such short intervals exceed the daily quota of 8 companies, so
the quota warning is left out of the log checks.

Nothing here depends on how fast the machine is. A request that should time out meets a
fault that never finishes by itself (no answer, a stalled body, an endless trickle) until
the test clears it, so it cannot beat the timeout; healthy requests have a timeout of
seconds, which a loaded machine keeps. A cycle that is not bounded by codat.timeout would
never end: each runs under a generous guard that fails the test instead (and lets go of
the held requests). As each timeout case waits out four real timeouts, those cases run on
dataStatus and on the company list only: the client bounds every request alike, and the
other requests' failures are the other cases'.
"""

from __future__ import annotations

import email.utils
import logging
import socket
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import pytest

from exporter.core.contract import COMPANIES, COMPANY, CONNECTIONS, DATA_STATUS, SYNC_SETTINGS
from exporter.simulator.faults import LISTING, Fault
from exporter.simulator.fleet import Fleet
from exporter.simulator.server import SimulatedCodat
from exporter.simulator.syncs import HOUR
from tests.guarded import guarded_poll
from tests.harness import API_KEY, FakeClock, Harness, Scrape, make_config

UP = "codat_exporter_company_up"
TS = "codat_data_type_last_successful_sync_timestamp_seconds"
STATUS = "codat_data_type_status"
COUNTS = "codat_data_type_companies"
MAX_AGE = "codat_data_type_max_age_seconds"
CONNECTION_STATUS = "codat_connection_status"
LAST_SUCCESS = "codat_exporter_company_last_poll_success_timestamp_seconds"
REQUESTS = "codat_exporter_api_requests_total"
ERRORS = "codat_exporter_poll_errors_total"
NOT_FOUND = "codat_exporter_company_not_found"
DISCOVERY_FAILURES = "codat_exporter_discovery_failures_total"
LAST_DISCOVERY = "codat_exporter_last_discovery_success_timestamp_seconds"
RATE_LIMITED = "codat_exporter_rate_limited_total"

ROUTES = {DATA_STATUS: "dataStatus", COMPANY: "company", CONNECTIONS: "connections",
          SYNC_SETTINGS: "syncSettings", COMPANIES: "companies"}  # fmt: skip
DUE_AGAIN = 3601.0
"""Past the name refresh (1h), connections (30m) and sync settings and discovery (1h)."""
QUOTA_WARNING = "Codat daily quota"

BASE: dict[str, dict[str, Any]] = {
    "codat": {"timeout": "2s", "max_concurrency": 2},
    "poll": {"interval": "3s"},
    "connections": {"interval": "30m"},
    "freshness": {"from_sync_settings": True},
}
TIMEOUTS = {"codat": {"timeout": "1s"}}
"""Each attempt of a timeout case costs this much real time (four attempts a case); healthy
loopback requests take a few milliseconds, a loaded machine's far less than a second."""

LONG_INTERVAL = {"poll": {"interval": "10s"}}
"""For 429s: a 1 s Retry-After pauses the whole client once per attempt (five of them), and
the other company's poll must still fit in the cycle."""

NEW_INVOICES_SYNC = datetime(2026, 11, 22, 6, tzinfo=UTC).timestamp() + 0.25
NEW_DATA_STATUS = {
    "bills": {"dataType": "bills", "currentStatus": "Complete",
              "lastSuccessfulSync": "2026-11-23T11:30:00Z"},
    "invoices": {"dataType": "invoices", "currentStatus": "FetchError",
                 "lastSuccessfulSync": "2026-11-22T06:00:00.25Z"},
}  # fmt: skip
"""What the victim's dataStatus answers after the baseline: unlike any simulated one."""
NEW_NAME = "Renamed after the baseline Ltd"
NEW_SCHEDULE_HOURS = 24
"""For bills; the simulator's sync periods are 1, 4 or 12 hours."""


# --- the cases ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One fault, and what the exporter should make of it."""

    name: str
    fault: Callable[[FakeClock], Fault]
    """Built when injected: an HTTP-date Retry-After depends on the clock."""
    reason: str
    """The poll error reason it is counted under."""
    code: str
    """The ``code`` label of the failing requests in codat_exporter_api_requests_total."""
    retried: bool = False
    config: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def status(code: int, **kwargs: Any) -> Callable[[FakeClock], Fault]:
    return lambda _clock: Fault("status", code, **kwargs)


def kind(name: str, **kwargs: Any) -> Callable[[FakeClock], Fault]:
    return lambda _clock: Fault(name, **kwargs)


def retry_after_date(seconds: float) -> Callable[[FakeClock], Fault]:
    def make(clock: FakeClock) -> Fault:
        when = email.utils.formatdate(clock.time() + seconds, usegmt=True)
        return Fault("status", 429, retry_after=when)

    return make


CASES = (
    Case("no-answer-within-the-timeout", kind("hang"), "timeout", "error", retried=True,
         config=TIMEOUTS),
    Case("trickling-body", kind("trickle", seconds=0.05), "timeout", "error", retried=True,
         config=TIMEOUTS),
    Case("body-stalls-past-the-timeout", kind("stall"), "timeout", "error", retried=True,
         config=TIMEOUTS),
    Case("connection-reset", kind("reset"), "connection_error", "error", retried=True),
    Case("connection-reset-mid-body", kind("cut"), "connection_error", "error", retried=True),
    Case("401", status(401), "api_key_rejected", "401"),
    Case("403", status(403), "api_key_rejected", "403"),
    Case("404", status(404), "not_found", "404"),
    Case("408", status(408), "http_error", "408", retried=True),
    Case("429-retry-after-seconds", status(429, retry_after="1"), "rate_limited", "429",
         retried=True, config=LONG_INTERVAL),
    Case("429-retry-after-http-date", retry_after_date(1), "rate_limited", "429", retried=True,
         config=LONG_INTERVAL),
    Case("500", status(500), "http_error", "500", retried=True),
    Case("502", status(502), "http_error", "502", retried=True),
    Case("503", status(503), "http_error", "503", retried=True),
    Case("504", status(504), "http_error", "504", retried=True),
    Case("unknown-status-418", status(418), "http_error", "418"),
    Case("html-error-page-502", kind("html", status=502), "http_error", "502", retried=True),
    Case("html-page-200", kind("html", status=200), "malformed_response", "200"),
    Case("truncated-json", kind("truncated"), "malformed_response", "200"),
    Case("malformed-json", kind("malformed"), "malformed_response", "200"),
    Case("wrong-shape", kind("wrong_shape"), "malformed_response", "200"),
    Case("empty-object", kind("empty"), "malformed_response", "200"),
    Case("over-the-default-size-cap", kind("oversized", size=10 * 1024 * 1024 + 1),
         "malformed_response", "200"),
)  # fmt: skip


TIMED = (DATA_STATUS, COMPANIES)
"""The requests the timeout cases run on."""


def matrix(*endpoints: str) -> list[Any]:
    params = []
    for endpoint in endpoints:
        for case in CASES:
            if endpoint == DATA_STATUS and case.name == "404":
                continue  # Codat does not know the company: its own test below
            if case.reason == "timeout" and endpoint not in TIMED:
                continue
            params.append(pytest.param(endpoint, case, id=f"{ROUTES[endpoint]}-{case.name}"))
    return params


# --- fixtures and helpers ----------------------------------------------------------------


# Stopping an HTTP server waits up to 0.1 s for its poll loop; over the module's 130 tests
# that would be a third of its time. So the simulated Codat is shared, and each exporter is
# closed in the background while the next test runs.


@pytest.fixture(scope="module")
def simulator() -> Iterator[SimulatedCodat]:
    server = SimulatedCodat(Fleet(clock=FakeClock()), API_KEY).start()
    yield server
    server.stop()


@pytest.fixture
def codat(simulator: SimulatedCodat, fleet: Fleet) -> SimulatedCodat:
    """The module's simulated Codat, serving this test's fleet."""
    simulator.fleet = fleet
    simulator.requests.clear()
    simulator.log.clear()
    return simulator


@pytest.fixture(scope="module")
def closing() -> Iterator[Callable[[Harness], None]]:
    """Close harnesses in the background; all are closed (or raise) when the module ends."""
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="close") as pool:
        futures: list[Future[None]] = []
        yield lambda harness: futures.append(pool.submit(harness.close))
        for future in futures:
            future.result(timeout=10)


@pytest.fixture
def make_harness(
    clock: FakeClock, codat: SimulatedCodat, closing: Callable[[Harness], None]
) -> Iterator[Callable[..., Harness]]:
    """conftest's ``make_harness``, closing in the background."""
    made: list[Harness] = []

    def make(**sections: Any) -> Harness:
        harness = Harness(make_config(codat, **sections), clock, codat)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        closing(harness)


@pytest.fixture
def victim(fleet: Fleet) -> str:
    return next(fleet.ids_by_profile("healthy"))


@pytest.fixture
def bystander(fleet: Fleet, victim: str) -> str:
    """Polled beside the victim, never faulted."""
    return min(set(fleet.companies) - {victim})


def configured(*sections: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    for extra in (BASE, *sections):
        for key, values in extra.items():
            merged[key] = {**merged.get(key, {}), **values}
    return merged


@pytest.fixture
def two_companies(make_harness: Callable[..., Harness], victim: str, bystander: str) -> Harness:
    """The exporter watching the victim and the bystander only."""
    harness: Harness = make_harness(**configured({"companies": {"ids": [victim, bystander]}}))
    return harness


def ups(scrape: Scrape) -> dict[str, float]:
    return {s.labels["company_id"]: s.value for s in scrape.find(UP)}


def data_values(scrape: Scrape, company: str) -> list[tuple[str, str, str, float]]:
    """The company's data-type values, without the name label (it has its own case)."""
    return sorted(
        (s.name, s.labels["data_type"], s.labels.get("status", ""), s.value)
        for name in (TS, STATUS)
        for s in scrape.find(name, company_id=company)
    )


def statuses(scrape: Scrape, company: str) -> dict[str, str]:
    return {s.labels["data_type"]: s.labels["status"]
            for s in scrape.find(STATUS, company_id=company)}  # fmt: skip


def name_of(scrape: Scrape, company: str) -> str:
    (sample,) = scrape.find(UP, company_id=company)
    return sample.labels["company_name"]


def connection_statuses(scrape: Scrape, company: str) -> list[tuple[str, str]]:
    return sorted((s.labels["platform"], s.labels["status"])
                  for s in scrape.find(CONNECTION_STATUS, company_id=company))  # fmt: skip


def bills_max_age(scrape: Scrape, company: str) -> float:
    return scrape.value(MAX_AGE, company_id=company, data_type="bills")


def logged(caplog: pytest.LogCaptureFixture, level: int, text: str = "") -> list[str]:
    """The exporter's log lines at ``level`` that contain ``text``, quota warning aside."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("exporter")
        and r.levelno == level
        and text in r.getMessage()
        and QUOTA_WARNING not in r.getMessage()
    ]


def requests_for(codat: SimulatedCodat, endpoint: str, company: str | None) -> int:
    """Requests the simulator received for ``endpoint`` and ``company`` (None: the list)."""
    return sum(1 for _, route, company_id, _ in list(codat.log)
               if (route, company_id) == (endpoint, company))  # fmt: skip


def exported_requests(scrape: Scrape, endpoint: str, code: str) -> float:
    return sum(s.value for s in scrape.find(REQUESTS, endpoint=endpoint, code=code))


def poll_while_scraping(harness: Harness) -> Scrape:
    """A poll cycle in the background, and a scrape while it runs (or just after)."""
    during: Scrape = guarded_poll(harness, harness.scrape)[1]
    return during


def change_the_good_answers(fleet: Fleet, endpoint: str, company: str) -> None:
    """The company's dataStatus, and what ``endpoint`` says, now differ from the baseline."""
    fleet.override(company, NEW_DATA_STATUS)
    if endpoint == COMPANY:
        fleet.companies[company].name = NEW_NAME
    elif endpoint == CONNECTIONS:
        fleet.companies[company].connection_status = "Unlinked"
    elif endpoint == SYNC_SETTINGS:
        fleet.companies[company].data_types["bills"].period = NEW_SCHEDULE_HOURS * HOUR


def inject(harness: Harness, key: str, endpoint: str, case: Case) -> None:
    """The case's fault on every request to ``endpoint`` for ``key`` until cleared."""
    harness.fleet.inject(key, replace(case.fault(harness.clock), endpoint=endpoint))


def check_the_requests(bad: Scrape, endpoint: str, sent: int, case: Case) -> None:
    """Two faulty cycles sent the request twice, or more when the fault is retried, and
    the exporter counted each under the expected code."""
    if case.retried:
        assert sent >= 4, "retried"
    else:
        assert sent == 2, "not retried"
    if case.code in ("200", "error"):  # healthy requests answer 200, slow ones time out
        assert exported_requests(bad, endpoint, case.code) >= sent
    else:
        assert exported_requests(bad, endpoint, case.code) == sent


# --- per-company requests ----------------------------------------------------------------


@pytest.mark.parametrize(("endpoint", "case"),
                         matrix(DATA_STATUS, COMPANY, CONNECTIONS, SYNC_SETTINGS))  # fmt: skip
def test_should_survive_a_fault_on_a_company_request_and_recover_on_the_next_good_poll(
    make_harness: Callable[..., Harness],
    caplog: pytest.LogCaptureFixture,
    victim: str,
    bystander: str,
    endpoint: str,
    case: Case,
) -> None:
    # Prepare: a good baseline; then the good answers change and the endpoint fails
    harness = make_harness(**configured(case.config, {"companies": {"ids": [victim, bystander]}}))
    fleet = harness.fleet
    harness.poll()
    good = harness.scrape()
    assert ups(good) == {victim: 1, bystander: 1}
    change_the_good_answers(fleet, endpoint, victim)
    fleet.companies[bystander].name = NEW_NAME  # the bystander's own requests stay good
    harness.codat.log.clear()
    inject(harness, victim, endpoint, case)
    caplog.clear()
    # Act: two faulty cycles, then the fault clears
    with caplog.at_level(logging.DEBUG, logger="exporter"):
        harness.clock.advance(DUE_AGAIN)
        during = poll_while_scraping(harness)
        harness.clock.advance(harness.config.poll.interval)
        guarded_poll(harness)
        bad = harness.scrape()
        sent = requests_for(harness.codat, endpoint, victim)
        healthy = harness.get("/-/healthy").status_code
        warnings = logged(caplog, logging.WARNING)
        errors = logged(caplog, logging.ERROR)
        repeats = logged(caplog, logging.DEBUG, f"company {victim}: poll still failing")
        caplog.clear()
        fleet.clear_faults()
        harness.clock.advance(DUE_AGAIN)
        harness.poll()
        recovered = harness.scrape()

    # Check: /metrics answers, during a cycle too (which ended: guarded_poll says so)
    assert during.find(UP, company_id=victim)
    assert healthy == 200
    # Check: the victim is down, and what failed kept its last good value
    assert ups(bad) == {victim: 0, bystander: 1}
    assert not bad.find(NOT_FOUND), "a 404 on a side request is no unknown company"
    if endpoint == DATA_STATUS or case.reason == "api_key_rejected":
        assert data_values(bad, victim) == data_values(good, victim)
        assert bad.value(LAST_SUCCESS, company_id=victim) == good.value(
            LAST_SUCCESS, company_id=victim
        )
    else:  # the dataStatus request succeeded: the data types are current
        assert statuses(bad, victim) == {"bills": "Complete", "invoices": "FetchError"}
    assert name_of(bad, victim) == name_of(good, victim)
    assert connection_statuses(bad, victim) == connection_statuses(good, victim)
    if endpoint == SYNC_SETTINGS:
        assert bills_max_age(bad, victim) == bills_max_age(good, victim)
    assert name_of(bad, bystander) == NEW_NAME, "the bystander was polled as usual"

    # Check: counted once per failing poll, under its reason; the requests went out
    reasons = {s.labels["reason"]: s.value for s in bad.find(ERRORS)}
    assert reasons[case.reason] == 2
    assert sum(reasons.values()) == 2, reasons
    check_the_requests(bad, endpoint, sent, case)
    if case.reason == "rate_limited":
        assert bad.value(RATE_LIMITED) == sent

    # Check: logged once with the company id (a rejected key: once per cycle, naming it)
    if case.reason == "api_key_rejected":
        assert warnings == []
        assert len(errors) == 2, errors
        assert all(f"Codat rejected the API key for 1 of 2 companies (company {victim}" in line
                   for line in errors)  # fmt: skip
    else:
        assert errors == []
        assert len(warnings) == 1, warnings
        assert f"company {victim}: poll failed, keeping its last good values" in warnings[0]
        assert len(repeats) == 1, "the second failure is logged at debug level"

    # Check: the first good poll brings it back, with the new values
    assert ups(recovered) == {victim: 1, bystander: 1}
    assert recovered.value(LAST_SUCCESS, company_id=victim) == harness.clock.time()
    assert statuses(recovered, victim) == {"bills": "Complete", "invoices": "FetchError"}
    assert recovered.value(TS, company_id=victim, data_type="invoices") == NEW_INVOICES_SYNC
    if endpoint == COMPANY:
        assert name_of(recovered, victim) == NEW_NAME
    if endpoint == CONNECTIONS:
        assert ("Xero", "Unlinked") in connection_statuses(recovered, victim)
    if endpoint == SYNC_SETTINGS:
        assert bills_max_age(recovered, victim) == NEW_SCHEDULE_HOURS * HOUR * 2
    assert sum(s.value for s in recovered.find(ERRORS)) == 2, "no new errors"
    assert logged(caplog, logging.INFO, f"company {victim}: poll succeeded again")
    assert logged(caplog, logging.WARNING) == []


def test_should_show_a_listed_company_whose_data_status_answers_404_as_not_found_until_found(
    two_companies: Harness,
    caplog: pytest.LogCaptureFixture,
    victim: str,
    bystander: str,
) -> None:
    # Prepare: Codat says it does not know the company (404), then has it again
    harness = two_companies
    fleet = harness.fleet
    harness.poll()
    good = harness.scrape()
    fleet.override(victim, NEW_DATA_STATUS)
    fleet.inject(victim, Fault("status", 404, endpoint=DATA_STATUS))
    caplog.clear()
    # Act
    with caplog.at_level(logging.INFO, logger="exporter"):
        harness.clock.advance(DUE_AGAIN)
        first = harness.poll()
        harness.clock.advance(harness.config.poll.interval)
        harness.poll()
        bad = harness.scrape()
        told = logged(caplog, logging.WARNING, victim)
        fleet.clear_faults()
        harness.clock.advance(harness.config.poll.interval)
        harness.poll()
        recovered = harness.scrape()
    # Check: listed in companies.ids, so down and not found, its last good values kept;
    # counted, and said once with its id
    assert (first.failed, first.gone) == (1, 0)
    assert ups(bad) == {victim: 0, bystander: 1}
    assert bad.value(NOT_FOUND, company_id=victim) == 1
    assert not bad.find(NOT_FOUND, company_id=bystander)
    assert data_values(bad, victim) == data_values(good, victim)
    assert bad.value(ERRORS, reason="not_found") == 2
    assert len(told) == 1
    assert f"company {victim} not found in Codat (404): check companies.ids" in told[0]
    assert "no longer exists" not in caplog.text
    assert ups(recovered) == {victim: 1, bystander: 1}
    assert not recovered.find(NOT_FOUND)
    assert statuses(recovered, victim) == {"bills": "Complete", "invoices": "FetchError"}


# --- the company list (discovery) --------------------------------------------------------


@pytest.mark.parametrize(("endpoint", "case"), matrix(COMPANIES))
def test_should_keep_the_last_company_list_through_a_fault_on_discovery(
    make_harness: Callable[..., Harness],
    caplog: pytest.LogCaptureFixture,
    endpoint: str,
    case: Case,
) -> None:
    # Prepare: discovery lists the UK companies; then one is added and the list fails
    discovery = {"ids": [], "discover": True, "tags": "region=uk"}
    harness = make_harness(**configured(case.config, {"companies": discovery}))
    fleet = harness.fleet
    harness.poll()
    good = harness.scrape()
    listed = set(ups(good))
    assert len(listed) == 3
    added = fleet.add()
    assert fleet.companies[added].tags["region"] == "uk"
    harness.codat.log.clear()
    inject(harness, LISTING, endpoint, case)
    caplog.clear()
    # Act
    with caplog.at_level(logging.DEBUG, logger="exporter"):
        harness.clock.advance(DUE_AGAIN)
        guarded_poll(harness)
        harness.clock.advance(harness.config.poll.interval)
        guarded_poll(harness)
        bad = harness.scrape()
        sent = requests_for(harness.codat, endpoint, None)
        warnings = logged(caplog, logging.WARNING)
        repeats = logged(caplog, logging.DEBUG, "company discovery failed")
        rejected = logged(caplog, logging.ERROR, "Codat rejected the API key listing companies")
        caplog.clear()
        fleet.clear_faults()
        harness.clock.advance(harness.config.poll.interval)
        harness.poll()
        recovered = harness.scrape()
    # Check: the last list is kept and its companies stay up; counted, logged once
    assert ups(bad) == dict.fromkeys(listed, 1.0)
    assert {name_of(bad, c) for c in listed} == {name_of(good, c) for c in listed}
    assert bad.value(DISCOVERY_FAILURES) == 2
    assert bad.value(ERRORS, reason=case.reason) == 2, "each failed listing counts"
    assert bad.value(LAST_DISCOVERY) == good.value(LAST_DISCOVERY)
    check_the_requests(bad, endpoint, sent, case)
    if case.reason == "api_key_rejected":  # an ERROR every cycle, as for the companies
        assert (len(rejected), warnings, repeats) == (2, [], [])
    else:
        assert len(warnings) == 1, warnings
        assert "company discovery failed; keeping the last list of 3 companies" in warnings[0]
        assert len(repeats) == 1
    # Check: the first good discovery brings the new list
    assert ups(recovered) == dict.fromkeys([*listed, added], 1.0)
    assert recovered.value(LAST_DISCOVERY) == harness.clock.time()
    assert logged(caplog, logging.INFO, "company discovery succeeded again")


# --- dataStatus bodies -------------------------------------------------------------------


def complete(data_type: str, synced: Any = "2026-11-23T11:00:00Z") -> dict[str, Any]:
    return {"dataType": data_type, "currentStatus": "Complete", "lastSuccessfulSync": synced}


@pytest.mark.parametrize(
    "synced",
    [
        pytest.param("2026-02-30T10:00:00Z", id="impossible-day"),
        pytest.param("2026-11-23T23:59:99Z", id="impossible-second"),
        pytest.param("2026-11-23T10:00:00+25:00", id="impossible-offset"),
        pytest.param("yesterday", id="words"),
        pytest.param("23/11/2026 10:00", id="local-format"),
        pytest.param(1795435200, id="a-number"),
        pytest.param("", id="empty-string"),
    ],
)
def test_should_fail_the_poll_on_a_date_that_does_not_parse_and_recover_after(
    two_companies: Harness,
    caplog: pytest.LogCaptureFixture,
    victim: str,
    bystander: str,
    synced: Any,
) -> None:
    # Prepare
    harness = two_companies
    fleet = harness.fleet
    harness.poll()
    good = harness.scrape()
    fleet.override(victim, {"bills": complete("bills"), "invoices": complete("invoices", synced)})
    caplog.clear()
    # Act
    with caplog.at_level(logging.INFO, logger="exporter"):
        harness.clock.advance(harness.config.poll.interval)
        harness.poll()
        harness.clock.advance(harness.config.poll.interval)
        harness.poll()
        bad = harness.scrape()
        warnings = logged(caplog, logging.WARNING)
        fleet.override(victim, NEW_DATA_STATUS)
        harness.clock.advance(harness.config.poll.interval)
        harness.poll()
        recovered = harness.scrape()
    # Check
    assert ups(bad) == {victim: 0, bystander: 1}
    assert data_values(bad, victim) == data_values(good, victim)
    assert bad.value(ERRORS, reason="malformed_response") == 2
    assert len(warnings) == 1, warnings
    assert f"company {victim}" in warnings[0]
    assert "invoices'].lastSuccessfulSync" in warnings[0]
    assert ups(recovered) == {victim: 1, bystander: 1}
    assert recovered.value(TS, company_id=victim, data_type="invoices") == NEW_INVOICES_SYNC


def test_should_pass_unknown_statuses_and_data_types_through_without_failing_the_poll(
    two_companies: Harness,
    caplog: pytest.LogCaptureFixture,
    victim: str,
    bystander: str,
) -> None:
    # Prepare
    harness = two_companies
    harness.fleet.override(victim, {
        "bills": {"dataType": "bills", "currentStatus": "Paused"},
        "items": {"dataType": "items", "currentStatus": "Paused!"},
        "journals": {"dataType": "journals", "currentStatus": "<b>Complete</b>"},
        "payments": {"dataType": "payments", "currentStatus": {"nested": "Complete"}},
        "suppliers": {"dataType": "suppliers", "currentStatus": "A" * 65},
        "commerce-subscriptions": complete("commerce-subscriptions"),
        "futureThing.v2": {**complete("futureThing.v2"), "someNewField": [1, 2]},
        "retired": None,
    })  # fmt: skip
    # Act
    with caplog.at_level(logging.INFO, logger="exporter"):
        result = harness.poll()
    scrape = harness.scrape()
    # Check
    assert result.all_succeeded
    assert ups(scrape) == {victim: 1, bystander: 1}
    assert sum(s.value for s in scrape.find(ERRORS)) == 0
    assert logged(caplog, logging.WARNING) == []
    assert statuses(scrape, victim) == {
        "bills": "Paused", "items": "Unknown", "journals": "Unknown", "payments": "Unknown",
        "suppliers": "Unknown", "commerce-subscriptions": "Complete", "futureThing.v2": "Complete",
    }  # fmt: skip
    assert scrape.value(COUNTS, data_type="bills", status="Paused") == 1
    assert scrape.value(TS, company_id=victim, data_type="futureThing.v2") == 1_795_431_600


def test_should_pass_unknown_connection_statuses_through_without_failing_the_poll(
    two_companies: Harness,
    monkeypatch: pytest.MonkeyPatch,
    victim: str,
    bystander: str,
) -> None:
    # Prepare
    harness = two_companies
    fleet = harness.fleet
    real = fleet.connections

    def connections(company_id: str) -> list[dict[str, Any]]:
        items = real(company_id)
        if company_id != victim:
            return items
        second = {**items[0], "id": "ffffffff-0000-4000-8000-000000000000"}
        return [{**items[0], "status": "Suspended"}, {**second, "status": "not a status"}]

    monkeypatch.setattr(fleet, "connections", connections)
    # Act
    result = harness.poll()
    scrape = harness.scrape()
    # Check
    assert result.all_succeeded
    assert connection_statuses(scrape, victim) == [("Xero", "Suspended"), ("Xero", "Unknown")]
    assert scrape.value("codat_connections", platform="Xero", status="Suspended") == 1


# --- nothing listening -------------------------------------------------------------------


def test_should_survive_connection_refused_and_recover_when_codat_answers_again(
    make_harness: Callable[..., Harness], fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: a loopback port held but not listened on (it refuses connections), until a
    # simulated Codat listens on that very socket
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    port = int(held.getsockname()[1])
    harness = make_harness(**configured({"codat": {"base_url": f"http://127.0.0.1:{port}"}}))
    companies = sorted(fleet.companies)
    # Act
    with caplog.at_level(logging.INFO, logger="exporter"):
        first = harness.poll()
        harness.clock.advance(harness.config.poll.interval)
        harness.poll()
        bad = harness.scrape()
        answers = {path: harness.get(path).status_code for path in ("/-/healthy", "/-/ready", "/")}
        warnings = logged(caplog, logging.WARNING)
        caplog.clear()
        codat = SimulatedCodat(fleet, API_KEY, sock=held).start()
        try:
            harness.clock.advance(harness.config.poll.interval)
            harness.poll()
            recovered = harness.scrape()
        finally:
            codat.stop()
    # Check: every company down, said once for all; the exporter itself answers
    assert first.failed == len(companies)
    assert ups(bad) == dict.fromkeys(companies, 0.0)
    assert bad.value(ERRORS, reason="connection_error") == 2 * len(companies)
    assert answers == {"/-/healthy": 200, "/-/ready": 200, "/": 200}
    (line,) = warnings  # one cause, one line for the whole fleet
    assert f"{len(companies)} companies failed (connection_error), none has values yet" in line
    assert "connection refused" in line
    assert ups(recovered) == dict.fromkeys(companies, 1.0)
    assert all(statuses(recovered, c) for c in companies)
    assert logged(caplog, logging.INFO, f"{len(companies)} companies polled successfully again")
