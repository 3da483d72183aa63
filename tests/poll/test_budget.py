"""The daily quota estimate: what each kind of request costs, and the interval that would fit."""

from __future__ import annotations

import doctest

import pytest

from exporter.core.snapshot import CompanyState, DataTypeStatus
from exporter.poll import budget
from exporter.poll.budget import FRIENDLY_INTERVALS, estimate_daily_requests


def test_should_count_one_poll_per_company_per_interval() -> None:
    # Prepare
    companies, interval = 250, 300.0

    # Act
    estimate = estimate_daily_requests(companies, interval, discovery_interval=86400)

    # Check
    assert estimate.polls == 250 * 288
    assert estimate.names == 0


def test_should_count_discovery_pages_once_per_shard() -> None:
    # Prepare: 2,500 companies in pages of 1,000 is 3 pages, listed by each of 3 shards hourly

    # Act
    estimate = estimate_daily_requests(
        2500, 3600, shards=3, discovery_interval=3600, page_size=1000
    )

    # Check
    assert estimate.discovery == 3 * 3 * 24


def test_should_count_one_discovery_page_for_an_empty_fleet() -> None:
    # Prepare
    companies = 0

    # Act
    estimate = estimate_daily_requests(companies, 300, discovery_interval=600)

    # Check
    assert estimate.discovery == 144
    assert estimate.polls == 0
    assert estimate.quota == 1000


def test_should_refresh_names_hourly_only_without_discovery() -> None:
    # Prepare
    companies = 400

    # Act
    static = estimate_daily_requests(companies, 900)
    discovered = estimate_daily_requests(companies, 900, discovery_interval=3600)

    # Check
    assert static.names == 400 * 24
    assert discovered.names == 0


def test_should_count_connections_and_sync_settings_only_when_enabled() -> None:
    # Prepare
    companies = 100

    # Act
    off = estimate_daily_requests(companies, 600, discovery_interval=3600)
    on = estimate_daily_requests(
        companies, 600, discovery_interval=3600, connections_interval=1800,
        sync_settings_interval=3600,
    )  # fmt: skip

    # Check
    assert (off.connections, off.sync_settings) == (0, 0)
    assert (on.connections, on.sync_settings) == (100 * 48, 100 * 24)
    assert on.total == off.total + 100 * 48 + 100 * 24


def test_should_base_the_quota_on_active_connected_companies_when_given() -> None:
    # Prepare
    companies = 1000

    # Act
    everyone = estimate_daily_requests(companies, 300)
    connected = estimate_daily_requests(companies, 300, quota_companies=250)

    # Check
    assert everyone.quota == 1_001_000
    assert connected.quota == 251_000
    assert everyone.fits
    assert not connected.fits


def test_should_fit_right_up_to_the_quota() -> None:
    # Prepare: a quota of 1,000; one discovery page a day plus one poll a day per company

    # Act
    at_quota = estimate_daily_requests(
        999, 86400, discovery_interval=86400, page_size=5000, quota_companies=0
    )
    one_over = estimate_daily_requests(
        1000, 86400, discovery_interval=86400, page_size=5000, quota_companies=0
    )

    # Check
    assert (at_quota.total, at_quota.fits, at_quota.warning()) == (1000, True, None)
    assert (one_over.total, one_over.fits) == (1001, False)


@pytest.mark.parametrize(
    ("settings", "suggested"),
    [
        ({"companies": 1000, "poll_interval": 60}, 120),
        ({"companies": 100, "poll_interval": 30}, 120),
        ({"companies": 1000, "poll_interval": 60, "quota_share": 0.5}, 300),
        (
            {"companies": 5000, "poll_interval": 60, "discovery_interval": 3600,
             "connections_interval": 300},
            300,
        ),
        (
            {"companies": 1000, "poll_interval": 60, "per_minute_limit": 600,
             "connections_interval": 300},
            300,
        ),
        ({"companies": 1000, "poll_interval": 60, "quota_share": 0.05}, 3600),
    ],
)  # fmt: skip
def test_should_suggest_the_shortest_friendly_interval_that_fits(
    settings: dict[str, float], suggested: float
) -> None:
    # Prepare: a copy, since the parameters are shared by every run of the test
    settings = dict(settings)
    companies, interval = int(settings.pop("companies")), settings.pop("poll_interval")

    # Act
    estimate = estimate_daily_requests(companies, interval, **settings)  # type: ignore[arg-type]

    # Check
    assert not estimate.fits
    assert estimate.suggested_interval == suggested
    shorter = FRIENDLY_INTERVALS[FRIENDLY_INTERVALS.index(suggested) - 1]
    assert estimate_daily_requests(companies, suggested, **settings).fits  # type: ignore[arg-type]
    assert not estimate_daily_requests(companies, shorter, **settings).fits  # type: ignore[arg-type]


