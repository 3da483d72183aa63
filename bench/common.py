"""What the benchmark's processes share: the child-process protocol, company discovery, the
exporter's parts wired as ``app.run`` wires them, and small measuring helpers.

Every process of the benchmark (simulated Codat, exporter, naive baseline) is a child of
``run.py`` that speaks JSON lines: one command per line on its stdin, one answer per line on
its stdout. Its stderr is the parent's. A child exits when its stdin closes, so a parent that
dies takes its children with it.
"""

from __future__ import annotations

import base64
import json
import os
import platform
import queue
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import requests

from exporter.config.load import parse_config
from exporter.config.sections import Config
from exporter.core.clock import SystemClock

BENCH_DIR = Path(__file__).resolve().parent
API_KEY = "bench-api-key-7c1e"
DATA_TYPES = 25
LATENCY = 0.05
"""Simulated Codat latency per request for the throughput runs (the issue's 50 ms)."""
POLL_INTERVAL = "30m"
"""The poll deadline depends on it: long enough that no cycle here is cut short."""
MAX_REQUESTS_PER_MINUTE = 100_000
PAGE_SIZE = 2000


# --- the child side --------------------------------------------------------------------


def serve_commands(handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]]) -> None:
    """Answer JSON commands from stdin until ``quit`` or EOF. Handlers return the answer."""
    for line in sys.stdin:
        command = json.loads(line)
        name = command.get("cmd", "")
        if name == "quit":
            break
        handler = handlers.get(name)
        try:
            answer = handler(command) if handler else {"error": f"unknown command {name!r}"}
        except Exception as exc:  # the parent reports it; the child keeps serving
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        send(answer)


