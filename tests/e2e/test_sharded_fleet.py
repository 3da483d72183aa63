"""The sharded deployment run the way a cluster would run it, without a cluster: three exporter
processes with the config of deploy/kubernetes/overlays/sharded as pods codat-exporter-0..2
read it, against one simulated Codat, scraped by one real Prometheus with the repository's
rules; and the one-replica overlay's config in a fourth process, scraped by a second
Prometheus, as the figures to match. The same again with the Helm chart's renders,
``replicas: 3`` (pods codat-freshness-exporter-0..2) and its defaults.

Each pod's shard is resolved from its hostname by the exporter's own config code
(``parse_config(hostname=...)``), and the process is started with that shard written into
its config, as ``shard: auto`` resolves it inside the pod. What differs from the cluster:
the Secret's file and the volume are temporary files, Codat is the simulator (its clock
stopped, so that the four exporters see the same fleet), and the per-replica rate limit is
lifted so that the test does not wait on it (tests/deploy/test_kubernetes.py checks the overlay's).

Everything listens on loopback ports of the system's choosing. The module is bounded by
DEADLINE.
"""

from __future__ import annotations

import copy
import math
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter.config.load import parse_config
from exporter.config.sharding import shard_of
from exporter.core.families import SCRAPE_METRICS
from exporter.simulator.fleet import Fleet
from exporter.simulator.server import SimulatedCodat
from tests.harness import API_KEY, LISTEN_ANYWHERE, FakeClock, Program
from tests.helm import CHART, template
from tests.manifests import Rendered, render
from tests.promtools import (
    RULES,
    binary,
    dashboards,
    load_yaml,
    logged_address,
    panels,
    substitute,
)

pytestmark = pytest.mark.prometheus

DEADLINE = 90.0
"""Seconds for everything: four exporters' first cycles, two Prometheus, their rules."""
COMPANIES, SEED = 60, 3
JOB = "codat-freshness-exporter"
CASES = ("sharded", "default")
"""The chart's values files (charts/codat-freshness-exporter/ci) of the two deployments."""
T = TypeVar("T")


def _within_deadline(started: float, what: str, probe: Callable[[], T | None]) -> T:
    last_error: Exception | None = None
    while time.monotonic() - started < DEADLINE:
        try:
            result = probe()
        except (requests.RequestException, AssertionError, KeyError) as exc:
            result, last_error = None, exc
        if result is not None:
            return result
        time.sleep(0.2)
    pytest.fail(f"not within {DEADLINE:.0f}s: {what} (last error: {last_error})")


@dataclass
class Prometheus:
    url: str
    config_file: Path
    config: dict[str, Any]

    def api(self, path: str, **params: Any) -> Any:
        response = requests.post(f"{self.url}/api/v1/{path}", data=params, timeout=10)
        body = response.json()
        assert body["status"] == "success", f"{path} {params}: {body}"
        return body["data"]

    def query(self, expr: str, at: float) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.api("query", query=expr, time=at)["result"]
        return result

    def answering(self, expr: str) -> list[dict[str, Any]] | None:
        """The result now, or None while it is empty."""
        return self.query(expr, time.time()) or None

    def load_rules(self) -> None:
        """Start evaluating the rules now: only once every target has been scraped, so that
        no evaluation sees part of the fleet and the averaged windows start alike."""
        self.config["rule_files"] = [str(RULES)]
        self.config_file.write_text(yaml.safe_dump(self.config))
        requests.post(f"{self.url}/-/reload", timeout=10).raise_for_status()


@dataclass
class Run:
    shard_urls: list[str]
    single_url: str
    sharded: Prometheus
    single: Prometheus
    fleet: Fleet
    pods: Rendered
    started: float


def _pod_config(rendered: Rendered, codat: SimulatedCodat, workdir: Path, hostname: str) -> Path:
    """The overlay's config.yaml as the pod ``hostname`` would run it, written to a file."""
    pod_dir = workdir / hostname
    pod_dir.mkdir()
    key_file = pod_dir / "api-key"
    key_file.write_text(API_KEY + "\n")
    raw = copy.deepcopy(rendered.config)
    raw["codat"].update(
        base_url=codat.url, api_key_file=str(key_file), max_requests_per_minute=60_000
    )
    raw["state"]["file"] = str(pod_dir / "state.json")
    raw["sharding"]["shard"] = parse_config(raw, environ={}, hostname=hostname).shard.index
    path = pod_dir / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _exporter(rendered: Rendered, config: Path) -> Program:
    """The container's arguments, its config path replaced by ``config``."""
    args = [
        f"--config.file={config}" if arg.startswith("--config.file=") else arg
        for arg in rendered.container["args"]
    ]
    return Program(*args, "--web.listen-address", LISTEN_ANYWHERE)