def test_should_not_warn_or_suggest_when_the_estimate_fits() -> None:
    # Prepare: 10,000 companies every 15m with hourly discovery
    companies = 10_000

    # Act
    estimate = estimate_daily_requests(
        companies, 900, shards=8, discovery_interval=3600, page_size=1000
    )

    # Check
    assert estimate.fits
    assert estimate.suggested_interval is None
    assert estimate.warning() is None


def test_should_warn_with_the_breakdown_and_the_interval_to_set() -> None:
    # Prepare
    companies = 2000

    # Act
    estimate = estimate_daily_requests(
        companies, 120, shards=2, discovery_interval=1800, page_size=500,
        sync_settings_interval=1800, quota_share=0.75,
    )  # fmt: skip

    # Check
    assert estimate.warning() == (
        "Codat daily quota: the exporter needs about 1,536,384 requests a day, more than its "
        "75% share (1,500,750) of the 2,001,000 allowed (1,000 x (1 + 2,000 companies)); "
        "polls every 2m: 1,440,000, discovery: 384, sync settings: 96,000. "
        "Set poll.interval to 5m or longer."
    )


def test_should_warn_that_no_poll_interval_fits_when_the_other_requests_are_over() -> None:
    # Prepare: two pull operation reads per sync of 25 hourly data types cost more than the
    # whole quota, whatever the poll interval
    companies = 5000

    # Act
    estimate = estimate_daily_requests(
        companies, 3600, discovery_interval=3600, pull_operation_reads=2, syncs_per_day=24
    )

    # Check
    assert estimate.suggested_interval is None
    assert estimate.warning() == (
        "Codat daily quota: the exporter needs about 6,121,200 requests a day, more than the "
        "5,001,000 allowed (1,000 x (1 + 5,000 companies)); polls every 1h: 120,000, "
        "discovery: 1,200, pull operations: 6,000,000. Even polling once a day would not fit: "
        "the other requests alone would need 6,000,050; make discovery, connections or sync "
        "settings less frequent, or read fewer pull operations (diagnostics)."
    )


def test_should_count_what_a_poll_reads_when_due_at_most_once_a_poll() -> None:
    # Prepare: connections every 30m, sync settings hourly, names hourly (no discovery) and
    # discovery every 10m, for companies polled every 2h: each read once a poll
    companies = 1200

    # Act
    every_2h = estimate_daily_requests(
        companies, 7200, connections_interval=1800, sync_settings_interval=3600
    )
    discovered = estimate_daily_requests(
        companies, 7200, discovery_interval=600, page_size=1000, shards=2
    )
    every_10m = estimate_daily_requests(
        companies, 600, connections_interval=1800, sync_settings_interval=3600
    )

    # Check: 12 polls a day, so 12 of each; with polls every 10m each at its own interval
    assert (every_2h.polls, every_2h.connections, every_2h.sync_settings, every_2h.names) == (
        1200 * 12, 1200 * 12, 1200 * 12, 1200 * 12,
    )  # fmt: skip
    assert discovered.discovery == 2 * 2 * 12
    assert (every_10m.connections, every_10m.sync_settings, every_10m.names) == (
        1200 * 48, 1200 * 24, 1200 * 24,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"companies": -1}, "companies must be 0 or more, not -1"),
        ({"poll_interval": 0}, "poll_interval must be over 0s, not 0"),
        ({"discovery_interval": -60}, "discovery_interval must be over 0s, not -60"),
        ({"shards": 0}, "shards must be at least 1, not 0"),
        ({"page_size": 0}, "page_size must be at least 1, not 0"),
        ({"quota_share": 1.5}, "quota_share must be over 0 and at most 1, not 1.5"),
        ({"quota_companies": -2}, "quota_companies must be 0 or more, not -2"),
    ],
)
def test_should_reject_impossible_inputs(settings: dict[str, float], message: str) -> None:
    # Prepare
    arguments: dict[str, float] = {"companies": 10, "poll_interval": 300, **settings}

    # Act
    with pytest.raises(ValueError) as caught:
        estimate_daily_requests(**arguments)  # type: ignore[arg-type]

    # Check
    assert str(caught.value) == message


