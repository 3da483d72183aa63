"""The status page at ``/`` (issue 9, part 2), read over real HTTP from the exporter's server
as an operator reads it: which pairs need attention and why, in which order, filtered by a
plain GET form, every value escaped."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
import requests

from exporter.config.series import FreshnessConfig
from exporter.config.sharding import Shard
from exporter.core.families import PAUSED_UNTIL
from exporter.core.snapshot import ConnectionState, DiscoveryFacts, Facts, SyncDetail
from exporter.exposition.assess import STUCK_AFTER
from exporter.exposition.render import Exposition
from exporter.web.statustables import ROW_LIMIT
from exporter.web.webconfig import load_web_config
from tests.harness import START
from tests.promtools import PRESET_RULES, RULES, alert_rules
from tests.statusfleet import (
    HOUR,
    NEEDS_ATTENTION,
    ON_THE_PAGE,
    Servers,
    StatusServer,
    company,
    fleet,
    pair,
    pairs_of,
    relink_fleet,
    relink_rows,
    table_rows,
)
from tests.web.test_server_security import PASSWORD, USER, Pki, pki, web_config_file

__all__ = ["pki"]  # the fixture, for the TLS test


@pytest.fixture
def serve() -> Iterator[Servers]:
    servers = Servers()
    yield servers
    servers.close()


def chip(page: str, state: str) -> int:
    """The count the header shows for a state."""
    found = re.search(rf'href="/\?status={state}"><b>([\d,]+)</b>', page)
    assert found, f"no count for {state}"
    return int(found[1].replace(",", ""))


BOTH_CONNECTIONS = (
    ConnectionState("k2", "Xero", "Accounting", "Linked"),
    ConnectionState("k3", "Plaid", "Banking", "Deauthorized"),
)
"""A company's two connections: its accounting data served, its banking data not."""


def test_should_list_the_pairs_that_need_attention_worst_first_and_never_synced_last(
    serve: Servers,
) -> None:
    # Prepare
    server = fleet(serve)
    # Act
    rows = server.rows("/")
    # Check
    assert pairs_of(rows) == ON_THE_PAGE
    assert [row["states"] for row in rows] == [
        "stale", "AuthError", "failing stale", "paused", "stuck in_progress", "NeverSynced",
    ]  # fmt: skip


def test_should_count_every_state_in_the_header_and_link_each_count_to_its_pairs(
    serve: Servers,
) -> None:
    # Prepare
    server = fleet(serve)
    # Act
    page = server.get("/").text
    stale_rows = server.rows("/?status=stale")
    # Check
    counts = {s: chip(page, s) for s in ("stale", "failing", "AuthError", "NeverSynced",
                                         "paused", "stuck", "in_progress", "healthy")}  # fmt: skip
    assert counts == {"stale": 2, "failing": 1, "AuthError": 1, "NeverSynced": 1, "paused": 1,
                      "stuck": 1, "in_progress": 2, "healthy": 2}  # fmt: skip
    assert pairs_of(stale_rows) == [("c1", "invoices"), ("c2", "invoices")]
    assert "3 companies monitored, 3 polled successfully" in page


def test_should_list_healthy_pairs_only_on_request(serve: Servers) -> None:
    # Prepare
    server = fleet(serve)
    # Act
    default, everything = server.rows("/"), server.rows("/?all=1")
    # Check
    healthy = {("c1", "customers"), ("c2", "accounts")}
    assert healthy.isdisjoint(pairs_of(default))
    assert set(pairs_of(everything)) == set(NEEDS_ATTENTION) | healthy
    assert "2 healthy pairs not listed" in server.get("/").text


def test_should_count_only_the_healthy_pairs_that_the_filters_match_as_not_listed(
    serve: Servers,
) -> None:
    # Prepare: c1 has one healthy pair (customers), c2 one (accounts), c3 none
    server = fleet(serve)
    # Act
    acme = server.get("/?company=Acme").text
    cobalt = server.get("/?company=c3").text
    invoices = server.get("/?data_type=invoices").text
    # Check
    assert "1 healthy pair not listed" in acme
    assert "not listed" not in cobalt
    assert "not listed" not in invoices


