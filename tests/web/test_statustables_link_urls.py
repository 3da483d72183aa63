"""Relink links (issue 18, part 1): Codat's ``linkUrl`` of a connection to (re)link, shown
on the status page and in its JSON with ``status_page.show_link_urls`` only. Whoever holds
it can authorize a data source for the company, so it is a capability like a secret: never
in metrics, labels, logs, error messages, the state file, nor on the page when the option
is off; HTML-escaped on it. Real HTTP against the simulated Codat, injected clock."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.config.sections import StatusPageConfig
from exporter.core.contract import CONNECTIONS, DATA_STATUS
from exporter.core.snapshot import ConnectionState
from exporter.poll.statefile import STATE, load, unpack
from exporter.simulator.fleet import Fleet
from tests.harness import Harness
from tests.statusfleet import HOUR, Servers, company, pair

CANARY = "LINKCANARY-7c1e"
SHOWN = {"status_page": {"show_link_urls": True}}


@pytest.fixture
def serve() -> Iterator[Servers]:
    servers = Servers()
    yield servers
    servers.close()


def deauthorized(fleet: Fleet) -> str:
    """The fleet's company whose only connection is Deauthorized (profile auth_error)."""
    return next(fleet.ids_by_profile("auth_error"))


def with_link(fleet: Fleet, company_id: str, link: str) -> dict[str, Any]:
    """Serve the company's connections with ``link`` as its accounting one's linkUrl."""
    connections = fleet.connections(company_id)
    connections[0]["linkUrl"] = link
    fleet.override_connections(company_id, connections)
    return connections[0]


def connections_of(api: dict[str, Any], company_id: str) -> list[dict[str, Any]]:
    (company,) = [c for c in api["companies"] if c["company_id"] == company_id]
    connections: list[dict[str, Any]] = company["connections"]
    return connections


def test_should_show_the_link_of_a_deauthorized_connection_when_asked(
    make_harness: Callable[..., Harness], fleet: Fleet
) -> None:
    # Prepare
    company_id = deauthorized(fleet)
    link = fleet.connections(company_id)[0]["linkUrl"]
    linked = [c["linkUrl"] for i in fleet.companies if i != company_id
              for c in fleet.connections(i) if c["status"] == "Linked"]  # fmt: skip
    harness = make_harness(**SHOWN)
    harness.poll()
    # Act
    page = harness.get("/").text
    relink = harness.get("/?connection=Deauthorized").text
    api = harness.get("/api/v1/status?connection=Deauthorized").json()
    everything = harness.get("/api/v1/status?all=1").text
    # Check: in the pairs' next step, in "Connections to relink" and in the JSON; never
    # the link of a connection that syncs
    assert f'<code class="link">{link}</code>' in page
    assert f'<code class="link">{link}</code>' in relink.split('id="connections"')[1]
    (connection,) = connections_of(api, company_id)
    assert (connection["status"], connection["link_url"]) == ("Deauthorized", link)
    assert linked and not [other for other in linked if other in page + everything]


def test_should_neither_keep_nor_show_any_link_by_default(
    make_harness: Callable[..., Harness], fleet: Fleet
) -> None:
    # Prepare
    company_id = deauthorized(fleet)
    harness = make_harness()
    harness.poll()
    # Act
    shown = "".join(
        harness.get(path).text
        for path in ("/", "/?connection=Deauthorized", "/?all=1", "/api/v1/status?all=1",
                     f"/api/v1/status?company={company_id}")
    )  # fmt: skip
    kept = [c.link_url for s in harness.store.current.snapshot.companies.values()
            for c in s.connections]  # fmt: skip
    # Check
    assert "link-api.codat.io" not in shown and 'class="link"' not in shown
    assert '"link_url":null' in shown
    assert kept and set(kept) == {""}


