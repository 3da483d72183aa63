"""The refresh caps and backoff hold whatever happens to the process: a real exporter, killed
(SIGKILL) or stopped (SIGTERM) shortly after its first refresh and started again, eight
times, against the simulated Codat in a process of its own, which prints every refresh it
receives. What is counted is what Codat would have received, not what the exporter says.

The fleet is the simulator's seeded one, 30 companies: a stale company and the showcase
company have pinned transient failures (FetchError, MapError, ...), and a few of the others
fail by chance; far more pairs than the caps allow. Each start takes a second or two.

The signal must land after a refresh is sent and before the state file says so, or the
state file alone would hold the caps and the refresh journal would go untested: the state
file is written at the end of a cycle, and a first cycle sends its refreshes last, within
milliseconds of its end. So the simulator holds each refresh HELD seconds before it answers
(``--queue-latency``): the cycle that sent it cannot end, nor be saved, before the signal,
and a refresh whose answer never came is one only the journal's write before the POST
knows of. Each life checks that the state file was not written after its first refresh.
"""

from __future__ import annotations

import itertools
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.simulator.server import DEFAULT_API_KEY
from tests.harness import LISTEN_ANYWHERE, Program
from tests.test_app_shutdown import wait_for

COMPANIES = 30
RESTARTS = 8
PER_COMPANY, PER_DAY = 2, 5
PROBE = {"enabled": True, "after": "1s", "backoff": 1, "max_per_company_per_day": PER_COMPANY,
         "max_per_day": PER_DAY}  # fmt: skip
"""The fault probe's configuration, which sent 21 refreshes against a daily cap of 5."""
AFTER_FIRST_POST = 0.3
"""Seconds between the first refresh Codat receives and the signal, as the probe had it."""
HELD = 3.0
"""Seconds the simulator holds each refresh before answering it: far beyond the signal, so
that the refreshes of the life killed are still unanswered, the cycle not yet saved; within
the exporter's timeout (codat.timeout, 5 s), so that a stopped exporter sees the answer."""
POSTED = re.compile(r"(\S+) POST queue: company (\S+) (\S+)$")


@dataclass(frozen=True)
class Post:
    at: float
    company: str
    data_type: str

    @property
    def day(self) -> str:
        return datetime.fromtimestamp(self.at, UTC).date().isoformat()


class Simulator:
    """``python -m exporter.simulator`` as its own process; ``posts()`` are the refreshes it
    has printed it received."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "exporter.simulator", "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        self._lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        with self._changed:
            self._changed.wait_for(lambda: self._lines, timeout=30)
            first = self._lines[0] if self._lines else ""
        found = re.search(r"at (http://127\.0\.0\.1:\d+)$", first)
        assert found, f"the simulator did not start: {first!r}"
        self.url = found[1]

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self._lines.append(line.strip())
                self._changed.notify_all()

    def posts(self) -> list[Post]:
        with self._changed:
            lines = list(self._lines)
        found = [POSTED.fullmatch(line) for line in lines]
        return [Post(datetime.fromisoformat(m[1]).timestamp(), m[2], m[3]) for m in found if m]

    def close(self) -> None:
        """Stop it, once every line it printed has been read."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        finally:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=5)


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    launched = Simulator("--companies", str(COMPANIES), "--queue-latency", str(HELD))
    yield launched
    launched.close()


def config_file(tmp_path: Path, simulator: Simulator, refresh: dict[str, Any]) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "codat": {"base_url": simulator.url, "api_key": DEFAULT_API_KEY, "timeout": "5s",
                  "max_concurrency": 2, "max_requests_per_minute": 100_000},
        "poll": {"interval": "3s"},
        "companies": {"discover": True},
        "connections": {"enabled": False},
        "refresh": refresh,
        "state": {"file": str(tmp_path / "state.json")},
    }))  # fmt: skip
    return path


