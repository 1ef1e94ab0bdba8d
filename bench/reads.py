#!/usr/bin/env python3
"""Reading marts from outside the console: a notebook's ``kiban.read`` and a BI tool over the PostgreSQL protocol.

A generated project (a lake table of ``--rows`` rows with one PII column, a mart selecting all of it) is built.
Measured, medians of ``--reps`` after one warm-up:

1. ``kiban.read("mart.wide")`` to Arrow — in its OS-bounded worker (the default) and with ``isolated=False``
   (in this process, on a warm pooled session) — vs DuckDB's own scan of the same table to Arrow (the snapshot opened
   read-only once, ``select … .to_arrow_table()`` on it), with all columns (the PII one masked by kiban) and with
   the columns that carry no PII (the same values on both sides). Target: ≤ 1.2×.
2. A 10,000-row query through ``kiban pg`` with psycopg vs the same query in the console's path
   (``QueryConsole.run`` with a 10,000-row limit, as the web console runs it). Target: ≤ 1.5×.

    .venv/bin/python bench/reads.py --rows 1000000
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import duckdb


def build(root: Path, rows: int) -> None:
    from kiban.project import load_project
    from kiban.run import RunOptions, run_project

    (root / "models" / "lake").mkdir(parents=True)
    (root / "models" / "mart").mkdir()
    (root / "lake" / "sales").mkdir(parents=True)
    (root / "kiban.yml").write_text("name: bench\ntimezone: UTC\n")
    (root / "models" / "lake" / "sales.yml").write_text("columns:\n  - {name: email, tags: [pii]}\n")
    (root / "models" / "mart" / "wide.sql").write_text("select * from lake.sales")
    duckdb.connect().execute(
        f"copy (select i as id, i % 500 as store_id, date '2026-01-01' + to_days(cast(i % 365 as integer)) as day,"
        f" (i * 7 % 1000)::double as amount, 'sku' || (i % 5000) as sku, 'u' || i || '@example.com' as email "
        f"from range({rows}) t(i)) to '{root / 'lake' / 'sales' / 'part-0.parquet'}' (format parquet)")
    assert run_project(load_project(root), RunOptions()).ok


CPU: dict[str, float] = {}  # the last median's CPU seconds (a shared machine's wall times are noisy)
WORKERS: list[int] = []  # processes whose CPU counts as the measured call's too (kiban.read's resident worker)


def worker_cpu() -> float:
    """CPU seconds (user + system) of the processes in WORKERS, from /proc (0 where there is none)."""
    total = 0.0
    for pid in WORKERS:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def median(fn, reps: int) -> float:
    """Median wall seconds of ``reps`` calls after a warm-up (interleaving is left to the caller)."""
    fn()
    times, cpu = [], []
    for _ in range(reps):
        started, started_cpu = time.perf_counter(), time.process_time() + worker_cpu()
        fn()
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() + worker_cpu() - started_cpu)
    CPU["last"] = statistics.median(cpu)
    return statistics.median(times)


CLEAR = ["id", "store_id", "day", "amount", "sku"]  # no PII: both sides return the same values


def notebook(root: Path, reps: int, columns: list[str] | None, where: str | None = None) -> tuple[float, float]:
    import kiban

    snapshot = root / "kiban.duckdb.snapshot"
    chosen = ", ".join(columns) if columns else "*"
    condition = f" where ({where})" if where else ""

    con = duckdb.connect(str(snapshot), read_only=True)  # kept open, as kiban keeps its sessions: both warm

    def own() -> None:
        con.execute(f"select {chosen} from mart.wide{condition}").to_arrow_table()

    def ours() -> None:
        kiban.read("mart.wide", columns=columns, where=where, project=root, user="bench")

    def in_process() -> None:
        kiban.read("mart.wide", columns=columns, where=where, project=root, user="bench", isolated=False)

    near_wall = median(in_process, reps)
    near_cpu = CPU["last"]
    own_wall = median(own, reps)
    own_cpu = CPU["last"]
    ours()  # start the resident worker, then count its CPU with ours
    from kiban.catalog.reading import shared_reader

    WORKERS[:] = [r._process.pid for r in shared_reader(root, "notebook")._residents.values() if r.alive()]
    pair_own, pair_ours = paired(own, ours, 3 * reps)
    WORKERS.clear()
    print(f"  in-process (isolated=False): {near_wall:.3f} s wall, {near_cpu:.3f} s CPU, ratios "
          f"{near_wall / own_wall:.2f} / {near_cpu / own_cpu:.2f} against DuckDB's {own_wall:.3f} s / {own_cpu:.3f} s")
    print(f"  bounded (resident worker), {3 * reps} reads interleaved with DuckDB's: wall medians "
          f"{pair_ours[0]:.3f} s vs {pair_own[0]:.3f} s, CPU (this process + the worker, summed) "
          f"{pair_ours[1]:.3f} s vs {pair_own[1]:.3f} s, CPU ratio {pair_ours[1] / pair_own[1]:.2f}")
    return pair_own[0], pair_ours[0]


def paired(first, second, reps: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """``first`` and ``second`` called in turn ``reps`` times (a loaded machine's swings hit both alike): each
    one's median wall seconds and total CPU seconds (WORKERS' included)."""
    first(), second()
    walls: tuple[list[float], list[float]] = ([], [])
    cpus = [0.0, 0.0]
    for _ in range(reps):
        for i, fn in enumerate((first, second)):
            started, started_cpu = time.perf_counter(), time.process_time() + worker_cpu()
            fn()
            walls[i].append(time.perf_counter() - started)
            cpus[i] += time.process_time() + worker_cpu() - started_cpu
    return ((statistics.median(walls[0]), cpus[0]), (statistics.median(walls[1]), cpus[1]))


def bi(root: Path, reps: int) -> tuple[float, float] | None:
    try:
        import psycopg

        from kiban.pgwire.server import serve_pg
    except ImportError:
        return None
    from kiban.catalog.console import QueryConsole
    from kiban.catalog.usage import Actor
    from kiban.project import load_project
    from kiban.store import Store
    from kiban.web.accounts import Accounts

    project = load_project(root)
    store = Store(project.state_url)
    Accounts(store).add_user("bench", "bench-password-1", "analyst")
    sql = "select id, store_id, day, amount, sku, email from mart.wide where id < 10000 order by id"
    console = QueryConsole(project, store)
    actor = Actor("bench")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = serve_pg(project, "127.0.0.1", port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with psycopg.connect(host="127.0.0.1", port=port, user="bench", password="bench-password-1",
                             dbname="bench") as con:
            def wire() -> None:
                rows = con.execute(sql).fetchall()
                assert len(rows) == 10000

            def wire_binary() -> None:
                rows = con.cursor(binary=True).execute(sql).fetchall()
                assert len(rows) == 10000

            def console_path() -> None:
                assert len(console.run(sql, actor, limit=10000).rows) == 10000

            console_wall = median(console_path, reps)
            console_cpu = CPU["last"]
            wire_wall = median(wire, reps)
            print(f"  CPU (client and server in one process): console {console_cpu:.3f} s, "
                  f"wire {CPU['last']:.3f} s, ratio {CPU['last'] / console_cpu:.2f}")
            binary_wall = median(wire_binary, reps)
            print(f"  binary results (psycopg's binary cursor): {binary_wall:.3f} s wall, ratio "
                  f"{binary_wall / console_wall:.2f}; CPU {CPU['last']:.3f} s")
            # the parts: the server's encoding of the 10,000 rows, psycopg's parsing of them (CPU, this process)
            from kiban.pgwire import messages

            arrow = duckdb.connect(str(root / "kiban.duckdb.snapshot"), read_only=True).execute(
                sql.replace("email", "'•••' as email")).to_arrow_table()
            for label, formats in (("text", ()), ("binary", (1,))):
                median(lambda f=formats: b"".join(messages.data_rows(arrow, f)), reps)
                print(f"  the server's encoding of 10,000 rows as {label}: {CPU['last'] * 1000:.1f} ms CPU")
            return console_wall, wire_wall
    finally:
        server.shutdown()
        server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--only", choices=("notebook", "bi"), help="measure one of the two")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        os.environ.pop("KIBAN_TOKEN", None)
        build(root, args.rows)
        for label, columns, where in (("all columns, email masked", None, None),
                                      ("the columns without PII", CLEAR, None),
                                      ("the columns without PII, where store_id < 250", CLEAR, "store_id < 250")):
            if args.only == "bi":
                break
            own, ours = notebook(root, args.reps, columns, where)
            print(f"notebook, {label}: DuckDB scan to Arrow {own:.3f} s, kiban.read (bounded resident worker, "
                  f"the default) {ours:.3f} s, wall ratio {ours / own:.2f} (target ≤ 1.2)")
        found = bi(root, args.reps) if args.only != "notebook" else None
        if found:
            console, wire = found
            print(f"BI, 10,000 rows: console path {console:.3f} s, PostgreSQL protocol {wire:.3f} s, "
                  f"ratio {wire / console:.2f} (target ≤ 1.5)")


if __name__ == "__main__":
    main()
