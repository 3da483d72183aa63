"""The running process, wired: the client, the store, the poller, the restart from the state
file, the listeners, the scheduler, the signals and the stop; or ``--once``'s one cycle."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from datetime import UTC, datetime
from types import FrameType

from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client import generate_latest

from exporter import PROG, __version__
from exporter.codat.client import CodatClient
from exporter.codat.webhooks.receiver import WebhookReceiver
from exporter.codat.webhooks.signatures import WebhookVerifier
from exporter.config.sections import Config
from exporter.core.clock import SystemClock
from exporter.exposition.instruments import ExporterMetrics
from exporter.exposition.store import SnapshotStore
from exporter.poll.fleet import nothing_yet
from exporter.poll.poller import CycleResult, Poller
from exporter.poll.restart import Restart
from exporter.web.handler import WEBHOOK_PATH
from exporter.web.openfiles import raise_open_files_limit
from exporter.web.reload import WEB_CONFIG_FLAG, ReloadingWebConfig
from exporter.web.server import ExporterServer

log = logging.getLogger("exporter")


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
    restart = Restart(config, store, poller, clock)
    restart.begin(decode_now=args.once)
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
            status_page=config.status_page, shard=config.shard,
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
    restart.finish(stop)
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
