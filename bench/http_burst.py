"""The exporter's HTTP listener under slow clients and bursts (issue 16, item 3), measured on
a real ``python -m exporter`` process over loopback:

1. **slow clients**: ``--slow-clients`` connections (40, ``--web.max-requests``' default)
   each send half a request head and then one more byte every 2 s, and reconnect when the
   server closes them (a slowloris), for ``--slow-seconds``; meanwhile ``/-/healthy``,
   ``/-/ready`` and ``/metrics`` are asked in turn, one request every 0.5 s, each on a new
   connection with a 5 s timeout. Figures: their answers by status, and their latency.
2. **burst**: ``--connections`` (2,000) connections opened at once, each sending
   ``GET /metrics`` with ``Connection: close`` and reading until the server closes.
3. **webhooks**: ``--deliveries`` (500) signed webhook deliveries sent at once to an exporter
   with webhooks enabled, polling a simulated Codat (``python -m exporter.simulator``).

In 2 and 3 every client has ``--client-timeout`` seconds (10, Prometheus' default scrape
timeout) from its connect to its answer. A client is answered when it got a status line;
otherwise it timed out (no answer in time, the connect included), was reset, or the server
closed without a word. Medians are from one run.

    .venv/bin/python bench/http_burst.py                        # this tree, about a minute
    git archive main | (mkdir -p /tmp/before && tar -x -C /tmp/before)
    .venv/bin/python bench/http_burst.py --before /tmp/before --output bench/RESULTS.md

``--before DIR`` measures the exporter in DIR (a checkout or an export of older code) the
same way first, for a before/after table. This process raises its own open files limit
for the burst; the exporter raises its own (or, before, did not).
"""

from __future__ import annotations

import argparse
import base64
import errno
import http.client
import json
import os
import re
import resource
import secrets
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import insert_below_title, log, machine

from exporter.codat.webhooks.signatures import sign

SERVING = re.compile(r"serving metrics at http://127\.0\.0\.1:(\d+)/metrics")
SIMULATOR = re.compile(r"at http://127\.0\.0\.1:(\d+)")
API_KEY = "bench-api-key-http-burst"
START_TIMEOUT = 60.0
PROBE_EVERY = 0.5
PROBE_TIMEOUT = 5.0
TRICKLE_EVERY = 2.0
PROBED = ("/-/healthy", "/-/ready", "/metrics")


# --- the exporter under test -----------------------------------------------------------------


class Process:
    """A child process whose stderr (or stdout) lines are collected as they come."""

    def __init__(self, argv: Sequence[str], cwd: Path | None, *, stdout: bool = False) -> None:
        env = dict(os.environ)
        if cwd is not None:  # import that tree's exporter, not the installed one
            env["PYTHONPATH"] = str(cwd)
        self.process = subprocess.Popen(
            [sys.executable, *argv], cwd=cwd, env=env, text=True,
            stdout=subprocess.PIPE if stdout else subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        stream = self.process.stdout if stdout else self.process.stderr
        if stdout:
            threading.Thread(target=self._drain, args=(self.process.stderr,), daemon=True).start()
        self.lines: list[str] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()

    @staticmethod
    def _drain(stream: Any) -> None:
        for _ in stream:
            pass

    def wait_for(self, pattern: re.Pattern[str]) -> re.Match[str]:
        def found() -> re.Match[str] | None:
            return next(filter(None, map(pattern.search, self.lines)), None)

        with self._changed:
            self._changed.wait_for(
                lambda: found() is not None or self.process.poll() is not None, START_TIMEOUT
            )
            match = found()
        if match is None:
            raise RuntimeError(f"no {pattern.pattern!r} from {self.process.args!r}:\n"
                               + "".join(self.lines[-20:]))  # fmt: skip
        return match

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(15)


@contextmanager
def exporter(code: Path | None, *args: str) -> Iterator[int]:
    """``python -m exporter *args`` from ``code`` (None: this tree), ready; yields its port."""
    process = Process(["-m", "exporter", "--web.listen-address", "127.0.0.1:0", *args], code)
    try:
        port = int(process.wait_for(SERVING)[1])
        deadline = time.monotonic() + START_TIMEOUT
        while probe(port, "/-/ready")[0] != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("the exporter never became ready")
            time.sleep(0.2)
        yield port
    finally:
        process.stop()


def probe(port: int, path: str) -> tuple[int | str, float]:
    """One GET on a new connection: (status or what went wrong, seconds)."""
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=PROBE_TIMEOUT)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        outcome: int | str = response.status
    except TimeoutError:
        outcome = "timeout"
    except (ConnectionError, http.client.HTTPException, OSError) as exc:
        outcome = type(exc).__name__
    finally:
        connection.close()
    return outcome, time.monotonic() - started


