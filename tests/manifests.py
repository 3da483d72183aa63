"""The Kubernetes manifests as a cluster would receive them: every overlay of
deploy/kubernetes rendered by the real ``kubectl kustomize``, and the exporter config each
one's pods would read. Shared by the manifest, release and sharded-fleet tests."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.promtools import ROOT, binary

KUBERNETES = ROOT / "deploy" / "kubernetes"
OVERLAYS = sorted(
    path.parent.name for path in (KUBERNETES / "overlays").glob("*/kustomization.yaml")
)
CONFIG_KEY = "config.yaml"


@dataclass(frozen=True)
class Rendered:
    """One overlay's objects."""

    overlay: str
    objects: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [item for item in self.objects if item["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        (found,) = [
            item for item in self.of_kind(kind) if name is None or item["metadata"]["name"] == name
        ]
        return found

    @property
    def statefulset(self) -> dict[str, Any]:
        return self.one("StatefulSet")

    @property
    def container(self) -> dict[str, Any]:
        (container,) = self.statefulset["spec"]["template"]["spec"]["containers"]
        return dict(container)

    def volume(self, name: str) -> dict[str, Any]:
        (volume,) = [
            v for v in self.statefulset["spec"]["template"]["spec"]["volumes"] if v["name"] == name
        ]
        return dict(volume)

    def mount(self, path: str) -> dict[str, Any]:
        """The container's volume mount holding ``path``."""
        (mount,) = [
            m for m in self.container["volumeMounts"]
            if Path(path).is_relative_to(m["mountPath"])
        ]  # fmt: skip
        return dict(mount)

    @property
    def config_text(self) -> str:
        """The exporter's config.yaml, as the StatefulSet mounts it."""
        name = self.volume("config")["configMap"]["name"]
        text: str = self.one("ConfigMap", name)["data"][CONFIG_KEY]
        return text

    @property
    def config(self) -> dict[str, Any]:
        loaded: dict[str, Any] = yaml.safe_load(self.config_text)
        return loaded


def render(overlay: str | Path) -> Rendered:
    """An overlay of deploy/kubernetes by name, or any kustomization directory by path."""
    directory = overlay if isinstance(overlay, Path) else KUBERNETES / "overlays" / overlay
    result = subprocess.run(
        [binary("kubectl"), "kustomize", str(directory)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"{overlay}: {result.stderr}"
    objects = [item for item in yaml.safe_load_all(result.stdout) if item]
    return Rendered(str(overlay), objects)
