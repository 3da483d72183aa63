"""``python -m exporter`` with the prototype state section of ``state_codec.py`` and no
rendering kept: the simpler restart of issue 19 (decode the state, render it, listen), for
``restart.py`` to time against today's. ``--structs`` keeps the decoded companies as the
Struct mirrors instead of building today's dataclasses from them; ``--keep-rendering``
restarts today's way (the file's rendering served while the state decodes), with the
prototype's section; ``--today`` keeps today's section; ``--defer-decoding`` decodes only
once a first /metrics has been sent whole (at most 10 s after listening).

    python bench/restart_proto.py [--structs] --config.file PATH --web.listen-address 127.0.0.1:0
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from typing import Any

import state_codec

from exporter import cli
from exporter.config.sections import Config
from exporter.exposition.render import Exposition
from exporter.exposition.store import SnapshotStore
from exporter.poll.poller import Poller
from exporter.poll.statefile import StateFile

DEFER_AT_MOST = 10.0
"""Seconds the deferred decoding waits for a first scrape."""


def defer_decoding() -> None:
    """Decode the state only once a first /metrics has been sent whole (or after
    DEFER_AT_MOST): decoding holds the interpreter, and a scrape served meanwhile gets
    a share of it only."""
    served = threading.Event()
    pieces = Exposition.pieces

    def watched(self: Exposition, *args: Any, **kwargs: Any) -> Iterator[bytes]:
        yield from pieces(self, *args, **kwargs)
        served.set()

    resume = cli.resume

    def deferred(
        poller: Poller,
        store: SnapshotStore,
        found: StateFile | None,
        rendered: Exposition | None,
        config: Config,
    ) -> None:
        if rendered is not None:  # the rendering is served: there is a scrape to wait for
            served.wait(DEFER_AT_MOST)
        resume(poller, store, found, rendered, config)

    Exposition.pieces = watched  # type: ignore[method-assign]
    cli.resume = deferred


if __name__ == "__main__":
    argv = sys.argv[1:]
    flags = {"--structs", "--keep-rendering", "--defer-decoding", "--today"}
    if "--today" not in argv:
        state_codec.install(structs="--structs" in argv, keep_rendering="--keep-rendering" in argv)
    if "--defer-decoding" in argv:
        defer_decoding()
    raise SystemExit(cli.main([a for a in argv if a not in flags]))
