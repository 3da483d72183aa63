"""A bounded chaos run: random faults across a few hundred simulated companies over many poll
cycles, while /metrics is scraped in a loop. Then the faults stop, and every company must be
back.

    .venv/bin/python bench/soak.py             # 300 companies, 60 cycles: a few minutes
    .venv/bin/python bench/soak.py --companies 60 --cycles 12 --json    # tests/bench/test_soak.py

Everything runs in this process, over loopback HTTP: the simulated Codat, and the exporter
wired as ``exporter.app.run`` wires it (discovery, connections, thresholds from sync settings),
except that the poller's clock is a fake one that this script moves on by one poll interval
between cycles (and that retries, back-offs and 429 pauses move on as they sleep), so an hour
of polling takes seconds. Randomness is seeded: the same arguments inject the same faults.

Each chaos cycle picks ``--fault-rate`` of the companies and gives each a fault (an HTTP
status, a bad body, a reset, a slow answer, a date that does not parse, ...) on one of its
requests, for one request (a retry then succeeds) or for the whole cycle; sometimes the
company list fails too. The last ``--recovery-cycles`` cycles have no faults.

After every cycle it records the thread count, this process's RSS and the series on
/metrics, and it checks, from a real scrape, that no company that had no fault this cycle
lost a series it had after the first cycle. At the end it prints the figures and checks:

- no crash: every scrape answered 200, no cycle raised, no ``internal_error`` poll errors;
- no unbounded growth: threads, RSS and series at the end against the first cycles;
- every company is up again once the faults stop, with every series it had at the start.

Exit code 0 when every check passes, 1 otherwise. Every loop is bounded.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import random
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import requests
from common import StepClock
from prometheus_client import Counter as Counter_

from exporter.codat.client import CodatClient
from exporter.config.load import parse_config
from exporter.core.contract import COMPANIES, CONNECTIONS, DATA_STATUS, SYNC_SETTINGS
from exporter.core.families import LATEST_SYNC_REQUESTED, PAUSED_UNTIL, SYNC_DURATION
from exporter.core.snapshot import Snapshot
from exporter.exposition.instruments import ExporterMetrics
from exporter.exposition.render import Exposition
from exporter.exposition.store import SnapshotStore
from exporter.poll.poller import Poller
from exporter.simulator.faults import LISTING, Fault
from exporter.simulator.fleet import Fleet
from exporter.simulator.server import SimulatedCodat
from exporter.web.server import ExporterServer

API_KEY = "soak-api-key-3f9a"
START = 1_795_435_200.0  # 2026-11-23T12:00:00Z
INTERVAL = 60.0
"""The configured poll interval; the fake clock moves on by this much between cycles."""
MAX_RESPONSE_BYTES = 256 * 1024
"""Small, so that an oversized answer costs little real memory and time."""
MAX_SCRAPES = 1_000_000
SCRAPE_PAUSE = 0.01
UP = "codat_exporter_company_up"
IDENTITY_LABELS = ("status", "company_name")
"""Labels whose value may change without the series being 'lost' (a status moves on)."""
TRANSIENT = frozenset({PAUSED_UNTIL.name, LATEST_SYNC_REQUESTED.name})
"""Families present only while a sync is paused or running: they come and go by design."""
FILLING = (SYNC_DURATION.name,)
"""Families that gain a label set per data type as syncs are first seen: bounded by the data
types, not by time, so left out of the growth check."""

THREAD_SLACK = 3
THREAD_PEAK_SLACK = 12
"""Over the first cycle's count: handler threads of slow and trickling answers, briefly."""
RSS_GROWTH_MB = 25.0
RSS_HALF_MB = 10.0
SERIES_GROWTH = 0.05


# --- faults --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chaos:
    """One kind of fault and how often it is picked."""

    name: str
    weight: int
    fault: Fault | None = None
    """None: a dataStatus body instead (``body``)."""
    body: Callable[[Fleet, str], Any] | None = None
    endpoints: tuple[str | None, ...] = (DATA_STATUS, CONNECTIONS, SYNC_SETTINGS, None)


