"""Initiatives: what the data is used *for*, and what that use is worth — ``initiatives/NAME.yml``::

    question: Does replenishing from the demand forecast sell more?
    hypothesis: Stores stocked from the forecast run out less often and sell about 3 % more.
    owner: stocking-team@shop.example
    sponsor: Head of store operations
    status: running             # idea → analysing → running → measured → kept | stopped
    usecases: [demand_forecast] # the use cases it relies on (their service levels are its risk)
    assets: [mart.demand_forecast]
    kpi:                        # one number per unit and day (or the name of a metric: `kpi: sales`)
      asset: mart.daily_sales   # a published table (or `sql:` returning columns day, unit, value)
      date: sales_date
      unit: store_id
      value: revenue
      name: sales               # how people call it
      measure: yen
    unit: store                 # the unit of analysis
    intervention:
      start: 2026-09-01         # the first day with the change
      treated: [S001, S003]     # optional: the units that got it (default: all)
      control: [S002, S004]     # optional: units that did not (default: the others, when treated is given)
      randomised: false         # true: treated and control were assigned at random (an A/B test)
    value_per_unit: 0.25        # money per KPI unit (e.g. gross margin per yen of sales)
    currency: JPY

kiban.value measures the effect (``kiban initiatives measure NAME``); this module only says what may be written.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from kiban.assetkey import KeyResolver
from kiban.errors import ProjectError, did_you_mean
from kiban.project.asset import Asset
from kiban.project.config import MetricConfig, ProjectConfig
from kiban.project.usecase import UseCase
from kiban.project.yamlfile import YamlDoc, read_config, yaml_files
from kiban.status import InitiativeStatus

STATUSES = tuple(InitiativeStatus)
# the statuses that need an intervention (something was changed on a date) and a KPI to judge it by
NEEDS_START = (InitiativeStatus.RUNNING, InitiativeStatus.MEASURED, InitiativeStatus.KEPT, InitiativeStatus.STOPPED)
DESIGNS = ("auto", "ab", "did", "synth", "before_after")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True, frozen=True)


class Kpi(_Strict):
    """The number the initiative should move: one value per unit and day (summed when a unit has several rows)."""

    sql: str | None = None  # a SELECT returning the columns day, unit, value
    asset: str | None = None  # or a published table with these columns
    metric: str | None = None  # or a metric of kiban.yml's `metrics:` (resolved into sql/asset when loaded)
    date: str = "day"
    unit: str | None = None  # None: the whole business is one unit
    value: str = "value"
    name: str = "kpi"
    measure: str = ""  # the KPI's unit of measure, shown next to numbers ("yen", "orders")
    higher_is_better: bool = True

    @model_validator(mode="before")
    @classmethod
    def _metric_name(cls, value: object) -> object:
        """``kpi: sales`` is short for ``kpi: {metric: sales}``."""
        return {"metric": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_source(self) -> Kpi:
        if sum(x is not None for x in (self.sql, self.asset, self.metric)) != 1:
            raise ValueError("a KPI is either `sql:` (returning day, unit, value), `asset:` with its `date:`, "
                             "`unit:` and `value:` columns, or `metric:` naming one of kiban.yml's `metrics:`")
        if self.metric is not None and self.model_fields_set & {"date", "unit", "value", "higher_is_better"}:
            raise ValueError("a KPI that names a metric takes its columns from the metric (only `name:` and "
                             "`measure:` may be given here)")
        return self

    def with_metric(self, name: str, metric: MetricConfig) -> Kpi:
        """This KPI with the metric's source and columns (its own name and measure win when given)."""
        return Kpi(sql=metric.sql, asset=metric.asset, date=metric.date, unit=metric.unit, value=metric.value,
                   name=self.name if "name" in self.model_fields_set else name,
                   measure=self.measure if "measure" in self.model_fields_set else metric.measure,
                   higher_is_better=metric.higher_is_better)


