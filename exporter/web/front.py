"""The listener's front: one thread per listener that accepts connections, does their TLS
handshakes and reads their request heads without blocking, then hands each complete head
to the server (``web.ExporterServer.take``), which answers it at once or serves it in a
thread of its own.

Why not a thread per connection from accept on (``socketserver``'s way): a client that
sends its request slowly would hold a thread, and with ``--web.max-requests`` a serving
slot, for as long as it likes; forty of them starved /-/healthy and got the pod restarted.
Here a connection costs a socket and a small buffer until its head is complete, and it has
``HEAD_TIMEOUT`` seconds in all for that, however it trickles (408 after). A connection
back from its thread (keep-alive) waits here for its next request, so an idle connection
holds no thread either.

Every connection is answered: beyond the server's caps, the front writes the answer the
server made without a thread (a 503, or the health endpoints' real answer), then closes
lingering, reading what the client still sends until it closes too, because closing a
socket with unread data resets the connection and the client loses the answer. Beyond
``max_open`` connections (or when accept fails for lack of file descriptors) the front
stops accepting for a moment: new connections wait in the listen backlog
(``LISTEN_BACKLOG``), which the kernel holds, and are answered in turn.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import io
import itertools
import logging
import resource
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from enum import Enum
from typing import Any, Protocol

log = logging.getLogger(__name__)

LISTEN_BACKLOG = 4096
"""Connections the kernel queues before accept (Linux caps it at net.core.somaxconn, 4096
on current kernels); Python's default of 5 left hundreds of a burst timing out in connect."""
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
MAX_OPEN = 4096
"""Connections open at once per listener, at most: reading, served, kept alive, closing."""
RESERVED_FDS = 128
"""File descriptors left to the rest of the process (Codat connections, the state file)
when ``max_open`` is sized from a low open files limit."""
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
_READ_SIZE = 4096


class State(Enum):
    HANDSHAKE = "handshake"
    HEAD = "head"
    TAKEN = "taken"
    """In the server's hands: answered by a thread, which gives it back."""
    WRITING = "writing"
    CLOSING = "closing"


class Connection(io.BufferedIOBase):
    """A client connection and the bytes read from it that nobody consumed yet.

    It is also the request handler's ``rfile`` and ``wfile``: in the front (``blocking``
    False) reads see only what the front read and writes are collected in ``output`` for
    the front to send; in a thread (``hold``) they fall through to the socket.
    """

    def __init__(self, sock: socket.socket, address: Any) -> None:
        super().__init__()
        self.sock = sock
        self.address = address
        self.buffer = bytearray()
        self.output = bytearray()
        self.close_after = False
        self.blocking = False
        self.state = State.HEAD
        self.events = 0
        self.deadline = 0.0
        self.stamp = 0
        self.idle = False

    def hold(self, timeout: float) -> None:
        """For a thread: blocking reads and writes, each within ``timeout`` seconds."""
        self.sock.settimeout(timeout)
        self.blocking = True

    def readline(self, size: int | None = -1, /) -> bytes:
        limit = -1 if size is None else size
        while True:
            end = self.buffer.find(b"\n") + 1
            if not end and 0 <= limit <= len(self.buffer):
                end = limit
            if end or not self._more():
                return self._take(end or len(self.buffer), limit)

    def read1(self, size: int = -1, /) -> bytes:
        if not self.buffer:
            self._more(size if size > 0 else _READ_SIZE)
        return self._take(len(self.buffer), size)

    def read(self, size: int | None = -1, /) -> bytes:
        limit = -1 if size is None else size
        while (limit < 0 or len(self.buffer) < limit) and self._more():
            pass
        return self._take(len(self.buffer), limit)

    def _take(self, end: int, limit: int) -> bytes:
        if 0 <= limit < end:
            end = limit
        taken = bytes(self.buffer[:end])
        del self.buffer[:end]
        return taken

    def _more(self, size: int = _READ_SIZE) -> bool:
        if not self.blocking:
            return False
        chunk = self.sock.recv(size)
        self.buffer += chunk
        return bool(chunk)

    def write(self, data: Any, /) -> int:
        if self.blocking:
            self.sock.sendall(data)
        else:
            self.output += data
        return len(data)

    def flush(self) -> None:
        pass


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