def _bad_date(fleet: Fleet, company_id: str) -> Any:
    return {"invoices": {"dataType": "invoices", "currentStatus": "Complete",
                         "lastSuccessfulSync": "2026-02-30T25:61:00Z"}}  # fmt: skip


def _unknown_statuses(fleet: Fleet, company_id: str) -> Any:
    """The company's real body, with a status Codat may add one day and one that is junk."""
    body = {key: dict(entry) for key, entry in fleet.data_status(company_id).items()}
    for entry, status in zip(body.values(), ("Paused", 'weird "status"\n'), strict=False):
        entry["currentStatus"] = status
    return body


CHAOS = (
    Chaos("500", 4, Fault("status", 500)),
    Chaos("502", 2, Fault("status", 502)),
    Chaos("503", 2, Fault("status", 503)),
    Chaos("504", 1, Fault("status", 504)),
    Chaos("408", 1, Fault("status", 408)),
    Chaos("429", 1, Fault("status", 429, retry_after="2")),
    Chaos("401", 1, Fault("status", 401)),
    Chaos("404", 1, Fault("status", 404)),
    Chaos("html", 2, Fault("html", 502)),
    Chaos("malformed", 2, Fault("malformed")),
    Chaos("truncated", 2, Fault("truncated")),
    Chaos("wrong_shape", 2, Fault("wrong_shape")),
    Chaos("empty", 1, Fault("empty")),
    Chaos("oversized", 1, Fault("oversized", size=MAX_RESPONSE_BYTES + 1024)),
    Chaos("reset", 2, Fault("reset")),
    Chaos("cut", 1, Fault("cut")),
    Chaos("latency", 1, Fault("latency", seconds=0.4)),
    Chaos("trickle", 1, Fault("trickle", seconds=0.05)),
    Chaos("stall", 1, Fault("trickle", seconds=0.6)),
    Chaos("bad_date", 1, body=_bad_date, endpoints=(DATA_STATUS,)),
    Chaos("unknown_statuses", 1, body=_unknown_statuses, endpoints=(DATA_STATUS,)),
)
LISTING_CHAOS = (Fault("status", 500), Fault("status", 503), Fault("malformed"), Fault("reset"))
LISTING_FAULT_RATE = 0.3


@dataclass
class Injector:
    fleet: Fleet
    rng: random.Random
    injected: Counter[str] = field(default_factory=Counter)
    answered: Counter[str] = field(default_factory=Counter)
    """Requests the simulator answered with a fault, by kind (a status: its code)."""
    overridden: set[str] = field(default_factory=set)
    reshaped: set[str] = field(default_factory=set)
    """Companies whose last good values may rightly lack series they started with (the
    company was gone, or a body listed fewer data types), until a poll without a fault."""

    def __post_init__(self) -> None:
        take = self.fleet.take_fault

        def counted(company_id: str, endpoint: str) -> Fault | None:
            fault = take(company_id, endpoint)
            if fault is not None:
                self.answered[str(fault.status) if fault.kind == "status" else fault.kind] += 1
            return fault

        self.fleet.take_fault = counted  # type: ignore[method-assign]

    def clear(self) -> None:
        self.fleet.clear_faults()
        for company_id in self.overridden:
            self.fleet.overrides.pop(company_id, None)
        self.overridden.clear()

    def inject(self, companies: list[str], rate: float) -> set[str]:
        """Faults for ``rate`` of the companies this cycle; returns those companies."""
        self.clear()
        chosen = self.rng.sample(companies, max(1, round(rate * len(companies))))
        weights = [c.weight for c in CHAOS]
        for company_id in chosen:
            chaos = self.rng.choices(CHAOS, weights)[0]
            endpoint = self.rng.choice(chaos.endpoints)
            if chaos.body is not None:
                self.fleet.override(company_id, chaos.body(self.fleet, company_id))
                self.overridden.add(company_id)
                self.reshaped.add(company_id)
            else:
                assert chaos.fault is not None
                times = self.rng.choice((1, None))  # a retry succeeds, or the cycle fails
                self.fleet.inject(company_id, replace(chaos.fault, times=times, endpoint=endpoint))
                if chaos.name in ("404", "empty") and endpoint in (DATA_STATUS, None):
                    self.reshaped.add(company_id)
            self.injected[chaos.name] += 1
        if self.rng.random() < LISTING_FAULT_RATE:
            fault = self.rng.choice(LISTING_CHAOS)
            self.fleet.inject(LISTING, replace(fault, times=None, endpoint=COMPANIES))
            self.injected["listing"] += 1
        return set(chosen)

    def settle(self, snapshot: Snapshot, faulted: set[str]) -> None:
        """After a cycle: a company polled without a fault has all its values again."""
        self.reshaped -= {c for c, state in snapshot.companies.items()
                          if state.up and c not in faulted}  # fmt: skip