def summary_rows(page: str) -> list[str]:
    """The text of each folded row of a company's pairs of one cause."""
    rows = re.findall(r'<tr class="summary">.*?<span class="more">show</span>(.*?)</label>', page)
    return [" ".join(re.sub(r"<[^>]+>", "", row).split()) for row in rows]


def test_should_say_healthy_in_the_folded_row_of_a_companys_healthy_pairs(
    serve: Servers,
) -> None:
    # Prepare: three healthy pairs of one company through a Linked connection
    fine = company(
        "h1", pair("bills"), pair("invoices"), pair("payments"), name="Acme Pharmacy GmbH",
        connections=(ConnectionState("k1", "Xero", "Accounting", "Linked"),),
    )  # fmt: skip
    server = serve(fine)
    # Act
    rows = summary_rows(server.get("/?all=1").text)
    # Check
    assert rows == ["Acme Pharmacy GmbH: healthy, 3 data types"]


def test_should_count_one_company_and_one_pair_in_the_singular(serve: Servers) -> None:
    # Prepare: one company, one stale pair; c1's connection Deauthorized
    alone = company(
        "c1", pair("invoices", age=5 * HOUR), name="Acme Ltd",
        connections=(ConnectionState("k1", "Xero", "Accounting", "Deauthorized"),),
    )  # fmt: skip
    server = serve(alone)
    # Act
    page = server.get("/").text
    everything = server.get("/?all=1").text
    stale = server.get("/?status=stale").text
    relink = server.get("/?connection=Deauthorized").text
    # Check
    assert "1 company monitored, 1 polled successfully in the last cycle; 1 company x data " \
        "type pair." in page  # fmt: skip
    assert "Showing 1 of 1 pair that needs attention." in page
    assert "Showing 1 of 1 pair." in everything
    assert "Showing 1 of 1 matching pair." in stale
    assert "Showing 1 of 1 company with a connection Deauthorized," in relink


def test_should_show_the_last_successful_sync_in_utc_and_how_long_ago_as_time_passes(
    serve: Servers,
) -> None:
    # Prepare
    server = fleet(serve)
    # Act
    before = server.rows("/?company=c1&data_type=invoices")[0]
    server.clock.advance(HOUR)
    after = server.rows("/?company=c1&data_type=invoices")[0]
    # Check
    assert before["last_sync_cell"] == "2026-11-23 07:00 UTC (5 h ago)"
    assert before["ages_cell"] == "5 h / 2 h (2.5\u00d7)"
    assert after["last_sync_cell"] == "2026-11-23 07:00 UTC (6 h ago)"
    assert after["ages_cell"] == "6 h / 2 h (3.0\u00d7)"


def test_should_show_why_the_latest_sync_failed_only_while_it_is_the_latest(
    serve: Servers,
) -> None:
    # Prepare: c4's detail is of an older sync than its latest
    old = {"invoices": SyncDetail("older", "FetchError", error_message="Old failure")}
    newer = company("c4", pair("invoices", "FetchError", sync_id="newer"), syncs=old)
    server = fleet(serve)
    other = serve(newer)
    # Act
    rows = {(r["company-id"], r["data-type"]): r for r in server.rows("/")}
    stale_detail = other.rows("/")[0]
    # Check
    assert rows["c1", "bills"]["latest_sync_cell"] == "Token expired"
    assert rows["c2", "invoices"]["latest_sync_cell"] == "Xero answered 500"
    assert rows["c3", "bills"]["latest_sync_cell"] == "paused until 2026-11-23 13:00 UTC (in 1 h)"
    assert rows["c2", "items"]["latest_sync_cell"] == "requested 2026-11-23 05:00 UTC (7 h ago)"
    assert stale_detail["latest_sync_cell"] == ""


def test_should_count_a_queued_sync_as_stuck_once_it_waited_longer_than_stuck_after(
    serve: Servers,
) -> None:
    # Prepare
    server = fleet(serve)
    # Act
    before = pairs_of(server.rows("/?status=stuck"))
    server.clock.advance(STUCK_AFTER)
    after = pairs_of(server.rows("/?status=stuck"))
    # Check
    assert before == [("c2", "items")]
    assert after == [("c2", "accounts"), ("c2", "items")]  # the same age: by data type


