"""The freshness SLO: recording rules for the share of fresh pairs, and the burn-rate
conditions of the two SLO alerts (multi-window, multi-burn-rate, after the SRE workbook).

A pair is *fresh* while its age is at most its max age, whatever its status: the SLO
measures what a consumer of Codat's data gets, and the cause alerts (AuthError, failing
syncs) say why. Pairs never synced have no age and stay out of it. The shares average
pairs over every instance, so shards and HA replicas count once per pair each; aggregating
``without`` the pair labels keeps ``job`` and any target labels (``env``) for routing.

Recorded series, as Prometheus returns them::

    job_data_type:codat_pairs_fresh:ratio{job="codat-freshness-exporter",data_type="bills"} 0.95
    job:codat_pairs_fresh:ratio{job="codat-freshness-exporter"} 0.9867
    job:codat_pairs_stale:ratio_avg1h{job="codat-freshness-exporter"} 0.0133

The fleet preset records the same series from the scrape-time aggregates instead
(``aggregate_recording_rules``): stale pairs (``codat_data_type_stale_companies``) over
synced pairs (the ``_count`` of ``codat_data_type_sync_age_seconds``) is exactly the share
the per-pair rules average, so its SLO alerts and panels are the default's.
"""

from __future__ import annotations

from typing import Any

from exporter.core.families import LAST_SYNC_AGE, MAX_AGE, STALE_COMPANIES, SYNC_AGE
from monitoring.dashboards.common import ON_PAIR

FRESH_BY_DATA_TYPE = "job_data_type:codat_pairs_fresh:ratio"
FRESH = "job:codat_pairs_fresh:ratio"
PAIR_LABELS = "instance, company_id, company_name"
WINDOWS = ("5m", "30m", "1h", "6h", "3d")

PAGE_CONDITIONS = ((14.4, "1h", "5m"), (6.0, "6h", "30m"))
"""(burn rate, long window, short window): 2 % and 5 % of a 30-day budget spent."""
TICKET_CONDITIONS = ((1.0, "3d", "6h"),)
"""10 % of a 30-day budget spent, at the rate that spends all of it in 30 days."""


def stale_avg(window: str) -> str:
    """The recorded share of stale pairs, averaged over ``window``."""
    return f"job:codat_pairs_stale:ratio_avg{window}"


def recording_rules(selector: str) -> list[dict[str, Any]]:
    fresh = (
        f"{LAST_SYNC_AGE.name}{{{selector}}}\n  <= bool {ON_PAIR}\n{MAX_AGE.name}{{{selector}}}\n"
    )
    by_data_type = f"avg without ({PAIR_LABELS}) (\n{_indent(fresh)})\n"
    fleet = f"avg without ({PAIR_LABELS}, data_type) (\n{_indent(fresh)})\n"
    return [
        {"record": FRESH_BY_DATA_TYPE, "expr": by_data_type},
        {"record": FRESH, "expr": fleet},
        *_averages(),
    ]


def aggregate_recording_rules(selector: str) -> list[dict[str, Any]]:
    """The same series as ``recording_rules``, from the per-data-type aggregates."""

    def fresh(without: str) -> str:
        return (
            f"1 - (\n"
            f"  sum without ({without}) ({STALE_COMPANIES.name}{{{selector}}})\n"
            f"  /\n"
            f"  (sum without ({without}) ({SYNC_AGE.name}_count{{{selector}}}) > 0)\n"
            f")\n"
        )

    return [
        {"record": FRESH_BY_DATA_TYPE, "expr": fresh("instance")},
        {"record": FRESH, "expr": fresh("instance, data_type")},
        *_averages(),
    ]


def _averages() -> list[dict[str, Any]]:
    return [
        {"record": stale_avg(window), "expr": f"1 - avg_over_time({FRESH}[{window}])"}
        for window in WINDOWS
    ]


def burn_expr(conditions: tuple[tuple[float, str, str], ...], objective: float) -> str:
    """Fires while every window of one condition burns the budget faster than its rate;
    the value is the long window's share of stale pairs."""
    budget = f"{1 - objective:.6g}"
    parts = [
        f"(\n  {stale_avg(long)} > {rate:g} * {budget}\n"
        f"and\n  {stale_avg(short)} > {rate:g} * {budget}\n)"
        for rate, long, short in conditions
    ]
    return "\nor\n".join(parts) + "\n"


def _indent(text: str) -> str:
    return "".join(f"  {line}\n" for line in text.splitlines())
