"""The simulated Codat served over real HTTP, speaking the contract in ../shared/codat.

Routes: ``GET /companies``, ``GET /companies/{companyId}/connections`` and
``GET /companies/{companyId}/data/history`` (paged, the newest pull operation first),
``GET /companies/{companyId}``, ``GET /companies/{companyId}/dataStatus``,
``GET /companies/{companyId}/data/history/{datasetId}`` (404 for an id that names no pull
operation of the company), ``GET /companies/{companyId}/syncSettings`` and
``POST /companies/{companyId}/data/queue/{dataType}``, and ``GET /integrations/{platformKey}``
(``isOfflineConnector`` of the integrations it knows). Every request must carry
``Authorization: Basic <base64(api key)>``; anything else gets Codat's 401 ErrorMessage.
Responses carry the X-Rate-Limit-* headers Codat sends. Faults injected into the fleet
are acted out per company before answering (``exporter.simulator.faults``). A company id in
a path is found in any case: it is a UUID. Paging and the ``tags`` filter follow
``exporter.simulator.conventions``; ``query`` and ``orderBy`` are accepted and not applied.
"""

from __future__ import annotations

import base64
import hmac
import json
import re
import socket
import threading
import uuid
from collections import Counter, deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from exporter.core.contract import (
    COMPANIES,
    COMPANY,
    CONNECTIONS,
    DATA_STATUS,
    PULL_OPERATION,
    QUEUE_DATA_TYPE,
    SYNC_SETTINGS,
)
from exporter.core.integrations import INTEGRATION
from exporter.simulator.conventions import (
    MalformedQuery,
    error_body,
    matches_tags,
    page_of,
    paging,
    tag_filter,
)
from exporter.simulator.faults import INTEGRATIONS, LISTING, act_out
from exporter.simulator.fleet import Fleet

DEFAULT_API_KEY = "demo-api-key"
"""The key it accepts unless told another (the demo's, and README's)."""
PULL_OPERATIONS = "/companies/{companyId}/data/history"
"""The history listing: the exporter reads one pull operation at a time, never this."""

PAGED = (COMPANIES, CONNECTIONS, PULL_OPERATIONS)

_ROUTES = (
    (re.compile(r"/companies/(?P<id>[^/]+)/data/history/(?P<dataset>[^/]+)"), PULL_OPERATION),
    (re.compile(r"/companies/(?P<id>[^/]+)/data/history"), PULL_OPERATIONS),
    (re.compile(r"/companies/(?P<id>[^/]+)/dataStatus"), DATA_STATUS),
    (re.compile(r"/companies/(?P<id>[^/]+)/connections"), CONNECTIONS),
    (re.compile(r"/companies/(?P<id>[^/]+)/syncSettings"), SYNC_SETTINGS),
    (re.compile(r"/companies/(?P<id>[^/]+)"), COMPANY),
    (re.compile(r"/companies"), COMPANIES),
)
_QUEUE = re.compile(r"/companies/(?P<id>[^/]+)/data/queue/(?P<type>[^/]+)")
_INTEGRATION = re.compile(r"/integrations/(?P<key>[^/]+)")
_RESET = b"\x01\x00\x00\x00\x00\x00\x00\x00"
"""SO_LINGER on with a zero timeout: closing the socket sends a TCP reset."""


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


