"""The alert rules: valid for promtool, unit-tested alert by alert, and every unit test
strong enough that a rule firing a minute early or at its threshold fails it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitoring.rules import seconds
from tests.promtools import (
    ROOT,
    RULE_TESTS,
    RULES,
    alert_rules,
    all_rules,
    binary,
    dashboards,
    exported_metric_names,
    load_yaml,
    metric_names,
    recorded_names,
)

pytestmark = pytest.mark.prometheus

ANNOTATIONS = {"summary", "description", "runbook_url", "dashboard_url"}
COMPANY_ALERTS = {
    "CodatConnectionDeauthorized",
    "CodatCompanyAuthError",
    "CodatDataTypeStale",
    "CodatDataTypeNeverSynced",
    "CodatDataTypeSyncFailing",
    "CodatExporterCompanyPollFailing",
}
"""Alerts about one company: they also link to the status page filtered to it."""
STATUS_PAGE = "http://localhost:9781/?company={{ $labels.company_id | urlquery }}"


def annotations_of(alert: str) -> set[str]:
    return ANNOTATIONS | ({"status_page"} if alert in COMPANY_ALERTS else set())


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("promtool"), *map(str, args)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )


def unit_test_file(alert: str) -> Path:
    return RULE_TESTS / f"{alert}.test.yml"


def test_should_pass_promtool_check_rules() -> None:
    # Act
    result = promtool("check", "rules", RULES)

    # Check
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(all_rules())} rules found" in result.stdout


def test_should_pass_every_promtool_unit_test() -> None:
    # Prepare
    files = sorted(RULE_TESTS.glob("*.test.yml"))

    # Act
    result = promtool("test", "rules", *files)

    # Check
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(files)


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_should_unit_test_the_alert_firing_and_not_firing(rule: dict[str, Any]) -> None:
    # Prepare
    cases = [
        case
        for group in load_yaml(unit_test_file(rule["alert"]))["tests"]
        for case in group.get("alert_rule_test", [])
        if case["alertname"] == rule["alert"]
    ]

    # Act
    firing = [alert for case in cases for alert in case.get("exp_alerts") or []]
    quiet = [case for case in cases if not case.get("exp_alerts")]

    # Check
    assert quiet, "no case where the alert must not fire"
    assert firing, "no case where the alert fires"
    for alert in firing:
        assert alert["exp_labels"]["severity"] == rule["labels"]["severity"]
    assert any(
        set(alert.get("exp_annotations", {})) == annotations_of(rule["alert"]) for alert in firing
    )


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_should_give_the_alert_a_severity_and_templated_annotations(rule: dict[str, Any]) -> None:
    # Act
    annotations = rule["annotations"]

    # Check
    assert rule["labels"]["severity"] in {"critical", "warning", "info"}
    assert set(annotations) == annotations_of(rule["alert"])
    assert "{{ $labels." in annotations["description"]
    assert not metric_names(rule["expr"]) - exported_metric_names() - recorded_names() - {"up"}


def test_should_link_every_company_alert_to_the_status_page_filtered_to_its_company() -> None:
    # Act
    links = {rule["alert"]: rule["annotations"].get("status_page") for rule in alert_rules()}

    # Check
    assert {name for name, link in links.items() if link} == COMPANY_ALERTS
    assert {links[name] for name in COMPANY_ALERTS} == {STATUS_PAGE}


def test_should_keep_free_text_out_of_every_alert_label() -> None:
    # Prepare: label_replace or label_join could turn a data type list or an error message
    # into a label value; annotations look such things up with query instead.
    exprs = [rule["expr"] for rule in all_rules()]

    # Act
    rewriting = [expr for expr in exprs if "label_replace" in expr or "label_join" in expr]

    # Check
    assert not rewriting


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_should_link_the_alert_to_its_runbook_section_and_an_existing_dashboard(
    rule: dict[str, Any],
) -> None:
    # Prepare
    headings = re.findall(r"^## (\S+)", (ROOT / "docs" / "runbook.md").read_text(), re.M)
    uids = {board["uid"] for board in dashboards().values()}

    # Act
    runbook = rule["annotations"]["runbook_url"]
    dashboard = re.search(r"/d/([\w-]+)/", rule["annotations"]["dashboard_url"])

    # Check
    assert runbook.split("#")[0].endswith("/docs/runbook.md")
    assert runbook.split("#")[1] in {heading.lower() for heading in headings}
    assert dashboard is not None and dashboard.group(1) in uids


def _shorter_for(rule: dict[str, Any]) -> None:
    """One evaluation of the alert's unit test shorter: the finest step it can tell."""
    step = seconds(load_yaml(unit_test_file(rule["alert"])).get("evaluation_interval", "1m"))
    rule["for"] = f"{seconds(rule['for']) - step}s"


