"""The Helm chart, charts/codat-freshness-exporter, rendered by Helm's own code (tests/helm.py)
with each of its ci/*-values.yaml as a user's values, and checked without a cluster as the
kustomize manifests are: every object against Kubernetes' and the operator's schemas, every
namespaced object in the release's namespace, the rules and dashboards exactly the generated
ones, and each pod's config as the exporter reads it.

tests/e2e/test_sharded_fleet.py runs the chart's three-replica render as three exporter processes.
"""

from __future__ import annotations

import base64
import math
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter import __version__
from exporter.config.listen import DEFAULT_PORT
from exporter.poll import sizing
from tests.helm import CHART, NAMESPACE, RELEASE, lint_errors, main, sdk, template
from tests.manifests import (
    KUBERNETES_VERSIONS,
    WEBHOOK_SECRET,
    Rendered,
    misplaced,
    pod_config,
    render,
    stated_fleet,
    validation_errors,
)
from tests.promtools import (
    DASHBOARD_DIR,
    MONITORING_CONFIG,
    ROOT,
    RULE_TESTS,
    RULES,
    alert_rules,
    binary,
    load_yaml,
    tailored_unit_tests,
)

VALUES = {path.name.removesuffix("-values.yaml"): path for path in (CHART / "ci").glob("*.yaml")}
"""The values matrix: what each user of the chart may set, one file per case."""
ELSEWHERE = "finance"
"""A namespace other than the chart's default, to tell .Release.Namespace from a fixed one."""
SECRET_DIR = "/run/secrets/codat-freshness-exporter"


def values(case: str) -> dict[str, Any]:
    loaded: dict[str, Any] = load_yaml(VALUES[case])
    return loaded


@pytest.fixture(scope="module")
def rendered() -> dict[str, Rendered]:
    return {case: template(values(case)) for case in VALUES}


def _render_error(overrides: dict[str, Any]) -> str:
    """The message of a render that must fail."""
    with pytest.raises(sdk().HelmError) as failure:
        template(overrides)
    return str(failure.value)


# --- lint and validation -----------------------------------------------------------------------


def test_should_cover_every_case_of_the_issue_in_the_values_matrix() -> None:
    assert set(VALUES) == {
        "default", "existing-secret", "sharded", "webhooks", "no-persistence",
        "monitoring-off", "monitoring-labels", "alerts", "links",
    }  # fmt: skip


@pytest.mark.parametrize("case", sorted(VALUES))
def test_should_pass_helm_lint_strict(case: str) -> None:
    # Act
    errors = lint_errors(values(case))

    # Check
    assert errors == []


def test_should_refuse_to_install_without_an_api_key_naming_the_value() -> None:
    # Act (helm lint only warns of a missing required value: install is what refuses it)
    message = _render_error({})

    # Check
    assert "apiKey: Codat's API key is required (--set-file apiKey=./codat-api-key)" in message


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_should_validate_every_object_of_every_render(
    rendered: dict[str, Rendered], version: str
) -> None:
    for case, chart in rendered.items():
        for item in chart.objects:
            # Act
            errors = validation_errors(item, version)

            # Check
            assert errors == [], f"{case}: {item['kind']} {item['metadata']['name']} ({version})"


@pytest.mark.parametrize("case", sorted(VALUES))
def test_should_put_every_namespaced_object_in_the_releases_namespace(case: str) -> None:
    # Prepare
    dashboards_namespace = values(case).get("dashboards", {}).get("namespace")

    # Act
    chart = template(values(case), namespace=ELSEWHERE)
    dashboards = [item for item in chart.objects if "-dashboard-" in item["metadata"]["name"]]
    others = [item for item in chart.objects if item not in dashboards]

    # Check: the dashboards where Grafana's sidecar is told to look, if not the release's
    assert misplaced(others, ELSEWHERE) == []
    assert misplaced(dashboards, dashboards_namespace or ELSEWHERE) == []


