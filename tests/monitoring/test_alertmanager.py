"""The example Alertmanager config (alertmanager/alertmanager.yml): valid for the real
amtool, routing every alert rule by its severity, and, on a real Alertmanager listening on
loopback, grouping one company's alerts together and inhibiting what a known cause
explains. Alerts are posted to its API as Prometheus posts them."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.harness import LISTEN_ANYWHERE
from tests.promtools import (
    PRESET_RULES,
    ROOT,
    RULES,
    alert_rules,
    binary,
    load_yaml,
    logged_address,
)

pytestmark = pytest.mark.prometheus

CONFIG = ROOT / "alertmanager" / "alertmanager.yml"
RECEIVERS = {"critical": "pager", "warning": "tickets", "info": "review"}
DEADLINE = 20.0
"""Seconds for the Alertmanager to start, or to settle after alerts are posted."""
JOB = "codat-freshness-exporter"
RULES_BY_NAME = {
    rule["alert"]: rule for path in (RULES, PRESET_RULES) for rule in alert_rules(path)
}
"""The alerts of the default rules and of the fleet preset's."""


def amtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("amtool"), *map(str, args)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_should_pass_amtool_check_config() -> None:
    # Act
    result = amtool("check-config", CONFIG)

    # Check
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    assert f" - {len(load_yaml(CONFIG)['inhibit_rules'])} inhibit rules" in result.stdout


@pytest.mark.parametrize("rule", RULES_BY_NAME.values(), ids=lambda rule: rule["alert"])
def test_should_route_every_alert_to_the_receiver_of_its_severity(rule: dict[str, Any]) -> None:
    # Prepare
    severity = rule["labels"]["severity"]
    labels = [f"alertname={rule['alert']}", f"severity={severity}", f"job={JOB}"]

    # Act
    result = amtool(
        "config",
        "routes",
        "test",
        f"--config.file={CONFIG}",
        f"--verify.receivers={RECEIVERS[severity]}",
        *labels,
    )

    # Check
    assert result.returncode == 0, result.stdout + result.stderr


def test_should_name_only_alerts_the_rules_define_in_inhibit_rules() -> None:
    # Prepare
    defined = set(RULES_BY_NAME)

    # Act
    named = {
        name
        for inhibit in load_yaml(CONFIG)["inhibit_rules"]
        for matcher in inhibit["source_matchers"] + inhibit["target_matchers"]
        if matcher.startswith("alertname")
        for name in matcher.split("=", 1)[1].lstrip("~").strip('"').split("|")
    }

    # Check
    assert named and named <= defined, named - defined


class Alertmanager:
    def __init__(self, url: str) -> None:
        self.url = url

    def post(self, *alerts: dict[str, str]) -> None:
        body = [{"labels": {"job": JOB, "instance": "exporter:9781", **a}} for a in alerts]
        response = requests.post(f"{self.url}/api/v2/alerts", json=body, timeout=5)
        assert response.status_code == 200, response.text

    def states(self, company_id: str | None, instance: str | None = None) -> dict[str, str]:
        """alertname -> active or suppressed, for the company's alerts (None: the alerts
        about no company), of ``instance`` if given."""
        alerts = requests.get(f"{self.url}/api/v2/alerts", timeout=5).json()
        return {
            a["labels"]["alertname"]: a["status"]["state"]
            for a in alerts
            if a["labels"].get("company_id") == company_id
            and instance in {None, a["labels"]["instance"]}
        }

    def settled(
        self, company_id: str | None, expected: dict[str, str], instance: str | None = None
    ) -> dict[str, str]:
        """The company's alert states once they are ``expected`` (or at the deadline): the
        inhibitor reads posted alerts asynchronously."""
        started = time.monotonic()
        while True:
            states = self.states(company_id, instance)
            if states == expected or time.monotonic() - started > DEADLINE:
                return states
            time.sleep(0.1)


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Alertmanager]:
    workdir = tmp_path_factory.mktemp("alertmanager")
    log_path = workdir / "alertmanager.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [
            binary("prometheus-alertmanager"),
            f"--config.file={CONFIG}",
            f"--storage.path={workdir / 'data'}",
            f"--web.listen-address={LISTEN_ANYWHERE}",  # it logs the port it gets
            "--cluster.listen-address=",  # no gossip port: a single local instance
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        url = "http://" + logged_address(log_path, process, timeout=DEADLINE)
        started = time.monotonic()
        while not _ready(url):
            assert process.poll() is None, "Alertmanager exited"
            assert time.monotonic() - started < DEADLINE, "Alertmanager not ready"
            time.sleep(0.1)
        yield Alertmanager(url)
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()
        print((workdir / "alertmanager.log").read_text(errors="replace")[-2000:])