def test_should_call_a_sync_stuck_after_just_the_time_the_alert_waits(serve: Servers) -> None:
    # Prepare: the alert's threshold as the committed rules say it; bills requested that
    # long ago, items a minute longer
    (rule,) = [r for r in alert_rules(RULES) if r["alert"] == "CodatDataTypeSyncStuck"]
    found = re.search(r"_requested_timestamp_seconds\{[^}]*\} > (\d+)\n", rule["expr"])
    assert found, rule["expr"]
    threshold = float(found[1])
    requested = {"bills": START - threshold, "items": START - threshold - 60}
    waiting = company(
        "c1",
        *(pair(data_type, "Queued") for data_type in requested),
        syncs={t: SyncDetail(f"s-{t}", "Queued", requested=r) for t, r in requested.items()},
    )
    server = serve(waiting)
    # Act
    page = server.get("/").text
    stuck = pairs_of(server.rows("/?status=stuck"))
    # Check
    assert threshold == 6 * HOUR
    assert stuck == [("c1", "items")]
    assert "queued or running for more than 6 h since requested" in page


def test_should_call_a_failed_sync_failing_not_stuck_however_long_ago_it_was_requested(
    serve: Servers,
) -> None:
    # Prepare: invoices' latest sync failed; it was requested longer than STUCK_AFTER ago
    requested = START - STUCK_AFTER - HOUR
    failed = company(
        "c1",
        pair("invoices", "FetchError"),
        syncs={"invoices": SyncDetail("s-invoices", "FetchError", requested=requested,
                                      error_message="Xero answered 500")},
    )  # fmt: skip
    server = serve(failed)
    # Act
    page = server.get("/").text
    rows = server.rows("/")
    stuck = pairs_of(server.rows("/?status=stuck"))
    # Check
    assert [(row["data-type"], row["states"]) for row in rows] == [("invoices", "failing")]
    assert stuck == []
    assert chip(page, "stuck") == 0


def test_should_list_a_paused_pair_until_its_pause_ends(serve: Servers) -> None:
    # Prepare
    server = fleet(serve, freshness=FreshnessConfig(default_max_age=2 * HOUR,
                                                     max_age={"bills": 6 * HOUR}))  # fmt: skip
    # Act
    during = pairs_of(server.rows("/?company=c3"))
    server.clock.advance(HOUR + 1)
    after = pairs_of(server.rows("/?company=c3"))
    # Check
    assert during == [("c3", "bills")]
    assert after == []


def test_should_drop_an_ended_pause_from_the_page_and_the_json_as_metrics_does(
    serve: Servers,
) -> None:
    # Prepare: c3's bills are paused until START + 1 h; a poll after that keeps the pull
    # operation read before (its sync is still the latest), "Paused until" and all
    server = fleet(serve)
    server.clock.advance(HOUR + 1)
    polled = replace(server.snapshot, last_poll=server.clock.time())
    server.store.publish(Exposition(polled, server.freshness, 300.0))
    # Act
    row = server.rows("/?company=c3&all=1")[0]
    entry = server.api("?company=c3&all=1")["pairs"][0]
    metrics = server.get("/metrics").text
    # Check
    assert f"{PAUSED_UNTIL.name}{{" not in metrics
    assert (row["data-type"], row["states"], row["latest_sync_cell"]) == ("bills", "healthy", "")
    assert (entry["states"], entry["paused_until"], entry["status_description"]) == (
        ["healthy"], None, None,
    )  # fmt: skip


