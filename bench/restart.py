"""Start -> a full /metrics after a restart with a state file, for the two restart
mechanisms of issue 19, at 10,000 companies x 25 data types, in one run.

    .venv/bin/python bench/restart.py --workdir /tmp/restart-10k          # about 6 minutes
    .venv/bin/python bench/restart.py --companies 20 --reps 1             # a smoke run

- **today**: ``python -m exporter`` with today's state file (version 4: /metrics' rendering
  beside the state). It publishes the rendering, listens, and decodes the state once a
  first /metrics has been sent whole (``exporter.poll.restart``).
- **today-at-once**: the same, decoding as soon as it listens (``restart_proto.py
  --decode-at-once``): a scrape served while the state decodes gets a share of the
  interpreter only.
- **msgspec**: ``restart_proto.py``, the same exporter with the prototype state section of
  ``state_codec.py`` and no rendering: it decodes the state with msgspec, builds today's
  dataclasses, renders /metrics, then listens. **msgspec-structs**: the same without
  building the dataclasses (the renderer reads the Struct mirrors' attributes).
- **rendering+msgspec**: today's way (the rendering kept in the file, served before the
  state decodes) with the prototype's state section.

One simulated Codat (wall clock frozen) is polled once by ``python -m exporter --once``
with ``state.file``: that file is today's; its state, re-encoded by ``state_codec.encode``,
is the prototype's. ``--workdir`` keeps both for the next run (the fill takes about two
minutes at 10,000). Each path then restarts ``--reps`` times, as production runs (default
rate limit and concurrency, the simulator still up): from the process' start to sending the
first GET /metrics (``Accept-Encoding: gzip``, as Prometheus asks) whose body holds every
company's ``codat_exporter_company_up``, and to having read that body whole. In this
process, ``--reps`` times each: reading and checking the file, decoding the state, the
rendering (``exposition.saved.restored`` today, ``Exposition`` of the decoded state
otherwise), the encoding and the whole ``save`` (with ``exposition.saved.saved`` today); the
prototype's only when one of its paths runs. The load average is read with every figure:
times on a shared machine mean little when it is high.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import requests
import state_codec
import yaml
from common import (
    DATA_TYPES,
    cpu_seconds,
    exporter_settings,
    log,
    machine,
    memory_status,
    start_child,
)
from prometheus_bill import COMPANY_UP_LINE, EXPORTER_LISTENING, started, wait_for_log

from exporter.config.load import parse_config
from exporter.config.sections import Config
from exporter.core.snapshot import Snapshot
from exporter.exposition import saved
from exporter.exposition.render import Exposition
from exporter.poll import statecodec, statefile
from exporter.poll.statecodec import SavedState

T = TypeVar("T")
PROTO = str(Path(__file__).with_name("restart_proto.py"))
PATHS = {
    "today": ["-m", "exporter"],
    "today-at-once": [PROTO, "--today", "--decode-at-once"],
    "msgspec": [PROTO],
    "msgspec-structs": [PROTO, "--structs"],
    "rendering+msgspec": [PROTO, "--keep-rendering"],
}
"""How each restart path starts, after the interpreter."""
STATE_FILES = {
    "today": "today.state",
    "today-at-once": "today.state",
    "msgspec": "msgspec.state",
    "msgspec-structs": "msgspec.state",
    "rendering+msgspec": "rendering+msgspec.state",
}
"""The file each path restarts with, in the work directory."""


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def timed(reps: int, action: Callable[[], T]) -> tuple[list[tuple[float, float]], T]:
    """Wall and CPU seconds of each of ``reps`` calls (a collection first, so none pays
    another's garbage) and the last result. On a loaded machine the CPU seconds are the
    figure to compare: the wall clock also counts the time other processes had the cores."""
    seconds = []
    for _ in range(reps):
        gc.collect()
        began, cpu = time.perf_counter(), time.process_time()
        result = action()
        seconds.append((time.perf_counter() - began, time.process_time() - cpu))
    return seconds, result


def fill(workdir: Path, companies: int) -> dict[str, Any]:
    """Today's state file of ``companies``, polled once by ``python -m exporter --once``."""
    settings = exporter_settings("http://127.0.0.1:1", 16)
    sim_args = ("--companies", str(companies), "--data-types", str(DATA_TYPES), "--frozen")
    with start_child("simulator", "sim_proc.py", *sim_args) as sim:
        settings["codat"]["base_url"] = sim.hello["url"]
        settings["state"] = {"file": str(workdir / "today.state")}
        (workdir / "fill.yml").write_text(yaml.safe_dump(settings))
        log(f"fill: python -m exporter --once polls {companies:,} companies")
        began = time.monotonic()
        with (workdir / "fill.log").open("wb") as out:
            done = subprocess.run(
                [sys.executable, "-m", "exporter", "--config.file", str(workdir / "fill.yml"),
                 "--once"], stdout=subprocess.DEVNULL, stderr=out, timeout=1200, check=False,
            )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"--once exited {done.returncode}: see {workdir / 'fill.log'}")
        return {"seconds": time.monotonic() - began, "simulator_time": sim.hello["time"]}


