"""The program as an operator runs it: --once, --version, --demo, signals, and the commands
README and docs/ give."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from exporter import __version__
from exporter.core.contract import DATA_STATUS
from exporter.core.families import ALL_METRICS
from exporter.simulator.faults import Fault
from exporter.simulator.server import SimulatedCodat
from tests.harness import API_KEY, LISTEN_ANYWHERE, Program, parse_exposition
from tests.promtools import ROOT


def write_config(tmp_path: Path, codat: SimulatedCodat, ids: list[str]) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"codat: {{base_url: '{codat.url}', api_key: '${{TEST_CODAT_KEY}}', timeout: 2s}}\n"
        f"poll: {{interval: 10s}}\ncompanies: {{ids: [{', '.join(ids)}]}}\n"
    )
    return path


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TEST_CODAT_KEY": API_KEY}
    return subprocess.run([sys.executable, "-m", "exporter", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, check=False)  # fmt: skip


def test_should_print_metrics_and_exit_0_when_every_company_was_polled(
    tmp_path: Path, codat: SimulatedCodat, fleet_ids: list[str]
) -> None:
    # Prepare
    config = write_config(tmp_path, codat, fleet_ids)
    # Act
    run = run_cli("--config.file", str(config), "--once")
    # Check
    assert run.returncode == 0, run.stderr
    samples = parse_exposition(run.stdout)
    assert {
        s.labels["company_id"] for s in samples if s.name == "codat_exporter_company_up"
    } == set(fleet_ids)


def test_should_exit_1_from_once_when_a_company_failed(
    tmp_path: Path, codat: SimulatedCodat, fleet_ids: list[str]
) -> None:
    # Prepare
    codat.fleet.inject(fleet_ids[0], Fault("malformed", endpoint=DATA_STATUS))
    config = write_config(tmp_path, codat, fleet_ids)
    # Act
    run = run_cli("--config.file", str(config), "--once")
    # Check
    assert run.returncode == 1
    up = [s for s in parse_exposition(run.stdout) if s.name == "codat_exporter_company_up"]
    assert sorted(s.value for s in up) == [0] + [1] * (len(fleet_ids) - 1)
    assert fleet_ids[0] in run.stderr


def test_should_print_the_package_version() -> None:
    run = run_cli("--version")
    assert run.returncode == 0
    assert run.stdout.strip() == f"codat-freshness-exporter {__version__}"
    assert __version__ != "0.0.0+unknown"


def test_should_run_the_demo_with_every_metric_family_and_stop_cleanly_on_sigterm() -> None:
    # Prepare
    with Program("--demo", "--web.listen-address", LISTEN_ANYWHERE) as program:
        url = program.url()
        # Act: /metrics once the first cycle has ended (the first publishes as it goes)
        deadline = time.monotonic() + 30
        body = ""
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    body = requests.get(f"{url}/metrics", timeout=5).text
                    if "\ncodat_exporter_last_poll_timestamp_seconds " in body:
                        break
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        program.process.send_signal(signal.SIGTERM)
        code = program.process.wait(timeout=15)
    stderr = program.stderr
    # Check
    names = {s.name for s in parse_exposition(body)}
    webhooks_off = {"codat_exporter_webhooks_total"}  # no deliveries without webhooks
    all_known = {"codat_exporter_company_not_found"}  # the demo lists no id Codat lacks
    expected = {spec.name for spec in ALL_METRICS if spec.type != "histogram"}
    expected -= webhooks_off | all_known
    assert expected <= names, f"missing: {expected - names}"
    assert "codat_exporter_api_request_duration_seconds_bucket" in names
    assert code == 0
    assert url.startswith("http://127.0.0.1:")
    port = url.rsplit(":", 1)[1]
    assert (
        f"listening on 127.0.0.1:{port}, loopback only: serving metrics at {url}/metrics "
        "(plain HTTP, no basic auth: --web.config.file not set)"
    ) in stderr
    assert "Traceback" not in stderr


def own_network() -> list[str] | None:
    """A command prefix that runs a program in a network namespace of its own, whose only
    interface is loopback: there it may listen on every interface and expose nothing. None
    where the system has no way to make one."""
    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    if unshare is None or ip is None:
        return None
    prefix = [unshare, "--user", "--map-root-user", "--net",
              "sh", "-c", f'{ip} link set lo up && exec "$@"', "sh"]  # fmt: skip
    tried = subprocess.run([*prefix, "true"], capture_output=True, timeout=30, check=False)
    return prefix if tried.returncode == 0 else None


def test_should_say_that_it_listens_on_every_interface_without_auth() -> None:
    # Prepare: the default's every interface, in a network namespace holding only loopback
    prefix = own_network()
    if prefix is None:
        pytest.skip("no unshare (or ip) to make a network namespace")
    # Act
    with Program("--demo", "--web.listen-address", ":0", wrapper=prefix) as program:
        url = program.url()
        program.process.send_signal(signal.SIGTERM)
        code = program.process.wait(timeout=15)
    # Check: the address bound, what it exposes, and a URL other machines would use
    port = url.rsplit(":", 1)[1]
    assert url == f"http://{socket.gethostname()}:{port}"
    assert (
        f"listening on 0.0.0.0:{port}, every IPv4 interface: serving metrics at {url}/metrics "
        "(plain HTTP, no basic auth: --web.config.file not set)"
    ) in program.stderr
    assert code == 0


@pytest.mark.parametrize(
    ("address", "problem"),
    [("127.0.0.1:99999", "'127.0.0.1:99999': port 99999 is out of range 0-65535"),
     ("::1:9781", "'::1:9781': an IPv6 address goes in brackets, e.g. [::1]:9781"),
     ("localhost", "'localhost' is not host:port (e.g. :9781, 127.0.0.1:9781, [::1]:9781)")],
)  # fmt: skip
def test_should_refuse_a_bad_listen_address_flag_as_a_bad_config(
    address: str, problem: str
) -> None:
    # Act
    checked = run_cli("--demo", "--web.listen-address", address, "--check-config")
    # Check
    assert checked.returncode == 2
    assert checked.stderr.splitlines() == [
        f"codat-freshness-exporter: --web.listen-address: {problem}"
    ]


def test_should_run_the_demo_although_the_environment_names_a_config_file() -> None:
    # Prepare: the image names its config in the environment; `docker run IMAGE --demo`
    env = {**os.environ, "CODAT_EXPORTER_CONFIG": "/etc/codat-freshness-exporter/config.yaml"}
    command = [sys.executable, "-m", "exporter", "--demo", "--check-config"]

    # Act
    demo = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    both = subprocess.run(
        [*command, "--config.file", "config.yaml"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    # Check: the environment gives way to --demo; a --config.file beside it is still refused
    assert demo.returncode == 0, demo.stderr
    assert demo.stdout.startswith("demo: configuration OK: ")
    assert both.returncode == 2
    assert both.stderr.endswith(": --demo runs its own simulated Codat; drop --config.file\n")


def test_should_run_readmes_test_command_in_ci_unchanged() -> None:
    # Prepare
    readme = (ROOT / "README.md").read_text()
    command = readme.split("## Run the tests", 1)[1].split("```sh\n", 1)[1].split("\n", 1)[0]
    # Act
    ci = (ROOT / ".ci" / "run").read_text()
    # Check
    assert command.endswith(".venv/bin/pytest")
    assert command in ci.splitlines()


def test_should_call_every_documented_command_by_a_path_that_readmes_install_creates() -> None:
    # Prepare: README installs into .venv and never onto PATH; docs/ follow it
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    text = "\n".join(page.read_text() for page in pages)
    inline = re.findall(r"`((?:python3?|codat-freshness-exporter|pytest|ruff|mypy) [^`]*)`", text)
    blocks = re.findall(r"```sh\n(.*?)```", text, re.DOTALL)
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    # Act
    commands = [*inline, *lines]
    unreachable = [
        c for c in commands
        if re.match(r"(python|codat-freshness-exporter|pytest|ruff|mypy)\b", c)
        and not c.startswith("python3 -m venv .venv")
    ]  # fmt: skip
    # Check
    assert lines, "README has sh blocks"
    assert unreachable == []