def test_should_show_each_pairs_connection_and_the_companys_poll_health(
    serve: Servers,
) -> None:
    # Prepare: a banking data type is served by the banking connection
    down = company("c5", pair("invoices", age=3 * HOUR), pair("banking-accounts", age=3 * HOUR),
                   name="Down Ltd", up=False, connections=BOTH_CONNECTIONS)  # fmt: skip
    server = serve(down)
    # Act
    rows = {r["data-type"]: r for r in server.rows("/")}
    page = server.get("/").text
    # Check
    assert rows["invoices"]["connection_cell"] == "Xero: Linked"
    assert rows["banking-accounts"]["connection_cell"] == "Plaid: Deauthorized"
    assert rows["invoices"]["poll_cell"] == "failing; last ok 2026-11-23 07:00 UTC (5 h ago)"
    assert "Companies whose latest poll failed (1)" in page
    assert "1 company monitored, 0 polled successfully" in page


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=AuthError", [("c1", "bills")]),
        ("status=authError", [("c1", "bills")]),
        ("status=FetchError", [("c2", "invoices")]),
        ("status=NeverSynced,paused", [("c3", "bills"), ("c2", "payments")]),
        ("status=NeverSynced&status=paused", [("c3", "bills"), ("c2", "payments")]),
        ("status=in_progress", [("c2", "accounts"), ("c2", "items")]),
        ("status=healthy", [("c1", "customers"), ("c2", "accounts")]),
        ("company=c2", [("c2", "invoices"), ("c2", "items"), ("c2", "payments")]),
        ("company=acme", [("c1", "invoices"), ("c1", "bills")]),
        ("company=Bolt,cobalt", [("c2", "invoices"), ("c3", "bills"), ("c2", "items"),
                                 ("c2", "payments")]),
        ("data_type=Invoices", [("c1", "invoices"), ("c2", "invoices")]),
        ("data_type=bills&company=c3", [("c3", "bills")]),
        ("status=stale&company=c2", [("c2", "invoices")]),
        ("company=c2&all=1", [("c2", "invoices"), ("c2", "accounts"), ("c2", "items"),
                              ("c2", "payments")]),
        ("data_type=nosuch", []),
        ("connection=Deauthorized", [("c1", "invoices"), ("c1", "bills")]),
        ("connection=deauthorized&status=AuthError", [("c1", "bills")]),
        ("platform=xero&all=1", [("c1", "invoices"), ("c1", "bills"), ("c1", "customers")]),
        ("connection=Linked", []),
        ("platform=Sage", []),
        ("utm_source=mail", ON_THE_PAGE),
    ],
)  # fmt: skip
def test_should_narrow_the_table_by_status_company_and_data_type(
    serve: Servers, query: str, expected: list[tuple[str, str]]
) -> None:
    # Prepare
    server = fleet(serve)
    # Act
    rows = server.rows(f"/?{query}")
    # Check
    assert pairs_of(rows) == expected


def test_should_keep_the_filters_in_the_form_so_that_a_get_without_javascript_repeats_them(
    serve: Servers,
) -> None:
    # Prepare
    server = fleet(serve)
    # Act
    page = server.get(
        "/?status=stale&company=Acme&data_type=invoices&connection=Deauthorized&platform=Xero&all=1"
    ).text
    # Check
    assert '<form method="get" action="/">' in page
    assert '<option value="stale" selected>' in page
    assert 'name="company" placeholder="id or part of the name" value="Acme"' in page
    assert 'value="invoices"' in page
    assert '<option value="Deauthorized" selected>Deauthorized</option>' in page
    assert 'name="platform" list="platforms" placeholder="any" value="Xero"' in page
    assert '<datalist id="platforms"><option value="Xero"></option></datalist>' in page
    assert 'name="all" value="1" checked' in page
    assert pairs_of(table_rows(page)) == [("c1", "invoices")]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("status=Bogus", "status: unknown value &#x27;Bogus&#x27;; one of AuthError, failing"),
        ("all=maybe", "all: &#x27;maybe&#x27; is neither 1 nor 0"),
        ("connection=Revoked", "connection: unknown value &#x27;Revoked&#x27;; one of "
         "PendingAuth, Linked, Unlinked, Deauthorized, Unknown"),
    ],
)  # fmt: skip
def test_should_answer_400_with_the_form_and_why_for_a_filter_that_means_nothing(
    serve: Servers, query: str, message: str
) -> None:
    # Prepare
    server = fleet(serve)
    # Act
    response = server.get(f"/?{query}")
    # Check
    assert response.status_code == 400
    assert f"Filter not applied: {message}" in response.text
    assert '<form method="get" action="/">' in response.text
    assert table_rows(response.text) == []