def run_lives(config: Path, simulator: Simulator, stop: signal.Signals) -> list[int]:
    """Start the exporter and scrape it (so that it decodes its state file and polls at
    once), ``stop`` it AFTER_FIRST_POST after the first refresh Codat receives from it (or
    once it has said a cap held it back, or its first cycle has ended), and again, RESTARTS
    times; the exit code of each process."""
    codes = []
    for _ in range(1 + RESTARTS):
        before = len(simulator.posts())
        with Program("--config.file", str(config), "--web.listen-address", LISTEN_ANYWHERE) as run:
            run.scrape()

            def acted(before: int = before) -> bool:
                return (
                    len(simulator.posts()) > before
                    or "capped for today" in run.stderr
                    or "poll cycle:" in run.stderr
                    or run.process.poll() is not None
                )

            assert wait_for(acted, seconds=60), run.stderr
            assert run.process.poll() is None, run.stderr
            time.sleep(AFTER_FIRST_POST)
            run.process.send_signal(stop)
            codes.append(run.process.wait(timeout=30))
            assert "Traceback" not in run.stderr, run.stderr
        assert_unsaved(config.parent / "state.json", simulator.posts()[before:])
    return codes


def assert_unsaved(state_file: Path, received: list[Post]) -> None:
    """That the state file was not written after the first of a life's ``received``
    refreshes: what the next life knows of them, only the journal told it."""
    if received and state_file.exists():
        saved = state_file.stat().st_mtime
        assert saved < received[0].at, (
            f"the state file was written {saved - received[0].at:.2f} s after the first "
            "refresh of this life: it, not the refresh journal, held the caps"
        )


def per_day(posts: list[Post], *key: str) -> Counter[tuple[str, ...]]:
    """Refreshes per UTC day (and per ``key`` attribute of each)."""
    return Counter((post.day, *(getattr(post, k) for k in key)) for post in posts)


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_should_hold_the_refresh_caps_through_kills_and_restarts(
    tmp_path: Path, simulator: Simulator, stop: signal.Signals
) -> None:
    # Prepare
    config = config_file(tmp_path, simulator, PROBE)
    # Act
    codes = run_lives(config, simulator, stop)
    simulator.close()
    posts = simulator.posts()
    # Check: never over a cap, and no pair again before its backoff (1 s)
    companies = per_day(posts, "company")
    assert posts, "the fleet has pairs to refresh"
    assert max(per_day(posts).values()) <= PER_DAY, posts
    assert max(companies.values()) <= PER_COMPANY, companies
    for (_, company, data_type), times in pair_times(posts).items():
        assert all(b - a >= 1.0 for a, b in itertools.pairwise(times)), (
            company, data_type, times,
        )  # fmt: skip
    assert codes == [0 if stop == signal.SIGTERM else -stop] * (1 + RESTARTS)


def pair_times(posts: list[Post]) -> dict[tuple[str, str, str], list[float]]:
    times: dict[tuple[str, str, str], list[float]] = {}
    for post in posts:
        times.setdefault((post.day, post.company, post.data_type), []).append(post.at)
    return times


def test_should_never_refresh_a_pair_again_before_its_backoff_through_kills(
    tmp_path: Path, simulator: Simulator
) -> None:
    # Prepare: a pair's second refresh waits 100 s; the caps are far away
    refresh = {"enabled": True, "after": "1s", "backoff": 100, "max_per_company_per_day": 100,
               "max_per_day": 1000}  # fmt: skip
    config = config_file(tmp_path, simulator, refresh)
    # Act
    run_lives(config, simulator, signal.SIGKILL)
    simulator.close()
    posts = simulator.posts()
    # Check: each pair refreshed once
    twice = {pair: n for pair, n in Counter((p.company, p.data_type) for p in posts).items()
             if n > 1}  # fmt: skip
    assert posts, "the fleet has pairs to refresh"
    assert twice == {}, f"{len(posts)} refreshes received"
