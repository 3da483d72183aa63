"""One alert per platform in an incident, and the ``platform`` label that lets Alertmanager
hold back the per-company alerts it explains (``alertmanager/alertmanager.yml``).

- ``CodatPlatformSyncFailures`` (default rules and fleet preset): the companies failing on
  a platform (``codat_platform_failing_companies``), summed over the exporter's shards, at
  ``companies`` or more. One alert for fifty companies failing on Xero at once; one company
  failing pages as before, through its own alerts.
- ``with_platform``: a per-pair alert's series, each given the ``platform`` of its
  company's Linked Accounting connection (``codat_connection_status``), for a data type
  that connection serves (not ``banking-*`` nor ``commerce-*``); a pair without one keeps
  its labels as they were, so no alert is lost to the join. Inhibition matches on equal
  labels, and this is the label it matches on::

      CodatDataTypeSyncFailing{company_id="c7", data_type="bills", platform="Xero", ...}

  The exporter tells a pair's platform from its latest sync's pull operation
  (``exporter.exposition.platforms``), which /metrics does not carry per pair; a company has
  at most one active Accounting connection, so the two agree.
"""

from __future__ import annotations

from typing import Any, Protocol

from exporter.core.families import CONNECTION_STATUS, CONNECTIONS, PLATFORM_FAILING, STATUS
from monitoring.config import MonitoringConfig

ON_COMPANY = "on (job, instance, company_id)"
ON_PAIR = "on (job, instance, company_id, data_type)"
ACCOUNTING_TYPES = 'data_type!~"banking-.+|commerce-.+"'
"""The data types an Accounting connection serves (as ``platforms.serving`` has it)."""


def with_platform(expr: str, sel: str) -> str:
    """``expr`` (series of pairs) with each pair's ``platform`` added where it is known."""
    inner = _indent(expr)
    return (
        "(\n"
        "  (\n"
        f"{_indent(inner)}"
        "  )\n"
        f"  and {ON_PAIR}\n"
        f"    {STATUS.name}{{{sel}, {ACCOUNTING_TYPES}}}\n"
        ")\n"
        f"* {ON_COMPANY} group_left (platform)\n"
        "  topk by (job, instance, company_id) (\n"
        f'    1, {CONNECTION_STATUS.name}{{{sel}, source_type="Accounting", status="Linked"}}\n'
        "  )\n"
        f"or {ON_PAIR}\n"
        "(\n"
        f"{inner}"
        ")\n"
    )


def _indent(text: str) -> str:
    return "".join(f"  {line}\n" for line in text.splitlines())


COMPANIES_ON = (
    f'{{{{ with printf `sum({CONNECTIONS.name}{{job=%q,platform=%q,status="Linked"}})` '
    "$labels.job $labels.platform | query }}{{ . | first | value }}{{ else }}?{{ end }}"
)
"""How many companies of the alert's job have a Linked connection on its platform."""


class Alerts(Protocol):
    """What the platform alert needs of the rules' builder (``monitoring.rules``), which
    imports this module: the config, the selector, the links, and how an alert is written."""

    config: MonitoringConfig
    sel: str
    fleet_url: str

    def status_page(self, query: str) -> str: ...

    def alert(
        self,
        name: str,
        expr: str,
        summary: str,
        description: str,
        url: str,
        *,
        status_page: str | None = None,
        keep_firing: bool = False,
    ) -> dict[str, Any]: ...


def platform_alert(rules: Alerts) -> dict[str, Any]:
    """``CodatPlatformSyncFailures``, the same in both rule files."""
    settings = rules.config.alert("CodatPlatformSyncFailures")
    if settings.companies is None:
        raise ValueError("CodatPlatformSyncFailures needs companies")
    return rules.alert(
        "CodatPlatformSyncFailures",
        f"sum without (instance) (\n  {PLATFORM_FAILING.name}{{{rules.sel}}}\n)"
        f" >= {settings.companies}\n",
        "{{ $value }} companies fail to sync from {{ $labels.platform }} at once",
        f"For {{for}}, {{{{ $value }}}} companies of {{{{ $labels.job }}}} have had their latest "
        "sync through their {{ $labels.platform }} connection end in FetchError, MapError "
        f"or another error a new sync may fix ({settings.companies} or more make an "
        f"incident; {COMPANIES_ON} companies have a Linked {{{{ $labels.platform }}}} "
        "connection): most likely the platform's outage or maintenance, which nobody here "
        "can fix. Their own CodatDataTypeSyncFailing and CodatDataTypeStale alerts are held "
        'back meanwhile; the status page (status_page) lists them, with "wait" as their '
        "next step. Queue their syncs again once the platform is back.",
        rules.fleet_url,
        status_page=rules.status_page("status=failing&platform={{ $labels.platform | urlquery }}"),
        keep_firing=True,
    )