class SimulatedCodat(ThreadingHTTPServer):
    """``SimulatedCodat(fleet, api_key).start()``; ``.url`` is the base URL to configure.

    ``sock``, a bound socket, is listened on instead of binding ``host`` and ``port``: a test
    can hold a port that refuses connections and later serve on it, without a moment in
    which another process could take it.
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, fleet: Fleet, api_key: str, host: str = "127.0.0.1", port: int = 0,
        latency: float = 0.0, *, sock: socket.socket | None = None,
    ) -> None:  # fmt: skip
        self.fleet = fleet
        self.expected_auth = "Basic " + base64.b64encode(api_key.encode()).decode()
        self.latency = latency
        """Added to every request, like the network and Codat's own processing."""
        self.requests: dict[str, int] = {}
        self.paths: Counter[str] = Counter()
        """Requests per path (without the query): shows which pull operations were read."""
        self.log: deque[tuple[float, str, str | None, dict[str, str]]] = deque(maxlen=100_000)
        """(clock time, route, company id, query) of recent requests, newest last."""
        self.on_queue: Callable[[str, str], None] | None = None
        """Called with (company id, data type) of each queue POST received, before it is
        answered: ``python -m exporter.simulator`` prints a line for each."""
        self.in_flight = 0
        self.peak_in_flight = 0
        """Most requests handled at once: shows the client's concurrency limit at work."""
        self._count_lock = threading.Lock()
        self.stopping = threading.Event()
        super().__init__((host, port), _Handler, bind_and_activate=sock is None)
        if sock is not None:
            self.socket.close()
            self.socket = sock
            self.server_address = sock.getsockname()
            self.server_activate()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), int(self.server_address[1])
        return f"http://{host}:{port}"

    def start(self) -> SimulatedCodat:
        self._thread = threading.Thread(
            target=self.serve_forever, args=(0.1,), name="simulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out and hung up is part of the simulation, not news

    def count(self, route: str, path: str) -> None:
        with self._count_lock:
            self.requests[route] = self.requests.get(route, 0) + 1
            self.paths[path] += 1

    def entered(self, delta: int) -> None:
        with self._count_lock:
            self.in_flight += delta
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def quota_headers(self) -> dict[str, str]:
        limit = 1000 * (1 + len(self.fleet.companies))
        used = sum(self.requests.values())
        now = datetime.fromtimestamp(self.fleet.clock.time(), UTC)
        reset = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        return {
            "X-Rate-Limit-Limit": str(limit),
            "X-Rate-Limit-Remaining": str(max(0, limit - used)),
            "X-Rate-Limit-Reset": reset.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }


class _Handler(BaseHTTPRequestHandler):
    """One connection's requests, each routed to the fleet's answer unless a fault takes it
    over: the handler is the ``Wire`` that ``faults.act_out`` plays a fault on."""

    server: SimulatedCodat
    protocol_version = "HTTP/1.1"
    server_version = "SimulatedCodat/1"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # see web.server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.entered(+1)
        try:
            self._get()
        finally:
            self.server.entered(-1)

    def _get(self) -> None:
        parts = urlsplit(self.path)
        integration = _INTEGRATION.fullmatch(parts.path)
        if integration is not None:
            self._integration(unquote(integration["key"]), parts.path)
            return
        route, company_id, dataset_id = self._route(parts.path)
        if route is None:
            self.send_json(404, error_body(404, "Resource not found"))
            return
        self.server.count(route, parts.path)
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        self.server.log.append((self.server.fleet.clock.time(), route, company_id, query))
        if self.server.latency:
            self.server.stopping.wait(self.server.latency)
        if not hmac.compare_digest(
            self.headers.get("Authorization", ""), self.server.expected_auth
        ):
            self.send_json(401, error_body(401, "Unauthorized"))
            return
        fleet = self.server.fleet
        company_id = None if company_id is None else fleet.stored_id(company_id)
        fault = fleet.take_fault(company_id or LISTING, route)
        if fault is not None and act_out(fault, self):
            return
        try:
            page, size = paging(query) if route in PAGED else (1, 0)
            tags = tag_filter(query.get("tags", "")) if route == COMPANIES else []
        except MalformedQuery as exc:
            self.send_json(400, error_body(400, str(exc)))
            return
        if company_id is not None and company_id not in fleet.companies:
            self.send_json(404, error_body(404, f"Company with ID {company_id} not found"))
            return
        if company_id is None:
            listing = [fleet.company_body(i) for i in sorted(fleet.companies)]
            selected = [c for c in listing if matches_tags(c["tags"], tags)]
            self.send_json(200, page_of(selected, page, size, COMPANIES, fleet.paging))
        elif route == DATA_STATUS:
            self.send_json(200, fleet.data_status(company_id))
        elif route == COMPANY:
            self.send_json(200, fleet.company_body(company_id))
        elif route == CONNECTIONS:
            path = f"/companies/{company_id}/connections"
            items = fleet.connections(company_id)
            self.send_json(200, page_of(items, page, size, path, fleet.paging))
        elif route == PULL_OPERATIONS:
            path = f"/companies/{company_id}/data/history"
            history = fleet.pull_operations(company_id)
            self.send_json(200, page_of(history, page, size, path, fleet.paging))
        elif route == PULL_OPERATION:
            dataset_id = dataset_id or ""
            found = fleet.pull_operation(company_id, dataset_id)
            if found is None:
                self.send_json(404, error_body(404, f"Dataset with ID {dataset_id[:64]} not found"))
            else:
                self.send_json(200, found)
        else:
            self.send_json(200, fleet.sync_settings(company_id))

    def _integration(self, key: str, path: str) -> None:
        """``GET /integrations/{platformKey}``: one integration, whatever the company."""
        self.server.count(INTEGRATION, path)
        self.server.log.append((self.server.fleet.clock.time(), INTEGRATION, None, {}))
        if not hmac.compare_digest(
            self.headers.get("Authorization", ""), self.server.expected_auth
        ):
            self.send_json(401, error_body(401, "Unauthorized"))
            return
        fault = self.server.fleet.take_fault(INTEGRATIONS, INTEGRATION)
        if fault is not None and act_out(fault, self):
            return
        found = self.server.fleet.integration(key)
        if found is None:
            self.send_json(404, error_body(404, f"Integration {key[:16]} not found"))
        else:
            self.send_json(200, found)

    def do_POST(self) -> None:
        """``POST /companies/{companyId}/data/queue/{dataType}``: queue a sync (a refresh)."""
        self.server.entered(+1)
        try:
            self._post()
        finally:
            self.server.entered(-1)

    def _post(self) -> None:
        parts = urlsplit(self.path)
        match = _QUEUE.fullmatch(parts.path)
        length = self.headers.get("Content-Length", "0")
        if length.isdigit() and int(length) <= 1 << 16:
            self.rfile.read(int(length))
        if match is None:
            self.send_json(404, error_body(404, "Resource not found"))
            return
        company_id, data_type = unquote(match["id"]), unquote(match["type"])
        self.server.count(QUEUE_DATA_TYPE, parts.path)
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        self.server.log.append((self.server.fleet.clock.time(), QUEUE_DATA_TYPE, company_id,
                                {**query, "dataType": data_type}))  # fmt: skip
        if self.server.on_queue is not None:
            self.server.on_queue(company_id, data_type)
        if not hmac.compare_digest(
            self.headers.get("Authorization", ""), self.server.expected_auth
        ):
            self.send_json(401, error_body(401, "Unauthorized"))
            return
        fleet = self.server.fleet
        company_id = fleet.stored_id(company_id)
        fault = fleet.take_fault(company_id, QUEUE_DATA_TYPE)
        if fault is not None and act_out(fault, self):
            return
        connection = query.get("connectionId")
        if connection is not None and not _is_uuid(connection):
            self.send_json(400, error_body(400, "connectionId must be a UUID"))
            return
        queued = fleet.queue(company_id, data_type)
        if queued is None:
            self.send_json(
                404, error_body(404, f"Company {company_id} has no data type {data_type}")
            )
        else:
            self.send_json(200, queued)

    def _route(self, path: str) -> tuple[str | None, str | None, str | None]:
        """(route template, company id, dataset id) of a path; Nones for no route."""
        for pattern, route in _ROUTES:
            match = pattern.fullmatch(path)
            if match:
                found = {k: unquote(v) for k, v in match.groupdict().items()}
                return route, found.get("id"), found.get("dataset")
        return None, None, None

    @property
    def stopping(self) -> threading.Event:
        return self.server.stopping

    def start_body(self, length: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def write(self, data: bytes) -> bool:
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            return False
        return True

    def close_after(self) -> None:
        self.close_connection = True

    def reset(self) -> None:
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
        self.close_connection = True
        self.connection.close()

    def send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_body(status, raw, "application/json; charset=utf-8", headers)

    def send_body(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in {**self.server.quota_headers(), **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
