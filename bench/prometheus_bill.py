"""The series bill and restarts at fleet scale, measured from Prometheus' side, in one run.

    .venv/bin/python bench/prometheus_bill.py                      # 10,000 x 25, about 12 min
    .venv/bin/python bench/prometheus_bill.py --output bench/RESULTS.md   # ... and record it
    .venv/bin/python bench/prometheus_bill.py --companies 20 --scrapes 1 --json    # a smoke run,
        # with --scrape-interval 1s --scrape-timeout 1s
        # as tests/bench/test_prometheus_bill.py runs it

One simulated Codat (``sim_proc.py``, its wall clock frozen at its start) serves three
phases in turn:

1. **default** and 2. **fleet preset**: an exporter process (``exporter_proc.py``, its wall
   clock frozen at the simulator's instant; the fleet preset denies
   ``FLEET_PRESET_DENYLIST``) polls the whole fleet once, then serves; a real Prometheus of
   its own (temporary storage, loopback, port 0) scrapes it every 15 s with a 10 s timeout.
   After ``--scrapes`` scrapes: series in the head (``prometheus_tsdb_head_series``),
   Prometheus' and the exporter's peak RSS (VmHWM), the first and the median
   ``scrape_duration_seconds``, and the stale pairs per data type, read with PromQL.
   Both clocks are frozen so that every scrape of either exporter computes the same ages:
   the fleet preset's ``codat_data_type_stale_companies`` and the default mode's
   ``count by (data_type) (age > max age)`` are then exactly comparable although two
   Prometheus servers take them minutes apart (each evaluated at one instant).
3. **restart**: ``python -m exporter --once`` with ``state.file`` polls the fleet and writes
   the file; then ``python -m exporter`` starts with it (production rate limit and
   concurrency) and the seconds from its start until /metrics holds every company's
   ``codat_exporter_company_up`` are measured; then the file's size and the time of
   ``exporter.poll.statefile.save`` (and ``load``) of the same state, in this process.

Progress goes to stderr, the summary (Markdown) to stdout; ``--output`` inserts it at the top
of a results file, below its title, and keeps what was there. Every wait is bounded, and
every process started here is stopped in a ``finally``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
import yaml
from common import (
    DATA_TYPES,
    Child,
    cpu_seconds,
    exporter_settings,
    insert_below_title,
    log,
    machine,
    median,
    memory_status,
    start_child,
    verdict,
)

from exporter.config.durations import parse_duration
from exporter.config.load import parse_config
from exporter.core.families import COMPANY_UP, LAST_SYNC_AGE, MAX_AGE, STALE_COMPANIES
from exporter.exposition import saved
from exporter.poll import statefile

SERIES_RATIO_TARGET = 0.02
RSS_RATIO_TARGET = 0.25
FIRST_SCRAPE_TARGET = 10.0
"""Prometheus' default ``scrape_timeout``."""
RESTART_TARGET = 5.0
CONCURRENCY = 16
"""Of the exporters that fill the snapshot (at no latency) before Prometheus starts."""

PROMETHEUS_LISTENING = re.compile(r'msg="Listening on" address=(\S+)')
EXPORTER_LISTENING = re.compile(r"serving metrics at (\S+)/metrics")
STATE_LOADED = re.compile(r"state file .*")
COMPANY_UP_LINE = b"\n" + COMPANY_UP.name.encode() + b"{"


def stale_pairs(selector: str) -> str:
    """PromQL for the stale pairs per data type, from the per-pair series."""
    return f"count by (data_type) ({LAST_SYNC_AGE.name}{selector} > {MAX_AGE.name}{selector})"


# --- processes ---------------------------------------------------------------------------


def wait_for_log(path: Path, pattern: re.Pattern[str], process: subprocess.Popen[bytes],
                 timeout: float) -> str:  # fmt: skip
    """The first group of ``pattern`` in a process's log, polled every 20 ms, bounded."""
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text(errors="replace") if path.exists() else ""
        match = pattern.search(text)
        if match:
            return match[1]
        if process.poll() is not None:
            raise RuntimeError(f"{path.name}: exited ({process.returncode})\n{text[-2000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path.name}: not listening within {timeout:.0f}s\n{text[-2000:]}")
        time.sleep(0.02)


