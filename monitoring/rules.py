"""The Prometheus alert rules, built from the config: the default rules here, and the
``RuleBuilder`` that the fleet preset's (``monitoring.fleet_preset``) share.

Five choices shape the expressions; docs/alerts-and-dashboards.md explains them for users:

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
- An alert over the exporter's latest values keeps firing for ``keep_firing_for`` after its
  series vanish: a restarting exporter misses scrapes, Prometheus marks its series stale,
  and the alert would otherwise resolve, then wait its whole ``for`` again when the same
  values come back. AuthError and SyncFailing need none: their look-back bridges the gap,
  and a Complete sync still ends them at once.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from exporter.config.durations import parse_duration
from exporter.core.families import (
    API_REQUESTS,
    COMPANY_CREATED,
    COMPANY_LAST_SUCCESS,
    COMPANY_NOT_FOUND,
    COMPANY_UP,
    CONNECTION_STATUS,
    LAST_POLL,
    LAST_SYNC_AGE,
    LAST_SYNC_TIMESTAMP,
    LATEST_SYNC_REQUESTED,
    MAX_AGE,
    PAUSED_UNTIL,
    POLL_ERRORS,
    STATE_FILE_ERRORS,
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
from monitoring.platforms import platform_alert, with_platform
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


class RuleBuilder:
    """Alert rules with the config's severity, ``for``, ``keep_firing_for`` and links.

    ``fleet_uid`` and ``company_uid`` are the dashboards the alerts link to: the fleet
    preset has no company dashboard (its queries are per pair) and links company alerts to
    its Fleet dashboard filtered to the company instead. ``denied`` are the families the
    exporter does not export (the fleet preset's ``metrics.denylist``): an alert shared by
    both rule files words its description without them rather than look up a series that
    is not there.
    """

    def __init__(
        self,
        config: MonitoringConfig,
        fleet_uid: str = FLEET_UID,
        company_uid: str = COMPANY_UID,
        denied: Collection[str] = (),
    ) -> None:
        self.config = config
        self.denied = frozenset(denied)
        self.sel = config.selector
        grafana = config.grafana_url
        self.company_url = (
            f"{grafana}{dashboard_path(company_uid)}"
            "?var-job={{ $labels.job }}&var-company={{ $labels.company_id }}"
        )
        self.fleet_url = f"{grafana}{dashboard_path(fleet_uid)}?var-job={{{{ $labels.job }}}}"
        self.exporter_url = f"{grafana}{dashboard_path(EXPORTER_UID)}?var-job={{{{ $labels.job }}}}"
        self.company_page = self.status_page("company={{ $labels.company_id | urlquery }}")

    def status_page(self, query: str) -> str:
        """The status page filtered by ``query``, e.g. ``status=stale``."""
        return f"{self.config.status_page_url}?{query}"

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
    ) -> dict[str, Any]:
        """``status_page``: where on the status page the subject is listed (the company,
        or a filter); ``keep_firing``: the expression reads the exporter's latest values,
        which vanish for the scrapes a restart misses."""
        settings = self.config.alert(name)
        rule: dict[str, Any] = {"alert": name, "expr": expr}
        if seconds(settings.for_):
            rule["for"] = settings.for_
        if keep_firing:
            rule["keep_firing_for"] = self.config.keep_firing_for
        rule["labels"] = self.config.labels(name)
        rule["annotations"] = {
            "summary": summary,
            "description": description.replace("{for}", settings.for_),
            "runbook_url": f"{self.config.runbook_url}#{name.lower()}",
            "dashboard_url": url,
        }
        if status_page is not None:
            rule["annotations"]["status_page"] = status_page
        return rule

    def rule_file(self, groups: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        """The rule file of ``groups`` (name -> rules) as a mapping ready for YAML, without
        the alerts config.yml switches off (``enabled: false``), nor a group left empty."""
        kept = {
            name: [rule for rule in rules if self._enabled(rule)] for name, rules in groups.items()
        }
        return {"groups": [{"name": name, "rules": rules} for name, rules in kept.items() if rules]}

    def _enabled(self, rule: dict[str, Any]) -> bool:
        return "alert" not in rule or self.config.alert(rule["alert"]).enabled

    def deauthorized(self, consequences: str) -> dict[str, Any]:
        """``consequences``: what the description adds about the company's data types."""
        return self.alert(
            "CodatConnectionDeauthorized",
            f'{CONNECTION_STATUS.name}{{{self.sel}, status="Deauthorized"}} == 1\n',
            "{{ $labels.company_name }}: its {{ $labels.platform }} connection is deauthorized",
            "The {{ $labels.platform }} connection {{ $labels.connection_id }} "
            "({{ $labels.source_type }}) of {{ $labels.company_name }} (company "
            "{{ $labels.company_id }}) is Deauthorized in Codat: nothing syncs through it "
            f"until the company re-links it. {consequences}",
            self.company_url,
            status_page=self.company_page,
            keep_firing=True,
        )

    def slo_alerts(self) -> list[dict[str, Any]]:
        """The burn-rate alerts over the recorded shares, whichever rules record them."""
        objective = f"{100 * self.config.freshness_objective:g} %"
        return [
            self.alert(
                "CodatFreshnessSLOFastBurn",
                burn_expr(PAGE_CONDITIONS, self.config.freshness_objective),
                "Codat data freshness is burning its error budget fast",
                "{{ $value | humanizePercentage }} of the synced company x data type pairs of "
                "{{ $labels.job }} were stale on average over the last "
                f"{' or '.join(long for _, long, _ in PAGE_CONDITIONS)}: the {objective} "
                "freshness objective's 30-day error budget goes in days at this rate. Lowest "
                f"fresh shares now: {LOWEST_FRESH_SHARES}see the Fleet dashboard.",
                self.fleet_url,
            ),
            self.alert(
                "CodatFreshnessSLOSlowBurn",
                burn_expr(TICKET_CONDITIONS, self.config.freshness_objective),
                "Codat data freshness is below its objective",
                "{{ $value | humanizePercentage }} of the synced company x data type pairs of "
                f"{{{{ $labels.job }}}} were stale on average over the last "
                f"{TICKET_CONDITIONS[0][1]}, more than the {objective} freshness objective "
                f"allows. Lowest fresh shares now: {LOWEST_FRESH_SHARES}see the Fleet "
                "dashboard.",
                self.fleet_url,
            ),
        ]

    def exporter_alerts(self) -> list[dict[str, Any]]:
        """The exporter's own health: per company and per exporter series only, so the
        default rules and the fleet preset's are the same."""
        sel, config = self.sel, self.config
        api_key = config.alert("CodatExporterAPIKeyRejected")
        stalled = config.alert("CodatExporterPollStalled")
        state_file = config.alert("CodatExporterStateFileErrors")
        if api_key.window is None or stalled.threshold is None or state_file.window is None:
            raise ValueError(
                "CodatExporterAPIKeyRejected and CodatExporterStateFileErrors need window, "
                "CodatExporterPollStalled threshold"
            )
        last_poll = (
            "whose time the status page (status_page) shows"
            if COMPANY_LAST_SUCCESS.name in self.denied
            else LAST_COMPANY_POLL
        )
        return [
            self.alert(
                "CodatExporterCompanyPollFailing",
                f"{COMPANY_UP.name}{{{sel}}} == 0\n"
                f"unless on (job, instance, company_id)\n"
                f"  {COMPANY_NOT_FOUND.name}{{{sel}}}\n",
                "The exporter cannot poll {{ $labels.company_name }} from Codat",
                "Polls of {{ $labels.company_name }} (company {{ $labels.company_id }}) by "
                "{{ $labels.instance }} have failed for {for}; its codat_data_type_* values are "
                f"those of the last successful poll, {last_poll}. The exporter's log "
                "and codat_exporter_poll_errors_total say why.",
                self.company_url,
                status_page=self.company_page,
                keep_firing=True,
            ),
            self.alert(
                "CodatExporterCompanyNotFound",
                f"{COMPANY_NOT_FOUND.name}{{{sel}}} == 1\n",
                "Codat does not know company {{ $labels.company_id }}, listed in companies.ids",
                "Codat has answered 404 (not found) for company {{ $labels.company_id }}, "
                "which {{ $labels.instance }} lists in companies.ids, for {for}: none of its "
                "data is polled meanwhile. Look the id up in the Codat portal (a typo, a "
                "company deleted in Codat, or one of another Codat account), then correct it "
                "or remove it from companies.ids.",
                self.company_url,
                status_page=self.company_page,
                keep_firing=True,
            ),
            self.alert(
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
                f"({{{{ $value | humanize }}}} in the last {api_key.window}): the API key is "
                "wrong, revoked or lacks access, and polls fail until it is replaced.",
                self.exporter_url,
            ),
            self.alert(
                "CodatExporterDown",
                f"up{{{sel}}} == 0 or absent(up{{{sel}}})\n",
                "Prometheus cannot scrape the Codat freshness exporter",
                "{{ with $labels.instance }}Target {{ . }}{{ else }}Every target{{ end }} of "
                "job {{ $labels.job }} has been down or absent for {for}: no Codat freshness "
                "alert can fire meanwhile.",
                self.exporter_url,
            ),
            self.alert(
                "CodatExporterPollStalled",
                f"time() - {LAST_POLL.name}{{{sel}}} > {seconds(stalled.threshold)}\n",
                "The Codat freshness exporter has stopped polling",
                "{{ $labels.instance }} last finished a poll cycle "
                f"{{{{ $value | humanizeDuration }}}} ago (threshold {stalled.threshold}) yet "
                "answers scrapes: every codat_data_type_* value it exports is frozen.",
                self.exporter_url,
                keep_firing=True,
            ),
            self.alert(
                "CodatExporterStateFileErrors",
                f"increase({STATE_FILE_ERRORS.name}{{{sel}}}[{state_file.window}]) > 0\n",
                "The Codat freshness exporter cannot write its state file",
                "{{ $labels.instance }} failed to write its state file (state.file) in the "
                f"last {state_file.window}. It goes on polling and serving, but after a "
                "restart it would serve the last file it wrote, older values, or nothing until "
                "its first cycle ends. Its log says why (a full or read-only volume, "
                "permissions).",
                self.exporter_url,
            ),
        ]


def build_rules(config: MonitoringConfig) -> dict[str, Any]:
    """The whole rule file as a mapping, ready for YAML."""
    rules = RuleBuilder(config)
    sel = config.selector
    grace = config.sync_in_progress_grace

    def since_last_status(matcher: str) -> str:
        return (
            f"max without (status) (\n"
            f"  max_over_time({STATUS.name}{{{sel}, {matcher}}}[{grace}])\n"
            f")\n"
            f"unless on ({PAIR})\n"
            f'  {STATUS.name}{{{sel}, status="Complete"}}\n'
        )

    never = config.alert("CodatDataTypeNeverSynced")
    stuck = config.alert("CodatDataTypeSyncStuck")
    if never.threshold is None or stuck.threshold is None:
        raise ValueError("CodatDataTypeNeverSynced and CodatDataTypeSyncStuck need threshold")
    paused = f"{PAUSED_UNTIL.name}{{{sel}}} > time()"
    stuck_after = seconds(stuck.threshold)
    auth_errors = since_last_status('status="AuthError"')
    company_url, company_page = rules.company_url, rules.company_page

    data_rules = [
        rules.deauthorized(f"Data types of the company in AuthError now: {AUTH_ERROR_COUNT}."),
        rules.alert(
            "CodatCompanyAuthError",
            f"count without (data_type) (\n{_indent(auth_errors)})\n",
            f"{{{{ $labels.company_name }}}}: Codat lost access to {DATA_TYPES} (AuthError)",
            f"{DATA_TYPES} of {{{{ $labels.company_name }}}} (company "
            "{{ $labels.company_id }}) ended their last sync in AuthError: the company's "
            "connection is no longer authorised, and their data stays as it is until the "
            f"company re-links. In AuthError: {AUTH_ERROR_TYPES}.",
            company_url,
            status_page=company_page,
        ),
        rules.alert(
            "CodatDataTypeStale",
            with_platform(
                f"{LAST_SYNC_AGE.name}{{{sel}}}\n  > {ON_PAIR}\n{MAX_AGE.name}{{{sel}}}\n"
                f"unless on ({PAIR})\n  {paused}\n",
                sel,
            ),
            "{{ $labels.company_name }}: {{ $labels.data_type }} is stale "
            "({{ $value | humanizeDuration }} old)",
            f"{PAIR_NAME} last synced successfully {{{{ $value | humanizeDuration }}}} ago, "
            f"more than its max age of {MAX_AGE_VALUE}. Latest sync status: {LATEST_STATUS}.",
            company_url,
            status_page=company_page,
            keep_firing=True,
        ),
        rules.alert(
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
            status_page=company_page,
            keep_firing=True,
        ),
        rules.alert(
            "CodatDataTypeSyncFailing",
            with_platform(since_last_status(f'status=~"{ERRORS}"'), sel),
            "{{ $labels.company_name }}: {{ $labels.data_type }} syncs are failing",
            f"Syncs of {PAIR_NAME} have ended in an error status for {{for}} (latest: "
            f"{LATEST_STATUS}). Last successful sync: {LAST_SYNC}.",
            company_url,
            status_page=company_page,
        ),
        rules.alert(
            "CodatDataTypeSyncStuck",
            f"max without (data_type) (\n{_indent(_stuck_pairs(sel, stuck_after))})\n",
            "{{ $labels.company_name }}: syncs queued or in progress for "
            "{{ $value | humanizeDuration }}",
            "Syncs of {{ $labels.company_name }} (company {{ $labels.company_id }}) "
            f"requested more than {stuck.threshold} ago are still queued or in progress: "
            f"{_stuck_types(stuck_after)}. Their data does not move meanwhile; a sync that "
            "stays Queued usually waits for an on-premise connector whose machine is offline.",
            company_url,
            status_page=company_page,
            keep_firing=True,
        ),
        platform_alert(rules),
    ]
    slo_rules = [*recording_rules(sel), *rules.slo_alerts()]
    return rules.rule_file(
        {
            "codat-data-freshness": data_rules,
            "codat-freshness-slo": slo_rules,
            "codat-freshness-exporter": rules.exporter_alerts(),
        }
    )


def _stuck_pairs(matchers: str, threshold: int) -> str:
    """Pairs whose latest sync was requested more than ``threshold`` seconds ago and is
    still queued or running, unless paused until a later time."""
    return (
        f"time() - {LATEST_SYNC_REQUESTED.name}{{{matchers}}} > {threshold}\n"
        f"unless on ({PAIR})\n"
        f"  {PAUSED_UNTIL.name}{{{matchers}}} > time()\n"
    )


def _stuck_types(threshold: int) -> str:
    """The alert's company's stuck data types, each with the time since its sync was
    requested: the alert's own per-pair expression, run for that company."""
    own = " ".join(_stuck_pairs("job=%[1]q,instance=%[2]q,company_id=%[3]q", threshold).split())
    return (
        f"{{{{ range $i, $pair := printf `{own}` $labels.job $labels.instance "
        '$labels.company_id | query | sortByLabel "data_type" }}{{ if $i }}, {{ end }}'
        "{{ $pair.Labels.data_type }} ({{ $pair.Value | humanizeDuration }}){{ end }}"
    )


def _indent(text: str) -> str:
    return "".join(f"  {line}\n" for line in text.splitlines())