def test_should_open_the_alerts_status_link_filtered_to_the_alerts_company(
    serve: Servers,
) -> None:
    # Prepare: the link of CodatCompanyAuthError, as Alertmanager renders it for c1
    rule = next(r for r in alert_rules() if r["alert"] == "CodatCompanyAuthError")
    link = rule["annotations"]["status_page"]
    path = "/" + link.split("/", 3)[3].replace("{{ $labels.company_id | urlquery }}", quote("c1"))
    server = fleet(serve)
    # Act
    rows = server.rows(path)
    # Check
    assert RULES.exists() and path == "/?company=c1"
    assert pairs_of(rows) == [("c1", "invoices"), ("c1", "bills")]


ELSEWHERE = "d1568dde-adf6-11ed-afa1-0242ac120002"
"""A company id that shard 2 of 3 polls (exporter/config/sharding.py pins it)."""


def test_should_name_the_shard_and_which_shard_polls_a_company_asked_for_that_it_lacks(
    serve: Servers,
) -> None:
    # Prepare: shard 0 of 3; an alert's link for a company that shard 2 polls
    server = fleet(serve, shard=Shard(0, 3))
    # Act
    page = server.get(f"/?company={ELSEWHERE}").text
    api = server.api(f"?company={ELSEWHERE}")
    here = server.get("/?company=c1").text
    # Check
    assert "Shard 0 of 3: 3 companies monitored" in page
    assert "this company is monitored by shard 2 of 3" in page
    assert api["summary"]["shard"] == {"index": 0, "count": 3}
    assert api["elsewhere"] == [{"company": ELSEWHERE, "shard": 2}]
    assert "Shard 0 of 3" in here and "monitored by shard" not in here


def test_should_say_nothing_of_shards_when_not_sharded(serve: Servers) -> None:
    # Prepare
    server = fleet(serve)
    # Act
    page = server.get(f"/?company={ELSEWHERE}").text
    api = server.api(f"?company={ELSEWHERE}")
    # Check
    assert "shard" not in page.lower()
    assert api["summary"]["shard"] is None and api["elsewhere"] == []


def companies_to_relink(server: StatusServer, path: str) -> list[str]:
    response = server.get(path)
    assert response.status_code == 200, response.text
    return [row["company-id"] for row in relink_rows(response.text)]


def test_should_list_every_company_with_a_deauthorized_connection_even_if_its_pairs_are_healthy(
    serve: Servers,
) -> None:
    # Prepare: c1 Acme has pairs that need attention; c6 Dormant and c7 Quill have none yet
    server = relink_fleet(serve)
    # Act
    page = server.get("/?connection=Deauthorized").text
    listed = relink_rows(page)
    # Check
    assert "<h2>Connections to relink (3)</h2>" in page
    assert [row["company-id"] for row in listed] == ["c1", "c6", "c7"]
    assert [row["company_cell"] for row in listed] == ["Acme Ltd c1", "Dormant Ltd c6", "Quill c7"]
    assert listed[1]["connections_cell"] == "Deauthorized Xero (Accounting) k6"
    assert listed[2]["connections_cell"] == (
        "Deauthorized QuickBooks Online (Accounting) k7 Linked Plaid (Banking) k8"
    )
    assert listed[1]["company_link"] == "/?company=c6"
    assert pairs_of(table_rows(page)) == [("c1", "invoices"), ("c1", "bills")]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("connection=Deauthorized&platform=Xero", ["c1", "c6"]),
        ("connection=deauthorized&platform=quickbooks%20online", ["c7"]),
        ("connection=Deauthorized&platform=QuickBooks+Online,Xero", ["c1", "c6", "c7"]),
        ("connection=Deauthorized&platform=Plaid", []),  # Quill's Plaid is Linked
        ("connection=Linked", ["c7", "c8"]),
        ("connection=Linked&platform=Xero", ["c8"]),
        ("connection=Unlinked,PendingAuth", []),
        ("platform=Xero", ["c1", "c6"]),  # Deauthorized when no connection status is asked
        ("company=c6", ["c6"]),
        ("company=c8", []),
        ("connection=Deauthorized&company=Quill", ["c7"]),
        ("connection=Deauthorized&status=stale", ["c1", "c6", "c7"]),
    ],
)
def test_should_narrow_the_companies_to_relink_by_connection_status_platform_and_company(
    serve: Servers, query: str, expected: list[str]
) -> None:
    # Prepare
    server = relink_fleet(serve)
    # Act
    listed = companies_to_relink(server, f"/?{query}")
    # Check
    assert listed == expected


