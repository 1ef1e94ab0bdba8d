#!/usr/bin/env python3
"""Ingest: PostgreSQL → lake. kiban's postgres connector against the drain floor and dlt, side by side.

The workload is the reference one (../shared/bench/ingest: the same 10-column ``orders`` generator, setseed
0.42), reproduced here so nothing outside the repository is imported. The tables live in the local
PostgreSQL (127.0.0.1:5432) in a dedicated database ``kiban_bench``: ``orders_1m``, ``orders_10m`` — made
once, kept between runs.

Methods, each a fresh process under GNU time (wall including start-up, peak RSS of the process tree):

- ``drain``: ``psql -c "COPY (SELECT * FROM t) TO STDOUT (FORMAT binary)" > /dev/null`` — the floor: the
  server's serialisation and the wire, no parsing, no writing.
- ``kiban``: ``kiban collect`` of the table (mode full) into a fresh project's lake — connector, typing,
  staging, the manifest commit: everything a user gets.
- ``kiban-connector``: the connector alone (``read_batches`` → ``pyarrow.parquet.ParquetWriter``), to show
  what the loader adds; ``kiban-stream``: the connector's batches read and dropped (its own cost).
- ``dlt``: dlt's fastest configuration (``sql_table(backend="connectorx")`` → filesystem Parquet), from the
  venv bench/setup_ingest_pg.sh makes (never a dependency of kiban).

    .venv/bin/python bench/ingest_pg.py                        # 1M rows, 3 repetitions
    .venv/bin/python bench/ingest_pg.py --rows 1000000,10000000   # the recorded run (10M: --big-reps, 1)

Writes (replaces) the "Ingest: PostgreSQL" section of bench/RESULTS.md unless --no-write.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from results import write_section  # bench/ is on sys.path when a script in it runs

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
ROOT = Path(os.environ.get("KIBAN_BENCH_ROOT", "/tmp/kiban-bench"))
WORK = ROOT / "ingest_pg"
DLT_PYTHON = ROOT / "venv-dlt" / "bin" / "python"
PYTHON = Path(os.environ.get("KIBAN_BENCH_PYTHON", REPO / ".venv" / "bin" / "python"))  # a worktree: main's venv
SERVER = "postgresql://postgres@127.0.0.1:5432"
DATABASE = "kiban_bench"
URL = f"{SERVER}/{DATABASE}"
MARKER = "## Ingest: PostgreSQL"
TIME = "/usr/bin/time"

DATA_SQL = """
SELECT setseed(0.42);
CREATE TABLE {table} (
  order_id    bigint PRIMARY KEY,
  customer_id int,
  product_id  int,
  store_id    int,
  amount      numeric(12,2),
  quantity    int,
  status      text,
  note        text,
  ordered_at  timestamptz,
  updated_at  timestamptz
);
INSERT INTO {table}
SELECT g,
       (random()*999999)::int + 1,
       (random()*99999)::int + 1,
       (random()*999)::int + 1,
       round((random()*2000)::numeric, 2),
       1 + (random()*9)::int,
       (ARRAY['new','paid','shipped','delivered','cancelled','returned'])[1 + floor(random()*6)::int],
       CASE WHEN random() < 0.05 THEN NULL
            ELSE substr(md5(random()::text) || md5(random()::text), 1, 8 + (random()*32)::int) END,
       o,
       o + random() * interval '30 days'
FROM (SELECT g, timestamptz '2020-01-01 00:00:00+00' + random() * interval '1500 days' AS o
      FROM generate_series(1, {rows}) g) s;
"""

CONNECTOR = """
import sys, pyarrow.parquet as pq
from pathlib import Path
from kiban.collect.connector import ReadContext, read_batches
from kiban.collect.spec import SourceSpec
spec = SourceSpec.model_validate({"type": "postgres", "url": sys.argv[1], "tables": {"t": {"table": sys.argv[2]}}})
ctx = ReadContext("bench", "t", spec, spec.tables["t"], Path("."), url=sys.argv[1], batch_rows=spec.batch_rows)
writer, rows = None, 0
for batch in read_batches(ctx):
    if sys.argv[3] == "-":  # the connector alone: batches read and dropped
        rows += batch.num_rows
        continue
    if writer is None:
        writer = pq.ParquetWriter(sys.argv[3], batch.schema, compression="snappy")
    writer.write_batch(batch)
    rows += batch.num_rows
if writer is not None:
    writer.close()
print("ROWS", rows)
"""

DLT = """
import os, sys
import dlt
from dlt.sources.sql_database import sql_table
from dlt.destinations import filesystem
url, table, out = sys.argv[1:4]
pipe = dlt.pipeline(pipeline_name="bench_connectorx", pipelines_dir=os.path.join(out, "_pipelines"),
                    destination=filesystem(bucket_url="file://" + os.path.join(out, "lake")), dataset_name="bench",
                    progress=None)
