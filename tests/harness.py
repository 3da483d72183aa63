"""Real parts wired for tests: a simulated Codat and the exporter, both on loopback HTTP,
sharing a clock the test moves by hand."""

from __future__ import annotations

import random
import re
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from exporter.codat.client import CodatClient
from exporter.config.load import parse_config
from exporter.config.sections import Config
from exporter.core.snapshot import Snapshot
from exporter.exposition.instruments import ExporterMetrics
from exporter.exposition.render import Exposition
from exporter.exposition.store import SnapshotStore
from exporter.poll.poller import CycleResult, Poller
from exporter.simulator.fleet import Fleet
from exporter.simulator.server import SimulatedCodat
from exporter.web.server import ExporterServer

API_KEY = "test-key-5f2b9c"
START = 1_795_435_200.0  # 2026-11-23T12:00:00Z


class FakeClock:
    """Moves only when a test advances it or code under test sleeps on it."""

    def __init__(self, start: float = START) -> None:
        self._time = start
        self._mono = 10_000.0
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self._time

    def monotonic(self) -> float:
        return self._mono

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._time += seconds
            self._mono += seconds

    def step(self, seconds: float) -> None:
        """Set the wall clock ``seconds`` on (or back), as NTP does; the monotonic clock
        does not move."""
        with self._lock:
            self._time += seconds


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


@dataclass
class Scrape:
    samples: list[Sample]
    text: str

    def find(self, name: str, **labels: str) -> list[Sample]:
        return [
            s
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        ]

    def value(self, name: str, **labels: str) -> float:
        found = self.find(name, **labels)
        assert len(found) == 1, f"{name}{labels}: {len(found)} samples"
        return found[0].value

    def companies(self) -> set[str]:
        return {s.labels["company_id"] for s in self.samples if "company_id" in s.labels}


def parse_exposition(text: str) -> list[Sample]:
    return [
        Sample(sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


@dataclass
class Harness:
    """The exporter's parts as app.run wires them, with a fake clock and a real server."""

    config: Config
    clock: FakeClock
    codat: SimulatedCodat
    spread: bool = False
    """Off unless a test is about spreading: spacing would move the fake clock."""
    metrics: ExporterMetrics = field(init=False)
    store: SnapshotStore = field(init=False)
    poller: Poller = field(init=False)
    server: ExporterServer = field(init=False)

    def __post_init__(self) -> None:
        self.metrics = ExporterMetrics()
        empty = Exposition(Snapshot(), self.config.freshness, self.config.poll.interval)
        self.store = SnapshotStore(empty)
        self.client = CodatClient(
            self.config.codat, self.metrics, self.clock, rng=random.Random(4), backoff_base=2.0,
            note_facts=self.store.note,
        )  # fmt: skip
        self.poller = Poller(
            self.config, self.client, self.store, self.metrics, self.clock, spread=self.spread
        )
        self.server = ExporterServer(
            "127.0.0.1:0", self.store, self.metrics, self.clock,
            status_page=self.config.status_page,
        )  # fmt: skip
        self.server.start()

    @property
    def fleet(self) -> Fleet:
        return self.codat.fleet

    def poll(self) -> CycleResult:
        return self.poller.run_cycle()

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.server.url + path, timeout=5, **kwargs)

    def scrape(self) -> Scrape:
        response = self.get("/metrics")
        assert response.status_code == 200
        return Scrape(parse_exposition(response.text), response.text)

    def close(self) -> None:
        self.poller.stop()
        self.server.stop()
        self.client.close()


def make_config(simulator: SimulatedCodat, /, **sections: Any) -> Config:
    """A valid config for the simulator; ``sections`` replace or extend the defaults."""
    raw: dict[str, Any] = {
        "codat": {"base_url": simulator.url, "api_key": API_KEY, "timeout": "2s",
                  "max_concurrency": 2, "max_requests_per_minute": 100_000},
        "poll": {"interval": "5m"},
        "companies": {"ids": sorted(simulator.fleet.companies)},
    }  # fmt: skip
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    return parse_config(raw)


def ids(fleet: Fleet) -> Iterator[str]:
    return iter(sorted(fleet.companies))


LISTEN_ANYWHERE = "127.0.0.1:0"
"""A listen address for a program under test: the system picks the port as it binds, and the
test reads it from the program's log. Picking a free port first and handing it over would
race with any other process that binds it in between."""

SERVING_METRICS = re.compile(r"serving metrics at (\S+)/metrics")
"""The exporter's log line saying where it serves; the group is the base URL."""


class Program:
    """``python -m exporter *args`` as its own process, stdout and stderr collected as they
    come (so a chatty program never blocks on a full pipe)::

        with Program("--demo", "--web.listen-address", LISTEN_ANYWHERE) as program:
            url = program.url()  # e.g. http://127.0.0.1:40211, from its log
            ...
            program.process.send_signal(signal.SIGTERM)
            code = program.process.wait(timeout=15)
        assert "Traceback" not in program.stderr

    Leaving the block kills it if it still runs.
    """

    def __init__(
        self, *args: str, env: Mapping[str, str] | None = None, wrapper: Sequence[str] = ()
    ) -> None:
        """``wrapper``: a command that runs the program, e.g. ``["prlimit", "--as=4294967296",
        "--"]`` (it must exec it, so that ``process`` is the program)."""
        self.process = subprocess.Popen(
            [*wrapper, sys.executable, "-m", "exporter", *args], env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        self._out: list[str] = []
        self._err: list[str] = []
        self._closed = 0
        self._changed = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read, args=(stream, lines), daemon=True)
            for stream, lines in (
                (self.process.stdout, self._out),
                (self.process.stderr, self._err),
            )
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: Any, lines: list[str]) -> None:
        for line in stream:
            with self._changed:
                lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._closed += 1
            self._changed.notify_all()

    @property
    def stdout(self) -> str:
        with self._changed:
            return "".join(self._out)

    @property
    def stderr(self) -> str:
        with self._changed:
            return "".join(self._err)

    def url(self, timeout: float = 20.0) -> str:
        """The base URL it serves metrics at, once it has logged it; fails the test if it
        exits or says nothing of the kind within ``timeout`` seconds."""

        def found() -> re.Match[str] | None:
            return SERVING_METRICS.search("".join(self._err))

        with self._changed:
            self._changed.wait_for(lambda: found() or self._closed == 2, timeout)
            match = found()
        assert match, f"the program never said where it serves:\n{self.stderr}"
        return match[1]

    def scrape(self, timeout: float = 60.0) -> requests.Response:
        """GET /metrics once it listens, as Prometheus would. A start from a state file that
        kept its rendering decodes the state, and polls, only once a first scrape has been
        sent, or after ``exporter.poll.restart.DEFER_AT_MOST`` (5 s) without one: a test
        that waits for a cycle after such a start scrapes instead of waiting for nothing."""
        return requests.get(f"{self.url(timeout)}/metrics", timeout=timeout)

    def __enter__(self) -> Program:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.process.kill()
        self.process.wait()
        for reader in self._readers:
            reader.join(timeout=5)