# --- scraping ------------------------------------------------------------------------------

_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def series(text: str) -> Iterator[tuple[str, dict[str, str], str]]:
    """(name, labels, value) of every sample line; labels unescaped only as far as needed."""
    for line in text.split("\n"):
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            raise ValueError(f"not a sample line: {line[:200]!r}")
        yield match[1], dict(_LABEL.findall(match[2] or "")), match[3]


def counted(text: str) -> int:
    """The series the growth check counts: all but TRANSIENT and FILLING ones."""
    return sum(
        1 for name, _, _ in series(text) if name not in TRANSIENT and not name.startswith(FILLING)
    )


def company_keys(text: str) -> dict[str, set[tuple[str, ...]]]:
    """Per company id, the identities of its series (status and name labels left out)."""
    keys: dict[str, set[tuple[str, ...]]] = {}
    for name, labels, _ in series(text):
        company = labels.get("company_id")
        if company is None or name in TRANSIENT:
            continue
        identity = tuple(f"{k}={v}" for k, v in sorted(labels.items()) if k not in IDENTITY_LABELS)
        keys.setdefault(company, set()).add((name, *identity))
    return keys


@dataclass
class Scraper:
    """Scrapes /metrics in a loop (plain and gzip in turn) until stopped, at most MAX_SCRAPES."""

    url: str
    stop: threading.Event = field(default_factory=threading.Event)
    scrapes: int = 0
    failures: list[str] = field(default_factory=list)
    slowest: float = 0.0
    largest: int = 0
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="scraper", daemon=True)
        self.thread.start()

    def finish(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=30)

    def _run(self) -> None:
        with requests.Session() as session:
            while not self.stop.is_set() and self.scrapes < MAX_SCRAPES:
                compress = self.scrapes % 2 == 1
                headers = {"Accept-Encoding": "gzip" if compress else "identity"}
                started = time.monotonic()
                try:
                    with session.get(
                        self.url, headers=headers, timeout=30, stream=True
                    ) as response:
                        raw = response.raw.read(decode_content=False)
                    body = gzip.decompress(raw) if compress else raw
                    if response.status_code != 200 or not body.endswith(b"\n"):
                        self.failures.append(f"HTTP {response.status_code}, {len(body)} bytes")
                except (requests.RequestException, OSError, EOFError) as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                else:
                    self.largest = max(self.largest, len(body))
                self.slowest = max(self.slowest, time.monotonic() - started)
                self.scrapes += 1
                self.stop.wait(SCRAPE_PAUSE)


# --- the run -------------------------------------------------------------------------------


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError("no VmRSS in /proc/self/status")


@dataclass
class CycleFigures:
    cycle: int
    chaos: bool
    faulted: int
    succeeded: int
    failed: int
    gone: int
    seconds: float
    threads: int
    rss_mb: float
    series: int
    up: int
    monitored: int
    lost: int
    """Series missing, against the first cycle, of companies that had no fault this cycle."""


