"""deploy/kubernetes, rendered by the real ``kubectl kustomize`` as ``kubectl apply -k`` would,
and checked without a cluster: every object against Kubernetes' own schemas
(``kubernetes-validate``) and prometheus-operator's CRD schemas (vendored in tests/crds), and
each overlay's pods against what the exporter and the image expect of them.

tests/e2e/test_sharded_fleet.py runs the sharded overlay's config as three pods would, against a
real Prometheus.
"""

from __future__ import annotations

import copy
import json
import math
import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from exporter.config.listen import DEFAULT_PORT
from exporter.config.settings import ConfigError
from exporter.poll import sizing
from exporter.web.handler import HEALTH_PATHS
from monitoring.generate import DASHBOARD_DIR, RULES_FILE
from monitoring.kubernetes import OPERATOR_LABELS, SIDECAR_LABELS
from tests.manifests import (
    CONFIG_KEY,
    KUBERNETES,
    KUBERNETES_VERSIONS,
    OVERLAYS,
    WEBHOOK_SECRET,
    Rendered,
    crd_errors,
    misplaced,
    pod_config,
    render,
    stated_fleet,
    validation_errors,
)
from tests.promtools import MONITORING_CONFIG, ROOT, binary, load_yaml

CODAT_LIMIT_PER_IP = 1000
"""Codat's requests per minute per IP (docs/configuration.md: Quota)."""
APPLY_ANNOTATION_LIMIT = 262_144
"""Bytes of all annotations of an object: client-side ``kubectl apply`` stores the whole
object in one, so a larger dashboard ConfigMap would be refused."""


@pytest.fixture(scope="module")
def rendered() -> dict[str, Rendered]:
    return {overlay: render(overlay) for overlay in OVERLAYS}


def _megabytes(quantity: str) -> float:
    """A Kubernetes memory quantity in MB (10^6 bytes), as bench/RESULTS.md counts."""
    number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", quantity).groups()  # type: ignore[union-attr]
    return int(number) * {"Mi": 2**20, "Gi": 2**30}[unit] / 1e6


def _flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


# --- rendering and validation ----------------------------------------------------------------


def test_should_render_every_overlay_with_the_whole_deployment(
    rendered: dict[str, Rendered],
) -> None:
    # Check: the three overlays the docs document, each with every part of the issue.
    assert set(rendered) == {"single", "sharded", "webhooks"}
    for overlay in rendered.values():
        kinds = {item["kind"] for item in overlay.objects}
        assert kinds >= {
            "Namespace", "ServiceAccount", "StatefulSet", "Service", "ServiceMonitor",
            "PrometheusRule", "ConfigMap", "PodDisruptionBudget", "NetworkPolicy",
        }, overlay.overlay  # fmt: skip
        assert overlay.one("Namespace")["metadata"]["name"] == "codat-freshness-exporter"


def test_should_put_every_namespaced_object_of_every_overlay_in_the_namespace(
    rendered: dict[str, Rendered],
) -> None:
    for name, overlay in rendered.items():
        # Act: objects that `kubectl apply -k` would put in the current namespace instead
        wrong = misplaced(overlay.objects, "codat-freshness-exporter")

        # Check
        assert wrong == [], name


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_should_validate_every_object_against_the_kubernetes_or_operator_schemas(
    rendered: dict[str, Rendered], version: str
) -> None:
    for overlay in rendered.values():
        for item in overlay.objects:
            where = f"{overlay.overlay}: {item['kind']} {item['metadata']['name']}"

            # Act
            errors = validation_errors(item, version)

            # Check
            assert errors == [], f"{where} (Kubernetes {version})"


def test_should_refuse_a_misspelt_field_in_an_operator_object(
    rendered: dict[str, Rendered],
) -> None:
    # Prepare: the kind of typo the API server would prune silently without strict validation
    monitor = copy.deepcopy(rendered["single"].one("ServiceMonitor"))
    endpoint = monitor["spec"]["endpoints"][0]
    endpoint["scrapeTimout"] = endpoint.pop("scrapeTimeout")

    # Act
    errors = crd_errors(monitor)

    # Check
    assert errors and "scrapeTimout" in errors[0]
    assert crd_errors(rendered["single"].one("ServiceMonitor")) == []


def test_should_refuse_a_misspelt_field_in_a_kubernetes_object(
    rendered: dict[str, Rendered],
) -> None:
    # Prepare
    statefulset = copy.deepcopy(rendered["single"].statefulset)
    statefulset["spec"]["template"]["spec"]["securityContext"]["runAsNonroot"] = True

    # Act / Check
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(statefulset, KUBERNETES_VERSIONS[-1], strict=True)