def stop(process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout``."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@contextmanager
def started(argv: list[str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log_path.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        stop(process)


@dataclass
class Prometheus:
    """A real Prometheus scraping one target, on loopback, with storage in ``workdir``."""

    url: str
    pid: int

    def api(self, path: str, **params: Any) -> Any:
        response = requests.post(f"{self.url}/api/v1/{path}", data=params, timeout=300)
        body = response.json()
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus {path} {params}: {body}")
        return body["data"]

    def query(self, expr: str, at: float) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.api("query", query=expr, time=f"{at:.3f}")["result"]
        return result

    def own_metric(self, name: str) -> float:
        """A sample of Prometheus' own /metrics (it does not scrape itself here)."""
        text = requests.get(f"{self.url}/metrics", timeout=60).text
        match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
        if match is None:
            raise RuntimeError(f"Prometheus exports no {name}")
        return float(match[1])


@contextmanager
def prometheus(binary: str, workdir: Path, job: str, target: str, interval: str,
               timeout: str) -> Iterator[Prometheus]:  # fmt: skip
    config = {
        "global": {"scrape_interval": interval, "scrape_timeout": timeout},
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [target]}]}],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    argv = [
        binary,
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'data'}",
        "--web.listen-address=127.0.0.1:0",
    ]
    log_path = workdir / "prometheus.log"
    with started(argv, log_path) as process:
        address = wait_for_log(log_path, PROMETHEUS_LISTENING, process, 60)
        yield Prometheus(f"http://{address}", process.pid)


# --- default mode and fleet preset -------------------------------------------------------


@dataclass
class ModeRun:
    mode: str
    job: str
    poll_seconds: float
    head_series: float = 0.0
    prometheus_memory: dict[str, float] = field(default_factory=dict)
    prometheus_cpu: float = 0.0
    """CPU seconds Prometheus used from its start to the end of the scrapes."""
    exporter_memory: dict[str, float] = field(default_factory=dict)
    scrapes: list[tuple[float, float, float, float]] = field(default_factory=list)
    """Per scrape, in order: (time, scrape_duration_seconds, up, scrape_samples_scraped)."""
    stale: dict[str, int] = field(default_factory=dict)
    """``codat_data_type_stale_companies`` by data type."""
    counted: dict[str, int] = field(default_factory=dict)
    """``count by (data_type) (age > max age)``, by data type (default mode only)."""
    families: dict[str, int] = field(default_factory=dict)
    """Series in the head by metric name."""
    evaluated_at: float = 0.0
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def first_scrape(self) -> float:
        return self.scrapes[0][1]

    @property
    def median_scrape(self) -> float:
        return median([s[1] for s in self.scrapes])


def by_data_type(result: list[dict[str, Any]]) -> dict[str, int]:
    return {item["metric"]["data_type"]: int(float(item["value"][1])) for item in result}


def scrape_history(
    prom: Prometheus, job: str, at: float
) -> list[tuple[float, float, float, float]]:
    """Every scrape so far, from the series Prometheus records for each one."""
    columns = []
    for name in ("scrape_duration_seconds", "up", "scrape_samples_scraped"):
        (series,) = prom.query(f'{name}{{job="{job}"}}[1d]', at) or [{"values": []}]
        columns.append({float(t): float(v) for t, v in series["values"]})
    return [(t, columns[0][t], columns[1].get(t, 0.0), columns[2].get(t, 0.0))
            for t in sorted(columns[0])]  # fmt: skip


