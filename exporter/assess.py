"""Which company x data type pairs need attention: the one judgement that the cycle's log
line, the status page and the fleet aggregates share, so that they never disagree.

A pair is *stale* when its last successful sync is older than its max age (never-synced
pairs have no age: they are counted apart, as the alert rules do), *failing* when its latest
sync ended in an error status other than AuthError, and in *AuthError* when the company must
relink its books.
"""

from __future__ import annotations

from dataclasses import dataclass

from exporter.codat import ERROR_STATUSES, NEVER_SYNCED
from exporter.config import FreshnessConfig
from exporter.state import CompanyState, DataTypeStatus, Snapshot

AUTH_ERROR = "AuthError"


def max_age(company: CompanyState, item: DataTypeStatus, freshness: FreshnessConfig) -> float:
    """The pair's staleness threshold in seconds (see ``FreshnessConfig.max_age_for``)."""
    return freshness.max_age_for(
        item.data_type, company.company_id, company.sync_schedules.get(item.data_type)
    )


@dataclass(frozen=True)
class PairCounts:
    """How many pairs of a snapshot are in each state that needs attention."""

    pairs: int = 0
    stale: int = 0
    failing: int = 0
    auth_error: int = 0
    never_synced: int = 0

    def summary(self) -> str:
        """For the cycle's log line: ``33 stale, 17 failing, 13 in AuthError, 2 never synced``."""
        return (
            f"{self.stale:,} stale, {self.failing:,} failing, {self.auth_error:,} in AuthError, "
            f"{self.never_synced:,} never synced"
        )


def count_pairs(snapshot: Snapshot, freshness: FreshnessConfig, now: float) -> PairCounts:
    """Count the snapshot's pairs by state at ``now`` (Unix seconds)."""
    pairs = stale = failing = auth_error = never_synced = 0
    failing_statuses = frozenset(ERROR_STATUSES)
    for company in snapshot.companies.values():
        for item in company.data_types:
            pairs += 1
            if item.last_successful_sync is not None:
                stale += now - item.last_successful_sync > max_age(company, item, freshness)
            elif item.status == NEVER_SYNCED:
                never_synced += 1
            if item.status == AUTH_ERROR:
                auth_error += 1
            elif item.status in failing_statuses:
                failing += 1
    return PairCounts(pairs, stale, failing, auth_error, never_synced)