# --- generated monitoring objects -------------------------------------------------------------


def test_should_evaluate_exactly_the_repositorys_rules_in_the_prometheusrule(
    rendered: dict[str, Rendered],
) -> None:
    for overlay in rendered.values():
        # Act
        rule = overlay.one("PrometheusRule")

        # Check: the rules promtool tests, selected by the same label as the ServiceMonitor
        assert rule["spec"] == load_yaml(ROOT / RULES_FILE)
        assert rule["metadata"]["labels"].items() >= OPERATOR_LABELS.items()
        monitor = overlay.one("ServiceMonitor")
        assert monitor["metadata"]["labels"].items() >= OPERATOR_LABELS.items()


def test_should_give_grafanas_sidecar_one_configmap_per_dashboard(
    rendered: dict[str, Rendered],
) -> None:
    # Prepare
    files = {path.name: path.read_text() for path in (ROOT / DASHBOARD_DIR).glob("*.json")}

    for overlay in rendered.values():
        # Act
        maps = [
            m for m in overlay.of_kind("ConfigMap")
            if m["metadata"].get("labels", {}).items() >= SIDECAR_LABELS.items()
        ]  # fmt: skip

        # Check: each the dashboard file byte for byte, small enough for `kubectl apply`
        assert len(maps) == len(files) == 3
        assert {name: text for m in maps for name, text in m["data"].items()} == files
        for config_map in maps:
            assert len(json.dumps(config_map)) < APPLY_ANNOTATION_LIMIT


# --- scraping ----------------------------------------------------------------------------------


def test_should_scrape_every_pod_under_the_job_the_alerts_select(
    rendered: dict[str, Rendered],
) -> None:
    # Prepare
    selector = load_yaml(MONITORING_CONFIG)["selector"]

    for overlay in rendered.values():
        monitor = overlay.one("ServiceMonitor")
        pod_labels = overlay.statefulset["spec"]["template"]["metadata"]["labels"]

        # Act: the Services the ServiceMonitor selects, and the job label it gives them
        wanted = monitor["spec"]["selector"]["matchLabels"].items()
        services = [
            s for s in overlay.of_kind("Service") if s["metadata"]["labels"].items() >= wanted
        ]
        (service,) = services
        job = service["metadata"]["labels"][monitor["spec"]["jobLabel"]]

        # Check: the headless Service of the StatefulSet, every pod, the metrics port
        assert f'job="{job}"' in selector
        assert service["metadata"]["name"] == overlay.statefulset["spec"]["serviceName"]
        assert service["spec"]["clusterIP"] == "None"
        assert service["spec"]["publishNotReadyAddresses"] is True
        assert service["spec"]["selector"].items() <= pod_labels.items()
        (endpoint,) = monitor["spec"]["endpoints"]
        (port,) = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
        assert port["port"] == DEFAULT_PORT
        assert {"name": "metrics", "containerPort": DEFAULT_PORT} in overlay.container["ports"]
        assert endpoint["path"] == "/metrics"


def test_should_give_a_scrape_of_a_fleet_sized_shard_time_to_finish(
    rendered: dict[str, Rendered],
) -> None:
    # Prepare: bench/RESULTS.md, Prometheus' first scrape of 10,000 x 25 (the slowest: it
    # appends a million new series to its head) and the exporter's gzip scrape
    results = (ROOT / "bench" / "RESULTS.md").read_text()
    first = float(re.search(r"default mode's first scrape: ([\d.]+)s", results)[1])  # type: ignore[index]
    scrape = float(re.search(r"exporter scrape at 10,000 x 25, gzip: median ([\d.]+)s", results)[1])  # type: ignore[index]

    for overlay in rendered.values():
        # Act
        (endpoint,) = overlay.one("ServiceMonitor")["spec"]["endpoints"]
        interval, timeout = (
            int(endpoint[key].removesuffix("s")) for key in ("interval", "scrapeTimeout")
        )

        # Check: a timeout with room above the slowest scrape measured (it follows the
        # machine's load: 12.95 and 15.15 s in today's two runs), below the interval
        assert 1.5 * first < timeout == 30 < interval == 60
        assert 50 * scrape < timeout


def test_should_label_each_pods_series_by_its_name_so_a_restart_continues_them(
    rendered: dict[str, Rendered],
) -> None:
    # Prepare: a recreated pod has a new IP; the alerts' keep_firing_for only bridges the
    # gap if its series come back with the same labels
    for overlay in rendered.values():
        # Act
        (endpoint,) = overlay.one("ServiceMonitor")["spec"]["endpoints"]
        # Check
        assert {"sourceLabels": ["__meta_kubernetes_pod_name"], "targetLabel": "instance"} in (
            endpoint.get("relabelings", [])
        )