def measure_mode(sim: Child, mode: str, args: argparse.Namespace, workdir: Path) -> ModeRun:
    """One exporter polls the whole fleet, then one Prometheus scrapes it ``args.scrapes``
    times; the figures are read before any heavy query, so the peaks are the scrapes'."""
    job = f"codat-{mode}"
    options = ["--base-url", sim.hello["url"], "--concurrency", str(CONCURRENCY),
               "--frozen-time", repr(sim.hello["time"])]  # fmt: skip
    if mode == "fleet":
        options.append("--fleet-preset")
    companies = sim.hello["companies"]
    with start_child(f"exporter ({mode})", "exporter_proc.py", *options) as exporter:
        log(f"{mode}: polling {companies:,} companies")
        cycle = exporter.ask(300 + companies * 0.05, "cycle")
        if cycle["succeeded"] != companies:
            raise RuntimeError(f"{mode}: polled {cycle['succeeded']} of {companies} companies")
        run = ModeRun(mode, job, cycle["seconds"])
        target = exporter.ask(30, "serve")["url"].removeprefix("http://")
        directory = workdir / mode
        directory.mkdir()
        interval = parse_duration(args.scrape_interval)
        timeout = parse_duration(args.scrape_timeout)
        with prometheus(args.prometheus, directory, job, target, args.scrape_interval,
                        args.scrape_timeout) as prom:  # fmt: skip
            log(f"{mode}: polled in {cycle['seconds']:.1f}s; Prometheus at {prom.url} scrapes")
            deadline = time.monotonic() + (args.scrapes + 2) * interval + 2 * timeout + 120
            done = 0
            while done < args.scrapes:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{mode}: {done} of {args.scrapes} scrapes in time")
                time.sleep(min(1.0, interval / 4))
                result = prom.query(f'count_over_time(up{{job="{job}"}}[1d])', time.time())
                now_done = int(float(result[0]["value"][1])) if result else 0
                if now_done != done:
                    log(f"  {mode}: scrape {now_done} of {args.scrapes}")
                done = now_done
            run.prometheus_memory = memory_status(prom.pid)
            run.prometheus_cpu = cpu_seconds(prom.pid)
            run.exporter_memory = exporter.memory()
            run.head_series = prom.own_metric("prometheus_tsdb_head_series")
            run.load = os.getloadavg()
            run.evaluated_at = time.time()
            run.scrapes = scrape_history(prom, job, run.evaluated_at)
            stale = prom.query(f'{STALE_COMPANIES.name}{{job="{job}"}}', run.evaluated_at)
            run.stale = by_data_type(stale)
            names = prom.query(f'count by (__name__) ({{job="{job}"}})', run.evaluated_at)
            run.families = {i["metric"]["__name__"]: int(i["value"][1]) for i in names}
            if mode == "default":
                run.counted = by_data_type(
                    prom.query(stale_pairs(f'{{job="{job}"}}'), run.evaluated_at)
                )
    log(
        f"{mode}: {run.head_series:,.0f} series, Prometheus peak "
        f"{run.prometheus_memory['VmHWM']:.0f} MB, first scrape {run.first_scrape:.2f}s, "
        f"median {run.median_scrape:.2f}s"
    )
    return run


# --- restart with a state file -----------------------------------------------------------


@dataclass
class RestartRun:
    companies: int
    fill_seconds: float
    """``python -m exporter --once`` that polled the fleet and wrote the file."""
    file_bytes: int
    listening: float
    """Seconds from the restarted process' start to its "serving metrics" log line."""
    full_sent: float
    """... to sending the first GET /metrics whose answer held every company."""
    full_read: float
    """... to having read that answer whole."""
    attempts: int
    cpu_seconds: float
    """CPU seconds the restarted process had used when /metrics held every company."""
    ready_status: int
    loaded_line: str
    exporter_memory: dict[str, float]
    save_seconds: list[float]
    load_seconds: list[float]
    resumed: float = 0.0
    """Seconds from the start until the status page answered 200: the state decoded, the
    poller resumed from it."""
    rendering_bytes: int = 0
    """Of the file, the section holding /metrics' text (``exposition.saved``)."""
    encode_seconds: list[float] = field(default_factory=list)
    """``exposition.saved`` of the served text, which ``save`` writes beside the state."""


