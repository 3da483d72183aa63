"""How each shape of Codat's dataStatus shows on /metrics."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from exporter.core.contract import COMPANY, KNOWN_STATUSES, parse_company
from exporter.core.snapshot import CompanyInfo
from exporter.simulator.faults import Fault
from tests.harness import Harness

TS = "codat_data_type_last_successful_sync_timestamp_seconds"
AGE = "codat_data_type_last_successful_sync_age_seconds"
STATUS = "codat_data_type_status"
COUNTS = "codat_data_type_companies"
MAX_AGE = "codat_data_type_max_age_seconds"
CONNECTION_STATUS = "codat_connection_status"
CREATED = "codat_company_created_timestamp_seconds"
SYNCED = 1_795_154_400.0  # 2026-11-20T06:00:00Z


@pytest.fixture
def company(harness: Harness) -> str:
    return sorted(harness.fleet.companies)[0]


def test_should_export_never_synced_first_failed_and_failed_after_success(
    harness: Harness, company: str
) -> None:
    # Prepare
    harness.fleet.override(company, {
        "suppliers": {"dataType": "suppliers"},
        "bills": {"dataType": "bills", "currentStatus": "FetchError"},
        "invoices": {"dataType": "invoices", "currentStatus": "AuthError",
                     "lastSuccessfulSync": "2026-11-20T06:00:00Z"},
    })  # fmt: skip
    # Act
    harness.poll()
    scrape = harness.scrape()
    # Check
    assert (
        scrape.value(STATUS, company_id=company, data_type="suppliers", status="NeverSynced") == 1
    )
    assert scrape.value(STATUS, company_id=company, data_type="bills", status="FetchError") == 1
    assert scrape.value(STATUS, company_id=company, data_type="invoices", status="AuthError") == 1
    for data_type in ("suppliers", "bills"):
        assert scrape.find(TS, company_id=company, data_type=data_type) == []
        assert scrape.find(AGE, company_id=company, data_type=data_type) == []
    assert scrape.value(TS, company_id=company, data_type="invoices") == SYNCED
    assert (
        scrape.value(AGE, company_id=company, data_type="invoices") == harness.clock.time() - SYNCED
    )
    assert len(scrape.find(STATUS, company_id=company)) == 3


@pytest.fixture(params=["Asia/Kolkata", "America/New_York"])
def non_utc_timezone(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    monkeypatch.setenv("TZ", request.param)
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("non_utc_timezone")
def test_should_read_every_date_form_as_the_same_instant_whatever_the_local_zone(
    harness: Harness, company: str
) -> None:
    # Prepare
    forms = {
        "utc": "2026-11-20T06:00:00Z",
        "offset": "2026-11-20T01:00:00-05:00",
        "offset-east": "2026-11-20T11:30:00+05:30",
        "unqualified": "2026-11-20T06:00:00",
        "ms": "2026-11-20T06:00:00.000Z",
        "micro": "2026-11-20T06:00:00.000000Z",
        "seven": "2026-11-20T06:00:00.0000000Z",
        "one": "2026-11-20T06:00:00.0",
        "date": "2026-11-20",
    }
    harness.fleet.override(company, {
        f"t-{name}": {"dataType": f"t-{name}", "currentStatus": "Complete",
                      "lastSuccessfulSync": raw}
        for name, raw in forms.items()
    })  # fmt: skip
    # Act
    harness.poll()
    scrape = harness.scrape()
    # Check
    values = {name: scrape.value(TS, company_id=company, data_type=f"t-{name}") for name in forms}
    assert values.pop("date") == SYNCED - 6 * 3600
    assert set(values.values()) == {SYNCED}


def test_should_keep_fractional_seconds(harness: Harness, company: str) -> None:
    # Prepare
    synced = "2026-11-20T06:00:00.2798351Z"
    harness.fleet.override(company, {"bills": {"dataType": "bills", "currentStatus": "Complete",
                                               "lastSuccessfulSync": synced}})  # fmt: skip
    # Act
    harness.poll()
    # Check
    assert harness.scrape().value(TS, company_id=company) == pytest.approx(SYNCED + 0.2798351)


def test_should_pass_through_new_plain_statuses_and_mark_junk_unknown(
    harness: Harness, company: str
) -> None:
    # Prepare
    harness.fleet.override(company, {
        "bills": {"dataType": "bills", "currentStatus": "Paused"},
        "items": {"dataType": "items", "currentStatus": "Weird Status!"},
        "journals": {"dataType": "journals", "currentStatus": "A" * 65},
        "payments": {"dataType": "payments", "currentStatus": 7},
    })  # fmt: skip
    # Act
    harness.poll()
    scrape = harness.scrape()
    # Check
    assert scrape.value(STATUS, company_id=company, data_type="bills", status="Paused") == 1
    for data_type in ("items", "journals", "payments"):
        assert scrape.value(STATUS, company_id=company, data_type=data_type, status="Unknown") == 1
    assert scrape.value(COUNTS, data_type="bills", status="Paused") == 1


def test_should_export_an_empty_current_status_as_unknown_not_never_synced(
    harness: Harness, company: str
) -> None:
    # Prepare: NeverSynced is for a data type Codat lists without any currentStatus
    harness.fleet.override(company, {
        "bills": {"dataType": "bills", "currentStatus": ""},
        "suppliers": {"dataType": "suppliers"},
    })  # fmt: skip
    # Act
    harness.poll()
    scrape = harness.scrape()
    # Check
    statuses = {s.labels["data_type"]: s.labels["status"]
                for s in scrape.find(STATUS, company_id=company) if s.value == 1}  # fmt: skip
    assert statuses == {"bills": "Unknown", "suppliers": "NeverSynced"}
    assert scrape.value(COUNTS, data_type="bills", status="Unknown") == 1
    assert scrape.value(COUNTS, data_type="bills", status="NeverSynced") == 0


def test_should_export_a_connection_without_a_status_as_unknown(
    harness: Harness, company: str
) -> None:
    # Prepare: a Xero connection with no status, and a bank feed whose status is null
    listed = harness.fleet.connections(company)[0]
    without = {k: v for k, v in listed.items() if k != "status"}
    null = {**listed, "id": "0c2d9a1e-0000-4000-8000-000000000002", "platformName": "Plaid",
            "status": None}  # fmt: skip
    harness.fleet.override_connections(company, [without, null])
    # Act
    result = harness.poll()
    scrape = harness.scrape()
    # Check
    assert result.all_succeeded
    exported = sorted((s.labels["platform"], s.labels["status"])
                      for s in scrape.find(CONNECTION_STATUS, company_id=company))  # fmt: skip
    assert exported == [("Plaid", "Unknown"), ("Xero", "Unknown")]


def test_should_count_companies_per_data_type_and_status_with_zeros(
    make_harness: Callable[..., Harness], fleet_ids: list[str]
) -> None:
    # Prepare
    first, second = fleet_ids[:2]
    harness = make_harness(companies={"ids": [first, second]})
    complete = {"dataType": "invoices", "currentStatus": "Complete",
                "lastSuccessfulSync": "2026-11-20T06:00:00Z"}  # fmt: skip
    harness.fleet.override(
        first, {"invoices": complete, "bills": {"dataType": "bills", "currentStatus": "AuthError"}}
    )
    harness.fleet.override(second, {"invoices": complete, "bills": {"dataType": "bills"}})
    # Act
    harness.poll()
    scrape = harness.scrape()
    # Check
    assert scrape.value(COUNTS, data_type="invoices", status="Complete") == 2
    assert scrape.value(COUNTS, data_type="bills", status="AuthError") == 1
    assert scrape.value(COUNTS, data_type="bills", status="NeverSynced") == 1
    assert scrape.value(COUNTS, data_type="invoices", status="FetchError") == 0
    for data_type in ("invoices", "bills"):
        statuses = {s.labels["status"] for s in scrape.find(COUNTS, data_type=data_type)}
        assert statuses == {*KNOWN_STATUSES, "NeverSynced"}
    assert {s.labels["data_type"] for s in scrape.find(COUNTS)} == {"invoices", "bills"}


def test_should_export_the_effective_threshold_per_pair(
    make_harness: Callable[..., Harness], fleet_ids: list[str]
) -> None:
    # Prepare
    harness = make_harness(freshness={"default_max_age": "1d", "max_age": {"invoices": "6h"}})
    # Act
    harness.poll()
    scrape = harness.scrape()
    # Check
    for company in fleet_ids:
        assert scrape.value(MAX_AGE, company_id=company, data_type="invoices") == 6 * 3600
        assert scrape.value(MAX_AGE, company_id=company, data_type="bills") == 24 * 3600


def test_should_compute_ages_at_scrape_time_not_poll_time(harness: Harness, company: str) -> None:
    # Prepare
    harness.poll()
    before = harness.scrape()
    # Act
    harness.clock.advance(125.5)
    after = harness.scrape()
    # Check
    age_before = before.value(AGE, company_id=company, data_type="invoices")
    age_after = after.value(AGE, company_id=company, data_type="invoices")
    assert age_after - age_before == pytest.approx(125.5)
    assert before.find(TS, company_id=company) == after.find(TS, company_id=company)


def test_should_apply_include_and_exclude_filters(make_harness: Callable[..., Harness]) -> None:
    # Prepare
    harness = make_harness(data_types={"include": ["invoices", "bills"], "exclude": ["bills"]})
    # Act
    harness.poll()
    scrape = harness.scrape()
    # Check
    assert {s.labels["data_type"] for s in scrape.find(STATUS)} == {"invoices"}


def test_should_label_company_names_and_refresh_them_hourly(harness: Harness, company: str) -> None:
    # Prepare
    harness.poll()
    original = harness.fleet.companies[company].name
    harness.fleet.companies[company].name = "Renamed Holdings Ltd"
    # Act
    harness.clock.advance(30 * 60)
    harness.poll()
    half_hour = harness.scrape()
    harness.clock.advance(31 * 60)
    harness.poll()
    after_hour = harness.scrape()
    # Check
    assert (
        half_hour.value("codat_exporter_company_up", company_id=company, company_name=original) == 1
    )
    assert after_hour.value("codat_exporter_company_up", company_id=company,
                            company_name="Renamed Holdings Ltd") == 1  # fmt: skip
    assert after_hour.find(STATUS, company_id=company, company_name=original) == []


def test_should_export_when_codat_created_the_company(harness: Harness, company: str) -> None:
    # Act
    harness.poll()
    scrape = harness.scrape()
    # Check: from GET /companies/{companyId}, sent with millisecond precision
    created = harness.fleet.companies[company].created
    name = harness.fleet.companies[company].name
    exported = scrape.value(CREATED, company_id=company, company_name=name)
    assert exported == pytest.approx(created, abs=0.001)


@pytest.mark.parametrize("created", ["yesterday", "2026-02-30T00:00:00Z", 1700000000, None])
def test_should_leave_out_a_created_time_that_does_not_parse(created: object) -> None:
    # Act
    info = parse_company({"id": "x", "name": "Acme Ltd", "created": created})
    # Check: the name still counts; only the created time is left out
    assert info == CompanyInfo("Acme Ltd", None)


def test_should_leave_the_name_empty_until_it_is_known(harness: Harness, company: str) -> None:
    # Prepare
    harness.fleet.inject(company, Fault("status", status=500, endpoint=COMPANY))
    # Act
    harness.poll()
    scrape = harness.scrape()
    # Check: the failed name request shows as a failed poll, the data status still counts
    assert scrape.value("codat_exporter_company_up", company_id=company, company_name="") == 0
    assert scrape.find(CREATED, company_id=company) == []
    assert scrape.find(STATUS, company_id=company, company_name="") != []
    assert scrape.value("codat_exporter_poll_errors_total", reason="http_error") == 1


def test_should_accept_an_empty_data_status_from_a_company_that_never_listed_any(
    harness: Harness, company: str
) -> None:
    # Prepare: nothing connected yet, so Codat has no data types for the company
    harness.fleet.override(company, {})
    # Act
    harness.poll()
    scrape = harness.scrape()
    # Check
    assert scrape.value("codat_exporter_company_up", company_id=company) == 1
    assert scrape.find(STATUS, company_id=company) == []
