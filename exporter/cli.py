"""Command line: flags in the style of the Go exporters, logging, and then the configuration
checked (``--check-config``), or the process run (``exporter.app``)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Sequence

from exporter import PROG, __version__
from exporter.app import run
from exporter.config.listen import (
    DEFAULT_LISTEN_ADDRESS,
    LISTEN_FLAG,
    overlap,
    parse_listen_address,
    shown,
)
from exporter.config.load import load_config
from exporter.config.sections import Config
from exporter.config.settings import ConfigError
from exporter.core.clock import SystemClock
from exporter.core.phrases import plural
from exporter.poll import sizing
from exporter.web.reload import WEB_CONFIG_FLAG, ReloadingWebConfig
from exporter.web.server import DEFAULT_MAX_REQUESTS

CONFIG_ENV = "CODAT_EXPORTER_CONFIG"
"""--config.file's default. The image sets it, so that ``docker run IMAGE --log.level=debug``
keeps the config path; ``--demo`` ignores it, where an explicit --config.file is an error."""
log = logging.getLogger("exporter")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Prometheus exporter for the freshness of Codat's cached company data.",
    )
    parser.add_argument(
        "--config.file", dest="config_file", metavar="PATH",
        help=f"YAML configuration file (env {CONFIG_ENV})",
    )  # fmt: skip
    parser.add_argument(
        LISTEN_FLAG, dest="listen_address", metavar="ADDR",
        default=DEFAULT_LISTEN_ADDRESS, help="address to serve /metrics on (default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        WEB_CONFIG_FLAG, dest="web_config_file", metavar="PATH",
        help="TLS and basic auth, in the exporter-toolkit web configuration format",
    )  # fmt: skip
    parser.add_argument(
        "--web.health-without-auth", dest="health_without_auth", action="store_true",
        help="serve /-/healthy and /-/ready without basic auth (for probes)",
    )  # fmt: skip
    parser.add_argument(
        "--web.max-requests", dest="max_requests", metavar="N", type=_max_requests,
        default=DEFAULT_MAX_REQUESTS,
        help="most responses served at once per listener; beyond, 503 (/-/healthy and "
        "/-/ready are always answered). 0: no limit (default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--demo", action="store_true",
        help="poll an embedded simulated Codat instead of api.codat.io (no account needed)",
    )  # fmt: skip
    parser.add_argument(
        "--once", action="store_true",
        help="poll once, print the metrics to stdout, exit 0 if every company (and discovery) "
        "was polled, else 1; 130 on SIGINT, 143 on SIGTERM",
    )  # fmt: skip
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="validate the configuration, print its request estimate, and exit 0 or 2",
    )
    parser.add_argument(
        "--log.level", dest="log_level", default="info",
        choices=["debug", "info", "warning", "error"], help="(default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--log.format", dest="log_format", default="text", choices=["text", "json"],
        help="(default %(default)s)",
    )  # fmt: skip
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    return parser


def _max_requests(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number, 0 or more")
    return int(text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


_CONTROL = {
    **{c: f"\\x{c:02x}" for c in [*range(32), *range(127, 160)] if c != 9},
    **{10: "\\n", 13: "\\r", 0x2028: "\\u2028", 0x2029: "\\u2029"},
}
"""C0 and C1 controls (tab aside) and the Unicode line and paragraph separators: every
character that some terminal or log tool takes as a line break or an escape."""


class TextFormatter(logging.Formatter):
    r"""One line per record: a company id or name from Codat may hold a newline or a
    terminal escape, which would forge a log line or recolour a terminal. Control
    characters in the message are escaped; tracebacks keep their lines.

    >>> record = logging.LogRecord("exporter", logging.WARNING, "", 0, "company %s: 500",
    ...                            ("id\nWARNING forged\x1b[31m",), None)
    >>> print(TextFormatter("%(levelname)s %(message)s").format(record))
    WARNING company id\nWARNING forged\x1b[31m: 500
    """

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = record.message.translate(_CONTROL)
        return super().formatMessage(record)


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("urllib3").setLevel(max(logging.WARNING, root.level))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.demo:
        args.config_file = args.config_file or os.environ.get(CONFIG_ENV)
    setup_logging(args.log_level, args.log_format)
    stop = threading.Event()
    clock = SystemClock(stop)
    simulator = None
    demo_files = None
    try:
        listening = _flag_address(args.listen_address)
        web_config = ReloadingWebConfig(args.web_config_file)
        if args.demo:
            if args.config_file:
                raise ConfigError("--demo runs its own simulated Codat; drop --config.file")
            from exporter.demo import start_demo

            demo_files = tempfile.TemporaryDirectory(prefix="codat-exporter-demo-")
            simulator, config = start_demo(clock, demo_files.name)
        elif not args.config_file:
            raise ConfigError("no configuration: pass --config.file PATH, or --demo to try it")
        else:
            config = load_config(args.config_file)
        check_start(config, listening)
    except (ConfigError, ValueError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    if args.check_config:
        # The start-up log's estimate, but for --demo, whose simulated Codat has no quota.
        budget = sizing.Check((), None) if args.demo else sizing.check(config)
        warnings = (*config.warnings, *filter(None, [budget.warning]))
        for warning in warnings:
            print(f"{PROG}: warning: {warning}", file=sys.stderr)
        verdict = f"OK, with {plural(len(warnings), 'warning')} (above)" if warnings else "OK"
        print(f"{args.config_file or 'demo'}: configuration {verdict}: {config.summary()}")
        for line in budget.lines:
            print(line)
        return 0
    for warning in config.warnings:
        log.warning("%s", warning)
    try:
        return run(config, args, clock, stop, web_config)
    finally:
        if simulator is not None:
            simulator.stop()
        if demo_files is not None:
            demo_files.cleanup()


def _flag_address(text: str) -> tuple[str, int]:
    try:
        return parse_listen_address(text)
    except ValueError as exc:
        raise ConfigError(f"{LISTEN_FLAG}: {exc}") from None


def check_start(config: Config, listening: tuple[str, int]) -> None:
    """What the start needs besides a valid file, checked before ``--check-config`` says OK:
    the webhook listener's address free of the main one, the state file's directory there
    and writable. ``listening``: where ``--web.listen-address`` binds."""
    hooks = config.webhooks
    own = hooks.enabled and hooks.listen_address
    if own and overlap(parse_listen_address(hooks.listen_address), listening):
        raise ConfigError(
            f"webhooks.listen_address: {hooks.listen_address!r} takes the port {LISTEN_FLAG} "
            f"listens on ({shown(*listening)}); give it another port, or leave it empty to "
            "take webhooks on the main listener"
        )
    config.state.check_directory()
