"""The simulated Codat answers as the contract says Codat does (issue 2).

Every endpoint the simulator serves is requested over real loopback HTTP and its body
checked against the vendored schemas of Codat's Platform API (tests/contract/, see its
PROVENANCE.md). The seeded fleet is the demo's; its clock is moved by hand, so states that
evolve (syncs running, failing, recovering) are covered without waiting.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import pytest
import requests
from jsonschema import Draft202012Validator

from exporter.core.contract import (
    ERROR_STATUSES,
    IN_PROGRESS_STATUSES,
    KNOWN_STATUSES,
    parse_datetime,
)
from exporter.simulator.conventions import CONSISTENT, NEXT_ON_LAST_PAGE, TOTAL_TOO_HIGH
from exporter.simulator.fleet import Fleet
from exporter.simulator.server import SimulatedCodat
from tests.contract import Contract, ManualClock, load_schemas

API_KEY = "contract-test-key"
START = 1_782_475_200.0  # 2026-06-26T12:00:00Z
HOUR = 3600.0
INSTANTS = {"now": 0.0, "in an hour": HOUR, "in a day": 24 * HOUR}
"""When to look, as offsets from START: syncs have run, failed and recovered in between."""

COMPANY = "/companies/{id}"
DATA_STATUS = "/companies/{id}/dataStatus"
HISTORY = "/companies/{id}/data/history"
PULL_OPERATION = "/companies/{id}/data/history/{sync}"


def allowing_never_synced(document: dict[str, Any]) -> dict[str, Any]:
    """The contract plus the one deviation Codat documents, and nothing else.

    Contract README (../shared/codat/README.md): "A data type that has never been synced may
    come back as {"dataType": "suppliers"} with no currentStatus and no lastSuccessfulSync,
    although the schema marks currentStatus required." So DataStatus.currentStatus may be
    missing. Only missing: when present it must still be one of the statuses (not null), and
    no other field of any schema is relaxed.
    """
    data_status = document["$defs"]["DataStatus"]
    assert data_status["required"] == ["dataType", "currentStatus"], "the contract changed"
    data_status["required"] = ["dataType"]
    return document


@dataclass
class Simulated:
    clock: ManualClock
    fleet: Fleet
    server: SimulatedCodat
    http: requests.Session

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.http.get(urljoin(self.server.url, path), timeout=5, **kwargs)

    def json(self, path: str, status: int = 200, **kwargs: Any) -> Any:
        response = self.get(path, **kwargs)
        assert response.status_code == status, f"GET {path}: {response.status_code}"
        content_type = response.headers["Content-Type"].split(";")[0].strip()
        assert content_type == "application/json", f"GET {path}: {content_type}"
        return response.json()

    def data_statuses(self) -> dict[str, Any]:
        """dataStatus of every company, by company id, at the clock's current time."""
        return {cid: self.json(DATA_STATUS.format(id=cid)) for cid in sorted(self.fleet.companies)}

    def at_each_instant(self) -> Iterator[str]:
        """Move the clock to each of INSTANTS in turn, yielding its name."""
        for name, offset in INSTANTS.items():
            self.clock.advance(START + offset - self.clock.time())
            yield name


@pytest.fixture
def simulated() -> Iterator[Simulated]:
    clock = ManualClock(START)
    fleet = Fleet.generate(clock, companies=20, seed=1)  # the demo's fleet
    server = SimulatedCodat(fleet, API_KEY, host="127.0.0.1", port=0).start()
    http = requests.Session()
    http.trust_env = False  # no proxy from the environment: loopback only
    http.headers["Authorization"] = "Basic " + base64.b64encode(API_KEY.encode()).decode()
    yield Simulated(clock, fleet, server, http)
    http.close()
    server.stop()


@pytest.fixture(scope="module")
def contract() -> Contract:
    return Contract(load_schemas())


@pytest.fixture(scope="module")
def data_status_contract() -> Contract:
    return Contract(allowing_never_synced(load_schemas()))