def test_should_open_the_preset_alerts_link_on_the_companies_to_relink_on_its_platform(
    serve: Servers,
) -> None:
    # Prepare: CodatConnectionsDeauthorized's link as Alertmanager renders it for the
    # QuickBooks Online alert; Quill's pairs are all healthy, none in AuthError yet
    rule = next(
        r for r in alert_rules(PRESET_RULES) if r["alert"] == "CodatConnectionsDeauthorized"
    )
    link = rule["annotations"]["status_page"]
    template = "{{ $labels.platform | urlquery }}"
    path = "/" + link.split("/", 3)[3].replace(template, quote_plus("QuickBooks Online"))
    server = relink_fleet(serve)
    # Act
    page = server.get(path).text
    # Check
    assert path == "/?connection=Deauthorized&platform=QuickBooks+Online"
    assert [row["company-id"] for row in relink_rows(page)] == ["c7"]
    assert "1 company with a connection Deauthorized on QuickBooks Online" in page
    assert table_rows(page) == []
    assert pairs_of(table_rows(server.get("/?status=AuthError").text)) == [("c1", "bills")]


def test_should_show_the_connection_alerts_company_its_connections_though_its_pairs_are_healthy(
    serve: Servers,
) -> None:
    # Prepare: the default rules' CodatConnectionDeauthorized links to the company, as
    # Alertmanager renders it for c6
    rule = next(r for r in alert_rules(RULES) if r["alert"] == "CodatConnectionDeauthorized")
    link = rule["annotations"]["status_page"]
    path = "/" + link.split("/", 3)[3].replace("{{ $labels.company_id | urlquery }}", "c6")
    server = relink_fleet(serve)
    # Act
    page = server.get(path).text
    # Check
    assert path == "/?company=c6"
    assert [row["connections_cell"] for row in relink_rows(page)] == [
        "Deauthorized Xero (Accounting) k6"
    ]
    assert table_rows(page) == []


def test_should_count_the_companies_to_relink_on_the_unfiltered_page_and_link_to_them(
    serve: Servers,
) -> None:
    # Prepare
    server = relink_fleet(serve)
    none = serve(company("c2", pair("invoices", age=3 * HOUR)))
    # Act
    page = server.get("/").text
    # Check
    assert (
        '<a href="/?next_step=relink%2Clink">3 companies must link or relink a connection</a>'
        in page
    )
    assert relink_rows(page) == []  # the list itself only when asked for
    stale = server.get("/?status=stale").text
    assert 'href="/?status=stale&amp;next_step=relink%2Clink"' in stale
    assert "must link or relink" not in none.get("/").text


def test_should_list_every_company_whose_next_step_is_to_link_or_relink(
    serve: Servers,
) -> None:
    # Prepare: besides c1, c6 and c7 (Deauthorized), c9's invoices ended in AuthError
    # through its Linked connection, and c10 never finished linking (PendingAuth)
    linked = ConnectionState("k10", "Sage", "Accounting", "Linked")
    rejected = company(
        "c9", pair("invoices", "AuthError", age=HOUR), name="Rejected", connections=(linked,)
    )
    pending = company(
        "c10", pair("bills", "NeverSynced", age=None), name="Pending",
        connections=(ConnectionState("k11", "Xero", "Accounting", "PendingAuth"),),
    )  # fmt: skip
    server = relink_fleet(serve, extra=(rejected, pending))
    # Act
    page = server.get("/").text
    listed = server.get("/?next_step=relink,link").text
    api = server.api("?next_step=relink,link")
    only_link = server.api("?next_step=link")
    # Check
    assert "5 companies must link or relink a connection" in page
    assert [row["company-id"] for row in relink_rows(listed)] == ["c1", "c6", "c10", "c7", "c9"]
    steps = {(p["company_id"], p["data_type"]): p["next_step"] for p in api["pairs"]}
    assert set(steps.values()) == {"relink", "link"}
    assert {company for company, _ in steps} == {"c1", "c6", "c7", "c9", "c10"}
    assert [c["company_id"] for c in api["companies"]] == ["c1", "c6", "c10", "c7", "c9"]
    assert steps[("c10", "bills")] == "link" and steps[("c9", "invoices")] == "relink"
    assert [(p["company_id"], p["data_type"]) for p in only_link["pairs"]] == [("c10", "bills")]
    assert server.get("/?next_step=bogus").status_code == 400
    assert '<option value="link" selected>' in server.get("/?next_step=link").text


