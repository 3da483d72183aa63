"""The exporter in demo mode, scraped by a real Prometheus that loads the alert rules, and
every dashboard query run against it, as a user of the compose stack would see them.

Both processes listen on loopback ports of their own; Prometheus scrapes and evaluates
every second, so the demo fleet's AuthError and stale pairs show as pending alerts within
seconds. The whole module is bounded by DEADLINE.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote_plus

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter.core.families import (
    COMPANY_CREATED,
    COMPANY_UP,
    CONNECTION_STATUS,
    FLEET_PRESET_DENYLIST,
    LAST_SYNC_AGE,
    LAST_SYNC_TIMESTAMP,
    MAX_AGE,
    STALE_COMPANIES,
    STATUS,
)
from tests.harness import LISTEN_ANYWHERE, SERVING_METRICS
from tests.promtools import (
    PRESET_DASHBOARD,
    PRESET_RULES,
    PROMETHEUS_CONFIG,
    ROOT,
    all_rules,
    binary,
    dashboards,
    load_yaml,
    logged_address,
    panels,
    substitute,
    variable_query,
    variables,
)

pytestmark = pytest.mark.prometheus

DEADLINE = 60.0
"""Seconds for everything: both processes up, first polls, scrapes, rule evaluations."""
POLL = 0.25
T = TypeVar("T")

EMPTY_IN_DEMO = {
    ("codat-exporter", "Companies up and down", "B"),
    ("codat-exporter", "Poll errors by reason", "A"),
    ("codat-exporter", "Companies not polled", "A"),
    ("codat-exporter", "Companies not polled", "B"),
    ("codat-exporter", "Rate-limited requests (429)", "A"),
    ("codat-exporter", "Rejected requests (401/403)", "A"),
    ("codat-exporter", "Webhooks by event type and result", "A"),
    ("codat-exporter", "Sync refreshes by result", "A"),
    ("codat-fleet-preset", "Companies not polled", "A"),
    *(
        (uid, "Sync durations per data type", ref)
        for uid in ("codat-fleet", "codat-fleet-preset")
        for ref in "ABC"
    ),
}
"""Queries that may have no data while the simulated Codat answers every poll (errors,
rejections, 429s), sends no webhook and the demo refreshes nothing; and the sync durations,
as the syncs seen at the first poll are not timed and the test may end before another
completes. Every other query must return data."""
STALE_IN_DEMO = {("O'Brien & Daughters Ltd", "invoices"), ("O'Brien & Daughters Ltd", "bills")}


@dataclass
class Stack:
    prometheus: str
    exporter: str
    job: str
    started: float

    def api(self, path: str, **params: Any) -> Any:
        url = f"{self.prometheus}/api/v1/{path}"
        if params:  # queries may be long: POST them, as Grafana does
            response = requests.post(url, data=params, timeout=5)
        else:
            response = requests.get(url, timeout=5)
        body = response.json()
        assert body["status"] == "success", f"{path} {params}: {body}"
        return body["data"]

    def query(self, expr: str, **params: Any) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.api("query", query=expr, **params)["result"]
        return result

    def wait_for(self, what: str, probe: Callable[[], T | None]) -> T:
        """``probe()`` until it returns something, within the module's DEADLINE."""
        last_error: Exception | None = None
        while time.monotonic() - self.started < DEADLINE:
            try:
                result = probe()
            except (requests.RequestException, AssertionError) as exc:
                result, last_error = None, exc
            if result is not None:
                return result
            time.sleep(POLL)
        pytest.fail(f"not within {DEADLINE:.0f}s: {what} (last error: {last_error})")


