"""The state file on disk: what a kill in the middle of a write leaves, and paths that are
not a state file at all (a symlink to /dev/zero, a FIFO, a 1 GiB file; a directory there is
refused as configuration). Real ``python -m exporter`` processes and real signals, against
the simulator on loopback."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from exporter.config.load import parse_config
from exporter.config.sharding import Shard
from exporter.core.atomicfile import remove_leftovers
from exporter.poll.restart import read_state_file
from exporter.poll.statefile import load, read
from exporter.simulator.fleet import Fleet
from exporter.simulator.server import SimulatedCodat
from tests.harness import API_KEY, LISTEN_ANYWHERE, FakeClock, Harness, Program
from tests.poll.test_statefile import DECODED, with_state

GiB = 1 << 30


def exporter_config(tmp_path: Path, codat: SimulatedCodat, state: Path) -> Path:
    """The exporter's own process polling ``codat`` every second, its state file ``state``."""
    path = tmp_path / "config.yaml"
    path.write_text(
        f"codat: {{base_url: '{codat.url}', api_key: '{API_KEY}', timeout: 5s,"
        f" max_concurrency: 16, max_requests_per_minute: 100000}}\n"
        f"poll: {{interval: 1s}}\ncompanies: {{ids: [], discover: true}}\n"
        f"connections: {{enabled: false}}\n"
        f"diagnostics: {{pull_operations: false, sync_durations: false}}\n"
        f"state: {{file: '{state}'}}\n"
    )
    return path


MEMORY_CAP = 4 * GiB
"""Address space each exporter under test may take: a regression that reads /dev/zero
fails with MemoryError instead of taking the machine's memory."""


def exporter(config: Path) -> Program:
    capped = ["prlimit", f"--as={MEMORY_CAP}", "--"] if shutil.which("prlimit") else []
    return Program("--config.file", str(config), "--web.listen-address", LISTEN_ANYWHERE,
                   wrapper=capped)  # fmt: skip


def temporary_names(directory: Path) -> set[str]:
    return {name for name in os.listdir(directory) if name.endswith(".tmp")}


def temporary_files(directory: Path) -> dict[str, int]:
    """The temporary files in ``directory`` (no exporter running) and their sizes."""
    return {name: (directory / name).stat().st_size for name in temporary_names(directory)}


def killed_while_writing(config: Path, directory: Path, seconds: float = 60) -> str:
    """Start the exporter, scrape it (so that it decodes its state file and polls at once),
    SIGKILL it the moment a new temporary file shows beside the state file (its write in
    progress), and return the start's log."""
    before = temporary_names(directory)
    with exporter(config) as program:
        program.scrape()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and program.process.poll() is None:
            if temporary_names(directory) - before:
                break
            time.sleep(0.001)
        program.process.send_signal(signal.SIGKILL)
        program.process.wait(timeout=30)
    return program.stderr


@pytest.fixture
def large_codat() -> Iterator[SimulatedCodat]:
    """100 companies of 25 data types: a state file of about 0.5 MB, whose write a kill
    can land in."""
    fleet = Fleet.generate(FakeClock(), companies=100, seed=7, data_types_per_company=25)
    server = SimulatedCodat(fleet, API_KEY).start()
    yield server
    server.stop()


def test_should_remove_what_20_kills_mid_write_left_at_the_next_start(
    tmp_path: Path, large_codat: SimulatedCodat
) -> None:
    # Prepare: a first run writes the state file and stops
    directory = tmp_path / "state"
    directory.mkdir()
    path = directory / "state.json"
    config = exporter_config(tmp_path, large_codat, path)
    with exporter(config) as program:
        deadline = time.monotonic() + 60
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        program.process.send_signal(signal.SIGTERM)
        assert program.process.wait(timeout=60) == 0
    left: dict[str, int] = {}
    logs: list[str] = []
    whole_after_each_kill: list[bool] = []
    attempts = 0
    # Act: 20 kills that landed in a write (a kill after the rename leaves nothing: retried)
    while len(left) < 20 and attempts < 40:
        attempts += 1
        logs.append(killed_while_writing(config, directory))
        new = {n: s for n, s in temporary_files(directory).items() if n not in left}
        left.update(new)
        if new:
            whole_after_each_kill.append(read(path, Shard()) is not None)
    with exporter(config) as program:
        program.scrape()
        deadline = time.monotonic() + 60
        while DECODED not in program.stderr and time.monotonic() < deadline:
            time.sleep(0.05)
        program.process.send_signal(signal.SIGTERM)
        code = program.process.wait(timeout=60)
    logs.append(program.stderr)
    remaining = temporary_files(directory)
    # Check: every leftover removed by the start after it, the last by the last start; the
    # state file whole after every kill (the old one or the new one); the last start loads it
    removed = [line for log in logs for line in log.splitlines() if "temporary file" in line]
    assert len(left) == 20, f"only {len(left)} of {attempts} kills landed in a write"
    assert not remaining, f"{len(remaining)} files, {sum(remaining.values()):,} bytes left"
    assert len(removed) == 20, removed
    assert all(" removed 1 temporary file (" in line for line in removed), removed
    assert whole_after_each_kill == [True] * 20
    assert code == 0
    assert DECODED in logs[-1], logs[-1]
    assert sorted(p.name for p in directory.iterdir()) == ["state.json"]