# --- what a new user gets ----------------------------------------------------------------------


def test_should_install_the_exporter_its_monitor_rules_and_dashboards_with_only_an_api_key(
    rendered: dict[str, Rendered], tmp_path: Path
) -> None:
    # Prepare
    chart = rendered["default"]
    assert values("default") == {"apiKey": "test-api-key"}

    # Act
    kinds = sorted(item["kind"] for item in chart.objects)
    config = pod_config(chart, tmp_path, f"{RELEASE}-0")
    secret = chart.one("Secret")

    # Check: every part, and a config the exporter takes, reading the key from the Secret
    assert kinds == sorted(
        ["ConfigMap"] * 4 + [
            "NetworkPolicy", "PodDisruptionBudget", "PrometheusRule", "Secret", "Service",
            "ServiceAccount", "ServiceMonitor", "StatefulSet",
        ]
    )  # fmt: skip
    assert chart.statefulset["metadata"]["name"] == RELEASE
    assert config.codat.api_key == "test-api-key"
    assert secret["data"].keys() == {"api-key"}
    assert base64.b64decode(secret["data"]["api-key"]) == b"test-api-key"
    assert chart.config["codat"]["api_key_file"] == f"{SECRET_DIR}/api-key"
    assert config.companies.discover and config.state.file


