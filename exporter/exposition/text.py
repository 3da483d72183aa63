"""The Prometheus text format's small parts, shared by what renders it: label escaping,
numbers, a family's HELP and TYPE lines, and a family compressed as one gzip member.

A gzip stream may hold several members (RFC 1952) and Prometheus reads them all, so each
family is compressed on its own as it is rendered and a scrape sends the members as they
are (``exporter.exposition.render``).
"""

from __future__ import annotations

import zlib

from exporter.core.families import MetricSpec

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
GZIP_LEVEL = 1  # the text is large and regular; level 1 gets most of the ratio for little CPU


def escape(value: str) -> str:
    r"""Escape a label value for the text format: backslash, double quote and newline.

    >>> escape('Caf\u00e9 "Ol\u00e9"\n\\')
    'Café \\"Olé\\"\\n\\\\'
    """
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def number(value: float) -> str:
    """Whole numbers without '.0' (smaller bodies), anything else as Python's shortest repr."""
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def header(spec: MetricSpec, interval: str) -> str:
    """The family's HELP and TYPE lines; ``interval`` fills the HELP's ``{interval}``."""
    help_text = spec.help_text(interval).replace("\\", "\\\\").replace("\n", "\\n")
    return f"# HELP {spec.name} {help_text}\n# TYPE {spec.name} {spec.type}\n"


class Member:
    """One family compressed into one gzip member as its lines are rendered."""

    def __init__(self, spec: MetricSpec, interval: str) -> None:
        self._header = header(spec, interval).encode()
        self._deflate = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
        self._out: list[bytes] = []
        self._empty = True

    def add(self, text: str) -> None:
        if not text:
            return
        if self._empty:
            self._out.append(self._deflate.compress(self._header))
            self._empty = False
        self._out.append(self._deflate.compress(text.encode()))

    def finish(self) -> bytes:
        """The member, or nothing for a family without samples (it is left out)."""
        if self._empty:
            return b""
        self._out.append(self._deflate.flush())
        return b"".join(self._out)


class Discard(Member):
    """Where the lines of a family that ``metrics.denylist`` drops go."""

    def __init__(self) -> None:
        pass

    def add(self, text: str) -> None:
        pass