def test_should_list_only_the_pairs_that_a_connection_of_the_asked_status_serves(
    serve: Servers,
) -> None:
    # Prepare: the Xero connection (Accounting) is Linked, the Plaid one (Banking) not
    mixed = company("c5", pair("invoices", age=3 * HOUR), pair("banking-accounts", age=3 * HOUR),
                    connections=BOTH_CONNECTIONS)  # fmt: skip
    server = serve(mixed)
    # Act
    deauthorized = server.rows("/?connection=Deauthorized")
    linked = server.rows("/?connection=Linked")
    on_plaid = server.rows("/?platform=plaid")
    # Check
    assert pairs_of(deauthorized) == pairs_of(on_plaid) == [("c5", "banking-accounts")]
    assert pairs_of(linked) == [("c5", "invoices")]


HOSTILE_NAME = "<script>alert(1)</script>"
HOSTILE_MESSAGE = '<img src=x onerror="alert(2)"> & "quoted"'


def test_should_escape_a_company_name_an_error_message_and_a_filter_holding_html(
    serve: Servers,
) -> None:
    # Prepare
    detail = {"invoices": SyncDetail("s-invoices", "FetchError", error_message=HOSTILE_MESSAGE)}
    hostile = company('c"><i>x', pair("invoices", "FetchError"), name=HOSTILE_NAME, syncs=detail)
    server = serve(hostile)
    # Act
    page = server.get("/?company=" + quote('"><script>alert(3)</script>')).text
    listed = server.get("/").text
    # Check
    for body in (page, listed):
        assert "<script" not in body
        assert "<img" not in body and "<i>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in listed
    assert "&lt;img src=x onerror=&quot;alert(2)&quot;&gt; &amp; &quot;quoted&quot;" in listed
    assert 'data-company-id="c&quot;&gt;&lt;i&gt;x"' in listed
    assert 'value="&quot;&gt;&lt;script&gt;alert(3)&lt;/script&gt;"' in page
    assert table_rows(listed)[0]["company_cell"] == f'{HOSTILE_NAME} c"><i>x'


HOSTILE_PLATFORM = """<script>alert(4)</script>"'&"""


def test_should_escape_a_platform_and_a_connection_id_holding_html_and_quotes(
    serve: Servers,
) -> None:
    # Prepare
    hostile = ConnectionState('k"><b>x', HOSTILE_PLATFORM, "<i>Accounting", "Deauthorized")
    server = serve(company("c1", pair("invoices"), name=HOSTILE_NAME, connections=(hostile,)))
    # Act
    page = server.get("/?connection=Deauthorized&platform=" + quote_plus(HOSTILE_PLATFORM)).text
    listed = server.get("/").text
    api = server.api("?platform=" + quote_plus(HOSTILE_PLATFORM))
    # Check
    for body in (page, listed):
        assert "<script" not in body and "<b>x" not in body and "<i>" not in body
    escaped = "&lt;script&gt;alert(4)&lt;/script&gt;&quot;&#x27;&amp;"
    assert f'name="platform" list="platforms" placeholder="any" value="{escaped}"' in page
    assert f'<option value="{escaped}"></option>' in listed
    assert f"{escaped} (&lt;i&gt;Accounting) <small>k&quot;&gt;&lt;b&gt;x</small>" in page
    assert relink_rows(page)[0]["connections_cell"] == (
        f'Deauthorized {HOSTILE_PLATFORM} (<i>Accounting) k"><b>x'
    )
    assert [c["connections"][0]["platform"] for c in api["companies"]] == [HOSTILE_PLATFORM]


def test_should_forbid_scripts_and_load_nothing_from_elsewhere(serve: Servers) -> None:
    # Prepare
    server = fleet(serve)
    # Act
    response = server.get("/")
    # Check
    policy = response.headers["Content-Security-Policy"]
    assert policy.startswith("default-src 'none'; style-src 'sha256-")
    assert "script-src" not in policy and "unsafe-inline" not in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert re.search(r"<script|<link|<img|<iframe|src=|https?://", response.text) is None


