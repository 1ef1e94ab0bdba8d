"""Column profiles: null share, approximate distinct count, min, max and a few frequent values per column.

One aggregate query per table (a single scan, like DuckDB's SUMMARIZE but cheaper: approximate
counts, no quantiles). Values of PII columns are masked before they are stored. A run calls
:func:`profile_assets` after it published (see :class:`kiban.catalog.hooks.ProfileAfterRun`); ``kiban docs profile``
refreshes everything.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from kiban.catalog.definitions import stale_models
from kiban.catalog.lineage import build_column_graph
from kiban.catalog.pii import MaskPlan, pii_columns
from kiban.catalog.warehouse import open_readonly, published_columns
from kiban.graph import build_graph
from kiban.quoting import quote as _q
from kiban.store import Store, utcnow
from kiban.store.schema import column_profiles

if TYPE_CHECKING:
    from kiban.project import Project

log = logging.getLogger(__name__)

EXAMPLES = 3
# types whose values have an order and a readable text form; others get counts only
_SCALAR = ("BOOLEAN", "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
           "UBIGINT", "FLOAT", "DOUBLE", "DECIMAL", "VARCHAR", "DATE", "TIME", "TIMESTAMP", "UUID", "INTERVAL")


@dataclass(frozen=True)
class ColumnProfile:
    asset: str
    column: str
    position: int
    data_type: str
    rows: int
    null_share: float | None
    approx_distinct: int | None
    min_value: str | None
    max_value: str | None
    examples: list[Any]
    profiled_at: datetime | None = None


def _scalar(data_type: str) -> bool:
    return data_type.upper().startswith(_SCALAR)


def profile_table(con: Any, asset: str, columns: list[tuple[str, str]], pii: set[str]) -> list[ColumnProfile]:
    """Profile one published table or lake view with ONE aggregate query."""
    schema, table = asset.split(".", 1)
    parts = ["count(*)"]
    for name, data_type in columns:
        col = _q(name)
        parts.append(f"count({col})")
        if _scalar(data_type):
            parts += [f"approx_count_distinct({col})", f"min({col})::varchar", f"max({col})::varchar",
                      f"approx_top_k({col}::varchar, {EXAMPLES})"]
        else:
            parts += ["null", "null", "null", "null"]
    row = con.execute(f"select {', '.join(parts)} from {_q(schema)}.{_q(table)}").fetchone()
    rows = int(row[0])
    found: list[ColumnProfile] = []
    for i, (name, data_type) in enumerate(columns):
        count, distinct, low, high, top = row[1 + 5 * i: 6 + 5 * i]
        examples = list(top or [])
        if name.lower() in pii:  # not even the shape of a personal value is stored (min, max, examples)
            low, high, examples = None, None, []
        found.append(ColumnProfile(asset, name, i, data_type, rows, (rows - count) / rows if rows else None,
                                   distinct, low, high, examples))
    return found


def profile_assets(project: Project, store: Store, assets: Iterable[str] | None = None,
                   pii: set[tuple[str, str]] | None = None) -> list[ColumnProfile]:
    """Profile the given published assets (default: all) and keep the profiles in the store.

    ``pii`` are the columns whose values are never stored; by default every column the console masks (PII
    by lineage, columns of unknown lineage below PII and everything computed from them, every column of a model
    edited since its build, ``lake.x_latest``/``_history`` as ``lake.x``)."""
    published = published_columns(project)
    wanted = [a for a in (assets if assets is not None else published) if a in published]
    hidden: dict[str, set[str]] = {}
    if pii is None:
        known = {k: [c for c, _ in v] for k, v in published.items()}
        graph = build_graph(project)
        columns = build_column_graph(graph, known, project.state_dir / "cache" / "lineage.json")
        # a model edited since its build holds what its old code made: none of its values is stored either
        plan = MaskPlan(project, graph, columns, pii_columns(project, columns),
                        frozenset(stale_models(project, graph, store)))
        hidden = {key: {c.lower() for c in plan.masks(key, known[key])} for key in wanted}
    else:
        aliases = project.lake_views()
        hidden = {key: {c for a, c in pii if a in (key, aliases.get(key))} for key in wanted}
    profiles: list[ColumnProfile] = []
    if not wanted:
        return profiles
    with open_readonly(project) as con:
        for key in wanted:
            profiles.extend(profile_table(con, key, published[key], hidden.get(key, set())))
    save_profiles(store, project.name, wanted, profiles)
    return profiles


def save_profiles(store: Store, project: str, assets: list[str], profiles: list[ColumnProfile]) -> None:
    now = utcnow()
    with store._tx() as conn:
        conn.execute(column_profiles.delete().where(column_profiles.c.project == project,
                                                    column_profiles.c.asset.in_(assets)))
        if profiles:
            conn.execute(column_profiles.insert(), [dict(
                project=project, asset=p.asset, column_name=p.column, position=p.position, data_type=p.data_type,
                rows=p.rows, null_share=p.null_share, approx_distinct=p.approx_distinct, min_value=p.min_value,
                max_value=p.max_value, examples=json.dumps(p.examples, default=str, ensure_ascii=False),
                profiled_at=now) for p in profiles])


def load_profiles(store: Store, project: str) -> dict[str, list[ColumnProfile]]:
    """The stored profiles by asset, columns in table order."""
    with store.engine.connect() as conn:
        rows = conn.execute(column_profiles.select().where(column_profiles.c.project == project)
                            .order_by(column_profiles.c.asset, column_profiles.c.position)).fetchall()
    found: dict[str, list[ColumnProfile]] = {}
    for r in rows:
        found.setdefault(r.asset, []).append(ColumnProfile(
            r.asset, r.column_name, r.position, r.data_type, r.rows, r.null_share, r.approx_distinct, r.min_value,
            r.max_value, json.loads(r.examples or "[]"), r.profiled_at))
    return found


def profiled_assets(store: Store, project: str) -> set[str]:
    with store.engine.connect() as conn:
        return {r[0] for r in conn.execute(sa.select(column_profiles.c.asset).distinct()
                                           .where(column_profiles.c.project == project))}
