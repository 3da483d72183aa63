"""The HTTP surface: ``/metrics``, the status page at ``/`` and its JSON at
``/api/v1/status`` (``exporter.web.statusapi``), ``/-/healthy``, ``/-/ready`` and, when enabled,
``POST /webhooks/codat``.

/metrics concatenates the current snapshot's pre-rendered text, the ages computed for
this instant, and the exporter's own registry (requests, latencies, process).

``--web.config.file`` (exporter-toolkit format) adds TLS, optionally mutual, and basic
auth. Basic auth covers every path except the webhook endpoint, which Codat signs instead,
and the health endpoints when ``--web.health-without-auth`` says so.

A connection takes no thread until its request head is complete: ``webfront.Front``
accepts, does the TLS handshake and reads heads in one thread per listener. Then
``--web.max-requests`` caps the responses served at once (each in a thread of its own):
/metrics can be 175 MB, the status page takes a second at fleet scale. Beyond the cap a
request gets ``503`` with ``Connection: close`` at once, counted in
``codat_exporter_http_requests_rejected_total``. ``/-/healthy`` and ``/-/ready`` never take
a slot: the front answers them itself, whatever the load, unless their basic auth needs a
bcrypt round (credentials not seen before), which a thread does, as any other request.
"""

from __future__ import annotations

import http.client
import io
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from prometheus_client import generate_latest

from exporter import __version__
from exporter.codat.webhooks import OTHER, WebhookReceiver
from exporter.config.listen import describe, is_every_interface, parse_listen_address, shown
from exporter.core.clock import Clock
from exporter.core.phrases import plural
from exporter.exposition.instruments import ExporterMetrics
from exporter.exposition.render import CONTENT_TYPE
from exporter.exposition.store import SnapshotStore
from exporter.web import statuspage
from exporter.web.basicauth import BASIC_CHALLENGE
from exporter.web.filters import FilterError
from exporter.web.front import (
    HEAD_TIMEOUT,
    LISTEN_BACKLOG,
    Connection,
    Front,
    max_open_for,
    open_files_limit,
)
from exporter.web.reload import ReloadingWebConfig
from exporter.web.status import Answer, FleetStatus, for_request
from exporter.web.statusapi import JSON_TYPE, STATUS_API_PATH
from exporter.web.statusapi import answer as status_answer
from exporter.web.webconfig import WebConfig

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/codat"
HEALTH_PATHS = ("/-/healthy", "/-/ready")
REQUEST_TIMEOUT = 30.0
"""Seconds a served request's socket may stay silent (per read or write), and may take to
send a whole webhook body: a stalled or trickling client must not hold a thread."""
DEFAULT_MAX_REQUESTS = 40
"""Responses served at once per listener, as node_exporter's ``--web.max-requests``."""
GET_METHODS = "GET, HEAD"


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


