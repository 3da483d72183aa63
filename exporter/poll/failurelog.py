"""What the log says about failed polls, so that an outage reads as one story, not a flood.

- A company's failure is logged when it starts, or fails differently, not every cycle;
  its recovery once. Whether its last good values stay on /metrics is said only when
  there are some.
- Many companies failing alike in one cycle (Codat unreachable, a rate limit) are one line
  for all of them, with one example::

      WARNING 20 companies failed (connection_error), keeping their last good values;
      e.g. company 8a21...: GET /companies/{companyId}/dataStatus: connection refused

- A rejected API key is one ERROR per cycle for the whole fleet.
- A company of ``companies.ids`` that Codat answers 404 is "not found" (it stays on
  /metrics, down); one that discovery found is "no longer exists" (it leaves)::

      WARNING company 8a21... not found in Codat (404): check companies.ids; shown with
      codat_exporter_company_up 0, no values yet

Every failed request also counts in ``codat_exporter_poll_errors_total{reason}``.

Nothing of it is kept across a restart (its ``exporter.poll.components`` section is empty):
a failure still going on is logged again after a start, so that a restarted exporter's log
tells it without the log of the one before.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence

from exporter.codat.errors import ApiKeyRejected
from exporter.core.phrases import plural
from exporter.core.snapshot import CompanyState, Outcome
from exporter.exposition.instruments import ExporterMetrics

log = logging.getLogger("exporter.poll.poller")

GROUPED = 3
"""More companies than this failing (or recovering) alike in one cycle make one line."""
_NOT_FOUND = "dataStatus 404"
"""How a company Codat does not know fails (``Outcome.not_found``), as told apart from a
404 for its name, connections or sync settings only."""


class FailureLog:
    key = "failures"

    def __init__(self, metrics: ExporterMetrics) -> None:
        self._metrics = metrics
        self._failing: dict[str, str] = {}
        """The reason each failing company failed with, as last logged."""

    def record(
        self,
        outcomes: Sequence[Outcome],
        has_values: Callable[[str], bool],
        *,
        whole_cycle: bool = True,
    ) -> None:
        """Count and log a batch of outcomes (a cycle's, or a webhook re-poll's).

        ``has_values`` tells whether a company has last good values on /metrics.
        """
        rejected = [o for o in outcomes if o.reason == ApiKeyRejected.reason]
        if rejected and whole_cycle:
            log.error(
                "Codat rejected the API key for %d of %s (company %s: %s); check codat.api_key",
                len(rejected), plural(len(outcomes), "company"), rejected[0].company_id,
                rejected[0].error,
            )  # fmt: skip
        started: dict[str, list[Outcome]] = defaultdict(list)
        recovered: list[str] = []
        for outcome in outcomes:
            company_id = outcome.company_id
            if outcome.reason:
                self._metrics.poll_errors.labels(outcome.reason).inc()
            if outcome.gone:
                log.warning("company %s no longer exists in Codat (404); dropped from /metrics",
                            company_id)  # fmt: skip
                self._failing.pop(company_id, None)
            elif outcome.reason:
                failure = _NOT_FOUND if outcome.not_found else outcome.reason
                if self._failing.get(company_id) == failure:
                    log.debug("company %s: poll still failing: %s", company_id, outcome.error)
                elif outcome.reason != ApiKeyRejected.reason:
                    started[failure].append(outcome)
                self._failing[company_id] = failure
            elif self._failing.pop(company_id, None) is not None:
                recovered.append(company_id)
        for reason, failed in started.items():
            self._log_started(reason, failed, has_values)
        if len(recovered) > GROUPED:
            log.info("%s polled successfully again", plural(len(recovered), "company"))
        else:
            for company_id in recovered:
                log.info("company %s: poll succeeded again", company_id)

    def saved(self) -> None:
        return None

    def checked(self, saved: object) -> None:
        return None

    def restore(self, checked: None, companies: Mapping[str, CompanyState]) -> None:
        pass

    def forget_all_but(self, kept: set[str]) -> None:
        for company_id in self._failing.keys() - kept:
            del self._failing[company_id]

    def companies(self) -> set[str]:
        return set(self._failing)

    @staticmethod
    def _log_started(reason: str, failed: list[Outcome], has_values: Callable[[str], bool]) -> None:
        if reason == _NOT_FOUND:
            FailureLog._log_not_found(failed, has_values)
            return
        if len(failed) > GROUPED:
            keeping = sum(1 for o in failed if has_values(o.company_id))
            kept = (
                "keeping their last good values" if keeping == len(failed)
                else f"keeping the last good values of {keeping}" if keeping
                else "none has values yet"
            )  # fmt: skip
            example = failed[0]
            log.warning("%s failed (%s), %s; e.g. company %s: %s",
                        plural(len(failed), "company"), reason, kept, example.company_id,
                        example.error)  # fmt: skip
            return
        for outcome in failed:
            kept = (
                "keeping its last good values"
                if has_values(outcome.company_id)
                else ("no values yet")
            )
            log.warning("company %s: poll failed, %s: %s", outcome.company_id, kept,
                        outcome.error)  # fmt: skip

    @staticmethod
    def _log_not_found(failed: list[Outcome], has_values: Callable[[str], bool]) -> None:
        if len(failed) > GROUPED:
            log.warning("%s not found in Codat (404): check companies.ids; e.g. company %s",
                        plural(len(failed), "company"), failed[0].company_id)  # fmt: skip
            return
        for outcome in failed:
            kept = (
                "keeping its last good values"
                if has_values(outcome.company_id)
                else "no values yet"
            )
            log.warning("company %s not found in Codat (404): check companies.ids; shown with "
                        "codat_exporter_company_up 0, %s", outcome.company_id, kept)  # fmt: skip
