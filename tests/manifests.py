"""The Kubernetes manifests as a cluster would receive them: every overlay of
deploy/kubernetes rendered by the real ``kubectl kustomize``, and the exporter config each
one's pods would read; and how an object is checked without a cluster. Shared by the
manifest, chart, release and sharded-fleet tests."""

from __future__ import annotations

import copy
import json
import math
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

from exporter.config.load import parse_config
from exporter.config.sections import Config
from exporter.poll import budget, sizing
from tests.promtools import ROOT, binary

KUBERNETES = ROOT / "deploy" / "kubernetes"
OVERLAYS = sorted(
    path.parent.name for path in (KUBERNETES / "overlays").glob("*/kustomization.yaml")
)
CONFIG_KEY = "config.yaml"
KUBERNETES_VERSIONS = ("1.27.0", kubernetes_validate.utils.latest_version())
"""The oldest Kubernetes the manifests are for (persistentVolumeClaimRetentionPolicy is on by
default from 1.27) and the newest whose schemas kubernetes-validate ships."""
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", kind): ROOT / "tests" / "crds" / f"{kind}.v1.json"
    for kind in ("ServiceMonitor", "PrometheusRule")
}
WEBHOOK_SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # Svix's documented example
CLUSTER_SCOPED = {"Namespace"}
NAMESPACED = {
    "ConfigMap", "Secret", "ServiceAccount", "StatefulSet", "Service", "ServiceMonitor",
    "PrometheusRule", "PodDisruptionBudget", "NetworkPolicy",
}  # fmt: skip
"""The kinds the manifests and the chart hold, by scope: an object of a namespaced kind
without a namespace lands in whatever namespace ``kubectl`` is pointed at."""


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


def pod_config(rendered: Rendered, tmp_path: Path, hostname: str) -> Config:
    """The rendered config as a pod named ``hostname`` reads it, with no environment;
    files of the test's stand in for the Secret's (the API key, the webhook secret)."""
    raw = copy.deepcopy(rendered.config)
    key_file = tmp_path / "api-key"
    key_file.write_text("test-api-key\n")
    raw["codat"]["api_key_file"] = str(key_file)
    if "secret_file" in raw.get("webhooks", {}):
        secret_file = tmp_path / "webhook-secret"
        secret_file.write_text(WEBHOOK_SECRET + "\n")
        raw["webhooks"]["secret_file"] = str(secret_file)
    return parse_config(raw, environ={}, hostname=hostname)


def _strict(schema: Any) -> Any:
    """The schema with unknown fields refused, as ``kubectl apply --validate=strict`` asks of
    the API server (tests/crds/PROVENANCE.md)."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {key: _strict(value) for key, value in schema.items()}
    open_ended = "additionalProperties" in schema or schema.get(
        "x-kubernetes-preserve-unknown-fields"
    )
    if "properties" in schema and not open_ended:
        strict["additionalProperties"] = False
    return strict


def crd_errors(item: dict[str, Any]) -> list[str]:
    """What prometheus-operator's CRD schema (tests/crds) refuses in ``item``."""
    schema = _strict(json.loads(CRD_SCHEMAS[item["apiVersion"], item["kind"]].read_text()))
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(item)
    ]


def validation_errors(item: dict[str, Any], version: str) -> list[str]:
    """What Kubernetes ``version`` (or, for the operator's kinds, its CRDs) refuses in
    ``item``, unknown fields included."""
    if (item["apiVersion"], item["kind"]) in CRD_SCHEMAS:
        return crd_errors(item)
    try:
        kubernetes_validate.validate(item, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{'/'.join(map(str, exc.path))}: {exc.message}"]
    return []


def misplaced(objects: list[dict[str, Any]], namespace: str) -> list[str]:
    """Objects outside ``namespace``: a namespaced one without it, a kind of unknown scope,
    or a cluster-scoped one given a namespace. Empty when all is well."""
    wrong = []
    for item in objects:
        where = f"{item['kind']} {item['metadata']['name']}"
        given = item["metadata"].get("namespace")
        if item["kind"] in NAMESPACED and given != namespace:
            wrong.append(f"{where}: namespace {given!r}")
        elif item["kind"] in CLUSTER_SCOPED and given is not None:
            wrong.append(f"{where}: cluster-scoped, but namespace {given!r}")
        elif item["kind"] not in NAMESPACED | CLUSTER_SCOPED:
            wrong.append(f"{where}: a kind of unknown scope")
    return wrong


@dataclass(frozen=True)
class StatedFleet:
    """The fleet a deployment's comments say its config is sized for, and what the exporter's
    estimate makes of that config."""

    companies: int
    """``Sized for N companies``."""
    room: int | None
    """``up to about N fit without a start-up warning``, where the comments say it."""
    warning: str | None
    """The start-up log's warning for ``companies``."""
    sized: bool
    """Within the sizing table's headroom for ``companies``."""
    largest: int
    """The most companies the config fits without the warning."""


def stated_fleet(config: Config, text: str) -> StatedFleet:
    """``config`` against the fleet size the comments of ``text`` (a config file or a values
    file) state."""
    comments = " ".join(
        line.strip().removeprefix("#").strip()
        for line in text.splitlines()
        if line.strip().startswith("#")
    )
    stated = re.search(r"Sized for ([\d,]+) companies", comments)
    room = re.search(r"up to about ([\d,]+) fit without a start-up warning", comments)
    assert stated, "no 'Sized for N companies' in the comments"
    companies = int(stated[1].replace(",", ""))
    largest = min(n for n in (*sizing.largest_fleet(config), math.inf) if n is not None)
    return StatedFleet(
        companies=companies,
        room=int(room[1].replace(",", "")) if room else None,
        warning=budget.estimate_for(config, companies).warning(),
        sized=sizing.sized(config, companies),
        largest=int(largest),
    )