def test_should_vendor_a_valid_schema_for_every_body_checked_now_or_next() -> None:
    # Prepare
    needed = {
        "DataStatuses", "DataStatus", "Company", "Companies", "PagingInfo", "ErrorMessage",
        "Connections", "Connection", "CompanySyncSettings", "SyncSetting",
        "ReadCompletedWebhook", "ConnectionWebhook", "PullOperation", "PullOperations",
    }  # fmt: skip

    # Act
    document = load_schemas()

    # Check
    Draft202012Validator.check_schema(document)
    assert needed - set(document["$defs"]) == set()


@pytest.mark.parametrize("offset", list(INSTANTS.values()), ids=list(INSTANTS))
def test_should_serve_data_statuses_matching_the_contract_for_every_company(
    simulated: Simulated, data_status_contract: Contract, offset: float
) -> None:
    # Prepare
    simulated.clock.advance(offset)

    # Act
    bodies = simulated.data_statuses()

    # Check
    problems = [
        f"{cid}: {problem}"
        for cid, body in bodies.items()
        for problem in data_status_contract.errors("DataStatuses", body)
    ]
    assert problems == []
    misfiled = [
        f"{cid}: {key}" for cid, body in bodies.items() for key, entry in body.items()
        if entry is not None and entry["dataType"] != key
    ]  # fmt: skip
    assert misfiled == [], "DataStatuses is keyed by the entry's dataType"


def test_should_serve_every_company_matching_the_contract(
    simulated: Simulated, contract: Contract
) -> None:
    # Prepare
    ids = sorted(simulated.fleet.companies)

    # Act
    bodies = {cid: simulated.json(COMPANY.format(id=cid)) for cid in ids}

    # Check
    problems = [
        f"{cid}: {problem}"
        for cid, body in bodies.items()
        for problem in contract.errors("Company", body)
    ]
    assert problems == []
    assert [body["id"] for body in bodies.values()] == ids


def test_should_page_companies_matching_the_contract_when_following_next_links(
    simulated: Simulated, contract: Contract
) -> None:
    # Prepare
    total = len(simulated.fleet.companies)
    path: str | None = "/companies?page=1&pageSize=6"

    # Act
    pages: list[dict[str, Any]] = []
    while path is not None and len(pages) <= total:
        pages.append(simulated.json(path))
        path = pages[-1].get("_links", {}).get("next", {}).get("href")
    unpaged = simulated.json("/companies")

    # Check
    problems = [
        f"page {number}: {problem}"
        for number, page in enumerate([*pages, unpaged], start=1)
        for problem in contract.errors("Companies", page)
    ]
    assert problems == []
    assert [page["pageNumber"] for page in pages] == [1, 2, 3, 4]
    assert {page["pageSize"] for page in pages} == {6}
    assert {page["totalResults"] for page in pages} == {total}
    assert [len(page["results"]) for page in pages] == [6, 6, 6, 2]
    listed = [company["id"] for page in pages for company in page["results"]]
    assert sorted(listed) == sorted(simulated.fleet.companies)
    assert [c["id"] for c in unpaged["results"]] == sorted(listed)


@pytest.mark.parametrize(
    "authorization",
    [None, "Basic " + base64.b64encode(b"not-the-key").decode()],
    ids=["no key", "wrong key"],
)
@pytest.mark.parametrize("path", ["/companies", COMPANY, DATA_STATUS, HISTORY])
def test_should_refuse_a_request_without_the_key_with_a_401_error_message(
    simulated: Simulated, contract: Contract, authorization: str | None, path: str
) -> None:
    # Prepare
    company_id = sorted(simulated.fleet.companies)[0]

    # Act
    body = simulated.json(
        path.format(id=company_id), status=401, headers={"Authorization": authorization}
    )

    # Check
    assert contract.errors("ErrorMessage", body) == []
    assert body["statusCode"] == 401