class ExporterServer(HTTPServer):
    """One listener. The main one serves metrics; a separate webhook listener
    (``webhooks.listen_address``) has ``serve_metrics=False``. The front (``start``) accepts
    and reads request heads; ``take`` decides who answers each."""

    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(
        self,
        address: str,
        store: SnapshotStore,
        metrics: ExporterMetrics,
        clock: Clock,
        *,
        web_config: WebConfig | ReloadingWebConfig | None = None,
        webhooks: WebhookReceiver | None = None,
        webhook_max_bytes: int = 256 * 1024,
        serve_metrics: bool = True,
        health_without_auth: bool = False,
        max_requests: int = DEFAULT_MAX_REQUESTS,
        body_timeout: float = REQUEST_TIMEOUT,
        head_timeout: float = HEAD_TIMEOUT,
    ) -> None:
        host, port = parse_listen_address(address)
        if ":" in host:
            self.address_family = socket.AF_INET6
        self.store = store
        self.metrics = metrics
        self.clock = clock
        if not isinstance(web_config, ReloadingWebConfig):
            web_config = ReloadingWebConfig.fixed(web_config or WebConfig())
        self._web_config = web_config
        self.webhooks = webhooks
        self.webhook_max_bytes = webhook_max_bytes
        self.serve_metrics = serve_metrics
        self.health_without_auth = health_without_auth
        self.body_timeout = body_timeout
        self.head_timeout = head_timeout
        self._serving = threading.BoundedSemaphore(max_requests) if max_requests else None
        # socketserver's handler class goes unused: ``take`` makes each request's handler.
        super().__init__((host, port), BaseHTTPRequestHandler)
        self._front: Front | None = None

    @property
    def web_config(self) -> WebConfig:
        return self._web_config.config

    def tls(self) -> ssl.SSLContext | None:
        """The TLS context current now: renewed certificates take effect on the next
        connection."""
        return self._web_config.context

    def take(self, connection: Connection) -> bool:
        """Runs in the front, with a complete request head: answer it here (False), or
        serve it in a thread of its own (True), within ``--web.max-requests``."""
        if self._answers_at_once(connection.buffer):
            connection.close_after = Handler(connection, self).close_connection
            return False
        if self._serving is None or self._serving.acquire(blocking=False):
            try:
                threading.Thread(
                    target=self._serve, args=(connection,), name="http-request", daemon=True
                ).start()
                return True
            except RuntimeError:  # no thread to be had: as good as beyond the cap
                if self._serving is not None:
                    self._serving.release()
        self.metrics.http_rejected.inc()
        connection.close_after = Overloaded(connection, self).close_connection
        return False

    def refuse(self, connection: Connection, status: int, message: str) -> None:
        Refused(connection, self, status, message)

    def _answers_at_once(self, head: bytearray) -> bool:
        """Whether the front answers this request itself: a health endpoint, whose basic
        auth, if it needs any, is known without a bcrypt round."""
        line, _, rest = head.partition(b"\n")
        words = line.split()
        if len(words) < 2:
            return False
        target = words[1].decode("iso-8859-1")
        if target.startswith("//"):  # as http.server reads it
            target = "/" + target.lstrip("/")
        path = target.split("?", 1)[0]
        if path not in HEALTH_PATHS:
            return False
        if not self.needs_auth(path):
            return True
        try:
            headers = http.client.parse_headers(io.BytesIO(rest))
        except http.client.HTTPException:
            return False
        return self.web_config.authorized_at_once(headers.get("Authorization")) is not None

    def _serve(self, connection: Connection) -> None:
        close = True
        try:
            connection.hold(Handler.timeout)
            close = Handler(connection, self).close_connection
        except Exception:
            self.handle_error(connection, connection.address)
        finally:
            # Before the connection goes back: once the client sees the answer end (the
            # close), its slot is free.
            if self._serving is not None:
                self._serving.release()
            assert self._front is not None
            self._front.hand_back(connection, close)

    def allowed_methods(self, path: str) -> str | None:
        """The methods ``path`` answers on this listener (for ``Allow``); None: no such path."""
        if path in HEALTH_PATHS or (
            self.serve_metrics and path in ("/", "/metrics", STATUS_API_PATH)
        ):
            return GET_METHODS
        if path == WEBHOOK_PATH and self.webhooks is not None:
            return "POST"
        return None

    @property
    def url(self) -> str:
        """Where a person reaches the listener: this host's name when it is bound to every
        interface, e.g. ``http://exporter-0:9781``, else the address it is bound to."""
        host, port = str(self.server_address[0]), int(self.server_address[1])
        if is_every_interface(host):
            host = socket.gethostname()
        return f"{self.web_config.scheme}://{shown(host, port)}"

    @property
    def listening(self) -> str:
        """The address bound and what it exposes, e.g. ``0.0.0.0:9781, every IPv4 interface``."""
        return describe(str(self.server_address[0]), int(self.server_address[1]))

    def start(self) -> None:
        limit = max_open_for(open_files_limit())
        self._front = Front(self.socket, self, limit, self.head_timeout)
        self._front.start("http")

    def stop(self) -> None:
        if self._front is not None:
            self._front.stop()
        self.server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Refused TLS handshakes, port scans and clients hanging up are routine; a
        # traceback per connection would drown the log.
        log.debug("connection from %s ended with an error", client_address, exc_info=True)

    def make_way(self) -> None:
        """A pause for a serving thread while the front is busy (``Front.make_way``)."""
        if self._front is not None:
            self._front.make_way()

    def metrics_pieces(self, compress: bool) -> Iterator[bytes]:
        own = generate_latest(self.metrics.registry)
        return self.store.current.pieces(self.clock.time(), own, compress)

    def needs_auth(self, path: str) -> bool:
        if not self.web_config.auth_required or path == WEBHOOK_PATH:
            return False
        return not (self.health_without_auth and path in HEALTH_PATHS)


class Handler(BaseHTTPRequestHandler):
    """Answers one request of a ``Connection``, whose head the front has read: in a
    thread, or in the front itself for what it answers at once."""

    server: ExporterServer
    request: Connection
    protocol_version = "HTTP/1.1"
    server_version = f"codat-freshness-exporter/{__version__}"
    timeout = REQUEST_TIMEOUT

    def __init__(self, connection: Connection, server: ExporterServer) -> None:
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
            self._status(status_answer)
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
            server.store.current, server.metrics, server.clock.time(), query, reason
        )
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

    def __init__(
        self, connection: Connection, server: ExporterServer, status: int, message: str
    ) -> None:
        self._refusal = status, message
        super().__init__(connection, server)

    def handle(self) -> None:
        self.close_connection = True
        self.command, self.requestline, self.request_version = "", "", "HTTP/1.1"
        status, message = self._refusal
        self._send(status, f"{message}\n".encode())
