"""docker-compose.yml and what it mounts, checked without a Docker engine (none runs in CI):
the files parse, every mounted path exists, Prometheus' config passes promtool, and the
services (Alertmanager included) find each other under the names and paths the files use."""

from __future__ import annotations

import re
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.promtools import (
    DASHBOARD_DIR,
    MONITORING_CONFIG,
    PROMETHEUS_CONFIG,
    ROOT,
    all_rules,
    binary,
    load_yaml,
)

COMPOSE = ROOT / "docker-compose.yml"
ALERTMANAGER_CONFIG = ROOT / "alertmanager" / "alertmanager.yml"
PROVISIONING = ROOT / "grafana" / "provisioning"


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = load_yaml(COMPOSE)
    return loaded


def bind_mounts(service: str) -> dict[str, Path]:
    """Container path -> host path, for the service's ``./host:/container[:ro]`` volumes."""
    mounts = {}
    for volume in compose()["services"][service].get("volumes", []):
        host, container = volume.split(":")[:2]
        if host.startswith("."):
            mounts[container] = (COMPOSE.parent / host).resolve()
    return mounts


def test_should_run_the_demo_exporter_prometheus_alertmanager_and_grafana() -> None:
    # Act
    services = compose()["services"]

    # Check
    assert set(services) == {"exporter", "prometheus", "alertmanager", "grafana"}
    assert services["exporter"]["build"] == "."
    assert services["exporter"]["command"] == ["--demo"]
    assert (ROOT / "Dockerfile").exists()
    for service in services.values():
        assert all(port.startswith("127.0.0.1:") for port in service.get("ports", []))


def test_should_mount_only_paths_that_exist_in_the_repository() -> None:
    for service in ("prometheus", "alertmanager", "grafana"):
        # Act
        mounts = bind_mounts(service)

        # Check
        assert mounts, service
        for container, host in mounts.items():
            assert host.exists(), f"{service}: {host} (mounted at {container}) is missing"
            assert ROOT in host.parents, f"{service}: {host} is outside the repository"


@pytest.mark.prometheus
def test_should_pass_promtool_check_config_with_the_rules_it_loads() -> None:
    # Prepare
    assert bind_mounts("prometheus")["/etc/prometheus"] == PROMETHEUS_CONFIG.parent
    command = compose()["services"]["prometheus"]["command"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in command

    # Act
    result = subprocess.run(
        [binary("promtool"), "check", "config", str(PROMETHEUS_CONFIG)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )

    # Check
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(all_rules())} rules found" in result.stdout


def test_should_scrape_the_exporter_service_under_the_job_the_alerts_select() -> None:
    # Prepare
    selector = load_yaml(MONITORING_CONFIG)["selector"]

    # Act
    (scrape,) = load_yaml(PROMETHEUS_CONFIG)["scrape_configs"]

    # Check
    assert f'job="{scrape["job_name"]}"' in selector
    assert scrape["static_configs"] == [{"targets": ["exporter:9781"]}]


def test_should_show_documented_scrape_configs_under_the_job_the_alerts_select() -> None:
    # Prepare: a user copies these snippets of README and docs/ as they are
    selector = load_yaml(MONITORING_CONFIG)["selector"]
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    text = "\n".join(page.read_text() for page in pages)
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)

    # Act
    jobs = [
        scrape["job_name"]
        for block in blocks
        if "scrape_configs:" in block
        for scrape in yaml.safe_load(textwrap.dedent(block))["scrape_configs"]
    ]

    # Check
    assert len(jobs) >= 2
    assert [job for job in jobs if f'job="{job}"' not in selector] == []


def test_should_send_alerts_to_the_compose_alertmanager_with_the_example_config() -> None:
    # Prepare
    service = compose()["services"]["alertmanager"]
    assert bind_mounts("alertmanager")["/etc/alertmanager"] == ALERTMANAGER_CONFIG.parent

    # Act
    (alertmanagers,) = load_yaml(PROMETHEUS_CONFIG)["alerting"]["alertmanagers"]

    # Check
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in service["command"]
    assert ALERTMANAGER_CONFIG.name == "alertmanager.yml"
    assert alertmanagers["static_configs"] == [{"targets": ["alertmanager:9093"]}]
    assert "alertmanager" in compose()["services"]["prometheus"]["depends_on"]


def test_should_provision_the_compose_prometheus_and_the_dashboards() -> None:
    # Prepare
    mounts = bind_mounts("grafana")
    assert mounts["/etc/grafana/provisioning"] == PROVISIONING

    # Act
    (datasource,) = load_yaml(PROVISIONING / "datasources" / "prometheus.yml")["datasources"]
    (provider,) = load_yaml(PROVISIONING / "dashboards" / "codat-freshness-exporter.yml")[
        "providers"
    ]

    # Check
    assert datasource["type"] == "prometheus" and datasource["isDefault"] is True
    assert datasource["url"] == "http://prometheus:9090"
    assert "--web.listen-address=:9090" in compose()["services"]["prometheus"]["command"]
    assert mounts[provider["options"]["path"]] == DASHBOARD_DIR
    home = compose()["services"]["grafana"]["environment"][
        "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"
    ]
    assert home == f"{provider['options']['path']}/fleet.json"
    assert (DASHBOARD_DIR / "fleet.json").exists()
