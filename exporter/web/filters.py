"""The status page's and the API's filters: a query string read into ``Filters``, and which
pairs and companies they match.

Filters are query parameters, each repeated or comma-separated (values of one parameter
are alternatives; parameters combine): ``status`` (a state of ``STATES`` or a Codat
``currentStatus``, any case), ``company`` (part of a company's id or name, any case),
``data_type`` (a data type, any case), ``connection`` (a connection status of
``CONNECTION_STATUSES``, any case) and ``platform`` (a connection's platform name, any
case), ``next_step`` (a next step's code, ``exporter.exposition.nextstep``: the pairs of that
step, healthy ones too), and ``all=1`` (healthy pairs too). Without ``status`` or
``next_step`` the pairs that need attention are listed (every pair with ``all=1``). An
unknown status, connection status or next step, or an ``all`` that is not a yes or no, is
answered 400; other parameters are ignored.

``connection`` and ``platform`` choose companies, one connection matching both: the
companies (``FleetStatus.companies``, the API's ``companies``) are those with such a
connection, whatever their pairs' states, and their pairs listed are those such a
connection serves (``connections_for``). ``FleetStatus.relink`` are the companies the page
lists with their connections ("Connections to link or relink"): of those, the ones with a
connection of the asked status on an asked platform; when no status is asked, every company
that must link or relink (``relinks``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from urllib.parse import parse_qs, urlencode

from exporter.core.contract import CONNECTION_STATUSES, KNOWN_STATUSES, NEVER_SYNCED, UNKNOWN_STATUS
from exporter.core.snapshot import CompanyState, ConnectionState, DataTypeStatus
from exporter.exposition import assess
from exporter.exposition.assess import Pair
from exporter.exposition.nextstep import (
    BY_CODE,
    LINK,
    LINK_CONNECTIONS,
    RELINK,
    RELINK_CONNECTIONS,
    RELINK_STATUSES,
)
from exporter.exposition.platforms import serving

STATES: tuple[str, ...] = (
    assess.AUTH_ERROR, assess.FAILING, assess.STALE, assess.STUCK, NEVER_SYNCED, assess.PAUSED,
    assess.IN_PROGRESS, assess.HEALTHY,
)  # fmt: skip
"""What ``status`` may name besides a Codat status, worst first."""

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")
_CONNECTION_RANK = {"Deauthorized": 0, "Unlinked": 1, "PendingAuth": 2, "Linked": 4}
"""Which connection status a pair's row shows when its company has several: the worst."""
DEAUTHORIZED = "Deauthorized"
"""The connection status whose companies must relink: listed on the page without a filter."""


class FilterError(ValueError):
    """A filter that cannot mean anything; the message says which and what is allowed."""


@dataclass(frozen=True)
class Filters:
    statuses: tuple[str, ...] = ()
    """Canonical spellings (``AuthError``, ``stale``, ``Queued``)."""
    companies: tuple[str, ...] = ()
    data_types: tuple[str, ...] = ()
    all: bool = False
    connections: tuple[str, ...] = ()
    """Connection statuses, canonical (``Deauthorized``)."""
    platforms: tuple[str, ...] = ()
    next_steps: tuple[str, ...] = ()
    """Next steps' codes (``relink``)."""

    @property
    def narrowed(self) -> bool:
        return bool(self.statuses or self.data_types or self.by_company or self.next_steps)

    @property
    def must_link(self) -> bool:
        """Whether ``next_step`` asks for the customer's link or relink, and only for it."""
        return bool(self.next_steps) and set(self.next_steps) <= {RELINK.code, LINK.code}

    @property
    def by_company(self) -> bool:
        """Whether the filters choose companies: the page then lists their pairs one by one."""
        return bool(self.companies or self.connections or self.platforms)

    @cached_property
    def _platforms(self) -> frozenset[str]:
        return frozenset(platform.lower() for platform in self.platforms)

    def matches_connection(self, connection: ConnectionState) -> bool:
        """Whether the connection is of an asked status on an asked platform."""
        return (not self.connections or connection.status in self.connections) and (
            not self._platforms or connection.platform.lower() in self._platforms
        )

    def relinks(self, company: CompanyState) -> bool:
        """Whether the page lists the company with its connections: it has one on an asked
        platform of an asked status; when no status is asked, it must link or relink (a
        pair of it would say so): a connection on an asked platform that is Deauthorized,
        Unlinked (relink) or PendingAuth (link), or a data type whose latest sync ended in
        AuthError or PermissionsError (relink) with a connection on an asked platform."""
        if self.connections:
            return any(
                c.status in self.connections and self.matches_connection(c)
                for c in company.connections
            )
        codes = set(self.next_steps) if self.must_link else {RELINK.code, LINK.code}
        statuses = (RELINK_CONNECTIONS if RELINK.code in codes else frozenset()) | (
            LINK_CONNECTIONS if LINK.code in codes else frozenset()
        )
        if any(c.status in statuses and self.matches_connection(c) for c in company.connections):
            return True
        return (
            RELINK.code in codes
            and any(item.status in RELINK_STATUSES for item in company.data_types)
            and (not self.platforms or any(self.matches_connection(c) for c in company.connections))
        )

    @cached_property
    def _needles(self) -> tuple[str, ...]:
        return tuple(needle.lower() for needle in self.companies)

    @cached_property
    def _types(self) -> frozenset[str]:
        return frozenset(data_type.lower() for data_type in self.data_types)

    def matches_company(self, company: CompanyState) -> bool:
        if (self.connections or self.platforms) and not any(
            self.matches_connection(c) for c in company.connections
        ):
            return False
        if not self.companies:
            return True
        haystack = f"{company.company_id}\n{company.name}".lower()
        return any(needle in haystack for needle in self._needles)

    @cached_property
    def _tests(self) -> tuple[tuple[str, Callable[[Pair, float], bool] | None], ...]:
        return tuple((status, assess.TESTS.get(status)) for status in self.statuses)

    def matches_type(self, item: DataTypeStatus) -> bool:
        return not self._types or item.data_type.lower() in self._types

    def matches(self, pair: Pair, now: float) -> bool:
        """Whether the pair is listed at ``now`` (its company already matched)."""
        if not self.matches_type(pair.item):
            return False
        if (self.connections or self.platforms) and not self._served(pair):
            return False
        if self._tests:
            return any(
                pair.item.status == status if test is None else test(pair, now)
                for status, test in self._tests
            )
        return self.all or bool(self.next_steps) or not pair.healthy(now)

    def _served(self, pair: Pair) -> bool:
        """Whether a connection of the asked status and platform serves the pair: quick when
        every connection of its company matches (most have one)."""
        connections = pair.company.connections
        if all(self.matches_connection(c) for c in connections):
            return True
        serving = connections_for(pair.company, pair.item.data_type)
        return any(self.matches_connection(c) for c in serving)

    def query(self, **changes: Any) -> str:
        """These filters as a query string, ``changes`` applied: ``?status=stale&all=1``."""
        values = {"status": self.statuses, "company": self.companies,
                  "data_type": self.data_types, "connection": self.connections,
                  "platform": self.platforms, "next_step": self.next_steps, "all": self.all,
                  **changes}  # fmt: skip
        pairs = [(k, ",".join(v)) for k, v in values.items() if k != "all" and v]
        if values["all"]:
            pairs.append(("all", "1"))
        return "?" + urlencode(pairs) if pairs else ""