# --- 1. slow clients -------------------------------------------------------------------------


class Slowloris:
    """``count`` connections that never finish their request head; one more byte each every
    TRICKLE_EVERY seconds, and a new connection for each one the server closes."""

    def __init__(self, port: int, count: int) -> None:
        self._port = port
        self._sockets = [self._connect() for _ in range(count)]
        self.closed_by_server = 0
        self.answers: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self._port), timeout=5)
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        sock.setblocking(False)
        return sock

    def _run(self) -> None:
        while not self._stop.wait(TRICKLE_EVERY):
            for index, sock in enumerate(self._sockets):
                try:
                    answer = sock.recv(65536)
                    closed = True
                except BlockingIOError:
                    answer, closed = b"", False
                except OSError:
                    answer, closed = b"", True
                if answer.startswith(b"HTTP/1."):
                    self.answers[answer.split(b" ", 2)[1].decode()] += 1
                if not closed:
                    try:
                        sock.send(b"a")
                        continue
                    except OSError:
                        pass
                self.closed_by_server += 1
                sock.close()
                self._sockets[index] = self._connect()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for sock in self._sockets:
            sock.close()


def slow_clients(port: int, count: int, seconds: float) -> dict[str, Any]:
    slow = Slowloris(port, count)
    probes: dict[str, list[tuple[int | str, float]]] = {path: [] for path in PROBED}
    time.sleep(0.5)  # every slow client accepted and waiting
    began = time.monotonic()
    try:
        for turn in range(int(seconds / PROBE_EVERY)):
            path = PROBED[turn % len(PROBED)]
            probes[path].append(probe(port, path))
            time.sleep(max(0.0, began + (turn + 1) * PROBE_EVERY - time.monotonic()))
    finally:
        slow.stop()
    return {
        "probes": {
            path: {
                "answers": dict(Counter(str(outcome) for outcome, _ in results)),
                "latency_median": statistics.median(s for _, s in results),
                "latency_max": max(s for _, s in results),
            }
            for path, results in probes.items()
        },
        "slow_closed_by_server": slow.closed_by_server,
        "slow_answers": dict(slow.answers),
    }


# --- 2. and 3. bursts ------------------------------------------------------------------------


@dataclass
class Client:
    sock: socket.socket
    request: bytes
    received: bytearray = field(default_factory=bytearray)
    sent: bool = False
    outcome: str = ""
    answered_after: float = 0.0

    def status(self) -> str:
        """The answer's status code, once its status line came; else ""."""
        if self.received.startswith(b"HTTP/1.") and len(self.received) >= 12:
            return self.received[9:12].decode()
        return ""


def burst(port: int, requests: Sequence[bytes], timeout: float) -> dict[str, Any]:
    """Open one connection per request at once, send it, read until the server closes; each
    client is done at ``timeout`` seconds from the start at the latest."""
    selector = selectors.DefaultSelector()
    clients: list[Client] = []
    began = time.monotonic()
    for request in requests:
        client = Client(socket.socket(), request)
        clients.append(client)
        client.sock.setblocking(False)
        code = client.sock.connect_ex(("127.0.0.1", port))
        if code in (0, errno.EINPROGRESS):
            selector.register(client.sock, selectors.EVENT_WRITE, client)
        else:
            client.outcome = errno.errorcode.get(code, str(code))
            client.sock.close()
    waiting = sum(1 for client in clients if not client.outcome)
    deadline = began + timeout
    while waiting and time.monotonic() < deadline:
        for key, _ in selector.select(min(0.5, max(0.0, deadline - time.monotonic()))):
            client = key.data
            if not client.sent:
                _send(selector, client)
            else:
                _receive(client, began)
            if client.outcome:
                selector.unregister(client.sock)
                client.sock.close()
                waiting -= 1
    for client in clients:
        if not client.outcome:
            client.outcome = client.status() or "timeout"
            selector.unregister(client.sock)
            client.sock.close()
    selector.close()
    answered = [client.answered_after for client in clients if client.outcome.isdigit()]
    outcomes = Counter(client.outcome for client in clients)
    return {
        "clients": len(clients),
        "outcomes": dict(sorted(outcomes.items())),
        "unanswered": sum(n for outcome, n in outcomes.items() if not outcome.isdigit()),
        "answer_median": statistics.median(answered) if answered else None,
        "answer_max": max(answered) if answered else None,
    }