class ErrorLog(logging.Handler):
    """Counts the exporter's ERROR records that carry a traceback (a bug, not an outage)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.tracebacks: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.tracebacks.append(
                f"{record.getMessage()}\n{self.formatException(record.exc_info)}"
            )

    def formatException(self, exc_info: Any) -> str:
        return logging.Formatter().formatException(exc_info)


def run(args: argparse.Namespace) -> dict[str, Any]:
    clock = StepClock(START)
    fleet = Fleet.generate(clock, companies=args.companies, seed=args.seed,
                           data_types_per_company=args.data_types)  # fmt: skip
    codat = SimulatedCodat(fleet, API_KEY).start()
    config = parse_config({
        "codat": {"base_url": codat.url, "api_key": API_KEY, "timeout": "250ms",
                  "max_concurrency": args.concurrency, "max_requests_per_minute": 100_000,
                  "max_response_bytes": MAX_RESPONSE_BYTES},
        "poll": {"interval": f"{int(INTERVAL)}s"},
        "companies": {"discover": True, "page_size": 100, "discovery_interval": "3m"},
        "connections": {"interval": "2m"},
        "freshness": {"from_sync_settings": True},
    })  # fmt: skip
    metrics = ExporterMetrics()
    # The fake clock adds up the workers' back-off sleeps where real ones would overlap, so
    # the back-off is divided by the number of workers to keep a cycle's time realistic.
    client = CodatClient(config.codat, metrics, clock, rng=random.Random(args.seed),
                         backoff_base=1.0 / args.concurrency)  # fmt: skip
    store = SnapshotStore(Exposition(Snapshot(), config.freshness, config.poll.interval))
    poller = Poller(config, client, store, metrics, clock, spread=False, quota_warning=False)
    server = ExporterServer("127.0.0.1:0", store, metrics, clock)
    server.start()
    errors = ErrorLog()
    log = logging.getLogger("exporter")
    log.setLevel(logging.ERROR)  # the faults would log thousands of warnings
    log.propagate = False
    log.addHandler(errors)
    scraper = Scraper(server.url + "/metrics")
    injector = Injector(fleet, random.Random(args.seed))
    companies = sorted(fleet.companies)
    figures: list[CycleFigures] = []
    crashes: list[str] = []
    baseline: dict[str, set[tuple[str, ...]]] = {}
    final_text = ""
    started = time.monotonic()
    scraper.start()
    try:
        with requests.Session() as session:
            for cycle in range(args.cycles):
                chaos = 0 < cycle < args.cycles - args.recovery_cycles
                faulted = injector.inject(companies, args.fault_rate) if chaos else set()
                if not chaos:
                    injector.clear()
                began = time.monotonic()
                try:
                    result = poller.run_cycle()
                except Exception as exc:  # the check below reports it
                    crashes.append(f"cycle {cycle}: {type(exc).__name__}: {exc}")
                    break
                seconds = time.monotonic() - began
                codat.log.clear()  # the simulator's request log is not the exporter's memory
                text = session.get(server.url + "/metrics", timeout=30).text
                keys = company_keys(text)
                if cycle == 0:
                    baseline = keys
                excused = faulted | injector.reshaped
                lost = sum(
                    len(baseline[c] - keys.get(c, set())) for c in baseline if c not in excused
                )
                snapshot = store.current.snapshot
                injector.settle(snapshot, faulted)
                figures.append(CycleFigures(
                    cycle=cycle, chaos=chaos, faulted=len(faulted), succeeded=result.succeeded,
                    failed=result.failed, gone=result.gone, seconds=seconds,
                    threads=threading.active_count(), rss_mb=rss_mb(),
                    series=counted(text),
                    up=sum(1 for c in snapshot.companies.values() if c.up),
                    monitored=len(snapshot.companies), lost=lost,
                ))  # fmt: skip
                final_text = text
                if args.progress:
                    print(f"cycle {cycle:3d}: {figures[-1]}", file=sys.stderr)
                clock.advance(INTERVAL)
    finally:
        scraper.finish()
        injector.clear()
        poller.stop()
        server.stop()
        client.close()
        codat.stop()
        log.removeHandler(errors)
    final_keys = company_keys(final_text) if final_text else {}
    failures = store.current.snapshot.facts.discovery.failures
    return report(args, figures, scraper, injector, metrics, failures, errors, crashes,
                  companies, baseline, final_keys, time.monotonic() - started)  # fmt: skip


def totals(counter: Counter_, label: str = "") -> dict[str, float]:
    """A prometheus_client counter's non-zero ``_total`` samples by ``label``'s value."""
    return {
        sample.labels.get(label, ""): sample.value
        for family in counter.collect()
        for sample in family.samples
        if sample.name.endswith("_total") and sample.value
    }


def report(
    args: argparse.Namespace,
    figures: list[CycleFigures],
    scraper: Scraper,
    injector: Injector,
    metrics: ExporterMetrics,
    discovery_failures: int,
    errors: ErrorLog,
    crashes: list[str],
    companies: list[str],
    baseline: dict[str, set[tuple[str, ...]]],
    final_keys: dict[str, set[tuple[str, ...]]],
    wall: float,
) -> dict[str, Any]:
    """The figures and the checks, as one JSON-able dict."""
    first, last = figures[0], figures[-1]
    warm = figures[min(2, len(figures) - 1)]  # after discovery, connections and settings
    half = figures[len(figures) // 2]
    reasons = totals(metrics.poll_errors, "reason")
    missing_at_end = {c: len(keys - final_keys.get(c, set())) for c, keys in baseline.items()}
    checks = {
        "no crash (every scrape 200, no cycle raised, no internal error, no traceback)": (
            not scraper.failures and not crashes and not reasons.get("internal_error")
            and not errors.tracebacks and len(figures) == args.cycles
        ),
        f"threads at the end <= first cycle + {THREAD_SLACK}": (
            last.threads <= first.threads + THREAD_SLACK
        ),
        f"peak threads <= first cycle + {THREAD_PEAK_SLACK}": (
            max(f.threads for f in figures) <= first.threads + THREAD_PEAK_SLACK
        ),
        f"RSS growth after cycle {warm.cycle} <= {RSS_GROWTH_MB:.0f} MB": (
            last.rss_mb - warm.rss_mb <= RSS_GROWTH_MB
        ),
        f"RSS growth over the second half (after cycle {half.cycle}) <= {RSS_HALF_MB:.0f} MB": (
            last.rss_mb - half.rss_mb <= RSS_HALF_MB
        ),
        f"series at the end within {SERIES_GROWTH:.0%} of the first cycle": (
            abs(last.series - first.series) <= SERIES_GROWTH * first.series
        ),
        "every company up at the end": last.up == last.monitored == len(companies),
        "no series lost by a company without a fault that cycle": all(
            f.lost == 0 for f in figures
        ),
        "every company has every series it started with at the end": (
            set(baseline) == set(companies) and not any(missing_at_end.values())
        ),
    }  # fmt: skip
    return {
        "arguments": vars(args),
        "wall_seconds": round(wall, 2),
        "cycles": len(figures),
        "chaos_cycles": sum(1 for f in figures if f.chaos),
        "companies": len(companies),
        "scrapes": scraper.scrapes,
        "scrape_failures": scraper.failures[:10],
        "slowest_scrape_seconds": round(scraper.slowest, 3),
        "largest_scrape_bytes": scraper.largest,
        "faults_injected": dict(sorted(injector.injected.items())),
        "requests_answered_with_a_fault": dict(sorted(injector.answered.items())),
        "poll_errors": reasons,
        "discovery_failures": float(discovery_failures),
        "rate_limited": totals(metrics.rate_limited).get("", 0.0),
        "threads": {"first": first.threads, "peak": max(f.threads for f in figures),
                    "final": last.threads},
        "rss_mb": {"first": round(first.rss_mb, 1), f"after_cycle_{warm.cycle}":
                   round(warm.rss_mb, 1), f"after_cycle_{half.cycle}": round(half.rss_mb, 1),
                   "peak": round(max(f.rss_mb for f in figures), 1),
                   "final": round(last.rss_mb, 1)},
        "series": {"first": first.series, "min": min(f.series for f in figures),
                   "peak": max(f.series for f in figures), "final": last.series},
        "up_at_end": last.up,
        "monitored_at_end": last.monitored,
        "cycle_seconds": {"mean": round(sum(f.seconds for f in figures) / len(figures), 3),
                          "max": round(max(f.seconds for f in figures), 3)},
        "lost_series_by_cycle": [f.lost for f in figures],
        "crashes": crashes,
        "tracebacks": errors.tracebacks[:10],
        "checks": checks,
        "passed": all(checks.values()),
    }  # fmt: skip


def print_table(result: dict[str, Any]) -> None:
    rows = [
        ("companies", result["companies"]),
        ("cycles (chaos + recovery)", f"{result['cycles']} ({result['chaos_cycles']} + "
         f"{result['cycles'] - result['chaos_cycles'] - 1}, after 1 clean)"),
        ("wall time", f"{result['wall_seconds']:.1f} s"),
        ("cycle time mean / max", f"{result['cycle_seconds']['mean']:.3f} s / "
         f"{result['cycle_seconds']['max']:.3f} s"),
        ("scrapes (failed)", f"{result['scrapes']} ({len(result['scrape_failures'])})"),
        ("slowest scrape / largest body", f"{result['slowest_scrape_seconds']:.3f} s / "
         f"{result['largest_scrape_bytes']:,} bytes"),
        ("faults injected", ", ".join(f"{k} {v}" for k, v in result["faults_injected"].items())),
        ("  total", sum(result["faults_injected"].values())),
        ("requests answered with a fault", ", ".join(
            f"{k} {v}" for k, v in result["requests_answered_with_a_fault"].items())),
        ("  total", sum(result["requests_answered_with_a_fault"].values())),
        ("poll errors by reason", ", ".join(f"{k} {v:.0f}" for k, v in
                                            sorted(result["poll_errors"].items()))),
        ("discovery failures / 429s", f"{result['discovery_failures']:.0f} / "
         f"{result['rate_limited']:.0f}"),
        ("threads first / peak / final", "{first} / {peak} / {final}".format(**result["threads"])),
        ("RSS MB " + " / ".join(result["rss_mb"]), " / ".join(map(str, result["rss_mb"].values()))),
        ("series first / min / peak / final",
         "{first} / {min} / {peak} / {final}".format(**result["series"])),
        ("companies up at end", f"{result['up_at_end']} of {result['monitored_at_end']}"),
    ]  # fmt: skip
    width = max(len(str(name)) for name, _ in rows)
    print("| figure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name:<{width}} | {value} |")
    print()
    for check, ok in result["checks"].items():
        print(f"{'PASS' if ok else 'FAIL'}  {check}")
    for problem in (*result["crashes"], *result["tracebacks"], *result["scrape_failures"]):
        print(f"  {problem}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--companies", type=int, default=300)
    parser.add_argument("--cycles", type=int, default=60)
    parser.add_argument("--recovery-cycles", type=int, default=3,
                        help="fault-free cycles at the end (default %(default)s)")  # fmt: skip
    parser.add_argument("--fault-rate", type=float, default=0.1,
                        help="share of companies given a fault each chaos cycle")  # fmt: skip
    parser.add_argument("--data-types", type=int, default=12)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--progress", action="store_true", help="one line per cycle on stderr")
    args = parser.parse_args(argv)
    if not 2 <= args.recovery_cycles + 2 <= args.cycles <= 10_000:
        parser.error("need 2 <= recovery cycles + 2 <= cycles <= 10000")
    if not 1 <= args.companies <= 20_000 or not 0 < args.fault_rate <= 1:
        parser.error("need 1 <= companies <= 20000 and 0 < fault rate <= 1")
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
