"""The listener's front: one thread per listener that accepts connections and carries each
through its handshake and request head (``exporter.web.connections``), then hands the
complete head to the server (``server.ExporterServer.take``), which answers it at once or
serves it in a thread of its own.

Why not a thread per connection from accept on (``socketserver``'s way): a client that
sends its request slowly would hold a thread, and with ``--web.max-requests`` a serving
slot, for as long as it likes; forty of them starved /-/healthy and got the pod restarted.
Here a connection costs a socket and a small buffer until its head is complete, and it has
``HEAD_TIMEOUT`` seconds in all for that, however it trickles (408 after). A connection
back from its thread (keep-alive) waits here for its next request, so an idle connection
holds no thread either.

Every connection is answered: beyond the server's caps, the front writes the answer the
server made without a thread (a 503, or the health endpoints' real answer). Beyond
``max_open`` connections (or when accept fails for lack of file descriptors) the front
stops accepting for a moment: new connections wait in the listen backlog
(``LISTEN_BACKLOG``), which the kernel holds, and are answered in turn.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import selectors
import socket
import threading
import time

from exporter.web.connection import Connection
from exporter.web.connections import Connections, Door
from exporter.web.openfiles import open_files_limit

log = logging.getLogger(__name__)

LISTEN_BACKLOG = 4096
"""Connections the kernel queues before accept (Linux caps it at net.core.somaxconn, 4096
on current kernels); Python's default of 5 left hundreds of a burst timing out in connect."""
ACCEPT_PAUSE = 0.1
"""Seconds accept rests after failing, for lack of file descriptors (EMFILE) most often:
the pending connection stays in the backlog, and retrying at once would spin the thread."""
ACCEPT_BATCH = 64
"""Connections accepted in a row before the open ones have a turn."""
BUSY = 16
"""Connections accepted plus requests taken in one turn of the loop from which the front
counts as busy (``make_way``); bytes trickling in do not count."""
MAKE_WAY = 0.05
"""Seconds a serving thread waits at most, at each of its pauses, while the front is busy."""
_OUT_OF_FDS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class Front:
    """Accepts on ``listener`` and keeps every connection that is not in a thread."""

    def __init__(
        self, listener: socket.socket, door: Door, max_open: int, head_timeout: float
    ) -> None:
        self._listener = listener
        self.max_open = max_open
        self._selector = selectors.DefaultSelector()
        self._connections = Connections(self._selector, door, head_timeout)
        self._wake_in, self._wake_out = socket.socketpair()
        self._wake_in.setblocking(False)
        self._wake_out.setblocking(False)
        self._selector.register(self._wake_in, selectors.EVENT_READ, None)
        self._listening = False
        self._paused_until = 0.0
        self._accept_failure_logged = False
        self._lock = threading.Lock()
        self._returned: list[tuple[Connection, bool]] = []
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._accepted = 0
        self._calm = threading.Event()
        self._calm.set()

    def start(self, name: str) -> None:
        self._listener.setblocking(False)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def make_way(self) -> None:
        """For serving threads, between pieces of work: while the front is busy with a burst,
        wait (``MAKE_WAY`` at most) so that it has the interpreter to itself. Python runs
        one thread at a time; forty threads rendering /metrics would leave the front a
        forty-first of the time, and a burst would wait in the backlog, unanswered, instead
        of getting its 503s. Each waiting thread keeps its slot, so that is what they get."""
        if not self._calm.is_set():
            self._calm.wait(MAKE_WAY)

    def hand_back(self, connection: Connection, close: bool) -> None:
        """From a thread done with ``connection``: close it, or wait for its next request."""
        with self._lock:
            stopped = self._stopping
            if not stopped:
                self._returned.append((connection, close))
        if stopped:
            connection.sock.close()
        else:
            self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full: a wake-up is already pending
            self._wake_out.send(b"\0")

    def _run(self) -> None:
        try:
            while not self._stopping:
                now = time.monotonic()
                self._listen_if_room(now)
                accepted, given = self._accepted, self._connections.given
                busy = not self._calm.is_set()  # then only look: the threads wait meanwhile
                events = self._selector.select(0 if busy else self._timeout(now))
                for key, _ in events:
                    self._event(key.data)
                self._connections.expire(time.monotonic())
                work = self._accepted - accepted + self._connections.given - given
                if work >= BUSY:
                    self._calm.clear()
                else:
                    self._calm.set()
        finally:
            self._calm.set()
            self._connections.close_all()
            self._selector.close()
            self._wake_in.close()
            self._wake_out.close()

    def _event(self, data: Connection | str | None) -> None:
        if data is None:
            self._take_returned()
        elif isinstance(data, str):
            self._accept()
        else:
            self._connections.step(data)

    def _timeout(self, now: float) -> float:
        soonest = self._connections.next_deadline(now + 1.0)
        if not self._listening and self._paused_until > now:
            soonest = min(soonest, self._paused_until)
        return max(0.0, soonest - now)

    def _listen_if_room(self, now: float) -> None:
        wanted = len(self._connections) < self.max_open and now >= self._paused_until
        if wanted and not self._listening:
            self._selector.register(self._listener, selectors.EVENT_READ, "listener")
        elif self._listening and not wanted:
            self._selector.unregister(self._listener)
        self._listening = wanted

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):  # then let the connections already open have a turn
            if len(self._connections) >= self.max_open:
                return
            try:
                sock, address = self._listener.accept()
            except BlockingIOError:
                return
            except ConnectionAbortedError:  # the client gave up before accept
                continue
            except OSError as exc:
                self._cannot_accept(exc)
                return
            self._accepted += 1
            self._connections.admit(sock, address)

    def _cannot_accept(self, exc: OSError) -> None:
        """Rest: the connection stays in the backlog, and retrying at once would spin."""
        self._paused_until = time.monotonic() + ACCEPT_PAUSE
        if not self._accept_failure_logged:
            self._accept_failure_logged = True
            limit = f" (open files limit {open_files_limit()})" if exc.errno in _OUT_OF_FDS else ""
            log.warning("cannot accept connections: %s%s; new connections wait until it "
                        "passes", exc.strerror, limit)  # fmt: skip

    def _take_returned(self) -> None:
        try:
            while self._wake_in.recv(4096):
                pass
        except BlockingIOError:
            pass
        with self._lock:
            returned, self._returned = self._returned, []
        for connection, close in returned:
            self._connections.resume(connection, close)
