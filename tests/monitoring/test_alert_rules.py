"""The alert rules, default and fleet preset: valid for promtool, unit-tested alert by alert,
and every unit test strong enough that a rule firing a minute early or at its threshold
fails it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.core.families import FLEET_PRESET_DENYLIST
from monitoring.rules import seconds
from tests.promtools import (
    PRESET_RULE_TESTS,
    PRESET_RULES,
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
    tailored_unit_tests,
)

pytestmark = pytest.mark.prometheus

ANNOTATIONS = {"summary", "description", "runbook_url", "dashboard_url"}
COMPANY_PAGE = "http://localhost:9781/?company={{ $labels.company_id | urlquery }}"
AUTH_ERROR_PAGE = "http://localhost:9781/?status=AuthError"
PLATFORM_PAGE = "http://localhost:9781/?status=failing&platform={{ $labels.platform | urlquery }}"


@dataclass(frozen=True)
class Variant:
    name: str
    rules: Path
    tests: Path
    status_pages: dict[str, str]
    """Alert -> its status_page annotation; the other alerts have none."""

    def __str__(self) -> str:
        return self.name


DEFAULT = Variant(
    "default",
    RULES,
    RULE_TESTS,
    dict.fromkeys(
        (
            "CodatConnectionDeauthorized",
            "CodatCompanyAuthError",
            "CodatDataTypeStale",
            "CodatDataTypeNeverSynced",
            "CodatDataTypeSyncFailing",
            "CodatDataTypeSyncStuck",
            "CodatExporterCompanyPollFailing",
            "CodatExporterCompanyNotFound",
        ),
        COMPANY_PAGE,
    )
    | {"CodatPlatformSyncFailures": PLATFORM_PAGE},
)
PRESET = Variant(
    "fleet-preset",
    PRESET_RULES,
    PRESET_RULE_TESTS,
    {
        "CodatConnectionsDeauthorized": (
            "http://localhost:9781/?connection=Deauthorized"
            "&platform={{ $labels.platform | urlquery }}"
        ),
        "CodatExporterCompanyPollFailing": COMPANY_PAGE,
        "CodatExporterCompanyNotFound": COMPANY_PAGE,
        "CodatDataTypeStaleCompanies": (
            "http://localhost:9781/?status=stale&data_type={{ $labels.data_type | urlquery }}"
        ),
        "CodatAuthErrorCompanies": AUTH_ERROR_PAGE,
        "CodatPlatformSyncFailures": PLATFORM_PAGE,
    },
)
VARIANTS = (DEFAULT, PRESET)
SHARED_WITH_THE_DEFAULT = (
    "CodatExporterCompanyNotFound",
    "CodatExporterAPIKeyRejected",
    "CodatExporterDown",
    "CodatExporterPollStalled",
    "CodatExporterStateFileErrors",
)
"""The preset's alerts that are the default's but for their dashboard link, unit-tested by
the default's tests with that link changed (``unit_test_file``). The others have tests of
their own; CodatExporterCompanyPollFailing among them, as its description cannot look up
the last successful poll, a family the preset denies."""
COMPANY_DASHBOARD = "/d/codat-company/codat-company?"
PRESET_COMPANY_DASHBOARD = "/d/codat-fleet-preset/codat-fleet-preset?"


def annotations_of(variant: Variant, alert: str) -> set[str]:
    return ANNOTATIONS | ({"status_page"} if alert in variant.status_pages else set())


def each_alert() -> list[Any]:
    return [
        pytest.param(variant, rule, id=f"{variant}: {rule['alert']}")
        for variant in VARIANTS
        for rule in alert_rules(variant.rules)
    ]


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("promtool"), *map(str, args)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )


def unit_test_file(variant: Variant, alert: str, tmp_path: Path) -> Path:
    """The alert's unit tests as promtool reads them: the variant's own file, or for an
    alert the preset shares, the default's run against the preset's rules."""
    own = variant.tests / f"{alert}.test.yml"
    if own.exists():
        return own
    text = (DEFAULT.tests / f"{alert}.test.yml").read_text()
    text = text.replace(COMPANY_DASHBOARD, PRESET_COMPANY_DASHBOARD)
    text = text.replace("rule_files: [../codat-freshness-exporter.rules.yml]", "rule_files: []")
    tests = yaml.safe_load(text)
    tests["rule_files"] = [str(variant.rules)]
    copy = tmp_path / f"{alert}.test.yml"
    copy.write_text(yaml.safe_dump(tests, sort_keys=False, allow_unicode=True))
    return copy


@pytest.mark.parametrize("variant", VARIANTS, ids=str)
def test_should_pass_promtool_check_rules(variant: Variant) -> None:
    # Act
    result = promtool("check", "rules", variant.rules)

    # Check
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(all_rules(variant.rules))} rules found" in result.stdout


@pytest.mark.parametrize("variant", VARIANTS, ids=str)
def test_should_pass_every_promtool_unit_test(variant: Variant, tmp_path: Path) -> None:
    # Prepare
    own = sorted(variant.tests.glob("*.test.yml"))
    shared = [
        unit_test_file(variant, rule["alert"], tmp_path)
        for rule in alert_rules(variant.rules)
        if not (variant.tests / f"{rule['alert']}.test.yml").exists()
    ]

    # Act
    result = promtool("test", "rules", *own, *shared)

    # Check
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(own) + len(shared)


TAILORING = """
extra_labels: {team: finance-ops}
alerts:
  CodatDataTypeNeverSynced: {enabled: false}
  CodatAuthErrorCompanies: {enabled: false}
  CodatExporterStateFileErrors: {enabled: false}
  CodatExporterDown: {extra_labels: {team: platform, pager: "yes"}}
