"""The families of the snapshot's ``Facts``, rendered at every scrape from the facts the
snapshot carries: the status page reads the same facts, so the two never disagree::

    # HELP codat_api_quota_remaining Requests left in Codat's daily quota (X-Rate-Limit-...
    # TYPE codat_api_quota_remaining gauge
    codat_api_quota_remaining 20939.0

A gauge has no sample until its fact is known (``codat_api_quota_remaining 0`` before Codat
has answered once would fire the quota alert for nothing); the discovery failures counter
is 0 from the start. The text is prometheus_client's, number format included: these
families were its gauges and counter before they travelled on the snapshot.
"""

from __future__ import annotations

from prometheus_client.utils import floatToGoString

from exporter.core.families import (
    DISCOVERY_FAILURES,
    ESTIMATED_DAILY,
    LAST_DISCOVERY,
    QUOTA_LIMIT,
    QUOTA_REMAINING,
    QUOTA_RESET,
    MetricSpec,
)
from exporter.core.snapshot import Facts
from exporter.exposition.text import header


def facts_text(facts: Facts) -> bytes:
    """The facts' families, in the order the exporter's registry had them."""
    known = (
        (DISCOVERY_FAILURES, facts.discovery.failures),
        (QUOTA_LIMIT, facts.quota_limit),
        (QUOTA_REMAINING, facts.quota_remaining),
        (QUOTA_RESET, facts.quota_reset),
        (ESTIMATED_DAILY, facts.estimated_daily_requests),
        (LAST_DISCOVERY, facts.discovery.last_success),
    )
    return "".join(_family(spec, value) for spec, value in known if value is not None).encode()


def _family(spec: MetricSpec, value: float) -> str:
    shown: str = floatToGoString(value)  # type: ignore[no-untyped-call]
    return f"{header(spec, '')}{spec.name} {shown}\n"