def _ready(url: str) -> bool:
    try:
        return requests.get(f"{url}/-/ready", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def _alert(name: str, severity: str, company_id: str, **labels: str) -> dict[str, str]:
    return {"alertname": name, "severity": severity, "company_id": company_id, **labels}


def test_should_hold_back_auth_error_and_stale_alerts_of_a_deauthorized_company(
    alertmanager: Alertmanager,
) -> None:
    # Prepare
    alertmanager.post(
        _alert("CodatConnectionDeauthorized", "critical", "deauth-1", connection_id="k1"),
        _alert("CodatCompanyAuthError", "critical", "deauth-1"),
        _alert("CodatDataTypeStale", "warning", "deauth-1", data_type="invoices"),
        _alert("CodatDataTypeSyncFailing", "warning", "deauth-1", data_type="bills"),
    )
    expected = {
        "CodatConnectionDeauthorized": "active",
        "CodatCompanyAuthError": "suppressed",
        "CodatDataTypeStale": "suppressed",
        "CodatDataTypeSyncFailing": "active",
    }

    # Act
    states = alertmanager.settled("deauth-1", expected)

    # Check
    assert states == expected


def test_should_hold_back_stale_alerts_of_a_company_in_auth_error_but_not_others(
    alertmanager: Alertmanager,
) -> None:
    # Prepare
    alertmanager.post(
        _alert("CodatCompanyAuthError", "critical", "auth-2"),
        _alert("CodatDataTypeStale", "warning", "auth-2", data_type="invoices"),
        _alert("CodatDataTypeStale", "warning", "fine-3", data_type="invoices"),
    )

    # Act
    auth = alertmanager.settled(
        "auth-2", {"CodatCompanyAuthError": "active", "CodatDataTypeStale": "suppressed"}
    )
    fine = alertmanager.states("fine-3")

    # Check
    assert auth == {"CodatCompanyAuthError": "active", "CodatDataTypeStale": "suppressed"}
    assert fine == {"CodatDataTypeStale": "active"}


def test_should_hold_back_per_company_alerts_of_an_exporter_whose_api_key_is_rejected(
    alertmanager: Alertmanager,
) -> None:
    # Prepare: an exporter of its own, so that its inhibition touches no other test.
    other = {"instance": "rejected:9781"}
    alertmanager.post(
        {"alertname": "CodatExporterAPIKeyRejected", "severity": "critical", **other},
        _alert("CodatExporterCompanyPollFailing", "warning", "key-4", **other),
        _alert("CodatDataTypeStale", "warning", "key-4", data_type="bills", **other),
        _alert("CodatDataTypeSyncStuck", "warning", "key-4", **other),
    )
    expected = {
        "CodatExporterCompanyPollFailing": "suppressed",
        "CodatDataTypeStale": "suppressed",
        "CodatDataTypeSyncStuck": "suppressed",
    }

    # Act
    states = alertmanager.settled("key-4", expected)

    # Check
    assert states == expected


def test_should_hold_back_the_preset_s_stale_counts_of_a_stalled_exporter_only(
    alertmanager: Alertmanager,
) -> None:
    # Prepare: the fleet preset's per-data-type and per-platform alerts have no company_id.
    # A stalled poll loop explains the stale counts; deauthorized connections explain
    # neither them nor the AuthError count (which may be another platform's), and nothing
    # holds back the page for them.
    stalled, other = "stalled:9781", "preset:9781"
    alertmanager.post(
        {"alertname": "CodatExporterPollStalled", "severity": "warning", "instance": stalled},
        {"alertname": "CodatDataTypeStaleCompanies", "severity": "warning",
         "instance": stalled, "data_type": "invoices"},
        {"alertname": "CodatConnectionsDeauthorized", "severity": "critical",
         "instance": other, "platform": "Xero", "status": "Deauthorized"},
        {"alertname": "CodatDataTypeStaleCompanies", "severity": "warning",
         "instance": other, "data_type": "invoices"},
        {"alertname": "CodatAuthErrorCompanies", "severity": "warning", "instance": other},
    )  # fmt: skip

    # Act
    held = alertmanager.settled(
        None,
        {"CodatExporterPollStalled": "active", "CodatDataTypeStaleCompanies": "suppressed"},
        stalled,
    )
    free = alertmanager.states(None, other)

    # Check
    assert held == {
        "CodatExporterPollStalled": "active",
        "CodatDataTypeStaleCompanies": "suppressed",
    }
    assert free == {
        "CodatDataTypeStaleCompanies": "active",
        "CodatAuthErrorCompanies": "active",
        "CodatConnectionsDeauthorized": "active",
    }


def test_should_page_once_for_fifty_companies_failing_on_one_platform_and_as_before_for_one(
    alertmanager: Alertmanager,
) -> None:
    # Prepare: fifty companies' bills failing on Xero (their alerts carry its platform, as
    # the rules add it), the platform's alert (summed over shards: no instance); one
    # company failing on QuickBooks Online, and a Xero company's bank feed (no platform).
    xero = [f"xero-{n:02d}" for n in range(50)]
    alertmanager.post(
        *(_alert("CodatDataTypeSyncFailing", "warning", c, data_type="bills", platform="Xero")
          for c in xero),
        *(_alert("CodatDataTypeStale", "warning", c, data_type="bills", platform="Xero")
          for c in xero[:10]),
        _alert("CodatDataTypeSyncFailing", "warning", "qbo-1", data_type="bills",
               platform="QuickBooks Online"),
        _alert("CodatDataTypeSyncFailing", "warning", "xero-00",
               data_type="banking-transactions"),
    )  # fmt: skip
    platform = {"alertname": "CodatPlatformSyncFailures", "severity": "warning",
                "job": JOB, "platform": "Xero"}  # fmt: skip
    response = requests.post(
        f"{alertmanager.url}/api/v2/alerts", json=[{"labels": platform}], timeout=5
    )
    assert response.status_code == 200, response.text

    # Act
    held = alertmanager.settled("xero-49", {"CodatDataTypeSyncFailing": "suppressed"})
    alerts = requests.get(f"{alertmanager.url}/api/v2/alerts", timeout=5).json()

    # Check: of the Xero companies' alerts, only the bank feed's is active; the platform
    # pages once; the QuickBooks Online company's alert is active as before
    mine = [a for a in alerts if a["labels"].get("company_id", "").startswith(("xero-", "qbo-"))
            or a["labels"]["alertname"] == "CodatPlatformSyncFailures"]  # fmt: skip
    active = sorted(
        (a["labels"]["alertname"], a["labels"].get("company_id", ""),
         a["labels"].get("data_type", ""))
        for a in mine if a["status"]["state"] == "active"
    )  # fmt: skip
    assert held == {"CodatDataTypeSyncFailing": "suppressed"}
    assert active == [
        ("CodatDataTypeSyncFailing", "qbo-1", "bills"),
        ("CodatDataTypeSyncFailing", "xero-00", "banking-transactions"),
        ("CodatPlatformSyncFailures", "", ""),
    ]
    assert sum(a["status"]["state"] == "suppressed" for a in mine) == 60


def test_should_group_a_company_s_alerts_into_one_notification_per_receiver(
    alertmanager: Alertmanager,
) -> None:
    # Prepare
    alertmanager.post(
        _alert("CodatDataTypeStale", "warning", "group-5", data_type="invoices"),
        _alert("CodatDataTypeStale", "warning", "group-5", data_type="bills"),
        _alert("CodatDataTypeSyncFailing", "warning", "group-5", data_type="bills"),
        _alert("CodatDataTypeStale", "warning", "group-6", data_type="bills"),
    )
    alertmanager.settled(
        "group-5", {"CodatDataTypeStale": "active", "CodatDataTypeSyncFailing": "active"}
    )

    # Act
    groups = requests.get(f"{alertmanager.url}/api/v2/alerts/groups", timeout=5).json()

    # Check
    mine = [g for g in groups if g["labels"].get("company_id") in {"group-5", "group-6"}]
    assert sorted(
        (g["labels"]["company_id"], g["receiver"]["name"], len(g["alerts"])) for g in mine
    ) == [("group-5", "tickets", 3), ("group-6", "tickets", 1)]
    assert all(g["labels"] == {"job": JOB, "company_id": g["labels"]["company_id"]} for g in mine)