def test_should_render_at_most_row_limit_rows_and_say_where_to_read_them_all(
    serve: Servers,
) -> None:
    # Prepare: 1,125 stale pairs
    types = [f"type{n:02d}" for n in range(25)]
    companies = [company(f"c{i:02d}", *(pair(t, age=3 * HOUR) for t in types)) for i in range(45)]
    server = serve(*companies)
    # Act
    page = server.get("/").text
    api = server.api()
    # Check
    assert len(table_rows(page)) == ROW_LIMIT == 1000
    assert ("Showing 1,000 of 1,125 pairs that need attention; narrow with the filters, or "
            "read all 1,125 from /api/v1/status.") in page  # fmt: skip
    assert len(api["pairs"]) == api["summary"]["matching"] == 1125


def test_should_head_the_page_with_the_last_cycle_the_quota_and_discovery(
    serve: Servers,
) -> None:
    # Prepare
    server = fleet(serve)
    configured = fleet(serve)
    server.store.note(lambda facts: Facts(
        quota_remaining=20939, quota_limit=21000, quota_reset=START + 12 * HOUR,
        discovery=DiscoveryFacts(last_success=START - 600, failures=2),
    ))  # fmt: skip
    # Act
    page, listed = server.get("/").text, configured.get("/").text
    # Check
    assert "Last poll cycle ended 2026-11-23 11:59 UTC (20 s ago) and took 12.5 s." in page
    assert ("Codat&#x27;s daily quota: 20,939 of 21,000 requests left, resets 2026-11-24 "
            "00:00 UTC (in 12 h).") in page  # fmt: skip
    assert ("Company discovery (GET /companies): last succeeded 2026-11-23 11:50 UTC "
            "(10 min ago), 2 failed since the exporter started.") in page  # fmt: skip
    assert "Companies: as listed in the configuration (no discovery)." in listed
    assert "Codat&#x27;s daily quota: not known yet" in listed


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"unready_reason": "company discovery has not succeeded yet (HTTP 503)"},
         "company discovery has not succeeded yet (HTTP 503)"),
        ({"last_poll": None, "poll_duration": None}, "no company has been polled yet"),
    ],
)  # fmt: skip
def test_should_say_why_it_is_not_ready(
    serve: Servers, fields: dict[str, object], reason: str
) -> None:
    # Prepare: the first cycle has published nothing yet, or discovery never succeeded
    companies = [] if fields.get("unready_reason") is None else [company("c1", pair("bills"))]
    server = serve(*companies, snapshot_fields=fields)
    # Act
    page = server.get("/")
    # Check
    assert page.status_code == 200
    assert f'<p class="notready">Not ready: {reason}.</p>' in page.text
    assert server.get("/-/ready").status_code == 503


def test_should_answer_head_without_a_body_and_refuse_post_with_405(serve: Servers) -> None:
    # Prepare
    server = fleet(serve)
    # Act
    head = requests.head(server.server.url + "/", timeout=5)
    posts = [requests.post(server.server.url + p, timeout=5) for p in ("/", "/api/v1/status")]
    # Check
    assert head.status_code == 200 and head.content == b""
    assert [(p.status_code, p.headers["Allow"]) for p in posts] == [(405, "GET, HEAD")] * 2


def test_should_ask_for_the_password_over_tls_on_the_page_and_its_json(
    serve: Servers, tmp_path: Path, pki: Pki
) -> None:
    # Prepare
    config = load_web_config(web_config_file(tmp_path, pki))
    server = fleet(serve, web_config=config)
    # Act
    refused = [server.get(p, verify=str(pki.ca)) for p in ("/", "/api/v1/status?all=1")]
    served = [server.get(p, verify=str(pki.ca), auth=(USER, PASSWORD))
              for p in ("/", "/api/v1/status?all=1")]  # fmt: skip
    # Check
    assert server.server.url.startswith("https://")
    assert [r.status_code for r in refused] == [401, 401]
    assert "c1" not in refused[0].text + refused[1].text
    assert [r.status_code for r in served] == [200, 200]
    assert "http://" not in served[0].text
