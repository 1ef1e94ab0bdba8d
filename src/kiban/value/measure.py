"""Measure an initiative: read its KPI from the published warehouse, estimate the effect, price it.

The KPI is read through the catalog's read-only session (the same one the console and recipes use), so a
measurement never takes the writer's lock and never reads what a run is still building.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np

from kiban.catalog.safety import check_query
from kiban.catalog.warehouse import NothingPublished, open_readonly
from kiban.errors import KibanError
from kiban.project import Project
from kiban.project.initiative import Initiative, Intervention
from kiban.quoting import quote, relation
from kiban.slo.calendar import calendar_for
from kiban.value.effect import MIN_UNITS_PER_GROUP, Effect, EffectError, Panel, measure


class MeasureError(KibanError):
    """The initiative cannot be measured (yet): the message says what is missing."""


@dataclass(frozen=True)
class Measurement:
    """An initiative's effect, and what it is worth in money (value_per_unit × the treated unit-days)."""

    initiative: str
    effect: Effect
    value_per_unit: float
    currency: str
    kpi: str
    measure_unit: str
    data_from: date
    data_through: date

    @property
    def value(self) -> tuple[float, float, float]:
        """(estimate, low, high) in money over the whole measured period after the start."""
        est, low, high = self.effect.total
        values = sorted((low * self.value_per_unit, high * self.value_per_unit))
        return est * self.value_per_unit, values[0], values[1]

    @property
    def value_per_month(self) -> tuple[float, float, float]:
        days = max(self.effect.post_days, 1)
        return tuple(v * 30.0 / days for v in self.value)  # type: ignore[return-value]

    def as_dict(self) -> dict[str, Any]:
        value, month = self.value, self.value_per_month
        return {"initiative": self.initiative, "kpi": self.kpi, "measure": self.measure_unit,
                "currency": self.currency, "value_per_unit": self.value_per_unit,
                "data_from": self.data_from, "data_through": self.data_through, "effect": self.effect.as_dict(),
                "value": {"estimate": value[0], "low": value[1], "high": value[2]},
                "value_per_month": {"estimate": month[0], "low": month[1], "high": month[2]}}


def kpi_sql(initiative: Initiative) -> str:
    """The SELECT that yields (day, unit, value): the KPI's own ``sql:``, or one built over its asset."""
    kpi = initiative.config.kpi
    if kpi is None:
        raise MeasureError(f"initiative {initiative.name} has no kpi: yet", f"add `kpi:` to {initiative.path.name}")
    if kpi.sql is not None:
        return kpi.sql.strip().rstrip(";")
    assert kpi.asset is not None
    unit = f"cast({quote(kpi.unit)} as varchar)" if kpi.unit else "'all'"
    return (f"select cast({quote(kpi.date)} as date) as day, {unit} as unit, "
            f"cast({quote(kpi.value)} as double) as value from {relation(kpi.asset)}")


def read_panel(project: Project, initiative: Initiative, readable: Mapping[str, object] | None = None) -> Panel:
    """The KPI as a units × days panel, read from the published warehouse. ``readable``: the graph's readable
    names (assets and lake views); the KPI's query may read nothing else."""

    sql = kpi_sql(initiative)
    try:
        check_query(sql, readable if readable is not None else project.assets)
    except KibanError as exc:
        raise MeasureError(f"initiative {initiative.name}: the KPI's query is refused: {exc.message}",
                           exc.hint) from None
    # no GROUP BY: the panel sums a unit's rows of one day itself, faster than the engine's hash aggregate
    wrapped = (f"select cast(day as date) as day, cast(unit as varchar) as unit, cast(value as double) as value "
               f"from ({sql}) as kpi where day is not null and unit is not null")
    try:
        with open_readonly(project) as con:
            result = con.execute(wrapped)
            table = result.to_arrow_table() if hasattr(result, "to_arrow_table") else result.fetch_arrow_table()
    except NothingPublished:
        raise MeasureError("nothing is published yet", "run `kiban run` first") from None
    except Exception as exc:  # DuckDB's binder: a missing column, a wrong type
        raise MeasureError(f"initiative {initiative.name}: the KPI's query failed: {exc}",
                           "the KPI must return the columns day, unit and value") from None
    import pyarrow as pa
    import pyarrow.compute as pc

    units = pc.dictionary_encode(table.column("unit")).combine_chunks()
    names = [str(u) for u in units.dictionary.to_pylist()]
    order = sorted(range(len(names)), key=names.__getitem__)  # units in name order, like a GROUP BY … ORDER BY
    rank = np.empty(len(names), dtype=np.int64)
    rank[order] = np.arange(len(names))
    codes = rank[units.indices.to_numpy(zero_copy_only=False)]
    days = table.column("day").cast(pa.int32()).to_numpy().astype(np.int64)
    values = table.column("value").to_numpy().astype(float)
    return Panel.from_codes(days, codes, [names[i] for i in order], values)


def design(iv: Intervention, panel: Panel) -> str:
    """The design to use: the one written, or (``auto``) A/B for randomised groups, a synthetic control when one
    group has a single unit (a treated store among untouched ones), difference-in-differences for two groups,
    before/after without a control group."""
    method = iv.method
    if iv.design == "auto" and method == "did":
        controls = len(iv.control) if iv.control else len(set(panel.units) - set(iv.treated))
        if min(len(iv.treated), controls) < MIN_UNITS_PER_GROUP:
            return "synth"
    return method


def measure_initiative(project: Project, initiative: Initiative, panel: Panel | None = None,
                       readable: Mapping[str, object] | None = None) -> Measurement:
    """Estimate the initiative's effect (the design follows its intervention: ab, did or before_after)."""

    cfg = initiative.config
    if cfg.intervention is None or cfg.kpi is None:
        raise MeasureError(f"initiative {initiative.name} ({cfg.status}) has no intervention or KPI to measure",
                           "add `kpi:` and `intervention: {start: YYYY-MM-DD}`")
    panel = panel if panel is not None else read_panel(project, initiative, readable)
    calendar = calendar_for(cfg.calendar or project.config.calendar, project.config)
    holidays = calendar.holiday_name
    iv = cfg.intervention
    try:
        effect = measure(panel, iv.start, method=design(iv, panel), treated=iv.treated, control=iv.control, end=iv.end,
                         is_holiday=lambda d: holidays(d) is not None)
    except EffectError as exc:
        raise MeasureError(f"initiative {initiative.name}: {exc}") from None
    through = min(panel.days[-1], iv.end) if iv.end else panel.days[-1]
    return Measurement(initiative.name, effect, cfg.value_per_unit, cfg.currency, cfg.kpi.name, cfg.kpi.measure,
                       panel.days[0], through)
