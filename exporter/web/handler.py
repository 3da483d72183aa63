"""How the exporter answers one request, once the front (``exporter.web.front``) has read its
head: the paths and the methods each takes, basic auth, and each path's answer.

``/metrics`` concatenates the current snapshot's pre-rendered text, the ages computed for
this instant, and the exporter's own registry (requests, latencies, process), streamed in
chunks; ``/`` is the status page (``exporter.web.statuspage``) and ``/api/v1/status`` its
JSON (``exporter.web.statusapi``); ``/-/healthy`` and ``/-/ready`` say whether the process
runs and whether it serves data; ``POST /webhooks/codat``, when enabled, hands Codat's
deliveries to ``exporter.codat.webhooks``.

Basic auth (``--web.config.file``) covers every path except the webhook endpoint, which
Codat signs instead, and the health endpoints when ``--web.health-without-auth`` says so.
Auth comes first: without credentials a request on such a path gets 401 whatever its
method; then a path that exists, but not for the method, gets 405 and says which it takes::

    HTTP/1.1 405 Method Not Allowed
    Allow: GET, HEAD
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol

from exporter import __version__
from exporter.codat.webhooks.events import OTHER
from exporter.codat.webhooks.receiver import WebhookReceiver
from exporter.config.sections import StatusPageConfig
from exporter.config.sharding import Shard
from exporter.core.clock import Clock
from exporter.core.phrases import plural
from exporter.exposition.store import SnapshotStore
from exporter.exposition.text import CONTENT_TYPE
from exporter.web import statusapi, statuspage
from exporter.web.basicauth import BASIC_CHALLENGE
from exporter.web.connection import Connection
from exporter.web.filters import FilterError
from exporter.web.status import Answer, FleetStatus, for_request
from exporter.web.statusapi import JSON_TYPE, STATUS_API_PATH
from exporter.web.webconfig import WebConfig

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/codat"
HEALTH_PATHS = ("/-/healthy", "/-/ready")
REQUEST_TIMEOUT = 30.0
"""Seconds a served request's socket may stay silent (per read or write), and may take to
send a whole webhook body: a stalled or trickling client must not hold a thread."""
GET_METHODS = "GET, HEAD"


class Listener(Protocol):
    """What a request needs of the listener that took it (``exporter.web.server``): what it
    serves, how it is protected, and the exposition to answer from."""

    store: SnapshotStore
    clock: Clock
    webhooks: WebhookReceiver | None
    webhook_max_bytes: int
    serve_metrics: bool
    body_timeout: float
    status_page: StatusPageConfig
    shard: Shard

    @property
    def web_config(self) -> WebConfig: ...

    def allowed_methods(self, path: str) -> str | None: ...

    def needs_auth(self, path: str) -> bool: ...

    def metrics_pieces(self, compress: bool) -> Iterator[bytes]: ...

    def make_way(self) -> None: ...


def accepts_gzip(header: str | None) -> bool:
    """Whether an Accept-Encoding header takes gzip: listed, and not with a zero weight.

    >>> accepts_gzip("gzip"), accepts_gzip("br, GZIP;Q=0.5"), accepts_gzip("gzip;q=0.000")
    (True, True, False)
    >>> accepts_gzip("gzip; Q=0"), accepts_gzip("gzip;q=0.0000"), accepts_gzip("identity")
    (False, False, False)
    """
    for token in (header or "").split(","):
        name, _, params = token.strip().partition(";")
        if name.strip().lower() != "gzip":
            continue
        for param in params.split(";"):
            key, _, value = param.replace(" ", "").lower().partition("=")
            if key == "q":
                try:
                    return float(value) > 0
                except ValueError:
                    return False
        return True
    return False


class Handler(BaseHTTPRequestHandler):
    """Answers one request of a ``Connection``, whose head the front has read: in a
    thread, or in the front itself for what it answers at once."""

    server: Listener  # type: ignore[assignment]  # the base class says a socketserver
    request: Connection
    protocol_version = "HTTP/1.1"
    server_version = f"codat-freshness-exporter/{__version__}"
    timeout = REQUEST_TIMEOUT

    def __init__(self, connection: Connection, server: Listener) -> None:
        """Answers at once, as socketserver's handlers do. Nothing is closed after: the
        front closes the connection or waits for its next request."""
        self.request, self.client_address, self.server = connection, connection.address, server
        self.connection = connection.sock
        self.rfile = self.wfile = connection
        self.handle()

    def handle(self) -> None:
        """One request; the next one on a kept-alive connection is read by the front."""
        self.close_connection = True
        self.handle_one_request()

    def _authorized(self, path: str) -> bool:
        if not self.server.needs_auth(path):
            return True
        if self.server.web_config.authorized(self.headers.get("Authorization")):
            return True
        self._send(401, b"Unauthorized.\n", headers={"WWW-Authenticate": BASIC_CHALLENGE})
        return False

    def _not_allowed(self, path: str) -> bool:
        """Answer 405 when ``path`` exists but not for this method; True if answered."""
        allowed = self.server.allowed_methods(path)
        if allowed is None or self.command in allowed.split(", "):
            return False
        self._send(405, b"Method not allowed.\n", headers={"Allow": allowed})
        return True

    def _not_served(self) -> None:
        """Any method but GET, HEAD and the webhook's POST: 401, 405 or 404."""
        path = self.path.split("?", 1)[0]
        self.close_connection = True  # a body, if any, is not read
        if self._authorized(path) and not self._not_allowed(path):
            self._send(404, b"Not found.\n")

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = _not_served

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if not self._authorized(path) or self._not_allowed(path):
            return
        if path == "/-/healthy":
            self._send(200, b"Healthy.\n")
        elif path == "/-/ready":
            if self.server.store.ready.is_set():
                self._send(200, b"Ready.\n")
            else:
                self._send(503, f"Not ready: {self._not_ready()}.\n".encode())
        elif not self.server.serve_metrics:
            self._send(404, b"Not found.\n")
        elif path == "/metrics":
            self._metrics()
        elif path == "/":
            self._status(statuspage.answer)
        elif path == STATUS_API_PATH:
            self._status(statusapi.answer)
        else:
            self._send(404, b"Not found. Metrics are at /metrics.\n")

    def do_HEAD(self) -> None:
        self.do_GET()

    def _metrics(self) -> None:
        """Stream the body in chunks: at fleet scale it is 175 MB of text, never held whole."""
        compress = accepts_gzip(self.headers.get("Accept-Encoding"))
        headers = {"Content-Encoding": "gzip"} if compress else {}
        pieces = self.server.metrics_pieces(compress)
        if self.request_version == "HTTP/1.0":  # no chunked encoding before HTTP/1.1
            self._send(200, b"".join(pieces), CONTENT_TYPE, headers)
            return
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Transfer-Encoding", "chunked")
        for name, value in {**self.server.web_config.headers, **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        for piece in pieces:
            if piece:
                self.wfile.write(b"%x\r\n%b\r\n" % (len(piece), piece))
            self.server.make_way()
        self.wfile.write(b"0\r\n\r\n")

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        receiver = self.server.webhooks
        if path != WEBHOOK_PATH or receiver is None:
            self._not_served()
            return
        length = self.headers.get("Content-Length", "")
        if not length.isdigit():
            self._send(411, b"Content-Length required.\n")
            return
        if int(length) > self.server.webhook_max_bytes:
            receiver.count(OTHER, "too_large")
            self.close_connection = True  # the body is not read, so the connection is spent
            self._send(413, b"Payload too large.\n")
            return
        body = self._read_body(int(length))
        if body is None:
            self.close_connection = True
            self._send(408, b"Request timeout: the body was not sent in time.\n")
            return
        self._send(receiver.handle(self.headers, body), b"")

    def _read_body(self, length: int) -> bytes | None:
        """The body, read within one deadline of ``body_timeout`` seconds for all of it,
        where the socket's own timeout is per read; None when it passes or the client
        hangs up first. Real time, not the injected clock: the socket waits on real time."""
        deadline = time.monotonic() + self.server.body_timeout
        body = bytearray()
        try:
            while len(body) < length:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self.connection.settimeout(min(remaining, self.timeout))
                chunk = self.rfile.read1(length - len(body))
                if not chunk:
                    return None
                body += chunk
        except TimeoutError:
            return None
        self.connection.settimeout(self.timeout)
        return bytes(body)

    def _not_ready(self) -> str:
        snapshot = self.server.store.current.snapshot
        return snapshot.unready_reason or "no company has been polled yet"

    def _status(self, answer: Callable[[FleetStatus, FilterError | None], Answer]) -> None:
        server = self.server
        snapshot = server.store.current.snapshot
        if snapshot.loading:
            message = (
                f"Loading the state file: {plural(snapshot.monitored, 'company')}. "
                "/metrics already serves them; this page is back in a few seconds."
            )
            if self.path.startswith(STATUS_API_PATH):
                body, kind = json.dumps({"error": message}).encode(), JSON_TYPE
            else:
                body, kind = f"{message}\n".encode(), "text/plain; charset=utf-8"
            self._send(503, body, kind, headers={"Retry-After": "5"})
            return
        reason = "" if server.store.ready.is_set() else self._not_ready()
        query = self.path.partition("?")[2]
        server.make_way()  # a second of work at fleet scale
        status, error = for_request(
            server.store.current, server.clock.time(), query, reason,
            page=server.status_page, shard=server.shard,
        )  # fmt: skip
        self._send(*answer(status, error))

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "text/plain; charset=utf-8",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        for name, value in {**self.server.web_config.headers, **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class Overloaded(Handler):
    """Answers a request beyond ``--web.max-requests``, in the front: 503 with
    ``Connection: close``, whatever the path and credentials."""

    def parse_request(self) -> bool:
        if super().parse_request():
            self.close_connection = True
            self._send(503, b"Too many requests at once; try again.\n")
        return False

    def handle_expect_100(self) -> bool:
        return True  # no "100 Continue": the 503 comes instead


class Refused(Handler):
    """The front's answer to a request it gave up reading (408, 431)."""

    def __init__(self, connection: Connection, server: Listener, status: int, message: str) -> None:
        self._refusal = status, message
        super().__init__(connection, server)

    def handle(self) -> None:
        self.close_connection = True
        self.command, self.requestline, self.request_version = "", "", "HTTP/1.1"
        status, message = self._refusal
        self._send(status, f"{message}\n".encode())
