"""The listener against clients that hold it up: more connections than ``--web.max-requests``,
a webhook body trickled in, and a port someone else holds.

Everything runs over real loopback sockets. Slow clients are sockets that connected and
sent half a request line: the server accepts connections in the order they arrived, so
which ones hold the slots is known without waiting. A client gives its slot back by
hanging up and reading until the server closes too (the slot is free before the close).
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

from exporter.cli import main
from exporter.web import WEBHOOK_PATH, ExporterServer
from exporter.webhooks import WebhookReceiver, WebhookVerifier
from tests.harness import FakeClock, Harness
from tests.test_hostile_input import logging_restored
from tests.test_webhooks import new_secret

REJECTED = "codat_exporter_http_requests_rejected_total"


@pytest.fixture
def listen(harness: Harness, clock: FakeClock) -> Iterator[Callable[..., ExporterServer]]:
    """``listen(**kwargs)``: an ExporterServer on a free loopback port over the harness."""
    started: list[ExporterServer] = []

    def start(**kwargs: Any) -> ExporterServer:
        server = ExporterServer("127.0.0.1:0", harness.store, harness.metrics, clock, **kwargs)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def connect(server: ExporterServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", int(server.server_address[1])), timeout=5)


@contextmanager
def stalled(server: ExporterServer, count: int) -> Iterator[None]:
    """``count`` connections that sent half a request line and wait; each holds a slot
    until the block ends."""
    connections = [connect(server) for _ in range(count)]
    try:
        for connection in connections:
            connection.sendall(b"GET /metr")
        yield
    finally:
        for connection in connections:
            hang_up(connection)


def hang_up(connection: socket.socket) -> None:
    with connection:
        connection.shutdown(socket.SHUT_WR)
        try:
            while connection.recv(65536):
                pass
        except ConnectionResetError:
            pass


def rejected(server: ExporterServer) -> str:
    lines = requests.get(server.url + "/metrics", timeout=5).text.splitlines()
    return next(line for line in lines if line.startswith(REJECTED + " "))


# --- --web.max-requests --------------------------------------------------------------------


def test_should_answer_503_on_any_path_beyond_max_requests_and_count_it(
    listen: Callable[..., ExporterServer],
) -> None:
    # Prepare
    server = listen(max_requests=2)
    # Act
    with stalled(server, 2):
        beyond = [requests.get(server.url + p, timeout=5) for p in ("/metrics", "/-/healthy")]
    after = requests.get(server.url + "/metrics", timeout=5)
    # Check
    assert [r.status_code for r in beyond] == [503, 503]
    assert all(r.headers["Connection"] == "close" for r in beyond)
    assert after.status_code == 200
    assert rejected(server) == f"{REJECTED} 2.0"


def test_should_close_unanswered_what_comes_beyond_twice_max_requests(
    listen: Callable[..., ExporterServer],
) -> None:
    # Prepare: one connection served, one waiting for its 503
    server = listen(max_requests=1)
    # Act
    with stalled(server, 2):
        third = connect(server)
        with third:
            third.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                answer = third.recv(65536)
            except ConnectionResetError:
                answer = b""
    # Check
    assert answer == b""
    assert rejected(server) == f"{REJECTED} 2.0"


def test_should_serve_every_connection_when_max_requests_is_0(
    listen: Callable[..., ExporterServer],
) -> None:
    # Prepare
    server = listen(max_requests=0)
    # Act
    with stalled(server, 3):
        answer = requests.get(server.url + "/metrics", timeout=5)
    # Check
    assert answer.status_code == 200
    assert f"{REJECTED} 0.0" in answer.text


def test_should_cap_connections_as_the_command_line_says() -> None:
    # Prepare
    process = subprocess.Popen(
        [sys.executable, "-m", "exporter", "--demo", "--web.listen-address", "127.0.0.1:0",
         "--web.max-requests", "1"],
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        url = serving_url(process)
        server_port = int(url.rsplit(":", 1)[1])
        # Act
        with socket.create_connection(("127.0.0.1", server_port), timeout=5) as holder:
            holder.sendall(b"GET /metr")
            beyond = requests.get(url + "/-/healthy", timeout=5)
            hang_up(holder)
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=15)
    finally:
        process.kill()
        process.communicate()
    # Check
    assert beyond.status_code == 503
    assert code == 0


def serving_url(process: subprocess.Popen[bytes]) -> str:
    """The listener's URL from the start-up log (port 0 was asked for)."""
    assert process.stderr is not None
    logged = b""
    deadline = time.monotonic() + 30
    while b"/metrics" not in logged.partition(b"serving metrics at ")[2]:
        assert time.monotonic() < deadline, logged
        if select.select([process.stderr], [], [], 1)[0]:
            chunk = os.read(process.stderr.fileno(), 65536)
            assert chunk, logged
            logged += chunk
    url = logged.partition(b"serving metrics at ")[2].split(b"/metrics")[0]
    return url.decode()


def test_should_refuse_a_negative_max_requests_with_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Act
    with pytest.raises(SystemExit) as exit_:
        main(["--demo", "--web.max-requests", "-1"])
    # Check
    assert exit_.value.code == 2
    assert "--web.max-requests: '-1' is not a whole number, 0 or more" in capsys.readouterr().err


# --- the webhook body's deadline -------------------------------------------------------------


def test_should_answer_408_to_a_webhook_body_trickled_past_its_deadline(
    harness: Harness, clock: FakeClock, listen: Callable[..., ExporterServer]
) -> None:
    # Prepare: every byte comes well within the per-read timeout, the whole body never does
    receiver = WebhookReceiver(
        WebhookVerifier(new_secret(), clock), clock, harness.metrics.webhooks, harness.poller
    )
    server = listen(webhooks=receiver, body_timeout=0.5)
    body = json.dumps({"id": str(uuid.uuid4()), "eventType": "read.completed"}).encode()
    head = f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
    # Act
    with connect(server) as client:
        client.sendall(head.encode())
        sent = 0
        while sent < len(body) and not select.select([client], [], [], 0.05)[0]:
            client.sendall(body[sent : sent + 1])
            sent += 1
        answer = client.recv(65536)
    # Check
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"Connection: close" in answer
    assert sent < len(body)


# --- a port already taken --------------------------------------------------------------------


@pytest.mark.parametrize("taken_by", ["metrics", "webhooks"])
def test_should_name_the_address_it_cannot_listen_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], taken_by: str
) -> None:
    # Prepare
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        listeners = {"metrics": "127.0.0.1:0", "webhooks": "127.0.0.1:0", taken_by: address}
        config = tmp_path / "config.yaml"
        config.write_text(
            f"codat: {{base_url: 'http://127.0.0.1:9', api_key: k}}\n"
            f"companies: {{ids: ['{uuid.uuid4()}']}}\n"
            f"webhooks: {{enabled: true, secret: '{new_secret()}', "
            f"listen_address: '{listeners['webhooks']}'}}\n"
        )
        # Act
        with logging_restored():
            code = main(["--config.file", str(config),
                         "--web.listen-address", listeners["metrics"]])  # fmt: skip
    # Check
    assert code == 1
    assert f"cannot listen on {address}: Address already in use" in capsys.readouterr().err