@pytest.mark.parametrize("path", [COMPANY, DATA_STATUS, HISTORY])
def test_should_answer_an_unknown_company_with_a_404_error_message(
    simulated: Simulated, contract: Contract, path: str
) -> None:
    # Prepare
    unknown = str(uuid.UUID(int=1, version=4))
    assert unknown not in simulated.fleet.companies

    # Act
    body = simulated.json(path.format(id=unknown), status=404)

    # Check
    assert contract.errors("ErrorMessage", body) == []
    assert body["statusCode"] == 404


def test_should_emit_only_datetimes_that_parse_datetime_reads(simulated: Simulated) -> None:
    # Prepare
    checked = Contract(allowing_never_synced(load_schemas()))  # notes every DateTime it meets

    # Act
    for _ in simulated.at_each_instant():
        for body in simulated.data_statuses().values():
            checked.errors("DataStatuses", body)
        for cid in simulated.fleet.companies:
            checked.errors("Company", simulated.json(COMPANY.format(id=cid)))
        checked.errors("Companies", simulated.json("/companies"))
        for cid in simulated.fleet.companies:
            checked.errors("PullOperations", simulated.json(HISTORY.format(id=cid)))

    # Check
    unreadable = []
    for value in checked.datetimes:
        try:
            parse_datetime(value)
        except ValueError as exc:
            unreadable.append(f"{value!r}: {exc}")
    assert unreadable == []
    # The forms the contract README lists, each of which the seeded fleet should show.
    moment = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?"
    forms = {
        "UTC": moment + "Z",
        "offset": moment + r"[+-]\d\d:\d\d",
        "unqualified": moment,
        "3 fractional digits": r".*:\d\d\.\d{3}(\D.*)?",
        "6 fractional digits": r".*:\d\d\.\d{6}(\D.*)?",
        "7 fractional digits": r".*:\d\d\.\d{7}(\D.*)?",
    }
    missing = {
        form for form, pattern in forms.items()
        if not any(re.fullmatch(pattern, value) for value in checked.datetimes)
    }  # fmt: skip
    assert missing == set()


def test_should_show_every_status_a_never_synced_and_a_first_failed_data_type_in_the_fleet(
    simulated: Simulated,
) -> None:
    # Prepare
    statuses: dict[str, set[str]] = {}
    never_synced: dict[str, int] = {}
    first_failed: dict[str, int] = {}

    # Act
    for instant in simulated.at_each_instant():
        entries = [e for body in simulated.data_statuses().values() for e in body.values()]
        statuses[instant] = {e["currentStatus"] for e in entries if "currentStatus" in e}
        never_synced[instant] = sum(e == {"dataType": e["dataType"]} for e in entries)
        first_failed[instant] = sum(
            e.get("currentStatus") in ERROR_STATUSES and "lastSuccessfulSync" not in e
            for e in entries
        )

    # Check
    for instant, seen in statuses.items():
        assert set(KNOWN_STATUSES) - seen == set(), f"missing at {instant}"
        assert seen - set(KNOWN_STATUSES) == set(), f"unexpected at {instant}"
    assert 0 not in never_synced.values(), never_synced
    assert 0 not in first_failed.values(), first_failed


def test_should_allow_only_a_missing_current_status_beyond_the_contract(
    data_status_contract: Contract,
) -> None:
    # Prepare
    strict = Contract(load_schemas())
    never_synced = {"dataType": "suppliers"}
    bad_entries = [
        {"dataType": "suppliers", "currentStatus": None},
        {"dataType": "suppliers", "currentStatus": "Bogus"},
        {"currentStatus": "Complete"},
        {"dataType": "suppliers", "lastSuccessfulSync": 5},
    ]

    # Act
    strict_errors = strict.errors("DataStatus", never_synced)
    allowed_errors = data_status_contract.errors("DataStatus", never_synced)
    bad_errors = [data_status_contract.errors("DataStatus", entry) for entry in bad_entries]

    # Check
    assert strict_errors == ["$: 'currentStatus' is a required property"]
    assert allowed_errors == []
    assert [] not in bad_errors


# --- paged routes: the query parameters ----------------------------------------------------

