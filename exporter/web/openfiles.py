"""How many connections a listener may keep open, from the process's open files limit.

Each connection is a file descriptor. A burst of 2,000 connections exceeds the usual soft
limit of 1,024, and accept then fails; so the exporter raises its soft limit to the hard
one at start (``raise_open_files_limit``), and each listener's front stops accepting at
``max_open_for(limit)`` connections, leaving the rest of the process its share.
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger(__name__)

MAX_OPEN = 4096
"""Connections open at once per listener, at most: reading, served, kept alive, closing."""
RESERVED_FDS = 128
"""File descriptors left to the rest of the process (Codat connections, the state file)
when ``max_open`` is sized from a low open files limit."""


def open_files_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def raise_open_files_limit() -> int:
    """Raise the soft limit on open files to the hard one and return it. Says once why when
    it cannot be raised."""
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
