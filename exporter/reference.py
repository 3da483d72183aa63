"""Generates the parts of docs/ that would otherwise drift: the metrics reference
(docs/metrics.md), the configuration keys and the sizing table (docs/configuration.md, and
README.md's shorter one), the ``--help`` text (docs/command-line.md) and README.md's table
of the status page's next steps.
``python -m exporter.reference``, run at the repository's root, rewrites them in place; with
``--check`` it only names the pages that differ::

    $ python -m exporter.reference --check
    docs/metrics.md: generated sections are stale; run: python -m exporter.reference

A test fails when a committed page differs from what this produces."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from exporter.cli import build_parser
from exporter.config.document import NO_DEFAULT, document
from exporter.config.sections import Config
from exporter.core.families import (
    ALL_METRICS,
    COMPANY_NOT_FOUND,
    PER_PAIR,
    REGISTRY_METRICS,
    SCRAPE_METRICS,
    MetricSpec,
)
from exporter.exposition.nextstep import STEPS
from exporter.poll import sizing

DEFAULT_INTERVAL = "5m"


def metrics_reference() -> str:
    rows = [
        "| metric | type | labels | series | updated | description |",
        "|---|---|---|---|---|---|",
    ]
    for spec in ALL_METRICS:
        if spec in SCRAPE_METRICS:
            updated = "every scrape"
        elif spec in REGISTRY_METRICS:
            updated = "as it happens"
        else:
            updated = "every poll"
        labels = ", ".join(f"`{label}`" for label in spec.labels) or "-"
        text = spec.help_text("`poll.interval`").replace("|", "\\|")
        rows.append(
            f"| `{spec.name}` | {spec.type} | {labels} | {_series(spec)} | {updated} | {text} |"
        )
    return "\n".join(rows)


def _series(spec: MetricSpec) -> str:
    """How many series a family costs, the bill ``metrics.denylist`` can cut."""
    if spec.name in PER_PAIR:
        return "**per pair**"
    if spec is COMPANY_NOT_FOUND:
        return "per company not found"
    if "company_id" in spec.labels:
        return "per company"
    if "data_type" in spec.labels:
        return "per data type"
    return "few"


def next_steps() -> str:
    """Who acts on each next step of the status page, as its legend says."""
    rows = ["| the page says (`next_step`) | who acts | when, and what they do |", "|---|---|---|"]
    rows += [f"| {step.text} (`{step.code}`) | {step.who} | {step.when} |" for step in STEPS]
    return "\n".join(rows)


def config_reference() -> str:
    """Every key of the config file, from the dataclasses that declare it."""
    rows = ["| key | type | default | description |", "|---|---|---|---|"]
    for key in document(Config):
        default = key.default if key.default == NO_DEFAULT else f"`{key.default}`"
        cells = (f"`{key.path}`", key.type, default, key.doc)
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(rows)


def cli_help() -> str:
    parser = build_parser()
    parser.formatter_class = _Wide
    return "```text\n" + parser.format_help().rstrip() + "\n```"


class _Wide(argparse.HelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=100, max_help_position=32)


SECTIONS = {
    "metrics-reference": metrics_reference,
    "config-reference": config_reference,
    "cli-help": cli_help,
    "sizing-table": sizing.table,
    "sizing-summary": sizing.summary,
    "next-steps": next_steps,
}

PAGES = {
    "README.md": ("next-steps", "sizing-summary"),
    "docs/metrics.md": ("metrics-reference",),
    "docs/configuration.md": ("config-reference", "sizing-table"),
    "docs/command-line.md": ("cli-help",),
}
"""Where each generated section lives, relative to the repository's root: each in one page."""

COMMAND = "python -m exporter.reference"


def render(text: str, names: tuple[str, ...]) -> str:
    """``text`` with its generated sections ``names``, between their markers, brought up to
    date; a section whose markers are missing is an error, not silently skipped."""
    for name in names:
        make = SECTIONS[name]
        pattern = re.compile(
            rf"(<!-- generated:{name} -->\n)(?:.*?\n)?(<!-- /generated:{name} -->)", re.DOTALL
        )
        if not pattern.search(text):
            raise ValueError(f"no <!-- generated:{name} --> section")
        text = pattern.sub(lambda m, make=make: m[1] + make() + "\n" + m[2], text)  # type: ignore[misc]
    return text


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog=COMMAND,
        description="Rewrite the generated sections of "
        + ", ".join(PAGES)
        + " (run at the repository's root).",
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a page is stale"
    )
    check = parser.parse_args(argv).check
    stale = []
    for page, names in PAGES.items():
        path = Path(page)
        try:
            text = path.read_text(encoding="utf-8")
            fresh = render(text, names)
        except (OSError, ValueError) as error:
            print(f"{COMMAND}: {page}: {error}; run it at the repository's root", file=sys.stderr)
            return 2
        if fresh == text:
            continue
        stale.append(page)
        if check:
            print(f"{page}: generated sections are stale; run: {COMMAND}")
        else:
            path.write_text(fresh, encoding="utf-8")
    return 1 if check and stale else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