def test_should_evaluate_exactly_the_repositorys_rules_templates_and_all(
    rendered: dict[str, Rendered],
) -> None:
    # Act
    rule = rendered["default"].one("PrometheusRule")
    annotations = [a for group in rule["spec"]["groups"] for r in group["rules"]
                   for a in r.get("annotations", {}).values()]  # fmt: skip

    # Check: Helm evaluated none of the alerts' own templates
    assert rule["spec"] == load_yaml(RULES)
    assert any("{{ $labels.company_id }}" in text for text in annotations)
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_should_leave_out_disabled_alerts_and_label_the_rest_as_the_values_say(
    rendered: dict[str, Rendered], tmp_path: Path
) -> None:
    # Prepare
    tailoring = values("alerts")["prometheusRule"]
    off = {name for name, own in tailoring["alerts"].items() if own.get("enabled") is False}
    extra = {rule["alert"]: dict(tailoring["extraLabels"]) for rule in alert_rules()}
    extra["CodatExporterDown"] = {"team": "platform", "pager": "yes"}

    # Act
    rules = tmp_path / "tailored.rules.yml"
    rules.write_text(yaml.safe_dump(rendered["alerts"].one("PrometheusRule")["spec"]))
    tests = tailored_unit_tests(RULE_TESTS.glob("*.test.yml"), rules, extra, tmp_path)
    result = subprocess.run(
        [binary("promtool"), "test", "rules", *map(str, tests)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip

    # Check: the others, relabelled, pass their unit tests; recording rules all kept
    names = {rule["alert"] for rule in alert_rules(rules)}
    assert names == {rule["alert"] for rule in alert_rules()} - off and off
    assert result.returncode == 0, result.stdout + result.stderr
    recorded = [
        r["record"] for g in load_yaml(rules)["groups"] for r in g["rules"] if "record" in r
    ]
    assert recorded == [r["record"] for g in load_yaml(RULES)["groups"] for r in g["rules"]
                        if "record" in r]  # fmt: skip


def test_should_link_alerts_and_dashboards_where_the_values_say(
    rendered: dict[str, Rendered],
) -> None:
    # Prepare
    links = values("links")["links"]

    # Act
    rule = rendered["links"].one("PrometheusRule")
    annotations = {
        (r["alert"], key): text
        for group in rule["spec"]["groups"] for r in group["rules"] if "alert" in r
        for key, text in r.get("annotations", {}).items()
    }  # fmt: skip
    fleet = next(
        text for m in rendered["links"].of_kind("ConfigMap")
        for name, text in m["data"].items() if name == "fleet.json"
    )  # fmt: skip

    # Check: no alert or dashboard sends anyone to localhost; each link is the value's, with
    # what the alert adds after it; the same rules otherwise
    assert not [key for key, text in annotations.items() if "localhost" in text]
    assert "localhost" not in fleet and f"{links['statusPage']}/" in fleet
    status = {text for (_, key), text in annotations.items() if key == "status_page"}
    assert status and all(text.startswith(f"{links['statusPage']}/?") for text in status)
    assert f"{links['statusPage']}/?company={{{{ $labels.company_id | urlquery }}}}" in status
    dashboards = [text for (_, key), text in annotations.items() if key == "dashboard_url"]
    assert dashboards and all(t.startswith("https://grafana.example.com/d/") for t in dashboards)
    runbooks = {alert: text for (alert, key), text in annotations.items() if key == "runbook_url"}
    assert runbooks == {alert: f"{links['runbook']}#{alert.lower()}" for alert in runbooks}
    assert len(runbooks) == len(alert_rules())


def test_should_refuse_an_alert_the_rules_do_not_have() -> None:
    # Act
    message = _render_error(
        {"apiKey": "k", "prometheusRule": {"alerts": {"CodatDataTypeStal": {"enabled": False}}}}
    )

    # Check
    assert "prometheusRule.alerts.CodatDataTypeStal: no such alert" in message
    assert "CodatDataTypeStale" in message


def test_should_give_grafanas_sidecar_every_dashboard_byte_for_byte_in_its_folder(
    rendered: dict[str, Rendered],
) -> None:
    # Prepare
    files = {path.name: path.read_text() for path in DASHBOARD_DIR.glob("*.json")}

    for case, labels, folder in (
        ("default", {"grafana_dashboard": "1"}, "Codat freshness"),
        ("monitoring-labels", {"grafana_dashboard": "1", "team": "finance-ops"}, "Finance / Codat"),
    ):
        # Act
        maps = [
            m for m in rendered[case].of_kind("ConfigMap") if "-dashboard-" in m["metadata"]["name"]
        ]

        # Check
        assert {name: text for m in maps for name, text in m["data"].items()} == files
        for config_map in maps:
            assert config_map["metadata"]["labels"].items() >= labels.items()
            assert config_map["metadata"]["annotations"] == {"grafana_folder": folder}


def test_should_label_the_monitor_and_the_rule_for_the_prometheus_that_selects_them(
    rendered: dict[str, Rendered],
) -> None:
    # Act
    chart = rendered["monitoring-labels"]
    monitor, rule = chart.one("ServiceMonitor"), chart.one("PrometheusRule")
    (endpoint,) = monitor["spec"]["endpoints"]

    # Check
    assert (
        monitor["metadata"]["labels"].items()
        >= {"release": "prometheus", "team": "finance-ops"}.items()
    )
    assert (
        rule["metadata"]["labels"].items()
        >= {"release": "prometheus", "role": "alert-rules"}.items()
    )
    assert (endpoint["interval"], endpoint["scrapeTimeout"]) == ("30s", "20s")


def test_should_leave_out_what_a_cluster_without_the_operator_cannot_take(
    rendered: dict[str, Rendered],
) -> None:
    # Act
    kinds = {item["kind"] for item in rendered["monitoring-off"].objects}
    maps = [m["metadata"]["name"] for m in rendered["monitoring-off"].of_kind("ConfigMap")]

    # Check
    assert kinds == {"ConfigMap", "Secret", "Service", "ServiceAccount", "StatefulSet"}
    assert maps == [f"{RELEASE}-config"]


def test_should_scrape_every_pod_under_the_job_the_alerts_select(
    rendered: dict[str, Rendered],
) -> None:
    # Prepare
    selector = load_yaml(MONITORING_CONFIG)["selector"]

    for case in ("default", "sharded", "webhooks"):
        chart = rendered[case]
        monitor = chart.one("ServiceMonitor")
        pod_labels = chart.statefulset["spec"]["template"]["metadata"]["labels"]

        # Act: the Services the ServiceMonitor selects, and the job label it gives them
        wanted = monitor["spec"]["selector"]["matchLabels"].items()
        (service,) = [
            s for s in chart.of_kind("Service") if s["metadata"]["labels"].items() >= wanted
        ]
        job = service["metadata"]["labels"][monitor["spec"]["jobLabel"]]

        # Check: the headless Service of the StatefulSet, every pod, the metrics port
        assert f'job="{job}"' in selector
        assert service["metadata"]["name"] == chart.statefulset["spec"]["serviceName"]
        assert service["spec"]["clusterIP"] == "None"
        assert service["spec"]["publishNotReadyAddresses"] is True
        assert service["spec"]["selector"].items() <= pod_labels.items()
        assert service["spec"]["ports"] == [
            {"name": "metrics", "port": DEFAULT_PORT, "targetPort": "metrics"}
        ]
        assert {"name": "metrics", "containerPort": DEFAULT_PORT} in chart.container["ports"]
        assert {"sourceLabels": ["__meta_kubernetes_pod_name"], "targetLabel": "instance"} in (
            monitor["spec"]["endpoints"][0]["relabelings"]
        )


# --- replicas, the rate limit and the config ---------------------------------------------------


@pytest.mark.parametrize("replicas", [1, 2, 3, 7])
def test_should_derive_the_shards_and_each_replicas_share_of_the_rate_limit(
    replicas: int, tmp_path: Path
) -> None:
    # Act
    chart = template({"apiKey": "k", "replicas": replicas})
    names = [f"{RELEASE}-{ordinal}" for ordinal in range(replicas)]
    configs = [pod_config(chart, tmp_path, name) for name in names]

    # Check: every shard once, one number changed, the fleet within the 600 a minute
    assert chart.statefulset["spec"]["replicas"] == replicas
    assert [(c.shard.index, c.shard.count) for c in configs] == [
        (i, replicas) for i in range(replicas)
    ]
    assert {c.codat.max_requests_per_minute for c in configs} == {600 // replicas}
    assert 600 - replicas < replicas * configs[0].codat.max_requests_per_minute <= 600


def test_should_fit_the_fleet_the_values_state_in_every_render_without_a_warning(
    rendered: dict[str, Rendered], tmp_path: Path
) -> None:
    # Prepare: the size values.yaml states for its config
    stated = (CHART / "values.yaml").read_text()

    for case, chart in rendered.items():
        replicas = chart.statefulset["spec"]["replicas"]

        # Act: the start-up estimate of each render's pod config, for that fleet
        fleet = stated_fleet(pod_config(chart, tmp_path, f"{RELEASE}-0"), stated)

        # Check: no warning, within the sizing table's headroom, the room it claims (with
        # one replica), and each replica's share of the fleet within its memory request
        assert fleet.warning is None, case
        assert fleet.sized, case
        assert fleet.room is not None
        if replicas == 1:
            assert abs(fleet.largest - fleet.room) <= 0.05 * fleet.room, (case, fleet.largest)
        request = chart.container["resources"]["requests"]["memory"]
        assert request.endswith("Mi")
        share = sizing.memory_mb(math.ceil(fleet.companies / replicas))
        assert int(request.removesuffix("Mi")) * 2**20 / 1e6 >= share, case
    assert {c.statefulset["spec"]["replicas"] for c in rendered.values()} >= {1, 3}


def test_should_change_the_pods_checksum_when_the_config_changes() -> None:
    # Act
    annotations = [
        template({"apiKey": "k", **more}).statefulset["spec"]["template"]["metadata"]["annotations"]
        for more in ({}, {"replicas": 2}, {"config": {"poll": {"interval": "10m"}}}, {})
    ]

    # Check: a changed config rolls the pods; the same one does not
    checksums = [a["checksum/config"] for a in annotations]
    assert len(set(checksums[:3])) == 3
    assert checksums[0] == checksums[3]


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"sharding": {"shards": 3}}, "config.sharding"),
        ({"codat": {"max_requests_per_minute": 1000}}, "config.codat.max_requests_per_minute"),
        ({"codat": {"api_key": "k"}}, "config.codat.api_key"),
        ({"state": {"file": ""}}, "config.state"),
        ({"webhooks": {"enabled": True}}, "config.webhooks"),
    ],
)
def test_should_refuse_a_config_key_the_chart_derives(config: dict[str, Any], key: str) -> None:
    # Act
    message = _render_error({"apiKey": "k", "config": config})

    # Check
    assert f"{key}: derived by the chart" in message


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"replicas": 0}, "replicas: at least 1"),
        ({"replicas": 3, "maxRequestsPerMinute": 2}, "maxRequestsPerMinute: 2 shared by 3"),
        ({"webhooks": {"enabled": True}}, "webhooks.secret: the signing secret is required"),
    ],
)
def test_should_refuse_values_that_cannot_run(overrides: dict[str, Any], message: str) -> None:
    assert message in _render_error({"apiKey": "k", **overrides})


