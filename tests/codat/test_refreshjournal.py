"""The refresh journal's file: what a kill in the middle of an append leaves, and what is
read back. Real files in a temporary directory."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from exporter.codat.refreshjournal import QUEUED, RESET, Entry, Journal, journal_path
from tests.harness import START

COMPANY = "8a210b68-6988-11ed-a1eb-0242ac120002"
FIRST = Entry(QUEUED, COMPANY, "invoices", START, 1)
SECOND = Entry(QUEUED, COMPANY, "bills", START + 60, 1)
THIRD = Entry(RESET, COMPANY, "invoices", START + 120)


def test_should_ignore_a_line_cut_short_by_a_kill_and_append_whole_lines_after_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: two entries, then a third killed halfway through its write
    path = journal_path(str(tmp_path / "state.json"))
    written = Journal(path)
    written.append(FIRST)
    written.append(SECOND)
    with path.open("ab") as out:
        out.write(THIRD.line()[:25])
    # Act
    with caplog.at_level(logging.WARNING):
        reopened = Journal(path)
        read = reopened.read()
    said = [r.getMessage() for r in caplog.records]
    reopened.append(THIRD)
    # Check: the torn line is not read (its POST was never sent) and says nothing; the next
    # entry is a whole line of its own
    assert read == [FIRST, SECOND]
    assert said == []
    assert Journal(path).read() == [FIRST, SECOND, THIRD]


def test_should_skip_a_damaged_line_in_the_middle_and_say_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare
    path = tmp_path / "state.json.refreshes"
    path.write_bytes(FIRST.line() + b'{"refresh":"queued","company":\n' + SECOND.line())
    # Act
    with caplog.at_level(logging.WARNING):
        read = Journal(path).read()
    # Check
    assert read == [FIRST, SECOND]
    assert [r.getMessage() for r in caplog.records] == [
        f"refresh journal {path}: 1 unreadable lines skipped"
    ]


def test_should_keep_today_and_what_is_carried_when_compacted(tmp_path: Path) -> None:
    # Prepare: yesterday's entries, and today's
    path = tmp_path / "state.json.refreshes"
    journal = Journal(path)
    yesterday = Entry(QUEUED, COMPANY, "payments", START - 86_400, 4)
    for entry in (yesterday, Entry(RESET, COMPANY, "bills", START - 86_000), FIRST, SECOND):
        journal.append(entry)
    # Act
    journal.compact("2026-11-23", [yesterday])
    # Check
    assert Journal(path).read() == [yesterday, FIRST, SECOND]
    assert not list(tmp_path.glob("*.tmp"))