def send(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def memory_status(pid: int | str = "self") -> dict[str, float]:
    """VmHWM (peak RSS) and VmRSS of a process, in MB (10^6 bytes), from /proc/<pid>/status."""
    out: dict[str, float] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out[key] = int(value.split()[0]) * 1024 / 1e6  # the kernel's kB are KiB
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (from /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def auth_header(api_key: str = API_KEY) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(api_key.encode()).decode()}


def exporter_settings(
    base_url: str, concurrency: int, denylist: Sequence[str] = ()
) -> dict[str, Any]:
    """The config (as the YAML file's mapping) of a fleet-scale deployment, for the simulator
    at ``base_url``.

    The fleet is discovered (``GET /companies``, which also gives the names), connections
    are read at their default interval, and thresholds come from each company's sync
    settings. Those three are scheduled requests: in the benchmark they all happen in the
    first cycle, and the steady-state cycles make only dataStatus requests.

    The client-side rate limit is raised to its maximum so that only the concurrency and
    Codat's latency bound the throughput: at the default 600 a minute it would be the limit
    (10 companies/s whatever the concurrency). ``denylist`` is ``metrics.denylist``.
    """
    settings: dict[str, Any] = {
        "codat": {
            "base_url": base_url,
            "api_key": API_KEY,
            "max_concurrency": concurrency,
            "max_requests_per_minute": MAX_REQUESTS_PER_MINUTE,
        },
        "poll": {"interval": POLL_INTERVAL},
        "companies": {"discover": True, "page_size": PAGE_SIZE},
        "freshness": {"from_sync_settings": True},
    }
    if denylist:
        settings["metrics"] = {"denylist": list(denylist)}
    return settings


def exporter_config(base_url: str, concurrency: int, denylist: Sequence[str] = ()) -> Config:
    """``exporter_settings`` parsed, as ``app.run`` gets it."""
    return parse_config(exporter_settings(base_url, concurrency, denylist))


class FrozenClock(SystemClock):
    """A wall clock stopped at ``at``; monotonic time and sleeps are real.

    The simulated Codat's data is a function of its wall clock, and the exporter's ages of
    its own: with both stopped at the same instant, two exporters polling one after the
    other see the same fleet, and every scrape of either computes the same ages, so figures
    taken from two Prometheus servers at different times can be compared exactly.
    """

    def __init__(self, at: float) -> None:
        super().__init__()
        self._at = at

    def time(self) -> float:
        return self._at


def list_companies(base_url: str, api_key: str = API_KEY, limit: float = 300.0) -> dict[str, str]:
    """Company id -> name, from ``GET /companies`` as the exporter's discovery reads it.

    For the naive baseline, whose poll loop has no discovery of its own.
    """
    companies: dict[str, str] = {}
    deadline = time.monotonic() + limit
    for page in range(1, 1000):
        if time.monotonic() > deadline:
            raise TimeoutError("listing companies took too long")
        response = requests.get(
            f"{base_url}/companies",
            params={"page": page, "pageSize": PAGE_SIZE},
            headers=auth_header(api_key),
            timeout=120,
        )
        response.raise_for_status()
        doc = response.json()
        companies.update((result["id"], result["name"]) for result in doc["results"])
        if "next" not in doc["_links"]:
            return companies
    raise RuntimeError("too many pages of companies")


# --- the parent side -------------------------------------------------------------------


class ChildError(RuntimeError):
    pass


class Child:
    """A benchmark process: ``ask`` sends a command and waits (bounded) for its answer."""

    def __init__(self, name: str, argv: Sequence[str]) -> None:
        self.name = name
        self._process = subprocess.Popen(
            [sys.executable, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.hello: dict[str, Any] = {}
        """The child's first message, sent when it is ready."""
        assert self._process.stdout is not None
        threading.Thread(
            target=self._read, args=(self._process.stdout,), name=f"{name}-out", daemon=True
        ).start()

    @property
    def pid(self) -> int:
        return self._process.pid

    def _read(self, stream: TextIO) -> None:
        for line in stream:
            self._lines.put(line)
        self._lines.put(None)

    def receive(self, timeout: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise ChildError(f"{self.name}: no answer within {timeout:.0f}s") from None
        if line is None:
            raise ChildError(f"{self.name} exited (code {self._process.wait(5)})")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise ChildError(f"{self.name}: {answer['error']}")
        return answer

    def ask(self, timeout: float, cmd: str, **args: Any) -> dict[str, Any]:
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
        self._process.stdin.flush()
        return self.receive(timeout)

    def memory(self) -> dict[str, float]:
        return memory_status(self.pid)

    def close(self) -> None:
        """Ask it to quit; kill it if it does not within 10 s. Safe to call twice."""
        if self._process.poll() is None:
            try:
                assert self._process.stdin is not None
                self._process.stdin.write('{"cmd": "quit"}\n')
                self._process.stdin.close()
                self._process.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self._process.kill()
                self._process.wait(10)

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_child(name: str, script: str, *args: str, ready_timeout: float = 300.0) -> Child:
    """Start ``bench/<script>`` with ``args`` and wait for its first line (it is ready)."""
    child = Child(name, [str(BENCH_DIR / script), *args])
    try:
        child.hello = child.receive(ready_timeout)
    except BaseException:
        child.close()
        raise
    return child


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


# --- reporting -------------------------------------------------------------------------


def log(text: str) -> None:
    """Progress, on stderr (the summary goes to stdout)."""
    print(text, file=sys.stderr, flush=True)


def machine() -> str:
    """The machine, the versions and the commit, for a results header."""
    cpu = "unknown CPU"
    with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo", encoding="ascii") as info:
        mem_kib = int(info.readline().split()[1])
    commit = subprocess.run(
        ["git", "-C", str(BENCH_DIR), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return (
        f"{cpu}, {len(os.sched_getaffinity(0))} cores, "
        f"{mem_kib / 1024**2:.1f} GiB RAM; {platform.platform()}; "
        f"Python {platform.python_version()}, prometheus_client {prometheus_client_version()}; "
        f"exporter at commit {commit or 'unknown'} (plus the working tree's changes)"
    )


def prometheus_client_version() -> str:
    from importlib.metadata import version

    return version("prometheus-client")


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**NOT met**"


def insert_below_title(path: Path, section: str) -> None:
    """Put ``section`` at the top of ``path``, below its ``# `` title; keep the rest."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    title, _, rest = text.partition("\n")
    path.write_text(f"{title}\n\n{section}\n\n{rest.lstrip()}", encoding="utf-8")


class StepClock:
    """Moves only when advanced or slept on (the poller's retries and pauses sleep on it)."""

    def __init__(self, start: float) -> None:
        self._time = start
        self._mono = 10_000.0
        self._lock = threading.Lock()

    def time(self) -> float:
        return self._time

    def monotonic(self) -> float:
        return self._mono

    def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._time += seconds
            self._mono += seconds
