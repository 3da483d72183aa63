"""Faults: what the simulated Codat does instead of answering, or before it answers, so that
the tests and the soak run meet every way a real server or network misbehaves.

A test injects one into the fleet for a company (or ``LISTING``), optionally for one route
and a number of requests; the server takes it before answering and ``act_out`` plays it on
the request's connection::

    fleet.inject(company_id, Fault("status", status=503, retry_after="2", times=1))
    fleet.inject(company_id, Fault("stall", endpoint=DATA_STATUS))   # until cleared
    fleet.clear_faults(company_id)                                    # lets go of the stall
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

from exporter.simulator.conventions import error_body

LISTING = "*"
"""Fault key for requests that name no company (the company list)."""
INTEGRATIONS = "integrations"
"""Fault key for requests of an integration (``GET /integrations/{platformKey}``)."""

_GOOD_BODY = b'{"invoices": {"dataType": "invoices", "currentStatus": "Complete"}}'
"""What a fault that breaks off a body (cut, stall) sends part of."""


@dataclass
class Fault:
    """What the server does instead of (or before) answering normally.

    kind: ``status`` (HTTP ``status`` with an ErrorMessage), ``html`` (``status`` with an HTML
    page), ``latency`` (wait ``seconds`` then answer), ``malformed`` (200, not JSON),
    ``wrong_shape`` (200, a JSON list), ``truncated`` (200, JSON cut short), ``reset``
    (close the connection), ``cut`` (200 and half the body its Content-Length announces,
    then reset), ``empty`` (200, ``{}``), ``oversized`` (200, a JSON body of ``size`` bytes).

    Three never finish on their own, so that a test of the client's timeouts does not
    depend on how fast the machine is: ``hang`` (no answer at all), ``stall`` (200 and half
    the body, then nothing) and ``trickle`` (200, then a byte every ``seconds`` of a body
    that never ends). Each holds its connection until the fault is cleared (``released``
    is set) or the server stops, then closes it.
    """

    kind: str
    status: int = 500
    seconds: float = 0.0
    retry_after: str | None = None
    size: int = 11 * 1024 * 1024
    times: int | None = None
    """How many requests it applies to; None: until cleared."""
    endpoint: str | None = None
    """Only requests to this route template, e.g. '/companies/{companyId}/dataStatus'."""
    released: threading.Event = field(default_factory=threading.Event, repr=False)


class Wire(Protocol):
    """What a fault needs of the request handler whose connection it takes over."""

    @property
    def stopping(self) -> threading.Event:
        """Set when the server stops: a fault that holds its connection lets go then."""
        ...

    def send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None: ...

    def send_body(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None: ...

    def start_body(self, length: int) -> None:
        """A 200's headers, announcing a JSON body of ``length`` bytes."""
        ...

    def write(self, data: bytes) -> bool:
        """Send now; False once the client has gone."""
        ...

    def close_after(self) -> None:
        """Close the connection once this request is done."""
        ...

    def reset(self) -> None:
        """Close the connection now, with a TCP reset."""
        ...


def act_out(fault: Fault, wire: Wire) -> bool:
    """Play ``fault`` on ``wire``; True when it answered the request itself."""
    if fault.kind == "latency":
        wire.stopping.wait(fault.seconds)
        return False
    if fault.kind == "status":
        extra = {"Retry-After": fault.retry_after} if fault.retry_after else {}
        wire.send_json(fault.status, error_body(fault.status, "Simulated failure"), extra)
    elif fault.kind == "html":
        wire.send_body(fault.status, b"<html><body><h1>502 Bad Gateway</h1></body></html>",
                       "text/html")  # fmt: skip
    elif fault.kind == "malformed":
        wire.send_body(200, b"this is not JSON {", "application/json")
    elif fault.kind == "wrong_shape":
        wire.send_json(200, ["not", "an", "object"])
    elif fault.kind == "empty":
        wire.send_json(200, {})
    elif fault.kind == "oversized":
        filler = b" " * max(0, fault.size - 2)
        wire.send_body(200, b"{" + filler + b"}", "application/json")
    elif fault.kind == "truncated":
        wire.send_body(200, b'{"invoices": {"dataType": "invoi', "application/json")
    elif fault.kind == "hang":
        _hold(fault, wire)
    elif fault.kind == "stall":
        wire.start_body(len(_GOOD_BODY))
        wire.write(_GOOD_BODY[: len(_GOOD_BODY) // 2])
        _hold(fault, wire)
    elif fault.kind == "trickle":
        wire.start_body(10**12)
        while not _held(fault, wire, fault.seconds) and wire.write(b" "):
            pass
    elif fault.kind == "cut":
        wire.start_body(len(_GOOD_BODY))
        wire.write(_GOOD_BODY[: len(_GOOD_BODY) // 2])
        wire.reset()
    elif fault.kind == "reset":
        wire.reset()
    else:
        raise ValueError(f"unknown fault kind {fault.kind!r}")
    return True


def _held(fault: Fault, wire: Wire, seconds: float) -> bool:
    """Wait up to ``seconds``; True (and the connection is to close) once let go."""
    if fault.released.wait(seconds) or wire.stopping.is_set():
        wire.close_after()
        return True
    return False


def _hold(fault: Fault, wire: Wire) -> None:
    while not _held(fault, wire, 0.1):
        pass