def _send(selector: selectors.BaseSelector, client: Client) -> None:
    code = client.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if code:
        client.outcome = errno.errorcode.get(code, str(code))
        return
    try:
        client.sock.send(client.request)  # small: it fits a fresh socket's buffer
    except OSError as exc:
        client.outcome = type(exc).__name__
        return
    client.sent = True
    selector.modify(client.sock, selectors.EVENT_READ, client)


def _receive(client: Client, began: float) -> None:
    try:
        chunk = client.sock.recv(65536)
    except BlockingIOError:
        return
    except OSError as exc:  # a reset, most often
        client.outcome = client.status() or type(exc).__name__
        return
    if chunk and not client.received:
        client.answered_after = time.monotonic() - began
    if len(client.received) < 64:
        client.received += chunk[:64]
    if not chunk:
        client.outcome = client.status() or "closed unanswered"


def scrapes(count: int) -> list[bytes]:
    return [b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"] * count


def deliveries(secret: str, company_ids: Sequence[str], count: int) -> list[bytes]:
    """Signed ``read.completed`` deliveries as Codat sends them, each with its own id."""
    timestamp = int(time.time())
    made = []
    for index in range(count):
        body = json.dumps({
            "id": str(uuid.uuid4()), "eventType": "read.completed",
            "generatedDate": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "payload": {"referenceCompany": {"id": company_ids[index % len(company_ids)]},
                        "dataTypes": [{"dataType": "invoices", "status": "Complete"}]},
        }).encode()  # fmt: skip
        msg_id = f"msg_{uuid.uuid4().hex}"
        head = (
            f"POST /webhooks/codat HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"webhook-id: {msg_id}\r\nwebhook-timestamp: {timestamp}\r\n"
            f"webhook-signature: {sign(secret, msg_id, timestamp, body)}\r\n\r\n"
        )
        made.append(head.encode() + body)
    return made


@contextmanager
def webhook_exporter(code: Path | None, secret: str) -> Iterator[tuple[int, list[str]]]:
    """A simulated Codat and an exporter polling it with webhooks on; yields the exporter's
    port and the companies' ids."""
    simulator = Process(["-m", "exporter.simulator", "--port", "0", "--companies", "20",
                         "--api-key", API_KEY], None, stdout=True)  # fmt: skip
    try:
        base_url = f"http://127.0.0.1:{simulator.wait_for(SIMULATOR)[1]}"
        with urlopen_json(f"{base_url}/companies?page=1&pageSize=100") as listing:
            ids = [company["id"] for company in listing["results"]]
        with tempfile.TemporaryDirectory() as folder:
            config = Path(folder) / "config.yaml"
            config.write_text(
                f"codat: {{base_url: '{base_url}', api_key: '{API_KEY}', "
                "max_requests_per_minute: 60000}\n"
                f"poll: {{interval: 1h}}\ncompanies: {{ids: [{', '.join(ids)}]}}\n"
                f"webhooks: {{enabled: true, secret: '{secret}'}}\n"
            )
            with exporter(code, "--config.file", str(config)) as port:
                yield port, ids
    finally:
        simulator.stop()


@contextmanager
def urlopen_json(url: str) -> Iterator[Any]:
    import urllib.request

    request = urllib.request.Request(url, headers={
        "Authorization": "Basic " + base64.b64encode(API_KEY.encode()).decode()})  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as answer:
        yield json.load(answer)


# --- the run ---------------------------------------------------------------------------------


def measure(code: Path | None, args: argparse.Namespace) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    label = str(code) if code else "this tree"
    log(f"{label}: {args.slow_clients} slow clients for {args.slow_seconds:.0f} s ...")
    with exporter(code, "--demo") as port:
        figures["slow"] = slow_clients(port, args.slow_clients, args.slow_seconds)
    log(f"{label}: {args.connections:,} connections at once ...")
    with exporter(code, "--demo") as port:
        figures["burst"] = burst(port, scrapes(args.connections), args.client_timeout)
    log(f"{label}: {args.deliveries:,} webhook deliveries at once ...")
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    with webhook_exporter(code, secret) as (port, ids):
        figures["webhooks"] = burst(port, deliveries(secret, ids, args.deliveries),
                                    args.client_timeout)  # fmt: skip
    return figures


def raise_own_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, wanted), hard))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, help="also measure the exporter in this tree")
    parser.add_argument("--before-label", help="what --before holds, for the report")
    parser.add_argument("--slow-clients", type=int, default=40)
    parser.add_argument("--slow-seconds", type=float, default=30.0)
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--deliveries", type=int, default=500)
    parser.add_argument("--client-timeout", type=float, default=10.0)
    parser.add_argument("--output", type=Path, help="insert the section below this file's title")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    raise_own_limit(max(args.connections, args.deliveries) + 256)
    began = time.time()
    args.load = [os.getloadavg()]
    runs = {}
    if args.before is not None:
        runs["before"] = measure(args.before.resolve(), args)
    runs["after"] = measure(None, args)
    args.load.append(os.getloadavg())
    if args.json:
        print(json.dumps(runs, indent=1))
        return 0
    section = report(runs, args, began)
    print(section)
    if args.output is not None:
        insert_below_title(args.output, section)
    return 0


