"""The Prometheus alert rules, built from the config.

Four choices shape the expressions; docs/alerts-and-dashboards.md explains them for users:

- Pair alerts match ``on (job, instance, company_id, data_type)``, so two exporters (or an
  HA pair) never compare each other's series; ``group_left ()`` keeps the age series' own
  labels (``company_name``, target labels) in the alert.
- ``codat_data_type_status`` changes its ``status`` label, not its value, so an alert that
  kept the label would restart its ``for`` on every change. AuthError and SyncFailing drop
  the label and look back ``sync_in_progress_grace`` with ``max_over_time``: the Queued ..
  Validating statuses of the next attempt do not reset them, and a Complete sync ends them
  at once (the ``unless``). The latest status is read back into the description.
- The 401/403 request counter appears only with the first rejection, which ``increase``
  cannot see; the poll-error counter starts at 0 for every reason, so the API-key alert
  reads both.
- Descriptions look values up with the ``query`` template function, so an alert states
  the last successful sync and the max age without extra labels that would split it.
"""

from __future__ import annotations

from typing import Any

from exporter.durations import parse_duration
from exporter.metrics import (
    API_REQUESTS,
    COMPANY_CREATED,
    COMPANY_LAST_SUCCESS,
    COMPANY_UP,
    CONNECTION_STATUS,
    LAST_POLL,
    LAST_SYNC_AGE,
    LAST_SYNC_TIMESTAMP,
    MAX_AGE,
    POLL_ERRORS,
    STATUS,
)
from monitoring.config import MonitoringConfig
from monitoring.dashboards import (
    COMPANY_UID,
    EXPORTER_UID,
    FLEET_UID,
    ON_PAIR,
    PAIR,
    dashboard_path,
)
from monitoring.dashboards.common import ERRORS
from monitoring.slo import (
    FRESH_BY_DATA_TYPE,
    PAGE_CONDITIONS,
    TICKET_CONDITIONS,
    burn_expr,
    recording_rules,
)


def seconds(duration: str) -> int:
    """``1h30m`` -> 5400: Prometheus durations as the generator's config holds them."""
    return int(parse_duration(duration))


def _pair_lookup(metric: str) -> str:
    """A template pipeline returning ``metric`` for the alert's own company and data type."""
    return (
        f"printf `{metric}{{job=%q,instance=%q,company_id=%q,data_type=%q}}` "
        "$labels.job $labels.instance $labels.company_id $labels.data_type | query"
    )


LAST_SYNC = (
    f"{{{{ with {_pair_lookup(LAST_SYNC_AGE.name)} }}}}"
    "{{ . | first | value | humanizeDuration }} ago{{ else }}never{{ end }}"
)
LATEST_STATUS = (
    f"{{{{ with {_pair_lookup(STATUS.name)} }}}}"
    '{{ . | first | label "status" }}{{ else }}unknown{{ end }}'
)
MAX_AGE_VALUE = (
    f"{{{{ with {_pair_lookup(MAX_AGE.name)} }}}}"
    "{{ . | first | value | humanizeDuration }}{{ end }}"
)
LAST_COMPANY_POLL = (
    f"{{{{ with printf `time() - {COMPANY_LAST_SUCCESS.name}{{job=%q,instance=%q,company_id=%q}}` "
    "$labels.job $labels.instance $labels.company_id | query }}"
    "{{ . | first | value | humanizeDuration }} ago{{ else }}never{{ end }}"
)
COMPANY_AGE = (
    f"{{{{ with printf `time() - {COMPANY_CREATED.name}{{job=%q,instance=%q,company_id=%q}}` "
    "$labels.job $labels.instance $labels.company_id | query }}"
    "{{ . | first | value | humanizeDuration }} ago{{ end }}"
)
PAIR_NAME = (
    "{{ $labels.data_type }} for {{ $labels.company_name }} (company {{ $labels.company_id }})"
)


def _company_lookup(expr: str) -> str:
    """A template pipeline returning ``expr`` (``%s`` is the label matchers' place) for the
    alert's own company."""
    matchers = "job=%q,instance=%q,company_id=%q"
    return (
        f"printf `{expr.replace('%s', matchers)}` "
        "$labels.job $labels.instance $labels.company_id | query"
    )


AUTH_ERROR_TYPES = (
    f"{{{{ range $i, $pair := {_company_lookup(STATUS.name + '{%s,status=`AuthError`}')}"
    ' | sortByLabel "data_type" }}{{ if $i }}, {{ end }}{{ $pair.Labels.data_type }}'
    "{{ else }}none at this moment (a retry is in progress){{ end }}"
).replace("`AuthError`", '"AuthError"')
AUTH_ERROR_COUNT = (
    f"{{{{ with {_company_lookup('count(' + STATUS.name + '{%s,status=`AuthError`})')} }}}}"
    "{{ . | first | value }}{{ else }}0{{ end }}"
).replace("`AuthError`", '"AuthError"')
DATA_TYPES = "{{ $value }} data type{{ if ne $value 1.0 }}s{{ end }}"
LOWEST_FRESH_SHARES = (
    '{{ $own := "" }}{{ range $name, $value := $labels }}{{ if ne $name "__name__" }}'
    '{{ $own = printf "%s%s=%q," $own $name $value }}{{ end }}{{ end }}'
    f"{{{{ range printf `bottomk(3, {FRESH_BY_DATA_TYPE}{{%s}})` $own | query }}}}"
    "{{ .Labels.data_type }} {{ .Value | humanizePercentage }}, {{ end }}"
)
"""The three data types with the lowest fresh share in the alert's own fleet (its labels:
job and any target labels)."""


