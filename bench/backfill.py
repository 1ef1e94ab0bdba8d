"""Backfill throughput: daily partitions of a small incremental model, per second, for 90, 180 and 365 days.

Target (issue 6): at least 20 partitions per second, about flat as the partition count grows. Builds a
project with a year of events (Parquet), runs it once (the full build), then backfills the first N days
with the library call `kiban backfill` makes. Prints a table and replaces its own section of
bench/RESULTS.md (other sections are kept).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb
from results import write_section  # bench/ is on sys.path when a script in it runs

from kiban.project import load_project
from kiban.run import RunOptions, run_project
from kiban.run.backfill import BackfillOptions, run_backfill

MARKER = "## Backfill throughput"
MODEL = ("select cast(ts as date) as day, store, count(*) as orders, sum(amount) as revenue, "
         "count(distinct customer) as customers from lake.events group by all")


def make_project(root: Path, rows_per_day: int) -> Path:
    (root / "models/warehouse").mkdir(parents=True)
    (root / "lake/events").mkdir(parents=True)
    (root / "kiban.yml").write_text("name: bench\n")
    (root / "models/warehouse/daily_sales.sql").write_text(MODEL)
    (root / "models/warehouse/daily_sales.yml").write_text("materialized: incremental\ntime_column: day\n"
                                                           "grain: day\nlookback: 2\n")
    step = 86_400 * 1_000_000 // rows_per_day  # microseconds between rows
    con = duckdb.connect()
    con.execute(f"copy (select timestamp '2024-01-01' + to_microseconds(i * {step}) as ts, i % 20 as store, "
                f"(i * 7919) % 1000 as customer, (i % 97) + 1 as amount from range({rows_per_day * 366}) t(i) "
                f"order by ts) to '{root / 'lake/events/events.parquet'}' (format parquet)")
    con.close()
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows-per-day", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="do not touch bench/RESULTS.md")
    args = parser.parse_args(argv)
    rows: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = make_project(Path(tmp), args.rows_per_day)
        project = load_project(root)
        assert run_project(project, RunOptions()).status == "success"
        for days in (90, 180, 365):
            end = (date(2024, 1, 1) + timedelta(days=days - 1)).isoformat()
            inner, outer = [], []
            for _ in range(args.reps):
                began = time.perf_counter()
                result = run_backfill(project, BackfillOptions(select=["warehouse.daily_sales"], start="2024-01-01",
                                                               end=end, concurrency=args.concurrency, restart=True))
                wall = time.perf_counter() - began
                assert result.status == "success" and result.processed == days, result.status
                inner.append(days / result.seconds)
                outer.append(days / wall)
            rate, wall_rate = statistics.median(inner), statistics.median(outer)
            verdict = "PASS" if wall_rate >= 20 else "FAIL"
            rows.append(f"| {days} | {rate:,.0f} /s | {wall_rate:,.0f} /s ({verdict} ≥ 20/s) | "
                        f"{days / wall_rate:.2f} s |")
    header = (f"{MARKER} ({args.rows_per_day:,} rows per day, concurrency {args.concurrency}; "
              f"medians of {args.reps})\n\n"
              "One daily incremental model over a year of Parquet events; each partition is one DuckDB "
              "transaction (delete its rows, insert the new ones, note the partition) and one outcome row in "
              "the SQLite state store. *Partitions* counts only the partition work; *with start-up* adds "
              "opening the store and warehouse, the lock and the checks that the model may be backfilled.\n\n"
              "| partitions | partitions | with start-up | wall time |\n|---|---|---|---|\n")
    text = header + "\n".join(rows) + "\n"
    print(text)
    if not args.no_write:
        write_section(MARKER, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
