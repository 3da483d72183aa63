"""A state file of version 3, as the exporter wrote it before each poll-side component had a
section of its own, is still read: its fleet line's listing, fetch times and refresh section
and each company's pull operations read become version 4's sections. Real HTTP against the
simulator, injected clock."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from exporter.codat.diagnostics import SyncDiagnostics
from exporter.codat.discovery import Discovery
from exporter.codat.refresh import Refresher
from exporter.codat.sidevalues import SideValues
from exporter.core.contract import DATA_STATUS
from exporter.poll.statefile import VERSION
from tests.codat.test_refresh import REFRESHES, failing
from tests.harness import Harness
from tests.poll.test_statefile import header, restarted
from tests.promtools import ROOT

V3 = ROOT / "tests" / "fixtures" / "state" / "v3.state"
"""The file version 3 wrote (the exporter at 67286d2) after polling the conftest fleet once
at START, discovered, sync settings read, a failing pair refreshed once (a dry run), with
these settings:"""
V3_SETTINGS: dict[str, Any] = {
    "companies": {"ids": [], "discover": True},
    "freshness": {"from_sync_settings": True},
    "refresh": {"enabled": True, "dry_run": True, "after": "1h", "backoff": 2},
    "poll": {"interval": "15m"},
}


def test_should_resume_from_a_version_3_state_file(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    # Prepare: the file (a copy: the first save replaces it)
    path = tmp_path / "state.json"
    shutil.copy(V3, path)
    # Act: restarted from it (its rendering is another build's: the state is rendered),
    # the failing pair still failing, then a first poll
    harness = restarted(make_harness, path, **V3_SETTINGS)
    failing(harness)
    served = harness.scrape().companies()
    counted = dict(harness.codat.requests)
    result = harness.poll()
    # Check: served before any poll; resumed: one dataStatus per company and nothing the
    # file holds read again (the listing, sync settings, connections, pull operations), no
    # refresh before the file's backoff; written again as version 4, a section each
    made = {route: n - counted.get(route, 0) for route, n in harness.codat.requests.items()}
    assert served == set(harness.fleet.companies)
    assert result.all_succeeded
    assert {route: n for route, n in made.items() if n} == {
        DATA_STATUS: len(harness.fleet.companies)
    }
    assert not harness.scrape().find(REFRESHES, result="dry_run")
    written = header(path)
    sections = {name for name, _, _ in written["sections"]}  # type: ignore[attr-defined]
    assert written["version"] == VERSION
    assert {Discovery.key, SideValues.key, SyncDiagnostics.key, Refresher.key} <= sections