def build_rules(config: MonitoringConfig) -> dict[str, Any]:
    """The whole rule file as a mapping, ready for YAML."""
    sel = config.selector
    grace = config.sync_in_progress_grace
    company_url = (
        f"{config.grafana_url}{dashboard_path(COMPANY_UID)}"
        "?var-job={{ $labels.job }}&var-company={{ $labels.company_id }}"
    )
    exporter_url = (
        f"{config.grafana_url}{dashboard_path(EXPORTER_UID)}?var-job={{{{ $labels.job }}}}"
    )
    fleet_url = f"{config.grafana_url}{dashboard_path(FLEET_UID)}?var-job={{{{ $labels.job }}}}"
    status_page = f"{config.status_page_url}?company={{{{ $labels.company_id | urlquery }}}}"

    def alert(
        name: str, expr: str, summary: str, description: str, url: str, *, company: bool = False
    ) -> dict[str, Any]:
        """``company``: the alert is about one company, so it links to the status page
        filtered to it."""
        settings = config.alert(name)
        rule: dict[str, Any] = {"alert": name, "expr": expr}
        if seconds(settings.for_):
            rule["for"] = settings.for_
        rule["labels"] = {"severity": settings.severity}
        rule["annotations"] = {
            "summary": summary,
            "description": description.replace("{for}", settings.for_),
            "runbook_url": f"{config.runbook_url}#{name.lower()}",
            "dashboard_url": url,
        }
        if company:
            rule["annotations"]["status_page"] = status_page
        return rule

    def since_last_status(matcher: str) -> str:
        return (
            f"max without (status) (\n"
            f"  max_over_time({STATUS.name}{{{sel}, {matcher}}}[{grace}])\n"
            f")\n"
            f"unless on ({PAIR})\n"
            f'  {STATUS.name}{{{sel}, status="Complete"}}\n'
        )

    api_key = config.alert("CodatExporterAPIKeyRejected")
    stalled = config.alert("CodatExporterPollStalled")
    never = config.alert("CodatDataTypeNeverSynced")
    if api_key.window is None or stalled.threshold is None or never.threshold is None:
        raise ValueError(
            "CodatExporterAPIKeyRejected needs window, CodatExporterPollStalled and "
            "CodatDataTypeNeverSynced threshold"
        )
    objective = f"{100 * config.freshness_objective:g} %"
    auth_errors = since_last_status('status="AuthError"')

    data_rules = [
        alert(
            "CodatConnectionDeauthorized",
            f'{CONNECTION_STATUS.name}{{{sel}, status="Deauthorized"}} == 1\n',
            "{{ $labels.company_name }}: its {{ $labels.platform }} connection is deauthorized",
            "The {{ $labels.platform }} connection {{ $labels.connection_id }} "
            "({{ $labels.source_type }}) of {{ $labels.company_name }} (company "
            "{{ $labels.company_id }}) is Deauthorized in Codat: nothing syncs through it "
            "until the company re-links it. Data types of the company in AuthError now: "
            f"{AUTH_ERROR_COUNT}.",
            company_url,
            company=True,
        ),
        alert(
            "CodatCompanyAuthError",
            f"count without (data_type) (\n{_indent(auth_errors)})\n",
            f"{{{{ $labels.company_name }}}}: Codat lost access to {DATA_TYPES} (AuthError)",
            f"{DATA_TYPES} of {{{{ $labels.company_name }}}} (company "
            "{{ $labels.company_id }}) ended their last sync in AuthError: the company's "
            "connection is no longer authorised, and their data stays as it is until the "
            f"company re-links. In AuthError: {AUTH_ERROR_TYPES}.",
            company_url,
            company=True,
        ),
        alert(
            "CodatDataTypeStale",
            f"{LAST_SYNC_AGE.name}{{{sel}}}\n  > {ON_PAIR}\n{MAX_AGE.name}{{{sel}}}\n",
            "{{ $labels.company_name }}: {{ $labels.data_type }} is stale "
            "({{ $value | humanizeDuration }} old)",
            f"{PAIR_NAME} last synced successfully {{{{ $value | humanizeDuration }}}} ago, "
            f"more than its max age of {MAX_AGE_VALUE}. Latest sync status: {LATEST_STATUS}.",
            company_url,
            company=True,
        ),
        alert(
            "CodatDataTypeNeverSynced",
            f"(\n"
            f"  max without (status) (\n"
            f'    {STATUS.name}{{{sel}, status!~"AuthError|NotSupported|{ERRORS}"}}\n'
            f"  )\n"
            f"  unless on ({PAIR})\n"
            f"    {LAST_SYNC_TIMESTAMP.name}{{{sel}}}\n"
            f")\n"
            f"and on (job, instance, company_id)\n"
            f"  time() - {COMPANY_CREATED.name}{{{sel}}} > {seconds(never.threshold)}\n",
            "{{ $labels.company_name }}: {{ $labels.data_type }} has never synced",
            f"Codat has had no successful sync of {PAIR_NAME} since the company was created "
            f"{COMPANY_AGE} (latest status: {LATEST_STATUS}). Check that the data type is "
            "enabled in the company's sync settings and offered by its integration.",
            company_url,
            company=True,
        ),
        alert(
            "CodatDataTypeSyncFailing",
            since_last_status(f'status=~"{ERRORS}"'),
            "{{ $labels.company_name }}: {{ $labels.data_type }} syncs are failing",
            f"Syncs of {PAIR_NAME} have ended in an error status for {{for}} (latest: "
            f"{LATEST_STATUS}). Last successful sync: {LAST_SYNC}.",
            company_url,
            company=True,
        ),
        # CodatDataTypeSyncStuck (a sync queued or in progress too long) belongs here.
    ]
    slo_rules = [
        *recording_rules(sel),
        alert(
            "CodatFreshnessSLOFastBurn",
            burn_expr(PAGE_CONDITIONS, config.freshness_objective),
            "Codat data freshness is burning its error budget fast",
            "{{ $value | humanizePercentage }} of the synced company x data type pairs of "
            "{{ $labels.job }} were stale on average over the last "
            f"{' or '.join(long for _, long, _ in PAGE_CONDITIONS)}: the {objective} "
            "freshness objective's 30-day error budget goes in days at this rate. Lowest "
            f"fresh shares now: {LOWEST_FRESH_SHARES}see the Fleet dashboard.",
            fleet_url,
        ),
        alert(
            "CodatFreshnessSLOSlowBurn",
            burn_expr(TICKET_CONDITIONS, config.freshness_objective),
            "Codat data freshness is below its objective",
            "{{ $value | humanizePercentage }} of the synced company x data type pairs of "
            f"{{{{ $labels.job }}}} were stale on average over the last "
            f"{TICKET_CONDITIONS[0][1]}, more than the {objective} freshness objective "
            f"allows. Lowest fresh shares now: {LOWEST_FRESH_SHARES}see the Fleet dashboard.",
            fleet_url,
        ),
    ]
    exporter_rules = [
        alert(
            "CodatExporterCompanyPollFailing",
            f"{COMPANY_UP.name}{{{sel}}} == 0\n",
            "The exporter cannot poll {{ $labels.company_name }} from Codat",
            "Polls of {{ $labels.company_name }} (company {{ $labels.company_id }}) by "
            "{{ $labels.instance }} have failed for {for}; its codat_data_type_* values are "
            f"those of the last successful poll, {LAST_COMPANY_POLL}. The exporter's log and "
            "codat_exporter_poll_errors_total say why.",
            company_url,
            company=True,
        ),
        alert(
            "CodatExporterAPIKeyRejected",
            f"sum without (endpoint, code) (\n"
            f'  increase({API_REQUESTS.name}{{{sel}, code=~"401|403"}}[{api_key.window}])\n'
            f") > 0\n"
            f"or\n"
            f"sum without (reason) (\n"
            f'  increase({POLL_ERRORS.name}{{{sel}, reason="api_key_rejected"}}'
            f"[{api_key.window}])\n"
            f") > 0\n",
            "Codat rejects the exporter's API key",
            "Codat rejected requests from {{ $labels.instance }} with 401 or 403 "
            f"({{{{ $value | humanize }}}} in the last {api_key.window}): the API key is wrong, "
            "revoked or lacks access, and polls fail until it is replaced.",
            exporter_url,
        ),
        alert(
            "CodatExporterDown",
            f"up{{{sel}}} == 0 or absent(up{{{sel}}})\n",
            "Prometheus cannot scrape the Codat freshness exporter",
            "{{ with $labels.instance }}Target {{ . }}{{ else }}Every target{{ end }} of job "
            "{{ $labels.job }} has been down or absent for {for}: no Codat freshness alert can "
            "fire meanwhile.",
            exporter_url,
        ),
        alert(
            "CodatExporterPollStalled",
            f"time() - {LAST_POLL.name}{{{sel}}} > {seconds(stalled.threshold)}\n",
            "The Codat freshness exporter has stopped polling",
            "{{ $labels.instance }} last finished a poll cycle {{ $value | humanizeDuration }} "
            f"ago (threshold {stalled.threshold}) yet answers scrapes: every codat_data_type_* "
            "value it exports is frozen.",
            exporter_url,
        ),
    ]
    return {
        "groups": [
            {"name": "codat-data-freshness", "rules": data_rules},
            {"name": "codat-freshness-slo", "rules": slo_rules},
            {"name": "codat-freshness-exporter", "rules": exporter_rules},
        ]
    }


def _indent(text: str) -> str:
    return "".join(f"  {line}\n" for line in text.splitlines())