def restart(sim: Child, args: argparse.Namespace, workdir: Path) -> RestartRun:
    companies = sim.hello["companies"]
    state_path = workdir / "state.json"
    fill = exporter_settings(sim.hello["url"], CONCURRENCY)
    fill["state"] = {"file": str(state_path)}
    # The restarted exporter runs as production does: the default rate limit and concurrency.
    production = {**fill, "codat": {k: fill["codat"][k] for k in ("base_url", "api_key")}}
    for name, settings in (("fill", fill), ("restart", production)):
        (workdir / f"{name}.yml").write_text(yaml.safe_dump(settings))
    command = [sys.executable, "-m", "exporter", "--web.listen-address", "127.0.0.1:0"]

    log(f"restart: python -m exporter --once polls {companies:,} companies, writes the state")
    started_at = time.monotonic()
    once_argv = [*command, "--config.file", str(workdir / "fill.yml"), "--once"]
    with (workdir / "fill.log").open("wb") as out:
        once = subprocess.run(
            once_argv, stdout=subprocess.DEVNULL, stderr=out, timeout=900, check=False
        )
    fill_seconds = time.monotonic() - started_at
    if once.returncode != 0 or not state_path.exists():
        tail = (workdir / "fill.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"--once exited {once.returncode}\n{tail}")

    log("restart: python -m exporter starts with the state file")
    log_path = workdir / "restart.log"
    argv = [*command, "--config.file", str(workdir / "restart.yml")]
    started_at = time.monotonic()
    with started(argv, log_path) as process:
        url = wait_for_log(log_path, EXPORTER_LISTENING, process, 120)
        listening = time.monotonic() - started_at
        deadline = started_at + 120
        attempts = 0
        while True:
            attempts += 1
            sent = time.monotonic() - started_at
            body = requests.get(url + "/metrics", timeout=120).content
            read = time.monotonic() - started_at
            if body.count(COMPANY_UP_LINE) >= companies:
                cpu = cpu_seconds(process.pid)
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"restart: /metrics short of {companies} companies in time")
            time.sleep(0.05)
        del body
        ready_status = requests.get(url + "/-/ready", timeout=30).status_code
        while requests.get(url + "/", timeout=30).status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("restart: the status page never came back")
            time.sleep(0.05)
        resumed = time.monotonic() - started_at
        memory = memory_status(process.pid)
    text = log_path.read_text(errors="replace")
    loaded = STATE_LOADED.search(text)

    config = parse_config(production)
    shard = config.shard
    saves, loads, encodes = [], [], []
    rendering_bytes = 0
    for _ in range(args.repeats):
        began = time.monotonic()
        found = statefile.read(state_path, shard)
        state = None if found is None else found.state()
        loads.append(time.monotonic() - began)
        if found is None or state is None:
            raise RuntimeError("restart: the state file does not load")
        served = saved.restored(found.rendered, config.freshness, config.poll.interval)
        if served is None:
            raise RuntimeError("restart: the file's rendering is not this configuration's")
        began = time.monotonic()
        rendering = saved.saved(served)
        encodes.append(time.monotonic() - began)
        rendering_bytes = len(rendering)
        began = time.monotonic()
        statefile.save(workdir / "copy.json", state, shard, rendering)
        saves.append(time.monotonic() - began)
        del found, state, served, rendering
    run = RestartRun(
        companies, fill_seconds, state_path.stat().st_size, listening, sent, read, attempts, cpu,
        ready_status, loaded[0] if loaded else "(no state file line logged)", memory, saves,
        loads, resumed, rendering_bytes, encodes,
    )  # fmt: skip
    log(f"restart: every company on /metrics {run.full_sent:.2f}s after start")
    return run


# --- the summary -------------------------------------------------------------------------


def compare(counted: dict[str, int], stale: dict[str, int]) -> list[str]:
    """Data types whose counts differ (a data type missing from a count is 0 there)."""
    return sorted(d for d in {*counted, *stale} if counted.get(d, 0) != stale.get(d, 0))


@dataclass(frozen=True)
class Target:
    text: str
    met: bool

    def line(self) -> str:
        return f"- {self.text}: {verdict(self.met)}"


def targets(default: ModeRun, fleet: ModeRun, again: RestartRun) -> list[Target]:
    series_ratio = fleet.head_series / default.head_series
    rss_ratio = fleet.prometheus_memory["VmHWM"] / default.prometheus_memory["VmHWM"]
    mismatched = compare(default.counted, fleet.stale)
    stale_total = sum(default.counted.values())
    return [
        Target(
            f"fleet preset series: {series_ratio:.1%} of the default's "
            f"({fleet.head_series:,.0f} vs {default.head_series:,.0f}; target <= "
            f"{SERIES_RATIO_TARGET:.0%})",
            series_ratio <= SERIES_RATIO_TARGET,
        ),
        Target(
            f"Prometheus peak RSS, fleet preset vs default: {rss_ratio:.3f}x "
            f"({fleet.prometheus_memory['VmHWM']:.0f} vs "
            f"{default.prometheus_memory['VmHWM']:.0f} MB; target <= {RSS_RATIO_TARGET}x)",
            rss_ratio <= RSS_RATIO_TARGET,
        ),
        Target(
            f"default mode's first scrape: {default.first_scrape:.2f}s, up "
            f"{default.scrapes[0][2]:.0f} (target <= {FIRST_SCRAPE_TARGET:.0f}s, the default "
            "scrape_timeout)",
            default.first_scrape <= FIRST_SCRAPE_TARGET and default.scrapes[0][2] == 1,
        ),
        Target(
            f"fleet preset's `{STALE_COMPANIES.name}` = the default's `{stale_pairs('')}`: "
            + ("equal for every data type" if not mismatched else f"differ for {mismatched}")
            + f" ({len(default.counted | fleet.stale)} data types, {stale_total:,} stale pairs)",
            not mismatched and bool(fleet.stale),
        ),
        Target(
            f"restart with a state file: every company on /metrics {again.full_sent:.2f}s after "
            f"the process started (target <= {RESTART_TARGET:.0f}s)",
            again.full_sent <= RESTART_TARGET,
        ),
    ]