info = pipe.run(sql_table(credentials=url, table=table, backend="connectorx"), loader_file_format="parquet",
                write_disposition="replace")
info.raise_on_failed_jobs()
print("ROWS", pipe.last_trace.last_normalize_info.row_counts.get(table))
"""


def label(rows: int) -> str:
    return f"{rows // 1_000_000}m" if rows % 1_000_000 == 0 else str(rows)


def ensure_data(rows: int) -> str:
    """The table ``orders_<n>`` in kiban_bench (generated once, ~20 s per million rows here)."""
    import psycopg

    table = f"orders_{label(rows)}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        if not conn.execute("select 1 from pg_database where datname = %s", [DATABASE]).fetchone():
            conn.execute(f"create database {DATABASE}")
    with psycopg.connect(URL, autocommit=True) as conn:
        if conn.execute("select to_regclass(%s)", [table]).fetchone()[0] is None:  # type: ignore[index]
            print(f"== generating {table} ({rows:,} rows) in {DATABASE}", flush=True)
            started = time.monotonic()
            conn.execute(f"drop table if exists {table}_part")
            for statement in DATA_SQL.format(table=f"{table}_part", rows=rows).split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"vacuum analyze {table}_part")
            conn.execute(f"alter table {table}_part rename to {table}")  # a table that exists is complete
            print(f"   done in {time.monotonic() - started:.0f} s", flush=True)
        count = conn.execute(f"select count(*) from {table}").fetchone()[0]  # type: ignore[index]
        assert count == rows, f"{table} has {count} rows, expected {rows}"
    return table


LAST_CPU = [0.0]  # the last timed run's CPU seconds (user + system of the process tree: the client side)


SRC = [REPO / "src"]  # the kiban a run imports: this checkout's (--before: another's, for one method)


def timed(command: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MB, stdout) of one run under GNU time; its CPU seconds go to LAST_CPU."""
    stats = WORK / "time.txt"
    # this checkout's kiban, whatever the venv has installed
    env = {**(env or os.environ), "PYTHONPATH": str(SRC[0])}
    started = time.monotonic()
    done = subprocess.run([TIME, "-f", "%M %U %S", "-o", str(stats), *command], capture_output=True, text=True,
                          env=env, cwd=cwd, check=False)
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    kb, user, system = stats.read_text().strip().splitlines()[-1].split()
    LAST_CPU[0] = float(user) + float(system)
    return wall, int(kb) / 1024, done.stdout


def parquet_rows(folder: Path) -> int:
    import duckdb

    files = [str(p) for p in folder.rglob("*.parquet") if "_staging" not in p.parts and "_pipelines" not in p.parts]
    if not files:
        return 0
    return int(duckdb.connect().execute("select count(*) from read_parquet(?)", [files]).fetchone()[0])  # type: ignore[index]


def run_drain(table: str) -> tuple[float, float, int]:
    wall, rss, _ = timed(["sh", "-c", f"psql -X -q -h 127.0.0.1 -U postgres -d {DATABASE} -c "
                                      f"\"COPY (SELECT * FROM {table}) TO STDOUT (FORMAT binary)\" > /dev/null"])
    return wall, rss, -1


