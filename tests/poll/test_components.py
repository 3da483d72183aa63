"""What each poll-side component (discovery, side values, diagnostics, refreshes, the failure
log) keeps and forgets, through their one protocol (``exporter.poll.components``): pruned
alike as the fleet changes, and restored all or none. Real HTTP against the simulator,
injected clock."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from exporter.codat.sidevalues import SideValues
from exporter.core.contract import COMPANIES
from exporter.poll.statefile import pack, unpack
from tests.harness import Harness
from tests.poll.test_statefile import restarted_serving_first, saved_after_a_poll


def test_should_forget_a_company_that_left_the_fleet_in_every_component(
    make_harness: Callable[..., Harness], fleet_ids: list[str], tmp_path: Path
) -> None:
    # Prepare: discovery, sync settings, pull operations and refreshes, each with a section
    harness = make_harness(
        companies={"ids": [], "discover": True, "discovery_interval": "1h"},
        freshness={"from_sync_settings": True},
        refresh={"enabled": True, "dry_run": True},
        state={"file": str(tmp_path / "state.json")},
    )
    harness.poll()
    leaving = fleet_ids[0]
    kept_before = json.dumps(harness.poller.saved_state().sections)
    # Act: the company leaves Codat's listing
    harness.fleet.remove(leaving)
    harness.clock.advance(3600)
    harness.poll()
    # Check: no section holds it any more (it was in several)
    sections = harness.poller.saved_state().sections
    assert {"discovery", "side_values", "diagnostics", "refresh"} <= set(sections)
    assert kept_before.count(leaving) > 2
    assert leaving not in json.dumps(sections)
    assert leaving not in harness.poller.remembered()


def test_should_restore_nothing_when_one_component_section_is_malformed(
    make_harness: Callable[..., Harness], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: a whole file (checksums recomputed) whose side values section is of the
    # wrong shape; the discovery listing before it is fine
    path = tmp_path / "state.json"
    before = saved_after_a_poll(make_harness, path)
    shard = before.config.shard
    saved_at, sections = unpack(path.read_bytes(), shard)
    sections[SideValues.key] = b'{"names": ["not", "a", "mapping"]}'
    path.write_bytes(pack(shard, saved_at, sections))
    # Act
    after, resume_now = restarted_serving_first(make_harness, path)
    served = after.scrape().companies()
    with caplog.at_level(logging.WARNING, logger="exporter"):
        resume_now()
    withdrawn = after.scrape().companies()
    counted = dict(after.codat.requests)
    after.poll()
    # Check: served while it could not be known, then withdrawn with one line naming the
    # section; not even the listing restored: the first poll lists the companies again
    warnings = [r.getMessage() for r in caplog.records if "state file" in r.getMessage()]
    assert served == set(before.fleet.companies)
    assert withdrawn == set()
    assert len(warnings) == 1 and "malformed section 'side_values'" in warnings[0]
    assert after.codat.requests[COMPANIES] - counted.get(COMPANIES, 0) == 1
