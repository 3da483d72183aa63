"""The exporter's HTTP surface as Prometheus and an operator meet it."""

from __future__ import annotations

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
