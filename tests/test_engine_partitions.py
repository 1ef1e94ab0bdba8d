"""Incremental models and backfills on PostgreSQL and Spark (issue 18): the same partitions and rows as DuckDB.

One project, built on DuckDB and on PostgreSQL (Spark: a slow test) side by side, step by step: a first run; a
day appended — a run replaces only the partitions from the lookback on; every amount changes, and a backfill of
some old days replaces exactly those; a backfilled partition whose checks fail keeps its old rows; the models that
read a backfilled table are rebuilt by the next run.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest

from kiban.checks.gate import gate_for
from kiban.engines import open_engine
from kiban.errors import UsageError
from kiban.project import load_project
from kiban.run import RunOptions, run_project
from kiban.run.backfill import BackfillOptions, run_backfill
from tests.conftest import write_parquet

MODELS = {
    "models/warehouse/daily.sql": "select cast(ts as date) as day, store, count(*) as n, sum(amount) as total "
                                  "from lake.events group by 1, 2",
    "models/warehouse/daily.yml": "materialized: incremental\ntime_column: day\nlookback: 1\n"
                                  "checks:\n  - expression: {sql: 'total < 100000'}\n",
    "models/mart/monthly.sql": "select date_trunc('month', day)::date as month, sum(total) as total "
                               "from warehouse.daily group by 1",
    "models/mart/monthly.yml": "materialized: incremental\ntime_column: month\ngrain: month\nlookback: 0\n",
    "models/mart/stores.sql": "select store, sum(total) as total from warehouse.daily group by 1",
}
TABLES = ("warehouse.daily", "mart.monthly", "mart.stores")


def events(days: int, factor: int = 1, huge_day: int | None = None) -> str:
    """Rows from 2024-01-28 (a month end, a leap day ahead), a few per hour; ``huge_day`` fails the check."""
    amount = f"(i % 50 - 10) * {factor}"
    if huge_day is not None:
        amount = f"case when i * 53 // 1440 = {huge_day} then 1000000 else {amount} end"
    return (f"select timestamp '2024-01-28' + to_minutes(i * 53) as ts, i % 3 as store, {amount} as amount "
            f"from range({days * 1440 // 53}) t(i)")


def rows(engine: str, root: Path, url: str, table: str) -> list[tuple[Any, ...]]:
    if engine == "spark":  # the published version's Parquet, as any reader of the warehouse sees it
        layer, name = table.split(".")
        home = Path(url.split("://", 1)[1].split("?")[0]) / layer / name
        version = json.loads((home / "_kiban.json").read_text())["version"]
        found = duckdb.connect().execute(f"select * from read_parquet('{home / version}/*.parquet')").fetchall()
    elif engine == "duck":
        con = duckdb.connect(str(root / "kiban.duckdb"), read_only=True)
        try:
            found = con.execute(f"select * from {table}").fetchall()
        finally:
            con.close()
    else:
        with psycopg.connect(url) as conn:
            found = conn.execute(f"select * from {table}".encode()).fetchall()
    return sorted(tuple(int(v) if isinstance(v, Decimal) else v for v in r) for r in found)


def run(root: Path, **options: Any) -> Any:
    project = load_project(root)
    gate = gate_for(project)
    try:
        return run_project(project, RunOptions(**options), audit=gate, after=gate.after if gate else None)
    finally:
        if gate:
            gate.close()


def backfill(root: Path, start: str, end: str, *select: str) -> Any:
    """``kiban backfill``: the checks' gate judges each partition before it commits."""
    project = load_project(root)
    gate = gate_for(project)
    try:
        return run_backfill(project, BackfillOptions(select=select or ("warehouse.daily",), start=start, end=end,
                                                     concurrency=2), audit=gate)
    finally:
        if gate:
            gate.close()


