"""Python models on PostgreSQL and Spark (issue 18): Arrow in, Arrow out, the frame moved to and from the engine.

The same project — a SQL model, Python models in pyarrow, pandas and polars, and a SQL mart over them — is
built on DuckDB, PostgreSQL and Spark local; every model's rows must be DuckDB's. The inputs are hostile for a
frame's round trip: NULLs, an all-NULL column, negative numbers, decimals, non-ASCII text, dates, instants under
a non-UTC project time zone.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest

from kiban.project import load_project
from kiban.run import RunOptions, run_project

LAKE = {"sales": "select (i % 3) as store_id, date '2024-02-27' + (i // 3)::int as day, "
                 "case when i % 5 = 0 then null else (i % 7 - 3)::double end as qty, "
                 "(i * 1.25)::decimal(10, 2) as price, "
                 "case i % 4 when 0 then 'Ōsaka' when 1 then 'tokyo' when 2 then null else 'Émile' end as city, "
                 "timestamptz '2024-03-30 23:30:00+00' + i * interval 47 minute as sold_at "
                 "from range(40) t(i)"}

MODELS = {
    "models/warehouse/clean.sql": "select store_id, day, qty, price, city, sold_at from lake.sales "
                                  "where store_id <> 2\n",
    "models/warehouse/totals.py": '''
import kiban
import pyarrow as pa
import pyarrow.compute as pc


@kiban.asset(inputs={"clean": "warehouse.clean"})
def totals(clean: pa.Table) -> pa.Table:
    grouped = clean.group_by("store_id").aggregate([("qty", "sum"), ("price", "sum"), ("sold_at", "max")])
    return grouped.rename_columns(["store_id", "qty", "price", "last_at"])
''',
    "models/warehouse/shares.py": '''
import kiban
import pandas as pd


@kiban.asset(inputs={"totals": "warehouse.totals"})
def shares(totals: pd.DataFrame) -> pd.DataFrame:
    out = totals[["store_id", "qty"]].copy()
    out["share"] = out["qty"] / out["qty"].abs().sum()
    return out.sort_values("store_id")
''',
    "models/warehouse/cities.py": '''
import kiban
import polars as pl


@kiban.asset(inputs={"clean": "warehouse.clean"})
def cities(clean: pl.DataFrame) -> pl.DataFrame:
    return (clean.select("city", "day", "sold_at", "qty")
                 .with_columns(pl.col("city").str.to_uppercase().alias("upper"),
                               pl.lit(None, dtype=pl.Utf8).alias("note")))
''',
    "models/mart/summary.sql": "select s.store_id, s.share, t.price, t.last_at, "
                               "(select count(*) from warehouse.cities where city is null) as no_city, "
                               "(select count(distinct upper) from warehouse.cities) as cities "
                               "from warehouse.shares s join warehouse.totals t using (store_id)\n",
}
KEYS = ("warehouse.clean", "warehouse.totals", "warehouse.shares", "warehouse.cities", "mart.summary")


def norm(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    def value(v: Any) -> Any:
        if isinstance(v, bool) or v is None or isinstance(v, str):
            return v
        if isinstance(v, (int, float, Decimal)):
            return round(float(v), 6)
        if isinstance(v, datetime):
            return (v.astimezone(UTC).replace(tzinfo=None) if v.tzinfo else v).isoformat()  # Spark: INT96
        if isinstance(v, date):
            return v.isoformat()
        return v

    return sorted((tuple(value(v) for v in row) for row in rows), key=repr)


def build(make_project: Callable[..., Path], url: str, root: str) -> Path:
    project = make_project({**MODELS, "kiban.yml": f"name: shop\ntimezone: Asia/Tokyo\nwarehouse: '{url}'\n"},
                           lake=LAKE, root=root)
    result = run_project(load_project(project), RunOptions())
    assert {k: o.status for k, o in result.outcomes.items()} == {k: "success" for k in KEYS}, \
        {k: (o.status, o.error) for k, o in result.outcomes.items()}
    return project


@pytest.fixture
def duck(make_project: Callable[..., Path]) -> dict[str, list[tuple[Any, ...]]]:
    root = build(make_project, "duckdb:///kiban.duckdb", "duck")
    con = duckdb.connect(str(root / "kiban.duckdb"), read_only=True)
    try:
        return {key: norm(con.execute(f"select * from {key}").fetchall()) for key in KEYS}
    finally:
        con.close()


def test_python_models_on_postgres_equal_duckdb(duck: dict[str, list[tuple[Any, ...]]],
                                                make_project: Callable[..., Path], postgres_url: str) -> None:
    root = build(make_project, postgres_url, "pg")
    with psycopg.connect(postgres_url) as conn:
        got = {key: norm(conn.execute(f"select * from {key}".encode()).fetchall()) for key in KEYS}
        kinds = dict(conn.execute("select column_name, data_type from information_schema.columns "
                                  "where table_schema = 'warehouse' and table_name = 'cities'").fetchall())
    assert got == duck
    assert kinds["note"] == "text"
    assert kinds["sold_at"] == "timestamp with time zone"
    assert kinds["day"] == "date"
    again = run_project(load_project(root), RunOptions())  # published Python models are fresh the second time
    assert again.status == "nothing"
    assert not [k for k, o in again.outcomes.items() if o.status == "success"]


@pytest.mark.slow
@pytest.mark.timeout(900)  # a JVM started on a loaded machine
@pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs Java")
def test_python_models_on_spark_equal_duckdb(duck: dict[str, list[tuple[Any, ...]]],
                                             make_project: Callable[..., Path], tmp_path: Path) -> None:
    warehouse = tmp_path / "spark-warehouse"
    build(make_project, f"spark://{warehouse}?master=local[2]&spark.sql.shuffle.partitions=2", "spark")
    con = duckdb.connect()
    got = {}
    for key in KEYS:
        layer, name = key.split(".")
        pointer = json.loads((warehouse / layer / name / "_kiban.json").read_text())
        got[key] = norm(con.execute(f"select * from read_parquet('{warehouse / layer / name / pointer['version']}"
                                    "/*.parquet')").fetchall())
    assert got == duck