# --- the pods ----------------------------------------------------------------------------------


def test_should_mount_the_api_key_from_the_chart_s_secret_or_the_user_s(
    rendered: dict[str, Rendered],
) -> None:
    for case, secret_name in (("default", RELEASE), ("existing-secret", "codat-api-key")):
        chart = rendered[case]

        # Act
        mount = chart.mount(chart.config["codat"]["api_key_file"])
        secret = chart.volume(mount["name"])["secret"]

        # Check: a file only the exporter's group reads; no Secret made for a user's own
        assert secret["secretName"] == secret_name and mount["readOnly"]
        assert secret["items"] == [{"key": "api-key", "path": "api-key"}]
        assert secret["defaultMode"] == 0o440
        assert len(chart.of_kind("Secret")) == (case == "default")
        assert "env" not in chart.container and "envFrom" not in chart.container


def test_should_receive_webhooks_on_their_own_service_and_port(
    rendered: dict[str, Rendered], tmp_path: Path
) -> None:
    # Prepare
    chart = rendered["webhooks"]

    # Act
    config = pod_config(chart, tmp_path, f"{RELEASE}-0")
    service = chart.one("Service", f"{RELEASE}-webhooks")
    secret = chart.volume(chart.mount(chart.config["webhooks"]["secret_file"])["name"])["secret"]
    policy = chart.one("NetworkPolicy")["spec"]["ingress"]

    # Check: the listener the config opens is the port the Service routes to and the policy opens
    assert config.webhooks.enabled and config.webhooks.secret == WEBHOOK_SECRET
    port = int(config.webhooks.listen_address.rsplit(":", 1)[1])
    assert {"name": "webhooks", "containerPort": port} in chart.container["ports"]
    assert service["spec"]["ports"] == [
        {"name": "webhooks", "port": port, "targetPort": "webhooks"}
    ]
    assert secret["items"] == [
        {"key": "api-key", "path": "api-key"}, {"key": "webhook-secret", "path": "webhook-secret"},
    ]  # fmt: skip
    assert [[p["port"] for p in rule["ports"]] for rule in policy] == [["metrics"], ["webhooks"]]
    assert "webhooks" not in rendered["default"].config


