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
Writes (replaces) its own section of bench/RESULTS.md unless --no-write.
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--skip", action="append", default=[], help="duckdb, spark or postgres")
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
