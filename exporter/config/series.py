"""The sections that decide what the exported series say: which data types become series
(``data_types``), how old a last successful sync may be before it is stale (``freshness``),
and which families reach /metrics (``metrics``).

Apart from the sections about Codat and the process (``exporter.config.sections``) because
the exposition reads them (``exporter.exposition``) and each answers a question the series
ask of every pair and family: ``selects``, ``max_age_for``, ``exports``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from exporter.config.kinds import COMPANY_ID, DATA_TYPE_SET, FAMILY_PATTERNS, MAX_AGES
from exporter.config.settings import (
    BOOL,
    DURATION,
    ConfigError,
    Kind,
    Where,
    number,
    read_section,
    setting,
)

_NO_ENTRIES: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class DataTypesConfig:
    """``data_types``: which of the data types Codat reports become series."""

    include: frozenset[str] = setting(
        DATA_TYPE_SET, "only these data types (empty: all)", default=frozenset()
    )
    exclude: frozenset[str] = setting(DATA_TYPE_SET, "never these data types", default=frozenset())

    def selects(self, data_type: str) -> bool:
        if self.include and data_type not in self.include:
            return False
        return data_type not in self.exclude


@dataclass(frozen=True)
class CompanyFreshness:
    """One entry of ``freshness.companies``."""

    max_age: Mapping[str, float] = setting(
        MAX_AGES, "this company's per data type thresholds", default=_NO_ENTRIES
    )


def _company_overrides(value: Any, at: Where) -> Mapping[str, Mapping[str, float]]:
    if not isinstance(value, dict):
        raise ConfigError(f"{at}: must be a mapping of company id to {{max_age: ...}}")
    overrides: dict[str, Mapping[str, float]] = {}
    for key, entry in value.items():
        where = at.key(str(key))
        company_id = COMPANY_ID.read(key, where)
        if company_id in overrides:
            raise ConfigError(f"{where}: company {company_id} is listed twice")
        overrides[company_id] = read_section(CompanyFreshness, entry, where).max_age
    return overrides


COMPANY_OVERRIDES = Kind("mapping of company id to `{max_age: …}`", _company_overrides)


@dataclass(frozen=True)
class FreshnessConfig:
    """``freshness``: how old a data type's last successful sync may be before it is stale."""

    default_max_age: float = setting(
        DURATION, "staleness threshold for every data type", default=26 * 3600.0
    )
    max_age: Mapping[str, float] = setting(
        MAX_AGES, "per data type thresholds, e.g. `{invoices: 6h}`", default=_NO_ENTRIES
    )
    from_sync_settings: bool = setting(
        BOOL, "derive thresholds from Codat's sync schedules", default=False
    )
    sync_settings_interval: float = setting(
        DURATION, "how often each company's sync schedules are read again, with "
        "`from_sync_settings`", default=3600.0,
    )  # fmt: skip
    sync_schedule_factor: float = setting(
        number(100), "derived threshold = syncSchedule hours x this", default=2.0
    )
    companies: Mapping[str, Mapping[str, float]] = setting(
        COMPANY_OVERRIDES, "per company thresholds: `{<id>: {max_age: {invoices: 2h}}}`",
        default=_NO_ENTRIES,
    )  # fmt: skip
    """Per company id: per data type max age, overriding everything else."""

    def max_age_for(
        self, data_type: str, company_id: str = "", sync_schedule_hours: float | None = None
    ) -> float:
        """The effective threshold, first match wins:

        1. ``freshness.companies.<id>.max_age.<data type>``
        2. ``freshness.max_age.<data type>``
        3. the company's Codat ``syncSchedule`` (hours) x ``sync_schedule_factor``, when
           ``from_sync_settings`` and the schedule is on (above 0)
        4. ``freshness.default_max_age``

        >>> f = FreshnessConfig(max_age={"invoices": 21600}, from_sync_settings=True,
        ...                     companies={"c1": {"bills": 7200}})
        >>> [f.max_age_for("bills", "c1", 24), f.max_age_for("invoices", "c2", 24),
        ...  f.max_age_for("bills", "c2", 24), f.max_age_for("bills", "c2", 0)]
        [7200, 21600, 172800.0, 93600.0]
        """
        per_company = self.companies.get(company_id)
        if per_company and data_type in per_company:
            return per_company[data_type]
        if data_type in self.max_age:
            return self.max_age[data_type]
        if self.from_sync_settings and sync_schedule_hours and sync_schedule_hours > 0:
            return sync_schedule_hours * 3600.0 * self.sync_schedule_factor
        return self.default_max_age


@dataclass(frozen=True)
class MetricsConfig:
    """``metrics``: which of the families rendered from the snapshot are exported, as
    kube-state-metrics' ``--metric-allowlist`` / ``--metric-denylist``: a name or a regular
    expression matching whole names. The exporter's own counters are always exported."""

    allowlist: tuple[str, ...] = setting(
        FAMILY_PATTERNS, "export only these families (empty: all)", default=()
    )
    denylist: tuple[str, ...] = setting(
        FAMILY_PATTERNS, "never export these families; config.example.yaml shows the fleet "
        "preset's list (docs/metrics.md)", default=(),
    )  # fmt: skip

    def check(self, at: Where) -> None:
        if self.allowlist and self.denylist:
            raise ConfigError(f"{at.key('allowlist')}: set allowlist or denylist, not both")

    def exports(self, family: str) -> bool:
        """Whether ``family`` is on /metrics.

        >>> MetricsConfig(denylist=("codat_data_type_status", "codat_data_type_last_.*")).exports(
        ...     "codat_data_type_last_successful_sync_age_seconds")
        False
        """
        if self.allowlist:
            return any(re.fullmatch(p, family) for p in self.allowlist)
        return not any(re.fullmatch(p, family) for p in self.denylist)


ALL_FAMILIES = MetricsConfig()
