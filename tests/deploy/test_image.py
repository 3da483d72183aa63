"""The Dockerfile and its lock file, checked without building: hadolint, what each
instruction points at, the lock against pyproject.toml, and the ENTRYPOINT (with the config
path of its ENV) and HEALTHCHECK commands run outside a container, against a real exporter.

tests/deploy/test_image_container.py runs the image that .ci/run builds: as UID 10001, with a
read-only root filesystem, podman running the HEALTHCHECK with the exporter as the
container's first process (here the check is pointed at the exporter's process id with
``--pid``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from exporter.cli import CONFIG_ENV
from exporter.config.listen import DEFAULT_PORT
from exporter.web.healthcheck import TIMEOUT
from tests.harness import Program
from tests.promtools import ROOT, binary

DOCKERFILE = ROOT / "Dockerfile"
LOCK = ROOT / "requirements.lock"
CONFIG_DIR = "/etc/codat-freshness-exporter"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments left out."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    parsed = [line.split(None, 1) for line in lines if line and not line.startswith("#")]
    return [(words[0].upper(), words[1] if len(words) > 1 else "") for words in parsed]


def arguments(name: str) -> list[str]:
    (found,) = [args for instruction, args in instructions() if instruction == name]
    return found.split()


def exec_form(name: str) -> list[str]:
    """The JSON array of ENTRYPOINT, CMD or (after its options) HEALTHCHECK's CMD."""
    (found,) = [args for instruction, args in instructions() if instruction == name]
    array: list[str] = json.loads(found[found.index("[") :])
    return array


def _closed_port() -> int:
    """A loopback port that nothing listens on at the moment."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def exporter_on_its_own_port() -> Iterator[tuple[Program, int]]:
    """The demo exporter told to listen on a port of its own (the health check reads the
    port from the command line, so it cannot be 0); another port if that one was taken."""
    for _ in range(5):
        port = _closed_port()
        with Program("--demo", "--web.listen-address", f"127.0.0.1:{port}") as program:
            try:
                url = program.url()
            except AssertionError:
                if "cannot listen" in program.stderr:
                    continue
                raise
            assert url.endswith(f":{port}")
            yield program, port
            return
    pytest.fail("no free port in five tries")


def healthcheck(pid: int) -> subprocess.CompletedProcess[str]:
    """The Dockerfile's HEALTHCHECK command, run with this Python, reading process ``pid``."""
    python, *rest = exec_form("HEALTHCHECK")
    assert python == "python"
    return subprocess.run(
        [sys.executable, *rest, "--pid", str(pid)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def test_should_pass_hadolint() -> None:
    # Act
    result = subprocess.run(
        [binary("hadolint"), "--no-color", str(DOCKERFILE)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    # Check
    assert result.returncode == 0, result.stdout + result.stderr


def test_should_build_every_stage_from_one_base_pinned_by_tag_and_digest() -> None:
    # Prepare
    (argument,) = [a for i, a in instructions() if i == "ARG" and a.startswith("PYTHON_IMAGE=")]
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]

    # Act
    image = argument.removeprefix("PYTHON_IMAGE=")
    bases = [args.split()[0] for instruction, args in instructions() if instruction == "FROM"]

    # Check: a multi-stage build whose stages all share the pinned slim Python
    assert re.fullmatch(r"python:3\.\d+\.\d+-slim-\w+@sha256:[0-9a-f]{64}", image), image
    assert image.removeprefix("python:").startswith(requires.removeprefix(">="))
    assert len(bases) >= 2
    assert set(bases) == {"${PYTHON_IMAGE}"}


def test_should_copy_only_files_that_exist_and_that_the_build_context_holds() -> None:
    # Prepare: .dockerignore leaves everything out but what it lets back in with !
    ignore = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line]
    patterns = [line for line in ignore if not line.startswith("#")]
    let_in = {line.removeprefix("!").rstrip("/") for line in patterns if line.startswith("!")}

    # Act
    sources = [
        source
        for instruction, args in instructions()
        if instruction == "COPY" and "--from" not in args
        for source in args.split()[:-1]
    ]

    # Check
    assert patterns[0] == "*"
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert source.rstrip("/").removeprefix("./") in let_in, source


def test_should_run_as_a_fixed_unprivileged_user_on_the_default_port() -> None:
    # Act
    (user,) = arguments("USER")
    uid, gid = (int(part) for part in user.split(":"))

    # Check
    assert uid == gid == 10001
    assert arguments("EXPOSE") == [str(DEFAULT_PORT)]
    assert any(
        i == "RUN" and f"--uid {uid} --gid {gid}" in args for i, args in instructions()
    )  # fmt: skip


def environment() -> dict[str, str]:
    """The image's ENV, every instruction's ``KEY=value`` pairs."""
    pairs = [shlex.split(args) for instruction, args in instructions() if instruction == "ENV"]
    return dict(pair.split("=", 1) for words in pairs for pair in words)


def test_should_start_the_exporter_with_the_entrypoint_and_the_config_its_environment_names(
    tmp_path: Path,
) -> None:
    # Prepare: the ENTRYPOINT is the console script of the virtualenv the Dockerfile makes;
    # the config path the image's environment names is mapped onto a directory of this test.
    (entrypoint,) = exec_form("ENTRYPOINT")
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    venv = Path(entrypoint).parent.parent
    named = environment()[CONFIG_ENV]
    config = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "base" / "config.yaml").read_text())
    key_file = tmp_path / "api-key"
    key_file.write_text("a-key\n")
    config["codat"]["api_key_file"] = str(key_file)
    config["state"]["file"] = str(tmp_path / "state.json")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, CONFIG_ENV: named.replace(CONFIG_DIR, str(tmp_path))}

    # Act: the same main() as the console script, as `python -m exporter`, with flags given
    # after the image's name (`docker run IMAGE --web.listen-address=:9999 --check-config`)
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "--web.listen-address=:9999", "--check-config"],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip

    # Check: no CMD that such flags would replace
    assert Path(entrypoint).name in scripts
    assert scripts[Path(entrypoint).name] == "exporter.cli:main"
    assert any(i == "RUN" and f"python3 -m venv {venv}" in args for i, args in instructions())
    assert named == f"{CONFIG_DIR}/config.yaml"
    assert "CMD" not in [instruction for instruction, _ in instructions()]
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{tmp_path / 'config.yaml'}: configuration OK: ")
    assert "discover" in result.stdout


