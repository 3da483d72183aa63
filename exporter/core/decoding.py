"""Checks for what the exporter reads back of its own JSON (the state file): each returns
its value typed, or raises TypeError or ValueError saying what it expected, so that a
decoder can refuse a whole document at its first bad value.

>>> as_time(1795435200), as_time(None)
(1795435200.0, None)
>>> as_str(7)
Traceback (most recent call last):
TypeError: expected a string, found int
"""

from __future__ import annotations

import math
from typing import Any


def as_dict(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, found {type(value).__name__}")
    return value


def as_list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list, found {type(value).__name__}")
    return value


def as_str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, found {type(value).__name__}")
    return value


def as_optional_str(value: Any) -> str | None:
    return None if value is None else as_str(value)


def as_whole(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected a whole number, found {type(value).__name__}")
    return value


def as_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, found {type(value).__name__}")
    return value


def as_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, found {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, found {value}")
    return float(value)


def as_time(value: Any) -> float | None:
    """A time (Unix seconds) or None."""
    return None if value is None else as_number(value)
