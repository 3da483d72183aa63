"""The fleet preset's alert rules: the same alerts as far as they can go without the
families the preset's ``metrics.denylist`` drops (``exporter.core.families.FLEET_PRESET_DENYLIST``:
every per-pair family, and every per-company one but ``codat_exporter_company_up``), so a
fleet of 10,000 companies pays for about 11,800 series instead of a million.

What stays is ``codat_exporter_company_up`` per company, per platform
(``codat_connections``) and per data type (``codat_data_type_stale_companies``,
``codat_data_type_companies``, the histogram ``codat_data_type_sync_age_seconds``):

- The exporter's own alerts and the freshness SLO's alerts are the default's; the SLO is
  recorded from the aggregates, to the same values. CodatExporterCompanyPollFailing says
  where the last successful poll's time is (the status page) instead of looking it up.
- Deauthorized connections become one alert per platform (``CodatConnectionsDeauthorized``),
  stale pairs one alert per data type (``CodatDataTypeStaleCompanies``), pairs in AuthError
  one alert per exporter naming the data types (``CodatAuthErrorCompanies``); each links to
  the status page filtered to what it counts (``connection=Deauthorized&platform=<platform>``,
  ``status=stale&data_type=<data type>``, ``status=AuthError``), which names the companies.
- Failing, never-synced and stuck pairs have no alert: counting them fleet-wide would fire
  for ever in a large fleet and name nobody. The Fleet dashboard counts them and the status
  page lists them. A platform on which many companies fail at once raises
  ``CodatPlatformSyncFailures``, as in the default rules.

Alerts about a company link to the preset's Fleet dashboard filtered to it: the Company
dashboard reads only per-pair families.
"""

from __future__ import annotations

from typing import Any

from exporter.core.families import (
    COMPANIES_BY_STATUS,
    CONNECTIONS,
    FLEET_PRESET_DENYLIST,
    STALE_COMPANIES,
    SYNC_AGE,
)
from monitoring.config import MonitoringConfig
from monitoring.dashboards.common import FLEET_PRESET_UID
from monitoring.platforms import platform_alert
from monitoring.rules import RuleBuilder
from monitoring.slo import aggregate_recording_rules

SYNCED_COUNT = (
    f"{{{{ with printf `sum({SYNC_AGE.name}_count{{job=%q,instance=%q,data_type=%q}})` "
    "$labels.job $labels.instance $labels.data_type | query }}"
    "{{ . | first | value }}{{ else }}?{{ end }}"
)
AUTH_ERROR_BY_DATA_TYPE = (
    f"{{{{ range $i, $type := printf `{COMPANIES_BY_STATUS.name}"
    '{job=%q,instance=%q,status="AuthError"} > 0` $labels.job $labels.instance | query '
    '| sortByLabel "data_type" }}{{ if $i }}, {{ end }}{{ $type.Labels.data_type }} '
    "{{ $type.Value }}{{ else }}none at this moment{{ end }}"
)
COMPANIES = "compan{{ if eq $value 1.0 }}y{{ else }}ies{{ end }}"
PAIRS = "company x data type pair{{ if ne $value 1.0 }}s{{ end }}"
CONNECTIONS_ON = (
    "connection{{ if ne $value 1.0 }}s{{ end }} on {{ $labels.platform }} "
    "{{ if eq $value 1.0 }}is{{ else }}are{{ end }}"
)


def build_fleet_preset_rules(config: MonitoringConfig) -> dict[str, Any]:
    """The preset's rule file as a mapping, ready for YAML."""
    rules = RuleBuilder(
        config,
        fleet_uid=FLEET_PRESET_UID,
        company_uid=FLEET_PRESET_UID,
        denied=FLEET_PRESET_DENYLIST,
    )
    sel = config.selector
    by_data_type = f"{rules.fleet_url}&var-data_type={{{{ $labels.data_type }}}}"
    auth_error_page = rules.status_page("status=AuthError")
    data_rules = [
        rules.alert(
            "CodatConnectionsDeauthorized",
            f'{CONNECTIONS.name}{{{sel}, status="Deauthorized"}} > 0\n',
            f"{{{{ $value }}}} {CONNECTIONS_ON} deauthorized",
            "Among the companies {{ $labels.instance }} monitors, "
            f"{{{{ $value }}}} {CONNECTIONS_ON} Deauthorized in Codat: nothing syncs through "
            "a deauthorized connection until its company re-links it. The status page "
            "(status_page) lists the companies to relink: each company with a Deauthorized "
            "connection on {{ $labels.platform }}, with its connections, whether or not a "
            "sync has ended in AuthError yet.",
            rules.fleet_url,
            status_page=rules.status_page(
                "connection=Deauthorized&platform={{ $labels.platform | urlquery }}"
            ),
            keep_firing=True,
        ),
        rules.alert(
            "CodatDataTypeStaleCompanies",
            f"{STALE_COMPANIES.name}{{{sel}}} > 0\n",
            f"{{{{ $labels.data_type }}}} is stale in {{{{ $value }}}} {COMPANIES}",
            f"For {{{{ $value }}}} of the {SYNCED_COUNT} companies of {{{{ $labels.instance }}}} "
            "with a successful {{ $labels.data_type }} sync, the last one is older than its "
            "max age, for {for} or more. The status page (status_page) lists them, most "
            "overdue first, with each one's latest sync status and error.",
            by_data_type,
            status_page=rules.status_page(
                "status=stale&data_type={{ $labels.data_type | urlquery }}"
            ),
            keep_firing=True,
        ),
        rules.alert(
            "CodatAuthErrorCompanies",
            f"sum without (data_type, status) (\n"
            f'  {COMPANIES_BY_STATUS.name}{{{sel}, status="AuthError"}}\n'
            f") > 0\n",
            f"Codat lost access to {{{{ $value }}}} {PAIRS} (AuthError)",
            f"{{{{ $value }}}} {PAIRS} of {{{{ $labels.instance }}}} ended their last sync in "
            "AuthError: those companies' connections are no longer authorised, "
            "and their data stays as it is until they re-link. Companies per data type: "
            f"{AUTH_ERROR_BY_DATA_TYPE}. The status page (status_page) names them; "
            "Deauthorized connections also raise CodatConnectionsDeauthorized for their "
            "platform.",
            rules.fleet_url,
            status_page=auth_error_page,
            keep_firing=True,
        ),
        platform_alert(rules),
    ]
    return rules.rule_file(
        {
            "codat-data-freshness": data_rules,
            "codat-freshness-slo": [*aggregate_recording_rules(sel), *rules.slo_alerts()],
            "codat-freshness-exporter": rules.exporter_alerts(),
        }
    )
