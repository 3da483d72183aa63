"""A platform's outage pages once (issue 18, part 2), end to end: fifty simulated companies
on Xero fail at once, the exporter polls them over real HTTP, a real Prometheus scrapes
``codat_platform_failing_companies`` and evaluates the generated rules, and a real
Alertmanager with the example config holds back every Xero company's own alert while
``CodatPlatformSyncFailures`` is active; a company failing alone on QuickBooks Online still
pages. The rules are generated with ``for: 0s`` (a tailored monitoring/config.yml, as a
user would write one), so the test waits seconds, not the alerts' quarter of an hour.
Everything listens on loopback; the module is bounded by DEADLINE."""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import yaml

from exporter.core.families import PLATFORM_FAILING
from exporter.simulator.fleet import Fleet
from exporter.simulator.server import SimulatedCodat
from monitoring.generate import RULES_FILE
from monitoring.generate import main as generate
from tests.e2e.test_prometheus import _print_logs, _prometheus_config, _start_prometheus, _stop
from tests.harness import API_KEY, FakeClock, Harness, make_config
from tests.monitoring.test_alertmanager import Alertmanager, alertmanager
from tests.promtools import MONITORING_CONFIG, binary, load_yaml, logged_address

__all__ = ["alertmanager"]  # the fixture: a real Alertmanager with the example config

pytestmark = pytest.mark.prometheus

DEADLINE = 60.0
HOUR = 3600.0
XERO, QBO = "Xero", "QuickBooks Online"
AT_ONCE = ("CodatPlatformSyncFailures", "CodatDataTypeSyncFailing", "CodatDataTypeStale")
"""The alerts generated with ``for: 0s`` here."""


def failing_now(fleet: Fleet, company_id: str) -> bool:
    """Whether a data type of the company is in FetchError at the clock's time, as Codat
    says (the simulator's own answer, not the exporter's)."""
    body = fleet.data_status(company_id)
    return any(entry.get("currentStatus") == "FetchError" for entry in body.values())


@pytest.fixture(scope="module")
def outage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Harness, Fleet]]:
    """Sixty companies: eight healthy ones on QuickBooks Online, one of which fails alone
    (MapError); the rest on Xero, in an outage since 13 hours ago. Polled once."""
    logging.getLogger("exporter").setLevel(logging.CRITICAL)
    clock = FakeClock()
    fleet = Fleet.generate(clock, companies=60, seed=3)
    healthy = [c for c in fleet.companies.values() if c.profile == "healthy"]
    for company in healthy[:8]:
        company.platform = ("qhyg", QBO)
    alone = healthy[0].data_types["invoices"]
    alone.fail_since, alone.fail_status, alone.fail_rate = 0.0, "MapError", 0.0
    alone.shows_progress = False  # its outcome at once, no sync seen running
    for company in healthy[:8]:
        for sim in company.data_types.values():
            sim.fail_rate = 0.0  # none of the others fails by chance
    fleet.outage(XERO, since=clock.time() - 13 * HOUR)
    codat = SimulatedCodat(fleet, API_KEY).start()
    harness = Harness(make_config(codat, poll={"interval": "1m"}), clock, codat)
    harness.poll()
    yield harness, fleet
    harness.close()
    codat.stop()
    logging.getLogger("exporter").setLevel(logging.NOTSET)