def _answers(counts: dict[str, int]) -> str:
    return ", ".join(f"{n:,} x {outcome}" for outcome, n in sorted(counts.items())) or "none"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.0f}"


def _spread(median: float | None, most: float | None) -> str:
    return f"{_ms(median)} ({_ms(most)})"


def report(runs: dict[str, dict[str, Any]], args: argparse.Namespace, began: float) -> str:
    names = list(runs)
    rows: list[tuple[str, list[str]]] = []
    for path in PROBED:
        probes = [runs[name]["slow"]["probes"][path] for name in names]
        rows.append((f"`{path}` during the slow clients: answers",
                     [_answers(p["answers"]) for p in probes]))  # fmt: skip
        rows.append((f"`{path}` latency, median (max) ms",
                     [_spread(p["latency_median"], p["latency_max"]) for p in probes]))  # fmt: skip
    slow = [runs[name]["slow"] for name in names]
    rows.append(("slow clients closed by the exporter (their answers)",
                 [f"{s['slow_closed_by_server']:,} ({_answers(s['slow_answers'])})"
                  for s in slow]))  # fmt: skip
    for key, what in (("burst", f"{args.connections:,} connections at once (`GET /metrics`)"),
                      ("webhooks", f"{args.deliveries:,} webhook deliveries at once")):  # fmt: skip
        figures = [runs[name][key] for name in names]
        rows.append((f"{what}: **unanswered**", [f"**{f['unanswered']:,}**" for f in figures]))
        rows.append(("their outcomes", [_answers(f["outcomes"]) for f in figures]))
        rows.append(("time to the answer, median (max) ms",
                     [_spread(f["answer_median"], f["answer_max"]) for f in figures]))  # fmt: skip
    before = ""
    if args.before:
        before = f"before: the exporter in `{args.before_label or args.before}`; "
    lines = [
        "## The HTTP listener under slow clients and bursts (bench/http_burst.py)",
        "",
        f"Run {datetime.fromtimestamp(began, UTC):%Y-%m-%d %H:%M} UTC, "
        f"{(time.time() - began) / 60:.1f} minutes, with `bench/http_burst.py` "
        f"({args.slow_clients} slow clients for {args.slow_seconds:.0f} s, "
        f"{args.connections:,} connections, {args.deliveries:,} deliveries, each client "
        f"{args.client_timeout:.0f} s to its answer; {before}after: this tree).",
        f"Machine: {machine()}.",
        "Load average (1, 5, 15 min) at the start: {}; at the end: {}.".format(
            *(" ".join(f"{x:.2f}" for x in load) for load in args.load)
        ),
        "",
        "| | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
        *(f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows),
        "",
        "A slow client sends half a request head and a byte every 2 s. Where the slow "
        "clients hold every `--web.max-requests` slot, every request is refused while they "
        "last; where a connection takes no slot until its head is in, they hold none, and "
        "each is answered 408 after its 10 s and reconnects. Beyond the cap a burst gets 503s "
        "at once, while the /metrics responses being served pause (`make_way`) to let the "
        "listener through the burst.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
