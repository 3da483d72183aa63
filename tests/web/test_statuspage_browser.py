"""The status page in a real headless Chromium (Debian's ``chromium``, driven by Playwright
for Python; nothing downloads a browser): the demo fleet's page shows every pair /metrics
calls stale and agrees with /metrics on every row, the form narrows the table with and
without JavaScript, the style sheet passes the Content-Security-Policy, and a screenshot is
saved for a person to look at.

Skipped with a notice when chromium or playwright is missing; under CI (env CI set) that
fails instead, as for promtool.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from exporter.demo import start_demo
from exporter.web.statustables import span
from tests.harness import FakeClock, Harness, Scrape

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, ViewportSize

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
"""No GPU, no sandbox (root in a container), and nothing that reaches out to Google."""


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    reason = ""
    if path is None:
        reason = "chromium is not installed (Debian: apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "playwright is not installed (pip install -e '.[test]')"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; .ci/run must install it")
        pytest.skip(reason)
    assert path is not None
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """The demo's fleet and config, polled once by the real exporter."""
    logging.getLogger("exporter").setLevel(logging.CRITICAL)
    clock = FakeClock()
    simulator, config = start_demo(clock, str(tmp_path_factory.mktemp("demo")))
    harness = Harness(config, clock, simulator)
    harness.poll()
    yield harness
    harness.close()
    simulator.stop()
    logging.getLogger("exporter").setLevel(logging.NOTSET)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    opened = context.new_page()
    yield opened
    context.close()


PAIR_ROWS = "#pairs tr[data-company-id]"
"""A row per pair, whether shown or folded into its company's row of one cause."""
ROW_FIELDS = """rows => rows.map(row => ({
    company_id: row.dataset.companyId, data_type: row.dataset.dataType,
    status: row.dataset.status, states: row.dataset.states.split(' '),
    ages: row.cells[4].innerText,
}))"""


def rows_of(page: Page) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = page.locator(PAIR_ROWS).evaluate_all(ROW_FIELDS)
    return rows


def pair_values(scrape: Scrape, name: str) -> dict[tuple[str, str], float]:
    return {(s.labels["company_id"], s.labels["data_type"]): s.value for s in scrape.find(name)}


