"""Command line: flags in the style of the Go exporters, then run, check or poll once."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime
from types import FrameType

from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client import generate_latest

from exporter import __version__
from exporter.codat import refreshjournal
from exporter.codat.client import CodatClient
from exporter.codat.webhooks.receiver import WebhookReceiver
from exporter.codat.webhooks.signatures import WebhookVerifier
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
from exporter.core import atomicfile
from exporter.core.clock import SystemClock
from exporter.core.snapshot import Snapshot
from exporter.exposition import saved
from exporter.exposition.instruments import ExporterMetrics
from exporter.exposition.render import Exposition
from exporter.exposition.store import SnapshotStore
from exporter.poll import statefile
from exporter.poll.poller import CycleResult, Poller
from exporter.poll.statecodec import StateFileError
from exporter.web.handler import WEBHOOK_PATH
from exporter.web.openfiles import raise_open_files_limit
from exporter.web.reload import ReloadingWebConfig
from exporter.web.server import DEFAULT_MAX_REQUESTS, ExporterServer

PROG = "codat-freshness-exporter"
WEB_CONFIG_FLAG = "--web.config.file"
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
        "--check-config", action="store_true", help="validate the configuration and exit 0 or 2"
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
        for warning in config.warnings:
            print(f"{PROG}: warning: {warning}", file=sys.stderr)
        print(f"{args.config_file or 'demo'}: configuration OK: {config.summary()}")
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


def run(
    config: Config,
    args: argparse.Namespace,
    clock: SystemClock,
    stop: threading.Event,
    web_config: ReloadingWebConfig,
) -> int:
    metrics = ExporterMetrics()
    store = SnapshotStore(nothing_yet(config))
    client = CodatClient(config.codat, metrics, clock, note_facts=store.note)
    # The demo polls a simulator every 15 s: a quota warning would only confuse.
    poller = Poller(
        config, client, store, metrics, clock, spread=not args.once, quota_warning=not args.demo
    )
    found = read_state_file(config)
    rendered = None if found is None else publish_rendering(store, found, config)
    if args.once or rendered is None:  # nothing to serve meanwhile: decode before listening
        resume(poller, store, found, rendered, config)
        found = rendered = None  # the file's bytes: about 100 MB at 10,000 companies
    if args.once:
        return poll_once(poller, store, metrics, clock, stop)
    receiver = None
    if config.webhooks.enabled:
        verifier = WebhookVerifier(config.webhooks.secret, clock)
        receiver = WebhookReceiver(
            verifier, clock, metrics.webhooks, poller, config.webhooks.debounce
        )
    servers: list[ExporterServer] = []
    raise_open_files_limit()  # before the listeners size themselves by it
    address = args.listen_address
    try:
        on_main = receiver if not config.webhooks.listen_address else None
        servers.append(ExporterServer(
            address, store, metrics, clock, web_config=web_config,
            webhooks=on_main, webhook_max_bytes=config.webhooks.max_body_bytes,
            health_without_auth=args.health_without_auth, max_requests=args.max_requests,
        ))  # fmt: skip
        if receiver is not None and config.webhooks.listen_address:
            address = config.webhooks.listen_address
            servers.append(ExporterServer(
                address, store, metrics, clock, webhooks=receiver,
                webhook_max_bytes=config.webhooks.max_body_bytes, serve_metrics=False,
                max_requests=args.max_requests,
            ))  # fmt: skip
    except OSError as exc:
        log.error("cannot listen on %s: %s", address, exc.strerror)
        for server in servers:
            server.server_close()  # never started: stop() would wait for it forever
        return 1

    on_stop_signal(stop)
    for server in servers:
        server.start()
    log.info("%s %s: %s", PROG, __version__, config.summary())
    served = web_config.config.summary()
    if not args.web_config_file:
        served += f": {WEB_CONFIG_FLAG} not set"
    log.info("listening on %s: serving metrics at %s/metrics (%s)",
             servers[0].listening, servers[0].url, served)  # fmt: skip
    if receiver is not None:
        hooks = servers[-1]
        own = f"listening on {hooks.listening}: " if hooks is not servers[0] else ""
        log.info("%saccepting Codat webhooks at %s%s", own, hooks.url, WEBHOOK_PATH)
    if found is not None:
        resume(poller, store, found, rendered, config)
        found = rendered = None
    if not stop.is_set():  # a signal while the state decoded: no cycle to start
        scheduler = start_scheduler(poller, config.poll.interval, receiver)
        wait_for_stop(stop)
        scheduler.shutdown(wait=False)
    poller.stop()
    for server in servers:
        server.stop()
    client.close()
    log.info("stopped")
    return 0


SIGNAL_CHECK = 0.5
"""Seconds the main thread sleeps at most between looks at ``stop`` (``wait_for_stop``)."""


def wait_for_stop(stop: threading.Event) -> None:
    """Return once ``stop`` is set, by a signal handler among others.

    Never in one wait without a timeout: the kernel may hand SIGTERM to any of the
    process's threads, and then the main thread, asleep on a lock with no timeout, is not
    woken to run Python's handler; the process went on polling, deaf to the signal (5 of
    40 runs on a loaded machine). A wait with a timeout wakes, and the handler runs
    within ``SIGNAL_CHECK`` seconds.
    """
    while not stop.wait(SIGNAL_CHECK):
        pass


def read_state_file(config: Config) -> statefile.StateFile | None:
    """Remove what writes of the state file and of the refresh journal beside it cut short
    left, then read the state file (if set)."""
    if not config.state.file:
        return None
    atomicfile.remove_leftovers(config.state.file)
    atomicfile.remove_leftovers(config.state.file + refreshjournal.SUFFIX)
    return statefile.read(config.state.file, config.shard, config.state.max_file_bytes)


def nothing_yet(config: Config) -> Exposition:
    """What /metrics serves before anything is known: the exporter's own metrics only."""
    return Exposition(Snapshot(), config.freshness, config.poll.interval, config.metrics)


