"""Collection on the workers (issue 18): `kiban collect --workers` with 1 and 2 `kiban worker` processes, on a real
PostgreSQL (source tables, state store) on loopback.

Each of TABLES source tables holds ROWS rows and its read waits WAIT seconds inside PostgreSQL (a `query:` with
pg_sleep) — a remote source's latency, which is where several workers help; the rest is kiban's own work (read,
type, land, commit). Prints a Markdown table: wall time of the collection and the ratio, in the same run.

Run: ``python bench/workers_collect.py [TABLES] [ROWS] [WAIT]`` (PostgreSQL on 127.0.0.1:5432, trust auth).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def sql(url: str, statement: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(statement.encode())
        return cur.fetchall() if cur.description else []


def project(root: Path, url: str, tables: int, wait: float) -> None:
    (root / "sources").mkdir(parents=True)
    (root / "kiban.yml").write_text(f"name: bench\ntimezone: UTC\nstate: {url}\nretries: 0\n")
    spec = "".join(f"  t{i}:\n    query: select * from src_{i} cross join (select pg_sleep({wait})) s\n"
                   "    mode: incremental\n    cursor: id\n" for i in range(tables))
    (root / "sources" / "pos.yml").write_text(f"type: postgres\nurl: env:SRC_URL\ntables:\n{spec}")


def collect(root: Path, url: str, workers: int) -> float:
    env = {**os.environ, "SRC_URL": url, "NO_COLOR": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "kiban", "--project", str(root), "worker", "--name", f"b{n}",
                               "--idle-exit", "120"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for n in range(workers)]
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                alive = sql(url, "select count(*) from workers where status <> 'stopped'")[0][0]
            except psycopg.Error:
                alive = 0
            if alive == workers:
                break
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.1)
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "kiban", "--project", str(root), "collect", "--workers",
                               str(workers)], env=env, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - started
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return seconds
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(60)


def main(tables: int, rows: int, wait: float) -> None:
    results = {}
    for workers in (1, 2):
        name = f"kiban_bench_{uuid.uuid4().hex[:8]}"
        sql(ADMIN, f'create database "{name}"')
        url = f"postgresql://postgres@127.0.0.1:5432/{name}"
        try:
            for i in range(tables):
                sql(url, f"create table src_{i} as select g as id, md5(g::text) as note, g * 0.5 as amount "
                         f"from generate_series(1, {rows}) g")
            root = Path(tempfile.mkdtemp(prefix="kiban-bench-wc-")) / "p"
            project(root, url, tables, wait)
            results[workers] = collect(root, url, workers)
            landed = sql(url, "select sum(rows_landed) from loads")[0][0]
            assert landed == tables * rows, landed
        finally:
            sql(ADMIN, f'drop database if exists "{name}" with (force)')
    print(f"{tables} tables × {rows:,} rows, each read waiting {wait:g} s in PostgreSQL:\n")
    print("| workers | collect wall (s) |\n|---:|---:|")
    for workers, seconds in results.items():
        print(f"| {workers} | {seconds:.1f} |")
    print(f"\nratio 1 → 2 workers: {results[1] / results[2]:.2f}×")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(int(args[0]) if args else 8, int(args[1]) if len(args) > 1 else 50_000,
         float(args[2]) if len(args) > 2 else 2.0)
