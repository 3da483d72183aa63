"""``python -m exporter.simulator``: the simulated Codat as its own process, as
docs/development.md runs it."""

from __future__ import annotations

import base64
import re
import signal
import subprocess
import sys

import requests

from exporter.demo import DEMO_API_KEY
from tests.promtools import ROOT


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(key.encode()).decode()}


def test_should_name_the_api_key_it_accepts_in_its_help() -> None:
    # Act
    run = subprocess.run([sys.executable, "-m", "exporter.simulator", "--help"],
                         capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    # Check
    assert run.returncode == 0, run.stderr
    assert f"codat.api_key: {DEMO_API_KEY}" in " ".join(run.stdout.split())
    assert f"(default: {DEMO_API_KEY})" in run.stdout


def test_should_name_the_api_key_wherever_the_docs_run_the_simulator() -> None:
    # Prepare
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    text = "\n\n".join(page.read_text(encoding="utf-8") for page in pages)
    # Act
    paragraphs = [p for p in text.split("\n\n") if "-m exporter.simulator" in p]
    # Check
    assert paragraphs
    assert all(f"`{DEMO_API_KEY}`" in p for p in paragraphs)


def test_should_serve_on_a_free_port_and_accept_only_the_key_its_help_names() -> None:
    # Prepare
    process = subprocess.Popen(
        [sys.executable, "-m", "exporter.simulator", "--port", "0", "--companies", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = re.search(r"at (http://127\.0\.0\.1:\d+)$", line.strip())
        assert found, line
        url = found[1]
        # Act
        accepted = requests.get(url + "/companies", headers=basic(DEMO_API_KEY), timeout=5)
        refused = requests.get(url + "/companies", headers=basic("another-key"), timeout=5)
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=15)
    finally:
        process.kill()
        process.communicate()
    # Check
    assert accepted.status_code == 200
    assert len(accepted.json()["results"]) == 2
    assert refused.status_code == 401
    assert code == 0
