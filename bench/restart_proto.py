"""``python -m exporter`` with the prototype state section of ``state_codec.py`` and no
rendering kept: the simpler restart of issue 19 (decode the state, render it, listen), for
``restart.py`` to time against today's. ``--structs`` keeps the decoded companies as the
Struct mirrors instead of building today's dataclasses from them; ``--keep-rendering``
restarts today's way (the file's rendering served before the state decodes), with the
prototype's section; ``--today`` keeps today's section; ``--decode-at-once`` decodes as soon
as the exporter listens instead of after the first scrape (``exporter.poll.restart``).

    python bench/restart_proto.py [--structs] --config.file PATH --web.listen-address 127.0.0.1:0
"""

from __future__ import annotations

import sys

import state_codec

from exporter import cli
from exporter.poll import restart

if __name__ == "__main__":
    argv = sys.argv[1:]
    flags = {"--structs", "--keep-rendering", "--decode-at-once", "--today"}
    if "--today" not in argv:
        state_codec.install(structs="--structs" in argv, keep_rendering="--keep-rendering" in argv)
    if "--decode-at-once" in argv:
        restart.DEFER_AT_MOST = 0.0
    raise SystemExit(cli.main([a for a in argv if a not in flags]))
