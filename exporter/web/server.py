"""One HTTP listener: the socket, the caps on what it serves at once, and who answers each
request. The main listener serves everything (``exporter.web.handler`` has the paths); a
separate webhook listener (``webhooks.listen_address``) serves only the webhook.

``--web.config.file`` (exporter-toolkit format) adds TLS, optionally mutual, and basic
auth; the listener takes its TLS context per connection (``exporter.web.reload``), so a
renewed certificate needs no restart.

A connection takes no thread until its request head is complete: ``front.Front``
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
import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from prometheus_client import generate_latest

from exporter.codat.webhooks.receiver import WebhookReceiver
from exporter.config.listen import describe, is_every_interface, parse_listen_address, shown
from exporter.config.sections import StatusPageConfig
from exporter.config.sharding import Shard
from exporter.core.clock import Clock
from exporter.exposition.instruments import ExporterMetrics
from exporter.exposition.store import SnapshotStore
from exporter.web.connection import Connection
from exporter.web.connections import HEAD_TIMEOUT
from exporter.web.front import LISTEN_BACKLOG, Front
from exporter.web.handler import (
    GET_METHODS,
    HEALTH_PATHS,
    REQUEST_TIMEOUT,
    WEBHOOK_PATH,
    Handler,
    Overloaded,
    Refused,
)
from exporter.web.openfiles import max_open_for, open_files_limit
from exporter.web.reload import ReloadingWebConfig
from exporter.web.status import DEFAULT_PAGE, UNSHARDED
from exporter.web.statusapi import STATUS_API_PATH
from exporter.web.webconfig import WebConfig

log = logging.getLogger(__name__)

DEFAULT_MAX_REQUESTS = 40
"""Responses served at once per listener, as node_exporter's ``--web.max-requests``."""


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
        status_page: StatusPageConfig = DEFAULT_PAGE,
        shard: Shard = UNSHARDED,
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
        self.status_page = status_page
        """What the status page and its JSON show besides the pairs (links, incidents)."""
        self.shard = shard
        """This replica's share of the fleet, which the status page names when sharded."""
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