def test_should_show_every_pair_metrics_calls_stale_and_match_metrics_on_every_row(
    demo: Harness, page: Page, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Prepare
    refused: list[str] = []
    page.on("console", lambda message: refused.append(message.text))
    scrape = demo.scrape()
    ages = pair_values(scrape, "codat_data_type_last_successful_sync_age_seconds")
    limits = pair_values(scrape, "codat_data_type_max_age_seconds")
    stale = {pair for pair, age in ages.items() if age > limits[pair]}
    # Act
    page.goto(demo.server.url + "/")
    rows = rows_of(page)
    shot = tmp_path_factory.mktemp("status-page") / "status-page.png"
    page.screenshot(path=str(shot), full_page=True)
    # Check
    shown = {(row["company_id"], row["data_type"]): row for row in rows}
    assert stale and stale <= set(shown)
    for (company_id, data_type), row in shown.items():
        labels = {"company_id": company_id, "data_type": data_type}
        assert scrape.value("codat_data_type_status", status=row["status"], **labels) == 1
        assert ("stale" in row["states"]) == ((company_id, data_type) in stale)
        assert row["ages"].split(" / ")[1].split(" (")[0] == span(limits[company_id, data_type])
    collapse = page.locator("table#pairs").evaluate("t => getComputedStyle(t).borderCollapse")
    assert collapse == "collapse"  # the style sheet passed the Content-Security-Policy
    assert refused == []
    assert shot.stat().st_size > 10_000
    print(f"status page screenshot: {shot}")


def test_should_narrow_the_table_when_the_form_is_submitted(demo: Harness, page: Page) -> None:
    # Prepare
    page.goto(demo.server.url + "/")
    before = rows_of(page)
    # Act
    page.select_option("select[name=status]", "AuthError")
    with page.expect_navigation():
        page.click("button[type=submit]")
    after = rows_of(page)
    # Check
    assert "status=AuthError" in page.url
    assert after and len(after) < len(before)
    assert {row["status"] for row in after} == {"AuthError"}
    assert page.locator("select[name=status]").input_value() == "AuthError"


def test_should_list_the_companies_to_relink_when_the_connection_filter_is_submitted(
    demo: Harness, page: Page
) -> None:
    # Prepare
    companies = demo.store.current.snapshot.companies.values()
    deauthorized = {c.company_id for c in companies
                    if any(k.status == "Deauthorized" for k in c.connections)}  # fmt: skip
    page.goto(demo.server.url + "/")
    # Act
    page.select_option("select[name=connection]", "Deauthorized")
    with page.expect_navigation():
        page.click("button[type=submit]")
    listed = page.locator("#connections tbody tr").evaluate_all(
        "rows => rows.map(row => row.dataset.companyId)"
    )
    # Check
    assert "connection=Deauthorized" in page.url
    assert deauthorized and set(listed) == deauthorized
    assert page.locator("select[name=connection]").input_value() == "Deauthorized"


def test_should_narrow_the_table_to_the_company_of_an_alerts_link(
    demo: Harness, page: Page
) -> None:
    # Prepare
    company_id = sorted(demo.store.current.snapshot.companies)[0]
    # Act
    page.goto(f"{demo.server.url}/?company={company_id}&all=1")
    rows = rows_of(page)
    # Check
    expected = demo.store.current.snapshot.companies[company_id].data_types
    assert {row["company_id"] for row in rows} == {company_id}
    assert len(rows) == len(expected)


def test_should_filter_with_javascript_disabled(browser: Browser, demo: Harness) -> None:
    # Prepare
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    company = next(iter(demo.store.current.snapshot.companies.values()))
    page.goto(demo.server.url + "/")
    # Act
    page.fill("input[name=company]", company.name)
    page.check("input[name=all]")
    with page.expect_navigation():
        page.click("button[type=submit]")
    rows = rows_of_without_script(page)
    context.close()
    # Check
    assert rows and {company_id for company_id, _ in rows} == {company.company_id}
    assert len(rows) == len(company.data_types)


def rows_of_without_script(page: Page) -> list[tuple[str, str]]:
    """The rows' company and data type, read through the DOM without page scripts."""
    rows = page.locator(PAIR_ROWS)
    return [
        (str(rows.nth(i).get_attribute("data-company-id")),
         str(rows.nth(i).get_attribute("data-data-type")))
        for i in range(rows.count())
    ]  # fmt: skip


PHONE: ViewportSize = {"width": 400, "height": 800}
READ_ON_A_PHONE = ("company", "type", "age", "reason", "step")
"""The cells of a pair a person on a phone must read: company, data type, age / max age,
why (the latest sync's error, pause or wait) and the next step."""
CELL_BOXES = """(row, names) => names.map(name => {
    const cell = row.querySelector('td.' + name);
    const box = cell.getBoundingClientRect();
    return {name, text: cell.innerText.trim(), left: box.left, right: box.right,
            width: box.width, height: box.height,
            shown: getComputedStyle(cell).display !== 'none'};
})"""
NO_SIDEWAYS_SCROLL = (
    "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
)


def test_should_fit_a_phone_showing_each_pair_s_company_type_age_reason_and_next_step(
    browser: Browser, demo: Harness, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Prepare: a phone's width, and the script off, as the page needs none
    context = browser.new_context(viewport=PHONE, java_script_enabled=False)
    page = context.new_page()
    page.goto(demo.server.url + "/")
    # Act: unfold every company's row of one cause, as a person taps it
    groups = page.locator("#pairs tbody.group tr.summary label")
    folded = groups.count()
    for n in range(folded):
        groups.nth(n).click()
    widths = page.evaluate(NO_SIDEWAYS_SCROLL)
    rows = page.locator(PAIR_ROWS)
    cells = [rows.nth(n).evaluate(CELL_BOXES, list(READ_ON_A_PHONE)) for n in range(rows.count())]
    shot = tmp_path_factory.mktemp("status-page-phone") / "status-page-400px.png"
    page.screenshot(path=str(shot), full_page=True)
    context.close()
    # Check: nothing wider than the screen; every pair's five cells shown within it
    assert widths[0] <= widths[1] == PHONE["width"]
    assert folded >= 1 and len(cells) >= 20
    for row in cells:
        for cell in row:
            assert cell["shown"] and cell["height"] > 0, cell
            assert cell["left"] >= 0 and cell["right"] <= PHONE["width"], cell
    steps = [cell["text"] for row in cells for cell in row if cell["name"] == "step"]
    assert "customer must relink" in {step.split(" link:")[0] for step in steps}
    assert shot.stat().st_size > 10_000
    print(f"status page screenshot at 400 px: {shot}")


@pytest.mark.parametrize("width", [1400, 400], ids=["desktop", "phone"])
def test_should_fold_a_company_s_pairs_of_one_cause_into_one_row_that_unfolds_without_script(
    browser: Browser, demo: Harness, width: int
) -> None:
    # Prepare: the demo's deauthorized company, whose every pair is in AuthError for it
    context = browser.new_context(viewport={"width": width, "height": 900},
                                  java_script_enabled=False)  # fmt: skip
    page = context.new_page()
    companies = demo.store.current.snapshot.companies.values()
    (deauthorized,) = [c for c in companies
                       if any(k.status == "Deauthorized" for k in c.connections)]  # fmt: skip
    page.goto(demo.server.url + "/")
    group = page.locator(f'#pairs tbody.group[data-group="{deauthorized.company_id}"]')
    members = group.locator("tr[data-company-id]")
    # Act
    count = members.count()
    folded = [members.nth(n).is_visible() for n in range(count)]
    summary = group.locator("tr.summary").inner_text()
    group.locator("tr.summary label").click()
    unfolded = [members.nth(n).is_visible() for n in range(count)]
    context.close()
    # Check: one row says it all; a tap shows every pair of it
    assert count == len(deauthorized.data_types) >= 10
    assert not any(folded) and all(unfolded)
    assert f"{deauthorized.name}: Xero deauthorized, {count} data types" in summary
    assert "customer must relink" in summary


def test_should_show_the_table_as_a_table_at_desktop_width(demo: Harness, page: Page) -> None:
    # Prepare
    page.goto(demo.server.url + "/")
    # Act
    widths = page.evaluate(NO_SIDEWAYS_SCROLL)
    heads = page.locator("#pairs thead th").all_inner_texts()
    single = page.locator("#pairs tbody:not(.group) tr[data-company-id]").first
    tops = single.evaluate("row => [...row.cells].map(cell => cell.getBoundingClientRect().top)")
    display = single.evaluate("row => getComputedStyle(row).display")
    # Check: every column, each row one line of cells, nothing to scroll sideways
    assert heads == ["Company", "Data type", "Status", "Last successful sync", "Age / max age",
                     "Latest sync", "Connection", "Poll", "Next step"]  # fmt: skip
    assert display == "table-row" and len(set(tops)) == 1 and len(tops) == len(heads)
    assert widths[0] <= widths[1]
