"""Release hygiene: the version is written once (exporter/__init__.py), every image tag that
names it follows it, and CHANGELOG.md keeps the Keep a Changelog format."""

from __future__ import annotations

import re
import tomllib
from datetime import date

from exporter import __version__
from tests.manifests import OVERLAYS, render
from tests.promtools import ROOT, load_yaml

IMAGE = "codat-freshness-exporter"
CHANGE_TYPES = ("Added", "Changed", "Deprecated", "Removed", "Fixed", "Security")
"""Keep a Changelog's kinds of change, in its order."""
RELEASE = re.compile(r"^## \[(?P<version>\d+\.\d+\.\d+)\] - (?P<date>\d{4}-\d{2}-\d{2})$")


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def test_should_read_the_packages_version_from_exporter_init() -> None:
    # Act
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())

    # Check: no second copy in pyproject.toml to fall out of step
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "exporter.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)


def test_should_tag_the_image_with_the_version_in_compose_and_every_overlay() -> None:
    # Prepare
    expected = f"{IMAGE}:{__version__}"
    exporter = load_yaml(ROOT / "docker-compose.yml")["services"]["exporter"]
    dockerfile = (ROOT / "Dockerfile").read_text()

    # Act
    images = {
        overlay: [
            container["image"]
            for item in render(overlay).of_kind("StatefulSet")
            for container in item["spec"]["template"]["spec"]["containers"]
        ]
        for overlay in OVERLAYS
    }

    # Check: what compose builds is what the manifests run, labelled with the version, and
    # what README and docs/ tell to build, run and load
    assert exporter["build"] == "." and exporter["image"] == expected
    assert images == {overlay: [expected] for overlay in OVERLAYS}
    assert f"\nARG VERSION={__version__}\n" in dockerfile
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    readme_tags = re.findall(rf"\b{IMAGE}:(\d[\w.+-]*)", (ROOT / "README.md").read_text())
    docs_tags = [
        t for page in pages for t in re.findall(rf"\b{IMAGE}:(\d[\w.+-]*)", page.read_text())
    ]
    assert readme_tags and set(docs_tags) == {__version__}


def test_should_keep_a_changelog() -> None:
    # Prepare
    text = (ROOT / "CHANGELOG.md").read_text()
    lines = text.splitlines()

    # Act
    headings = [line for line in lines if line.startswith("## ")]
    kinds = [line.removeprefix("### ") for line in lines if line.startswith("### ")]
    releases = [match for line in headings if (match := RELEASE.match(line))]
    links = dict(re.findall(r"^\[([^\]]+)\]: (https://\S+)$", text, re.M))

    # Check: Unreleased first, then releases newest first, none newer than the package
    assert lines[0] == "# Changelog"
    assert "[Keep a Changelog](https://keepachangelog.com/en/1.1.0/)" in text
    assert headings[0] == "## [Unreleased]"
    assert len(releases) == len(headings) - 1, "a release heading is `## [x.y.z] - YYYY-MM-DD`"
    versions = [_version_key(m["version"]) for m in releases]
    assert versions == sorted(versions, reverse=True)
    assert all(version <= _version_key(__version__) for version in versions)
    for match in releases:
        date.fromisoformat(match["date"])
    assert kinds and set(kinds) <= set(CHANGE_TYPES)
    assert set(links) == {"Unreleased", *(m["version"] for m in releases)}
