"""The image, run: README's ``docker run`` lines, run by podman against the simulated Codat.

``.ci/run`` builds the image (README's ``docker build``, by ``.ci/image``) and names it in
``CODAT_EXPORTER_IMAGE``; without it these tests are skipped, and under CI they fail. Each
test runs a ``docker run`` line of README's Docker section as it stands, but for what keeps
it on loopback and lets it be watched: ``podman run -d --name NAME --network host`` with
``--web.listen-address=127.0.0.1:PORT`` after the image instead of ``-p 9781:9781``;
``--read-only-tmpfs=false`` beside ``--read-only`` (podman's ``--read-only`` would mount
writable tmpfs on /tmp and /run, Docker's does not); ``$PWD`` a directory of the test, and
the named volume one of the test's own.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from exporter.simulator.server import SimulatedCodat
from tests.harness import API_KEY, SERVING_METRICS, parse_exposition
from tests.promtools import ROOT

IMAGE_ENV = "CODAT_EXPORTER_IMAGE"
UID = 10001
STATE_DIR = "/var/lib/codat-freshness-exporter"
KEY_PATH = "/run/secrets/codat_api_key"
WAIT = 60.0
"""Seconds to wait for a container to start, serve or be ready: it only bounds a failure."""


def readme_docker_commands() -> list[list[str]]:
    """The commands of README's Docker section, continuation lines joined, as argv lists."""
    readme = (ROOT / "README.md").read_text()
    section = re.split(r"\n#{2,3} ", readme.split("\n### Docker\n", 1)[1], maxsplit=1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [shlex.split(line) for line in block.replace("\\\n", " ").splitlines() if line]


def readme_image() -> str:
    """The tag README's ``docker build -t TAG .`` gives the image."""
    (build,) = [c for c in readme_docker_commands() if c[:2] == ["docker", "build"]]
    return build[build.index("-t") + 1]


def readme_run(*, demo: bool) -> list[str]:
    """README's ``docker run`` line of the demo, or the one with a config and a key file."""
    (found,) = [
        command
        for command in readme_docker_commands()
        if command[:2] == ["docker", "run"] and ("--demo" in command) == demo
    ]
    return found


def _podman(*args: str, timeout: float = WAIT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Container:
    """README's ``docker run`` line ``command``, started by podman as the module docstring
    says, removed with its volumes (the test's own, and the anonymous one the image's VOLUME
    makes where none is mounted) on leaving the block::

        with Container(image, readme_run(demo=True), tmp_path) as container:
            url = container.url()
    """

    def __init__(self, image: str, command: list[str], pwd: Path, *, detach: bool = True) -> None:
        self.name = f"codat-exporter-test-{uuid.uuid4().hex[:12]}"
        self.port = _free_port()
        self.volumes: list[str] = []
        at = command.index(readme_image())
        options, arguments = command[2:at], command[at + 1 :]
        argv = ["run", "--name", self.name, "--network", "host", *(["-d"] if detach else [])]
        words = iter(options)
        for word in words:
            if word in ("--rm", "-d", "--detach"):
                continue
            if word in ("-p", "--name"):
                next(words)
                continue
            if word == "-v":
                argv += ["-v", self._volume(next(words), pwd)]
                continue
            argv.append(word)
            if word == "--read-only":
                argv.append("--read-only-tmpfs=false")
        self.argv = [*argv, image, *arguments, f"--web.listen-address=127.0.0.1:{self.port}"]
        self.run = _podman(*self.argv)
        if detach:
            assert self.run.returncode == 0, self.run.stderr

    def _volume(self, spec: str, pwd: Path) -> str:
        source, rest = spec.split(":", 1)
        if source.startswith("$PWD/"):
            return f"{pwd / source.removeprefix('$PWD/')}:{rest}"
        volume = f"{self.name}-{source}"
        self.volumes.append(volume)
        return f"{volume}:{rest}"

    def logs(self) -> str:
        result = _podman("logs", self.name)
        return result.stdout + result.stderr

    def url(self) -> str:
        """Where it serves, once its log says so; fails the test if it exits first."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if match := SERVING_METRICS.search(self.logs()):
                return match[1]
            assert self.state("{{.State.Running}}") == "true", self.logs()
            time.sleep(0.2)
        pytest.fail(f"{self.name} never said where it serves:\n{self.logs()}")

    def ready(self) -> requests.Response:
        """``GET /-/ready`` once it answers 200 (at most ``WAIT`` seconds)."""
        url = self.url()
        deadline = time.monotonic() + WAIT
        while (response := requests.get(f"{url}/-/ready", timeout=10)).status_code != 200:
            assert time.monotonic() < deadline, f"never ready: {response.text}\n{self.logs()}"
            time.sleep(0.2)
        return response

    def state(self, template: str) -> str:
        return _podman("inspect", "--format", template, self.name).stdout.strip()

    def volume_path(self, volume: str) -> Path:
        mountpoint = _podman("volume", "inspect", "--format", "{{.Mountpoint}}", volume)
        return Path(mountpoint.stdout.strip())

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc: object) -> None:
        _podman("rm", "--force", "--volumes", "--time", "0", self.name)
        for volume in self.volumes:
            _podman("volume", "rm", "--force", volume)


@pytest.fixture(scope="module")
def image() -> str:
    """The built image, or skip; under CI (env CI set) a missing one fails instead."""
    reference = os.environ.get(IMAGE_ENV)
    reason = ""
    if shutil.which("podman") is None:
        reason = "podman is not installed (Debian: apt-get install podman runc)"
    elif not reference:
        reason = f"no image to run: build it as README says and name it in {IMAGE_ENV}"
    elif os.geteuid() != 0:
        reason = "the image's tests run podman as root (files for UID 10001, volumes)"
    elif _podman("image", "exists", reference).returncode != 0:
        reason = f"{IMAGE_ENV}={reference}: no such image"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; .ci/run must build it (.ci/image)")
        pytest.skip(reason)
    assert reference
    return reference


@pytest.fixture(scope="module")
def demo(image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    """README's ``docker run ... --demo`` line, running."""
    with Container(image, readme_run(demo=True), tmp_path_factory.mktemp("demo")) as container:
        yield container


def _config_and_key(pwd: Path, codat: SimulatedCodat, *, key_mode: int, key_gid: int) -> None:
    """config.yaml and codat-api-key in ``pwd``, as README's config and key file line mounts
    them: the simulated Codat's address, its key in the file, the state file in the volume."""
    config = {
        "codat": {"base_url": codat.url, "api_key_file": KEY_PATH},
        "companies": {"discover": True},
        "poll": {"interval": "10m"},
        "state": {"file": f"{STATE_DIR}/state.json"},
    }
    (pwd / "config.yaml").write_text(yaml.safe_dump(config))
    key = pwd / "codat-api-key"
    key.write_text(f"{API_KEY}\n")
    os.chown(key, 0, key_gid)
    key.chmod(key_mode)


def test_should_run_the_commands_of_readmes_docker_section_in_ci() -> None:
    # Prepare
    ci = (ROOT / ".ci" / "image").read_text().splitlines()
    run = (ROOT / ".ci" / "run").read_text()

    # Act
    build = shlex.join(next(c for c in readme_docker_commands() if c[:2] == ["docker", "build"]))

    # Check: .ci/image builds with README's line (podman's flags before its arguments), and
    # the tests run the image it names
    assert build == f"docker build -t {readme_image()} ."
    assert any(
        line.startswith("podman build ") and line.endswith(build.removeprefix("docker build"))
        for line in ci
    )  # fmt: skip
    assert f"export {IMAGE_ENV}={readme_image()}" in run.splitlines()
    assert "--read-only" in readme_run(demo=False)


def test_should_serve_metrics_the_status_page_and_readiness_from_the_demo(
    demo: Container,
) -> None:
    # Act
    ready = demo.ready()
    metrics = requests.get(f"{demo.url()}/metrics", timeout=30)
    page = requests.get(f"{demo.url()}/", timeout=30)

    # Check
    assert ready.status_code == 200
    assert metrics.status_code == 200
    names = {sample.name for sample in parse_exposition(metrics.text)}
    assert "codat_exporter_company_up" in names
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "Not ready" not in page.text


def test_should_run_the_exporter_as_uid_10001(demo: Container) -> None:
    # Act: the container's first process, which is the exporter
    status = _podman("exec", demo.name, "cat", "/proc/1/status").stdout
    command_line = _podman("exec", demo.name, "cat", "/proc/1/cmdline").stdout

    # Check
    assert re.search(rf"^Uid:\s+{UID}\s+{UID}\s+{UID}\s+{UID}$", status, re.MULTILINE), status
    assert re.search(rf"^Gid:\s+{UID}\s", status, re.MULTILINE), status
    assert "codat-freshness-exporter" in command_line


def test_should_be_healthy_by_the_images_own_healthcheck(demo: Container) -> None:
    # Prepare
    demo.url()

    # Act: the HEALTHCHECK command from the image, run now by podman inside the container
    result = _podman("healthcheck", "run", demo.name)

    # Check: it found the exporter on the port of the flag given after the image name
    assert result.returncode == 0, result.stdout + result.stderr
    assert demo.state("{{.State.Healthcheck.Status}}") == "healthy"


def test_should_exit_0_within_5_seconds_of_sigterm(image: str, tmp_path: Path) -> None:
    # Prepare
    with Container(image, readme_run(demo=True), tmp_path) as container:
        container.url()

        # Act: SIGTERM, and SIGKILL after 5 s
        started = time.monotonic()
        stop = _podman("stop", "--time", "5", container.name)
        took = time.monotonic() - started

        # Check: 137 had it been killed
        assert stop.returncode == 0, stop.stderr
        assert container.state("{{.State.ExitCode}}") == "0", container.logs()
        assert took < 5, took
        assert "Traceback" not in container.logs()


def test_should_poll_codat_with_the_mounted_config_and_key_and_keep_state_in_the_volume(
    image: str, tmp_path: Path, codat: SimulatedCodat
) -> None:
    # Prepare: README's line for a config and a key file; the key as README says
    _config_and_key(tmp_path, codat, key_mode=0o440, key_gid=UID)
    command = readme_run(demo=False)

    with Container(image, command, tmp_path) as container:
        # Act: no --config.file, and a flag after the image: the image's environment names it
        container.ready()
        (volume,) = container.volumes
        state = container.volume_path(volume) / "state.json"
        deadline = time.monotonic() + WAIT
        while not state.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        metrics = requests.get(f"{container.url()}/metrics", timeout=30)

        # Check: every company polled with the key from the file; the state file written in
        # the volume, the only place a --read-only container can write to
        up = [s for s in parse_exposition(metrics.text) if s.name == "codat_exporter_company_up"]
        assert len(up) == len(codat.fleet.companies)
        assert {sample.value for sample in up} == {1.0}
        assert state.exists(), container.logs()
        assert state.stat().st_uid == UID
        assert container.state("{{.HostConfig.ReadonlyRootfs}}") == "true"


def test_should_exit_2_naming_the_key_file_when_uid_10001_cannot_read_it(
    image: str, tmp_path: Path, codat: SimulatedCodat
) -> None:
    # Prepare: a key file only root can read
    _config_and_key(tmp_path, codat, key_mode=0o400, key_gid=0)
    command = readme_run(demo=False)

    # Act
    with Container(image, command, tmp_path, detach=False) as container:
        result = container.run

    # Check: one line naming the key and the reason, no traceback
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"codat.api_key_file: cannot read {KEY_PATH}: Permission denied" in result.stderr
    assert "Traceback" not in result.stderr


def test_should_carry_neither_pip_nor_setuptools(image: str) -> None:
    # Act
    result = _podman(
        "run", "--rm", "--network", "none", "--no-healthcheck", "--entrypoint", "python", image,
        "-c",
        "import importlib.util, shutil;"
        "print([m for m in ('pip', 'setuptools', 'pkg_resources') if importlib.util.find_spec(m)],"
        " shutil.which('pip'), shutil.which('pip3'))",
    )  # fmt: skip

    # Check
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[] None None"
