"""The image's HEALTHCHECK: does the exporter accept connections where it was told to listen?

    python -m exporter.web.healthcheck          # 0: it does; 1: it does not

Docker runs this inside the container. It reads the exporter's own command line from
``/proc/1/cmdline`` (the exec-form ENTRYPOINT makes the exporter the container's first
process; under ``docker run --init`` the init's command line holds the same arguments),
reads ``--web.listen-address`` from it, and connects there. So ``docker run IMAGE
--web.listen-address=:9999`` stays healthy, where a check dialling 127.0.0.1:9781 would mark
it unhealthy, and there is no second setting to keep in step. It imports only
``exporter.config.listen``, not the exporter, so a check costs about 0.07 s of CPU.

A TCP connect rather than ``GET /-/healthy``: it holds with ``--web.config.file`` (TLS, basic
auth), and /-/healthy answers 200 whenever the listener accepts anyway. It prints one line,
which ``docker inspect`` shows::

    127.0.0.1:9999 accepts connections
    cannot connect to 127.0.0.1:9999 (--web.listen-address :9999): Connection refused

``--pid`` reads another process's command line instead of the first one's (the tests run it
against an exporter outside any container).
"""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from exporter.config.listen import DEFAULT_LISTEN_ADDRESS, LISTEN_FLAG, parse_listen_address, shown

TIMEOUT = 4.0
"""Seconds to wait for the connection: below the Dockerfile's ``HEALTHCHECK --timeout=5s``,
so a hung listener is reported by this check rather than killed by Docker."""

_ANY = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104 - read, not bound


def listen_address(command_line: Sequence[str]) -> str:
    """The address an exporter started with ``command_line`` (argv, program first) listens on.

    >>> listen_address(["/opt/venv/bin/python", "/opt/venv/bin/codat-freshness-exporter",
    ...                 "--config.file=/etc/c.yaml", "--web.listen-address=:9999"])
    ':9999'
    >>> listen_address(["/sbin/docker-init", "--", "codat-freshness-exporter",
    ...                 "--web.listen-address", "127.0.0.1:9999", "--log.level=debug"])
    '127.0.0.1:9999'
    >>> listen_address(["python", "-m", "exporter", "--demo"])
    ':9781'
    """
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument(LISTEN_FLAG, dest="address", default=DEFAULT_LISTEN_ADDRESS)
    arguments = [argument for argument in command_line[1:] if argument != "--"]
    known, _ = parser.parse_known_args(arguments)
    address: str = known.address
    return address


def dial_target(address: str) -> tuple[str, int]:
    """Where to connect to reach a listener bound to ``address``: all interfaces are
    reached over loopback.

    >>> dial_target(":9781"), dial_target("[::]:9781"), dial_target("10.0.0.5:80")
    (('127.0.0.1', 9781), ('::1', 9781), ('10.0.0.5', 80))
    """
    host, port = parse_listen_address(address)
    return _ANY.get(host, host), port


def check(command_line: Sequence[str], timeout: float = TIMEOUT) -> tuple[bool, str]:
    """Whether the exporter's listener accepts a connection, and the line saying so."""
    address = listen_address(command_line)
    host, port = dial_target(address)
    target = shown(host, port)
    try:
        socket.create_connection((host, port), timeout).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return False, f"cannot connect to {target} (--web.listen-address {address}): {reason}"
    return True, f"{target} accepts connections"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m exporter.web.healthcheck", description=__doc__)
    parser.add_argument(
        "--pid", type=int, default=1,
        help="the process whose command line to read (default: 1, the container's first)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:
        raw = Path(f"/proc/{args.pid}/cmdline").read_bytes()
    except OSError as exc:
        print(f"cannot read the exporter's command line: {exc.strerror}", file=sys.stderr)
        return 1
    command_line = raw.decode(errors="replace").split("\0")[:-1]
    try:
        healthy, line = check(command_line)
    except (SystemExit, ValueError) as exc:
        print(f"cannot tell where the exporter listens: {exc}", file=sys.stderr)
        return 1
    print(line, file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
