"""Following Codat's pages when ``_links.next`` and ``totalResults`` disagree.

The client stops at the page the envelope calls the last by either sign: no ``_links.next``,
or the page that reaches ``totalResults``. Asking for a page past it costs a request of the
daily quota and returns nothing, so the tests count the listing requests the exporter
reports on /metrics while the simulated Codat pages inconsistently (``Fleet.paging``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from exporter.core.contract import COMPANIES
from exporter.simulator.conventions import CONSISTENT, NEXT_ON_LAST_PAGE, TOTAL_TOO_HIGH
from tests.harness import Harness

REQUESTS = "codat_exporter_api_requests_total"


@pytest.mark.parametrize("page_size", [3, 4], ids=["last-page-short", "last-page-full"])
@pytest.mark.parametrize("paging", [CONSISTENT, NEXT_ON_LAST_PAGE, TOTAL_TOO_HIGH])
def test_should_list_every_company_and_stop_at_the_last_page_when_next_and_total_disagree(
    make_harness: Callable[..., Harness], paging: str, page_size: int
) -> None:
    # Prepare: 8 companies; with 4 a page, the last page is full and ends exactly on the total
    harness = make_harness(companies={"ids": [], "discover": True, "page_size": page_size})
    fleet = harness.fleet
    fleet.paging = paging
    pages = math.ceil(len(fleet.companies) / page_size)
    # Act
    result = harness.poll()
    scrape = harness.scrape()
    # Check
    assert result.all_succeeded
    assert scrape.companies() == set(fleet.companies)
    assert scrape.value(REQUESTS, endpoint=COMPANIES, code="200") == pages
    assert harness.codat.requests[COMPANIES] == pages
