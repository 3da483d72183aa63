"""Which connection, and so which platform, a pair syncs through, and how many companies
fail on each platform: the one count that ``codat_platform_failing_companies``, the status
page's incident banner and its "wait" next step share.

A pair's connection is the one its latest sync's pull operation names (``connectionId``,
read while that sync is not Complete); dataStatus alone does not say. Before that is read,
or when it names no connection the company has, it is the company's connection that serves
the data type (``serving``), a Linked one preferred, when that leaves one platform; none
when no connection of the company serves it (a ``commerce-*`` data type and no Commerce
connection). The page, the JSON and the next step all use this one connection.

A company *fails on* a platform while one of its pairs there has a latest sync that ended
in an error a new sync may fix (``PLATFORM_ERRORS``: FetchError, MapError ... the statuses
``refresh`` retries): what a platform's outage or maintenance leaves. AuthError and the
errors only the customer can fix (PermissionsError, PrerequisiteNotMet) are one company's
matter and do not count::

    codat_platform_failing_companies{platform="Xero"} 50
    codat_platform_failing_companies{platform="QuickBooks Online"} 0
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from exporter.config.kinds import REFRESHABLE
from exporter.core.snapshot import CompanyState, ConnectionState, DataTypeStatus, SyncDetail

PLATFORM_ERRORS = frozenset(REFRESHABLE)
"""The statuses a platform's outage leaves its companies' syncs in."""
LINKED = "Linked"


def source_type(data_type: str) -> str:
    """The source type of the connections that serve the data type, as Codat names data
    types: ``banking-*`` from Banking sources, ``commerce-*`` from Commerce ones, the rest
    from Accounting.

    >>> source_type("commerce-orders"), source_type("banking-accounts"), source_type("bills")
    ('Commerce', 'Banking', 'Accounting')
    """
    prefix, _, rest = data_type.partition("-")
    return prefix.capitalize() if rest and prefix in ("banking", "commerce") else "Accounting"


def serving(company: CompanyState, data_type: str) -> tuple[ConnectionState, ...]:
    """The company's connections of the data type's ``source_type``, else those whose
    source type Codat did not say: none when every connection is of another source type (a
    Banking connection never serves ``commerce-orders``)."""
    source = source_type(data_type)
    chosen = tuple(c for c in company.connections if c.source_type == source)
    return chosen or tuple(c for c in company.connections if c.source_type in _UNSAID)


_UNSAID = frozenset(("", "Unknown"))


def pair_connection(
    company: CompanyState, item: DataTypeStatus, sync: SyncDetail | None
) -> ConnectionState | None:
    """The connection the pair's latest sync ran on (see the module's docstring); None when
    that cannot be told."""
    if sync is not None and sync.connection_id:
        for connection in company.connections:
            if connection.connection_id == sync.connection_id:
                return connection
    candidates = serving(company, item.data_type)
    linked = [c for c in candidates if c.status == LINKED] or list(candidates)
    if len({c.platform for c in linked}) == 1:
        return linked[0]
    return None


def failing_companies(companies: Iterable[CompanyState]) -> dict[str, int]:
    """Per platform of any connection, the companies failing on it (zeros included),
    sorted by platform. Connections without a platform name are left out."""
    counts: dict[str, int] = {}
    for company in companies:
        for connection in company.connections:
            if connection.platform:
                counts.setdefault(connection.platform, 0)
        failing: set[str] = set()
        for item in company.data_types:
            if item.status not in PLATFORM_ERRORS:
                continue
            sync = company.syncs.get(item.data_type)
            if sync is not None and sync.sync_id != item.latest_sync_id:
                sync = None
            found = pair_connection(company, item, sync)
            if found is not None and found.platform:
                failing.add(found.platform)
        for platform in failing:
            counts[platform] += 1
    return dict(sorted(counts.items()))


def incidents(failing: Mapping[str, int], threshold: int) -> dict[str, int]:
    """The platforms with at least ``threshold`` companies failing on them: incidents.

    >>> incidents({"Plaid": 0, "Xero": 50}, 10)
    {'Xero': 50}
    """
    return {platform: count for platform, count in failing.items() if count >= threshold}