def vm_hwm(pid: int) -> int:
    """The process' peak resident memory, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def sparse(path: Path, size: int) -> None:
    with path.open("wb") as file:
        file.truncate(size)


@pytest.mark.parametrize(
    ("case", "make", "said"),
    [
        ("a symlink to /dev/zero", lambda p: p.symlink_to("/dev/zero"), "a character device"),
        ("a FIFO", os.mkfifo, "a FIFO (named pipe), not a regular file"),
        ("a sparse file of 1 GiB and a byte", lambda p: sparse(p, GiB + 1),
         "1,073,741,825 bytes, more than state.max_file_bytes (1,073,741,824)"),
    ],
)  # fmt: skip
def test_should_start_and_listen_without_reading_what_is_not_a_state_file(
    tmp_path: Path, codat: SimulatedCodat, case: str, make: Callable[[Path], object], said: str
) -> None:
    # Prepare
    path = tmp_path / "state.json"
    make(path)
    config = exporter_config(tmp_path, codat, path)
    # Act
    with exporter(config) as program:
        healthy = requests.get(f"{program.url(timeout=60)}/-/healthy", timeout=30)
        peak = vm_hwm(program.process.pid)
        program.process.send_signal(signal.SIGTERM)
        code = program.process.wait(timeout=60)
    log = program.stderr
    # Check: one line saying what and why; listening; never read (memory stayed small)
    lines = [line for line in log.splitlines() if "exporter.poll.statefile:" in line]
    assert len(lines) == 1, log
    assert f"WARNING exporter.poll.statefile: state file {path} ignored: {said}" in lines[0]
    assert healthy.status_code == 200
    assert peak < 256 << 20, f"peak RSS {peak:,} bytes"
    assert code == 0
    assert "Traceback" not in log


def test_should_read_a_state_file_of_the_bound_and_refuse_one_byte_more(
    make_harness: Callable[..., Harness], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare
    path = tmp_path / "state.json"
    harness = make_harness(**with_state(path))
    harness.poll()
    size = path.stat().st_size
    # Act
    with caplog.at_level(logging.WARNING, logger="exporter"):
        at_the_bound = read(path, harness.config.shard, max_bytes=size)
        over = read(path, harness.config.shard, max_bytes=size - 1)
    # Check
    assert at_the_bound is not None
    assert over is None
    assert [r.getMessage() for r in caplog.records if r.name == "exporter.poll.statefile"] == [
        f"state file {path} ignored: {size:,} bytes, more than state.max_file_bytes "
        f"({size - 1:,}); starting without it"
    ]


def test_should_follow_a_symlink_to_a_state_file(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    # Prepare: the file where a volume holds it, the configured path a symlink to it
    real = tmp_path / "volume" / "state.json"
    real.parent.mkdir()
    before = make_harness(**with_state(real))
    before.poll()
    before.close()
    path = tmp_path / "state.json"
    path.symlink_to(real)
    # Act
    saved = load(path, before.config.shard)
    # Check
    assert saved is not None
    assert set(saved.companies) == set(before.fleet.companies)


def test_should_remove_only_the_leftovers_of_the_file_it_names(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: two leftovers of state.json's writes beside what is not one
    target = tmp_path / "state.json"
    leftovers = {"state.json.k3x9_q2a.tmp": b"x" * 1000, "state.json.abcdefgh.tmp": b"y" * 24}
    kept_files = {
        "state.json": b"the state",
        "state.json.tmp": b"",
        "state.json.k3x9_q2.tmp": b"",
        "state.json.K3X9_Q2A.tmp": b"",
        "state.json.k3x9_q2a.tmp.bak": b"",
        "other.json.k3x9_q2a.tmp": b"",
        "state.json.refreshes.k3x9_q2a.tmp": b"",
        "xstate.json.k3x9_q2a.tmp": b"",
    }
    for name, data in {**leftovers, **kept_files}.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "state.json.dir_name.tmp").mkdir()
    (tmp_path / "state.json.symlinks.tmp").symlink_to(tmp_path / "other.json.k3x9_q2a.tmp")
    # Act
    with caplog.at_level(logging.INFO, logger="exporter"):
        removed = remove_leftovers(target)
        again = remove_leftovers(target)
        journal = remove_leftovers(tmp_path / "state.json.refreshes")
    # Check: the two, counted and said once; the journal's own when its path is given
    names = sorted(p.name for p in tmp_path.iterdir())
    assert removed == (2, 1024)
    assert again == (0, 0)
    assert journal == (1, 0)
    expected = set(kept_files) - {"state.json.refreshes.k3x9_q2a.tmp"}
    assert names == sorted(expected | {"state.json.dir_name.tmp", "state.json.symlinks.tmp"})
    messages = [r.getMessage() for r in caplog.records if r.name == "exporter.core.atomicfile"]
    assert messages[0] == (
        f"removed 2 temporary files (1,024 bytes) left beside {target} by writes cut short "
        "(a kill or a crash)"
    )
    assert len(messages) == 2


def test_should_remove_the_leftovers_of_the_refresh_journal_at_start(tmp_path: Path) -> None:
    # Prepare: a kill cut short a write of the state file and a compaction of the journal
    state = tmp_path / "state.json"
    leftovers = ["state.json.a1b2c3d4.tmp", "state.json.refreshes.e5f6g7h8.tmp"]
    for name in leftovers:
        (tmp_path / name).write_bytes(b"cut short")
    config = parse_config(
        {"codat": {"api_key": API_KEY}, "companies": {"ids": [], "discover": True},
         "state": {"file": str(state)}}
    )  # fmt: skip
    # Act
    found = read_state_file(config)
    # Check: both gone, nothing else read
    assert found is None
    assert temporary_names(tmp_path) == set()
