"""What the series bill costs, and the switches that cut it: scrape-time fleet aggregates
exact without per-pair series, and ``metrics.denylist`` / ``allowlist``."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable

import pytest
import yaml

from exporter.config.load import parse_config
from exporter.config.settings import ConfigError
from exporter.core.families import (
    COMPANY_CREATED,
    COMPANY_LAST_SUCCESS,
    COMPANY_UP,
    CONNECTION_STATUS,
    CONNECTIONS,
    FLEET_PRESET_DENYLIST,
    PER_PAIR,
)
from tests.harness import Harness, Scrape
from tests.promtools import ROOT

STALE = "codat_data_type_stale_companies"
AGE = "codat_data_type_sync_age_seconds"
FLEET_PRESET = {"denylist": list(FLEET_PRESET_DENYLIST)}


def stale_pairs(scrape: Scrape, now: float) -> Counter[str]:
    """``count by (data_type) (age > max_age)``, from the per-pair series."""
    max_ages = {
        (s.labels["company_id"], s.labels["data_type"]): s.value
        for s in scrape.find("codat_data_type_max_age_seconds")
    }
    return Counter(
        s.labels["data_type"]
        for s in scrape.find("codat_data_type_last_successful_sync_timestamp_seconds")
        if now - s.value > max_ages[s.labels["company_id"], s.labels["data_type"]]
    )


def test_should_count_stale_companies_per_data_type_exactly_and_between_polls(
    make_harness: Callable[..., Harness],
) -> None:
    # Prepare
    harness = make_harness()
    harness.poll()
    # Act: a scrape now, and one 30 h later without a poll in between
    now = harness.scrape()
    harness.clock.advance(30 * 3600)
    later = harness.scrape()
    # Check
    for scrape, at in ((now, harness.clock.time() - 30 * 3600), (later, harness.clock.time())):
        counted = {s.labels["data_type"]: s.value for s in scrape.find(STALE)}
        expected = stale_pairs(scrape, at)
        assert {d: n for d, n in counted.items() if n} == expected
        assert set(counted) == {s.labels["data_type"] for s in scrape.find(STALE)}
    assert sum(s.value for s in later.find(STALE)) > sum(s.value for s in now.find(STALE))


def test_should_export_the_fleets_sync_ages_as_a_histogram(
    make_harness: Callable[..., Harness],
) -> None:
    # Prepare
    harness = make_harness()
    harness.poll()
    # Act
    scrape = harness.scrape()
    now = harness.clock.time()
    # Check: every bucket counts the pairs at most that old, per data type
    ages: dict[str, list[float]] = {}
    for s in scrape.find("codat_data_type_last_successful_sync_age_seconds"):
        ages.setdefault(s.labels["data_type"], []).append(s.value)
    assert ages
    for data_type, values in ages.items():
        buckets = {
            s.labels["le"]: s.value for s in scrape.find(f"{AGE}_bucket", data_type=data_type)
        }
        assert buckets["+Inf"] == len(values)
        assert buckets["86400.0"] == sum(1 for v in values if v <= 86400)
        assert buckets["3600.0"] == sum(1 for v in values if v <= 3600)
        assert scrape.value(f"{AGE}_count", data_type=data_type) == len(values)
        assert scrape.value(f"{AGE}_sum", data_type=data_type) == pytest.approx(sum(values))
    assert now > 0


def default_and_preset(make_harness: Callable[..., Harness]) -> tuple[Scrape, Scrape]:
    """/metrics of two exporters polling the same simulated fleet: default, fleet preset."""
    full, preset = make_harness(), make_harness(metrics=FLEET_PRESET)
    full.poll()
    preset.poll()
    return full.scrape(), preset.scrape()


def per_company_families(scrape: Scrape) -> Counter[str]:
    """Series per family among those with a company label: what grows with the fleet."""
    return Counter(s.name for s in scrape.samples if "company_id" in s.labels)


def test_should_cut_the_per_pair_families_with_the_fleet_preset_and_keep_the_aggregates(
    make_harness: Callable[..., Harness],
) -> None:
    # Act
    everything, cut = default_and_preset(make_harness)
    # Check
    names = {s.name for s in cut.samples}
    assert not names & set(FLEET_PRESET_DENYLIST)
    assert {s.name for s in everything.samples} >= set(FLEET_PRESET_DENYLIST) - {
        "codat_data_type_sync_paused_until_timestamp_seconds",
        "codat_data_type_latest_sync_requested_timestamp_seconds",
    }
    assert cut.find(STALE) == everything.find(STALE)
    assert cut.find(f"{AGE}_count") == everything.find(f"{AGE}_count")
    assert cut.find(CONNECTIONS.name) == everything.find(CONNECTIONS.name)
    snapshot = [s for s in everything.samples if s.name.startswith("codat_data_type_")]
    pairs = [s for s in snapshot if s.name in PER_PAIR]
    kept = [s for s in cut.samples if s.name.startswith("codat_data_type_")]
    assert len(kept) == len(snapshot) - len(pairs)


def test_should_export_one_series_per_company_only_with_the_fleet_preset(
    make_harness: Callable[..., Harness],
) -> None:
    # Act
    everything, cut = default_and_preset(make_harness)
    # Check: of what grows with the fleet, codat_exporter_company_up alone, once a company
    companies = everything.companies()
    assert len(companies) >= 3
    assert per_company_families(cut) == {COMPANY_UP.name: len(companies)}
    assert cut.find(COMPANY_UP.name) == everything.find(COMPANY_UP.name)
    assert set(per_company_families(everything)) >= {
        COMPANY_UP.name,
        COMPANY_LAST_SUCCESS.name,
        COMPANY_CREATED.name,
        CONNECTION_STATUS.name,
    }


def test_should_show_the_fleet_preset_in_the_example_config_as_declared() -> None:
    # Prepare: the example shows the list commented out, under the preset's comment.
    text = (ROOT / "config.example.yaml").read_text()
    block = re.search(r"^  # denylist:\n((?:  #   - .*\n)+)", text, re.M)
    assert block is not None
    # Act
    shown = yaml.safe_load(re.sub(r"^  #   ", "", block[1], flags=re.M))
    # Check
    assert tuple(shown) == FLEET_PRESET_DENYLIST
    parse_config({"codat": {"api_key": "k"}, "companies": {"discover": True},
                  "metrics": {"denylist": shown}})  # fmt: skip


def test_should_export_only_the_allowlisted_families(
    make_harness: Callable[..., Harness],
) -> None:
    # Prepare
    harness = make_harness(metrics={"allowlist": ["codat_exporter_company_.*", STALE]})
    # Act
    harness.poll()
    scrape = harness.scrape()
    # Check: the exporter's own counters are never filtered
    names = {s.name for s in scrape.samples if not s.name.startswith(("process_", "python_"))}
    snapshot_families = {n for n in names if n.startswith("codat_data_type_")}
    assert snapshot_families == {STALE}
    assert "codat_exporter_company_up" in names
    assert "codat_exporter_api_requests_total" in names


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        ({"denylist": ["codat_data_type_statuses"]},
         "metrics.denylist[0]: 'codat_data_type_statuses' matches no metric family this list "
         "applies to; did you mean codat_data_type_status?"),
        ({"allowlist": ["("]}, "metrics.allowlist[0]: '(' is not a regular expression"),
        ({"allowlist": [STALE], "denylist": [STALE]},
         "metrics.allowlist: set allowlist or denylist, not both"),
    ],
)  # fmt: skip
def test_should_refuse_a_family_list_entry_that_matches_nothing(
    metrics: dict[str, object], message: str
) -> None:
    # Prepare
    raw = {"codat": {"api_key": "k"}, "companies": {"discover": True}, "metrics": metrics}
    # Act
    with pytest.raises(ConfigError) as error:
        parse_config(raw)
    # Check
    assert str(error.value).startswith(message)