@pytest.fixture(scope="module")
def prometheus(
    outage: tuple[Harness, Fleet],
    alertmanager: Alertmanager,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """A real Prometheus scraping the exporter every second with the default rules, those
    of AT_ONCE tailored to ``for: 0s``, sending to the Alertmanager."""
    binary("prometheus")
    workdir = tmp_path_factory.mktemp("platform-incident")
    config = load_yaml(MONITORING_CONFIG)
    for name in AT_ONCE:
        config["alerts"][name]["for"] = "0s"
    (workdir / "config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    assert generate(["--config", str(workdir / "config.yml"), "--out", str(workdir)]) == 0
    harness, _ = outage
    scrape = _prometheus_config([str(workdir / RULES_FILE)], harness.server.url[len("http://") :])
    scrape["alerting"] = {
        "alertmanagers": [{"static_configs": [{"targets": [alertmanager.url[len("http://") :]]}]}]
    }
    process = _start_prometheus(scrape, workdir)
    try:
        yield "http://" + logged_address(workdir / "prometheus.log", process)
    finally:
        _stop(process)
        _print_logs(workdir / "prometheus.log")


def wait_for(what: str, probe: Any) -> Any:
    started = time.monotonic()
    while time.monotonic() - started < DEADLINE:
        try:
            found = probe()
        except (requests.RequestException, KeyError, subprocess.SubprocessError):
            found = None
        if found:
            return found
        time.sleep(0.25)
    pytest.fail(f"not within {DEADLINE:.0f}s: {what}")


def test_should_count_the_companies_failing_on_each_platform_in_a_real_prometheus(
    outage: tuple[Harness, Fleet], prometheus: str
) -> None:
    # Prepare: Codat's own answer, company by company
    _, fleet = outage
    on_xero = [c.id for c in fleet.companies.values() if c.accounting[1] == XERO]
    expected = sum(failing_now(fleet, company_id) for company_id in on_xero)

    # Act
    def counted() -> dict[str, float] | None:
        response = requests.get(
            f"{prometheus}/api/v1/query", params={"query": PLATFORM_FAILING.name}, timeout=5
        ).json()
        found = {r["metric"]["platform"]: float(r["value"][1]) for r in response["data"]["result"]}
        return found or None

    counts = wait_for("the family scraped", counted)

    # Check: one series per platform, zeros included; the outage's companies on Xero
    assert expected >= 45
    assert counts == {XERO: expected, QBO: 1, "QuickBooks Desktop": 0, "Plaid": 0}


def test_should_page_once_for_the_platform_and_as_before_for_a_company_failing_alone(
    outage: tuple[Harness, Fleet], prometheus: str, alertmanager: Alertmanager
) -> None:
    # Prepare
    _, fleet = outage
    alone = next(c for c in fleet.companies.values() if c.accounting[1] == QBO)

    def received() -> list[dict[str, Any]] | None:
        alerts: list[dict[str, Any]] = requests.get(
            f"{alertmanager.url}/api/v2/alerts", timeout=5
        ).json()
        names = {a["labels"]["alertname"] for a in alerts}
        failing = [a for a in alerts if a["labels"]["alertname"] == "CodatDataTypeSyncFailing"]
        settled = all(a["status"]["state"] != "unprocessed" for a in alerts)
        return alerts if {*AT_ONCE} <= names and len(failing) > 45 and settled else None

    # Act
    alerts = wait_for("the alerts in Alertmanager", received)

    # Check: the platform's alert is the one active alert about the Xero outage's pairs
    platform = [a for a in alerts if a["labels"]["alertname"] == "CodatPlatformSyncFailures"]
    assert [(a["labels"]["platform"], a["status"]["state"]) for a in platform] == [(XERO, "active")]
    on_xero = [a for a in alerts if a["labels"].get("platform") == XERO
               and a["labels"]["alertname"] in AT_ONCE[1:]]  # fmt: skip
    assert len({a["labels"]["company_id"] for a in on_xero}) >= 45
    assert {a["status"]["state"] for a in on_xero} == {"suppressed"}
    mine = [(a["labels"]["alertname"], a["labels"].get("data_type"), a["labels"].get("platform"),
             a["status"]["state"]) for a in alerts
            if a["labels"].get("company_id") == alone.id]  # fmt: skip
    assert ("CodatDataTypeSyncFailing", "invoices", QBO, "active") in mine
    assert not [a for a in alerts if a["labels"]["alertname"] == "CodatPlatformSyncFailures"
                and a["labels"]["platform"] == QBO]  # fmt: skip
