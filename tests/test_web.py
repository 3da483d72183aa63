"""The exporter's HTTP surface as Prometheus and an operator meet it."""

from __future__ import annotations

import socket

from tests.harness import Harness


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