def in_process(workdir: Path, config: Config, reps: int, prototype: bool) -> dict[str, Any]:
    """Reading, decoding, rendering and saving, today's and (``prototype``) the prototype's,
    in this process."""
    figures: dict[str, Any] = {"load": {"start": load()}}
    state, rendered = _today(workdir, config, reps, figures)
    figures["load"]["today"] = load()
    if not prototype:
        return figures
    decoded, structs = _msgspec(workdir, config, reps, figures, state, rendered)
    figures["load"]["msgspec"] = load()

    def rendering(companies: Mapping[str, Any]) -> Exposition:
        snapshot = Snapshot(
            companies=dict(companies),
            monitored=len(companies),
            poll_duration=state.poll_duration,
            last_poll=state.last_poll,
        )
        return Exposition(snapshot, config.freshness, config.poll.interval, config.metrics)

    figures["render, dataclasses"], a = timed(reps, lambda: rendering(decoded.companies))
    figures["render, Structs"], b = timed(reps, lambda: rendering(structs.companies))
    if a.render(0.0) != b.render(0.0):
        raise RuntimeError("the Structs render another text than the dataclasses")
    figures["load"]["end"] = load()
    return figures


def _today(
    workdir: Path, config: Config, reps: int, figures: dict[str, Any]
) -> tuple[SavedState, bytes]:
    """Today's file: read and checked, decoded, its rendering restored, saved again."""
    shard, today_file = config.shard, workdir / "today.state"
    figures["today read"], found = timed(reps, lambda: statefile.read(today_file, shard))
    if found is None:
        raise RuntimeError(f"{today_file} does not load")
    figures["today decode"], state = timed(reps, found.state)
    if state is None:
        raise RuntimeError(f"{today_file}: its state does not decode")
    figures["today rendering restored"], served = timed(reps, lambda: saved.restored(
        found.rendered, config.freshness, config.poll.interval, config.metrics))  # fmt: skip
    if served is None:
        raise RuntimeError(f"{today_file}: written by another build (its rendering's "
                           f"fingerprint differs); remove {workdir} to fill it again")  # fmt: skip
    figures["today exposition.saved"], rendered = timed(reps, lambda: saved.saved(served))
    figures["today encode"], _ = timed(reps, lambda: statecodec.encode(state))
    out = workdir / "scratch.state"
    figures["today save"], _ = timed(
        reps, lambda: statefile.save(out, state, shard, saved.saved(served))
    )
    out.unlink()
    figures["today file bytes"] = today_file.stat().st_size
    figures["today rendering bytes"] = len(rendered)
    return state, rendered


def _msgspec(
    workdir: Path,
    config: Config,
    reps: int,
    figures: dict[str, Any],
    state: SavedState,
    rendered: bytes,
) -> tuple[SavedState, SavedState]:
    """The prototype's file: encoded, saved, read, decoded both ways; and the file of
    today's way with the prototype's section, saved with the rendering."""
    shard, proto_file = config.shard, workdir / "msgspec.state"
    with state_codec.installed(keep_rendering=True):
        statefile.save(workdir / "rendering+msgspec.state", state, shard, rendered)
    with state_codec.installed():
        figures["msgspec encode"], section = timed(reps, lambda: state_codec.encode(state))
        figures["msgspec save"], _ = timed(reps, lambda: statefile.save(proto_file, state, shard))
        figures["msgspec file bytes"] = proto_file.stat().st_size
        figures["msgspec state bytes"] = len(section)
        figures["msgspec read"], found = timed(reps, lambda: statefile.read(proto_file, shard))
        if found is None:
            raise RuntimeError(f"{proto_file} does not load")
        figures["msgspec decode, dataclasses"], decoded = timed(
            reps, lambda: state_codec.decode(found.document, found.saved_at)
        )
        if decoded.companies != state.companies:
            raise RuntimeError("the prototype does not round-trip")
        figures["msgspec decode, Structs"], structs = timed(
            reps, lambda: state_codec.decode_structs(found.document, found.saved_at)
        )
        figures["msgspec keyed encode"], keyed = timed(
            reps, lambda: state_codec.encode_keyed(state)
        )
        figures["msgspec keyed state bytes"] = len(keyed)
        figures["msgspec keyed decode, straight to dataclasses"], straight = timed(
            reps, lambda: state_codec.decode_keyed(keyed, found.saved_at)
        )
        if straight.companies != state.companies:
            raise RuntimeError("the keyed variant does not round-trip")
        keyed = b""  # 98 MB: not kept for the renders below
        fleet = state_codec.fleet_of(decoded)
        figures["msgspec encode, from Structs"], _ = timed(
            reps, lambda: state_codec.encode_structs(fleet, structs.companies)
        )
    return decoded, structs