def run_kiban(table: str, options: str = "") -> tuple[float, float, int]:
    project = WORK / "project"
    shutil.rmtree(project, ignore_errors=True)
    (project / "sources").mkdir(parents=True)
    (project / "kiban.yml").write_text("name: bench\ntimezone: UTC\n")
    (project / "sources/bench.yml").write_text(f"type: postgres\nurl: env:KIBAN_BENCH_PG\ntables:\n  orders:\n"
                                               f"    table: {table}\n{options}")
    env = {**os.environ, "KIBAN_BENCH_PG": URL, "NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "200"}
    wall, rss, _ = timed([str(PYTHON), "-m", "kiban", "--project", str(project), "collect"], env=env)
    return wall, rss, parquet_rows(project / "lake")


def run_kiban_driver(table: str) -> tuple[float, float, int]:
    """Before parallel reads: the driver's single COPY stream (what the fallback did for any table)."""
    return run_kiban(table, "    reader: driver\n    streams: 1\n")


def run_kiban_parallel(table: str) -> tuple[float, float, int]:
    return run_kiban(table, f"    reader: driver\n    streams: {STREAMS[0]}\n")


def run_kiban_parallel_before(table: str) -> tuple[float, float, int]:
    """The same parallel load with the kiban of --before (a checkout's src/): a change measured in one run."""
    SRC[0] = BEFORE[0]
    try:
        return run_kiban_parallel(table)
    finally:
        SRC[0] = REPO / "src"


BEFORE = [REPO / "src"]


STREAMS = [4]
CPUS: dict[tuple[int, str], list[float]] = {}

PSYCOPG_DRAIN = """
import sys, psycopg
n = 0
with psycopg.connect(sys.argv[1]) as conn, conn.cursor().copy(
        f"copy (select * from {sys.argv[2]}) to stdout (format binary)") as copy:
    for chunk in copy:
        n += len(chunk)
print("BYTES", n)
"""

DUCKDB_SCANNER = """
import sys, duckdb
from kiban.collect.connectors.database import extension_file
con = duckdb.connect()
con.execute(f"load '{extension_file('postgres')}'")
con.execute(f"attach '{sys.argv[1]}' as src (type postgres, read_only)")
con.execute(f"copy (select * from src.public.{sys.argv[2]}) to '{sys.argv[3]}' (format parquet, compression zstd)")
print("ROWS", con.execute(f"select count(*) from '{sys.argv[3]}'").fetchone()[0])
"""


def run_psycopg_drain(table: str) -> tuple[float, float, int]:
    wall, rss, _ = timed([str(PYTHON), "-c", PSYCOPG_DRAIN, URL, table])
    return wall, rss, -1


def run_duckdb_scanner(table: str) -> tuple[float, float, int]:
    out = WORK / "duckdb.parquet"
    out.unlink(missing_ok=True)
    wall, rss, stdout = timed([str(PYTHON), "-c", DUCKDB_SCANNER, URL, table, str(out)])
    return wall, rss, int(stdout.split("ROWS")[-1])


def run_connector(table: str) -> tuple[float, float, int]:
    out = WORK / "connector.parquet"
    out.unlink(missing_ok=True)
    wall, rss, stdout = timed([str(PYTHON), "-c", CONNECTOR, URL, table, str(out)])
    return wall, rss, int(stdout.split("ROWS")[-1]) if out.exists() else 0


def run_stream(table: str) -> tuple[float, float, int]:
    wall, rss, stdout = timed([str(PYTHON), "-c", CONNECTOR, URL, table, "-"])
    return wall, rss, int(stdout.split("ROWS")[-1])


def run_dlt(table: str) -> tuple[float, float, int]:
    out = WORK / "dlt"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    env = {**os.environ, "RUNTIME__DLTHUB_TELEMETRY": "false", "DO_NOT_TRACK": "1"}
    wall, rss, _ = timed([str(DLT_PYTHON), "-c", DLT, URL, table, str(out)], env=env)
    return wall, rss, parquet_rows(out / "lake")


METHODS = {"drain": ("drain floor: psql COPY binary > /dev/null", run_drain),
           "psycopg-drain": ("psycopg COPY binary, one stream, drained", run_psycopg_drain),
           "duckdb-scanner": ("DuckDB postgres scanner → Parquet (raw engine)", run_duckdb_scanner),
           "kiban": ("kiban collect (postgres connector → lake, committed)", run_kiban),
           "kiban-driver": ("kiban collect, reader: driver, streams: 1 (before)", run_kiban_driver),
           "kiban-parallel": ("kiban collect, reader: driver, streams: N", run_kiban_parallel),
           "kiban-parallel-before": ("kiban collect, reader: driver, streams: N, the --before checkout",
                                     run_kiban_parallel_before),
           "kiban-connector": ("kiban connector only → ParquetWriter", run_connector),
           "kiban-stream": ("kiban connector only → Arrow batches, dropped", run_stream),
           "dlt": ("dlt sql_table backend=connectorx → filesystem parquet", run_dlt)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", default="1000000", help="table sizes, comma-separated (default 1000000)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--big-reps", type=int, default=1, help="repetitions for tables of 5M rows and more")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--streams", type=int, default=4, help="streams: of the kiban-parallel method")
    parser.add_argument("--before", type=Path, help="src/ of another checkout, for the kiban-parallel-before "
                        "method (e.g. /work/main/src)")
    args = parser.parse_args()
    STREAMS[0] = args.streams
    methods = [m for m in args.methods.split(",") if m]
    if args.before is not None:
        BEFORE[0] = args.before
    methods = [m for m in methods if m != "kiban-parallel-before" or args.before is not None]  # needs --before
    if "dlt" in methods and not DLT_PYTHON.exists():
        print(f"!! {DLT_PYTHON} is missing: run bash bench/setup_ingest_pg.sh (dlt left out)")
        methods.remove("dlt")
    WORK.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    results: dict[tuple[int, str], list[tuple[float, float, int]]] = {}
    for rows in [int(r) for r in args.rows.split(",")]:
        table = ensure_data(rows)
        subprocess.run(["psql", "-X", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", DATABASE, "-c",
                        f"select count(*) from {table}"], capture_output=True, check=False)  # warm the cache
        for rep in range(args.reps if rows < 5_000_000 else args.big_reps):
            order = methods[rep % len(methods):] + methods[:rep % len(methods)]  # rotate: no method always first
            for method in order:
                wall, rss, landed = METHODS[method][1](table)
                if landed not in (-1, rows):
                    raise SystemExit(f"{method} wrote {landed} rows of {rows}")
                results.setdefault((rows, method), []).append((wall, rss, landed))
                CPUS.setdefault((rows, method), []).append(LAST_CPU[0])
                print(f"{table:>11} rep {rep + 1} {method:<16} {wall:7.2f} s  {LAST_CPU[0]:6.2f} CPU-s "
                      f"{rss:7.0f} MB", flush=True)
    report = table_text(results, methods) + "\n\n" + verdict(results)
    print("\n" + report)
    if not args.no_write:
        import duckdb

        notes = (f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `bench/ingest_pg.py --rows "
                 f"{args.rows} --reps {args.reps} --big-reps {args.big_reps}` (the second for tables of 5M rows "
                 f"and more) on a 2-core machine (load average {load:.1f} at the start: under load absolute "
                 "times are noisy; the ratios come from "
                 "the same run, methods interleaved and rotated). Median wall time of fresh processes including "
                 "start-up; peak RSS of the process tree (GNU time; the PostgreSQL server is not counted). "
                 f"PostgreSQL 15 on 127.0.0.1:5432, database {DATABASE}; DuckDB {duckdb.__version__} with "
                 "duckdb-extension-postgres; dlt 1.31.0 + connectorx 0.4.6 in their own venv. Workload: the "
                 "reference `orders` table (10 columns, numeric(12,2), timestamptz, 5 % NULL notes).")
        write_section(MARKER, f"{MARKER}\n\n{notes}\n\n{report}\n")
        print("== wrote the section of bench/RESULTS.md")


def verdict(results: dict[tuple[int, str], list[tuple[float, float, int]]]) -> str:
    """The targets (kiban ≥ 0.6× the floor's rows/s, ≥ 1.5× dlt's, peak RSS ≤ 500 MB at any size), met or not."""
    lines = []
    for rows in sorted({r for r, _ in results}):
        wall = {m: statistics.median(w for w, _, _ in runs) for (r, m), runs in results.items() if r == rows}
        rss = {m: max(x for _, x, _ in runs) for (r, m), runs in results.items() if r == rows}
        parts = []
        for method in ("kiban", "kiban-connector"):
            if method not in wall:
                continue
            said = [f"{wall['drain'] / wall[method]:.2f}× the floor (target 0.6)" if "drain" in wall else "",
                    f"{wall['dlt'] / wall[method]:.2f}× dlt (target 1.5)" if "dlt" in wall else "",
                    f"{rss[method]:.0f} MB (target 500)"]
            parts.append(f"{METHODS[method][0].split(' (')[0]}: " + ", ".join(p for p in said if p))
        lines.append(f"- {rows:,} rows — " + "; ".join(parts))
    return "Against the targets:\n" + "\n".join(lines)


def table_text(results: dict[tuple[int, str], list[tuple[float, float, int]]], methods: list[str]) -> str:
    lines = ["| rows | method | median wall s (runs) | rows/s | × drain floor | kiban ÷ it | client CPU s | "
             "peak RSS MB |", "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for rows in sorted({r for r, _ in results}):
        medians = {m: statistics.median(w for w, _, _ in results[(rows, m)]) for m in methods if (rows, m) in results}
        floor = medians.get("drain")
        for method in methods:
            runs = results.get((rows, method))
            if not runs:
                continue
            wall = medians[method]
            vs_floor = f"{floor / wall:.2f}" if floor else "-"
            kiban = medians.get("kiban")
            ratio = f"{wall / kiban:.2f}×" if kiban and method != "kiban" else "-"
            walls = "/".join(f"{w:.1f}" for w, _, _ in runs)
            cpu = statistics.median(CPUS[(rows, method)]) if (rows, method) in CPUS else float("nan")
            name = METHODS[method][0].replace("streams: N", f"streams: {STREAMS[0]}")
            lines.append(f"| {rows:,} | {name} | {wall:.2f} ({walls}) | {rows / wall:,.0f} | "
                         f"{vs_floor} | {ratio} | {cpu:.2f} | {max(r for _, r, _ in runs):.0f} |")
    lines.append("")
    lines.append("× drain floor: the method's rows/s as a share of the floor's (1.00 = as fast as draining the wire). "
                 "kiban ÷ it: how many times faster kiban collect is than that method.")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
