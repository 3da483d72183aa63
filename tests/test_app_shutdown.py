"""Stopping in the middle of a poll cycle: exit 0 within the request timeout, no thread
left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from exporter.app import start_scheduler
from exporter.core.contract import DATA_STATUS
from exporter.simulator.server import SimulatedCodat
from tests.harness import API_KEY, LISTEN_ANYWHERE, Harness, Program


def wait_for(condition: Callable[[], bool], seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_should_exit_0_within_the_timeout_on_sigterm_mid_cycle(
    tmp_path: Path, codat: SimulatedCodat, fleet_ids: list[str]
) -> None:
    # Prepare: every request takes 0.4 s, so a cycle of 8 companies with 2 workers is ~3 s
    codat.latency = 0.4
    config = tmp_path / "config.yaml"
    config.write_text(
        f"codat: {{base_url: '{codat.url}', api_key: '{API_KEY}', timeout: 2s,"
        f" max_concurrency: 2}}\npoll: {{interval: 1h}}\nconnections: {{enabled: false}}\n"
        f"companies: {{ids: [{', '.join(fleet_ids)}]}}\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "exporter", "--config.file", str(config),
         "--web.listen-address", LISTEN_ANYWHERE],
        stderr=subprocess.PIPE, text=True, env={**os.environ},
    )  # fmt: skip
    try:
        assert wait_for(lambda: codat.requests.get(DATA_STATUS, 0) >= 1), "cycle started"
        # Act
        process.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        code = process.wait(timeout=10)
        took = time.monotonic() - sent
    finally:
        process.kill()
        _, stderr = process.communicate()
    # Check
    assert code == 0
    assert took < 2 + 1, "in-flight requests end within codat.timeout"
    assert codat.requests[DATA_STATUS] < len(fleet_ids), "queued companies were not polled"
    assert "received SIGTERM; shutting down" in stderr
    assert "Traceback" not in stderr


def test_should_exit_on_a_sigterm_the_kernel_hands_to_another_thread(
    tmp_path: Path, codat: SimulatedCodat, fleet_ids: list[str]
) -> None:
    # Prepare: listening, a cycle done (the main thread waits for a signal by then)
    config = tmp_path / "config.yaml"
    config.write_text(
        f"codat: {{base_url: '{codat.url}', api_key: '{API_KEY}', timeout: 2s}}\n"
        f"poll: {{interval: 1s}}\ncompanies: {{ids: [{', '.join(fleet_ids)}]}}\n"
    )
    with Program("--config.file", str(config), "--web.listen-address", LISTEN_ANYWHERE) as program:
        program.url(timeout=60)
        assert wait_for(lambda: "poll cycle:" in program.stderr, seconds=60)
        pid = program.process.pid
        others = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid)
        # Act: kill(2) of a thread's id is the process' signal, delivered to that thread
        # (here the listener's, the first started), as the kernel may choose to
        os.kill(others[0], signal.SIGTERM)
        sent = time.monotonic()
        code = program.process.wait(timeout=30)
        took = time.monotonic() - sent
    # Check: handled at once, not at the next signal to reach the main thread (never)
    assert code == 0
    assert took < 10, f"{took:.1f}s"
    assert "received SIGTERM; shutting down" in program.stderr
    assert "Traceback" not in program.stderr


def test_should_leave_no_thread_behind_when_stopped_mid_cycle(
    make_harness: Callable[..., Harness],
) -> None:
    # Prepare
    before = set(threading.enumerate())
    harness = make_harness(codat={"max_concurrency": 3}, connections={"enabled": False})
    harness.codat.latency = 0.3
    scheduler = start_scheduler(harness.poller, interval=3600)
    assert wait_for(lambda: harness.codat.requests.get(DATA_STATUS, 0) >= 1)
    # Act: what app.run does on SIGTERM
    scheduler.shutdown(wait=False)
    harness.close()
    scheduler.shutdown(wait=True) if scheduler.running else None

    # Check
    def left() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t not in before and t.is_alive()}

    assert wait_for(lambda: not left(), seconds=5), [t.name for t in left()]
    assert not harness.store.ready.is_set(), "a cut-short cycle publishes nothing"
