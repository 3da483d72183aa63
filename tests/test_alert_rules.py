"""The alert rules: valid for promtool, unit-tested alert by alert, and every unit test
strong enough that a rule firing a minute early or at its threshold fails it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.promtools import (
    ROOT,
    RULE_TESTS,
    RULES,
    alert_rules,
    binary,
    dashboards,
    exported_metric_names,
    load_yaml,
    metric_names,
)

pytestmark = pytest.mark.prometheus

ANNOTATIONS = {"summary", "description", "runbook_url", "dashboard_url"}


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


def seconds(duration: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([smhd])", duration))


def test_should_pass_promtool_check_rules() -> None:
    # Act
    result = promtool("check", "rules", RULES)

    # Check
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


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
    assert any(set(alert.get("exp_annotations", {})) == ANNOTATIONS for alert in firing)


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_should_give_the_alert_a_severity_and_templated_annotations(rule: dict[str, Any]) -> None:
    # Act
    annotations = rule["annotations"]

    # Check
    assert rule["labels"]["severity"] in {"critical", "warning", "info"}
    assert set(annotations) == ANNOTATIONS
    assert "{{ $labels." in annotations["description"]
    assert not metric_names(rule["expr"]) - exported_metric_names() - {"up"}


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
    rule["for"] = f"{seconds(rule['for']) - 60}s"


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
    ("CodatDataTypeAuthError", "no grace for a retry", _replace("[30m]", "[1m]")),
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
            if rule["alert"] == alert:
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
