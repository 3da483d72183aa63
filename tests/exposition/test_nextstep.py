"""Who must act on each pair (issue 18, part 1), and a platform on which many companies fail
at once (part 2), as the status page, its JSON and /metrics say them, read over real HTTP
from the exporter's server: a next step per pair derived from its status, its connection and
its latest sync's pull operation, a legend, a company's pairs of one cause in one row, the
incident banner and ``codat_platform_failing_companies``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace

import pytest

from exporter.config.sections import StatusPageConfig
from exporter.config.series import MetricsConfig
from exporter.core.families import FLEET_PRESET_DENYLIST, PLATFORM_FAILING
from exporter.core.snapshot import CompanyState, ConnectionState, RefreshMark, SyncDetail
from exporter.exposition.nextstep import STEPS
from exporter.exposition.render import Exposition
from tests.harness import START, parse_exposition
from tests.promtools import ROOT
from tests.statusfleet import FRESHNESS, HOUR, Servers, company, pair, snapshot, table_rows

XERO = ConnectionState("kx", "Xero", "Accounting", "Linked")
QBO = ConnectionState("kq", "QuickBooks Online", "Accounting", "Linked")
DESKTOP = ConnectionState("kd", "QuickBooks Desktop", "Accounting", "Linked", on_premise=True)
GONE = ConnectionState("kg", "Xero", "Accounting", "Deauthorized")
PENDING = ConnectionState("kp", "Xero", "Accounting", "PendingAuth")
WAITED = START - 7 * HOUR
"""When a sync was requested that has been queued for 7 hours: stuck (after 6)."""


def failing(company_id: str, status: str = "FetchError", **kwargs: object) -> CompanyState:
    """A company whose invoices' latest sync ended in ``status`` 3 hours after the last good."""
    return company(
        company_id, pair("invoices", status, age=3 * HOUR),
        syncs={"invoices": SyncDetail("s-invoices", status, error_message=f"{status} said")},
        **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip


def steps_fleet() -> tuple[CompanyState, ...]:
    """A company (or two) for each next step; QuickBooks Online fails for four companies."""
    relink = company(
        "r1", pair("bills", "AuthError", age=HOUR), pair("invoices", age=5 * HOUR),
        name="Relink Ltd", connections=(GONE,),
        syncs={"bills": SyncDetail("s-bills", "AuthError", error_message="Token expired")},
    )  # fmt: skip
    paused = company(
        "p1", pair("customers", "Initial", age=HOUR / 2), connections=(XERO,),
        syncs={"customers": SyncDetail("s-customers", "Initial", requested=START - 600,
                                       status_description="Paused until 2026-11-23T13:00:00Z",
                                       paused_until=START + HOUR)},
    )  # fmt: skip
    offline = company(
        "o1", pair("bills", "Queued"), connections=(DESKTOP,),
        syncs={"bills": SyncDetail("s-bills", "Queued", requested=WAITED)},
    )  # fmt: skip
    stuck = company(
        "c1", pair("items", "Queued"), connections=(XERO,),
        syncs={"items": SyncDetail("s-items", "Queued", requested=WAITED)},
    )  # fmt: skip
    running = company(
        "s1", pair("invoices", "Fetching", age=3 * HOUR), connections=(XERO,),
        syncs={"invoices": SyncDetail("s-invoices", "Fetching", requested=START - 600)},
    )  # fmt: skip
    retried = replace(
        failing("t1", connections=(XERO,)),
        refreshes={"invoices": RefreshMark(START - 600, 1, START + HOUR)},
    )
    pending = company("l1", pair("bills", "NeverSynced", age=None), connections=(PENDING,))
    return (
        relink, paused, offline, stuck, running, retried,
        failing("c2", "InternalError", connections=(XERO,)),
        failing("q1", connections=(XERO,)),
        company("n1", pair("payments", "NeverSynced", age=None), connections=(XERO,)),
        company("n2", pair("journals", "NotSupported", age=3 * HOUR), connections=(XERO,)),
        *(failing(f"i{n}", connections=(QBO,)) for n in (1, 2, 3)),
        # Moving from Xero to QuickBooks Online: both Linked; its latest sync's pull
        # operation says which one it ran on.
        company(
            "m1", pair("bills", "FetchError", age=3 * HOUR), connections=(XERO, QBO),
            syncs={"bills": SyncDetail("s-bills", "FetchError", connection_id="kq")},
        ),
        pending,
        failing("rl1", "RateLimitError"),  # no connection read: counts on no platform
    )  # fmt: skip


EXPECTED = {
    ("r1", "bills"): "relink",
    ("r1", "invoices"): "relink",  # stale, and nothing syncs through its connection
    ("l1", "bills"): "link",  # never linked: not a relink
    ("rl1", "invoices"): "rate_limited",  # the platform throttled Codat: more syncs add load
    ("p1", "customers"): "paused",
    ("o1", "bills"): "connector_offline",
    ("c1", "items"): "contact_codat",  # stuck on a cloud platform
    ("c2", "invoices"): "contact_codat",  # InternalError
    ("t1", "invoices"): "retrying",
    ("s1", "invoices"): "syncing",
    ("n1", "payments"): "check_settings",
    ("n2", "journals"): "check_settings",
    ("q1", "invoices"): "queue_sync",
    **{(f"i{n}", "invoices"): "platform_incident" for n in (1, 2, 3)},
    ("m1", "bills"): "platform_incident",
}
INCIDENT_AT_4 = StatusPageConfig(platform_incident_companies=4)


@pytest.fixture
def serve() -> Iterator[Servers]:
    servers = Servers()
    yield servers
    servers.close()


def test_should_tell_who_acts_on_each_pair_alike_on_the_page_and_in_json(serve: Servers) -> None:
    # Prepare
    server = serve(*steps_fleet(), page=INCIDENT_AT_4)
    # Act
    api = server.api()
    rows = table_rows(server.get("/").text)
    # Check
    by_pair = {(p["company_id"], p["data_type"]): p["next_step"] for p in api["pairs"]}
    texts = {step.code: step.text for step in STEPS}
    assert by_pair == EXPECTED
    assert {(r["company-id"], r["data-type"]): r["next-step"] for r in rows} == EXPECTED
    for row in rows:
        assert row["next_step_cell"].startswith(texts[row["next-step"]]), row


def test_should_leave_a_healthy_pair_without_a_next_step_unless_its_connection_is_gone(
    serve: Servers,
) -> None:
    # Prepare: both healthy; one through a deauthorized connection, where nothing will sync
    fine = company("h1", pair("invoices"), connections=(XERO,))
    cut = company("h2", pair("invoices"), connections=(GONE,))
    server = serve(fine, cut)
    # Act
    steps = {p["company_id"]: p["next_step"] for p in server.api("?all=1")["pairs"]}
    # Check
    assert steps == {"h1": None, "h2": "relink"}


def test_should_explain_every_next_step_in_the_legend_docs_and_runbook(serve: Servers) -> None:
    # Prepare
    server = serve(*steps_fleet())
    docs = (ROOT / "docs" / "status-page.md").read_text(encoding="utf-8")
    runbook = (ROOT / "docs" / "runbook.md").read_text(encoding="utf-8")
    # Act
    page = server.get("/").text
    legend = page.split('<h2 id="next-steps">', 1)[1].split("</dl>", 1)[0]
    # Check: its words, who acts and its code, in the order they are tried
    found = re.findall(r"<dt><span[^>]*>([^<]+)</span></dt><dd>Who acts: ([^.]+)\.", legend)
    assert found == [(step.text, step.who) for step in STEPS]
    for step in STEPS:
        assert f"({step.code})" in legend
        assert f"| `{step.code}` |" in docs, step.code
        assert re.search(rf"^### .+ \(`{step.code}`\)$", runbook, re.M), step.code


def test_should_call_a_platform_with_enough_failing_companies_an_incident(
    serve: Servers,
) -> None:
    # Prepare: four companies fail on QuickBooks Online, three on Xero
    at_4 = serve(*steps_fleet(), page=INCIDENT_AT_4)
    at_5 = serve(*steps_fleet(), page=StatusPageConfig(platform_incident_companies=5))
    # Act
    page, api = at_4.get("/").text, at_4.api()
    quiet, calm = at_5.get("/").text, at_5.api()
    # Check: a banner for QuickBooks Online only, linking to its failing pairs; "wait"
    banners = re.findall(r'<p class="incident" data-platform="([^"]+)">(.*?)</p>', page)
    assert [platform for platform, _ in banners] == ["QuickBooks Online"]
    assert "4 companies fail on it at once" in banners[0][1]
    assert 'href="/?status=failing&amp;platform=QuickBooks+Online"' in banners[0][1]
    assert api["summary"]["platform_incidents"] == {"QuickBooks Online": 4}
    # Check: five make an incident there: no banner, and a sync to queue instead
    assert 'class="incident"' not in quiet
    assert calm["summary"]["platform_incidents"] == {}
    assert {p["next_step"] for p in calm["pairs"] if p["company_id"] in {"i1", "m1"}} == {
        "queue_sync"
    }


def test_should_count_failing_companies_per_platform_by_the_pull_operation_s_connection(
    serve: Servers,
) -> None:
    # Prepare
    server = serve(*steps_fleet())
    # Act
    samples = parse_exposition(server.get("/metrics").text)
    # Check: m1 counts on QuickBooks Online, where its failed sync ran; the InternalError
    # counts (a new sync may fix it), AuthError and NotSupported do not; zeros included
    counts = {s.labels["platform"]: s.value for s in samples if s.name == PLATFORM_FAILING.name}
    assert counts == {"QuickBooks Desktop": 0, "QuickBooks Online": 4, "Xero": 3}


def test_should_export_failing_companies_per_platform_under_the_fleet_preset() -> None:
    # Prepare
    preset = MetricsConfig(denylist=FLEET_PRESET_DENYLIST)
    # Act
    text = Exposition(snapshot(*steps_fleet()), FRESHNESS, 300.0, preset).render(START).decode()
    # Check
    counts = {s.labels["platform"]: s.value for s in parse_exposition(text)
              if s.name == PLATFORM_FAILING.name}  # fmt: skip
    assert counts["QuickBooks Online"] == 4
    assert "codat_data_type_status{" not in text


def test_should_fold_a_company_s_pairs_of_one_cause_into_one_row_and_keep_them_all_in_json(
    serve: Servers,
) -> None:
    # Prepare: Relink Ltd's bills (AuthError) and invoices (stale), both through its
    # Deauthorized Xero connection; Bolt's two pairs fail for two different reasons
    bolt = company(
        "b1", pair("invoices", "FetchError", age=3 * HOUR), pair("bills", "MapError", age=3 * HOUR),
        name="Bolt", connections=(XERO,),
        syncs={"invoices": SyncDetail("s-invoices", "FetchError", error_message="Xero said 503"),
               "bills": SyncDetail("s-bills", "MapError", error_message="No such account")},
    )  # fmt: skip
    server = serve(steps_fleet()[0], bolt)
    # Act
    page = server.get("/").text
    api = server.api()
    # Check
    groups = re.findall(r'<tbody class="group" data-group="([^"]+)"', page)
    summary = re.search(r'<tr class="summary">.*?</tr>', page)
    assert groups == ["r1"]
    assert summary is not None
    text = re.sub(r"<[^>]+>", "", summary.group(0))
    assert "Relink Ltd: Xero deauthorized, 2 data types, customer must relink" in text
    assert sorted((p["company_id"], p["data_type"]) for p in api["pairs"]) == [
        ("b1", "bills"), ("b1", "invoices"), ("r1", "bills"), ("r1", "invoices"),
    ]  # fmt: skip
    assert len(table_rows(page)) == 4


def test_should_show_a_pause_once(serve: Servers) -> None:
    # Prepare: Codat's "Paused until <time>" is both the sync's description and its pause
    server = serve(steps_fleet()[1])
    # Act
    (row,) = table_rows(server.get("/").text)
    # Check
    text = " ".join(value for key, value in row.items() if key.endswith("_cell"))
    assert len(re.findall("paused until", text, re.I)) == 1
    assert row["latest_sync_cell"] == "paused until 2026-11-23 13:00 UTC (in 1 h)"


def test_should_say_wait_for_a_platforms_rate_limit_on_the_page_and_in_the_runbook(
    serve: Servers,
) -> None:
    # Prepare: the platform throttled Codat; queuing more syncs only adds to the load
    server = serve(failing("rl1", "RateLimitError", connections=(XERO,)))
    runbook = (ROOT / "docs" / "runbook.md").read_text(encoding="utf-8")
    # Act
    (row,) = table_rows(server.get("/").text)
    # Check
    queue_sync = runbook.split("(`queue_sync`)\n", 1)[1].split("\n#", 1)[0]
    assert row["next_step_cell"] == "platform rate limit: wait"
    assert "RateLimitError" not in queue_sync
    assert "platform rate limit: wait" in runbook.split("- `RateLimitError`:", 1)[1][:200]


def test_should_use_one_connection_for_a_pair_on_the_page_in_json_and_for_its_next_step(
    serve: Servers,
) -> None:
    # Prepare: a shop with Xero and a Plaid bank feed but no Commerce connection; its
    # commerce orders fail, its invoices are stale through Xero
    plaid = ConnectionState("kb", "Plaid", "Banking", "Deauthorized")
    shop = company(
        "sh1",
        pair("commerce-orders", "FetchError", age=3 * HOUR),
        pair("invoices", age=3 * HOUR),
        connections=(XERO, plaid),
    )
    server = serve(shop)
    # Act
    api = {p["data_type"]: p for p in server.api()["pairs"]}
    rows = {r["data-type"]: r for r in table_rows(server.get("/").text)}
    # Check: no Plaid for the orders, anywhere; nothing to relink for them
    orders, invoices = api["commerce-orders"], api["invoices"]
    assert (orders["connection_platform"], orders["connection_status"]) == (None, None)
    assert orders["next_step"] == "check_settings"
    assert rows["commerce-orders"]["connection_cell"] == "no Commerce connection"
    assert rows["commerce-orders"]["next_step_cell"] == "check its sync settings"
    assert (invoices["connection_platform"], invoices["next_step"]) == ("Xero", "queue_sync")
    assert rows["invoices"]["connection_cell"] == "Xero: Linked"
