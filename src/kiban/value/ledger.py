"""The value ledger: what each initiative was measured to be worth, over time, and what that means per use case
and per asset — next to their service level, their cost (build time, storage) and their usage.

Each ``kiban initiatives measure`` adds a row (``initiative_measurements``); the latest row of an initiative is
its current value. An asset is worth the value of the initiatives that rely on it directly (``assets:``), through
a use case that reads it (``usecases:``), or through an asset downstream of it (the forecast's inputs are worth
what the forecast is worth). A value is shared, not split: two assets that one initiative needs both carry it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from kiban.catalog.usage import read_counts
from kiban.catalog.warehouse import open_readonly
from kiban.graph import Graph
from kiban.project import Project
from kiban.store import Store, utcnow
from kiban.store.schema import initiative_measurements
from kiban.value.measure import Measurement

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LedgerEntry:
    initiative: str
    measured_at: datetime
    method: str
    data_from: date
    data_through: date
    estimate: float
    low: float
    high: float
    p_value: float | None
    unit_days: int
    value: float
    value_low: float
    value_high: float
    detail: dict[str, Any]

    @property
    def days(self) -> int:
        return max(int(self.detail.get("post_days") or 1), 1)

    @property
    def per_month(self) -> tuple[float, float, float]:
        """The value per 30 days after the start (estimate, low, high): comparable across measurements."""
        f = 30.0 / self.days
        return self.value * f, self.value_low * f, self.value_high * f


def record(store: Store, project: str, measurement: Measurement, at: datetime | None = None) -> LedgerEntry:
    """Add a measurement to the ledger."""
    effect = measurement.effect
    value, low, high = measurement.value
    detail = effect.as_dict()
    row = {"project": project, "initiative": measurement.initiative, "measured_at": at or utcnow(),
           "method": effect.method, "data_from": measurement.data_from, "data_through": measurement.data_through,
           "estimate": effect.estimate, "low": effect.low, "high": effect.high, "p_value": effect.p_value,
           "unit_days": effect.unit_days, "value": value, "value_low": low, "value_high": high,
           "detail": json.dumps(detail, default=str)}
    with store.engine.begin() as conn:
        conn.execute(initiative_measurements.insert().values(**row))
    return _entry(row)


def _entry(row: Any) -> LedgerEntry:
    m: dict[str, Any] = dict(row) if isinstance(row, dict) else dict(row._mapping)
    detail = m["detail"]
    return LedgerEntry(m["initiative"], m["measured_at"], m["method"], m["data_from"], m["data_through"],
                       m["estimate"], m["low"], m["high"], m["p_value"], m["unit_days"], m["value"],
                       m["value_low"], m["value_high"],
                       json.loads(detail) if isinstance(detail, str) else dict(detail or {}))


def history(store: Store, project: str, initiative: str | None = None) -> list[LedgerEntry]:
    """Every measurement, oldest first (of one initiative, or of all)."""
    query = initiative_measurements.select().where(initiative_measurements.c.project == project)
    if initiative is not None:
        query = query.where(initiative_measurements.c.initiative == initiative)
    with store.engine.connect() as conn:
        rows = conn.execute(query.order_by(initiative_measurements.c.measured_at,
                                           initiative_measurements.c.id)).fetchall()
    return [_entry(r) for r in rows]


def latest(store: Store, project: str) -> dict[str, LedgerEntry]:
    """The newest measurement of each initiative."""
    found: dict[str, LedgerEntry] = {}
    for entry in history(store, project):
        found[entry.initiative] = entry
    return found


@dataclass
class Holding:
    """A use case or an asset, the initiatives that rely on it and their value per month."""

    name: str
    initiatives: list[str] = field(default_factory=list)
    value_per_month: float = 0.0  # the newest measurements' estimates, summed (0 for initiatives not measured)
    measured: int = 0
    service_level: float | None = None  # attainment over the use case's window (an asset: its worst use case's)
    build_seconds: float | None = None  # an asset's typical build time (p50 of recent builds)
    storage_rows: int | None = None
    reads_30d: int = 0  # console queries, recipes and exports that read it in 30 days

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "initiatives": self.initiatives, "value_per_month": self.value_per_month,
                "measured": self.measured, "service_level": self.service_level,
                "build_seconds": self.build_seconds, "storage_rows": self.storage_rows, "reads_30d": self.reads_30d}


def relied_on(project: Project, graph: Graph) -> dict[str, set[str]]:
    """Per asset: the initiatives that rely on it (directly, through a use case, or through a downstream asset)."""
    direct: dict[str, set[str]] = {}
    for name, initiative in project.initiatives.items():
        keys = set(initiative.config.assets)
        for usecase in initiative.config.usecases:
            if usecase in project.usecases:
                keys.update(project.usecases[usecase].config.assets)
        for key in keys:
            if key in graph.assets:
                for up in (key, *graph.upstream(key)):
                    direct.setdefault(up, set()).add(name)
    return direct


def holdings(project: Project, graph: Graph, store: Store, *, with_service_levels: bool = True,
             assessment: Any = None) -> tuple[list[Holding], list[Holding]]:
    """(per use case, per asset): value of the initiatives relying on each, with service level, cost and usage.
    ``assessment``: the service-level assessment when the caller already has it (the console shares one)."""
    from datetime import timedelta


    values = {name: entry.per_month[0] for name, entry in latest(store, project.name).items()}
    by_asset = relied_on(project, graph)
    attainment: dict[str, float | None] = {}
    p50: dict[str, float] = {}
    if with_service_levels and project.usecases:
        from kiban.slo.service import assess

        result = assessment if assessment is not None else assess(project, graph, store)
        attainment = {name: b.attainment for name, b in result.budgets.items()}
        p50 = result.p50
    reads = read_counts(store, project.name, utcnow() - timedelta(days=30))
    rows = _storage_rows(project)
    usecases: list[Holding] = []
    for name, usecase in sorted(project.usecases.items()):
        relying = sorted(i for i, init in project.initiatives.items() if name in init.config.usecases
                         or set(init.config.assets) & set(usecase.config.assets))
        usecases.append(Holding(name, relying, sum(values.get(i, 0.0) for i in relying),
                                sum(1 for i in relying if i in values), attainment.get(name),
                                reads_30d=sum(reads.get(a, 0) for a in usecase.config.assets)))
    # what each use case reads, its assets and everything upstream of them: one walk per use case, not one per
    # asset and use case (at 1,000 assets that was 24,000 walks, 1.2 s of the value page)
    feeds = {u: set(uc.config.assets).union(*(graph.upstream(a) for a in uc.config.assets))
             for u, uc in project.usecases.items() if attainment.get(u) is not None}
    assets: list[Holding] = []
    for key in graph.order:
        relying = sorted(by_asset.get(key, ()))
        levels = [attainment[u] for u, reads in feeds.items() if key in reads]
        assets.append(Holding(key, relying, sum(values.get(i, 0.0) for i in relying),
                              sum(1 for i in relying if i in values),
                              min(v for v in levels if v is not None) if levels else None,
                              p50.get(key) if graph.assets[key].layer != "lake" else None,
                              rows.get(key), reads.get(key, 0)))
    return usecases, assets


def _storage_rows(project: Project) -> dict[str, int]:
    """Rows of each published table (DuckDB's estimate); {} when nothing is published or the engine differs."""

    try:
        with open_readonly(project) as con:
            found = con.execute("select schema_name, table_name, estimated_size from duckdb_tables() "
                                "where schema_name in ('warehouse', 'mart')").fetchall()
    except Exception as exc:  # nothing published yet, PostgreSQL: storage is left blank rather than failing the ledger
        log.debug("value ledger: no row counts of published tables (%s)", exc)
        return {}
    return {f"{schema}.{table}": int(size or 0) for schema, table, size in found}
