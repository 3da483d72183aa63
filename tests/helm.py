"""The Helm chart rendered and linted by Helm's own Go code, without a ``helm`` binary:
``helm-python-sdk`` (pinned in the test extras) binds Helm 4's SDK, so ``template`` renders as
``helm template`` does and ``lint`` checks as ``helm lint`` does.

Also a command line for .ci/run and for the commands of README and docs/kubernetes.md,
taking the same arguments as helm for what it does::

    python -m tests.helm lint --strict charts/codat-freshness-exporter --set apiKey=x
    python -m tests.helm template codat-freshness-exporter charts/codat-freshness-exporter \\
        --namespace codat-freshness-exporter --set-file apiKey=./codat-api-key

``install`` is ``template`` (what ``helm install`` would apply; ``--create-namespace`` is
accepted and does nothing, as there is no cluster).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.manifests import Rendered
from tests.promtools import ROOT

CHART = ROOT / "charts" / "codat-freshness-exporter"
RELEASE = NAMESPACE = "codat-freshness-exporter"
PACKAGE = "helm-python-sdk"
NOT_MANIFESTS = ("NOTES.txt",)
"""Rendered templates that ``helm template`` does not print."""


def sdk() -> ModuleType:
    """Helm's SDK, or skip; under CI (env CI set) a missing one fails instead."""
    try:
        import helm_python
    except ImportError:
        reason = f"{PACKAGE} is not installed (pip install -e '.[test]' brings it)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; .ci/run must install it")
        pytest.skip(reason)
    return helm_python


def manifests(
    values: dict[str, Any] | None = None,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
    chart: Path = CHART,
) -> str:
    """What ``helm template release chart --namespace namespace`` prints: every rendered
    template but the notes, as one YAML stream."""
    helm = sdk()
    with helm.Chart.load(str(chart)) as loaded:
        rendered: dict[str, str] = loaded.render(
            values or {}, name=release, namespace=namespace, is_install=True
        )
    return "".join(
        f"---\n# Source: {path}\n{text.strip()}\n"
        for path, text in sorted(rendered.items())
        if text.strip() and not path.endswith(NOT_MANIFESTS)
    )


def template(
    values: dict[str, Any] | None = None, release: str = RELEASE, namespace: str = NAMESPACE
) -> Rendered:
    """The chart's objects with ``values``, as ``helm install`` would apply them."""
    text = manifests(values, release, namespace)
    objects = [item for item in yaml.safe_load_all(text) if item]
    return Rendered(f"helm {values or {}}", objects)


def lint_errors(
    values: dict[str, Any] | None = None, chart: Path = CHART, namespace: str = NAMESPACE
) -> list[str]:
    """``helm lint --strict``'s findings that fail it (warnings and errors), one line each."""
    helm = sdk()
    report = helm.lint(str(chart), values or {}, strict=True, namespace=namespace)
    failing = [
        f"{m['path']}: {m['error']}" for m in report["messages"] if m["severity"] >= 2
    ]  # 2 = warning, 3 = error
    return failing + list(report.get("errors") or [])


def _values(args: argparse.Namespace) -> dict[str, Any]:
    """-f files, then --set, then --set-file, merged as helm merges them."""
    helm = sdk()
    values: dict[str, Any] = {}
    for path in args.values:
        values = _merged(values, yaml.safe_load(Path(path).read_text()) or {})
    for item in args.set:
        values = _merged(values, helm.parse_set_string(item))
    for item in args.set_file:
        values = _merged(values, helm.parse_set_file(item))
    return values


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.helm", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    lint = commands.add_parser("lint")
    lint.add_argument("--strict", action="store_true", required=True)
    lint.add_argument("chart", type=Path)
    render = commands.add_parser("template", aliases=["install"])
    render.add_argument("release")
    render.add_argument("chart", type=Path)
    render.add_argument("--namespace", "-n", default="default")
    render.add_argument("--create-namespace", action="store_true")
    for command in (lint, render):
        command.add_argument("--values", "-f", action="append", default=[])
        command.add_argument("--set", action="append", default=[])
        command.add_argument("--set-file", action="append", default=[])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    values = _values(args)
    if args.command == "lint":
        errors = lint_errors(values, args.chart)
        for line in errors:
            print(f"[ERROR] {line}", file=sys.stderr)
        print(f"{args.chart}: {'failed' if errors else 'linted'} (helm lint --strict)")
        return 1 if errors else 0
    sys.stdout.write(manifests(values, args.release, args.namespace, args.chart))
    return 0


if __name__ == "__main__":
    sys.exit(main())