# --- the pods ----------------------------------------------------------------------------------


def test_should_take_each_pods_shard_from_the_ordinal_of_its_name(
    rendered: dict[str, Rendered], tmp_path: Path
) -> None:
    for overlay in rendered.values():
        statefulset = overlay.statefulset
        replicas = statefulset["spec"]["replicas"]
        names = [f"{statefulset['metadata']['name']}-{ordinal}" for ordinal in range(replicas)]

        # Act: the config each pod reads, resolved with the pod's hostname
        shards = [pod_config(overlay, tmp_path, name).shard for name in names]

        # Check: every shard once
        assert [(s.index, s.count) for s in shards] == [(i, replicas) for i in range(replicas)]
        assert statefulset["spec"]["podManagementPolicy"] == "Parallel"

    # Check: scaled up without changing sharding.shards, the new pod refuses to start
    assert rendered["sharded"].statefulset["spec"]["replicas"] == 3
    with pytest.raises(ConfigError, match=r"make sharding\.shards match the number of replicas"):
        pod_config(rendered["sharded"], tmp_path, "codat-exporter-3")


def test_should_share_codats_per_ip_limit_between_the_replicas(
    rendered: dict[str, Rendered],
) -> None:
    # Act: requests a minute of the whole fleet, every replica behind one IP
    budgets = {
        name: overlay.statefulset["spec"]["replicas"]
        * overlay.config["codat"]["max_requests_per_minute"]
        for name, overlay in rendered.items()
    }

    # Check: the same budget whatever the number of replicas, under Codat's limit
    (budget,) = set(budgets.values())
    assert budget < CODAT_LIMIT_PER_IP
    assert rendered["sharded"].statefulset["spec"]["replicas"] > 1


def test_should_vary_the_config_only_in_the_keys_each_overlay_is_for(
    rendered: dict[str, Rendered],
) -> None:
    # Prepare
    base = _flatten(yaml.safe_load((KUBERNETES / "base" / CONFIG_KEY).read_text()))
    allowed = {
        "single": set(),
        "sharded": {"sharding.shards", "codat.max_requests_per_minute"},
        "webhooks": {"webhooks.enabled", "webhooks.secret_file", "webhooks.listen_address"},
    }

    for name, overlay in rendered.items():
        # Act
        config = _flatten(overlay.config)
        changed = {key for key in base.keys() | config.keys() if base.get(key) != config.get(key)}

        # Check
        assert changed == allowed[name]


def test_should_mount_the_config_the_api_key_and_the_state_where_the_config_reads_them(
    rendered: dict[str, Rendered],
) -> None:
    for overlay in rendered.values():
        container, config = overlay.container, overlay.config
        (config_flag,) = [a for a in container["args"] if a.startswith("--config.file=")]
        config_file = config_flag.removeprefix("--config.file=")
        key_file = config["codat"]["api_key_file"]
        state_file = config["state"]["file"]

        # Act
        mounts = {path: overlay.mount(path) for path in (config_file, key_file, state_file)}

        # Check: the config from its ConfigMap, the key from the Secret, the state writable
        assert mounts[config_file]["name"] == "config" and mounts[config_file]["readOnly"]
        assert Path(config_file).name == CONFIG_KEY
        secret = overlay.volume(mounts[key_file]["name"])["secret"]
        assert secret["secretName"] == "codat-exporter" and mounts[key_file]["readOnly"]
        assert {"key": "api-key", "path": Path(key_file).name} in secret["items"]
        assert secret["defaultMode"] == 0o440
        assert not mounts[state_file].get("readOnly")
        (claim,) = overlay.statefulset["spec"]["volumeClaimTemplates"]
        assert claim["metadata"]["name"] == mounts[state_file]["name"]
        assert Path(state_file).parent == Path(mounts[state_file]["mountPath"])