def _replace(old: str, new: str) -> Any:
    def mutate(rule: dict[str, Any]) -> None:
        assert old in rule["expr"]
        rule["expr"] = rule["expr"].replace(old, new)

    return mutate


MUTANTS = [
    *[
        (rule["alert"], "for one minute shorter", _shorter_for)
        for rule in alert_rules()
        if "for" in rule
    ],
    ("CodatDataTypeStale", "stale at equality", _replace("> on", ">= on")),
    ("CodatCompanyAuthError", "no grace for a retry", _replace("[30m]", "[1m]")),
    (
        "CodatCompanyAuthError",
        "one alert per data type",
        _replace("count without (data_type)", "count without ()"),
    ),
    (
        "CodatCompanyAuthError",
        "Complete does not end it",
        _replace('status="Complete"', 'status="Never"'),
    ),
    (
        "CodatConnectionDeauthorized",
        "any status but Linked",
        _replace('status="Deauthorized"', 'status!="Linked"'),
    ),
    ("CodatFreshnessSLOFastBurn", "12x instead of 14.4x", _replace("> 14.4 *", "> 12 *")),
    ("CodatFreshnessSLOFastBurn", "4x instead of 6x", _replace("> 6 *", "> 4 *")),
    (
        "CodatFreshnessSLOFastBurn",
        "no 6h/30m condition",
        _replace("ratio_avg6h > 6 * 0.01", "ratio_avg6h > 60 * 0.01"),
    ),
    (
        "CodatFreshnessSLOSlowBurn",
        "a 98 % objective",
        _replace("> 1 * 0.01", "> 1 * 0.02"),
    ),
    (
        "CodatFreshnessSLOSlowBurn",
        "no 3d window",
        _replace("ratio_avg3d > 1", "ratio_avg6h > 1"),
    ),
    ("CodatDataTypeSyncFailing", "no grace for a retry", _replace("[30m]", "[1m]")),
    (
        "CodatDataTypeSyncFailing",
        "Complete does not end it",
        _replace('status="Complete"', 'status="Never"'),
    ),
    ("CodatDataTypeNeverSynced", "failing first syncs too", _replace("|PrerequisiteNotMet", "")),
    ("CodatDataTypeNeverSynced", "company age off by a minute", _replace("> 86400", "> 86340")),
    ("CodatDataTypeNeverSynced", "company age ignored", _replace(")\nand on (", ")\nor on (")),
    (
        "CodatExporterAPIKeyRejected",
        "fires without rejections",
        _replace(") > 0\nor", ") >= 0\nor"),
    ),
    (
        "CodatExporterAPIKeyRejected",
        "blind to a new 401 series",
        _replace('reason="api_key_rejected"', 'reason="none"'),
    ),
    ("CodatExporterAPIKeyRejected", "a shorter window", _replace("[10m]", "[9m]")),
    ("CodatExporterDown", "absent target ignored", _replace(" or absent(", " unless absent(")),
    ("CodatExporterPollStalled", "threshold off by a minute", _replace("> 1800", "> 1740")),
]


@pytest.mark.parametrize(
    ("alert", "mutate"),
    [(alert, mutate) for alert, _, mutate in MUTANTS],
    ids=[f"{alert}: {what}" for alert, what, _ in MUTANTS],
)
def test_should_fail_the_unit_tests_of_a_subtly_wrong_rule(
    alert: str, mutate: Any, tmp_path: Path
) -> None:
    # Prepare
    rules = load_yaml(RULES)
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == alert:
                mutate(rule)
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    tests = load_yaml(unit_test_file(alert))
    tests["rule_files"] = ["rules.yml"]
    (tmp_path / "test.yml").write_text(yaml.safe_dump(tests, sort_keys=False))

    # Act
    result = promtool("test", "rules", tmp_path / "test.yml")

    # Check
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"alertname: {alert}," in result.stderr
