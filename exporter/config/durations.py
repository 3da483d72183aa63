"""Durations as Prometheus writes them, the one parser for every file the project reads.

The exporter's config file and the monitoring generator's ``monitoring/config.yml`` both
use it, so ``15m`` means the same in either, and in the Prometheus rules generated from the
latter::

    >>> parse_duration("1h30m"), parse_duration("250ms"), format_duration(5400)
    (5400.0, 0.25, '1h30m')
"""

from __future__ import annotations

import re

UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}
"""Largest first: a duration names each unit at most once, in this order."""

_PART = re.compile(r"(\d+)(ms|s|m|h|d|w)")


def parse_duration(text: str) -> float:
    """``90s``, ``5m``, ``1h30m``, ``2d``, ``250ms`` -> seconds; ``ValueError`` otherwise.

    Whole numbers only, no spaces, units from the largest down, as in Prometheus. Too many
    digits for a float raise ``OverflowError``.
    """
    pos, total, last_rank = 0, 0.0, -1
    ranks = list(UNITS)
    while pos < len(text):
        match = _PART.match(text, pos)
        if match is None:
            raise ValueError(text)
        rank = ranks.index(match[2])
        if rank <= last_rank:
            raise ValueError(text)
        last_rank = rank
        total += int(match[1]) * UNITS[match[2]]
        pos = match.end()
    if pos == 0:
        raise ValueError(text)
    return total


def format_duration(seconds: float) -> str:
    """The inverse of ``parse_duration`` for display: 5400 -> '1h30m', 0.25 -> '250ms'."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    out, rest = "", int(seconds)
    for unit in ("d", "h", "m", "s"):
        size = int(UNITS[unit])
        if rest >= size:
            out += f"{rest // size}{unit}"
            rest %= size
    return out or "0s"
