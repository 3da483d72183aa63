"""The HTTP surface: ``/metrics``, the status page at ``/`` and its JSON at
``/api/v1/status`` (``exporter.status``), ``/-/healthy``, ``/-/ready`` and, when enabled,
``POST /webhooks/codat``.

/metrics concatenates the current snapshot's pre-rendered text, the ages computed for
this instant, and the exporter's own registry (requests, latencies, process).

``--web.config.file`` (exporter-toolkit format) adds TLS, optionally mutual, and basic
auth. Basic auth covers every path except the webhook endpoint, which Codat signs instead,
and the health endpoints when ``--web.health-without-auth`` says so.

Each connection holds a thread from accept to close, so ``--web.max-requests`` caps the
connections served at once, on every path: which path a connection wants is only known
once it has sent its request, and withholding it is how a slow client holds a thread.
Beyond the cap a connection gets ``503`` from a short-lived thread, and beyond twice the
cap it is closed unanswered; both count in ``codat_exporter_http_requests_rejected_total``.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import generate_latest

from exporter import __version__, statuspage
from exporter.clock import Clock
from exporter.collector import CONTENT_TYPE, SnapshotStore
from exporter.listen import describe, is_every_interface, parse_listen_address, shown
from exporter.metrics import ExporterMetrics
from exporter.phrases import plural
from exporter.status import (
    JSON_TYPE,
    STATUS_API_PATH,
    Answer,
    FilterError,
    FleetStatus,
    for_request,
)
from exporter.status import answer as status_answer
from exporter.webconfig import BASIC_CHALLENGE, WebConfig
from exporter.webhooks import OTHER, WebhookReceiver
from exporter.webreload import ReloadingWebConfig

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/codat"
HEALTH_PATHS = ("/-/healthy", "/-/ready")
REQUEST_TIMEOUT = 30.0
"""Seconds a client may stay silent while sending its request, and may take to send a
whole webhook body: a stalled or trickling client must not hold a thread."""
DEFAULT_MAX_REQUESTS = 40
"""Connections served at once per listener, as node_exporter's ``--web.max-requests``."""
OVERLOADED_TIMEOUT = 5.0
"""Seconds a connection beyond the cap may stay silent before its 503 (it is read first:
closing a socket with unread data resets the connection, and the client loses the 503)."""
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


class ExporterServer(ThreadingHTTPServer):
    """One listener. The main one serves metrics; a separate webhook listener
    (``webhooks.listen_address``) has ``serve_metrics=False``."""

    daemon_threads = True
    allow_reuse_address = True

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
        # None: no cap. Rejections are capped too, so that a flood costs a bounded number
        # of threads.
        self._serving = threading.BoundedSemaphore(max_requests) if max_requests else None
        self._rejecting = threading.BoundedSemaphore(max_requests) if max_requests else None
        super().__init__((host, port), Handler)
        self._thread: threading.Thread | None = None

    @property
    def web_config(self) -> WebConfig:
        return self._web_config.config

    def get_request(self) -> tuple[socket.socket, Any]:
        """Accept, and wrap in TLS with the context current now (renewed certificates take
        effect on the next connection). The handshake is deferred to the first read, in
        the request's own thread: a client that connects and says nothing holds one
        thread, not the accept loop."""
        connection, address = self.socket.accept()
        context = self._web_config.context
        if context is None:
            return connection, address
        try:
            wrapped = context.wrap_socket(
                connection, server_side=True, do_handshake_on_connect=False
            )
        except OSError:
            connection.close()
            raise
        return wrapped, address

    def process_request(self, request: Any, client_address: Any) -> None:
        """Runs in the accept loop: hand the connection to a thread, or refuse it."""
        if self._serving is None or self._serving.acquire(blocking=False):
            super().process_request(request, client_address)
            return
        self.metrics.http_rejected.inc()
        if self._rejecting is None or not self._rejecting.acquire(blocking=False):
            self.shutdown_request(request)
            return
        threading.Thread(
            target=self._refuse, args=(request, client_address), name="http-503", daemon=True
        ).start()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            # Before the close: once the client sees the connection end, its slot is free.
            if self._serving is not None:
                self._serving.release()
            self.shutdown_request(request)

    def _refuse(self, request: Any, client_address: Any) -> None:
        try:
            Overloaded(request, client_address, self)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            if self._rejecting is not None:
                self._rejecting.release()
            self.shutdown_request(request)

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
        self._thread = threading.Thread(
            target=self.serve_forever, args=(0.1,), name="http", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Refused TLS handshakes, port scans and clients hanging up are routine; a
        # traceback per connection would drown the log.
        log.debug("connection from %s ended with an error", client_address, exc_info=True)

    def metrics_pieces(self, compress: bool) -> Iterator[bytes]:
        own = generate_latest(self.metrics.registry)
        return self.store.current.pieces(self.clock.time(), own, compress)

    def needs_auth(self, path: str) -> bool:
        if not self.web_config.auth_required or path == WEBHOOK_PATH:
            return False
        return not (self.health_without_auth and path in HEALTH_PATHS)


class Handler(BaseHTTPRequestHandler):
    server: ExporterServer
    protocol_version = "HTTP/1.1"
    server_version = f"codat-freshness-exporter/{__version__}"
    timeout = REQUEST_TIMEOUT

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as two writes; without this, Nagle's algorithm and the
        # peer's delayed ACK add 40 ms to every response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

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
    """Serves a connection beyond ``--web.max-requests``: reads its request and answers
    503 with ``Connection: close``, whatever the path and credentials."""

    timeout = OVERLOADED_TIMEOUT

    def parse_request(self) -> bool:
        if super().parse_request():
            self.close_connection = True
            self._send(503, b"Too many connections at once; try again.\n")
        return False
