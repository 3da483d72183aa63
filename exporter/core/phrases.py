"""How counts read in log lines and pages: "1 company", "2 companies", "1,200 companies"."""

from __future__ import annotations

_PLURALS = {"company": "companies", "data type": "data types"}


def plural(count: int, noun: str) -> str:
    """``count`` and ``noun``, the noun in the plural unless the count is one.

    >>> plural(1, "company"), plural(0, "company"), plural(12000, "data type")
    ('1 company', '0 companies', '12,000 data types')
    """
    return f"{count:,} {noun if count == 1 else _PLURALS.get(noun, noun + 's')}"
