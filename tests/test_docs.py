"""The generated references of docs/ are what ``python -m exporter.reference`` writes, and
that command names a stale page and rewrites it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from exporter.reference import PAGES, render

ROOT = Path(__file__).resolve().parent.parent


def test_should_keep_the_generated_references_in_docs_in_sync() -> None:
    # Prepare
    pages = {page: (ROOT / page).read_text(encoding="utf-8") for page in PAGES}
    # Act
    fresh = {page: render(text, PAGES[page]) for page, text in pages.items()}
    # Check
    for page, text in pages.items():
        assert text == fresh[page], f"{page} is stale; run: .venv/bin/python -m exporter.reference"


def test_should_name_a_stale_reference_and_rewrite_it_with_the_one_command(
    tmp_path: Path,
) -> None:
    # Prepare: the committed pages, one with a reference row that has drifted
    for page in PAGES:
        (tmp_path / page).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / page, tmp_path / page)
    metrics = tmp_path / "docs" / "metrics.md"
    committed = metrics.read_text(encoding="utf-8")
    metrics.write_text(committed.replace("| `codat_exporter_companies` |", "| `old_name` |"))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "exporter.reference", *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60, check=False)  # fmt: skip

    # Act
    check = run("--check")
    rewrite = run()
    after = run("--check")
    # Check
    assert (check.returncode, check.stdout) == (
        1, "docs/metrics.md: generated sections are stale; run: python -m exporter.reference\n"
    )  # fmt: skip
    assert rewrite.returncode == 0, rewrite.stderr
    assert metrics.read_text(encoding="utf-8") == committed
    assert (after.returncode, after.stdout) == (0, "")
