"""The connections a listener's front holds, and each one's way through it without a thread:
TLS handshake, request head, then either a thread (the server's ``take``) or an answer
written here, then a lingering close or the wait for the next request.

Every step is non-blocking and under one deadline (``HEAD_TIMEOUT``, ``IDLE_TIMEOUT``,
``ANSWER_TIMEOUT``), so a connection costs a socket and a small buffer however slowly its
client trickles, and a request whose head never completes gets ``408`` rather than a
thread. The lingering close reads what the client still sends until it closes too,
because closing a socket with unread data resets the connection and the client loses the
answer. The front (``exporter.web.front``) runs these steps from its one thread; nothing
here is thread-safe, nor needs to be.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import selectors
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any, Protocol

from exporter.web.connection import READ_SIZE, Connection, State

log = logging.getLogger(__name__)

HEAD_TIMEOUT = 10.0
"""Seconds from accept (or from a kept-alive connection's first byte) to a complete request
head, handshake included: one deadline, not per read, so a trickle cannot extend it."""
IDLE_TIMEOUT = 30.0
"""Seconds a kept-alive connection may wait for its next request; then it is closed."""
ANSWER_TIMEOUT = 5.0
"""Seconds to write an answer made here and then to see the client close (lingering close)."""
MAX_HEAD_BYTES = 16 * 1024
"""Longest request head (request line and headers); 431 beyond. Bounds the front's memory
at ``max_open`` x this, 64 MB at most."""


class Door(Protocol):
    """What the front asks of the server behind it."""

    def tls(self) -> ssl.SSLContext | None:
        """The TLS context for the next connection; None for plain HTTP."""

    def take(self, connection: Connection) -> bool:
        """A complete request head is at the start of ``connection.buffer``. Either answer
        it now into ``connection.output`` (setting ``close_after``) and return False, or
        give it to a thread that calls ``Front.hand_back`` when done, and return True."""

    def refuse(self, connection: Connection, status: int, message: str) -> None:
        """Write a final answer with ``status`` into ``connection.output`` (408, 431)."""


def head_end(buffer: bytearray) -> int:
    """Where the request head ends (past its blank line), or 0 while it is incomplete.
    Lines may end in CRLF or LF alone, as http.server reads them.

    >>> head_end(bytearray(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\nnext"))
    27
    >>> head_end(bytearray(b"GET /\\n\\n")), head_end(bytearray(b"GET / HTTP/1.1\\r\\n"))
    (7, 0)
    """
    ends = [i for i in (buffer.find(b"\n\r\n") + 3, buffer.find(b"\n\n") + 2) if i > 2]
    return min(ends, default=0)


class Connections:
    """Every open connection of one listener, those in a thread's hands included (they
    count as open); ``selector`` is the front's, which it watches for their events."""

    def __init__(self, selector: selectors.BaseSelector, door: Door, head_timeout: float) -> None:
        self._selector = selector
        self._door = door
        self._head_timeout = head_timeout
        self._open: set[Connection] = set()
        self._timers: list[tuple[float, int, Connection]] = []
        self._stamps = itertools.count(1)
        self.given = 0
        """Request heads given to the server so far: the front counts its work by them."""

    def __len__(self) -> int:
        return len(self._open)

    def admit(self, sock: socket.socket, address: Any) -> None:
        """A connection just accepted: start its handshake, or read its head."""
        connection = Connection(sock, address)
        self._open.add(connection)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            context = self._door.tls()
            if context is not None:
                connection.sock = context.wrap_socket(
                    sock, server_side=True, do_handshake_on_connect=False
                )
                connection.state = State.HANDSHAKE
        except Exception:
            log.debug("connection from %s refused", address, exc_info=True)
            self._close(connection)
            return
        self._set_deadline(connection, self._head_timeout)
        self._guarded(connection, self._step)

    def step(self, connection: Connection) -> None:
        """The selector saw the event the connection waits for."""
        self._guarded(connection, self._step)

    def resume(self, connection: Connection, close: bool) -> None:
        """A connection back from its thread: close it, or wait for its next request."""
        connection.blocking = False
        try:
            connection.sock.setblocking(False)
        except OSError:
            self._close(connection)
            return
        self._guarded(connection, self._linger if close else self._wait_for_request)

    def close_all(self) -> None:
        """The front stops: close every connection but those a thread has, which it closes."""
        for connection in list(self._open):
            if connection.state is not State.TAKEN:
                self._close(connection)

    def _guarded(self, connection: Connection, action: Callable[[Connection], None]) -> None:
        try:
            action(connection)
        except Exception:  # one connection's trouble never stops the listener
            log.debug("connection from %s failed", connection.address, exc_info=True)
            self._close(connection)

    def _step(self, connection: Connection) -> None:
        if connection.state is State.HANDSHAKE:
            self._handshake(connection)
        elif connection.state is State.HEAD:
            self._read_head(connection)
        elif connection.state is State.WRITING:
            self._write(connection)
        elif connection.state is State.CLOSING:
            self._drain(connection)

    def _handshake(self, connection: Connection) -> None:
        assert isinstance(connection.sock, ssl.SSLSocket)
        try:
            connection.sock.do_handshake()
        except ssl.SSLWantReadError:
            self._watch(connection, selectors.EVENT_READ)
            return
        except ssl.SSLWantWriteError:
            self._watch(connection, selectors.EVENT_WRITE)
            return
        except OSError:  # refused or broken handshake: nothing to answer in HTTP
            log.debug("TLS handshake from %s failed", connection.address, exc_info=True)
            self._close(connection)
            return
        connection.state = State.HEAD
        self._read_head(connection)

    def _read_head(self, connection: Connection) -> None:
        ended = False
        while not head_end(connection.buffer) and len(connection.buffer) <= MAX_HEAD_BYTES:
            try:
                chunk = connection.sock.recv(READ_SIZE)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                break
            except OSError:
                self._close(connection)
                return
            if not chunk:
                ended = True
                break
            if connection.idle:  # a kept-alive connection's next request has begun
                connection.idle = False
                self._set_deadline(connection, self._head_timeout)
            connection.buffer += chunk
            # Blank lines before a request line are ignored (RFC 9112, 2.2).
            while connection.buffer.startswith((b"\r", b"\n")):
                del connection.buffer[:1]
        end = head_end(connection.buffer)
        if end > MAX_HEAD_BYTES or (not end and len(connection.buffer) > MAX_HEAD_BYTES):
            self._refuse(connection, 431, "Request header fields too large.")
        elif end:
            self._give(connection)
        elif ended:  # the client gave up before sending a whole request
            self._close(connection)
        else:
            self._watch(connection, selectors.EVENT_READ)

    def _give(self, connection: Connection) -> None:
        self.given += 1
        self._watch(connection, 0)
        connection.state = State.TAKEN
        connection.output.clear()
        if not self._door.take(connection):
            self._answer(connection)

    def _refuse(self, connection: Connection, status: int, message: str) -> None:
        connection.output.clear()
        self._door.refuse(connection, status, message)
        connection.close_after = True
        self._answer(connection)

    def _answer(self, connection: Connection) -> None:
        connection.state = State.WRITING
        self._set_deadline(connection, ANSWER_TIMEOUT)
        self._write(connection)

    def _write(self, connection: Connection) -> None:
        while connection.output:
            try:
                sent = connection.sock.send(connection.output)
            except (BlockingIOError, ssl.SSLWantWriteError):
                self._watch(connection, selectors.EVENT_WRITE)
                return
            except ssl.SSLWantReadError:
                self._watch(connection, selectors.EVENT_READ)
                return
            except OSError:
                self._close(connection)
                return
            del connection.output[:sent]
        if connection.close_after:
            self._linger(connection)
        else:
            self._wait_for_request(connection)

    def _wait_for_request(self, connection: Connection) -> None:
        connection.state = State.HEAD
        connection.idle = not connection.buffer
        self._set_deadline(connection, IDLE_TIMEOUT if connection.idle else self._head_timeout)
        self._read_head(connection)

    def _linger(self, connection: Connection) -> None:
        """Close after an answer: stop sending, and read until the client closes too."""
        connection.state = State.CLOSING
        connection.buffer.clear()
        self._set_deadline(connection, ANSWER_TIMEOUT)
        try:
            connection.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(connection)
            return
        self._drain(connection)

    def _drain(self, connection: Connection) -> None:
        while True:
            try:
                if not connection.sock.recv(65536):
                    break
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                self._watch(connection, selectors.EVENT_READ)
                return
            except OSError:
                break
        self._close(connection)

    def _watch(self, connection: Connection, events: int) -> None:
        if events == connection.events:
            return
        if not connection.events:
            self._selector.register(connection.sock, events, connection)
        elif not events:
            self._selector.unregister(connection.sock)
        else:
            self._selector.modify(connection.sock, events, connection)
        connection.events = events

    def _close(self, connection: Connection) -> None:
        if connection not in self._open:
            return
        self._open.discard(connection)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._watch(connection, 0)
        connection.sock.close()

    # --- deadlines ---------------------------------------------------------------------------

    def next_deadline(self, at_latest: float) -> float:
        """The soonest deadline, if it comes before ``at_latest``: when the front wakes."""
        return min(at_latest, self._timers[0][0]) if self._timers else at_latest

    def _set_deadline(self, connection: Connection, seconds: float) -> None:
        connection.deadline = time.monotonic() + seconds
        connection.stamp = next(self._stamps)
        heapq.heappush(self._timers, (connection.deadline, connection.stamp, connection))

    def expire(self, now: float) -> None:
        """Act on the deadlines passed at ``now``: 408 for a request head still incomplete,
        a close for anything else (a silent kept-alive connection, a handshake, an answer
        nobody reads)."""
        while self._timers and self._timers[0][0] <= now:
            _, stamp, connection = heapq.heappop(self._timers)
            if stamp != connection.stamp or connection.state is State.TAKEN:
                continue  # a later deadline replaced it, or a thread has the connection
            if connection not in self._open:
                continue
            if connection.state is State.HEAD and not connection.idle:
                self._guarded(connection, self._too_slow)
            else:
                self._close(connection)

    def _too_slow(self, connection: Connection) -> None:
        self._refuse(connection, 408, "Request timeout: the request was not sent in time.")