class Intervention(_Strict):
    start: date
    end: date | None = None  # the last day of the change (default: it goes on)
    treated: tuple[str, ...] = ()
    control: tuple[str, ...] = ()
    randomised: bool = False
    design: Literal["auto", "ab", "did", "synth", "before_after"] = "auto"

    @field_validator("treated", "control", mode="before")
    @classmethod
    def _names(cls, value: object) -> object:
        if isinstance(value, list | tuple):
            return tuple(str(v) for v in value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Intervention:
        if self.end is not None and self.end < self.start:
            raise ValueError(f"the intervention ends ({self.end}) before it starts ({self.start})")
        both = set(self.treated) & set(self.control)
        if both:
            raise ValueError(f"unit {sorted(both)[0]!r} is both treated and control")
        if self.control and not self.treated:
            raise ValueError("a control group needs a treated group (`treated:`)")
        if self.design == "synth" and not self.treated:
            raise ValueError("a synthetic control needs its treated group (`treated:`; control: the others)")
        if self.design == "ab" and not self.treated:
            raise ValueError("an A/B test needs its treated group (`treated:`; control: the others)")
        if self.randomised and not self.treated:
            raise ValueError("`randomised: true` needs the groups that were randomised (`treated:`)")
        return self

    @property
    def method(self) -> str:
        """``ab`` (randomised groups), ``synth`` (a single treated unit), ``did`` (difference-in-differences) or
        ``before_after`` (no control) as far as the file tells; kiban.value.measure.design also picks ``synth``
        when the control group turns out to be a single unit (which needs the data to know)."""
        if self.design != "auto":
            return self.design
        if self.treated:
            if self.randomised:
                return "ab"
            return "synth" if len(self.treated) == 1 else "did"
        return "before_after"


class InitiativeConfig(_Strict):
    question: str
    hypothesis: str = ""
    owner: str | None = None
    sponsor: str | None = None
    status: InitiativeStatus = InitiativeStatus.IDEA
    usecases: tuple[str, ...] = ()
    assets: tuple[str, ...] = ()
    kpi: Kpi | None = None
    unit: str = "unit"
    intervention: Intervention | None = None
    value_per_unit: float = 1.0
    currency: str = ""
    calendar: str | None = None  # holidays of this calendar are part of the counterfactual (default: the project's)
    decision: str = ""  # why it was kept or stopped

    @model_validator(mode="after")
    def _lifecycle(self) -> InitiativeConfig:
        if self.status in NEEDS_START and (self.intervention is None or self.kpi is None):
            raise ValueError(f"an initiative that is {self.status} needs its `kpi:` and its `intervention:` "
                             "(a start date) to be measured")
        return self


@dataclass(frozen=True)
class Initiative:
    name: str
    path: Path
    config: InitiativeConfig


def load_initiatives(root: Path, config: ProjectConfig, calendars: tuple[str, ...], assets: dict[str, Asset],
                     usecases: dict[str, UseCase], errors: list[ProjectError]) -> dict[str, Initiative]:
    """``initiatives/*.yml``: the use cases, assets, metrics and calendar they name must exist (errors name
    file:line). A KPI naming a metric is resolved into the metric's source here."""
    folder = root / "initiatives"
    if not folder.is_dir():
        return {}
    resolver = KeyResolver(assets)  # the same names the use cases, SQL and the console resolve

    def resolve(name: str) -> tuple[str | None, str, str | None]:
        key = resolver.key(name)
        return (key, "", None) if key is not None else (None, *resolver.explain(name))

    found: dict[str, Initiative] = {}
    for path in yaml_files(folder):
        read = read_config(path, InitiativeConfig, errors)
        if read is None:
            continue
        doc, cfg = read
        keys: list[str] = []
        for i, name in enumerate(cfg.assets):
            key, problem, hint = resolve(name)
            if key is None:
                errors.append(ProjectError(problem, doc.location(("assets", i)), hint))
            else:
                keys.append(key)
        for i, name in enumerate(cfg.usecases):
            if name not in usecases:
                errors.append(ProjectError(f"unknown use case '{name}'", doc.location(("usecases", i)),
                                           did_you_mean(name, usecases) or "use cases are usecases/NAME.yml"))
        kpi = cfg.kpi
        metric_name = kpi.metric if kpi is not None else None
        if kpi is not None and metric_name is not None:
            metric = config.metrics.get(metric_name)
            if metric is None:
                errors.append(ProjectError(f"unknown metric '{metric_name}'", doc.location(("kpi",)),
                                           did_you_mean(metric_name, config.metrics)
                                           or "metrics are declared under `metrics:` in kiban.yml"))
                kpi = None
            else:
                kpi = kpi.with_metric(metric_name, metric)
        if kpi is not None and kpi.asset is not None:
            kpi_key, problem, hint = resolve(kpi.asset)
            if kpi_key is None:
                errors.append(ProjectError(problem, doc.location(("kpi", "asset")), hint))
            else:
                kpi = kpi.model_copy(update={"asset": kpi_key})
                if kpi_key not in keys:
                    keys.append(kpi_key)
        if cfg.calendar is not None and cfg.calendar not in calendars:
            errors.append(ProjectError(f"unknown calendar '{cfg.calendar}'", doc.location(("calendar",)),
                                       did_you_mean(cfg.calendar, calendars)))
        found[path.stem] = Initiative(path.stem, path, cfg.model_copy(update={"assets": tuple(keys), "kpi": kpi}))
    return found


def check_metrics(config: ProjectConfig, assets: dict[str, Asset], project_doc: YamlDoc,
                  errors: list[ProjectError]) -> None:
    """Every metric's ``asset:`` must be an asset of the project (kiban.yml's line named)."""
    resolver = KeyResolver(assets)
    for name, metric in config.metrics.items():
        if metric.asset is not None and resolver.key(metric.asset) is None:
            problem, hint = resolver.explain(metric.asset)
            errors.append(ProjectError(f"metric {name}: {problem}",
                                       project_doc.location(("metrics", name, "asset")), hint))
