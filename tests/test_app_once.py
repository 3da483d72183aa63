"""``--once`` as a cron job or a CI smoke test runs it: its exit code must tell the truth, and
Ctrl-C must stop it at once."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.simulator.server import SimulatedCodat
from tests.harness import API_KEY, parse_exposition

COMPANY = "8a210b68-6988-11ed-a1eb-0242ac120002"


def write_config(
    tmp_path: Path, base_url: str, companies: str, timeout: str = "2s", key: str = API_KEY
) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"codat: {{base_url: '{base_url}', api_key: '{key}', timeout: {timeout}}}\n"
        f"poll: {{interval: 1m}}\ncompanies: {companies}\n"
    )
    return path


def once(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exporter", "--config.file", str(config),
                           "--once"], capture_output=True, text=True, timeout=60,
                          check=False)  # fmt: skip


@pytest.fixture
def black_hole() -> Iterator[socket.socket]:
    """A loopback listener that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        listener.settimeout(20)
        yield listener


def test_should_exit_1_from_once_when_codat_rejects_the_key_during_discovery(
    tmp_path: Path, codat: SimulatedCodat
) -> None:
    # Prepare: a key the simulated Codat does not know
    config = write_config(tmp_path, codat.url, "{discover: true}", key="revoked-key")
    # Act
    run = once(config)
    # Check
    assert run.returncode == 1, run.stderr
    assert "Codat rejected the API key" in run.stderr
    errors = [s for s in parse_exposition(run.stdout)
              if s.name == "codat_exporter_poll_errors_total" and s.value]  # fmt: skip
    assert [(s.labels["reason"], s.value) for s in errors] == [("api_key_rejected", 1.0)]


def test_should_exit_1_from_once_when_codat_is_unreachable_during_discovery(
    tmp_path: Path,
) -> None:
    # Prepare: a port that refuses connections: bound, never listened on, held to the end
    # (closed, another process could take it)
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        config = write_config(tmp_path, f"http://127.0.0.1:{port}", "{discover: true}", "1s")
        # Act
        run = once(config)
    # Check
    assert run.returncode == 1, run.stderr
    assert "company discovery failed; no list yet" in run.stderr


@pytest.mark.parametrize(("sent", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_should_stop_once_at_a_signal_with_one_line_and_no_traceback(
    tmp_path: Path, black_hole: socket.socket, sent: signal.Signals, code: int
) -> None:
    # Prepare: a Codat that holds every request for the whole 30 s timeout
    host, port = black_hole.getsockname()
    config = write_config(tmp_path, f"http://{host}:{port}", f"{{ids: [{COMPANY}]}}", "30s")
    process = subprocess.Popen(
        [sys.executable, "-m", "exporter", "--config.file", str(config), "--once"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        connection, _ = black_hole.accept()  # the poll's request is in flight
        # Act
        sent_at = time.monotonic()
        os.kill(process.pid, sent)
        stdout, stderr = process.communicate(timeout=20)
        took = time.monotonic() - sent_at
        connection.close()
    finally:
        process.kill()
        process.wait()
    # Check: far sooner than the request's 30 s timeout
    assert process.returncode == code
    assert took < 5, took
    assert "Traceback" not in stderr
    assert stderr.splitlines() == [line for line in stderr.splitlines() if "received" in line]
    assert len(stderr.splitlines()) == 1
    assert f"received {sent.name}; shutting down" in stderr
    assert stdout == ""