def test_should_keep_the_link_out_of_metrics_logs_errors_and_the_state_file(
    make_harness: Callable[..., Harness],
    fleet: Fleet,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Prepare: canary links, one on a connection page that fails its shape (no id), the
    # state file on, every log at DEBUG
    company_id = deauthorized(fleet)
    with_link(fleet, company_id, f"https://link.example/{CANARY}/start")
    broken = next(i for i in sorted(fleet.companies) if i != company_id)
    fleet.override_connections(broken, [{"linkUrl": f"https://link.example/{CANARY}/x"}])
    path = tmp_path / "state.json"
    harness = make_harness(state={"file": str(path)}, **SHOWN)
    caplog.set_level(logging.DEBUG)
    # Act
    first = harness.poll()
    harness.clock.advance(300)
    harness.poll()
    metrics = harness.get("/metrics").text
    page = harness.get("/").text
    _, sections = unpack(path.read_bytes(), harness.config.shard)
    state = sections[STATE]  # JSON lines; the other section is /metrics' text, gzipped
    reprs = repr(harness.store.current.snapshot)
    # Check: shown on the page, and nowhere else
    assert CANARY in page
    assert first.failed == 1 and "connection without an id" in caplog.text
    assert CANARY not in metrics
    assert CANARY not in caplog.text
    assert company_id.encode() in state
    assert CANARY.encode() not in state and b"link.example" not in state
    assert CANARY not in reprs


def test_should_escape_a_link_and_drop_one_that_is_no_web_address(
    make_harness: Callable[..., Harness], fleet: Fleet
) -> None:
    # Prepare: a link that would close the attribute and open a script; another company's
    # connection with a javascript: link
    company_id = deauthorized(fleet)
    hostile = 'https://link.example/"><script>alert(1)</script>'
    with_link(fleet, company_id, hostile)
    other = next(fleet.ids_by_profile("first_failed"))  # its connection is PendingAuth
    with_link(fleet, other, "javascript:alert(1)")
    harness = make_harness(**SHOWN)
    harness.poll()
    # Act
    page = harness.get("/?connection=Deauthorized,PendingAuth").text
    api = harness.get("/api/v1/status?connection=Deauthorized,PendingAuth").json()
    # Check
    assert "<script>" not in page
    assert "https://link.example/&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert connections_of(api, company_id)[0]["link_url"] == hostile
    assert "javascript:" not in page
    assert [c["link_url"] for c in connections_of(api, other) if c["status"] == "PendingAuth"] == [
        None
    ]


def test_should_read_the_links_again_after_a_restart_for_companies_to_relink_only(
    make_harness: Callable[..., Harness], fleet: Fleet, tmp_path: Path
) -> None:
    # Prepare: an exporter showing links polls, saves its state and stops
    path = tmp_path / "state.json"
    company_id = deauthorized(fleet)
    link = fleet.connections(company_id)[0]["linkUrl"]
    before = make_harness(state={"file": str(path)}, **SHOWN)
    before.poll()
    before.close()
    after = make_harness(state={"file": str(path)}, **SHOWN)
    saved = load(path, after.config.shard)
    assert saved is not None
    after.poller.restore(saved)
    codat = after.codat
    asked = {i: codat.paths[f"/companies/{i}/connections"] for i in fleet.companies}
    # Act
    restored = after.get(f"/?company={company_id}").text
    after.poll()
    page = after.get(f"/?company={company_id}").text
    # Check: the file has no link; the first cycle reads again the connections of the
    # companies to (re)link (Deauthorized, PendingAuth), and only theirs
    again = {i for i in fleet.companies if codat.paths[f"/companies/{i}/connections"] > asked[i]}
    to_link = {*fleet.ids_by_profile("auth_error"), *fleet.ids_by_profile("first_failed")}
    assert link.encode() not in path.read_bytes()
    assert link not in restored
    assert again == to_link
    assert f'<code class="link">{link}</code>' in page
    assert codat.requests[DATA_STATUS] >= len(fleet.companies) and codat.requests[CONNECTIONS]


def test_should_show_a_link_it_holds_only_with_the_option(serve: Servers) -> None:
    # Prepare: a snapshot holding a Deauthorized connection's link (as one read with the
    # option on), served with the option off and on
    link = f"https://link.example/{CANARY}/start"
    gone = ConnectionState("k1", "Xero", "Accounting", "Deauthorized", link_url=link)
    acme = company("c1", pair("bills", "AuthError", age=HOUR), connections=(gone,))
    off = serve(acme)
    on = serve(acme, page=StatusPageConfig(show_link_urls=True))
    # Act
    hidden = off.get("/").text + off.get("/?connection=Deauthorized").text + off.get(
        "/api/v1/status?company=c1").text  # fmt: skip
    shown = on.get("/").text + on.get("/api/v1/status?company=c1").text
    # Check
    assert CANARY not in hidden
    assert CANARY in shown
