"""Dates as Codat writes them, in each of the forms the contract README lists, so that the
exporter meets every one of them: a data type writes its lastSuccessfulSync in its own.

>>> for style in ("z0", "z3", "z7", "offset", "date"):
...     print(format_datetime(1795435200.25, style))
2026-11-23T12:00:00Z
2026-11-23T12:00:00.250Z
2026-11-23T12:00:00.2500000Z
2026-11-23T07:00:00.25-05:00
2026-11-23
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone


def format_datetime(moment: float, style: str) -> str:
    """Render Unix time in one of the forms Codat uses (see the contract README)."""
    when = datetime.fromtimestamp(moment, UTC)
    micro = f"{when.microsecond:06d}"
    base = when.strftime("%Y-%m-%dT%H:%M:%S")
    match style:
        case "z0":
            return base + "Z"
        case "z3":
            return f"{base}.{micro[:3]}Z"
        case "z6":
            return f"{base}.{micro}Z"
        case "z7":
            return f"{base}.{micro}{int(moment * 1e7) % 10}Z"
        case "unqualified":
            return f"{base}.{micro[:3]}"
        case "date":
            return when.strftime("%Y-%m-%d")
        case "offset":
            local = when.astimezone(timezone(timedelta(hours=-5)))
            return local.strftime("%Y-%m-%dT%H:%M:%S") + f".{micro[:2]}-05:00"
    raise ValueError(f"unknown date style {style!r}")
