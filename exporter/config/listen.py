"""Where the exporter listens: the ``--web.listen-address`` flag, its default, and the one
parser of a listen address, which ``webhooks.listen_address`` uses too.

Apart from ``exporter.web.server`` so that the image's health check (``exporter.web.healthcheck``),
which Docker runs every 30 s, reads the same flag without importing the whole exporter:
about 0.07 s of CPU per check instead of 0.8 s.
"""

from __future__ import annotations

import ipaddress
import re

LISTEN_FLAG = "--web.listen-address"
DEFAULT_PORT = 9781
DEFAULT_LISTEN_ADDRESS = f":{DEFAULT_PORT}"

_PORT = re.compile(r"[0-9]{1,5}")
_HOST_NAME = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9_-]{1,63}(?<!-))*\.?")
_DOTTED = re.compile(r"[0-9.]+")
_ALL_IPV4 = ("", "0.0.0.0")  # noqa: S104 - names of the wildcard, compared, not bound
_ALL = "::"


def parse_listen_address(text: str) -> tuple[str, int]:
    """``host:port`` -> (host, port), as Go's ``net.SplitHostPort`` reads it: an empty host
    is every interface, an IPv6 address is in brackets, the port is 0-65535 (0: any free
    one). ``ValueError`` says what is wrong, starting with the address.

    >>> parse_listen_address(":9781"), parse_listen_address("[::1]:9781")
    (('', 9781), ('::1', 9781))
    >>> parse_listen_address("127.0.0.1:99999")
    Traceback (most recent call last):
    ValueError: '127.0.0.1:99999': port 99999 is out of range 0-65535
    >>> parse_listen_address("::1:9781")
    Traceback (most recent call last):
    ValueError: '::1:9781': an IPv6 address goes in brackets, e.g. [::1]:9781
    """
    host, sep, port = text.rpartition(":")
    if not sep:
        raise ValueError(f"{text!r} is not host:port (e.g. :9781, 127.0.0.1:9781, [::1]:9781)")
    if not _PORT.fullmatch(port):
        raise ValueError(f"{text!r}: port {port!r} is not a number from 0 to 65535")
    if int(port) > 65535:
        raise ValueError(f"{text!r}: port {int(port)} is out of range 0-65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if not _is_ipv6(host):
            raise ValueError(f"{text!r}: [{host}] is not an IPv6 address")
    elif ":" in host:
        raise ValueError(f"{text!r}: an IPv6 address goes in brackets, e.g. [::1]:{port}")
    elif host and not _is_host(host):
        raise ValueError(f"{text!r}: {host!r} is not a host name or IP address")
    return host, int(port)


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _is_host(text: str) -> bool:
    """A host name, or an IPv4 address when it is digits and dots only (``999.1.1.1``
    would otherwise pass as a name, and fail only when bound)."""
    if _DOTTED.fullmatch(text):
        try:
            ipaddress.IPv4Address(text)
        except ValueError:
            return False
        return True
    return bool(_HOST_NAME.fullmatch(text))


def shown(host: str, port: int) -> str:
    """``host:port`` as an address is written, IPv6 in brackets.

    >>> shown("::1", 9781), shown("", 9781)
    ('[::1]:9781', '0.0.0.0:9781')
    """
    host = host or "0.0.0.0"  # noqa: S104 - what binding to "" means
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_every_interface(host: str) -> bool:
    """Whether binding ``host`` listens on every interface (IPv4's, or with ``::`` all)."""
    return host in (*_ALL_IPV4, _ALL)


def describe(host: str, port: int) -> str:
    """What a listener bound to (host, port) exposes, for the start-up log.

    >>> describe("0.0.0.0", 9781), describe("::", 9781)
    ('0.0.0.0:9781, every IPv4 interface', '[::]:9781, every interface')
    >>> describe("127.0.0.1", 9781), describe("10.0.0.5", 80)
    ('127.0.0.1:9781, loopback only', '10.0.0.5:80')
    """
    where = ""
    if host in _ALL_IPV4:
        where = ", every IPv4 interface"
    elif host == _ALL:
        where = ", every interface"
    elif _is_ip(host) and ipaddress.ip_address(host).is_loopback:
        where = ", loopback only"
    return shown(host, port) + where


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def overlap(first: tuple[str, int], second: tuple[str, int]) -> bool:
    """Whether two listeners would claim the same port on some address, so that the second
    cannot bind (Linux: ``[::]`` takes IPv4 too). Port 0 is a free port each time; host
    names are compared as written, not resolved.

    >>> overlap(("", 9781), ("127.0.0.1", 9781)), overlap(("::", 9781), ("127.0.0.1", 9781))
    (True, True)
    >>> overlap(("127.0.0.1", 9781), ("::1", 9781)), overlap(("", 9781), ("", 9782))
    (False, False)
    """
    (a, port_a), (b, port_b) = first, second
    if port_a != port_b or port_a == 0:
        return False
    if a == b or _ALL in (a, b):
        return True
    return (a in _ALL_IPV4 and ":" not in b) or (b in _ALL_IPV4 and ":" not in a)
