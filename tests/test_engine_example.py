"""The example project (examples/shop, generated small) on DuckDB, PostgreSQL and Spark: the same marts.

Every engine collects the same generated sources into its own lake (committed loads in its own state store),
then builds every SQL model; each mart is compared with DuckDB's row by row. The shop's Python models (the
demand forecast: a training and a scoring) are then built on PostgreSQL too, and on Spark, where the demand table,
the forecast and the training's metrics must equal DuckDB's exactly (docs/scale-out.md).

Comparison: rows in any order; numbers as floats equal within 1e-9 relative (PostgreSQL's ``round`` works on
numeric, DuckDB's on double); timestamps as UTC instants; dates as dates.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest

from kiban.checks.gate import gate_for
from kiban.checks.on_demand import check_published
from kiban.ml.registry import open_registry
from kiban.project import load_project
from kiban.run import RunOptions, run_project

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "shop"
IGNORE = shutil.ignore_patterns("lake", ".kiban", "kiban.duckdb*", "__pycache__", "sources_data", "report.html")
PYTHON_MODELS = "warehouse.daily_demand+"  # the demand model and forecast: built after the SQL marts
ML_TABLES = ("warehouse.daily_demand", "mart.demand_forecast")  # the Python models' tables, in a fixed order
SQL_MARTS = ("mart.customer_rfm", "mart.daily_sales", "mart.product_ranking", "mart.store_staffing",
             "mart.web_traffic")

pytestmark = pytest.mark.slow


def shop_copy(base: Path, name: str, warehouse: str | None, generated: Path) -> Path:
    """The example with the generated sources, pointing at ``warehouse``."""
    root = base / name
    shutil.copytree(EXAMPLE, root, ignore=IGNORE)
    shutil.copytree(generated / "sources_data", root / "sources_data")
    if warehouse:
        with open(root / "kiban.yml", "a", encoding="utf-8") as out:
            out.write(f"\nwarehouse: '{warehouse}'\n")
    return root


def build(root: Path) -> Any:
    """`kiban run` as the CLI runs it: the checks judge every new version before it is published (issue 18: the
    audit hook sent DuckDB SQL to PostgreSQL and Spark, and these tests used to leave it out)."""
    project = load_project(root)
    gate = gate_for(project)
    assert gate is not None, "the example declares checks"
    try:
        result = run_project(project, RunOptions(exclude=[PYTHON_MODELS]), audit=gate, after=gate.after)
    finally:
        gate.close()
    assert result.status == "success", {k: o.error for k, o in result.outcomes.items() if o.error}
    return result


def build_python(root: Path) -> None:
    """The shop's Python models (issue 18: they used to be refused on PostgreSQL and Spark), checks included."""
    project = load_project(root)
    gate = gate_for(project)
    assert gate is not None
    try:
        result = run_project(project, RunOptions(select=[PYTHON_MODELS]), audit=gate, after=gate.after)
    finally:
        gate.close()
    assert result.status == "success", {k: o.error for k, o in result.outcomes.items() if o.error}


def metrics(root: Path) -> list[tuple[int, str, dict[str, float], str]]:
    """The demand model's versions in the registry: (version, status, metrics, data fingerprint)."""
    registry = open_registry(root)
    try:
        return [(v.version, v.status, v.metrics, v.data_fingerprint)
                for v in registry.versions("warehouse.demand_model")]
    finally:
        registry.store.close()


def verdicts(root: Path) -> dict[str, tuple[str, int | None]]:
    """`kiban check` of the published SQL models: (status, failing rows) per check."""
    report = check_published(load_project(root), exclude=[PYTHON_MODELS])
    return {f"{r.asset}:{r.name}": (r.status, r.failures) for r in report.results}


def value(v: Any) -> Any:
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float, Decimal)):
        return float(v)
    if isinstance(v, datetime):
        return v.astimezone(UTC).replace(tzinfo=None) if v.tzinfo else v
    if isinstance(v, date):
        return v
    return str(v)


def key(row: tuple[Any, ...]) -> str:
    return repr(tuple(round(v, 4) if isinstance(v, float) else v for v in row))


def same_rows(got: list[tuple[Any, ...]], expected: list[tuple[Any, ...]]) -> str | None:
    """None when equal (any order, numbers within 1e-9 relative), else the first difference."""
    if len(got) != len(expected):
        return f"{len(got)} rows, expected {len(expected)}"
    left = sorted((tuple(value(v) for v in r) for r in got), key=key)
    right = sorted((tuple(value(v) for v in r) for r in expected), key=key)
    for a, b in zip(left, right, strict=True):
        for x, y in zip(a, b, strict=True):
            equal = (math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9) if isinstance(x, float) and isinstance(y, float)
                     else x == y)
            if not equal:
                return f"row {a} != {b}"
    return None


