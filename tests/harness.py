"""Real parts wired for tests: a simulated Codat and the exporter, both on loopback HTTP,
sharing a clock the test moves by hand."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from exporter.client import CodatClient
from exporter.collector import Exposition
from exporter.config import Config, parse_config
from exporter.metrics import ExporterMetrics
from exporter.poller import CycleResult, Poller
from exporter.simulator import Fleet, SimulatedCodat
from exporter.state import Snapshot, SnapshotStore
from exporter.web import ExporterServer

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
    """The exporter's parts as cli.run wires them, with a fake clock and a real server."""

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
        self.client = CodatClient(
            self.config.codat, self.metrics, self.clock, rng=random.Random(4), backoff_base=2.0
        )
        empty = Exposition(Snapshot(), self.config.freshness, self.config.poll.interval)
        self.store = SnapshotStore(empty)
        self.poller = Poller(
            self.config, self.client, self.store, self.metrics, self.clock, spread=self.spread
        )
        self.server = ExporterServer("127.0.0.1:0", self.store, self.metrics, self.clock)
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
