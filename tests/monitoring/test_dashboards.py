"""The Grafana dashboards as committed: generated from monitoring/, valid, consistent, and
querying only what the exporter exports. tests/e2e/test_prometheus.py runs their queries."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.config.sections import PLATFORM_INCIDENT_COMPANIES
from exporter.core.families import ALL_METRICS, FLEET_PRESET_DENYLIST
from exporter.exposition.assess import STUCK_AFTER
from monitoring.generate import PRESET_DASHBOARD_FILE, PRESET_RULES_FILE
from monitoring.grafana_com import EXPORT_DIR
from monitoring.kubernetes import (
    CHART_DASHBOARD_DIR,
    CHART_LINKS_FILE,
    CHART_RULES_FILE,
    DASHBOARDS_FILE,
    PROMETHEUS_RULE_FILE,
)
from tests.grafana_model import problems
from tests.promtools import (
    DASHBOARD_DIR,
    GRAFANA_BUILTINS,
    MONITORING_CONFIG,
    PRESET_DASHBOARD,
    ROOT,
    RULES,
    SCRAPE_METRICS,
    alert_rules,
    all_rules,
    dashboards,
    exported_metric_names,
    load_yaml,
    metric_names,
    panels,
    recorded_names,
    variable_names,
    variable_query,
    variables,
)

UIDS = {
    "fleet.json": "codat-fleet",
    "company.json": "codat-company",
    "exporter.json": "codat-exporter",
    PRESET_DASHBOARD: "codat-fleet-preset",
}
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
EXPORTS = {
    "fleet.json": "fleet.json",
    "company.json": "company.json",
    "exporter.json": "exporter.json",
    "fleet-preset.json": PRESET_DASHBOARD,
}
"""grafana/grafana.com/ file -> the provisioned dashboard it shares."""
UNUSED_ON_PURPOSE: dict[str, str] = {}
"""Metric families no panel and no rule uses, each with the reason. Any other unused family
fails test_should_use_every_metric_family_in_a_panel_or_a_rule."""


def generate(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitoring.generate", *map(str, args)],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )


def queries(board: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in panels(board) for target in panel["targets"]]


def test_should_commit_exactly_what_the_generator_writes(tmp_path: Path) -> None:
    # Act
    result = generate("--out", tmp_path)

    # Check
    assert result.returncode == 0, result.stderr
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(
        [
            RULES.relative_to(ROOT),
            *(p.relative_to(ROOT) for p in DASHBOARD_DIR.glob("*.json")),
            *map(Path, (PROMETHEUS_RULE_FILE, DASHBOARDS_FILE, CHART_RULES_FILE, CHART_LINKS_FILE)),
            *(Path(CHART_DASHBOARD_DIR) / p.name for p in DASHBOARD_DIR.glob("*.json")),
            *map(Path, (PRESET_RULES_FILE, PRESET_DASHBOARD_FILE)),
            *(Path(EXPORT_DIR) / name for name in EXPORTS),
        ]
    )
    stale = [str(p) for p in written if (tmp_path / p).read_bytes() != (ROOT / p).read_bytes()]
    assert not stale, f"run `python -m monitoring.generate` and commit: {stale}"


def test_should_put_a_changed_selector_into_every_rule_and_dashboard(tmp_path: Path) -> None:
    # Prepare
    config = MONITORING_CONFIG.read_text().replace(
        'selector: job="codat-freshness-exporter"', 'selector: job="codat", env="prod"'
    )
    (tmp_path / "config.yml").write_text(config)

    # Act
    result = generate("--config", tmp_path / "config.yml", "--out", tmp_path)

    # Check
    assert result.returncode == 0, result.stderr
    for path in (RULES.relative_to(ROOT), Path(PRESET_RULES_FILE)):
        rules = (tmp_path / path).read_text()
        assert 'codat-freshness-exporter"' not in rules
        assert rules.count('job="codat", env="prod"') >= len(re.findall(r"- alert:", rules))
    for name in UIDS:
        board = (tmp_path / "grafana" / "dashboards" / name).read_text()
        assert (
            'label_values(codat_exporter_build_info{job=\\"codat\\", env=\\"prod\\"}, job)' in board
        )


DOWN = "  CodatExporterDown:\n    severity: critical\n    for: 5m\n"


@pytest.mark.parametrize(
    ("shipped", "mistyped", "message"),
    [
        ("\nselector:", "\nselektor:", "selektor: unknown key; did you mean selector?"),
        (DOWN, DOWN.replace("Down:", "Dwn:"),
         "alerts.CodatExporterDwn: unknown key; did you mean CodatExporterDown?"),
        (DOWN, DOWN.replace("for:", "fro:"),
         "alerts.CodatExporterDown.fro: unknown key; did you mean for?"),
        (DOWN, "", "alerts.CodatExporterDown: required"),
    ],
    ids=["top-level key", "alert name", "alert key", "alert left out"],
)  # fmt: skip
def test_should_name_a_misspelt_or_missing_key_and_the_nearest_known_one(
    shipped: str, mistyped: str, message: str, tmp_path: Path
) -> None:
    # Prepare
    assert MONITORING_CONFIG.read_text().count(shipped) == 1
    config = MONITORING_CONFIG.read_text().replace(shipped, mistyped)
    (tmp_path / "config.yml").write_text(config)

    # Act
    result = generate("--config", tmp_path / "config.yml", "--out", tmp_path)

    # Check
    assert result.returncode == 2
    assert result.stderr == f"monitoring.generate: {message}\n"
    assert not list(tmp_path.rglob("*.json"))


def test_should_name_the_file_and_line_of_a_config_that_is_not_yaml(tmp_path: Path) -> None:
    # Prepare: a list left open at the end of the file
    config = tmp_path / "config.yml"
    config.write_text(MONITORING_CONFIG.read_text() + "extra_labels: [\n")

    # Act
    result = generate("--config", config, "--out", tmp_path)

    # Check: one line, file and line first
    assert result.returncode == 2
    lines = MONITORING_CONFIG.read_text().count("\n") + 2
    assert result.stderr.startswith(f"monitoring.generate: {config}:{lines}:1: not valid YAML: ")
    assert len(result.stderr.splitlines()) == 1
    assert not list(tmp_path.rglob("*.json"))


@pytest.mark.parametrize("objective", ["1.5", "0", "'99%'", "true"])
def test_should_reject_an_objective_that_is_not_a_share(objective: str, tmp_path: Path) -> None:
    # Prepare
    config = MONITORING_CONFIG.read_text().replace("objective: 0.99", f"objective: {objective}")
    (tmp_path / "config.yml").write_text(config)

    # Act
    result = generate("--config", tmp_path / "config.yml", "--out", tmp_path)

    # Check
    assert result.returncode == 2
    assert result.stderr.startswith("monitoring.generate: freshness_slo.objective: ")
    assert len(result.stderr.splitlines()) == 1
    assert not list(tmp_path.rglob("*.json"))


@pytest.mark.parametrize("value", ["5", "'soon'", "-1m"])
def test_should_reject_a_keep_firing_for_that_is_not_a_duration(value: str, tmp_path: Path) -> None:
    # Prepare
    config = MONITORING_CONFIG.read_text().replace(
        "keep_firing_for: 5m", f"keep_firing_for: {value}"
    )
    assert config != MONITORING_CONFIG.read_text()
    (tmp_path / "config.yml").write_text(config)

    # Act
    result = generate("--config", tmp_path / "config.yml", "--out", tmp_path)

    # Check
    assert result.returncode == 2
    assert result.stderr == (
        "monitoring.generate: keep_firing_for: expected a Prometheus duration such as 15m\n"
    )
    assert not list(tmp_path.rglob("*.json"))


@pytest.mark.parametrize(
    ("tailoring", "message"),
    [
        ("extra_labels: {team-x: a}", "extra_labels.team-x: not a label name"),
        ("extra_labels: {__team: a}", "extra_labels.__team: not a label name"),
        ("extra_labels: {severity: page}", "extra_labels.severity: reserved; set the alert's"),
        ("extra_labels: {tier: 1}", "extra_labels.tier: expected a non-empty string"),
        ("extra_labels: [team]", "extra_labels: expected a mapping of label name to value"),
        (
            "alerts: {CodatExporterDown: {enabled: 'no'}}",
            "alerts.CodatExporterDown.enabled: must be true or false, not 'no'",
        ),
        (
            "alerts: {CodatExporterDown: {extra_labels: {alertname: x}}}",
            "alerts.CodatExporterDown.extra_labels.alertname: reserved; Prometheus sets it",
        ),
        (
            "alerts: {CodatPlatformSyncFailures: {companies: 0}}",
            "alerts.CodatPlatformSyncFailures.companies: must be a whole number from 1 to",
        ),
        (
            "alerts: {CodatPlatformSyncFailures: {companies: 'ten'}}",
            "alerts.CodatPlatformSyncFailures.companies: must be a whole number from 1 to",
        ),
    ],
)
def test_should_reject_an_alert_tailoring_prometheus_would_not_take(
    tailoring: str, message: str, tmp_path: Path
) -> None:
    # Prepare: the repository's config with one key set wrong
    config = load_yaml(MONITORING_CONFIG)
    for key, value in yaml.safe_load(tailoring).items():
        if key == "alerts":
            for name, keys in value.items():
                config["alerts"][name].update(keys)
        else:
            config[key] = value
    (tmp_path / "config.yml").write_text(yaml.safe_dump(config))

    # Act
    result = generate("--config", tmp_path / "config.yml", "--out", tmp_path)

    # Check: one line naming the key, nothing written
    assert result.returncode == 2
    assert result.stderr.startswith(f"monitoring.generate: {message}"), result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert not list(tmp_path.rglob("*.json"))


def test_should_wait_the_status_pages_stuck_threshold_unless_config_yml_sets_one(
    tmp_path: Path,
) -> None:
    # Prepare: the repository's config, and a copy that sets the alert's threshold to 8h
    stuck = "  CodatDataTypeSyncStuck:\n    severity: warning\n    for: 0s\n"
    assert stuck in MONITORING_CONFIG.read_text()
    (tmp_path / "config.yml").write_text(
        MONITORING_CONFIG.read_text().replace(stuck, stuck + "    threshold: 8h\n")
    )

    # Act
    result = generate("--config", tmp_path / "config.yml", "--out", tmp_path)

    # Check
    assert result.returncode == 0, result.stderr
    committed = next(r for r in alert_rules(RULES) if r["alert"] == "CodatDataTypeSyncStuck")
    assert f"> {STUCK_AFTER:.0f}\n" in committed["expr"]
    assert "requested more than 6h ago" in committed["annotations"]["description"]
    mine = alert_rules(tmp_path / RULES.relative_to(ROOT))
    moved = next(r for r in mine if r["alert"] == "CodatDataTypeSyncStuck")
    assert "> 28800\n" in moved["expr"] and f"> {STUCK_AFTER:.0f}\n" not in moved["expr"]
    assert "requested more than 8h ago" in moved["annotations"]["description"]


def test_should_page_for_a_platform_from_as_many_companies_as_the_status_page_calls_an_incident(
    tmp_path: Path,
) -> None:
    # Prepare: the repository's config (companies: 10), and a copy without the key
    shipped = "    companies: 10\n"
    assert MONITORING_CONFIG.read_text().count(shipped) == 1
    (tmp_path / "config.yml").write_text(MONITORING_CONFIG.read_text().replace(shipped, ""))

    # Act
    result = generate("--config", tmp_path / "config.yml", "--out", tmp_path)

    # Check: the shipped count is the exporter's default, and a config without one takes it
    assert result.returncode == 0, result.stderr
    assert PLATFORM_INCIDENT_COMPANIES == 10
    for rules in (RULES, tmp_path / RULES.relative_to(ROOT)):
        (platform,) = [r for r in alert_rules(rules) if r["alert"] == "CodatPlatformSyncFailures"]
        assert platform["expr"].endswith(f") >= {PLATFORM_INCIDENT_COMPANIES}\n")


def test_should_give_each_dashboard_its_stable_uid_and_the_shared_tag() -> None:
    # Act
    boards = dashboards()

    # Check
    assert {name: board["uid"] for name, board in boards.items()} == UIDS
    for board in boards.values():
        assert "codat-freshness-exporter" in board["tags"]


def test_should_number_panels_uniquely_without_overlaps() -> None:
    for name, board in dashboards().items():
        # Act
        ids = [panel["id"] for panel in board["panels"]]
        cells = [
            (x, y)
            for panel in board["panels"]
            for x in range(panel["gridPos"]["x"], panel["gridPos"]["x"] + panel["gridPos"]["w"])
            for y in range(panel["gridPos"]["y"], panel["gridPos"]["y"] + panel["gridPos"]["h"])
        ]

        # Check
        assert len(ids) == len(set(ids)), name
        assert len(cells) == len(set(cells)), f"{name}: panels overlap"
        assert all(x < 24 for x, _ in cells), f"{name}: a panel is wider than the grid"


def test_should_query_through_the_datasource_variable_everywhere() -> None:
    for name, board in dashboards().items():
        # Act
        variable = variables(board).get("datasource", {})
        queried = list(panels(board))

        # Check
        assert variable.get("type") == "datasource" and variable.get("query") == "prometheus"
        assert queried, name
        for panel in queried:
            assert panel["datasource"] == DATASOURCE, f"{name}: {panel['title']}"
            assert panel["targets"], f"{name}: {panel['title']} has no query"
            assert all(t["datasource"] == DATASOURCE for t in panel["targets"]), panel["title"]
        for query_variable in variables(board).values():
            if query_variable["type"] == "query":
                assert query_variable["datasource"] == DATASOURCE


def test_should_offer_the_job_company_and_data_type_variables() -> None:
    # Act
    offered = {name: list(variables(board)) for name, board in dashboards().items()}

    # Check
    assert offered == {
        "fleet.json": ["datasource", "job", "company", "data_type"],
        "company.json": ["datasource", "job", "company", "data_type"],
        "exporter.json": ["datasource", "job"],
        PRESET_DASHBOARD: ["datasource", "job", "company", "data_type"],
    }


def test_should_use_only_variables_the_dashboard_defines() -> None:
    for name, board in dashboards().items():
        # Prepare
        defined = set(variables(board)) | set(GRAFANA_BUILTINS)
        texts = queries(board) + [
            v["query"] for v in variables(board).values() if v["type"] == "query"
        ]

        # Act
        used = set().union(*(variable_names(text) for text in texts))

        # Check
        assert used <= defined, f"{name}: undefined {used - defined}"


def used_metric_names() -> set[str]:
    """Every series name a panel, a template variable or a rule selects."""
    used = {name for rule in all_rules() for name in metric_names(rule["expr"])}
    for board in dashboards().values():
        used |= set().union(*(metric_names(expr) for expr in queries(board)))
        used |= {
            metric
            for variable in variables(board).values()
            if variable["type"] == "query"
            for metric in metric_names(variable_query(variable["query"])[0])
        }
    return used


def test_should_use_every_metric_family_in_a_panel_or_a_rule() -> None:
    # Prepare
    used = used_metric_names()

    # Act
    unused = {
        spec.name
        for spec in ALL_METRICS
        if not {spec.name, f"{spec.name}_bucket", f"{spec.name}_count"} & used
    }

    # Check
    assert unused - set(UNUSED_ON_PURPOSE) == set(), (
        "add a panel or a rule for these, or list them in UNUSED_ON_PURPOSE with the reason"
    )
    assert unused >= set(UNUSED_ON_PURPOSE) & {spec.name for spec in ALL_METRICS}, (
        "a family listed as unused on purpose is used now: remove it from UNUSED_ON_PURPOSE"
    )


@pytest.mark.parametrize("name", UIDS)
def test_should_match_grafana_s_own_dashboard_model(name: str) -> None:
    # Act
    found = problems(dashboards()[name])

    # Check
    assert found == []


def test_should_report_a_key_grafana_does_not_know_and_a_value_outside_its_enum() -> None:
    # Prepare
    board = dashboards()["fleet.json"]
    stat = next(panel for panel in panels(board) if panel["type"] == "stat")
    stat["options"]["colorMode"] = "backgrond"
    stat["gridPoss"] = stat["gridPos"]

    # Act
    found = problems(board)

    # Check
    index = board["panels"].index(stat)
    assert f"panels[{index}].gridPoss: not in Grafana's model" in found
    assert f"panels[{index}].options.color_mode: 'backgrond' is not a BigValueColorMode" in found


def _fleet_panel(title: str) -> dict[str, Any]:
    return next(p for p in panels(dashboards()["fleet.json"]) if p["title"] == title)


def test_should_list_every_stale_pair_most_overdue_first() -> None:
    # Act
    stale_table = _fleet_panel("Stale pairs")
    exprs = [target["expr"] for target in stale_table["targets"]]

    # Check: no top-N cut, every query limited to the stale pairs, sorted by age / max age.
    assert not [expr for expr in exprs if re.search(r"\b(topk|bottomk|limitk|sort)\b", expr)]
    stale = (
        "codat_data_type_last_successful_sync_age_seconds{%s} > on (job, instance, company_id, "
        "data_type) group_left () codat_data_type_max_age_seconds{%s}"
    )
    sel = 'job=~"$job", company_id=~"$company", data_type=~"$data_type"'
    assert all(stale % (sel, sel) in expr for expr in exprs)
    assert all("group_left (status) codat_data_type_status" in expr for expr in exprs)
    renamed = stale_table["transformations"][2]["options"]["renameByName"]
    assert list(renamed.values()) == [
        "Company",
        "Data type",
        "Status",
        "Age",
        "Max age",
        "% of max age",
    ]
    assert stale_table["options"]["sortBy"] == [{"displayName": "% of max age", "desc": True}]


def test_should_list_deauthorized_connections_as_needing_a_relink() -> None:
    # Act
    relink = _fleet_panel("Needs relink")

    # Check
    (target,) = relink["targets"]
    assert target["expr"] == (
        'codat_connection_status{job=~"$job", company_id=~"$company", status="Deauthorized"} == 1'
    )
    renamed = relink["transformations"][2]["options"]["renameByName"]
    assert set(renamed.values()) == {"Company", "Platform", "Source type", "Connection id"}


def test_should_put_the_configured_objective_into_the_rules_and_the_fleet_dashboard(
    tmp_path: Path,
) -> None:
    # Prepare
    config = MONITORING_CONFIG.read_text().replace("objective: 0.99", "objective: 0.95")
    assert config != MONITORING_CONFIG.read_text()
    (tmp_path / "config.yml").write_text(config)

    # Act
    result = generate("--config", tmp_path / "config.yml", "--out", tmp_path)

    # Check
    assert result.returncode == 0, result.stderr
    rules = load_yaml(tmp_path / RULES.relative_to(ROOT))
    burn = [r["expr"] for g in rules["groups"] for r in g["rules"] if "Burn" in r.get("alert", "")]
    assert len(burn) == 2 and all("* 0.05\n" in expr for expr in burn)
    fleet = (tmp_path / "grafana" / "dashboards" / "fleet.json").read_text()
    assert '"value": 0.95' in fleet and "/ 0.05" in fleet


def test_should_query_only_metrics_the_exporter_exports() -> None:
    # Prepare
    known = exported_metric_names() | SCRAPE_METRICS | recorded_names()

    for name, board in dashboards().items():
        # Act
        used = set().union(*(metric_names(expr) for expr in queries(board)))
        used |= {
            metric
            for variable in variables(board).values()
            if variable["type"] == "query"
            for metric in metric_names(variable_query(variable["query"])[0])
        }

        # Check
        assert used, name
        assert not used - known, f"{name} queries unknown metrics {used - known}"


def test_should_find_every_metric_name_in_a_query_and_nothing_else() -> None:
    # Prepare
    expr = (
        'histogram_quantile(0.9, sum by (le, endpoint) (rate(a_bucket{job=~"$job"}'
        "[$__rate_interval]))) / on (job, instance) group_left () b_total offset 5m"
        ' or label_replace(vector(1), "status", "c_not_a_metric", "", "") > bool 1e3'
    )

    # Act
    found = metric_names(expr)

    # Check
    assert found == {"a_bucket", "b_total"}


def test_should_link_the_dashboards_to_each_other() -> None:
    boards = dashboards()
    uids = {board["uid"] for board in boards.values()}
    for name, board in boards.items():
        # Act
        tag_links = [link for link in board["links"] if link["type"] == "dashboards"]
        data_links = re.findall(r'"url": "/d/([\w-]+)/', str(board).replace("'", '"'))

        # Check
        assert tag_links, name
        for link in tag_links:
            assert set(link["tags"]) <= set(board["tags"]) and link["includeVars"]
        assert set(data_links) <= uids
    assert any(board["uid"] == "codat-company" for board in boards.values())
    assert re.search(r"/d/codat-company/", (DASHBOARD_DIR / "fleet.json").read_text())


@pytest.mark.parametrize(
    ("line", "value", "text"),
    [
        (
            '{company_id="dc25-74bd",company_name="O\'Brien & Daughters Ltd"} 1 1700000000000',
            "dc25-74bd",
            "O'Brien & Daughters Ltd",
        ),
        ('{company_id="a1", company_name="Say "Hi" Ltd"} 1 1700000000000', "a1", 'Say "Hi" Ltd'),
    ],
)
def test_should_show_company_names_and_select_company_ids(line: str, value: str, text: str) -> None:
    # Prepare: Grafana renders each query_result() series as the line above and applies the
    # variable's regex (JavaScript syntax) to it.
    regex = variables(dashboards()["company.json"])["company"]["regex"]
    pattern = re.compile(regex.strip("/").replace("(?<", "(?P<"))

    # Act
    match = pattern.search(line)

    # Check
    assert match is not None
    assert (match["value"], match["text"]) == (value, text)


def test_should_keep_every_family_the_preset_denies_out_of_the_fleet_preset_dashboard() -> None:
    # Prepare: panels, variables and links alike; a denied family would leave a panel empty.
    board = dashboards()[PRESET_DASHBOARD]
    text = json.dumps(board)

    # Act
    used = {name for name in FLEET_PRESET_DENYLIST if name in text}

    # Check
    assert FLEET_PRESET_DENYLIST and not used
    assert {
        "codat_data_type_stale_companies",
        "codat_data_type_companies",
        "codat_connections",
        "codat_exporter_company_up",
    } <= set().union(*(metric_names(expr) for expr in queries(board)))


@pytest.mark.parametrize("name", ["fleet.json", PRESET_DASHBOARD])
def test_should_show_median_and_95th_percentile_sync_durations_per_data_type(name: str) -> None:
    # Act
    durations = _panel(name, "Sync durations per data type")
    exprs = [target["expr"] for target in durations["targets"]]

    # Check
    for quantile, expr in zip(("0.5", "0.95"), exprs, strict=False):
        assert expr.startswith(f"histogram_quantile({quantile}, sum by (data_type, le) (")
        assert "codat_data_type_sync_duration_seconds_bucket{" in expr
    renamed = durations["transformations"][2]["options"]["renameByName"]
    assert list(renamed.values()) == ["Data type", "Median", "95th percentile", "Syncs seen"]


@pytest.mark.parametrize("name", ["fleet.json", PRESET_DASHBOARD])
def test_should_show_the_fleet_s_sync_ages_as_a_heatmap_per_data_type(name: str) -> None:
    # Act
    ages = _panel(name, "Ages of the last successful sync: $data_type")

    # Check: Prometheus' own buckets (no re-bucketing by Grafana), one panel per data type.
    (target,) = ages["targets"]
    assert ages["type"] == "heatmap" and ages["options"]["calculate"] is False
    assert target["format"] == "heatmap"
    assert target["expr"] == (
        'sum by (le) (codat_data_type_sync_age_seconds_bucket{job=~"$job", '
        'data_type=~"$data_type"})'
    )
    assert ages["repeat"] == "data_type"
    assert variables(dashboards()[name])["data_type"]["multi"]


@pytest.mark.parametrize("name", ["fleet.json", PRESET_DASHBOARD])
def test_should_link_the_fleet_dashboards_to_the_status_page(name: str) -> None:
    # Act
    links = [link for link in dashboards()[name]["links"] if link["type"] == "link"]

    # Check
    assert [(link["title"], link["url"]) for link in links] == [
        ("Status page", "http://localhost:9781/")
    ]


def _panel(name: str, title: str) -> dict[str, Any]:
    (found,) = [p for p in panels(dashboards()[name]) if p["title"] == title]
    return found


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_should_import_from_grafana_com_as_the_provisioned_dashboard_on_the_chosen_source(
    name: str,
) -> None:
    # Prepare
    text = (ROOT / EXPORT_DIR / name).read_text()
    export = json.loads(text)
    provisioned = dashboards()[EXPORTS[name]]
    compose = load_yaml(ROOT / "docker-compose.yml")["services"]["grafana"]["image"]
    types = {p["type"] for p in provisioned["panels"] for p in [p, *p.get("panels", [])]} - {"row"}

    # Act: what Grafana's import does with the data source chosen for the input
    (source,) = export["__inputs"]
    imported = json.loads(text.replace(f"${{{source['name']}}}", "chosen-uid"))
    for key in ("__inputs", "__elements", "__requires"):
        del imported[key]
    model_problems = problems({k: v for k, v in imported.items() if k != "id"})  # null: new

    # Check: it asks for a Prometheus, names what it needs, and is otherwise the same
    assert (source["type"], source["pluginId"]) == ("datasource", "prometheus")
    requires = {(r["type"], r["id"]): r["version"] for r in export["__requires"]}
    assert requires.pop(("grafana", "grafana")) == compose.rsplit(":", 1)[1]
    assert requires.pop(("datasource", "prometheus"))
    assert {kind for _, kind in requires} == types
    assert imported.pop("id") is None
    assert variables(imported)["datasource"].pop("current") == {
        "text": "chosen-uid", "value": "chosen-uid",
    }  # fmt: skip
    assert variables(provisioned)["datasource"].pop("current") == {}
    assert imported == provisioned
    assert model_problems == []
