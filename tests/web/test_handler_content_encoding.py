"""Which encoding /metrics answers in, as the scraper's Accept-Encoding asks (RFC 9110).

A weight of zero refuses a coding: ``gzip;q=0`` must get the plain text, not gzip that
such a client would have to reject.
"""

from __future__ import annotations

import gzip

import pytest
import requests

from tests.harness import Harness, parse_exposition


def raw_metrics(harness: Harness, accept_encoding: str) -> tuple[str | None, bytes]:
    """(Content-Encoding, body as sent): requests would otherwise undo the gzip itself."""
    response = requests.get(harness.server.url + "/metrics", stream=True, timeout=5,
                            headers={"Accept-Encoding": accept_encoding})  # fmt: skip
    with response:
        assert response.status_code == 200
        return response.headers.get("Content-Encoding"), response.raw.read(decode_content=False)


@pytest.mark.parametrize(
    ("accept_encoding", "gzipped"),
    [
        ("gzip;q=0", False),
        ("gzip; q=0", False),
        ("gzip;q=0.0", False),
        ("deflate, gzip;q=0", False),
        ("gzip;Q=0", False),
        ("gzip;q=0.0000", False),
        ("identity", False),
        ("gzip", True),
        ("gzip;q=0.5", True),
        ("deflate, gzip", True),
    ],
)
def test_should_gzip_metrics_only_for_a_scraper_that_accepts_gzip(
    harness: Harness, accept_encoding: str, gzipped: bool
) -> None:
    # Prepare
    harness.poll()
    # Act
    encoding, body = raw_metrics(harness, accept_encoding)
    # Check
    assert encoding == ("gzip" if gzipped else None)
    text = (gzip.decompress(body) if gzipped else body).decode()
    assert {s.name for s in parse_exposition(text)} >= {"codat_exporter_company_up"}