def test_should_keep_the_docstring_examples_true() -> None:
    # Prepare: the examples in the docstrings are the module's documentation
    module = budget

    # Act
    results = doctest.testmod(module)

    # Check
    assert results.attempted > 0
    assert results.failed == 0


def test_should_warn_when_the_cycle_needs_more_requests_a_minute_than_the_limit() -> None:
    # Prepare: 5,000 discovered companies every 5m need 1,000 a minute (and 120 pages a day);
    # the quota (5,001,000 a day) fits
    companies, interval = 5000, 300
    settings = {"discovery_interval": 3600, "page_size": 1000}

    # Act
    over = estimate_daily_requests(companies, interval, per_minute_limit=600, **settings)
    within = estimate_daily_requests(companies, interval, per_minute_limit=1001, **settings)

    # Check
    assert (over.fits_quota, over.fits_rate, over.fits) == (True, False, False)
    assert over.per_minute == pytest.approx(1000 + 120 / 1440)
    assert over.suggested_interval == 600
    assert over.warning() is not None
    assert "codat.max_requests_per_minute (600)" in over.warning()  # type: ignore[operator]
    assert within.fits
    assert within.warning() is None


def test_should_check_each_replicas_share_against_its_own_per_minute_limit() -> None:
    # Prepare: the same fleet over 2 shards: 500 a minute each

    # Act
    sharded = estimate_daily_requests(5000, 300, shards=2, per_minute_limit=600,
                                      discovery_interval=86400, page_size=5000)  # fmt: skip

    # Check: each shard lists the whole fleet once a day (1 page) and polls half of it
    assert sharded.per_minute == pytest.approx(500 + 1 / 1440)
    assert sharded.fits


def test_should_suggest_an_interval_that_fits_both_the_quota_and_the_rate() -> None:
    # Prepare: at 1m the quota needs 2m or longer; 60 a minute needs 30m for 1,500 companies
    settings = {"discovery_interval": 86400, "page_size": 2000, "per_minute_limit": 60}

    # Act
    estimate = estimate_daily_requests(1500, 60, **settings)

    # Check
    assert not estimate.fits_quota
    assert estimate.suggested_interval == 1800
    assert estimate_daily_requests(1500, 1800, **settings).fits
    assert not estimate_daily_requests(1500, 1200, **settings).fits


def test_should_count_a_pull_operation_read_per_sync_for_hourly_schedules() -> None:
    # Prepare: the same fleet, its data types synced daily or hourly
    # Act
    once = estimate_daily_requests(1000, 900, pull_operation_reads=1, data_types=25)
    hourly = estimate_daily_requests(
        1000, 900, pull_operation_reads=1, data_types=25, syncs_per_day=24
    )

    # Check: a read for every sync, so 24 times as many
    assert once.pull_operations == 25_000
    assert hourly.pull_operations == 24 * 25_000
    assert hourly.total - once.total == 23 * 25_000


def test_should_take_the_fleets_syncs_a_day_from_the_schedules_read() -> None:
    # Prepare: one company hourly on one of its two data types, one never read (daily)
    pairs = tuple(DataTypeStatus(name, "Complete", 0.0) for name in ("invoices", "bills"))
    hourly = CompanyState("a", "", True, 0.0, pairs, sync_schedules={"invoices": 1})
    unread = CompanyState("b", "", True, 0.0, pairs)

    # Act
    mixed, none = budget.syncs_per_day([hourly, unread]), budget.syncs_per_day([unread])

    # Check: (24 + 1 + 1 + 1) / 4 pairs; daily where no schedule was read
    assert mixed == 27 / 4
    assert none == 1.0
