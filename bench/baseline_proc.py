"""The baseline: the same data exported the naive way, in a process of its own.

This is how exporters are commonly written, and what the issue compares against: long-lived
labelled ``prometheus_client`` Gauges in the default registry, set from each poll, served by
prometheus_client's own WSGI app (``make_wsgi_app``, which also does the gzip, at
``gzip.compress``'s default level 9) on its ``ThreadingWSGIServer``, as ``start_http_server``
does.

The data is fetched as the exporter fetches it, with the same number of requests in flight:
the company list (``GET /companies``, for ids and names), then per company
``GET /companies/{id}/dataStatus``, ``/syncSettings`` (the thresholds) and ``/connections``,
through ``CodatClient`` and interpreted by ``exporter.core.contract``. Families and labels are the
exporter's data families: timestamp, status, max_age, companies by status, connection status,
connections by platform, company up and last success, companies, poll duration, last poll,
and the age. (The exporter's own request counters and process metrics are left out; the
default registry's process, platform and GC collectors are in.)

The age is computed at scrape time, to be a fair comparison: a WSGI middleware sets every
age gauge to ``now - timestamp`` before handing /metrics to prometheus_client. The gauge
children are looked up once and kept, which is kinder to the baseline than calling
``.labels()`` on every scrape.

    python bench/baseline_proc.py --base-url http://127.0.0.1:PORT --concurrency 16
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from common import exporter_config, list_companies, send, serve_commands
from prometheus_client import REGISTRY, Gauge, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from exporter.codat.client import CodatClient
from exporter.config.sections import Config
from exporter.core.clock import SystemClock
from exporter.core.contract import (
    CONNECTION_STATUSES,
    KNOWN_STATUSES,
    NEVER_SYNCED,
    SYNC_SETTINGS,
    parse_connections,
    parse_data_statuses,
    parse_sync_schedules,
)
from exporter.core.contract import CONNECTIONS as CONNECTIONS_ROUTE
from exporter.core.families import (
    COMPANIES,
    COMPANIES_BY_STATUS,
    COMPANY_LAST_SUCCESS,
    COMPANY_UP,
    CONNECTION_STATUS,
    CONNECTIONS,
    LAST_POLL,
    LAST_SYNC_AGE,
    LAST_SYNC_TIMESTAMP,
    MAX_AGE,
    POLL_DURATION,
    STATUS,
    MetricSpec,
)
from exporter.core.snapshot import ConnectionState, DataTypeStatus
from exporter.exposition.instruments import ExporterMetrics

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def gauge(spec: MetricSpec) -> Gauge:
    return Gauge(spec.name, spec.help_text("30m"), spec.labels)


@dataclass(frozen=True)
class Fetched:
    company_id: str
    data_types: tuple[DataTypeStatus, ...] | None
    """None when the poll failed."""
    schedules: dict[str, float]
    connections: tuple[ConnectionState, ...]


class NaiveExporter:
    """Gauges in the default registry, updated in place by each poll."""

    def __init__(self, config: Config, names: dict[str, str]) -> None:
        self.config = config
        self.names = names
        self.client = CodatClient(config.codat, ExporterMetrics(), SystemClock())
        self.timestamp = gauge(LAST_SYNC_TIMESTAMP)
        self.age = gauge(LAST_SYNC_AGE)
        self.status = gauge(STATUS)
        self.max_age = gauge(MAX_AGE)
        self.by_status = gauge(COMPANIES_BY_STATUS)
        self.connection = gauge(CONNECTION_STATUS)
        self.by_platform = gauge(CONNECTIONS)
        self.up = gauge(COMPANY_UP)
        self.last_success = gauge(COMPANY_LAST_SUCCESS)
        self.companies = gauge(COMPANIES)
        self.poll_duration = gauge(POLL_DURATION)
        self.last_poll = gauge(LAST_POLL)
        self._ages: dict[tuple[str, str, str], tuple[Gauge, float]] = {}
        self._ages_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(config.codat.max_concurrency)

    def poll(self) -> tuple[int, int]:
        started = time.monotonic()
        deadline = started + self.config.poll.interval
        outcomes = list(self._executor.map(lambda i: self._fetch(i, deadline), self.names))
        counts: Counter[tuple[str, str]] = Counter()
        platforms: Counter[tuple[str, str]] = Counter()
        freshness = self.config.freshness
        failed = 0
        for fetched in outcomes:
            company_id, name = fetched.company_id, self.names[fetched.company_id]
            self.up.labels(company_id, name).set(0 if fetched.data_types is None else 1)
            for conn in fetched.connections:
                self.connection.labels(
                    company_id, name, conn.connection_id, conn.platform, conn.source_type,
                    conn.status,
                ).set(1)  # fmt: skip
                platforms[conn.platform, conn.status] += 1
            if fetched.data_types is None:
                failed += 1
                continue
            self.last_success.labels(company_id, name).set(time.time())
            for item in fetched.data_types:
                labels = (company_id, name, item.data_type)
                self.status.labels(*labels, item.status).set(1)
                hours = fetched.schedules.get(item.data_type)
                self.max_age.labels(*labels).set(
                    freshness.max_age_for(item.data_type, company_id, hours)
                )
                counts[item.data_type, item.status] += 1
                if item.last_successful_sync is not None:
                    self.timestamp.labels(*labels).set(item.last_successful_sync)
                    with self._ages_lock:
                        self._ages[labels] = (self.age.labels(*labels), item.last_successful_sync)
        for data_type in {data_type for data_type, _ in counts}:
            for status in (*KNOWN_STATUSES, NEVER_SYNCED):
                self.by_status.labels(data_type, status).set(counts[data_type, status])
        for platform in {platform for platform, _ in platforms}:
            for status in CONNECTION_STATUSES:
                self.by_platform.labels(platform, status).set(platforms[platform, status])
        self.companies.set(len(outcomes))
        self.poll_duration.set(time.monotonic() - started)
        self.last_poll.set(time.time())
        return len(outcomes) - failed, failed

    def _fetch(self, company_id: str, deadline: float) -> Fetched:
        client = self.client
        try:
            schedules = parse_sync_schedules(
                client.get_json(SYNC_SETTINGS, deadline, companyId=company_id)
            )
            connections = parse_connections(
                client.get_pages(CONNECTIONS_ROUTE, deadline, 100, companyId=company_id)
            )
            body = client.data_status(company_id, deadline)
            data_types = parse_data_statuses(body, self.config.data_types.selects)
        except Exception:
            return Fetched(company_id, None, {}, ())
        return Fetched(company_id, data_types, schedules, connections)

    def update_ages(self) -> None:
        now = time.time()
        with self._ages_lock:
            for child, timestamp in self._ages.values():
                child.set(now - timestamp)

    def app(self) -> WsgiApp:
        metrics_app = make_wsgi_app(REGISTRY)

        def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
            if environ.get("PATH_INFO") == "/metrics":
                self.update_ages()
            body: Iterable[bytes] = metrics_app(environ, start_response)
            return body

        return app


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    args = parser.parse_args()
    naive = NaiveExporter(
        exporter_config(args.base_url, args.concurrency), list_companies(args.base_url)
    )
    servers: list[ThreadingWSGIServer] = []

    def cycle(_: dict[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        succeeded, failed = naive.poll()
        return {"seconds": time.monotonic() - started, "succeeded": succeeded, "failed": failed}

    def serve(_: dict[str, Any]) -> dict[str, Any]:
        server = make_server(
            "127.0.0.1", 0, naive.app(), ThreadingWSGIServer, handler_class=QuietHandler
        )
        threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
        servers.append(server)
        return {"url": f"http://127.0.0.1:{server.server_port}"}

    try:
        send({"pid": os.getpid()})
        serve_commands({"cycle": cycle, "serve": serve})
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


if __name__ == "__main__":
    main()