"""
"""Switched off: an alert of the default rules only, one of the preset's only, and one they
share; CodatExporterDown relabelled over the labels every alert gets."""


def tailored_config(tmp_path: Path) -> Path:
    """monitoring/config.yml with TAILORING's keys set in it."""
    config = load_yaml(ROOT / "monitoring" / "config.yml")
    tailoring = yaml.safe_load(TAILORING)
    config["extra_labels"] = tailoring["extra_labels"]
    for name, keys in tailoring["alerts"].items():
        config["alerts"][name].update(keys)
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.mark.parametrize("variant", VARIANTS, ids=str)
def test_should_leave_out_disabled_alerts_and_label_the_rest_in_both_rule_files(
    variant: Variant, tmp_path: Path
) -> None:
    # Prepare
    config = tailored_config(tmp_path)
    everything = {rule["alert"] for rule in alert_rules(variant.rules)}

    # Act
    result = subprocess.run(
        [sys.executable, "-m", "monitoring.generate", "--config", config, "--out", tmp_path],
        cwd=ROOT, check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    # Check: the enabled alerts only, each labelled, the extra labels over the global ones
    assert result.returncode == 0, result.stderr
    rules = tmp_path / variant.rules.relative_to(ROOT)
    kept = {rule["alert"]: rule["labels"] for rule in alert_rules(rules)}
    assert set(kept) == everything - {
        "CodatDataTypeNeverSynced", "CodatAuthErrorCompanies", "CodatExporterStateFileErrors",
    }  # fmt: skip
    committed = {rule["alert"]: rule["labels"] for rule in alert_rules(variant.rules)}
    extra = {name: {"team": "finance-ops"} for name in kept}
    extra["CodatExporterDown"] = {"team": "platform", "pager": "yes"}
    assert kept == {name: {**committed[name], **extra[name]} for name in kept}
    # Check: what is enabled passes its promtool unit tests, expecting the new labels
    assert promtool("check", "rules", rules).returncode == 0
    tests = tailored_unit_tests(
        [
            *variant.tests.glob("*.test.yml"),
            *(unit_test_file(variant, name, tmp_path) for name in everything),
        ],
        rules, extra, tmp_path,
    )  # fmt: skip
    run = promtool("test", "rules", *sorted(set(tests)))
    assert run.returncode == 0, run.stdout + run.stderr
    tested = {case["alertname"] for t in tests for g in load_yaml(t)["tests"]
              for case in g["alert_rule_test"]}  # fmt: skip
    assert tested == set(kept)


def test_should_share_only_the_exporter_alerts_with_the_default_rules() -> None:
    # Prepare
    default = {rule["alert"]: rule for rule in alert_rules()}
    preset = {rule["alert"]: rule for rule in alert_rules(PRESET_RULES)}

    # Act
    borrowed = {name for name in preset if not (PRESET_RULE_TESTS / f"{name}.test.yml").exists()}
    differing = {
        name
        for name in borrowed
        if json.dumps(default[name]).replace(COMPANY_DASHBOARD, PRESET_COMPANY_DASHBOARD)
        != json.dumps(preset[name])
    }

    # Check
    assert borrowed == set(SHARED_WITH_THE_DEFAULT)
    assert not differing


def test_should_keep_every_family_the_preset_denies_out_of_the_fleet_preset_rules() -> None:
    # Prepare: expressions and the queries in annotations alike; a family the exporter does
    # not export would leave an alert that never fires, or a description that prints "never".
    text = PRESET_RULES.read_text()

    # Act
    used = {name for name in FLEET_PRESET_DENYLIST if name in text}

    # Check
    assert FLEET_PRESET_DENYLIST and not used
    assert {"codat_data_type_stale_companies", "codat_connections"} <= {
        name for rule in all_rules(PRESET_RULES) for name in metric_names(rule["expr"])
    }


@pytest.mark.parametrize(("variant", "rule"), each_alert())
def test_should_unit_test_the_alert_firing_and_not_firing(
    variant: Variant, rule: dict[str, Any], tmp_path: Path
) -> None:
    # Prepare
    cases = [
        case
        for group in load_yaml(unit_test_file(variant, rule["alert"], tmp_path))["tests"]
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
        set(alert.get("exp_annotations", {})) == annotations_of(variant, rule["alert"])
        for alert in firing
    )


@pytest.mark.parametrize(("variant", "rule"), each_alert())
def test_should_give_the_alert_a_severity_and_templated_annotations(
    variant: Variant, rule: dict[str, Any]
) -> None:
    # Act
    annotations = rule["annotations"]

    # Check
    assert rule["labels"]["severity"] in {"critical", "warning", "info"}
    assert set(annotations) == annotations_of(variant, rule["alert"])
    assert "{{ $labels." in annotations["description"]
    assert not metric_names(rule["expr"]) - exported_metric_names() - recorded_names() - {"up"}


@pytest.mark.parametrize("variant", VARIANTS, ids=str)
def test_should_link_every_company_alert_to_the_status_page_filtered_to_it(
    variant: Variant,
) -> None:
    # Act
    links = {
        rule["alert"]: rule["annotations"].get("status_page") for rule in alert_rules(variant.rules)
    }

    # Check
    assert {name: link for name, link in links.items() if link} == variant.status_pages


def test_should_keep_free_text_out_of_every_alert_label() -> None:
    # Prepare: label_replace or label_join could turn a data type list or an error message
    # into a label value; annotations look such things up with query instead.
    exprs = [rule["expr"] for variant in VARIANTS for rule in all_rules(variant.rules)]

    # Act
    rewriting = [expr for expr in exprs if "label_replace" in expr or "label_join" in expr]

    # Check
    assert not rewriting


@pytest.mark.parametrize(("variant", "rule"), each_alert())
def test_should_link_the_alert_to_its_runbook_section_and_an_existing_dashboard(
    variant: Variant, rule: dict[str, Any]
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


def _shorter_for(rule: dict[str, Any], step: int) -> None:
    """One evaluation of the alert's unit test shorter: the finest step it can tell."""
    rule["for"] = f"{seconds(rule['for']) - step}s"


def _replace(old: str, new: str) -> Any:
    def mutate(rule: dict[str, Any], step: int) -> None:
        assert old in rule["expr"]
        rule["expr"] = rule["expr"].replace(old, new)

    return mutate


def _no_keep_firing_for(rule: dict[str, Any], step: int) -> None:
    assert rule.pop("keep_firing_for")


def _drop_unless(rule: dict[str, Any], step: int) -> None:
    """The expression without its ``unless ... > time()`` clause (the pause)."""
    pause = re.compile(r"\n\s*unless on \([^)]*\)\n\s*\S+\{[^}]*\} > time\(\)\n")
    assert pause.search(rule["expr"])
    rule["expr"] = pause.sub("\n", rule["expr"])


@dataclass(frozen=True)
class Mutant:
    variant: Variant
    alert: str
    """Whose unit tests must fail: an alert's, or ``recording-rules``."""
    what: str
    mutate: Any
    rule: str = ""
    """The rule mutated (an alert or a recorded series), if not ``alert`` itself."""


MUTANTS = [
    *[
        Mutant(variant, rule["alert"], "for one minute shorter", _shorter_for)
        for variant in VARIANTS
        for rule in alert_rules(variant.rules)
        if "for" in rule
    ],
    *[
        Mutant(variant, alert, "no keep_firing_for", _no_keep_firing_for)
        for variant, alert in (
            (DEFAULT, "CodatDataTypeStale"),
            (DEFAULT, "CodatConnectionDeauthorized"),
            (DEFAULT, "CodatDataTypeSyncStuck"),
            (PRESET, "CodatConnectionsDeauthorized"),
            (PRESET, "CodatDataTypeStaleCompanies"),
            (PRESET, "CodatAuthErrorCompanies"),
            (PRESET, "CodatExporterCompanyPollFailing"),
            (DEFAULT, "CodatExporterCompanyNotFound"),
            (PRESET, "CodatExporterCompanyNotFound"),
            (DEFAULT, "CodatPlatformSyncFailures"),
            (PRESET, "CodatPlatformSyncFailures"),
        )
    ],
    *[
        mutant
        for variant in VARIANTS
        for mutant in (
            Mutant(
                variant,
                "CodatPlatformSyncFailures",
                "an incident above the threshold only",
                _replace(") >= 10", ") > 10"),
            ),
            Mutant(
                variant,
                "CodatPlatformSyncFailures",
                "one shard's count, not the job's",
                _replace("sum without (instance)", "sum without ()"),
            ),
            Mutant(
                variant,
                "CodatPlatformSyncFailures",
                "one alert for every platform",
                _replace("sum without (instance)", "sum without (instance, platform)"),
            ),
        )
    ],
    *[
        Mutant(
            DEFAULT, alert, "no platform label", _replace("group_left (platform)", "group_left ()")
        )
        for alert in ("CodatDataTypeSyncFailing", "CodatDataTypeStale")
    ],
    Mutant(
        DEFAULT,
        "CodatDataTypeSyncFailing",
        "the platform of an Unlinked connection too",
        _replace('source_type="Accounting", status="Linked"', 'source_type="Accounting"'),
    ),
    Mutant(
        DEFAULT,
        "CodatDataTypeSyncFailing",
        "a bank feed's pairs given the accounting platform",
        _replace(' data_type!~"banking-.+|commerce-.+"', ""),
    ),
    *[
        Mutant(
            variant,
            "CodatExporterCompanyPollFailing",
            "pages for a company Codat does not know too",
            _replace(
                "\nunless on (job, instance, company_id)\n", "\nor on (job, instance, company_id)\n"
            ),
        )
        for variant in VARIANTS
    ],
    Mutant(DEFAULT, "CodatDataTypeStale", "stale at equality", _replace("> on", ">= on")),
    Mutant(DEFAULT, "CodatDataTypeStale", "a pause ignored", _drop_unless),
    Mutant(DEFAULT, "CodatDataTypeStale", "a pause for ever", _replace("> time()", "> 0")),
    Mutant(DEFAULT, "CodatCompanyAuthError", "no grace for a retry", _replace("[30m]", "[1m]")),
    Mutant(
        DEFAULT,
        "CodatCompanyAuthError",
        "one alert per data type",
        _replace("count without (data_type)", "count without ()"),
    ),
    Mutant(
        DEFAULT,
        "CodatCompanyAuthError",
        "Complete does not end it",
        _replace('status="Complete"', 'status="Never"'),
    ),
    Mutant(
        DEFAULT,
        "CodatConnectionDeauthorized",
        "any status but Linked",
        _replace('status="Deauthorized"', 'status!="Linked"'),
    ),
    Mutant(
        DEFAULT, "CodatFreshnessSLOFastBurn", "12x instead of 14.4x", _replace("> 14.4 *", "> 12 *")
    ),
    Mutant(DEFAULT, "CodatFreshnessSLOFastBurn", "4x instead of 6x", _replace("> 6 *", "> 4 *")),
    Mutant(
        DEFAULT,
        "CodatFreshnessSLOFastBurn",
        "no 6h/30m condition",
        _replace("ratio_avg6h > 6 * 0.01", "ratio_avg6h > 60 * 0.01"),
    ),
    Mutant(
        DEFAULT,
        "CodatFreshnessSLOSlowBurn",
        "a 98 % objective",
        _replace("> 1 * 0.01", "> 1 * 0.02"),
    ),
    Mutant(
        DEFAULT,
        "CodatFreshnessSLOSlowBurn",
        "no 3d window",
        _replace("ratio_avg3d > 1", "ratio_avg6h > 1"),
    ),
    Mutant(DEFAULT, "CodatDataTypeSyncFailing", "no grace for a retry", _replace("[30m]", "[1m]")),
    Mutant(
        DEFAULT,
        "CodatDataTypeSyncFailing",
        "Complete does not end it",
        _replace('status="Complete"', 'status="Never"'),
    ),
    Mutant(
        DEFAULT,
        "CodatDataTypeNeverSynced",
        "failing first syncs too",
        _replace("|PrerequisiteNotMet", ""),
    ),
    Mutant(
        DEFAULT,
        "CodatDataTypeNeverSynced",
        "company age off by a minute",
        _replace("> 86400", "> 86340"),
    ),
    Mutant(
        DEFAULT,
        "CodatDataTypeNeverSynced",
        "company age ignored",
        _replace(")\nand on (", ")\nor on ("),
    ),
    Mutant(
        DEFAULT,
        "CodatDataTypeSyncStuck",
        "threshold off by a minute",
        _replace("> 21600", "> 21540"),
    ),
    Mutant(
        DEFAULT,
        "CodatDataTypeSyncStuck",
        "one alert per data type",
        _replace("max without (data_type)", "max without ()"),
    ),
    Mutant(DEFAULT, "CodatDataTypeSyncStuck", "paused pairs too", _drop_unless),
    Mutant(
        DEFAULT,
        "CodatExporterAPIKeyRejected",
        "fires without rejections",
        _replace(") > 0\nor", ") >= 0\nor"),
    ),
    Mutant(
        DEFAULT,
        "CodatExporterAPIKeyRejected",
        "blind to a new 401 series",
        _replace('reason="api_key_rejected"', 'reason="none"'),
    ),
    Mutant(DEFAULT, "CodatExporterAPIKeyRejected", "a shorter window", _replace("[10m]", "[9m]")),
    Mutant(
        DEFAULT,
        "CodatExporterDown",
        "absent target ignored",
        _replace(" or absent(", " unless absent("),
    ),
    Mutant(
        DEFAULT,
        "CodatExporterPollStalled",
        "threshold off by a minute",
        _replace("> 1800", "> 1740"),
    ),
    Mutant(
        DEFAULT, "CodatExporterStateFileErrors", "fires without errors", _replace("> 0", ">= 0")
    ),
    Mutant(DEFAULT, "CodatExporterStateFileErrors", "a shorter window", _replace("[15m]", "[14m]")),
    Mutant(
        PRESET,
        "CodatDataTypeStaleCompanies",
        "fires without stale companies",
        _replace("> 0", ">= 0"),
    ),
    Mutant(
        PRESET,
        "CodatConnectionsDeauthorized",
        "fires without deauthorized connections",
        _replace("> 0", ">= 0"),
    ),
    Mutant(
        PRESET,
        "CodatConnectionsDeauthorized",
        "any status but Linked",
        _replace('status="Deauthorized"', 'status!="Linked"'),
    ),
    Mutant(
        PRESET,
        "CodatConnectionsDeauthorized",
        "one alert per exporter, not per platform",
        _replace(
            'codat_connections{job="codat-freshness-exporter", status="Deauthorized"}',
            'sum without (platform) (codat_connections{job="codat-freshness-exporter", '
            'status="Deauthorized"})',
        ),
    ),
    Mutant(
        PRESET,
        "CodatAuthErrorCompanies",
        "one alert per data type",
        _replace("sum without (data_type, status)", "sum without (status)"),
    ),
    Mutant(
        PRESET,
        "CodatFreshnessSLOFastBurn",
        "a share of data types, not of pairs",
        _replace(
            "sum without (instance, data_type) (codat_data_type_sync_age_seconds_count",
            "count without (instance, data_type) (codat_data_type_sync_age_seconds_count",
        ),
        rule="job:codat_pairs_fresh:ratio",
    ),
    Mutant(
        PRESET,
        "recording-rules",
        "synced pairs of one shard only",
        _replace(
            "sum without (instance) (codat_data_type_sync_age_seconds_count",
            "max without (instance) (codat_data_type_sync_age_seconds_count",
        ),
        rule="job_data_type:codat_pairs_fresh:ratio",
    ),
]


@pytest.mark.parametrize(
    "mutant", MUTANTS, ids=[f"{m.variant}: {m.alert}: {m.what}" for m in MUTANTS]
)
def test_should_fail_the_unit_tests_of_a_subtly_wrong_rule(mutant: Mutant, tmp_path: Path) -> None:
    # Prepare
    tests = load_yaml(unit_test_file(mutant.variant, mutant.alert, tmp_path))
    step = seconds(tests.get("evaluation_interval", "1m"))
    rules = load_yaml(mutant.variant.rules)
    mutated = [
        rule
        for group in rules["groups"]
        for rule in group["rules"]
        if rule.get("alert", rule.get("record")) == (mutant.rule or mutant.alert)
    ]
    assert len(mutated) == 1
    mutant.mutate(mutated[0], step)
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    tests["rule_files"] = ["rules.yml"]
    (tmp_path / "test.yml").write_text(yaml.safe_dump(tests, sort_keys=False))

    # Act
    result = promtool("test", "rules", tmp_path / "test.yml")

    # Check
    assert result.returncode == 1, result.stdout + result.stderr
    failed = "expr: " if mutant.alert == "recording-rules" else f"alertname: {mutant.alert},"
    assert failed in result.stderr