class Front:
    """Accepts on ``listener`` and keeps every connection that is not in a thread."""

    def __init__(
        self, listener: socket.socket, door: Door, max_open: int, head_timeout: float
    ) -> None:
        self._listener = listener
        self._door = door
        self.max_open = max_open
        self._head_timeout = head_timeout
        self._selector = selectors.DefaultSelector()
        self._wake_in, self._wake_out = socket.socketpair()
        self._wake_in.setblocking(False)
        self._wake_out.setblocking(False)
        self._selector.register(self._wake_in, selectors.EVENT_READ, None)
        self._listening = False
        self._paused_until = 0.0
        self._accept_failure_logged = False
        self._connections: set[Connection] = set()
        self._timers: list[tuple[float, int, Connection]] = []
        self._stamps = itertools.count(1)
        self._lock = threading.Lock()
        self._returned: list[tuple[Connection, bool]] = []
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._open = 0
        self._work = 0
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

    # --- the loop --------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stopping:
                now = time.monotonic()
                self._listen_if_room(now)
                self._work = 0
                busy = not self._calm.is_set()  # then only look: the threads wait meanwhile
                events = self._selector.select(0 if busy else self._timeout(now))
                for key, _ in events:
                    self._event(key.data)
                self._expire(time.monotonic())
                if self._work >= BUSY:
                    self._calm.clear()
                else:
                    self._calm.set()
        finally:
            self._calm.set()
            for connection in list(self._connections):
                if connection.state is not State.TAKEN:  # a thread's: it closes it
                    self._close(connection)
            self._selector.close()
            self._wake_in.close()
            self._wake_out.close()

    def _event(self, data: Connection | str | None) -> None:
        if data is None:
            self._take_returned()
        elif isinstance(data, str):
            self._accept()
        else:
            self._guarded(data, self._step)

    def _guarded(self, connection: Connection, action: Callable[[Connection], None]) -> None:
        try:
            action(connection)
        except Exception:  # one connection's trouble never stops the listener
            log.debug("connection from %s failed", connection.address, exc_info=True)
            self._close(connection)

    def _timeout(self, now: float) -> float:
        soonest = now + 1.0
        if self._timers:
            soonest = min(soonest, self._timers[0][0])
        if not self._listening and self._paused_until > now:
            soonest = min(soonest, self._paused_until)
        return max(0.0, soonest - now)

    def _listen_if_room(self, now: float) -> None:
        wanted = self._open < self.max_open and now >= self._paused_until
        if wanted and not self._listening:
            self._selector.register(self._listener, selectors.EVENT_READ, "listener")
        elif self._listening and not wanted:
            self._selector.unregister(self._listener)
        self._listening = wanted

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):  # then let the connections already open have a turn
            if self._open >= self.max_open:
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
            self._open += 1
            self._work += 1
            self._admit(sock, address)

    def _cannot_accept(self, exc: OSError) -> None:
        """Rest: the connection stays in the backlog, and retrying at once would spin."""
        self._paused_until = time.monotonic() + ACCEPT_PAUSE
        if not self._accept_failure_logged:
            self._accept_failure_logged = True
            limit = f" (open files limit {open_files_limit()})" if exc.errno in _OUT_OF_FDS else ""
            log.warning("cannot accept connections: %s%s; new connections wait until it "
                        "passes", exc.strerror, limit)  # fmt: skip

    def _admit(self, sock: socket.socket, address: Any) -> None:
        connection = Connection(sock, address)
        self._connections.add(connection)
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

    def _take_returned(self) -> None:
        try:
            while self._wake_in.recv(4096):
                pass
        except BlockingIOError:
            pass
        with self._lock:
            returned, self._returned = self._returned, []
        for connection, close in returned:
            connection.blocking = False
            try:
                connection.sock.setblocking(False)
            except OSError:
                self._close(connection)
                continue
            self._guarded(connection, self._linger if close else self._wait_for_request)

    # --- one connection ---------------------------------------------------------------------

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
                chunk = connection.sock.recv(_READ_SIZE)
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
        self._work += 1
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
        if connection not in self._connections:
            return
        self._connections.discard(connection)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._watch(connection, 0)
        connection.sock.close()
        self._open -= 1

    # --- deadlines ---------------------------------------------------------------------------

    def _set_deadline(self, connection: Connection, seconds: float) -> None:
        connection.deadline = time.monotonic() + seconds
        connection.stamp = next(self._stamps)
        heapq.heappush(self._timers, (connection.deadline, connection.stamp, connection))

    def _expire(self, now: float) -> None:
        while self._timers and self._timers[0][0] <= now:
            _, stamp, connection = heapq.heappop(self._timers)
            if stamp != connection.stamp or connection.state is State.TAKEN:
                continue  # a later deadline replaced it, or a thread has the connection
            if connection not in self._connections:
                continue
            if connection.state is State.HEAD and not connection.idle:
                self._guarded(connection, self._too_slow)
            else:  # a silent kept-alive connection, a handshake, an answer nobody reads
                self._close(connection)

    def _too_slow(self, connection: Connection) -> None:
        self._refuse(connection, 408, "Request timeout: the request was not sent in time.")


def open_files_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def raise_open_files_limit() -> int:
    """Raise the soft limit on open files to the hard one and return it: each connection
    is a file descriptor, and a burst of 2,000 exceeds the usual soft limit of 1,024
    (accept then fails). Says once why when it cannot be raised."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError) as exc:
            log.warning(
                "cannot raise the open files limit from %d to %d (%s): at most %d "
                "connections per listener", soft, wanted, exc, max_open_for(soft),
            )  # fmt: skip
    return soft


def max_open_for(limit: int) -> int:
    """Connections a listener keeps open at once with this open files limit.

    >>> max_open_for(1 << 20), max_open_for(1024), max_open_for(100)
    (4096, 896, 32)
    """
    return max(32, min(MAX_OPEN, limit - RESERVED_FDS))
