"""The program's listener under load (issue 16): slow clients, a burst of connections far
above ``--web.max-requests``, and accept running out of file descriptors, each against a
real ``python -m exporter`` over loopback. The figures at production sizes (2,000
connections, 500 webhook deliveries) are bench/http_burst.py's.
"""

from __future__ import annotations

import errno
import os
import resource
import selectors
import signal
import socket
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from exporter.simulator.server import SimulatedCodat
from tests.codat.webhooks.test_receiver_end_to_end import answers_200, wait_for
from tests.codat.webhooks.test_signatures import new_secret
from tests.harness import API_KEY, LISTEN_ANYWHERE, Program
from tests.web.test_server import HOLDING, hang_up

SCRAPE = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def config_file(folder: Path, codat: SimulatedCodat, company_ids: list[str]) -> Path:
    """A config polling the simulated Codat hourly, with webhooks on."""
    path = folder / "config.yaml"
    path.write_text(
        f"codat: {{base_url: '{codat.url}', api_key: '{API_KEY}', timeout: 2s}}\n"
        f"poll: {{interval: 1h}}\ncompanies: {{ids: [{', '.join(company_ids)}]}}\n"
        f"webhooks: {{enabled: true, secret: '{new_secret()}'}}\n"
    )
    return path


@contextmanager
def slow_clients(port: int, count: int) -> Iterator[None]:
    """``count`` connections that sent half a request line and wait."""
    connections = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)]
    try:
        for connection in connections:
            connection.sendall(b"GET /metr")
        yield
    finally:
        for connection in connections:
            connection.close()


def burst(port: int, count: int, seconds: float) -> Counter[str]:
    """``count`` connections opened at once, each sending a scrape and reading until the
    server closes: how many got each status, or what happened instead (a reset, a close
    without an answer, nothing within ``seconds``)."""
    selector = selectors.DefaultSelector()
    received: dict[socket.socket, bytes] = {}
    outcomes: Counter[str] = Counter()
    for _ in range(count):
        client = socket.socket()
        client.setblocking(False)
        client.connect_ex(("127.0.0.1", port))
        selector.register(client, selectors.EVENT_WRITE, client)
    deadline = time.monotonic() + seconds
    while selector.get_map() and time.monotonic() < deadline:
        for key, events in selector.select(0.5):
            client = key.data
            error = client.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if not error and events & selectors.EVENT_WRITE:
                client.send(SCRAPE)
                selector.modify(client, selectors.EVENT_READ, client)
                received[client] = b""
                continue
            try:
                chunk: bytes | None = client.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                chunk = None
            if chunk:
                received[client] = (received[client] + chunk)[:16]
                continue
            answer = received.get(client, b"")
            gone = errno.errorcode.get(error, "reset") if chunk is None or error else "closed"
            outcomes[answer[9:12].decode() if answer.startswith(b"HTTP/1.") else gone] += 1
            selector.unregister(client)
            client.close()
    for key in list(selector.get_map().values()):
        outcomes["no answer in time"] += 1
        key.data.close()
    selector.close()
    return outcomes


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_should_answer_health_and_a_scrape_while_slow_clients_hold_more_than_max_requests() -> None:
    # Prepare: the fault probe's case, at --web.max-requests' default of 40
    with Program("--demo", "--web.listen-address", LISTEN_ANYWHERE) as program:
        url = program.url()
        ready = wait_for(lambda: answers_200(url + "/-/ready"))
        # Act
        with slow_clients(port_of(url), 45):
            answers = [requests.get(url + p, timeout=5) for p in ("/-/healthy", "/-/ready")]
            scrape = requests.get(url + "/metrics", timeout=5)
    # Check
    assert ready, program.stderr
    assert [answer.status_code for answer in answers] == [200, 200]
    assert scrape.status_code == 200
    assert "codat_exporter_http_requests_rejected_total 0.0" in scrape.text


def test_should_answer_every_connection_of_a_burst_far_above_max_requests() -> None:
    # Prepare
    with Program("--demo", "--web.listen-address", LISTEN_ANYWHERE,
                 "--web.max-requests", "4") as program:  # fmt: skip
        url = program.url()
        ready = wait_for(lambda: answers_200(url + "/-/ready"))
        # Act
        outcomes = burst(port_of(url), 400, seconds=60)
        after = requests.get(url + "/metrics", timeout=5)
    # Check: each one answered, and the 503s counted
    assert ready, program.stderr
    assert set(outcomes) <= {"200", "503"}, outcomes
    assert outcomes.total() == 400
    rejected = f"codat_exporter_http_requests_rejected_total {outcomes['503']:.1f}"
    assert rejected in after.text


def test_should_cap_responses_as_the_command_line_says(
    tmp_path: Path, codat: SimulatedCodat, fleet_ids: list[str]
) -> None:
    # Prepare
    config = config_file(tmp_path, codat, fleet_ids)
    with Program("--config.file", str(config), "--web.listen-address", LISTEN_ANYWHERE,
                 "--web.max-requests", "1") as program:  # fmt: skip
        url = program.url()
        with socket.create_connection(("127.0.0.1", port_of(url)), timeout=5) as holder:
            holder.sendall(HOLDING)
            continued = holder.recv(65536)
            # Act
            beyond = requests.get(url + "/metrics", timeout=5)
            health = requests.get(url + "/-/healthy", timeout=5)
            hang_up(holder)
        after = requests.get(url + "/metrics", timeout=5)
        program.process.send_signal(signal.SIGTERM)
        code = program.process.wait(timeout=15)
    # Check
    assert continued.startswith(b"HTTP/1.1 100 "), program.stderr
    assert beyond.status_code == 503
    assert health.status_code == 200
    assert after.status_code == 200
    assert code == 0


def test_should_rest_and_then_answer_when_accept_runs_out_of_file_descriptors(
    tmp_path: Path, codat: SimulatedCodat, fleet_ids: list[str]
) -> None:
    # Prepare: the process may open 4 more files; 8 idle connections take them and wait
    config = config_file(tmp_path, codat, fleet_ids)
    with Program("--config.file", str(config), "--web.listen-address", LISTEN_ANYWHERE) as program:
        url = program.url()
        port, pid = port_of(url), program.process.pid
        ready = wait_for(lambda: answers_200(url + "/-/ready"))
        limit = len(os.listdir(f"/proc/{pid}/fd")) + 4
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, limit))
        idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(8)]
        out_of_fds = wait_for(lambda: "cannot accept connections" in program.stderr, 10)
        # Act
        late = socket.create_connection(("127.0.0.1", port), timeout=30)
        late.sendall(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        cpu_before = cpu_seconds(pid)
        time.sleep(1.0)
        cpu_resting = cpu_seconds(pid) - cpu_before
        for connection in idle:
            connection.close()
        with late:
            answer = late.recv(65536)
    # Check: accept rested instead of spinning, and the waiting client was answered
    assert ready, program.stderr
    assert out_of_fds, program.stderr
    assert "Too many open files" in program.stderr
    assert cpu_resting < 0.1
    assert answer.startswith(b"HTTP/1.1 200 "), answer