def locked() -> dict[str, tuple[str, list[str]]]:
    """requirements.lock: each normalised name's pinned version and hashes."""
    text = LOCK.read_text().replace("\\\n", " ")
    entries = [line.split() for line in text.splitlines() if line and not line.startswith(" ")]
    found: dict[str, tuple[str, list[str]]] = {}
    for pin, *options in (words for words in entries if not words[0].startswith("#")):
        name, version = pin.split("==")
        hashes = [option.removeprefix("--hash=") for option in options]
        assert all(h.startswith("sha256:") for h in hashes), pin
        found[canonicalize_name(name)] = (version, hashes)
    return found


def test_should_install_the_locked_dependencies_by_hash_then_the_exporter_alone() -> None:
    # Prepare
    (entrypoint,) = exec_form("ENTRYPOINT")
    pip = Path(entrypoint).parent / "pip"
    stages = re.split(r"^FROM ", DOCKERFILE.read_text(), flags=re.MULTILINE)[1:]
    runs = [args for instruction, args in instructions() if instruction == "RUN"]

    # Act
    (dependencies,) = [run for run in runs if "requirements.lock" in run]
    (exporter,) = [run for run in runs if re.search(rf"{pip} install --no-deps \.(\s|$)", run)]
    copied = [line for line in stages[-1].splitlines() if line.startswith("COPY --from=")]
    venv = Path(entrypoint).parent.parent

    # Check: no dependency left to resolve from pyproject.toml's ranges; `pip check` catches
    # a dependency the lock lacks; pip and setuptools gone before the virtualenv is copied
    assert f"{pip} install --require-hashes --no-deps" in dependencies
    assert "--requirement requirements.lock" in dependencies
    assert "--only-binary=:all:" in dependencies
    assert exporter.index(f"{pip} check") < exporter.index("-m pip uninstall --yes pip setuptools")
    assert copied == [f"COPY --from=venv {venv} {venv}"]


def test_should_pin_every_dependency_within_its_range_with_its_hashes() -> None:
    # Prepare
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    # Act
    lock = locked()
    requirements = [Requirement(line) for line in project["dependencies"]]

    # Check: regenerate the lock (README: Development) after changing a dependency
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        assert name in lock, f"{name} is not in requirements.lock"
        version, hashes = lock[name]
        assert requirement.specifier.contains(version), f"{name}=={version} {requirement}"
        assert hashes, name
    assert "pip" not in lock
    assert "setuptools" not in lock


def test_should_regenerate_the_lock_with_the_command_readme_gives_and_ci_runs() -> None:
    # Prepare
    readme = (ROOT / "README.md").read_text()
    development = readme.split("\n## Development\n", 1)[1]
    ci = (ROOT / ".ci" / "run").read_text().replace("\\\n  ", "")

    # Act
    (command,) = re.findall(r"^\.venv/bin/(uv pip compile .*)$", development, re.MULTILINE)
    header = LOCK.read_text().splitlines()[:2]

    # Check: the lock says how it was made, and CI runs the same (and fails on a diff)
    assert header == [
        "# This file was autogenerated by uv via the following command:",
        f"#    {command}",
    ]
    assert f".venv/bin/{command} >/dev/null" in ci.splitlines()  # uv prints the lock too
    assert "--generate-hashes" in command
    assert "git diff --exit-code -- requirements.lock" in ci.splitlines()


def test_should_report_healthy_an_exporter_listening_on_another_port(
    exporter_on_its_own_port: tuple[Program, int],
) -> None:
    # Prepare
    program, port = exporter_on_its_own_port
    assert port != DEFAULT_PORT

    # Act
    result = healthcheck(program.process.pid)

    # Check
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"127.0.0.1:{port} accepts connections"


def test_should_report_unhealthy_where_the_command_line_says_to_listen_but_nothing_does() -> None:
    # Prepare: a process whose command line names a port that nothing listens on
    port = _closed_port()
    idle = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "--web.listen-address", f":{port}"]
    )
    try:
        # Act
        result = healthcheck(idle.pid)
    finally:
        idle.kill()
        idle.wait()

    # Check
    assert result.returncode == 1
    assert result.stderr.startswith(f"cannot connect to 127.0.0.1:{port} (--web.listen-address")


def test_should_report_unhealthy_when_the_process_is_gone() -> None:
    # Prepare
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()

    # Act
    result = healthcheck(gone.pid)

    # Check
    assert result.returncode == 1
    assert "cannot read the exporter's command line" in result.stderr


def test_should_keep_the_health_check_within_dockers_timeout() -> None:
    # Prepare
    (options,) = [a for i, a in instructions() if i == "HEALTHCHECK"]
    timeout = float(re.search(r"--timeout=(\d+)s", options)[1])  # type: ignore[index]

    # Check: the connect gives up (and says why) before Docker kills the check
    assert timeout > TIMEOUT