def _polled_once(url: str) -> bool | None:
    """Whether the exporter has finished its first full cycle."""
    text = requests.get(f"{url}/metrics", timeout=10).text
    families = {family.name: family for family in text_string_to_metric_families(text)}
    done = families.get("codat_exporter_last_poll_timestamp_seconds")
    return True if done and done.samples else None


def _prometheus(
    workdir: Path, name: str, targets: list[str]
) -> tuple[subprocess.Popen[bytes], Prometheus]:
    config: dict[str, Any] = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": JOB,
                "static_configs": [{"targets": [t.removeprefix("http://") for t in targets]}],
            }
        ],
    }
    config_file = workdir / f"{name}.yml"
    config_file.write_text(yaml.safe_dump(config))
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                binary("prometheus"),
                f"--config.file={config_file}",
                f"--storage.tsdb.path={workdir / name}",
                f"--web.listen-address={LISTEN_ANYWHERE}",
                "--web.enable-lifecycle",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = "http://" + logged_address(log, process, timeout=DEADLINE)
    return process, Prometheus(url, config_file, config)


def _renders(source: str) -> tuple[Rendered, Rendered]:
    """The three-replica and the one-replica deployments, from kustomize or the chart."""
    if source == "helm":
        chart_values = [load_yaml(CHART / "ci" / f"{case}-values.yaml") for case in CASES]
        sharded, single = (template(values) for values in chart_values)
        return sharded, single
    return render("sharded"), render("single")


@pytest.fixture(scope="module", params=["kustomize", "helm"])
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    sharded, single = _renders(request.param)
    started = time.monotonic()
    workdir = tmp_path_factory.mktemp("sharded")
    fleet = Fleet.generate(FakeClock(start=time.time()), companies=COMPANIES, seed=SEED)
    codat = SimulatedCodat(fleet, API_KEY).start()
    name = sharded.statefulset["metadata"]["name"]
    replicas = sharded.statefulset["spec"]["replicas"]
    configs = [
        _pod_config(sharded, codat, workdir, f"{name}-{ordinal}") for ordinal in range(replicas)
    ]
    programs = [_exporter(sharded, config) for config in configs]
    programs.append(_exporter(single, _pod_config(single, codat, workdir, f"{name}-single")))
    prometheus: list[subprocess.Popen[bytes]] = []
    try:
        urls = [program.url(timeout=DEADLINE) for program in programs]
        for url in urls:
            _within_deadline(
                started, f"{url} polled every company once", partial(_polled_once, url)
            )
        process, sharded_prometheus = _prometheus(workdir, "sharded", urls[:-1])
        prometheus.append(process)
        process, single_prometheus = _prometheus(workdir, "single", urls[-1:])
        prometheus.append(process)
        for server, count in ((sharded_prometheus, replicas), (single_prometheus, 1)):
            scraped = partial(server.answering, f"count(up == 1) == {count}")
            _within_deadline(started, f"{count} targets scraped", scraped)
            server.load_rules()
        yield Run(
            shard_urls=urls[:-1], single_url=urls[-1],
            sharded=sharded_prometheus, single=single_prometheus, fleet=fleet, pods=sharded,
            started=started,
        )  # fmt: skip
    finally:
        for process in prometheus:
            process.terminate()
            process.wait(timeout=15)
        for program in programs:
            program.process.terminate()
            program.process.wait(timeout=15)
        codat.stop()
        for program in programs:
            print(f"--- exporter {program.process.args!r}\n{program.stderr[-2000:]}")


Series = dict[frozenset[tuple[str, str]], float]


def _series(server: Prometheus, expr: str, at: float) -> Series:
    """Result labels (the scrape's instance left out) -> value."""
    return {
        frozenset((k, v) for k, v in sample["metric"].items() if k != "instance"): float(
            sample["value"][1]
        )
        for sample in server.query(expr, at)
    }