def report(default: ModeRun, fleet: ModeRun, again: RestartRun, args: argparse.Namespace,
           started_at: datetime, seconds: float, load: tuple[str, str]) -> str:  # fmt: skip
    own = compare(default.counted, default.stale)
    companies = again.companies
    size = f"{companies:,} companies x {DATA_TYPES}"
    lines = [
        "## The series bill and restarts, from Prometheus' side",
        "",
        f"Run {started_at:%Y-%m-%d %H:%M} UTC, {seconds / 60:.1f} minutes, with "
        f"`{' '.join(['bench/prometheus_bill.py', *sys.argv[1:]])}` ({size} data types, "
        f"{args.scrapes} scrapes per mode every {args.scrape_interval}, timeout "
        f"{args.scrape_timeout}).",
        f"Machine: {machine()}; {prometheus_version(args.prometheus)}.",
        f"Load average (1, 5, 15 min) at the start: {load[0]}; at the end: {load[1]}.",
        "",
        "### Targets",
        "",
        *(target.line() for target in targets(default, fleet, again)),
        "",
        "### Per mode",
        "",
        "| mode | series in the head | samples per scrape | Prometheus peak RSS MB (now) "
        "| Prometheus CPU s "
        "| first scrape s (up) | median scrape s | scrapes | exporter peak RSS MB (now) "
        "| exporter poll s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in (default, fleet):
        prom, exp = run.prometheus_memory, run.exporter_memory
        lines.append(
            f"| {run.mode} | {run.head_series:,.0f} | {run.scrapes[-1][3]:,.0f} "
            f"| {prom['VmHWM']:,.0f} ({prom['VmRSS']:,.0f}) | {run.prometheus_cpu:.1f} "
            f"| {run.first_scrape:.2f} ({run.scrapes[0][2]:.0f}) | {run.median_scrape:.2f} "
            f"| {len(run.scrapes)} | {exp['VmHWM']:,.0f} ({exp['VmRSS']:,.0f}) "
            f"| {run.poll_seconds:.1f} |"
        )
    lines += [
        "",
        "Each scrape's `scrape_duration_seconds`, in order: "
        + "; ".join(
            f"{run.mode} " + ", ".join(f"{s[1]:.2f}" for s in run.scrapes)
            for run in (default, fleet)
        )
        + ".",
        f"Load average when each mode's figures were read: default {fmt_load(default.load)}; "
        f"fleet preset {fmt_load(fleet.load)}.",
        "",
        "### Series by family",
        "",
        "In the head of each Prometheus (`count by (__name__)`), the families with more than "
        "100 series; the rest summed:",
        "",
        "| family | default | fleet preset |",
        "|---|---:|---:|",
        *family_rows(default.families, fleet.families),
        "",
        "### Stale pairs per data type",
        "",
        f"The default mode's `{stale_pairs('')}` and its own `{STALE_COMPANIES.name}` (one "
        f"Prometheus, one evaluation time), and the fleet preset's `{STALE_COMPANIES.name}` "
        f"(its Prometheus, {fleet.evaluated_at - default.evaluated_at:.0f} s later). "
        "The simulator's and both exporters' wall clocks are frozen at one instant, so every "
        "scrape of either exporter has the same ages. The default's own aggregate "
        + ("agrees too." if not own else f"differs for {own}."),
        "",
        "| data type | default: count of age > max age | default: stale_companies "
        "| fleet preset: stale_companies |",
        "|---|---:|---:|---:|",
        *(
            f"| {d} | {default.counted.get(d, 0):,} | {default.stale.get(d, 0):,} "
            f"| {fleet.stale.get(d, 0):,} |"
            for d in sorted(default.counted | default.stale | fleet.stale)
        ),
        "",
        "### Restart with a state file",
        "",
        f"- `python -m exporter --once` polled {companies:,} companies and wrote the state "
        f"file in {again.fill_seconds:.1f} s (the whole process, at no latency and "
        f"{CONCURRENCY} requests in flight); the file is {again.file_bytes / 1e6:.1f} MB.",
        f"- Restarted (`python -m exporter`, default rate limit and concurrency): it logged "
        f'"serving metrics" {again.listening:.2f} s after the process started; the first '
        f"GET /metrics holding all {companies:,} `{COMPANY_UP.name}` series was sent at "
        f"{again.full_sent:.2f} s and read whole at {again.full_read:.2f} s (request "
        f"{again.attempts}), when the process had used {again.cpu_seconds:.2f} CPU seconds; "
        f"`/-/ready` then answered {again.ready_status}; its peak RSS by then "
        f"{again.exporter_memory['VmHWM']:.0f} MB. Its log: `{again.loaded_line}`.",
        f"- Its status page answered 200 (the state decoded and the poller resumed from it) "
        f'{again.resumed:.2f} s after the start; until then it answered 503 "Loading the '
        'state file".',
        f"- Of the file, {again.rendering_bytes / 1e6:.1f} MB are /metrics' text as served "
        f"(`exposition.saved`: median {median(again.encode_seconds):.2f} s). "
        f"`exporter.poll.statefile.save` of the state and that text: median "
        f"{median(again.save_seconds):.2f} s (of {len(again.save_seconds)}: "
        f"{', '.join(f'{s:.2f}' for s in again.save_seconds)}); `statefile.read` and "
        f"decoding the state: median {median(again.load_seconds):.2f} s, in this process.",
    ]
    return "\n".join(lines)


def family_rows(default: dict[str, int], fleet: dict[str, int]) -> list[str]:
    big = sorted(n for n in default | fleet if max(default.get(n, 0), fleet.get(n, 0)) > 100)
    rows = [
        f"| `{n}` | {default.get(n, 0):,} | {fleet.get(n, 0):,} |"
        for n in sorted(big, key=lambda n: (-fleet.get(n, 0), -default.get(n, 0), n))
    ]
    rest = [sum(v for n, v in counts.items() if n not in big) for counts in (default, fleet)]
    return [*rows, f"| the {len(set(default | fleet) - set(big))} others | {rest[0]:,} "
            f"| {rest[1]:,} |"]  # fmt: skip


def fmt_load(load: tuple[float, float, float]) -> str:
    return " ".join(f"{value:.2f}" for value in load)


def prometheus_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    first = (out.stdout or out.stderr).splitlines()
    return first[0] if first else "prometheus (version unknown)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--companies", type=int, default=10_000, help="default 10,000")
    parser.add_argument("--scrapes", type=int, default=8, help="scrapes per mode (default 8)")
    parser.add_argument("--scrape-interval", default="15s", help="default 15s")
    parser.add_argument("--scrape-timeout", default="10s", help="default 10s")
    parser.add_argument("--repeats", type=int, default=3, help="state file saves (default 3)")
    parser.add_argument("--prometheus", default=shutil.which("prometheus") or "/usr/bin/prometheus")
    parser.add_argument(
        "--restart-only",
        action="store_true",
        help="only the restart phase, its figures as JSON (no targets judged)",
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--output", type=Path, help="insert the summary at the top of this file")
    output.add_argument("--json", action="store_true", help="print the figures as JSON instead")
    args = parser.parse_args()
    if not Path(args.prometheus).exists():
        parser.error(f"no Prometheus at {args.prometheus} (Debian: apt-get install prometheus)")
    started_at, clock = datetime.now(UTC), time.monotonic()
    load_before = fmt_load(os.getloadavg())
    sim_args = ("--companies", str(args.companies), "--data-types", str(DATA_TYPES), "--frozen")
    log(f"simulated Codat with {args.companies:,} companies x {DATA_TYPES} data types")
    with (
        tempfile.TemporaryDirectory(prefix="prometheus-bill-") as temporary,
        start_child("simulator", "sim_proc.py", *sim_args) as sim,
    ):
        workdir = Path(temporary)
        if args.restart_only:
            print(json.dumps(asdict(restart(sim, args, workdir)), indent=1))
            return 0
        default = measure_mode(sim, "default", args, workdir)
        fleet = measure_mode(sim, "fleet", args, workdir)
        again = restart(sim, args, workdir)
    if args.json:
        figures = {
            "default": asdict(default),
            "fleet": asdict(fleet),
            "restart": asdict(again),
            "targets": [asdict(target) for target in targets(default, fleet, again)],
        }
        print(json.dumps(figures, indent=1))
        return 0
    text = report(default, fleet, again, args, started_at, time.monotonic() - clock,
                  (load_before, fmt_load(os.getloadavg())))  # fmt: skip
    print(text)
    if args.output is not None:
        insert_below_title(args.output, text)
        log(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