CONNECTIONS = "/companies/{id}/connections"
MALFORMED = [
    ("pageSize=abc", "pageSize"),
    ("pageSize=", "pageSize"),
    ("pageSize=0", "pageSize"),
    ("pageSize=5001", "pageSize"),
    ("pageSize=-1", "pageSize"),
    ("pageSize=1.5", "pageSize"),
    ("pageSize=%D9%A3", "pageSize"),  # an Arabic-Indic three: int() reads it, Codat would not
    ("page=0", "page"),
    ("page=abc", "page"),
    ("page=2147483648", "page"),
    ("page=1&pageSize=99999999999", "pageSize"),
]


@pytest.mark.parametrize(("query", "named"), MALFORMED, ids=[q for q, _ in MALFORMED])
@pytest.mark.parametrize("path", ["/companies", CONNECTIONS, HISTORY])
def test_should_answer_a_malformed_paging_parameter_with_a_400_error_message(
    simulated: Simulated, contract: Contract, path: str, query: str, named: str
) -> None:
    # Prepare
    company_id = sorted(simulated.fleet.companies)[0]

    # Act
    body = simulated.json(f"{path.format(id=company_id)}?{query}", status=400)

    # Check
    assert contract.errors("ErrorMessage", body) == []
    assert body["statusCode"] == 400
    assert f"{named} must be a whole number" in body["error"]


def test_should_answer_a_tags_filter_that_does_not_parse_with_a_400_error_message(
    simulated: Simulated, contract: Contract
) -> None:
    # Act
    body = simulated.json("/companies", status=400, params={"tags": "region=uk && nonsense"})
    good = simulated.json("/companies", params={"tags": "region=uk && profile!=stale"})

    # Check
    assert contract.errors("ErrorMessage", body) == []
    assert body["statusCode"] == 400
    assert "'nonsense'" in body["error"]
    assert good["results"]
    assert {c["tags"]["region"] for c in good["results"]} == {"uk"}


@pytest.mark.parametrize("asked", [2001, 5000])
def test_should_hold_at_most_2000_results_a_page_as_the_contracts_paging_info_says(
    contract: Contract, asked: int
) -> None:
    # Prepare: more companies than a page may hold
    clock = ManualClock(START)
    fleet = Fleet.generate(clock, companies=2001, seed=1, data_types_per_company=5)
    server = SimulatedCodat(fleet, API_KEY).start()
    http = requests.Session()
    http.trust_env = False
    http.headers["Authorization"] = "Basic " + base64.b64encode(API_KEY.encode()).decode()
    simulated = Simulated(clock, fleet, server, http)
    try:
        # Act
        first = simulated.json(f"/companies?page=1&pageSize={asked}")
        second = simulated.json(first["_links"]["next"]["href"])
    finally:
        http.close()
        server.stop()

    # Check: the envelope against the contract (each company is checked above)
    assert contract.errors("Companies", {**first, "results": first["results"][:1]}) == []
    assert (first["pageSize"], len(first["results"])) == (2000, 2000)
    assert first["_links"]["next"]["href"] == "/companies?page=2&pageSize=2000"
    assert (second["pageNumber"], len(second["results"]), second["totalResults"]) == (2, 1, 2001)
    assert "next" not in second["_links"]


@pytest.mark.parametrize(
    ("paging", "last_links_next", "total"),
    [(CONSISTENT, False, 20), (NEXT_ON_LAST_PAGE, True, 20), (TOTAL_TOO_HIGH, False, 30)],
)
def test_should_page_inconsistently_only_as_the_fleets_paging_asks(
    simulated: Simulated, contract: Contract, paging: str, last_links_next: bool, total: int
) -> None:
    # Prepare
    simulated.fleet.paging = paging

    # Act
    last = simulated.json("/companies?page=2&pageSize=10")
    beyond = simulated.json("/companies?page=3&pageSize=10")

    # Check
    assert contract.errors("Companies", last) == []
    assert len(last["results"]) == 10
    assert ("next" in last["_links"]) is last_links_next
    assert last["totalResults"] == total
    assert (beyond["results"], "next" in beyond["_links"]) == ([], False)


# --- pull operations: GET /companies/{companyId}/data/history[/{datasetId}] ---------------