def test_should_run_as_the_images_user_with_nothing_it_does_not_need(
    rendered: dict[str, Rendered],
) -> None:
    # Prepare
    user = re.search(r"^USER (\d+):(\d+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert user

    for overlay in rendered.values():
        # Act
        pod = overlay.statefulset["spec"]["template"]["spec"]
        container = overlay.container["securityContext"]

        # Check: the restricted Pod Security Standard, which the namespace enforces
        assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (
            int(user[1]), int(user[2]),
        )  # fmt: skip
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["fsGroup"] == int(user[2])
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert container["readOnlyRootFilesystem"] is True
        assert container["allowPrivilegeEscalation"] is False
        assert container["capabilities"] == {"drop": ["ALL"]}
        assert pod["automountServiceAccountToken"] is False
        labels = overlay.one("Namespace")["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_should_probe_liveness_on_healthy_and_readiness_on_ready_without_credentials(
    rendered: dict[str, Rendered],
) -> None:
    for overlay in rendered.values():
        # Act
        container = overlay.container
        probes = {kind: container[f"{kind}Probe"]["httpGet"] for kind in ("liveness", "readiness")}

        # Check
        assert (probes["liveness"]["path"], probes["readiness"]["path"]) == HEALTH_PATHS
        assert {probe["port"] for probe in probes.values()} == {"metrics"}
        assert container["startupProbe"]["httpGet"] == probes["liveness"]
        assert "--web.health-without-auth" in container["args"]


def test_should_size_resources_from_the_benchmarks_peak_memory(
    rendered: dict[str, Rendered],
) -> None:
    # Prepare
    results = (ROOT / "bench" / "RESULTS.md").read_text()
    peak_mb = int(re.search(r"exporter peak RSS at 10,000 x 25: (\d+) MB", results)[1])  # type: ignore[index]

    for overlay in rendered.values():
        # Act
        resources = overlay.container["resources"]
        request, limit = (_megabytes(resources[kind]["memory"]) for kind in ("requests", "limits"))

        # Check: the request holds the measured peak with room; the limit twice that
        assert peak_mb * 1.25 < request < limit
        assert limit >= 2 * peak_mb
        assert resources["limits"]["cpu"] == "1"


def test_should_fit_the_fleet_each_overlays_config_states_without_a_warning(
    rendered: dict[str, Rendered], tmp_path: Path
) -> None:
    rooms = []
    for name, overlay in rendered.items():
        replicas = overlay.statefulset["spec"]["replicas"]
        config = pod_config(overlay, tmp_path, "codat-exporter-0")

        # Act: the start-up estimate of each pod's config, for the fleet its comments state
        fleet = stated_fleet(config, overlay.config_text)

        # Check: no warning, within the sizing table's headroom, the room it claims, and the
        # memory of the sizing table for each replica's share
        assert fleet.warning is None, name
        assert fleet.sized, name
        if fleet.room is not None:
            rooms.append(name)
            assert abs(fleet.largest - fleet.room) <= 0.05 * fleet.room, (name, fleet.largest)
        share = sizing.memory_mb(math.ceil(fleet.companies / replicas))
        request = _megabytes(overlay.container["resources"]["requests"]["memory"])
        assert request >= share, name
    assert "single" in rooms


def test_should_let_a_drain_take_one_replica_at_a_time(rendered: dict[str, Rendered]) -> None:
    for overlay in rendered.values():
        # Act
        budget = overlay.one("PodDisruptionBudget")["spec"]

        # Check
        pod_labels = overlay.statefulset["spec"]["template"]["metadata"]["labels"]
        assert budget["maxUnavailable"] == 1
        assert budget["selector"]["matchLabels"].items() <= pod_labels.items()


def test_should_admit_only_prometheus_and_with_webhooks_the_webhook_port(
    rendered: dict[str, Rendered],
) -> None:
    for name, overlay in rendered.items():
        # Act
        policy = overlay.one("NetworkPolicy")["spec"]
        container_ports = {p["name"]: p["containerPort"] for p in overlay.container["ports"]}

        # Check
        pod_labels = overlay.statefulset["spec"]["template"]["metadata"]["labels"]
        assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
        assert policy["policyTypes"] == ["Ingress"]
        prometheus, *others = policy["ingress"]
        (source,) = prometheus["from"]
        assert source["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}
        assert source["namespaceSelector"]["matchLabels"]
        assert [p["port"] for p in prometheus["ports"]] == ["metrics"]
        opened = [p["port"] for rule in others for p in rule["ports"]]
        assert opened == (["webhooks"] if name == "webhooks" else [])
        assert set(opened) <= set(container_ports)


def test_should_receive_webhooks_on_their_own_port_with_the_secret_from_the_secret(
    rendered: dict[str, Rendered], tmp_path: Path
) -> None:
    # Prepare
    overlay = rendered["webhooks"]
    secret_file = overlay.config["webhooks"]["secret_file"]
    key_file = overlay.config["codat"]["api_key_file"]

    # Act
    config = pod_config(overlay, tmp_path, "codat-exporter-0")
    service = overlay.one("Service", "codat-exporter-webhooks")
    mount = overlay.mount(secret_file)

    # Check: the listener the config opens is the port the Service routes to
    assert config.webhooks.enabled and config.webhooks.secret == WEBHOOK_SECRET
    port = int(config.webhooks.listen_address.rsplit(":", 1)[1])
    assert {"name": "webhooks", "containerPort": port} in overlay.container["ports"]
    assert service["spec"]["ports"] == [
        {"name": "webhooks", "port": port, "targetPort": "webhooks"}
    ]
    # Check: the signing secret is a file from the Secret, beside the API key, as only the
    # exporter's group may read it; in no environment variable
    secret = overlay.volume(mount["name"])["secret"]
    assert mount == overlay.mount(key_file) and mount["readOnly"]
    assert secret["secretName"] == "codat-exporter" and secret["defaultMode"] == 0o440
    relative = str(Path(secret_file).relative_to(mount["mountPath"]))
    assert secret["items"] == [
        {"key": "api-key", "path": Path(key_file).name},
        {"key": "webhook-secret", "path": relative},
    ]
    assert "secret" not in overlay.config["webhooks"]
    for each in rendered.values():
        assert "env" not in each.container and "envFrom" not in each.container
    assert overlay.statefulset["spec"]["replicas"] == 1


# --- docs/kubernetes.md ------------------------------------------------------------------------


def _readme_block(marker: str) -> str:
    """The YAML block of docs/kubernetes.md holding ``marker``."""
    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "docs" / "kubernetes.md").read_text(), re.S)
    (block,) = [b for b in blocks if marker in b]
    return str(block)


