"""The exporter's HTTP surface as Prometheus and an operator meet it."""

from __future__ import annotations

import socket

import pytest
import requests

from exporter.codat.webhooks.receiver import WebhookReceiver
from exporter.codat.webhooks.signatures import WebhookVerifier
from exporter.web.handler import WEBHOOK_PATH
from exporter.web.server import ExporterServer
from tests.codat.webhooks.test_signatures import new_secret
from tests.harness import FakeClock, Harness


def test_should_report_not_ready_until_the_first_cycle_completes(harness: Harness) -> None:
    # Act
    before = harness.get("/-/ready")
    harness.poll()
    after = harness.get("/-/ready")
    # Check
    assert before.status_code == 503
    assert after.status_code == 200


def test_should_report_healthy_while_running(harness: Harness) -> None:
    assert harness.get("/-/healthy").status_code == 200


def test_should_serve_a_landing_page_that_links_to_metrics(harness: Harness) -> None:
    # Prepare
    harness.poll()
    # Act
    page = harness.get("/")
    # Check
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert 'href="/metrics"' in page.text
    assert f"{len(harness.fleet.companies)} companies monitored" in page.text


def test_should_serve_metrics_before_the_first_poll_without_company_series(
    harness: Harness,
) -> None:
    # Act
    scrape = harness.scrape()
    # Check
    assert scrape.find("codat_exporter_build_info") != []
    assert scrape.companies() == set()


def test_should_answer_404_for_unknown_paths(harness: Harness) -> None:
    assert harness.get("/nope").status_code == 404


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/"), ("POST", "/metrics"), ("PUT", "/metrics"), ("DELETE", "/metrics"),
     ("PATCH", "/-/ready"), ("OPTIONS", "/"), ("TRACE", "/-/healthy")],
)  # fmt: skip
def test_should_answer_405_with_allow_to_other_methods_on_known_paths(
    harness: Harness, method: str, path: str
) -> None:
    # Act
    answer = requests.request(method, harness.server.url + path, data=b"x" * 100, timeout=5)
    # Check
    assert answer.status_code == 405
    assert answer.headers["Allow"] == "GET, HEAD"
    assert answer.headers["Connection"] == "close"  # the body was not read


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_should_answer_404_to_any_method_on_unknown_paths(harness: Harness, method: str) -> None:
    assert requests.request(method, harness.server.url + "/nope", timeout=5).status_code == 404


def test_should_answer_405_with_allow_post_to_get_on_the_webhook_path(
    harness: Harness, clock: FakeClock
) -> None:
    # Prepare
    receiver = WebhookReceiver(
        WebhookVerifier(new_secret(), clock), clock, harness.metrics.webhooks, harness.poller
    )
    with_webhooks = ExporterServer(
        "127.0.0.1:0", harness.store, harness.metrics, clock, webhooks=receiver
    )
    with_webhooks.start()
    try:
        # Act
        enabled = requests.get(with_webhooks.url + WEBHOOK_PATH, timeout=5)
        disabled = harness.get(WEBHOOK_PATH)
    finally:
        with_webhooks.stop()
    # Check
    assert enabled.status_code == 405
    assert enabled.headers["Allow"] == "POST"
    assert disabled.status_code == 404


def test_should_use_the_prometheus_text_content_type(harness: Harness) -> None:
    assert (
        harness.get("/metrics").headers["Content-Type"]
        == "text/plain; version=0.0.4; charset=utf-8"
    )


def test_should_stream_metrics_in_chunks_and_give_http_1_0_a_plain_body(harness: Harness) -> None:
    # Prepare
    harness.poll()
    host, port = harness.server.server_address[:2]
    # Act
    bodies = {}
    for version in ("HTTP/1.1", "HTTP/1.0"):
        with socket.create_connection((str(host), int(port)), timeout=5) as conn:
            conn.sendall(f"GET /metrics {version}\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            raw = b""
            while chunk := conn.recv(65536):
                raw += chunk
        bodies[version] = raw
    # Check
    head11, _ = bodies["HTTP/1.1"].split(b"\r\n\r\n", 1)
    head10, body10 = bodies["HTTP/1.0"].split(b"\r\n\r\n", 1)
    assert b"Transfer-Encoding: chunked" in head11
    assert b"Content-Length: %d" % len(body10) in head10
    assert b"codat_exporter_company_up{" in body10


def test_should_stream_the_same_metrics_as_a_whole_render(harness: Harness) -> None:
    # Prepare
    harness.poll()
    # Act
    streamed = harness.get("/metrics").text
    whole = harness.store.current.render(harness.clock.time()).decode()
    # Check
    assert streamed.startswith(whole)