def pull_operation(simulated: Simulated, company_id: str, sync_id: str) -> Any:
    return simulated.json(PULL_OPERATION.format(id=company_id, sync=sync_id))


def latest_pull_operations(simulated: Simulated) -> list[tuple[str, dict[str, Any], Any]]:
    """(company id, dataStatus entry, its latestSyncId's pull operation) of every pair that
    has synced, at the clock's current time."""
    return [
        (cid, entry, pull_operation(simulated, cid, entry["latestSyncId"]))
        for cid, body in simulated.data_statuses().items()
        for entry in body.values()
        if "latestSyncId" in entry
    ]


def history_pages(simulated: Simulated, company_id: str, size: int) -> list[dict[str, Any]]:
    """Every page of the company's pull operations, following the next links."""
    pages: list[dict[str, Any]] = []
    path: str | None = f"{HISTORY.format(id=company_id)}?page=1&pageSize={size}"
    while path is not None and len(pages) < 1000:
        pages.append(simulated.json(path))
        path = pages[-1]["_links"].get("next", {}).get("href")
    return pages


def paused(operation: dict[str, Any]) -> float | None:
    match = re.fullmatch(r"Paused until (\S+)", operation.get("statusDescription") or "")
    return parse_datetime(match[1]) if match else None


@pytest.mark.parametrize("offset", list(INSTANTS.values()), ids=list(INSTANTS))
def test_should_serve_the_latest_sync_of_every_pair_as_its_pull_operation_with_its_status(
    simulated: Simulated, contract: Contract, offset: float
) -> None:
    # Prepare
    simulated.clock.advance(offset)

    # Act
    found = latest_pull_operations(simulated)

    # Check
    assert len(found) > 100
    problems = [
        f"{cid} {entry['dataType']}: {problem}"
        for cid, entry, operation in found
        for problem in contract.errors("PullOperation", operation)
    ]
    assert problems == []
    mismatched = [
        (cid, entry, operation) for cid, entry, operation in found
        if (operation["id"], operation["companyId"], operation["dataType"], operation["status"])
        != (entry["latestSyncId"], cid, entry["dataType"], entry["currentStatus"])
    ]  # fmt: skip
    assert mismatched == []
    assert {operation["status"] for _, _, operation in found} == set(KNOWN_STATUSES)
    requested = [parse_datetime(operation["requested"]) for _, _, operation in found]
    assert max(requested) <= simulated.clock.time()


@pytest.mark.parametrize("offset", list(INSTANTS.values()), ids=list(INSTANTS))
def test_should_serve_the_last_successful_sync_as_a_complete_pull_operation_ending_then(
    simulated: Simulated, contract: Contract, offset: float
) -> None:
    # Prepare
    simulated.clock.advance(offset)
    pairs = [
        (cid, entry)
        for cid, body in simulated.data_statuses().items()
        for entry in body.values()
        if "latestSuccessfulSyncId" in entry
    ]

    # Act
    found = [(entry, pull_operation(simulated, cid, entry["latestSuccessfulSyncId"]))
             for cid, entry in pairs]  # fmt: skip

    # Check
    assert len(found) > 100
    assert [p for _, op in found for p in contract.errors("PullOperation", op)] == []
    assert {(op["status"], op["progress"], op["isCompleted"], op["isErrored"])
            for _, op in found} == {("Complete", 100, True, False)}  # fmt: skip
    # lastSuccessfulSync is when that sync completed, in the data type's own date form (a
    # bare date, or whole seconds at the coarsest).
    late = [
        (entry["lastSuccessfulSync"], op["completed"]) for entry, op in found
        if not (
            entry["lastSuccessfulSync"][:10] == op["completed"][:10]
            if len(entry["lastSuccessfulSync"]) == 10
            else abs(parse_datetime(entry["lastSuccessfulSync"]) - parse_datetime(op["completed"]))
            < 1
        )
    ]  # fmt: skip
    assert late == []