def test_should_keep_the_state_file_on_each_pods_volume_or_an_empty_dir(
    rendered: dict[str, Rendered],
) -> None:
    for case, persistent in (("default", True), ("no-persistence", False)):
        chart = rendered[case]

        # Act
        mount = chart.mount(chart.config["state"]["file"])
        claims = chart.statefulset["spec"].get("volumeClaimTemplates", [])
        volumes = [v["name"] for v in chart.statefulset["spec"]["template"]["spec"]["volumes"]]

        # Check: writable, where the config writes it
        assert not mount.get("readOnly")
        assert Path(chart.config["state"]["file"]).parent == Path(mount["mountPath"])
        if persistent:
            (claim,) = claims
            assert claim["metadata"]["name"] == mount["name"] not in volumes
            assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
        else:
            assert claims == []
            assert "emptyDir" in chart.volume(mount["name"])


def test_should_run_the_pods_as_the_kustomize_base_does(rendered: dict[str, Rendered]) -> None:
    # Prepare: what tests/deploy/test_kubernetes.py checks of the base, against the image and bench/
    base = render("single")

    # Act
    def pod(of: Rendered) -> dict[str, Any]:
        spec = of.statefulset["spec"]["template"]["spec"]
        container = of.container
        return {
            "pod": {k: spec[k] for k in ("securityContext", "automountServiceAccountToken",
                                         "enableServiceLinks", "terminationGracePeriodSeconds")},
            "container": {k: container[k] for k in ("args", "resources", "securityContext",
                                                    "startupProbe", "livenessProbe",
                                                    "readinessProbe", "imagePullPolicy")},
        }  # fmt: skip

    # Check: the same pod, reading the same config
    assert pod(rendered["default"]) == pod(base)
    assert rendered["default"].config == base.config
    assert rendered["default"].statefulset["spec"]["podManagementPolicy"] == "Parallel"


