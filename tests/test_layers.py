"""The package's layers (README, "Layout") as a contract: an import that runs back up, from
``exporter.core`` to ``exporter.web`` say, or two modules of a package that import each
other (a circle, even one for types only), fails the build, not only a review."""

from __future__ import annotations

import subprocess
import sys

from tests.promtools import ROOT


def test_should_keep_every_import_pointing_down_the_layers() -> None:
    # Act: import-linter reads the contract in pyproject.toml
    checked = subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command as c; c()"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    # Check
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Contracts: 2 kept, 0 broken." in checked.stdout