SPARK = pytest.param("spark", marks=[pytest.mark.slow, pytest.mark.timeout(1200),
                                     pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs Java")])


@pytest.fixture(params=["pg", SPARK])
def pair(request: pytest.FixtureRequest, make_project: Callable[..., Path],
         tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """The project on DuckDB and on the other engine (``other``)."""
    if request.param == "pg":
        other = request.getfixturevalue("postgres_url")
    else:
        other = f"spark://{tmp_path / 'spark-warehouse'}?master=local[2]&spark.sql.shuffle.partitions=2"
    made = {}
    for engine, url in (("duck", "duckdb:///kiban.duckdb"), (request.param, other)):
        root = make_project({**MODELS, "kiban.yml": f"name: shop\ntimezone: Asia/Tokyo\nwarehouse: '{url}'\n"},
                            {"events": events(40)}, root=engine)
        made[engine] = (root, url)
    return made


def same(pair: dict[str, tuple[Path, str]]) -> dict[str, list[tuple[Any, ...]]]:
    duck = {t: rows("duck", *pair["duck"], t) for t in TABLES}
    other = next(e for e in pair if e != "duck")
    assert {t: rows(other, *pair[other], t) for t in TABLES} == duck
    return duck


def test_incremental_runs_and_backfills_equal_duckdb(pair: dict[str, tuple[Path, str]]) -> None:
    for root, _ in pair.values():
        assert run(root).status == "success"
    first = same(pair)
    for root, _ in pair.values():  # a day is appended: only the partitions from the lookback on are replaced
        write_parquet(root / "lake/events/part-1.parquet", f"select * from ({events(41)}) where ts >= '2024-03-08'")
        result = run(root)
        assert result.status == "success", {k: o.error for k, o in result.outcomes.items()}
    second = same(pair)
    assert len(second["warehouse.daily"]) == len(first["warehouse.daily"]) + 3
    for root, _ in pair.values():  # every amount changes (not yet run): a backfill replaces the days it names
        write_parquet(root / "lake/events/part-0.parquet", events(40, factor=3))
    for root, _ in pair.values():  # a backfill of three old days (a leap day among them) replaces exactly those
        result = backfill(root, "2024-02-28", "2024-03-01")
        assert result.status == "success", result
        assert result.processed == 3, result
    third = same(pair)
    changed = {r[0].isoformat() for r in set(third["warehouse.daily"]) - set(second["warehouse.daily"])}
    assert changed == {"2024-02-28", "2024-02-29", "2024-03-01"}
    other = next(e for e in pair if e != "duck")
    project = load_project(pair[other][0])
    engine = open_engine(project.warehouse_url, project.config.timezone)
    try:
        parts = engine.processed_partitions(project.assets["warehouse.daily"])
    finally:
        engine.close()
    assert (len(parts), sum(parts.values())) == (41, len(third["warehouse.daily"]))
    for root, _ in pair.values():  # what reads the backfilled table is rebuilt, not called fresh
        result = run(root)
        assert result.outcomes["mart.stores"].status == "success", result.outcomes
    fourth = same(pair)
    for root, _ in pair.values():  # a partition failing its checks keeps its old rows; the others are replaced
        write_parquet(root / "lake/events/part-0.parquet", events(40, factor=5, huge_day=10))
        result = backfill(root, "2024-02-06", "2024-02-08")
        assert result.status == "failed", result
        assert [o.start for o in result.failed] == [datetime(2024, 2, 7)], result
    after = same(pair)
    day = datetime(2024, 2, 7).date()
    assert [r for r in after["warehouse.daily"] if r[0] == day] == [r for r in fourth["warehouse.daily"]
                                                                     if r[0] == day]


def test_full_refresh_and_changed_code_rebuild_whole_on_postgres(make_project: Callable[..., Path],
                                                               postgres_url: str) -> None:
    url = postgres_url
    root = make_project({**MODELS, "kiban.yml": f"name: shop\ntimezone: Asia/Tokyo\nwarehouse: '{url}'\n"},
                        {"events": events(40)})
    assert run(root).status == "success"
    assert backfill(root, "2024-02-01", "2024-02-01").status == "success"
    (root / "models/warehouse/daily.sql").write_text(
        "select cast(ts as date) as day, store, count(*) as n, sum(amount) * 2 as total from lake.events "
        "group by 1, 2")
    with pytest.raises(UsageError, match=r"warehouse\.daily changed"):  # its rows were computed by other code
        backfill(root, "2024-02-01", "2024-02-01")
    assert run(root).status == "success"
    with psycopg.connect(url) as conn:
        code = conn.execute("select count(*) from kiban.incremental").fetchone()
        doubled = conn.execute("select sum(total) from warehouse.daily").fetchone()
    write_parquet(root / "lake/events/part-0.parquet", events(40, factor=2))
    assert run(root, full_refresh=True).status == "success"
    with psycopg.connect(url) as conn:
        assert conn.execute("select sum(total) from warehouse.daily").fetchone() == (doubled[0] * 2,)
    assert code == (2,)
