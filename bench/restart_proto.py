"""``python -m exporter`` with the prototype state section of ``state_codec.py`` and no
rendering kept: the simpler restart of issue 19 (decode the state, render it, listen), for
``restart.py`` to time against today's. ``--structs`` keeps the decoded companies as the
Struct mirrors instead of building today's dataclasses from them; ``--keep-rendering``
restarts today's way (the file's rendering served while the state decodes), with the
prototype's section.

    python bench/restart_proto.py [--structs] --config.file PATH --web.listen-address 127.0.0.1:0
"""

from __future__ import annotations

import sys

import state_codec

from exporter.cli import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    flags = {"--structs", "--keep-rendering"}
    state_codec.install(structs="--structs" in argv, keep_rendering="--keep-rendering" in argv)
    raise SystemExit(main([a for a in argv if a not in flags]))
