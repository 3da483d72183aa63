"""Sizing before a start: ``--check-config`` prints the request estimate the start-up log
makes (and its warning), and with discovery the largest fleet a config fits, run as the real
program against the simulated Codat; the sizing table of docs/configuration.md held to the
estimate, and its memory to bench/RESULTS.md. tests/deploy/test_kubernetes.py and
tests/deploy/test_helm.py hold the deployments' defaults to the fleet size they state."""

from __future__ import annotations

import doctest
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.config.durations import format_duration
from exporter.config.load import load_config
from exporter.poll import budget, sizing
from exporter.poll.budget import FRIENDLY_INTERVALS
from exporter.simulator.fleet import Fleet
from exporter.simulator.server import SimulatedCodat
from tests.harness import API_KEY, FakeClock
from tests.promtools import ROOT

LOGGED_WARNING = re.compile(r"^\S+ \S+ WARNING exporter\.poll\.poller: (.*)$", re.M)
"""A warning of the start-up estimate, as the text log format writes it."""
LARGEST = re.compile(r"^largest fleet this config fits: ([\d,]+) companies by (.*?) \(", re.M)


def run(config: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", "--config.file", str(config), *flags],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "TEST_CODAT_KEY": API_KEY},
    )  # fmt: skip


def write(tmp_path: Path, simulator: SimulatedCodat | None, /, **sections: Any) -> Path:
    url = simulator.url if simulator else "https://api.codat.io"
    raw = {"codat": {"base_url": url, "api_key": "${TEST_CODAT_KEY}", "timeout": "5s"}}
    for name, section in sections.items():
        raw[name] = {**raw.get(name, {}), **section}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def simulated(companies: int) -> Iterator[SimulatedCodat]:
    server = SimulatedCodat(Fleet.generate(FakeClock(), companies=companies), API_KEY).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def eight() -> Iterator[SimulatedCodat]:
    yield from simulated(8)


# --- --check-config, as the program runs ------------------------------------------------------


def test_should_print_the_start_logs_estimate_and_warning_for_the_listed_companies(
    tmp_path: Path, eight: SimulatedCodat
) -> None:
    # Prepare: 8 companies every minute: 11,520 polls a day, more than the 9,000 allowed
    ids = sorted(eight.fleet.companies)
    config = write(tmp_path, eight, companies={"ids": ids}, poll={"interval": "1m"})

    # Act
    checked = run(config, "--check-config")
    started = run(config, "--once")

    # Check: exit 0 with the estimate, and the very warning the start logs
    assert checked.returncode == 0, checked.stderr
    out = checked.stdout.splitlines()
    assert out[0].startswith(
        f"{config}: configuration OK, with 1 warning (above): 8 companies, poll every 1m"
    )
    assert out[1].startswith(
        "requests for 8 companies: about 12,496 a day of the 9,000 Codat allows "
        "(1,000 x (1 + 8 companies)); about 8.7 a minute of codat.max_requests_per_minute "
        "(600); polls every 1m: 11,520, connections: 384, company names every 1h: 192, "
        "pull operations: 400"
    ), out[1]
    (logged,) = LOGGED_WARNING.findall(started.stderr)
    assert logged.startswith("Codat daily quota: the exporter needs about 12,496 requests a day")
    assert checked.stderr == f"codat-freshness-exporter: warning: {logged}\n"


def test_should_warn_of_nothing_and_print_the_estimate_when_the_listed_companies_fit(
    tmp_path: Path, eight: SimulatedCodat
) -> None:
    # Prepare
    ids = sorted(eight.fleet.companies)
    config = write(tmp_path, eight, companies={"ids": ids})

    # Act
    checked = run(config, "--check-config")
    started = run(config, "--once")

    # Check
    assert checked.returncode == 0
    assert (checked.stderr, LOGGED_WARNING.findall(started.stderr)) == ("", [])
    assert f"{config}: configuration OK: 8 companies" in checked.stdout
    assert "requests for 8 companies: about 3,280 a day of the 9,000 Codat allows" in (
        checked.stdout
    )


def test_should_print_the_largest_fleet_that_a_start_takes_without_a_warning(
    tmp_path: Path,
) -> None:
    # Prepare: discovery, and polls every 90s: each company costs more (1,058 a day) than it
    # adds to Codat's daily quota (1,000), so the quota bounds the fleet
    config = write(tmp_path, None, companies={"discover": True}, poll={"interval": "90s"})

    # Act
    checked = run(config, "--check-config")

    # Check: what a company costs, and the largest fleet
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr == ""
    assert "requests for each company: about 1,058 a day (polls every 1m30s: 960, " in (
        checked.stdout
    )
    ((largest, by),) = LARGEST.findall(checked.stdout)
    fleet = int(largest.replace(",", ""))
    assert by == "Codat's daily quota"
    assert fleet == 16

    for companies, warned in ((fleet, False), (fleet + 1, True)):
        # Act: the program started on that config, discovering that many companies
        for codat in simulated(companies):
            started = run(write(tmp_path, codat, companies={"discover": True},
                                poll={"interval": "90s"}), "--once")  # fmt: skip

            # Check: the start-up log warns only beyond the largest fleet
            assert started.returncode == 0, started.stderr
            warnings = LOGGED_WARNING.findall(started.stderr)
            assert bool(warnings) is warned, (companies, warnings)
            assert all(w.startswith("Codat daily quota:") for w in warnings)


