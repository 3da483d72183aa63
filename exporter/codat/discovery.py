"""Company discovery (``companies.discover``): the fleet is whatever ``GET /companies`` lists.

The listing is paged and re-read every ``companies.discovery_interval``. Through an outage
the last good list stays and the attempt is repeated every cycle. Until a first listing has
succeeded the fleet is unknown, so the exporter is not ready: "0 companies, all fine" would
be a lie. Ids are canonical (``exporter.core.contract.company_id``), as the configuration's are, so
that a listed id and a discovered one are one company whatever their case.

A failure counts in ``codat_exporter_poll_errors_total{reason}`` like any poll request, and
in the snapshot's facts (``codat_exporter_discovery_failures_total``, the status page), as
a success's time does. It is logged once per outage, except a rejected API key, which is an
ERROR every time, as it is for the companies' polls.

Its section of the state file (``exporter.poll.components``) is the listing and when it
was read, so that a restart lists the companies again only when that is due::

    {"listed": {"8a210b68-...": ["Acme Ltd", 1764633600.0]}, "listed_at": 1795435200.0}
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from exporter.codat.client import CodatClient
from exporter.codat.errors import ApiKeyRejected, CodatError
from exporter.config.sections import CompaniesConfig
from exporter.core.clock import Clock
from exporter.core.contract import COMPANIES, company_id, company_info, text
from exporter.core.decoding import as_dict, as_list, as_number, as_str, as_time
from exporter.core.phrases import plural
from exporter.core.snapshot import CompanyInfo, CompanyState, Facts, NoteFacts, ignore_facts
from exporter.exposition.instruments import ExporterMetrics

log = logging.getLogger(__name__)


Listing = tuple[dict[str, CompanyInfo], float]
"""A listing and the Unix time it was read."""


class Discovery:
    key = "discovery"

    def __init__(
        self,
        config: CompaniesConfig,
        client: CodatClient,
        metrics: ExporterMetrics,
        clock: Clock,
        note_facts: NoteFacts = ignore_facts,
    ) -> None:
        self._config = config
        self._client = client
        self._metrics = metrics
        self._clock = clock
        self._note_facts = note_facts
        self._companies: dict[str, CompanyInfo] = {}
        self._listed_at: float | None = None
        self.error = ""
        """Why the latest attempt failed; empty once one has succeeded since."""

    @property
    def companies(self) -> Mapping[str, CompanyInfo]:
        """The last good listing, by canonical id; empty before the first."""
        return self._companies

    @property
    def succeeded(self) -> bool:
        """Whether any listing has succeeded yet."""
        return self._listed_at is not None

    def due(self) -> bool:
        last = self._listed_at
        return last is None or self._clock.monotonic() - last >= self._config.discovery_interval

    def run(self, deadline: float) -> bool:
        """List the companies; True when the listing succeeded (and replaced the last one)."""
        config = self._config
        params = {k: v for k, v in (("tags", config.tags), ("query", config.query)) if v}
        try:
            items = self._client.get_pages(COMPANIES, deadline, config.page_size, params)
        except CodatError as exc:
            self._failed(exc)
            return False
        found = {
            company_id(text(item["id"])): company_info(item)
            for item in items
            if isinstance(item, dict) and isinstance(item.get("id"), str)
        }
        if self.error:
            log.info("company discovery succeeded again")
        if self._listed_at is not None:
            dropped = self._companies.keys() - found.keys()
            if dropped:
                log.info("discovery: %s no longer listed, dropping them",
                         plural(len(dropped), "company"))  # fmt: skip
        self._companies = found
        self._listed_at = self._clock.monotonic()
        self.error = ""
        now = self._clock.time()
        self._note_facts(lambda facts: facts.discovered(now))
        return True

    def saved(self) -> dict[str, Any] | None:
        """The listing and the Unix time it was read; None before one."""
        if self._listed_at is None:
            return None
        return {
            "listed": {k: [v.name, v.created] for k, v in self._companies.items()},
            "listed_at": self._clock.time() - (self._clock.monotonic() - self._listed_at),
        }

    def checked(self, saved: Any) -> Listing | None:
        if saved is None:
            return None
        section = as_dict(saved)
        listed = {as_str(k): as_list(v) for k, v in as_dict(section["listed"]).items()}
        companies = {k: CompanyInfo(as_str(v[0]), as_time(v[1])) for k, v in listed.items()}
        return companies, as_number(section["listed_at"])

    def restore(self, checked: Listing | None, companies: Mapping[str, CompanyState]) -> None:
        """Resume from a state file's listing, as read at its Unix time."""
        if checked is None:
            return
        self._companies, listed_at = checked
        self._listed_at = self._clock.monotonic() - (self._clock.time() - listed_at)
        self.error = ""

    def forget_all_but(self, kept: set[str]) -> None:
        """Nothing: the listing is the fleet as Codat lists it, replaced whole by the next."""

    def _failed(self, exc: CodatError) -> None:
        self._note_facts(Facts.discovery_failed)
        self._metrics.poll_errors.labels(exc.reason).inc()
        kept = plural(len(self._companies), "company")
        if isinstance(exc, ApiKeyRejected):
            log.error("Codat rejected the API key listing companies (%s); check codat.api_key",
                      exc)  # fmt: skip
        else:
            # Once per outage, like a company's failure: it is retried every cycle meanwhile.
            level = logging.DEBUG if self.error else logging.WARNING
            what = f"keeping the last list of {kept}" if self.succeeded else "no list yet"
            log.log(level, "company discovery failed; %s: %s", what, exc)
        self.error = str(exc)