def test_should_give_every_failed_sync_the_error_message_of_its_status(
    simulated: Simulated,
) -> None:
    # Act
    failed = [
        operation
        for _ in simulated.at_each_instant()
        for _, _, operation in latest_pull_operations(simulated)
        if operation["status"] in (*ERROR_STATUSES, "AuthError")
    ]

    # Check
    messages = {operation["status"]: operation.get("errorMessage") for operation in failed}
    assert set(messages) == {*ERROR_STATUSES, "AuthError"}
    assert messages["FetchError"] == "The source platform returned 503 Service Unavailable"
    assert messages["AuthError"] == "The access token has expired or been revoked"
    assert all(isinstance(m, str) and len(m) > 20 for m in messages.values()), messages
    assert len(set(messages.values())) == len(messages), "one message per status"
    assert {(op["isErrored"], op["isCompleted"], "completed" in op) for op in failed} == {
        (True, False, True)
    }


def test_should_leave_the_error_message_out_of_syncs_that_did_not_fail(
    simulated: Simulated,
) -> None:
    # Act
    others = [
        operation
        for _ in simulated.at_each_instant()
        for _, _, operation in latest_pull_operations(simulated)
        if operation["status"] not in (*ERROR_STATUSES, "AuthError")
    ]

    # Check
    assert others
    assert [op for op in others if op.get("errorMessage") or op["isErrored"]] == []
    running = [op for op in others if op["status"] not in ("Complete", "Cancelled", "NotSupported")]
    assert running
    assert [op for op in running if "completed" in op or op["isCompleted"]] == []
    assert {op["progress"] for op in running} - set(range(100)) == set()


def test_should_take_a_minute_to_hours_to_complete_a_sync_varying_from_sync_to_sync(
    simulated: Simulated,
) -> None:
    # Prepare: the syncs of the hourly and longer schedules (tests shorten a few to a minute)
    hourly = {
        (cid, name) for cid, company in simulated.fleet.companies.items()
        for name, sim in company.data_types.items() if sim.period >= HOUR
    }  # fmt: skip

    # Act
    took = [
        parse_datetime(op["completed"]) - parse_datetime(op["requested"])
        for cid in sorted(simulated.fleet.companies)
        for op in simulated.json(HISTORY.format(id=cid), params={"pageSize": 400})["results"]
        if op["status"] == "Complete" and (cid, op["dataType"]) in hourly
    ]

    # Check
    assert len(took) > 1000
    assert min(took) >= 60
    assert max(took) > 2 * HOUR
    assert max(took) <= 3 * HOUR
    assert len(set(took)) > 0.99 * len(took), "seeded per sync, not one constant"
    assert sum(t > HOUR for t in took) > 50, "hours are no rare exception"


def test_should_pause_one_pair_until_a_later_time_then_run_it_and_complete(
    simulated: Simulated,
) -> None:
    # Prepare
    start = simulated.clock.time()
    found = [(cid, op) for cid, _, op in latest_pull_operations(simulated) if paused(op)]
    assert len(found) == 1, found
    company_id, operation = found[0]
    until = paused(operation)
    assert until is not None

    # Act
    simulated.clock.advance(until - start - 1)
    before = pull_operation(simulated, company_id, operation["id"])
    simulated.clock.advance(3 * HOUR + 1)
    after = pull_operation(simulated, company_id, operation["id"])
    status = simulated.json(DATA_STATUS.format(id=company_id))[operation["dataType"]]

    # Check
    assert 1 * HOUR < until - start <= 3 * HOUR
    assert (operation["status"], operation["progress"], "completed" in operation) == (
        "Initial", 0, False,
    )  # fmt: skip
    assert parse_datetime(operation["requested"]) < start
    assert (before["status"], before["statusDescription"]) == (
        "Initial",
        operation["statusDescription"],
    )
    assert (after["status"], "statusDescription" in after) == ("Complete", False)
    assert parse_datetime(after["completed"]) > until
    assert status["latestSuccessfulSyncId"] == operation["id"]
    assert [op for _, _, op in latest_pull_operations(simulated) if paused(op)] == []