def test_should_print_the_listed_companies_and_the_largest_fleet_by_the_rate_limit(
    tmp_path: Path, eight: SimulatedCodat
) -> None:
    # Prepare: discovery plus two listed companies, over 3 shards of 200 a minute each
    ids = sorted(eight.fleet.companies)[:2]
    config = write(
        tmp_path, eight, companies={"discover": True, "ids": ids},
        codat={"max_requests_per_minute": 200}, sharding={"shards": 3, "shard": 0},
    )  # fmt: skip

    # Act
    checked = run(config, "--check-config")

    # Check: the listed two, then a company's cost and the fleet the rate limit allows
    assert checked.returncode == 0, checked.stderr
    _, listed, each, largest, roomy = checked.stdout.splitlines()
    assert listed.startswith(
        "requests for the 2 companies listed: about 844 a day of the 3,000 Codat allows"
    )
    assert "a minute per replica of codat.max_requests_per_minute (200)" in listed
    assert each == (
        "requests for each company: about 386 a day (polls every 5m: 288, connections: 48, "
        "pull operations: 50), besides discovery's pages"
    )
    ((fleet, by),) = LARGEST.findall(largest)
    assert by == "codat.max_requests_per_minute"
    assert largest.endswith(
        "; any number by Codat's daily quota (a company adds 1,000 a day to it)"
    )
    loaded = load_config(config, {"TEST_CODAT_KEY": API_KEY})
    fleet_size = int(fleet.replace(",", ""))
    assert budget.estimate_for(loaded, fleet_size).warning() is None
    assert "Codat rate limit" in (budget.estimate_for(loaded, fleet_size + 1).warning() or "")

    # Check: and the fleet the sizing table would give this config, with its headroom
    room = re.fullmatch(
        r"with room to spare \(80% of each limit, as the sizing table keeps\): ([\d,]+) companies",
        roomy,
    )
    assert room is not None, roomy
    spare = int(room[1].replace(",", ""))
    assert sizing.sized(loaded, spare) and not sizing.sized(loaded, spare + 1)
    assert spare < fleet_size


def test_should_keep_exit_2_for_a_config_that_cannot_start(tmp_path: Path) -> None:
    # Prepare
    config = write(tmp_path, None, companies={"discover": True}, poll={"interval": "0s"})

    # Act
    checked = run(config, "--check-config")

    # Check
    assert checked.returncode == 2
    assert checked.stdout == ""
    assert checked.stderr.startswith("codat-freshness-exporter: poll.interval: ")


# --- the sizing table ------------------------------------------------------------------------


@pytest.mark.parametrize("companies", sizing.TABLE_FLEETS)
def test_should_size_each_fleet_of_the_table_at_the_shortest_interval_within_the_headroom(
    companies: int,
) -> None:
    # Act
    suggested = sizing.suggest(companies)

    # Check: no start-up warning, within the headroom, and a shorter interval would not be
    assert suggested is not None
    config = suggested.config
    assert budget.estimate_for(config, companies).warning() is None
    assert sizing.sized(config, companies)
    shorter = FRIENDLY_INTERVALS[FRIENDLY_INTERVALS.index(config.poll.interval) - 1]
    assert not sizing.sized(replace(config, poll=replace(config.poll, interval=shorter)), companies)
    assert config.shard.count * config.codat.max_requests_per_minute <= 600
    assert suggested.estimate == budget.estimate_for(config, companies)


def test_should_show_the_table_in_the_configuration_docs_and_the_readme() -> None:
    # Act
    docs = (ROOT / "docs" / "configuration.md").read_text()
    readme = (ROOT / "README.md").read_text()

    # Check: the generated tables, which the drift test (tests/docs/test_pages.py) keeps current,
    # README's with the same interval, replicas and memory request as the docs' for each fleet
    assert f"<!-- generated:sizing-table -->\n{sizing.table()}\n" in docs
    assert f"<!-- generated:sizing-summary -->\n{sizing.summary()}\n" in readme
    for companies in sizing.TABLE_FLEETS:
        suggested = sizing.suggest(companies)
        assert suggested is not None
        interval = format_duration(suggested.config.poll.interval)
        assert f"\n| {companies:,} | {interval} | {suggested.replicas} | " in docs
        assert f"\n| {companies:,} | {interval} | {suggested.replicas} | " in readme
        assert f"({suggested.memory_request}) |\n" in docs
        assert f" | {suggested.memory_request} |\n" in readme


def test_should_take_the_memory_figures_from_the_benchmarks_latest_results() -> None:
    # Prepare: bench/RESULTS.md's GET /metrics tables, newest first, the exporter's peak RSS
    # per fleet; and the restart's peak at 10,000 companies (bench/restart.py)
    results = (ROOT / "bench" / "RESULTS.md").read_text()
    measured: dict[int, float] = {}
    for companies, peak in re.findall(
        r"^\| ([\d,]+) \| exporter \|(?: [^|]+ \|){5} (\d+) \|", results, re.M
    ):
        measured.setdefault(int(companies.replace(",", "")), float(peak))
    restart_peak = re.search(
        r"^\| today: decoded once the first scrape was sent whole \|(?: [^|]+ \|){5} (\d+) \|",
        results,
        re.M,
    )
    assert restart_peak is not None

    # Act
    figures = dict(sizing.MEASURED_PEAK_RSS)

    # Check: the figures the sizing uses are the newest measured ones, and each replica gets
    # more, enough for a restart from the state file too
    assert measured == figures
    for companies, peak in figures.items():
        assert sizing.memory_mb(companies) >= sizing.MEMORY_HEADROOM * peak
    assert sizing.memory_mb(10_000) >= float(restart_peak.group(1))
    assert sizing.memory_mb(100) < sizing.memory_mb(1000) < sizing.memory_mb(10_000)


def test_should_keep_the_docstring_examples_true() -> None:
    # Act
    results = doctest.testmod(sizing)

    # Check
    assert results.attempted > 0
    assert results.failed == 0
