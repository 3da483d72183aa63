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

from exporter.codat import ERROR_STATUSES, KNOWN_STATUSES, parse_datetime
from exporter.simulator import Fleet, SimulatedCodat
from exporter.simulator.fleet import CONSISTENT, NEXT_ON_LAST_PAGE, TOTAL_TOO_HIGH
from tests.contract import Contract, ManualClock, load_schemas

API_KEY = "contract-test-key"
START = 1_782_475_200.0  # 2026-06-26T12:00:00Z
HOUR = 3600.0
INSTANTS = {"now": 0.0, "in an hour": HOUR, "in a day": 24 * HOUR}
"""When to look, as offsets from START: syncs have run, failed and recovered in between."""

COMPANY = "/companies/{id}"
DATA_STATUS = "/companies/{id}/dataStatus"


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
        "ReadCompletedWebhook", "ConnectionWebhook",
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
@pytest.mark.parametrize("path", ["/companies", COMPANY, DATA_STATUS])
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


@pytest.mark.parametrize("path", [COMPANY, DATA_STATUS])
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
@pytest.mark.parametrize("path", ["/companies", CONNECTIONS])
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
