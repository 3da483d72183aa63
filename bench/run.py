"""The fleet-scale benchmark: poll throughput and /metrics scrapes at 1,000 and 10,000
companies x 25 data types, against the simulated Codat over loopback, in one run.

    .venv/bin/python bench/run.py            # the full run (about 25 minutes), into RESULTS.md
    .venv/bin/python bench/run.py --quick    # 1,000 companies, 3 repetitions, prints only

Every party runs in a process of its own (simulated Codat, exporter, naive baseline), so that
none shares another's GIL and each peak RSS is its own. See bench/README.md for what each
figure means.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import queue
import re
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from common import (
    BENCH_DIR,
    DATA_TYPES,
    LATENCY,
    Child,
    auth_header,
    cpu_seconds,
    insert_below_title,
    list_companies,
    log,
    machine,
    median,
    start_child,
    verdict,
)

AGE_FAMILY = b"codat_data_type_last_successful_sync_age_seconds"
DATA_STATUS = "/companies/{companyId}/dataStatus"
SCRAPE_TARGET_SECONDS = 1.0
SPEEDUP_TARGET = 10.0
RSS_TARGET_MB = 400.0
RSS_RATIO_TARGET = 0.4
THROUGHPUT_TARGET = 0.8


# --- poll throughput -------------------------------------------------------------------


@dataclass
class PollRun:
    companies: int
    concurrency: int
    kind: str
    """``exporter``."""
    warmup: dict[str, Any]
    cycles: list[dict[str, Any]] = field(default_factory=list)
    served: list[dict[str, int]] = field(default_factory=list)
    """Per cycle, the requests the simulator served, by route."""
    simulator_cpu: list[float] = field(default_factory=list)

    @property
    def limit(self) -> float:
        return self.concurrency / LATENCY

    @property
    def median_seconds(self) -> float:
        return median([c["seconds"] for c in self.cycles])

    @property
    def rate(self) -> float:
        return self.companies / self.median_seconds

    @property
    def request_rate(self) -> float:
        """Requests a second the simulator served in a cycle (median): dataStatus, and the
        pull operations that diagnostics reads for the pairs whose latest sync changed."""
        return median(
            [sum(s.values()) / c["seconds"] for s, c in zip(self.served, self.cycles, strict=True)]
        )

    @property
    def ratio(self) -> float:
        return self.request_rate / self.limit

    def data_status_counts(self) -> tuple[set[int], set[int]]:
        """dataStatus requests per cycle: (as the exporter counted them, as Codat served them)."""
        exporter = {sum(c["requests"].get(DATA_STATUS, {}).values()) for c in self.cycles}
        codat = {s.get(DATA_STATUS, 0) for s in self.served}
        return exporter, codat

    def other_requests(self) -> Counter[str]:
        """Requests other than dataStatus over all measured cycles, by route and code."""
        other: Counter[str] = Counter()
        for cycle in self.cycles:
            for route, codes in cycle["requests"].items():
                for code, count in codes.items():
                    if route != DATA_STATUS or code != "200":
                        other[f"{route} {code}"] += count
        return other


def served_delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {route: n - before.get(route, 0) for route, n in after.items() if n != before.get(route)}


def poll_throughput(
    sim: Child, companies: int, concurrency: int, reps: int, kind: str = "exporter"
) -> PollRun:
    """One exporter process: a warm-up cycle at no latency (it also fetches every company's
    name), then ``reps`` steady-state cycles at ``LATENCY`` per request."""
    cycle_timeout = 120 + 3 * companies * LATENCY / concurrency
    sim.ask(30, "latency", seconds=0.0)
    name = f"{kind} C={concurrency}"
    args = ("--base-url", sim.hello["url"], "--concurrency", str(concurrency))
    with start_child(name, "exporter_proc.py", *args) as exporter:
        run = PollRun(companies, concurrency, kind, exporter.ask(cycle_timeout, "cycle"))
        sim.ask(30, "latency", seconds=LATENCY)
        for rep in range(reps):
            before = sim.ask(30, "requests")["requests"]
            sim_cpu = cpu_seconds(sim.pid)
            cycle = exporter.ask(cycle_timeout, "cycle")
            run.simulator_cpu.append(cpu_seconds(sim.pid) - sim_cpu)
            run.served.append(served_delta(sim.ask(30, "requests")["requests"], before))
            run.cycles.append(cycle)
            if cycle["succeeded"] != companies:
                raise RuntimeError(f"{name}: cycle {rep} polled {cycle['succeeded']} companies")
            seconds = cycle["seconds"]
            log(
                f"  {kind} {companies} x C={concurrency} cycle {rep + 1}/{reps}: {seconds:.2f}s "
                f"({companies / seconds:.0f} companies/s)"
            )
        sim.ask(30, "latency", seconds=0.0)
    return run


@dataclass
class Ceiling:
    companies: int
    concurrency: int
    seconds: list[float]

    @property
    def ratio(self) -> float:
        return self.companies / median(self.seconds) / (self.concurrency / LATENCY)


def ceiling(sim: Child, companies: int, concurrency: int, reps: int) -> Ceiling:
    """The most this simulator and machine allow: ``concurrency`` threads of a bare
    ``http.client`` loop (persistent connections, ``json.loads`` and nothing else) fetching
    every company's dataStatus at ``LATENCY``, in this otherwise idle process."""
    url = sim.hello["url"]
    host, port = url.removeprefix("http://").split(":")
    ids = list(list_companies(url))
    headers = auth_header()
    sim.ask(30, "latency", seconds=LATENCY)
    result = Ceiling(companies, concurrency, [])
    for _ in range(reps):
        todo: queue.SimpleQueue[str] = queue.SimpleQueue()
        for company_id in ids:
            todo.put(company_id)
        deadline = time.monotonic() + 120 + 3 * companies * LATENCY / concurrency

        def work(todo: queue.SimpleQueue[str], deadline: float) -> None:
            connection = http.client.HTTPConnection(host, int(port), timeout=30)
            while time.monotonic() < deadline:
                try:
                    company_id = todo.get_nowait()
                except queue.Empty:
                    break
                connection.request("GET", f"/companies/{company_id}/dataStatus", headers=headers)
                json.loads(connection.getresponse().read())
            connection.close()

        started = time.monotonic()
        threads = [threading.Thread(target=work, args=(todo, deadline)) for _ in range(concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        result.seconds.append(time.monotonic() - started)
        log(f"  ceiling {companies} x C={concurrency}: {result.seconds[-1]:.2f}s")
    sim.ask(30, "latency", seconds=0.0)
    return result


# --- scrapes ---------------------------------------------------------------------------


@dataclass
class ScrapeRun:
    companies: int
    kind: str
    """``exporter`` or ``baseline``."""
    plain: list[float] = field(default_factory=list)
    gzip: list[float] = field(default_factory=list)
    plain_bytes: int = 0
    gzip_bytes: int = 0
    cold_gzip: float = 0.0
    """The first gzip scrape after the poll (the exporter compresses its static part then)."""
    poll_seconds: list[float] = field(default_factory=list)
    rss_after_poll: dict[str, float] = field(default_factory=dict)
    rss_after_scrapes: dict[str, float] = field(default_factory=dict)
    series: Counter[str] = field(default_factory=Counter)
    age_drift: float = 0.0
    """How much the first age grew between two scrapes, minus the time between them."""

    @property
    def peak_rss(self) -> float:
        return self.rss_after_scrapes["VmHWM"]


def scrape(url: str, compressed: bool) -> tuple[float, bytes]:
    """GET /metrics; the seconds until the whole body is read, and the body as sent."""
    encoding = "gzip" if compressed else "identity"
    started = time.monotonic()
    with requests.get(
        url + "/metrics", headers={"Accept-Encoding": encoding}, stream=True, timeout=300
    ) as response:
        body = response.raw.read(decode_content=False)
        seconds = time.monotonic() - started
        response.raise_for_status()
        if compressed != (response.headers.get("Content-Encoding") == "gzip"):
            raise RuntimeError(
                f"{url}: Content-Encoding {response.headers.get('Content-Encoding')}"
            )
    return seconds, body


def first_age(body: bytes) -> tuple[bytes, float]:
    start = body.index(AGE_FAMILY + b"{")
    line = body[start : body.index(b"\n", start)]
    labels, _, value = line.rpartition(b" ")
    return labels, float(value)


def series_by_family(body: bytes) -> Counter[str]:
    names = re.findall(rb"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", body, re.MULTILINE)
    return Counter(name.decode() for name in names if name.startswith(b"codat_"))


def scrape_run(sim: Child, companies: int, kind: str, reps: int) -> ScrapeRun:
    """Poll twice at no latency (the second cycle replaces the first snapshot, as in steady
    state), then serve and scrape: two plain scrapes a second apart to check that ages are
    computed at scrape time, one cold gzip scrape, then ``reps`` plain and ``reps`` gzip."""
    sim.ask(30, "latency", seconds=0.0)
    script = "baseline_proc.py" if kind == "baseline" else "exporter_proc.py"
    args = ["--base-url", sim.hello["url"], "--concurrency", "16"]
    run = ScrapeRun(companies, kind)
    with start_child(kind, script, *args) as child:
        for _ in range(2):
            cycle = child.ask(120 + companies * 0.05, "cycle")
            if cycle["succeeded"] != companies:
                raise RuntimeError(f"{kind}: polled {cycle['succeeded']} of {companies}")
            run.poll_seconds.append(cycle["seconds"])
        run.rss_after_poll = child.memory()
        url = child.ask(30, "serve")["url"]
        first_at = time.time()
        _, first = scrape(url, compressed=False)
        labels, age = first_age(first)
        run.series = series_by_family(first)
        time.sleep(1.0)
        second_at = time.time()
        _, second = scrape(url, compressed=False)
        labels_again, age_again = first_age(second)
        if labels_again != labels:
            raise RuntimeError(f"{kind}: the first age series changed between scrapes")
        run.age_drift = (age_again - age) - (second_at - first_at)
        del first, second
        run.cold_gzip, body = scrape(url, compressed=True)
        if first_age(gzip.decompress(body))[0] != labels:
            raise RuntimeError(f"{kind}: the gzip body does not hold the same ages")
        for _ in range(reps):
            seconds, body = scrape(url, compressed=False)
            run.plain.append(seconds)
            run.plain_bytes = len(body)
        for _ in range(reps):
            seconds, body = scrape(url, compressed=True)
            run.gzip.append(seconds)
            run.gzip_bytes = len(body)
        del body
        run.rss_after_scrapes = child.memory()
    log(
        f"  {companies} {kind}: plain {median(run.plain):.3f}s, gzip {median(run.gzip):.3f}s, "
        f"peak RSS {run.peak_rss:.0f} MB"
    )
    return run


# --- reporting -------------------------------------------------------------------------


def fmt_counts(values: set[int]) -> str:
    return ", ".join(f"{v:,}" for v in sorted(values))


def poll_table(runs: list[PollRun], reps: int) -> list[str]:
    lines = [
        f"| companies x 25 | C | polled by | cycle s (median of {reps}) | companies/s "
        "| requests/s | limit C/latency "
        "| ratio (target >= 0.8) | dataStatus requests per cycle (exporter; Codat) "
        "| other requests in the measured cycles | CPU ms per company (exporter; Codat) |",
        "|---:|---:|---|---:|---:|---:|---:|---|---|---|---|",
    ]
    for run in runs:
        exporter, codat = run.data_status_counts()
        exact = " (exactly one per company)" if exporter == codat == {run.companies} else ""
        other = ", ".join(f"{k}: {v}" for k, v in run.other_requests().items()) or "none"
        exporter_cpu = median([c["cpu_seconds"] for c in run.cycles]) / run.companies * 1000
        codat_cpu = median(run.simulator_cpu) / run.companies * 1000
        lines.append(
            f"| {run.companies:,} | {run.concurrency} | {run.kind} | {run.median_seconds:.2f} "
            f"| {run.rate:.1f} | {run.request_rate:.1f} | {run.limit:.0f} "
            f"| {run.ratio:.2f} {verdict(run.ratio >= THROUGHPUT_TARGET)} "
            f"| {fmt_counts(exporter)}; {fmt_counts(codat)}{exact} | {other} "
            f"| {exporter_cpu:.2f}; {codat_cpu:.2f} |"
        )
    return lines


def ceiling_lines(ceilings: list[Ceiling]) -> list[str]:
    return [
        f"- {c.companies:,} x C={c.concurrency}: {c.companies / median(c.seconds):.1f} "
        f"companies/s, {c.ratio:.2f} of the limit (median of {len(c.seconds)})"
        for c in ceilings
    ]


def first_cycle_table(runs: list[PollRun]) -> list[str]:
    """The warm-up cycles, at no latency: discovery and the scheduled per-company requests."""
    lines = [
        "| companies x 25 | C | polled by | seconds (0 ms latency) | requests by route |",
        "|---:|---:|---|---:|---|",
    ]
    for run in runs:
        by_route = ", ".join(
            f"`{route}` {sum(codes.values()):,}"
            for route, codes in sorted(run.warmup["requests"].items())
        )
        lines.append(
            f"| {run.companies:,} | {run.concurrency} | {run.kind} "
            f"| {run.warmup['seconds']:.1f} | {by_route} |"
        )
    return lines


def scrape_table(runs: list[ScrapeRun], reps: int) -> list[str]:
    lines = [
        f"| companies x 25 | served by | plain s (median of {reps}) | plain bytes "
        f"| gzip s (median of {reps}) | gzip bytes | first gzip s | peak RSS MB "
        "| RSS MB after polls (peak; now) | age series | ages at scrape time |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for run in runs:
        poll = run.rss_after_poll
        lines.append(
            f"| {run.companies:,} | {run.kind} | {median(run.plain):.3f} | {run.plain_bytes:,} "
            f"| {median(run.gzip):.3f} | {run.gzip_bytes:,} | {run.cold_gzip:.3f} "
            f"| {run.peak_rss:.0f} | {poll['VmHWM']:.0f}; {poll['VmRSS']:.0f} "
            f"| {run.series[AGE_FAMILY.decode()]:,} "
            f"| {'yes' if abs(run.age_drift) < 0.5 else 'NO'} ({run.age_drift:+.3f}s drift) |"
        )
    return lines


def targets(polls: list[PollRun], scrapes: list[ScrapeRun]) -> list[str]:
    lines = []
    for run in polls:
        lines.append(
            f"- {run.kind} poll throughput {run.companies:,} x C={run.concurrency}: "
            f"{run.ratio:.2f} of the limit in requests/s "
            f"(target >= {THROUGHPUT_TARGET}): {verdict(run.ratio >= THROUGHPUT_TARGET)}"
            + (
                ""
                if run.ratio >= THROUGHPUT_TARGET
                else f", short by {THROUGHPUT_TARGET - run.ratio:.2f} of the limit "
                f"({run.limit * THROUGHPUT_TARGET - run.request_rate:.0f} requests/s)"
            )
        )
    biggest = max((r.companies for r in scrapes), default=0)
    by_kind = {r.kind: r for r in scrapes if r.companies == biggest}
    base = by_kind.get("baseline")
    for kind in ("exporter",):
        mine_run = by_kind.get(kind)
        if mine_run is None:
            continue
        for label, mine in (("plain", median(mine_run.plain)), ("gzip", median(mine_run.gzip))):
            lines.append(
                f"- {kind} scrape at {biggest:,} x 25, {label}: median {mine:.3f}s "
                f"(target <= {SCRAPE_TARGET_SECONDS}s): {verdict(mine <= SCRAPE_TARGET_SECONDS)}"
                + (
                    ""
                    if mine <= SCRAPE_TARGET_SECONDS
                    else f", {mine / SCRAPE_TARGET_SECONDS:.2f}x"
                )
            )
            if base is not None:
                theirs = median(base.plain if label == "plain" else base.gzip)
                lines.append(
                    f"- {kind} vs baseline, {label}: {theirs / mine:.1f}x faster "
                    f"({theirs:.2f}s vs {mine:.3f}s; target >= {SPEEDUP_TARGET:.0f}x): "
                    f"{verdict(theirs / mine >= SPEEDUP_TARGET)}"
                )
        lines.append(
            f"- {kind} peak RSS at {biggest:,} x 25: {mine_run.peak_rss:.0f} MB (target <= "
            f"{RSS_TARGET_MB:.0f} MB): {verdict(mine_run.peak_rss <= RSS_TARGET_MB)}"
            + (
                ""
                if mine_run.peak_rss <= RSS_TARGET_MB
                else f", over by {mine_run.peak_rss - RSS_TARGET_MB:.0f} MB "
                f"({mine_run.peak_rss / RSS_TARGET_MB:.2f}x)"
            )
        )
        if base is not None:
            ratio = mine_run.peak_rss / base.peak_rss
            lines.append(
                f"- {kind} peak RSS vs baseline: {ratio:.2f}x ({mine_run.peak_rss:.0f} vs "
                f"{base.peak_rss:.0f} MB; target <= {RSS_RATIO_TARGET}x): "
                f"{verdict(ratio <= RSS_RATIO_TARGET)}"
            )
    return lines


def series_check(scrapes: list[ScrapeRun]) -> list[str]:
    """Series per data family, side by side: the same data, to within the statuses that
    moved on between the processes' polls. The exporter's own instrumentation (requests,
    quota, shard, ...) is summed in one row; the baseline has none of it."""
    lines = []
    for companies in sorted({r.companies for r in scrapes}):
        runs = [r for r in scrapes if r.companies == companies]
        base = next((r for r in runs if r.kind == "baseline"), None)
        families = sorted({f for r in runs for f in r.series if base is None or base.series[f]})
        lines.append(f"| {companies:,} x 25: family | " + " | ".join(r.kind for r in runs) + " |")
        lines.append("|---|" + "---:|" * len(runs))
        lines += [
            f"| `{family}` | " + " | ".join(f"{r.series[family]:,}" for r in runs) + " |"
            for family in families
        ]
        own = [sum(n for f, n in r.series.items() if f not in families) for r in runs]
        lines.append("| the exporter's own metrics | " + " | ".join(f"{n:,}" for n in own) + " |")
        lines.append("")
    return lines


def report(
    polls: list[PollRun],
    ceilings: list[Ceiling],
    scrapes: list[ScrapeRun],
    reps: int,
    started: datetime,
    seconds: float,
) -> str:
    return "\n".join(
        [
            "## Poll throughput and GET /metrics (bench/run.py)",
            "",
            f"Run {started:%Y-%m-%d %H:%M} UTC, {seconds / 60:.1f} minutes, with "
            f"`bench/run.py {' '.join(sys.argv[1:])}`.",
            f"Machine: {machine()}.",
            f"Simulated Codat: {DATA_TYPES} data types per company, "
            f"{LATENCY * 1000:.0f} ms per request for the throughput runs, loopback HTTP, "
            "each party in its own process. Medians of the repetitions; MB are 10^6 bytes "
            "(peak RSS is VmHWM from /proc/<pid>/status). What each figure means: "
            "bench/README.md.",
            "",
            "### Targets",
            "",
            *targets(polls, scrapes),
            "",
            *(
                [
                    "### Poll throughput",
                    "",
                    *poll_table(polls, reps),
                    "",
                    *(
                        [
                            "Ceiling of this simulator on this machine: a bare `http.client` loop "
                            "(persistent connections, `json.loads`, nothing else), same latency:",
                            "",
                            *ceiling_lines(ceilings),
                            "",
                        ]
                        if ceilings
                        else []
                    ),
                    "First cycle of each exporter (not measured: run at 0 ms latency). "
                    "Discovery, connections and sync settings are scheduled hourly / every "
                    "30 minutes, so they all fall in this cycle; the measured cycles make "
                    "dataStatus requests, and read the pull operations of the syncs that "
                    "changed since.",
                    "",
                    *first_cycle_table(polls),
                    "",
                ]
                if polls
                else ["No poll throughput runs (`--no-poll`).", ""]
            ),
            "### GET /metrics",
            "",
            *scrape_table(scrapes, reps),
            "",
            "#### Series per family, from the first plain scrape of each",
            "",
            *series_check(scrapes),
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 companies, 3 repetitions")
    parser.add_argument("--sizes", help="company counts, comma-separated (default 1000,10000)")
    parser.add_argument("--reps", type=int, help="repetitions (default 5; 3 with --quick)")
    parser.add_argument("--concurrency", default="4,16", help="poll concurrencies (default 4,16)")
    parser.add_argument(
        "--ceiling",
        action="store_true",
        help="also measure a bare http.client loop against the simulator at the top C",
    )
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the naive baseline (no ratios then)"
    )
    parser.add_argument("--no-poll", action="store_true", help="skip the poll throughput runs")
    parser.add_argument(
        "--output",
        type=Path,
        help="insert the results at the top of this file, below its title, keeping the other "
        "sections (default bench/RESULTS.md for a full run; none for --quick)",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in (args.sizes or ("1000" if args.quick else "1000,10000")).split(",")]
    reps = args.reps or (3 if args.quick else 5)
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    output = args.output or (None if args.quick else BENCH_DIR / "RESULTS.md")
    started, clock = datetime.now(UTC), time.monotonic()
    polls: list[PollRun] = []
    ceilings: list[Ceiling] = []
    scrapes: list[ScrapeRun] = []
    for companies in sizes:
        log(f"simulated Codat with {companies:,} companies x {DATA_TYPES} data types")
        sim_args = ("--companies", str(companies), "--data-types", str(DATA_TYPES))
        with start_child("simulator", "sim_proc.py", *sim_args) as sim:
            if not args.no_poll:
                for concurrency in concurrencies:
                    polls.append(poll_throughput(sim, companies, concurrency, reps))
                top = max(concurrencies)
                if args.ceiling:
                    ceilings.append(ceiling(sim, companies, top, reps))
            kinds = ["exporter", *([] if args.no_baseline else ["baseline"])]
            for kind in kinds:
                scrapes.append(scrape_run(sim, companies, kind, reps))
    text = report(polls, ceilings, scrapes, reps, started, time.monotonic() - clock)
    print(text)
    if output is not None:
        insert_below_title(output, text)
        log(f"written to {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
