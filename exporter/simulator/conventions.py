"""What every route of Codat's API shares, whatever it serves: the ErrorMessage of a
refusal, the paging parameters and their bounds, the PagingInfo envelope (and the ways a
fleet can make it disagree with itself), and the ``tags`` filter of the company list.

A paged route takes ``page`` (from 1) and ``pageSize`` (1 to 5000), the contract's parameter
bounds; anything else in them, or a ``tags`` filter that does not parse, is answered as
Codat answers a malformed query: 400 with an ErrorMessage. The contract caps the
``pageSize`` of a response at 2000, so a page holds at most 2000 results whatever was
asked, and its ``pageSize`` and links say so::

    {"results": [...], "pageNumber": 2, "pageSize": 100, "totalResults": 250,
     "_links": {"self": {"href": "/companies"},
                "current": {"href": "/companies?page=2&pageSize=100"},
                "next": {"href": "/companies?page=3&pageSize=100"},
                "previous": {"href": "/companies?page=1&pageSize=100"}}}
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from typing import Any

CONSISTENT = "consistent"
"""As Codat pages: the last page links no next one, and totalResults is right."""
NEXT_ON_LAST_PAGE = "next_on_last_page"
"""Every page links a next one, the last too (past it come empty pages); totalResults is right."""
TOTAL_TOO_HIGH = "total_too_high"
"""totalResults counts a page more than there is; the last page links no next one."""
PAGING_STYLES = (CONSISTENT, NEXT_ON_LAST_PAGE, TOTAL_TOO_HIGH)


def error_body(status: int, error: str) -> dict[str, Any]:
    """Codat's ErrorMessage."""
    return {
        "statusCode": status,
        "service": "PublicApi",
        "error": error,
        "correlationId": uuid.uuid4().hex,
        "validation": None,
        "canBeRetried": "Unknown",
        "detailedErrorCode": 0,
    }


MAX_PAGE = 2**31 - 1
"""``page`` is an int32 from 1."""
MAX_PAGE_SIZE = 5000
"""The most ``pageSize`` a request may ask for (the contract's parameter bounds)."""
MAX_PAGE_RESULTS = 2000
"""The most results a page holds (the contract's PagingInfo.pageSize maximum)."""
DEFAULT_PAGE_SIZE = 100

_WHOLE_NUMBER = re.compile(r"[0-9]{1,10}")
_TAG_CLAUSE = re.compile(r"([^=!~]+?)\s*(!=|=|~)\s*(.*)")


class MalformedQuery(ValueError):
    """A query parameter Codat would refuse with 400; the message says which and why."""


def paging(query: dict[str, str]) -> tuple[int, int]:
    """(page, results per page) of a paged request; MalformedQuery outside the bounds.

    >>> paging({}), paging({"page": "3", "pageSize": "4000"})
    ((1, 100), (3, 2000))
    """
    page = _bounded(query, "page", 1, 1, MAX_PAGE)
    size = _bounded(query, "pageSize", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    return page, min(size, MAX_PAGE_RESULTS)


def _bounded(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    text = query.get(name)
    if text is None:
        return default
    if not _WHOLE_NUMBER.fullmatch(text) or not low <= int(text) <= high:
        raise MalformedQuery(
            f"Error parsing query - {name} must be a whole number from {low} to {high}, "
            f"not {text[:20]!r}"
        )
    return int(text)


def page_of(items: Sequence[Any], page: int, size: int, path: str, style: str) -> dict[str, Any]:
    """One page of a Codat listing (PagingInfo envelope).

    ``style`` is the fleet's ``paging``: how far ``_links.next`` and ``totalResults`` agree.
    """
    if style not in PAGING_STYLES:
        raise ValueError(f"unknown paging style {style!r}")
    links: dict[str, Any] = {
        "self": {"href": path},
        "current": {"href": f"{path}?page={page}&pageSize={size}"},
    }
    more = page * size < len(items)
    if more or (style == NEXT_ON_LAST_PAGE and (page - 1) * size < len(items)):
        links["next"] = {"href": f"{path}?page={page + 1}&pageSize={size}"}
    if page > 1:
        links["previous"] = {"href": f"{path}?page={page - 1}&pageSize={size}"}
    total = len(items) + (size if style == TOTAL_TOO_HIGH else 0)
    return {
        "results": items[(page - 1) * size : page * size],
        "pageNumber": page,
        "pageSize": size,
        "totalResults": total,
        "_links": links,
    }


def tag_filter(expression: str) -> list[tuple[str, str, str]]:
    """Codat's tags filter, ``region=uk && team!=ops && name~acme`` (=, != and contains),
    as (key, operator, value) clauses; MalformedQuery for a clause without an operator."""
    clauses = []
    for clause in filter(None, (c.strip() for c in expression.split("&&"))):
        match = _TAG_CLAUSE.fullmatch(clause)
        if match is None:
            raise MalformedQuery(f"Error parsing query - tags clause {clause[:64]!r}")
        clauses.append((match[1].strip(), match[2], match[3].strip()))
    return clauses


def matches_tags(tags: dict[str, str], clauses: list[tuple[str, str, str]]) -> bool:
    for key, op, value in clauses:
        actual = tags.get(key)
        if op == "=" and actual != value:
            return False
        if op == "!=" and actual == value:
            return False
        if op == "~" and (actual is None or value not in actual):
            return False
    return True
