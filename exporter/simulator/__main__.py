"""``python -m exporter.simulator --port 8080 --companies 20 --seed 1`` serves a simulated Codat.

It accepts one API key, the one ``--demo`` uses unless ``--api-key`` says otherwise; the
help text names it, so that a user pointing the exporter at the simulator need not read
the source.

Each refresh it receives (``POST /companies/{companyId}/data/queue/{dataType}``, the only
write the exporter makes) is a line on stdout, when it arrived, so what an exporter sent
can be counted from outside, whatever became of the exporter::

    2026-12-03T10:00:00.123456Z POST queue: company 8a210b68-... invoices

``--queue-latency`` holds each refresh that long after that line, before it is queued and
answered: an exporter killed meanwhile has sent a refresh it never saw answered.
"""

from __future__ import annotations

import argparse
import signal
import threading

from exporter.core.clock import SystemClock
from exporter.core.contract import QUEUE_DATA_TYPE
from exporter.simulator.dates import format_datetime
from exporter.simulator.faults import Fault
from exporter.simulator.fleet import Fleet
from exporter.simulator.server import DEFAULT_API_KEY, SimulatedCodat


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m exporter.simulator",
        description="Serve a simulated Codat Platform API. Point the exporter at it with "
        f"codat.base_url: http://127.0.0.1:PORT and codat.api_key: {DEFAULT_API_KEY} "
        "(or the --api-key given here).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0: any free port (printed)")
    parser.add_argument("--companies", type=int, default=20)
    parser.add_argument("--data-types", type=int, default=12, help="data types per company")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--api-key", default=DEFAULT_API_KEY,
                        help="the only API key it accepts (default: %(default)s)")  # fmt: skip
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added per request")
    parser.add_argument("--queue-latency", type=float, default=0.0,
                        help="seconds each refresh is held once received, before it is "
                        "answered")  # fmt: skip
    args = parser.parse_args(argv)
    clock = SystemClock()
    fleet = Fleet.generate(clock, args.companies, args.seed, args.data_types)
    if args.queue_latency > 0:
        held = Fault("latency", seconds=args.queue_latency, endpoint=QUEUE_DATA_TYPE)
        for company_id in fleet.companies:
            fleet.inject(company_id, held)
    server = SimulatedCodat(fleet, args.api_key, args.host, args.port, args.latency).start()
    print(f"simulated Codat with {len(fleet.companies)} companies at {server.url}", flush=True)
    printing = threading.Lock()

    def received(company_id: str, data_type: str) -> None:
        at = format_datetime(clock.time(), "z6")
        with printing:
            print(f"{at} POST queue: company {company_id} {data_type}", flush=True)

    server.on_queue = received
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