def test_should_render_readmes_overlay_for_a_prometheus_without_the_operator(
    rendered: dict[str, Rendered], tmp_path: Path
) -> None:
    # Prepare: docs/kubernetes.md's overlay, in a directory next to deploy/ as it says
    (tmp_path / "deploy").symlink_to(ROOT / "deploy")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "kustomization.yaml").write_text(_readme_block("$patch: delete"))

    # Act
    mine = render(tmp_path / "mine")

    # Check: the sharded overlay, less the operator's kinds
    def kinds(overlay: Rendered) -> list[str]:
        return sorted(item["kind"] for item in overlay.objects)

    operator = {"ServiceMonitor", "PrometheusRule"}
    assert not operator & set(kinds(mine))
    assert kinds(mine) == [k for k in kinds(rendered["sharded"]) if k not in operator]


def test_should_show_a_plain_prometheus_scrape_config_that_promtool_accepts(
    tmp_path: Path,
) -> None:
    # Prepare: Debian's Prometheus is built without Kubernetes discovery, so promtool checks
    # everything but the kubernetes_sd_configs block, whose role and selector are read here.
    config = yaml.safe_load(_readme_block("kubernetes_sd_configs"))
    (scrape,) = config["scrape_configs"]
    (discovery,) = scrape.pop("kubernetes_sd_configs")
    scrape["static_configs"] = [{"targets": ["codat-exporter-0.codat-exporter:9781"]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    monitor = load_yaml(KUBERNETES / "base" / "servicemonitor.yaml")["spec"]
    (endpoint,) = monitor["endpoints"]

    # Act
    result = subprocess.run(
        [binary("promtool"), "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    # Check: valid, and scraping what the ServiceMonitor scrapes, as often
    assert result.returncode == 0, result.stdout + result.stderr
    assert discovery["role"] == "pod"
    assert discovery["namespaces"] == {"names": ["codat-freshness-exporter"]}
    (selector,) = discovery["selectors"]
    assert selector["label"] == "app.kubernetes.io/name=codat-freshness-exporter"
    (keep,) = [r for r in scrape["relabel_configs"] if r.get("action") == "keep"]
    assert keep["regex"] == "metrics"
    assert (scrape["scrape_interval"], scrape["scrape_timeout"]) == (
        endpoint["interval"], endpoint["scrapeTimeout"],
    )  # fmt: skip


# --- checkov -----------------------------------------------------------------------------------


def test_should_give_every_checkov_waiver_its_reason() -> None:
    # Prepare: .ci/run scans the overlays, the chart's renders and the Dockerfile with it
    text = (ROOT / ".checkov.yaml").read_text()
    config = yaml.safe_load(text)

    # Act: the comment right above each skipped check
    reasons = {
        check: re.search(rf"^  # {check}: (.+(?:\n  # (?!CKV_).+)*)\n  - {check}$", text, re.M)
        for check in config["skip-check"]
    }

    # Check: a reason of a sentence or more each; nothing downloaded, only our frameworks
    assert config["skip-check"], "no waivers: drop this test with the list"
    missing = [check for check, reason in reasons.items() if not reason or len(reason[1]) < 80]
    assert missing == []
    assert config["skip-download"] is True
    assert set(config["framework"]) == {"kubernetes", "dockerfile"}