def spark_rows(warehouse: Path, table: str, order: bool = False) -> list[tuple[Any, ...]]:
    """The rows of a Spark warehouse table's published version, read from its Parquet files by DuckDB."""
    layer, name = table.split(".")
    version = json.loads((warehouse / layer / name / "_kiban.json").read_text())["version"]
    con = duckdb.connect()
    try:
        return con.execute(f"select * from read_parquet('{warehouse / layer / name / version}/*.parquet')"
                           + (" order by all" if order else "")).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("example_engines") / "generated"
    shutil.copytree(EXAMPLE, root, ignore=IGNORE)
    done = subprocess.run([sys.executable, str(root / "generate.py"), "--scale", "0.01", "--out", str(root),
                           "--end-date", "2026-11-29"], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return root


@pytest.fixture(scope="module")
def duck(generated: Path) -> dict[str, list[tuple[Any, ...]]]:
    root = shop_copy(generated.parent, "duck", None, generated)
    build(root)
    con = duckdb.connect(str(root / "kiban.duckdb"), read_only=True)
    try:
        marts: dict[str, Any] = {mart: con.execute(f"select * from {mart}").fetchall() for mart in SQL_MARTS}
    finally:
        con.close()
    marts["checks"] = verdicts(root)
    assert len(marts["checks"]) > 10
    return marts


@pytest.fixture(scope="module")
def duck_ml(duck: dict[str, list[tuple[Any, ...]]], generated: Path) -> dict[str, Any]:
    """The Python models built on DuckDB after its SQL marts: their tables (sorted) and the training's metrics."""
    root = generated.parent / "duck"
    build_python(root)
    con = duckdb.connect(str(root / "kiban.duckdb"), read_only=True)
    try:
        built: dict[str, Any] = {table: con.execute(f"select * from {table} order by all").fetchall()
                                 for table in ML_TABLES}
    finally:
        con.close()
    built["metrics"] = metrics(root)
    assert len(built["mart.demand_forecast"]) > 0
    return built


def test_postgres_builds_the_same_marts(generated: Path, duck: dict[str, list[tuple[Any, ...]]],
                                        postgres_url: str) -> None:
    root = shop_copy(generated.parent, "pg", postgres_url, generated)
    result = build(root)
    assert result.outcomes["warehouse.orders"].status == "success"
    with psycopg.connect(postgres_url) as conn:
        for mart in SQL_MARTS:
            rows = conn.execute(f"select * from {mart}".encode()).fetchall()
            assert len(duck[mart]) > 5, mart
            assert same_rows(rows, duck[mart]) is None, (mart, same_rows(rows, duck[mart]))
        # the lake is exactly the committed loads, with the derived views DuckDB offers
        latest = conn.execute("select count(*) from lake.master_products_latest").fetchone()
        assert latest is not None
        assert latest[0] == 39  # 40 products, one row quarantined (「1,990」)
    assert verdicts(root) == duck["checks"]  # `kiban check`: the same verdicts
    # the Python models — the demand forecast, trained and scored — run here too (Arrow in, Arrow out)
    build_python(root)
    with psycopg.connect(postgres_url) as conn:
        demand = conn.execute(b"select count(*) from warehouse.daily_demand").fetchone()
        forecast = conn.execute(b"select count(*) from mart.demand_forecast").fetchone()
    assert demand
    assert demand[0] > 5
    assert forecast
    assert forecast[0] > 0


@pytest.mark.timeout(600)  # Spark local on a shared 2-core machine: ~2 min, JVM start included
def test_spark_builds_the_same_marts(generated: Path, duck: dict[str, list[tuple[Any, ...]]],
                                     duck_ml: dict[str, Any]) -> None:
    if shutil.which("java") is None:
        pytest.skip("Spark needs Java")
    warehouse = generated.parent / "spark-warehouse"
    root = shop_copy(generated.parent, "spark", f"spark://{warehouse}?master=local[2]&spark.sql.shuffle.partitions=2",
                     generated)
    build(root)
    for mart in SQL_MARTS:
        rows = spark_rows(warehouse, mart)
        assert len(duck[mart]) > 5, mart
        assert same_rows(rows, duck[mart]) is None, (mart, same_rows(rows, duck[mart]))
    assert verdicts(root) == duck["checks"]  # `kiban check`: the same verdicts
    # the Python models — the demand table, the training (registry included) and the forecast — on Spark: Arrow in,
    # Arrow out. The same rows in, the same seed: the same features, metrics and forecast as on DuckDB, exactly.
    build_python(root)
    assert metrics(root) == duck_ml["metrics"]
    for table in ML_TABLES:
        rows = spark_rows(warehouse, table, order=True)
        assert rows == duck_ml[table], (table, same_rows(rows, duck_ml[table]))
