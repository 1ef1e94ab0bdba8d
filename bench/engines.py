#!/usr/bin/env python3
"""Engines: the same small shop-like project on DuckDB, Spark (local mode) and PostgreSQL.

The project is tests/engine_project.py (joins, group by, windows, dates, CASE, string functions), its
lake ``orders`` scaled to --rows. For each engine, in one process, side by side:

- ``kiban run`` cold: load/expose the lake, build and publish the 4 models (fingerprints, audit, swap);
- ``kiban run --full-refresh``: the 4 models rebuilt and published again, the lake already in place;
- ``kiban run`` again: everything fresh (what a scheduler tick costs when nothing changed);
- the raw engine: the same 4 statements (already transpiled) run directly as ``create table … as``, with the
  lake already in place — what the engine itself needs, so rebuild / raw is kiban's overhead.

    .venv/bin/python bench/engines.py                 # 200k orders
    .venv/bin/python bench/engines.py --rows 20000 --no-write

Spark runs in local mode (local[2]); its first run includes starting the JVM, reported separately.

Then the example project (examples/shop, generated at --shop-scale) on each engine: collect every source into
the lake and build every SQL model (the Python demand models stay on DuckDB), then rebuild the models
(--full-refresh; the sources have nothing new). Ratios are against DuckDB measured in the same run.

Writes (replaces) its two sections of bench/RESULTS.md unless --no-write.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from results import write_section  # bench/ is on sys.path when a script in it runs

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.conftest import write_files, write_parquet  # noqa: E402
from tests.engine_project import MODELS, lake  # noqa: E402

MARKER = "## Engines"
SHOP_MARKER = "## The example project on every engine"
EXAMPLE = REPO / "examples" / "shop"
PYTHON_MODELS = "warehouse.daily_demand+"  # the demand model and forecast: DuckDB only (docs/scale-out.md)
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def kiban_run(root: Path, full_refresh: bool = False) -> tuple[float, str]:
    from kiban.project import load_project
    from kiban.run import RunOptions, run_project

    started = time.perf_counter()
    result = run_project(load_project(root), RunOptions(full_refresh=full_refresh))
    return time.perf_counter() - started, result.status


def model_order() -> list[tuple[str, str, str]]:
    """(layer, name, DuckDB SQL) in dependency order: the warehouse model first."""
    out = []
    for path, sql in MODELS.items():
        layer, name = path.split("/")[1], Path(path).stem
        out.append((layer, name, sql))
    return sorted(out, key=lambda m: m[0] != "warehouse")


def raw_duckdb(root: Path) -> float:
    import duckdb

    con = duckdb.connect(str(root / "raw.duckdb"))  # a file, as kiban's warehouse is
    for schema in ("lake", "warehouse", "mart"):
        con.execute(f"create schema {schema}")
    for table in ("orders", "customers"):
        con.execute(f"create view lake.{table} as select * from read_parquet('{root}/lake/{table}/*.parquet')")
    started = time.perf_counter()
    for layer, name, sql in model_order():
        con.execute(f"create table {layer}.{name} as {sql}")
    return time.perf_counter() - started


def raw_postgres(url: str) -> float:
    import psycopg

    from kiban.engines.dialect import transpile

    with psycopg.connect(url, autocommit=True) as conn:
        for schema in ("warehouse", "mart"):
            conn.execute(f"create schema raw_{schema}".encode())
        started = time.perf_counter()
        for layer, name, sql in model_order():
            text = transpile(sql, "postgres", name).replace("warehouse.", "raw_warehouse.")
            conn.execute(f"create table raw_{layer}.{name} as {text}".encode())
        return time.perf_counter() - started


def raw_spark(root: Path, warehouse: Path) -> float:
    from kiban.engines.dialect import transpile
    from kiban.engines.spark import _SESSIONS

    spark = next(iter(_SESSIONS.values()))
    for table in ("orders", "customers"):
        spark.read.parquet(str(root / "lake" / table)).createOrReplaceTempView(f"raw_lake_{table}")
    started = time.perf_counter()
    for layer, name, sql in model_order():
        text = transpile(sql, "spark", name).replace("lake.", "raw_lake_").replace("warehouse.", "raw_warehouse_")
        folder = warehouse / "raw" / name
        spark.sql(text).write.mode("overwrite").parquet(str(folder))
        spark.read.parquet(str(folder)).createOrReplaceTempView(f"raw_{layer}_{name}")
    return time.perf_counter() - started


def project(base: Path, name: str, warehouse: str, rows: int) -> Path:
    root = write_files(base / name, {**MODELS, "kiban.yml": f"name: {name}\ntimezone: UTC\nwarehouse: '{warehouse}'\n"})
    for table, sql in lake(rows).items():
        write_parquet(root / "lake" / table / "part-0.parquet", sql)
    return root


def shop_run(root: Path, full_refresh: bool = False) -> tuple[float, str, int]:
    """(seconds, status, assets built) of one `kiban run` of the shop without its Python models."""
    from kiban.project import load_project
    from kiban.run import RunOptions, run_project

    started = time.perf_counter()
    result = run_project(load_project(root), RunOptions(exclude=[PYTHON_MODELS], full_refresh=full_refresh))
    built = sum(1 for o in result.outcomes.values() if o.status == "success")
    return time.perf_counter() - started, result.status, built


def shop_copy(base: Path, name: str, generated: Path, warehouse: str | None) -> Path:
    root = base / name
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("lake", ".kiban", "kiban.duckdb*", "__pycache__",
                                                                 "sources_data", "report.html"))
    shutil.copytree(generated / "sources_data", root / "sources_data")
    if warehouse:
        with open(root / "kiban.yml", "a", encoding="utf-8") as out:
            out.write(f"\nwarehouse: '{warehouse}'\n")
    return root


def bench_shop(base: Path, scale: float, skip: list[str]) -> tuple[str, list[dict[str, Any]]]:
    """The example project on every engine: (generator summary, results)."""
    import subprocess

    import psycopg

    generated = base / "shop-generated"
    shutil.copytree(EXAMPLE, generated, ignore=shutil.ignore_patterns("lake", ".kiban", "kiban.duckdb*",
                                                                      "__pycache__", "sources_data"))
    subprocess.run([sys.executable, str(generated / "generate.py"), "--scale", str(scale), "--out", str(generated),
                    "--end-date", "2026-11-29"], check=True, capture_output=True, timeout=600)
    results: list[dict[str, Any]] = []
    engines: list[tuple[str, str | None]] = [("DuckDB", None)]
    db = f"kiban_bench_{uuid.uuid4().hex[:8]}"
    if "postgres" not in skip:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'create database "{db}"'.encode())
        engines.append(("PostgreSQL 15", PG_ADMIN.rsplit("/", 1)[0] + "/" + db))
    if "spark" not in skip:
        warehouse = base / "shop-spark-warehouse"
        engines.append(("Spark local[2]", f"spark://{warehouse}?master=local[2]&spark.sql.shuffle.partitions=2"))
    try:
        for label, url in engines:
            root = shop_copy(base, f"shop-{label.split()[0].lower()}", generated, url)
            if url and url.startswith("spark"):
                from kiban.engines.spark import SparkEngine

                SparkEngine(url)  # the JVM starts outside the measurement (see the first table)
            cold, status, built = shop_run(root)
            rebuild, _, _ = shop_run(root, full_refresh=True)
            results.append(dict(engine=label, cold=cold, rebuild=rebuild, built=built, status=status))
    finally:
        if "postgres" not in skip:
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'drop database if exists "{db}" with (force)'.encode())
    lake = sum(f.stat().st_size for f in (base / "shop-duckdb" / "lake").rglob("*.parquet"))
    return f"scale {scale}, {lake / 1e6:.1f} MB of Parquet collected", results


def shop_table(results: list[dict[str, Any]]) -> str:
    duck = next(r for r in results if r["engine"] == "DuckDB")
    lines = ["| engine | assets built | collect + build, cold (s) | × DuckDB | rebuild the models (s) | × DuckDB |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['engine']} | {r['built']} | {r['cold']:.2f} | {r['cold'] / duck['cold']:.1f}× | "
                     f"{r['rebuild']:.2f} | {r['rebuild'] / duck['rebuild']:.1f}× |"
                     + ("" if r["status"] == "success" else f" ({r['status']})"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--skip", action="append", default=[], help="duckdb, spark, postgres or shop")
    parser.add_argument("--shop-scale", type=float, default=0.1, help="examples/shop/generate.py --scale")
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="kiban-bench-engines-"))
    results: list[dict[str, Any]] = []
    try:
        if "duckdb" not in args.skip:
            root = project(base, "duck", "duckdb:///kiban.duckdb", args.rows)
            cold, status = kiban_run(root)
            rebuild, _ = kiban_run(root, full_refresh=True)
            warm, _ = kiban_run(root)
            results.append(dict(engine="DuckDB", cold=cold, rebuild=rebuild, warm=warm, raw=raw_duckdb(root),
                                status=status))
        if "postgres" not in args.skip:
            import psycopg

            db = f"kiban_bench_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'create database "{db}"'.encode())
            url = PG_ADMIN.rsplit("/", 1)[0] + "/" + db
            try:
                root = project(base, "pg", url, args.rows)
                cold, status = kiban_run(root)
                rebuild, _ = kiban_run(root, full_refresh=True)
                warm, _ = kiban_run(root)
                results.append(dict(engine="PostgreSQL 15", cold=cold, rebuild=rebuild, warm=warm,
                                    raw=raw_postgres(url), status=status))
            finally:
                with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                    conn.execute(f'drop database if exists "{db}" with (force)'.encode())
        if "spark" not in args.skip:
            warehouse = base / "spark-warehouse"
            root = project(base, "spark", f"spark://{warehouse}?master=local[2]&spark.sql.shuffle.partitions=2",
                           args.rows)
            started = time.perf_counter()
            from kiban.engines.spark import SparkEngine

            SparkEngine(f"spark://{warehouse}?master=local[2]&spark.sql.shuffle.partitions=2")  # start the JVM
            jvm = time.perf_counter() - started
            cold, status = kiban_run(root)
            rebuild, _ = kiban_run(root, full_refresh=True)
            warm, _ = kiban_run(root)
            results.append(dict(engine=f"Spark local[2] (+{jvm:.1f} s JVM start)", cold=cold, rebuild=rebuild,
                                warm=warm,
                                raw=raw_spark(root, warehouse), status=status))
        shop = bench_shop(base, args.shop_scale, args.skip) if "shop" not in args.skip else None
    finally:
        shutil.rmtree(base, ignore_errors=True)
    header = "| engine | kiban run, cold (s) | kiban run --full-refresh (s) | kiban run, all fresh (s) | " \
             "raw engine, same 4 statements (s) | rebuild / raw |\n|---|---:|---:|---:|---:|---:|\n"
    lines = [f"| {r['engine']} | {r['cold']:.2f} | {r['rebuild']:.2f} | {r['warm']:.2f} | {r['raw']:.2f} | "
             f"{r['rebuild'] / r['raw']:.1f}× |"
             + ("" if r["status"] == "success" else f" ({r['status']})") for r in results]
    table = header + "\n".join(lines)
    print(table)
    if not args.no_write:
        write_section(MARKER, f"{MARKER} (bench/engines.py)\n\nThe 4-model shop-like project of "
                      f"tests/engine_project.py, {args.rows:,} orders, one process per engine, on a 2-core machine "
                      "shared with other work. *cold* includes loading the lake (PostgreSQL: Parquet → COPY; "
                      "Spark and DuckDB read Parquet in place), a new state store and the first SQL parse; *raw* runs "
                      "the same statements directly on the engine with the lake already in place.\n\n"
                      + table + "\n")
    if shop:
        summary, shop_results = shop
        text = shop_table(shop_results)
        print(f"\nexample project ({summary})\n{text}")
        if not args.no_write:
            write_section(SHOP_MARKER, f"{SHOP_MARKER} (bench/engines.py)\n\nexamples/shop generated at {summary}; "
                          "every SQL model built (the Python demand models stay on DuckDB), one process, a 2-core "
                          "machine shared with other work. *cold*: a new lake, state store and warehouse: collect "
                          "every source (the same collection code on every engine) and build; *rebuild*: "
                          "`kiban run --full-refresh` with nothing new to collect. Spark's JVM was already "
                          "running. The marts are equal row by row on all three (tests/test_engine_example.py).\n\n"
                          + text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
