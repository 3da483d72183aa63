"""What the poll left unread without failing any company's poll, told in a line or two a
cycle instead of one line per request: at 10,000 companies with the rate limit binding, one
line per request was thousands of lines a cycle.

- **Deferred**: ``REST`` requests (``exporter.codat.ratelimit``) the rate limit left no turn
  for, so that every company's dataStatus kept its own; each is made at a later poll. One
  INFO line a cycle, none when nothing was deferred::

      rate limit: 1,234 requests left for later polls, dataStatus first (pull operations
      1,000, connections 234); codat.max_requests_per_minute (600) binds

- **Failed**: reads that failed without failing the company's poll (pull operations,
  integrations), by kind, with their counts by reason and one example. One WARNING line a
  cycle for each kind with a read failing that did not fail before; DEBUG while only the
  same ones keep failing::

      pull operations: 15 reads failed (12 rate_limited, 3 http_error) for 8 companies;
      each is read again at its company's next poll; e.g. company 26debfdb-...: pull
      operation 6ddd9360-...: GET /companies/{companyId}/data/history/{datasetId}: ...

Their metrics count each request as it happens (``codat_exporter_requests_deferred_total``,
``codat_exporter_pull_operation_errors_total``); this only keeps the log short.
Thread-safe: the workers add, the poll cycle tells.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass, field

from exporter.core.phrases import plural

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Kind:
    """A kind of read: what its lines call it, and what becomes of a failed one."""

    label: str
    then: str


PULL_OPERATIONS = Kind("pull operations", "each is read again at its company's next poll")
INTEGRATIONS = Kind("integrations", "each is taken as a cloud one until read again")


@dataclass
class _Failures:
    reasons: Counter[str] = field(default_factory=Counter)
    companies: set[str] = field(default_factory=set)
    new: int = 0
    example: str = ""


class Unread:
    def __init__(self) -> None:
        self._deferred: Counter[str] = Counter()
        self._failed: dict[Kind, _Failures] = {}
        self._lock = threading.Lock()

    def deferred(self, what: str) -> None:
        """One request of ``what`` (``PULL_OPERATIONS.label``, "connections" ...) deferred."""
        with self._lock:
            self._deferred[what] += 1

    def failed(self, kind: Kind, reason: str, company_id: str, example: str, *, new: bool) -> None:
        """One failed read of ``kind`` (``company_id`` empty for an integration, which is the
        fleet's); ``new``: not failing before. The example is the first new failure's."""
        with self._lock:
            failures = self._failed.setdefault(kind, _Failures())
            failures.reasons[reason] += 1
            if company_id:
                failures.companies.add(company_id)
            if not failures.example or (new and not failures.new):
                failures.example = example
            failures.new += new

    def tell(self, per_minute: int) -> None:
        """Log what was counted since the last time, and start counting afresh."""
        with self._lock:
            deferred, self._deferred = self._deferred, Counter()
            failed, self._failed = self._failed, {}
        if deferred:
            log.info("rate limit: %s left for later polls, dataStatus first (%s); "
                     "codat.max_requests_per_minute (%s) binds",
                     plural(sum(deferred.values()), "request"),
                     ", ".join(f"{what} {n:,}" for what, n in deferred.most_common()),
                     f"{per_minute:,}")  # fmt: skip
        for kind, failures in failed.items():
            reasons = ", ".join(f"{n:,} {reason}" for reason, n in failures.reasons.most_common())
            companies = (
                f" for {plural(len(failures.companies), 'company')}" if failures.companies else ""
            )
            log.log(logging.WARNING if failures.new else logging.DEBUG,
                    "%s: %s failed (%s)%s; %s; e.g. %s", kind.label,
                    plural(sum(failures.reasons.values()), "read"), reasons, companies,
                    kind.then, failures.example)  # fmt: skip
