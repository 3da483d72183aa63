"""On-premise connections (issue 18, part 1): the exporter reads Codat's
``GET /integrations/{platformKey}`` (``isOfflineConnector``) once a day per integration for
the whole fleet, marks the connections on such an integration, and tells a sync queued for
hours there as "on-premise connector offline". A failed read never fails a poll. Real HTTP
against the simulated Codat, injected clock."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable

import pytest

from exporter.codat.integrations import RETRY
from exporter.core.integrations import INTEGRATION
from exporter.demo import start_demo
from exporter.simulator.faults import INTEGRATIONS, Fault
from exporter.simulator.fleet import Fleet
from exporter.simulator.profiles import ON_PREMISE_PLATFORM, QUEUED
from tests.harness import FakeClock, Harness

DAY = 86400.0


def on_premise(harness: Harness) -> dict[str, bool]:
    """Per company, whether its accounting connection is marked on premises."""
    return {
        company_id: any(c.on_premise for c in company.connections)
        for company_id, company in harness.store.current.snapshot.companies.items()
    }


def reads(harness: Harness, key: str) -> int:
    return harness.codat.paths[INTEGRATION.format(platformKey=key)]


def test_should_mark_the_connections_of_an_integration_that_runs_on_the_customer_s_machine(
    make_harness: Callable[..., Harness], fleet: Fleet
) -> None:
    # Prepare: two companies on QuickBooks Desktop, the rest on Xero (and a bank feed)
    desktop = sorted(fleet.companies)[2:4]
    for company_id in desktop:
        fleet.companies[company_id].platform = ON_PREMISE_PLATFORM
    harness = make_harness()
    # Act
    result = harness.poll()
    api = harness.get("/api/v1/status?all=1").json()
    # Check: marked, in the JSON too; one read per integration for eight companies
    assert result.all_succeeded
    assert {c for c, marked in on_premise(harness).items() if marked} == set(desktop)
    flags = {(c["company_id"], k["platform"]): k["on_premise"]
             for c in api["companies"] for k in c["connections"]}  # fmt: skip
    assert {key for key, marked in flags.items() if marked} == {
        (c, "QuickBooks Desktop") for c in desktop
    }
    assert harness.codat.requests[INTEGRATION] == len({"gbol", "pqsw", "ugxp"} & {
        c["integrationKey"] for i in fleet.companies for c in fleet.connections(i)
    })  # fmt: skip


def test_should_read_each_integration_again_only_after_a_day(
    make_harness: Callable[..., Harness], fleet: Fleet
) -> None:
    # Prepare: connections read every 5 minutes
    harness = make_harness(connections={"interval": "5m"})
    harness.poll()
    first = reads(harness, "gbol")
    # Act
    for _ in range(12):  # an hour of cycles, each reading every company's connections
        harness.clock.advance(300)
        harness.poll()
    within = reads(harness, "gbol")
    harness.clock.advance(DAY)
    harness.poll()
    after = reads(harness, "gbol")
    # Check
    assert (first, within, after) == (1, 1, 2)


def test_should_take_an_integration_it_cannot_read_as_a_cloud_one_and_try_again_later(
    make_harness: Callable[..., Harness], fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: one company on QuickBooks Desktop; Codat refuses integration reads (400)
    desktop = sorted(fleet.companies)[0]
    fleet.companies[desktop].platform = ON_PREMISE_PLATFORM
    fleet.inject(INTEGRATIONS, Fault("status", status=400))
    harness = make_harness(connections={"interval": "5m"})
    caplog.set_level(logging.DEBUG)
    # Act: a failed read; reads refused again before RETRY; answered after it
    failed = harness.poll()
    marked_then = on_premise(harness)[desktop]
    fleet.clear_faults(INTEGRATIONS)
    harness.clock.advance(300)
    harness.poll()
    too_soon = (reads(harness, "pqsw"), on_premise(harness)[desktop])
    harness.clock.advance(RETRY)
    harness.poll()
    # Check: the polls succeed; one warning for it; read again only after RETRY, marked
    assert failed.all_succeeded and not marked_then
    assert too_soon == (1, False)
    assert (reads(harness, "pqsw"), on_premise(harness)[desktop]) == (2, True)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
              and r.getMessage().startswith("integrations: ")]  # fmt: skip
    assert len(warned) == 1, "one line for the cycle's failed reads, none when they fail again"
    said = " http_error); each is taken as a cloud one until read again; e.g. integration "
    assert said in warned[0]


def test_should_tell_the_demo_s_on_premise_company_that_its_connector_is_offline() -> None:
    # Prepare: the demo's fleet, whose on-premise company's bills sync is queued for hours
    logging.getLogger("exporter").setLevel(logging.CRITICAL)
    clock = FakeClock()
    with tempfile.TemporaryDirectory() as state_dir:
        simulator, config = start_demo(clock, state_dir)
        harness = Harness(config, clock, simulator)
        try:
            # Act
            harness.poll()
            pairs = harness.get("/api/v1/status").json()["pairs"]
            page = harness.get("/").text
        finally:
            harness.close()
            simulator.stop()
            logging.getLogger("exporter").setLevel(logging.NOTSET)
    # Check
    offline = [(p["company_name"], p["data_type"]) for p in pairs
               if p["next_step"] == "connector_offline"]  # fmt: skip
    (company,) = [c for c in simulator.fleet.companies.values() if c.profile == "on_premise"]
    assert offline == [(company.name, QUEUED)]
    assert "on-premise connector offline" in page