def parse_filters(
    query: str, seen_statuses: Iterable[str] = (), seen_connections: Iterable[str] = ()
) -> Filters:
    """The filters of a query string; ``seen_statuses`` and ``seen_connections`` (connection
    statuses) are valid besides the known ones.

    >>> parse_filters("status=authError,stale&company=Acme&all=yes")  # doctest: +ELLIPSIS
    Filters(statuses=('AuthError', 'stale'), companies=('Acme',), data_types=(), all=True, ...)
    >>> parse_filters("connection=deauthorized&platform=QuickBooks+Online").connections
    ('Deauthorized',)
    >>> parse_filters("status=Bogus")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    exporter.web.filters.FilterError: status: unknown value 'Bogus'; one of AuthError, failing, ...
    >>> parse_filters("connection=Revoked")
    Traceback (most recent call last):
    exporter.web.filters.FilterError: connection: unknown value 'Revoked'; one of PendingAuth, \
Linked, Unlinked, Deauthorized, Unknown
    """
    params = parse_qs(query, keep_blank_values=True)

    def values(name: str) -> tuple[str, ...]:
        split = (part.strip() for value in params.get(name, ()) for part in value.split(","))
        return tuple(dict.fromkeys(part for part in split if part))

    def canonical(name: str, known: tuple[str, ...], seen: Iterable[str]) -> tuple[str, ...]:
        spellings = {s.lower(): s for s in (*known, *seen)}
        chosen = []
        for value in values(name):
            if value.lower() not in spellings:
                allowed = ", ".join(dict.fromkeys(known))
                raise FilterError(f"{name}: unknown value {value!r}; one of {allowed}")
            chosen.append(spellings[value.lower()])
        return tuple(dict.fromkeys(chosen))

    statuses = canonical("status", (*STATES, *KNOWN_STATUSES, UNKNOWN_STATUS), seen_statuses)
    connections = canonical("connection", (*CONNECTION_STATUSES, UNKNOWN_STATUS), seen_connections)
    steps = canonical("next_step", tuple(BY_CODE), ())
    flag = params.get("all", ["0"])[-1].strip().lower()
    if flag not in (*_TRUE, *_FALSE):
        raise FilterError(f"all: {flag!r} is neither 1 nor 0")
    return Filters(
        statuses,
        values("company"),
        values("data_type"),
        flag in _TRUE,
        connections,
        values("platform"),
        steps,
    )


def connections_for(company: CompanyState, data_type: str) -> tuple[ConnectionState, ...]:
    """The company's connections that serve the data type, as Codat names data types:
    ``banking-*`` from Banking sources, ``commerce-*`` from Commerce ones, the rest from
    Accounting; all of them when none is of that source type. Worst status first."""
    chosen = serving(company, data_type)
    return tuple(sorted(chosen, key=lambda c: _CONNECTION_RANK.get(c.status, 3)))
