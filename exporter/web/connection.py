"""One client connection of a listener: its socket, the bytes read from it that nobody
consumed yet, and an answer not sent yet.

One object serves both sides of a request, so that no byte is lost between them: the
front (``exporter.web.connections``) reads the request head into ``buffer`` without
blocking, and the request handler (``exporter.web.handler``) then reads that head, and a
body after it, through the same object as its ``rfile``. Its ``state`` says who holds it
and what it waits for.
"""

from __future__ import annotations

import io
import socket
from enum import Enum
from typing import Any

READ_SIZE = 4096
"""Bytes asked of the socket per read."""


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
            self._more(size if size > 0 else READ_SIZE)
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

    def _more(self, size: int = READ_SIZE) -> bool:
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