def test_should_poll_every_company_in_exactly_one_shard(run: Run) -> None:
    # Act: which companies each replica exports, as Prometheus scraped them
    at = time.time()
    by_instance: dict[str, set[str]] = {}
    for sample in run.sharded.query(f'codat_exporter_company_up{{job="{JOB}"}}', at):
        by_instance.setdefault(sample["metric"]["instance"], set()).add(
            sample["metric"]["company_id"]
        )
    shard_of_instance = {
        s["metric"]["instance"]: int(s["metric"]["shard"])
        for s in run.sharded.query("codat_exporter_shard_info", at)
    }

    # Check: three shards, disjoint, covering the fleet, each as jump hashing assigns
    assert sorted(shard_of_instance.values()) == [0, 1, 2]
    assert sum(len(ids) for ids in by_instance.values()) == COMPANIES
    assert set().union(*by_instance.values()) == set(run.fleet.companies)
    for instance, ids in by_instance.items():
        assert ids, f"{instance} polls nothing"
        assert {shard_of(c, 3) for c in ids} == {shard_of_instance[instance]}


def test_should_sum_the_shards_to_the_one_replica_figures(run: Run) -> None:
    # Prepare
    at = time.time()

    for expr in (
        f'sum(codat_exporter_companies{{job="{JOB}"}})',
        f'sum by (data_type, status) (codat_data_type_companies{{job="{JOB}"}})',
        f'sum by (platform, status) (codat_connections{{job="{JOB}"}})',
    ):
        # Act
        sharded, single = (_series(server, expr, at) for server in (run.sharded, run.single))

        # Check
        assert sharded == single, expr
        assert sharded, expr
    assert _series(run.single, f'sum(codat_exporter_companies{{job="{JOB}"}})', at) == {
        frozenset(): COMPANIES
    }


def _same(expr: str, sharded: float, single: float) -> bool:
    """Equal, but for what the exporter computes at scrape time (ages, and what is counted
    from them): each Prometheus scraped its exporters at its own moments, a second or so
    apart. Every age in the fleet dashboard's tables is hours at least, so 0.1 % is a few
    seconds; a count of pairs by age may differ by the one or two pairs that crossed a
    histogram bucket's bound in between."""
    if any(spec.name in expr for spec in SCRAPE_METRICS):
        return math.isclose(sharded, single, rel_tol=1e-3, abs_tol=2.0)
    return math.isclose(sharded, single, rel_tol=1e-9)


def test_should_answer_every_fleet_dashboard_query_alike_sharded_or_not(run: Run) -> None:
    # Prepare: every company and data type selected, as the dashboard opens
    fleet = dashboards()["fleet.json"]
    chosen = {"job": JOB, "datasource": "prometheus", "company": ".*", "data_type": ".*"}
    targets = [
        (panel["title"], target["refId"], substitute(target["expr"], chosen))
        for panel in panels(fleet)
        for target in panel["targets"]
    ]
    longest = "job:codat_pairs_stale:ratio_avg3d"
    for server in (run.sharded, run.single):
        _within_deadline(run.started, "the rules evaluated", partial(server.answering, longest))
    at = time.time()

    # Act
    answers: dict[tuple[str, str], tuple[str, Series, Series]] = {
        (title, ref): (expr, _series(run.sharded, expr, at), _series(run.single, expr, at))
        for title, ref, expr in targets
    }

    # Check: the same series with the same values, and data behind most of them
    differing = [
        key
        for key, (expr, sharded, single) in answers.items()
        if sharded.keys() != single.keys()
        or not all(_same(expr, sharded[labels], single[labels]) for labels in sharded)
    ]
    assert differing == [], {key: answers[key] for key in differing}
    answered = [key for key, (_, sharded, _) in answers.items() if sharded]
    assert len(answered) >= 25, len(targets)


def test_should_answer_the_kubelets_probes_on_every_pod(run: Run) -> None:
    # Prepare
    container = run.pods.container
    paths = [container[f"{kind}Probe"]["httpGet"]["path"] for kind in ("liveness", "readiness")]

    for url in run.shard_urls:
        # Act
        codes = [requests.get(f"{url}{path}", timeout=10).status_code for path in paths]

        # Check
        assert codes == [200, 200], url