def test_should_keep_one_on_premise_pair_queued_for_hours_without_a_newer_sync(
    simulated: Simulated,
) -> None:
    # Prepare
    start = simulated.clock.time()

    def queued() -> list[tuple[str, dict[str, Any], Any]]:
        return [
            (cid, entry, op) for cid, entry, op in latest_pull_operations(simulated)
            if op["status"] == "Queued" and start - parse_datetime(op["requested"]) > 4 * HOUR
        ]  # fmt: skip

    # Act
    now = queued()
    simulated.clock.advance(24 * HOUR)
    in_a_day = queued()

    # Check
    assert len(now) == 1, now
    company_id, entry, operation = now[0]
    assert [(c, e["latestSyncId"]) for c, e, _ in in_a_day] == [(company_id, operation["id"])]
    assert (operation["progress"], "completed" in operation) == (0, False)
    assert "lastSuccessfulSync" in entry, "it synced before the connector went offline"
    (connection,) = [
        c for c in simulated.json(f"{CONNECTIONS.format(id=company_id)}")["results"]
        if c["id"] == operation["connectionId"]
    ]  # fmt: skip
    assert (connection["platformName"], connection["sourceType"]) == (
        "QuickBooks Desktop", "Accounting",
    )  # fmt: skip


def test_should_list_every_pull_operation_of_a_company_newest_first_as_each_id_answers(
    simulated: Simulated, contract: Contract
) -> None:
    # Prepare: the company created three hours ago, whose whole history fits a few pages
    (company_id,) = simulated.fleet.ids_by_profile("first_failed")
    latest = simulated.json(DATA_STATUS.format(id=company_id))

    # Act
    pages = history_pages(simulated, company_id, size=5)
    listed = [op for page in pages for op in page["results"]]
    by_id = [pull_operation(simulated, company_id, op["id"]) for op in listed]

    # Check
    assert [p for page in pages for p in contract.errors("PullOperations", page)] == []
    assert len(listed) > 10
    assert {page["totalResults"] for page in pages} == {len(listed)}
    assert [page["pageNumber"] for page in pages] == list(range(1, len(pages) + 1))
    assert by_id == listed
    assert len({op["id"] for op in listed}) == len(listed)
    requested = [parse_datetime(op["requested"]) for op in listed]
    assert requested == sorted(requested, reverse=True)
    newest = {}
    for op in reversed(listed):
        newest[op["dataType"]] = op["id"]
    ids = {entry.get(key) for entry in latest.values()
           for key in ("latestSyncId", "latestSuccessfulSyncId")} - {None}  # fmt: skip
    assert ids <= {op["id"] for op in listed}
    assert newest == {d: e["latestSyncId"] for d, e in latest.items() if "latestSyncId" in e}


def test_should_answer_each_entry_of_a_large_history_by_its_id(simulated: Simulated) -> None:
    # Act
    pages = {cid: simulated.json(HISTORY.format(id=cid), params={"pageSize": 20})
             for cid in sorted(simulated.fleet.companies)}  # fmt: skip

    # Check
    assert min(page["totalResults"] for page in pages.values()) > 10
    assert max(page["totalResults"] for page in pages.values()) > 10_000
    different = [
        (cid, op["id"]) for cid, page in pages.items() for op in page["results"]
        if pull_operation(simulated, cid, op["id"]) != op
    ]  # fmt: skip
    assert different == []


@pytest.mark.parametrize(
    "which", ["not a uuid", "a random uuid", "another company's", "the next, not yet requested"]
)
def test_should_answer_an_id_that_names_no_pull_operation_of_the_company_with_a_404(
    simulated: Simulated, contract: Contract, which: str
) -> None:
    # Prepare
    first, second = sorted(simulated.fleet.companies)[:2]
    timeline = simulated.fleet.timeline(first, "invoices")
    latest = timeline.latest(simulated.clock.time())
    assert latest is not None
    latest_id = simulated.json(DATA_STATUS.format(id=first))["invoices"]["latestSyncId"]
    company_id, sync_id = {
        "not a uuid": (first, "not-a-uuid"),
        "a random uuid": (first, str(uuid.UUID(int=7, version=4))),
        "another company's": (second, latest_id),
        "the next, not yet requested": (first, timeline.sync_id(latest.k + 1)),
    }[which]

    # Act
    body = simulated.json(PULL_OPERATION.format(id=company_id, sync=sync_id), status=404)
    known = pull_operation(simulated, first, latest_id)

    # Check
    assert contract.errors("ErrorMessage", body) == []
    assert body["statusCode"] == 404
    assert known["id"] == latest_id == timeline.sync_id(latest.k)