def test_should_pull_the_chart_s_version_or_the_pinned_digest(
    rendered: dict[str, Rendered],
) -> None:
    # Act
    default = rendered["default"].container["image"]
    pinned = rendered["monitoring-labels"].container["image"]

    # Check
    assert default == f"codat-freshness-exporter:{__version__}"
    digest = values("monitoring-labels")["image"]["digest"]
    assert pinned == f"registry.example.com/codat-freshness-exporter:{__version__}@{digest}"


def test_should_version_the_chart_as_the_exporter() -> None:
    # Act
    chart = load_yaml(CHART / "Chart.yaml")

    # Check
    assert chart["version"] == chart["appVersion"] == __version__


# --- README ------------------------------------------------------------------------------------


def test_should_install_what_readmes_helm_command_installs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: README's command, run where it says, with a key file of the test's
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"^helm install .*?(?<!\\)$", readme, re.M | re.S)
    assert command, "README shows no helm install"
    words = shlex.split(command[0].replace("\\\n", " "))
    (tmp_path / "codat-api-key").write_text("readme-api-key\n")
    (tmp_path / "charts").symlink_to(ROOT / "charts")
    monkeypatch.chdir(tmp_path)

    # Act
    code = main(words[1:])
    objects = [item for item in yaml.safe_load_all(capsys.readouterr().out) if item]

    # Check: the whole chart, in the namespace README names, the key from the file
    assert code == 0
    chart = Rendered("README", objects)
    assert words[words.index("--namespace") + 1] == NAMESPACE
    assert misplaced(objects, NAMESPACE) == []
    assert base64.b64decode(chart.one("Secret")["data"]["api-key"]) == b"readme-api-key\n"
    assert {"StatefulSet", "ServiceMonitor", "PrometheusRule"} <= {o["kind"] for o in objects}


def test_should_lint_from_the_command_line_as_ci_does(tmp_path: Path) -> None:
    # Prepare: a copy of the chart with a template that cannot render
    shutil.copytree(CHART, tmp_path / "chart")
    (tmp_path / "chart" / "templates" / "broken.yaml").write_text("x: {{ .Values.nope.deeper }}\n")

    # Act
    results = [
        subprocess.run(
            [sys.executable, "-m", "tests.helm", "lint", "--strict", str(chart)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        for chart in (CHART, tmp_path / "chart")
    ]

    # Check
    assert results[0].returncode == 0, results[0].stderr
    assert results[1].returncode == 1
    assert "broken.yaml" in results[1].stderr and "nil pointer" in results[1].stderr