def restart(path: str, workdir: Path, state_file: Path, companies: int) -> dict[str, Any]:
    """One restart: process start -> GET /metrics holding every company, sent and read."""
    settings = yaml.safe_load((workdir / "fill.yml").read_text())
    settings["codat"] = {k: settings["codat"][k] for k in ("base_url", "api_key")}
    settings["state"] = {"file": str(state_file)}
    config_path = workdir / "restart.yml"
    config_path.write_text(yaml.safe_dump(settings))
    log_path = workdir / "restart.log"
    argv = [sys.executable, *PATHS[path], "--config.file", str(config_path),
            "--web.listen-address", "127.0.0.1:0"]  # fmt: skip
    result: dict[str, Any] = {"path": path, "load_before": load()}
    began = time.monotonic()
    with started(argv, log_path) as process:
        url = wait_for_log(log_path, EXPORTER_LISTENING, process, 120)
        result["listening"] = time.monotonic() - began
        deadline = began + 120
        attempts = 0
        while True:
            attempts += 1
            sent = time.monotonic() - began
            with requests.get(url + "/metrics", headers={"Accept-Encoding": "gzip"},
                              stream=True, timeout=120) as response:  # fmt: skip
                body = response.raw.read(decode_content=False)
                read = time.monotonic() - began
            cpu = cpu_seconds(process.pid)
            if gzip.decompress(body).count(COMPANY_UP_LINE) >= companies:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{path}: /metrics short of {companies} companies in time")
            time.sleep(0.02)
        result.update(full_sent=sent, full_read=read, attempts=attempts, cpu_seconds=cpu,
                      gzip_bytes=len(body))  # fmt: skip
        while requests.get(url + "/", timeout=30).status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{path}: the status page never came back")
            time.sleep(0.02)
        result["status_page"] = time.monotonic() - began
        result["memory"] = memory_status(process.pid)
    result["load_after"] = load()
    log(f"  {path}: listening {result['listening']:.2f}s, full /metrics sent "
        f"{sent:.2f}s read {read:.2f}s, status page {result['status_page']:.2f}s "
        f"(load {result['load_before']})")  # fmt: skip
    return result


def median(values: list[float]) -> float:
    return statistics.median(values)


def summary(figures: dict[str, Any], runs: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| path | listening s | full /metrics sent s | read whole s | status page s "
        "| its CPU s by then | peak RSS MB | load (1 min) |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for path in PATHS:
        mine = [r for r in runs if r["path"] == path]
        if not mine:
            continue
        lines.append(
            f"| {path} | {median([r['listening'] for r in mine]):.2f} "
            f"| {median([r['full_sent'] for r in mine]):.2f} "
            f"| {median([r['full_read'] for r in mine]):.2f} "
            f"| {median([r['status_page'] for r in mine]):.2f} "
            f"| {median([r['cpu_seconds'] for r in mine]):.2f} "
            f"| {max(r['memory']['VmHWM'] for r in mine):.0f} "
            f"| {', '.join(r['load_before'].split()[0] for r in mine)} |"
        )
    lines += ["", "| in this process | median s | median CPU s | each s |", "|---|---:|---:|---|"]
    for key, value in figures.items():
        if isinstance(value, list):
            walls, cpus = [wall for wall, _ in value], [cpu for _, cpu in value]
            each = ", ".join(f"{v:.3f}" for v in walls)
            lines.append(f"| {key} | {median(walls):.3f} | {median(cpus):.3f} | {each} |")
    lines += ["", *(f"- {k}: {v:,}" for k, v in figures.items() if isinstance(v, int))]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--companies", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=3, help="restarts per path, and in-process")
    parser.add_argument("--workdir", type=Path, help="keep the state files here for next time")
    parser.add_argument("--paths", default=",".join(PATHS), help="comma-separated, of: "
                        + ", ".join(PATHS))  # fmt: skip
    parser.add_argument("--json", action="store_true", help="the figures as JSON")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="restart-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        filled = None
        if not (workdir / "today.state").exists():
            filled = fill(workdir, args.companies)
        config = parse_config(yaml.safe_load((workdir / "fill.yml").read_text()))
        log("in this process: read, decode, render, encode, save")
        paths = [p for p in args.paths.split(",") if p]
        prototype = any(STATE_FILES[p] != "today.state" for p in paths)
        figures = in_process(workdir, config, args.reps, prototype)
        runs = []
        sim_args = ("--companies", str(args.companies), "--data-types", str(DATA_TYPES), "--frozen")
        with start_child("simulator", "sim_proc.py", *sim_args) as sim:
            settings = yaml.safe_load((workdir / "fill.yml").read_text())
            settings["codat"]["base_url"] = sim.hello["url"]
            (workdir / "fill.yml").write_text(yaml.safe_dump(settings))
            for rep in range(args.reps):
                for path in paths:
                    state_file = workdir / STATE_FILES[path]
                    log(f"restart {rep + 1}/{args.reps}: {path}")
                    runs.append(restart(path, workdir, state_file, args.companies))
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps({"machine": machine(), "fill": filled, "in_process": figures,
                          "restarts": runs}, indent=1))  # fmt: skip
        return 0
    print(f"Machine: {machine()}.")
    print(f"{args.companies:,} companies x {DATA_TYPES} data types, {args.reps} repetitions.")
    print()
    print("\n".join(summary(figures, runs)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