def publish_rendering(
    store: SnapshotStore, found: statefile.StateFile, config: Config
) -> Exposition | None:
    """Publish the state file's rendering, when this configuration renders the same text:
    /metrics serves it from the first request, while the state itself is decoded."""
    if not found.rendered:
        return None
    try:
        exposition = saved.restored(
            found.rendered, config.freshness, config.poll.interval, config.metrics
        )
    except (ValueError, KeyError, TypeError, OverflowError, zlib.error) as exc:
        log.warning("state file %s: its rendering is unusable (%s); rendering the state "
                    "instead", found.path, exc)  # fmt: skip
        return None
    if exposition is None:
        log.info("state file %s: rendered under another configuration or version; rendering "
                 "the state instead", found.path)  # fmt: skip
    else:
        store.publish(exposition)
    return exposition


def resume(
    poller: Poller,
    store: SnapshotStore,
    found: statefile.StateFile | None,
    rendered: Exposition | None,
    config: Config,
) -> None:
    """Decode the state file and resume from it. A state that cannot be used withdraws
    the rendering served meanwhile: nothing is ever half loaded."""
    saved = None if found is None else found.state()
    if found is not None and saved is not None:
        try:
            poller.restore(saved, rendered)
            return
        except StateFileError as exc:
            log.warning("state file %s ignored: %s", found.path, exc)
    if rendered is not None and store.current.snapshot.loading:
        store.publish(nothing_yet(config))


def on_stop_signal(stop: threading.Event) -> list[int]:
    """Make SIGINT and SIGTERM log one line and set ``stop``; the list gets the signal."""
    received: list[int] = []

    def handle(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s; shutting down", signal.Signals(signum).name)
        received.append(signum)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return received


def poll_once(
    poller: Poller,
    store: SnapshotStore,
    metrics: ExporterMetrics,
    clock: SystemClock,
    stop: threading.Event,
) -> int:
    """``--once``: one cycle, then on stdout what a scrape of /metrics would get (the
    exporter's own counters included); 0 when every company (and discovery) was polled,
    else 1.

    SIGINT or SIGTERM ends it within a second, whatever the requests in flight are doing,
    with the shell's code for the signal (128 + its number: 130, 143) and nothing on stdout.
    The cycle runs in a thread of its own so that the main thread stays free for the signal;
    there is nothing to save, so the process exits without waiting for the workers.
    """
    received = on_stop_signal(stop)
    results: list[CycleResult] = []
    finished = threading.Event()

    def cycle() -> None:
        try:
            results.append(poller.run_cycle())
        finally:
            finished.set()

    threading.Thread(target=cycle, name="once", daemon=True).start()
    while not finished.wait(0.1) and not received:
        pass
    if received:
        poller.stop(wait=False)
        logging.shutdown()
        os._exit(128 + received[0])
    poller.stop()
    sys.stdout.buffer.write(store.current.render(clock.time(), generate_latest(metrics.registry)))
    sys.stdout.flush()
    return 0 if results and results[0].all_succeeded else 1


def start_scheduler(
    poller: Poller, interval: float, webhooks: WebhookReceiver | None = None
) -> BackgroundScheduler:
    """Run ``poller.run_cycle`` now and then every ``interval``; a slow cycle never overlaps
    the next (one instance at most; missed runs coalesce into one). Webhook work, if any,
    runs every second beside it."""
    scheduler = BackgroundScheduler(timezone=UTC)
    scheduler.add_job(
        poller.run_cycle,
        "interval",
        seconds=interval,
        next_run_time=datetime.now(UTC),
        max_instances=1,
        coalesce=True,
        misfire_grace_time=max(1, int(interval)),
        id="poll",
        name="poll Codat data status",
    )
    if webhooks is not None:
        scheduler.add_job(
            webhooks.tick, "interval", seconds=1, max_instances=1, coalesce=True,
            id="webhooks", name="act on Codat webhooks",
        )  # fmt: skip
    scheduler.start()
    return scheduler