# --- integrations, link URLs and a platform's outage (issue 18) -----------------------------

INTEGRATION = "/integrations/{key}"


def test_should_serve_each_connection_s_integration_saying_whether_it_runs_on_premises(
    simulated: Simulated, contract: Contract
) -> None:
    # Prepare: every integration key a connection of the fleet names
    connections = [
        c for cid in sorted(simulated.fleet.companies)
        for c in simulated.json(CONNECTIONS.format(id=cid))["results"]
    ]  # fmt: skip
    keys = sorted({c["integrationKey"] for c in connections})

    # Act
    bodies = {key: simulated.json(INTEGRATION.format(key=key)) for key in keys}
    unknown = simulated.json(INTEGRATION.format(key="zzzz"), status=404)

    # Check: as the contract's Integration; only the desktop package is an offline connector
    assert [p for key, body in bodies.items() for p in contract.errors("Integration", body)] == []
    assert {key: body["isOfflineConnector"] for key, body in bodies.items()} == {
        "gbol": False, "pqsw": True, "ugxp": False,
    }  # fmt: skip
    names = {c["integrationKey"]: c["platformName"] for c in connections}
    assert {key: body["name"] for key, body in bodies.items()} == names
    assert contract.errors("ErrorMessage", unknown) == []


def test_should_give_each_connection_its_own_link_url(simulated: Simulated) -> None:
    # Prepare
    ids = sorted(simulated.fleet.companies)

    # Act
    connections = [
        (cid, c) for cid in ids for c in simulated.json(CONNECTIONS.format(id=cid))["results"]
    ]

    # Check: the contract requires linkUrl, a URI naming the company and the connection
    assert all(
        c["linkUrl"] == f"https://link-api.codat.io/companies/{cid}/connections/{c['id']}/start"
        for cid, c in connections
    )
    assert len({c["linkUrl"] for _, c in connections}) == len(connections)


def test_should_fail_every_sync_of_one_platform_during_its_outage_and_recover_after(
    simulated: Simulated,
) -> None:
    # Prepare: half the fleet moved to QuickBooks Online, its outage from 13 hours ago
    # until 30 minutes from now (every data type syncs at least every 12 hours)
    fleet = simulated.fleet
    moved = [c for c in fleet.companies.values() if c.profile == "healthy"][::2]
    for company in moved:
        company.platform = ("qhyg", "QuickBooks Online")
    now = simulated.clock.time()
    hit = fleet.outage("QuickBooks Online", since=now - 13 * HOUR, until=now + HOUR / 2)

    def statuses(company_id: str) -> set[str]:
        body = simulated.json(DATA_STATUS.format(id=company_id))
        return {entry.get("currentStatus", "") for entry in body.values()}

    # Act
    during = {cid: statuses(cid) for cid in sorted(fleet.companies)}
    simulated.clock.advance(13 * HOUR)
    after = {cid: statuses(cid) for cid in hit}

    # Check: its companies only; only FetchError or a sync still running; then none
    assert sorted(hit) == sorted(c.id for c in moved) and len(hit) >= 4
    running = set(IN_PROGRESS_STATUSES)
    assert all(during[cid] <= {"FetchError", *running} and "FetchError" in during[cid]
               for cid in hit)  # fmt: skip
    others = [cid for cid in during if cid not in hit and fleet.companies[cid].profile == "healthy"]
    assert others and all("Complete" in during[cid] for cid in others)
    assert all("FetchError" not in statuses for statuses in after.values())
