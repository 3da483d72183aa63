"""The listener against clients that hold it up: more requests than ``--web.max-requests``,
a request head or a webhook body trickled in, a head too large, and a port someone else
holds. The same through the program, and bursts of connections: tests/web/test_server_load.py.

Everything runs over real loopback sockets. A request that holds a serving slot is a webhook
delivery whose body never comes: its thread waits for the body. It sends ``Expect:
100-continue``, so the thread says when it has the request, and which requests hold the
slots is known without waiting. It gives its slot back when the client hangs up.
"""

from __future__ import annotations

import http.client
import json
import re
import select
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

from exporter.cli import main
from exporter.codat.webhooks.receiver import WebhookReceiver
from exporter.codat.webhooks.signatures import WebhookVerifier
from exporter.web.connections import MAX_HEAD_BYTES
from exporter.web.handler import WEBHOOK_PATH
from exporter.web.server import ExporterServer
from tests.codat.webhooks.test_signatures import new_secret
from tests.e2e.test_hostile_input import logging_restored
from tests.harness import FakeClock, Harness

REJECTED = "codat_exporter_http_requests_rejected_total"
HOLDING = (
    f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n"
).encode()


@pytest.fixture
def listen(harness: Harness, clock: FakeClock) -> Iterator[Callable[..., ExporterServer]]:
    """``listen(**kwargs)``: an ExporterServer on a free loopback port over the harness, with
    webhooks on (the slot holders), polled once (ready)."""
    harness.poll()
    receiver = WebhookReceiver(
        WebhookVerifier(new_secret(), clock), clock, harness.metrics.webhooks, harness.poller
    )
    started: list[ExporterServer] = []

    def start(**kwargs: Any) -> ExporterServer:
        server = ExporterServer(
            "127.0.0.1:0", harness.store, harness.metrics, clock, webhooks=receiver, **kwargs
        )
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def connect(server: ExporterServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", int(server.server_address[1])), timeout=5)


@contextmanager
def served(server: ExporterServer, count: int) -> Iterator[None]:
    """``count`` requests being served, each holding a slot until the block ends."""
    holders = [connect(server) for _ in range(count)]
    try:
        for holder in holders:
            holder.sendall(HOLDING)
            assert holder.recv(65536).startswith(b"HTTP/1.1 100 ")
        yield
    finally:
        for holder in holders:
            hang_up(holder)


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


def test_should_answer_503_beyond_max_requests_responses_and_count_it(
    listen: Callable[..., ExporterServer],
) -> None:
    # Prepare
    server = listen(max_requests=2)
    # Act
    with served(server, 2):
        beyond = [requests.get(server.url + p, timeout=5) for p in ("/metrics", "/")]
        with connect(server) as delivery:
            delivery.sendall(HOLDING)
            refused_delivery = delivery.recv(65536)
    after = requests.get(server.url + "/metrics", timeout=5)
    # Check: a delivery that asked to continue is told 503, not to send its body
    assert [r.status_code for r in beyond] == [503, 503]
    assert all(r.headers["Connection"] == "close" for r in beyond)
    assert refused_delivery.startswith(b"HTTP/1.1 503 "), refused_delivery
    assert after.status_code == 200
    assert rejected(server) == f"{REJECTED} 3.0"


def test_should_answer_health_at_once_while_max_requests_responses_are_served(
    listen: Callable[..., ExporterServer],
) -> None:
    # Prepare
    server = listen(max_requests=2)
    # Act
    with served(server, 2):
        health = [requests.get(server.url + p, timeout=5) for p in ("/-/healthy", "/-/ready")]
    # Check
    assert [r.status_code for r in health] == [200, 200]
    assert [r.text for r in health] == ["Healthy.\n", "Ready.\n"]
    assert rejected(server) == f"{REJECTED} 0.0"


def test_should_not_count_a_request_head_still_coming_against_max_requests(
    listen: Callable[..., ExporterServer],
) -> None:
    # Prepare: the probe's case, a slow client per slot and more
    server = listen(max_requests=2)
    slow = [connect(server) for _ in range(5)]
    # Act
    for connection in slow:
        connection.sendall(b"GET /metr")
    scrape = requests.get(server.url + "/metrics", timeout=5)
    for connection in slow:
        hang_up(connection)
    # Check
    assert scrape.status_code == 200
    assert f"{REJECTED} 0.0" in scrape.text


def test_should_serve_every_request_when_max_requests_is_0(
    listen: Callable[..., ExporterServer],
) -> None:
    # Prepare
    server = listen(max_requests=0)
    # Act
    with served(server, 3):
        answer = requests.get(server.url + "/metrics", timeout=5)
    # Check
    assert answer.status_code == 200
    assert f"{REJECTED} 0.0" in answer.text


# --- kept-alive connections -----------------------------------------------------------------


def test_should_keep_a_connection_alive_from_request_to_request(
    listen: Callable[..., ExporterServer],
) -> None:
    # Prepare: requests the front answers itself and requests a thread serves, in turn
    server = listen(max_requests=1)
    client = http.client.HTTPConnection("127.0.0.1", int(server.server_address[1]), timeout=5)
    statuses, sockets = [], set()
    # Act
    for path in ("/-/healthy", "/metrics", "/-/ready", "/metrics"):
        client.request("GET", path)
        response = client.getresponse()
        response.read()
        statuses.append(response.status)
        sockets.add(id(client.sock))
    client.close()
    # Check: one connection for all four, each thread's slot given back before the next
    assert statuses == [200, 200, 200, 200]
    assert len(sockets) == 1


def test_should_answer_pipelined_requests_in_order(listen: Callable[..., ExporterServer]) -> None:
    # Prepare
    server = listen()
    request = "GET {} HTTP/1.1\r\nHost: x\r\n\r\n"
    # Act
    with connect(server) as client:
        client.sendall(
            "".join(request.format(p) for p in ("/-/ready", "/nope", "/-/healthy")).encode()
        )
        client.shutdown(socket.SHUT_WR)
        answers = b""
        while chunk := client.recv(65536):
            answers += chunk
    # Check
    statuses = re.findall(rb"HTTP/1.1 (\d+) ", answers)
    assert statuses == [b"200", b"404", b"200"]
    assert answers.index(b"Ready.") < answers.index(b"Not found.") < answers.index(b"Healthy.")


# --- request heads: one deadline, a size limit ---------------------------------------------------


def test_should_answer_408_to_a_request_head_trickled_past_its_deadline(
    listen: Callable[..., ExporterServer],
) -> None:
    # Prepare: every byte comes well within any per-read timeout, the whole head never does
    server = listen(head_timeout=0.5)
    head = b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 200 + b"\r\n\r\n"
    # Act
    with connect(server) as client:
        sent = 0
        while sent < len(head) and not select.select([client], [], [], 0.05)[0]:
            client.sendall(head[sent : sent + 1])
            sent += 1
        answer = client.recv(65536)
    # Check
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"Connection: close" in answer
    assert sent < len(head)


def test_should_answer_431_to_a_request_head_too_large(
    listen: Callable[..., ExporterServer],
) -> None:
    # Prepare
    server = listen()
    head = b"GET /metrics HTTP/1.1\r\nX-Large: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n"
    # Act
    with connect(server) as client:
        client.sendall(head)
        answer = client.recv(65536)
    after = requests.get(server.url + "/metrics", timeout=5)
    # Check
    assert answer.startswith(b"HTTP/1.1 431 "), answer
    assert after.status_code == 200


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
    listen: Callable[..., ExporterServer],
) -> None:
    # Prepare: every byte comes well within the per-read timeout, the whole body never does
    server = listen(body_timeout=0.5)
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