def _start(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def _prometheus_config(rule_files: list[str], target: str) -> dict[str, Any]:
    """The compose stack's Prometheus config, scraping and evaluating every second, with
    ``rule_files`` (absolute) and ``target`` (host:port), and no Alertmanager
    (tests/monitoring/test_alertmanager.py runs one)."""
    config: dict[str, Any] = load_yaml(PROMETHEUS_CONFIG)
    config["global"] = {
        "scrape_interval": "1s",
        "scrape_timeout": "1s",
        "evaluation_interval": "1s",
    }
    config.pop("alerting")
    config["rule_files"] = rule_files
    (scrape,) = config["scrape_configs"]
    scrape["static_configs"] = [{"targets": [target]}]
    return config


def _start_prometheus(config: dict[str, Any], workdir: Path) -> subprocess.Popen[bytes]:
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    return _start(
        [
            binary("prometheus"),
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address={LISTEN_ANYWHERE}",
        ],
        workdir / "prometheus.log",
    )


def _print_logs(*logs: Path) -> None:
    for log in logs:
        text = log.read_text(errors="replace") if log.exists() else ""
        print(f"--- {log.name}\n" + text[-3000:])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    binary("prometheus")
    workdir = tmp_path_factory.mktemp("e2e")
    started = time.monotonic()
    # Each process binds a port of the system's choosing and logs it; Prometheus is told
    # the exporter's before it starts.
    exporter_log, prometheus_log = workdir / "exporter.log", workdir / "prometheus.log"
    processes = [
        _start(
            [sys.executable, "-m", "exporter", "--demo", "--web.listen-address", LISTEN_ANYWHERE],
            exporter_log,
        )
    ]
    try:
        exporter = logged_address(exporter_log, processes[0], SERVING_METRICS)
        rule_files = [
            str(PROMETHEUS_CONFIG.parent / path)
            for path in load_yaml(PROMETHEUS_CONFIG)["rule_files"]
        ]
        config = _prometheus_config(rule_files, exporter.removeprefix("http://"))
        processes.append(_start_prometheus(config, workdir))
        prometheus = "http://" + logged_address(prometheus_log, processes[1])
        yield Stack(
            prometheus=prometheus,
            exporter=exporter,
            job=config["scrape_configs"][0]["job_name"],
            started=started,
        )
    finally:
        for process in processes:
            _stop(process)
        _print_logs(exporter_log, prometheus_log)


@pytest.fixture(scope="module")
def preset(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A second Prometheus with the fleet preset's rules, scraping the same demo exporter
    but dropping, as each scrape lands, the families the preset's ``metrics.denylist``
    denies: it holds what a preset exporter's scrapes would bring (the denylist only leaves
    families out), so a rule or panel that reads a denied family finds nothing here, while
    the two Prometheus still see the same fleet at the same moments and can be compared
    query for query."""
    workdir = tmp_path_factory.mktemp("e2e-preset")
    config = _prometheus_config([str(PRESET_RULES)], stack.exporter.removeprefix("http://"))
    config["scrape_configs"][0]["metric_relabel_configs"] = [
        {
            "source_labels": ["__name__"],
            "regex": "|".join(FLEET_PRESET_DENYLIST),
            "action": "drop",
        }
    ]
    process = _start_prometheus(config, workdir)
    try:
        prometheus = "http://" + logged_address(workdir / "prometheus.log", process)
        yield Stack(prometheus, stack.exporter, stack.job, started=time.monotonic())
    finally:
        _stop(process)
        _print_logs(workdir / "prometheus.log")


def _alerts(stack: Stack, name: str) -> list[dict[str, Any]]:
    """Pending and firing alerts of that name, annotations expanded."""
    return [a for a in stack.api("alerts")["alerts"] if a["labels"]["alertname"] == name]


def _pairs(alerts_or_series: list[dict[str, Any]]) -> set[tuple[str, str]]:
    labels = [item.get("labels") or item["metric"] for item in alerts_or_series]
    return {(label["company_name"], label["data_type"]) for label in labels}


def test_should_evaluate_every_rule_group_without_error(stack: Stack) -> None:
    # Act
    def evaluated() -> list[dict[str, Any]] | None:
        groups = stack.api("rules")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        ready = groups and all(rule["health"] != "unknown" for rule in rules)
        return groups if ready else None

    groups = stack.wait_for("every rule evaluated", evaluated)

    # Check
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) == len(all_rules())
    assert {group["file"] for group in groups} == {
        str(PROMETHEUS_CONFIG.parent / "rules" / "codat-freshness-exporter.rules.yml")
    }
    broken = [(rule["name"], rule.get("lastError")) for rule in rules if rule["health"] != "ok"]
    assert not broken


PAGES = {"CodatConnectionDeauthorized", "CodatCompanyAuthError"}


def all_data_types(stack: Stack, company_id: str) -> set[str]:
    matcher = f'company_id="{company_id}"'
    return {s["metric"]["data_type"] for s in stack.query(f"{STATUS.name}{{{matcher}}}")}


def test_should_page_once_for_the_deauthorized_demo_company(stack: Stack) -> None:
    # Prepare: the demo's deauthorized connection; its company has a dozen data types in
    # AuthError.
    (connection,) = stack.wait_for(
        "the demo's deauthorized connection scraped",
        lambda: stack.query('codat_connection_status{status="Deauthorized"} == 1') or None,
    )
    company = connection["metric"]

    # Act
    def pages() -> list[dict[str, Any]] | None:
        alerts = [
            a
            for a in stack.api("alerts")["alerts"]
            if a["labels"].get("company_id") == company["company_id"]
            and a["labels"]["severity"] == "critical"
        ]
        return alerts if {a["labels"]["alertname"] for a in alerts} >= PAGES else None

    alerts = stack.wait_for("both pages for the deauthorized company", pages)

    # Check: two critical alerts, not one per data type.
    assert sorted(a["labels"]["alertname"] for a in alerts) == sorted(PAGES)
    by_name = {a["labels"]["alertname"]: a for a in alerts}
    deauthorized, auth_error = (by_name[name] for name in sorted(PAGES, reverse=True))
    # The count moves while one of the failing syncs runs, so the annotations are held to
    # what they list, and that to the company's data types.
    listed = auth_error["annotations"]["description"].split("In AuthError: ")[1].rstrip(".")
    names = listed.split(", ")
    assert len(names) >= 8
    assert names == sorted(names)
    assert set(names) <= all_data_types(stack, company["company_id"])
    assert auth_error["labels"]["company_name"] == company["company_name"]
    assert f"Codat lost access to {len(names)} data types" in auth_error["annotations"]["summary"]
    assert deauthorized["labels"]["connection_id"] == company["connection_id"]
    assert f"The {company['platform']} connection" in deauthorized["annotations"]["description"]
    assert re.search(r"in AuthError now: \d+\.", deauthorized["annotations"]["description"])
    for alert in alerts:
        assert alert["state"] in {"pending", "firing"}
        assert alert["annotations"]["status_page"].endswith(f"/?company={company['company_id']}")


def test_should_raise_one_auth_error_alert_per_demo_company_in_auth_error(stack: Stack) -> None:
    # Prepare
    companies = stack.wait_for(
        "the demo's AuthError pairs scraped",
        lambda: {p[0] for p in _pairs(stack.query(f'{STATUS.name}{{status="AuthError"}}'))} or None,
    )

    # Act
    def covering() -> list[dict[str, Any]] | None:
        alerts = _alerts(stack, "CodatCompanyAuthError")
        return alerts if {a["labels"]["company_name"] for a in alerts} == companies else None

    alerts = stack.wait_for("a CompanyAuthError alert for each company", covering)

    # Check
    assert len(companies) >= 2
    assert len(alerts) == len(companies)
    for alert in alerts:
        assert alert["labels"]["job"] == stack.job
        assert alert["labels"]["instance"] == stack.exporter.removeprefix("http://")
        assert "data_type" not in alert["labels"] and "status" not in alert["labels"]


def test_should_list_every_stale_pair_in_the_fleet_stale_table(stack: Stack) -> None:
    # Prepare
    fleet = dashboards()["fleet.json"]
    (stale_table,) = [p for p in panels(fleet) if p["title"] == "Stale pairs"]
    stale_count = next(
        t["expr"] for p in panels(fleet) if p["title"] == "Stale" for t in p["targets"]
    )
    values = _viewer_choices(stack)["codat-fleet"]
    stack.wait_for("stale pairs", lambda: stack.query(substitute(stale_count, values)) or None)
    now = time.time()

    # Act
    columns = {
        target["refId"]: {
            _pair(s["metric"]): float(s["value"][1])
            for s in stack.query(substitute(target["expr"], values), time=now)
        }
        for target in stale_table["targets"]
    }
    (count,) = stack.query(substitute(stale_count, values), time=now)

    # Check: every stale pair has a row, with its age, max age and percentage.
    ages, max_ages, percents = columns["A"], columns["B"], columns["C"]
    assert len(ages) == int(float(count["value"][1])) >= len(STALE_IN_DEMO)
    assert set(ages) == set(max_ages) == set(percents) >= STALE_IN_DEMO
    for pair, age in ages.items():
        assert age > max_ages[pair]
        assert percents[pair] == pytest.approx(100 * age / max_ages[pair])
    _, exporter_max_ages = _exporter_ages(stack)
    assert {pair: exporter_max_ages[pair] for pair in max_ages} == max_ages


def test_should_raise_a_stale_alert_for_the_demo_pairs_past_their_max_age(stack: Stack) -> None:
    # Act
    def covering() -> list[dict[str, Any]] | None:
        alerts = _alerts(stack, "CodatDataTypeStale")
        return alerts if _pairs(alerts) >= STALE_IN_DEMO else None

    alerts = stack.wait_for("stale alerts for O'Brien & Daughters' invoices and bills", covering)

    # Check
    by_pair = {(a["labels"]["company_name"], a["labels"]["data_type"]): a for a in alerts}
    invoices, bills = (by_pair["O'Brien & Daughters Ltd", kind] for kind in ("invoices", "bills"))
    assert invoices["labels"]["severity"] == "warning"
    assert invoices["labels"]["job"] == stack.job
    assert "more than its max age of 6h 0m 0s. Latest" in invoices["annotations"]["description"]
    # The demo derives the bills threshold from the company's sync settings: any whole hours.
    assert re.search(
        r"max age of (\d+d )?\d+h 0m 0s\. Latest sync status: \w+\.$",
        bills["annotations"]["description"],
    )
    # Every alerting pair is stale by the exporter's own numbers, read without PromQL.
    ages, max_ages = _exporter_ages(stack)
    for pair in by_pair:
        assert ages[pair] > max_ages[pair], pair


def test_should_raise_a_never_synced_alert_only_in_companies_older_than_a_day(
    stack: Stack,
) -> None:
    # Prepare: the pairs the exporter itself shows as never synced, with company ages.
    def never_synced() -> dict[tuple[str, str], float] | None:
        text = requests.get(f"{stack.exporter}/metrics", timeout=5).text
        families = {f.name: f.samples for f in text_string_to_metric_families(text)}
        created = {s.labels["company_id"]: s.value for s in families.get(COMPANY_CREATED.name, [])}
        synced = {_pair(s.labels) for s in families.get(LAST_SYNC_TIMESTAMP.name, [])}
        pairs = {
            _pair(s.labels): time.time() - created[s.labels["company_id"]]
            for s in families.get(STATUS.name, [])
            if s.labels["status"] == "NeverSynced" and s.labels["company_id"] in created
        }
        return {pair: age for pair, age in pairs.items() if pair not in synced} or None

    ages = stack.wait_for("the demo's never-synced pairs scraped", never_synced)
    old = {pair for pair, age in ages.items() if age > 86400}

    # Act
    def covering() -> list[dict[str, Any]] | None:
        alerts = _alerts(stack, "CodatDataTypeNeverSynced")
        return alerts if _pairs(alerts) >= old else None

    alerts = stack.wait_for("a NeverSynced alert for each pair of an old company", covering)

    # Check: both kinds are in the demo; the company created hours ago raises none.
    assert old and set(ages) - old
    assert _pairs(alerts) == old
    for alert in alerts:
        assert alert["labels"]["severity"] == "info"
        assert "since the company was created " in alert["annotations"]["description"]


def _pair(labels: dict[str, str]) -> tuple[str, str]:
    return labels["company_name"], labels["data_type"]


Pairs = dict[tuple[str, str], float]


def _exporter_ages(stack: Stack) -> tuple[Pairs, Pairs]:
    """Ages and max ages straight from the exporter's /metrics text."""
    text = requests.get(f"{stack.exporter}/metrics", timeout=5).text
    values: dict[str, Pairs] = {LAST_SYNC_AGE.name: {}, MAX_AGE.name: {}}
    for family in text_string_to_metric_families(text):
        for sample in family.samples if family.name in values else []:
            pair = (sample.labels["company_name"], sample.labels["data_type"])
            values[family.name][pair] = sample.value
    return values[LAST_SYNC_AGE.name], values[MAX_AGE.name]


def _evaluated_since(stack: Stack, moment: float) -> bool:
    """Whether every rule group has been evaluated after ``moment`` (Unix seconds)."""
    groups = stack.api("rules")["groups"]
    return bool(groups) and all(
        datetime.fromisoformat(group["lastEvaluation"]).timestamp() > moment for group in groups
    )


def test_should_leave_the_exporter_alerts_quiet_while_the_demo_runs(stack: Stack) -> None:
    # Prepare: CodatExporterDown's absent() is pending until the first scrape lands, so
    # look only once the rules have been evaluated with a successful scrape queryable.
    stack.wait_for("the target scraped", lambda: stack.query("up == 1") or None)
    scrape_visible = time.time()
    stack.wait_for(
        "the rules evaluated after that", lambda: _evaluated_since(stack, scrape_visible) or None
    )

    # Act
    alerts = stack.api("alerts")["alerts"]

    # Check
    exporter_alerts = [
        a["labels"]["alertname"] for a in alerts if "CodatExporter" in a["labels"]["alertname"]
    ]
    assert not exporter_alerts
    assert not [a for a in alerts if "error expanding" in str(a["annotations"])]


def _empty_answers(stack: Stack, boards: list[dict[str, Any]]) -> tuple[set[Any], int]:
    """(dashboard uid, panel, query) of the queries with no data, and how many ran."""
    stack.wait_for(
        "three scrapes for rate()",
        lambda: stack.query("count_over_time(up[1m]) >= 3") or None,
    )
    values = _viewer_choices(stack)
    now = time.time()
    empty, answered = set(), 0
    for board in boards:
        chosen = values[board["uid"]]
        for panel in panels(board):
            for target in panel["targets"]:
                expr = substitute(target["expr"], chosen)
                result = stack.query(expr, time=now)
                if target.get("range"):
                    stack.api("query_range", query=expr, start=now - 30, end=now, step=1)
                answered += 1
                if not result:
                    empty.add((board["uid"], panel["title"], target["refId"]))
    return empty, answered


def test_should_answer_every_dashboard_query_with_data_where_the_demo_has_some(
    stack: Stack,
) -> None:
    # Act: once rates have scrapes to work with.
    empty, answered = _empty_answers(stack, list(dashboards().values()))

    # Check
    assert answered >= 50
    assert empty <= EMPTY_IN_DEMO


def test_should_fill_every_template_variable_from_the_demo(stack: Stack) -> None:
    # Prepare
    values = _viewer_choices(stack)

    for board in dashboards().values():
        for variable in variables(board).values():
            if variable["type"] != "query":
                continue
            expr, label = variable_query(substitute(variable["query"], values[board["uid"]]))

            # Act
            if label is None:
                options = [s["metric"] for s in stack.query(expr)]
            else:
                options = [s[label] for s in stack.api("series", **{"match[]": expr}) if label in s]

            # Check
            assert options, f"{board['uid']}: ${variable['name']} would offer nothing"


def _viewer_choices(stack: Stack) -> dict[str, dict[str, str]]:
    """Variable values a viewer would pick, by dashboard uid: every company on the fleet
    dashboard, the stale demo company on the company dashboard."""
    obrien = stack.wait_for(
        "O'Brien & Daughters Ltd polled",
        lambda: stack.query('codat_exporter_company_up{company_name=~"O.Brien.*"}') or None,
    )[0]["metric"]["company_id"]
    common = {"job": stack.job, "datasource": "prometheus"}
    return {
        "codat-fleet": {**common, "company": ".*", "data_type": ".*"},
        "codat-fleet-preset": {**common, "company": ".*", "data_type": ".*"},
        "codat-company": {**common, "company": obrien, "data_type": ".*"},
        "codat-exporter": common,
    }


def test_should_keep_one_series_per_company_only_in_the_fleet_preset(
    stack: Stack, preset: Stack
) -> None:
    # Prepare
    def by_family(of: Stack) -> dict[str, float] | None:
        counted = of.query('count by (__name__) ({company_id!=""})')
        names = {s["metric"]["__name__"]: float(s["value"][1]) for s in counted}
        return names if COMPANY_UP.name in names else None

    # Act
    default = stack.wait_for("the default's series per company", lambda: by_family(stack))
    cut = preset.wait_for("the preset's series per company", lambda: by_family(preset))

    # Check: what grows with the fleet is one series a company, codat_exporter_company_up.
    assert cut == {COMPANY_UP.name: default[COMPANY_UP.name]}
    assert {COMPANY_CREATED.name, CONNECTION_STATUS.name, STATUS.name} <= set(default)


def test_should_answer_the_fleet_preset_dashboard_from_the_preset_s_series(
    preset: Stack,
) -> None:
    # Act: a panel that read a denied family would find nothing.
    empty, answered = _empty_answers(preset, [dashboards()[PRESET_DASHBOARD]])

    # Check
    assert answered >= 20
    assert empty <= EMPTY_IN_DEMO


def test_should_evaluate_every_fleet_preset_rule_without_error(preset: Stack) -> None:
    # Act
    def evaluated() -> list[dict[str, Any]] | None:
        rules = [rule for group in preset.api("rules")["groups"] for rule in group["rules"]]
        return rules if rules and all(rule["health"] != "unknown" for rule in rules) else None

    rules = preset.wait_for("every preset rule evaluated", evaluated)

    # Check
    assert len(rules) == len(all_rules(PRESET_RULES))
    assert not [(rule["name"], rule.get("lastError")) for rule in rules if rule["health"] != "ok"]


def test_should_count_exactly_the_stale_pairs_and_fresh_shares_without_per_pair_series(
    stack: Stack, preset: Stack
) -> None:
    # Prepare: the same scrapes of the same exporter; the default's expressions over the
    # per-pair series, the preset's over the aggregates, at one instant.
    stack.wait_for("stale pairs", lambda: stack.query(f"{STALE_COMPANIES.name} > 0") or None)
    recorded = {rule["record"]: rule["expr"] for rule in all_rules() if "record" in rule}
    preset_recorded = {
        rule["record"]: rule["expr"] for rule in all_rules(PRESET_RULES) if "record" in rule
    }
    now = time.time()

    def values(expr: str) -> dict[str, float]:
        return {
            s["metric"].get("data_type", "fleet"): float(s["value"][1])
            for s in stack.query(expr, time=now)
        }

    # Act
    stale = values(f"sum by (data_type) ({STALE_COMPANIES.name})")
    pair = "job, instance, company_id, data_type"
    counted = values(f"count by (data_type) ({LAST_SYNC_AGE.name} > on ({pair}) {MAX_AGE.name})")
    shares = {
        name: values(recorded[name])
        for name in preset_recorded
        if ":ratio" in name and "avg" not in name
    }
    preset_shares = {name: values(preset_recorded[name]) for name in shares}

    # Check
    assert {"invoices", "bills"} <= set(counted)
    assert {k: v for k, v in stale.items() if v} == counted
    assert len(shares) == 2 and all(shares.values())
    for name, by_data_type in shares.items():
        assert preset_shares[name] == pytest.approx(by_data_type), name


def test_should_raise_the_fleet_preset_s_alerts_for_the_demo(stack: Stack, preset: Stack) -> None:
    # Prepare
    auth_pairs = stack.wait_for(
        "the demo's AuthError pairs scraped",
        lambda: stack.query(f'count({STATUS.name}{{status="AuthError"}})') or None,
    )[0]["value"][1]

    # Act
    def raised() -> dict[str, list[dict[str, Any]]] | None:
        alerts = preset.api("alerts")["alerts"]
        names = {
            "CodatDataTypeStaleCompanies",
            "CodatAuthErrorCompanies",
            "CodatConnectionsDeauthorized",
        }
        by_name = {name: [a for a in alerts if a["labels"]["alertname"] == name] for name in names}
        stale_types = {a["labels"]["data_type"] for a in by_name["CodatDataTypeStaleCompanies"]}
        return by_name if all(by_name.values()) and stale_types >= {"invoices", "bills"} else None

    alerts = preset.wait_for("the preset's stale, AuthError and Deauthorized alerts", raised)

    # Check: one AuthError alert for the exporter, counting every pair; one per platform.
    (auth,) = alerts["CodatAuthErrorCompanies"]
    assert auth["annotations"]["summary"] == (
        f"Codat lost access to {auth_pairs} company x data type pairs (AuthError)"
    )
    assert auth["annotations"]["status_page"].endswith("/?status=AuthError")
    (deauthorized,) = alerts["CodatConnectionsDeauthorized"]
    (connection,) = stack.query(f'{CONNECTION_STATUS.name}{{status="Deauthorized"}} == 1')
    platform = connection["metric"]["platform"]
    assert deauthorized["labels"]["platform"] == platform
    assert "company_id" not in deauthorized["labels"]
    assert deauthorized["annotations"]["summary"] == f"1 connection on {platform} is deauthorized"
    assert deauthorized["annotations"]["status_page"].endswith(
        f"/?connection=Deauthorized&platform={quote_plus(platform)}"
    )
    for alert in alerts["CodatDataTypeStaleCompanies"]:
        assert "company_id" not in alert["labels"]
        assert alert["annotations"]["status_page"].endswith(
            f"/?status=stale&data_type={alert['labels']['data_type']}"
        )
