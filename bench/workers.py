#!/usr/bin/env python3
"""Workers: throughput of 1, 2 and 4 `kiban worker` processes on I/O-bound assets, against linear scaling.

The project has --assets warehouse models, each waiting --sleep seconds inside PostgreSQL (pg_sleep: the
shape of an extraction or a remote query, where the worker waits rather than computes), and a mart over
every four of them. The state store and the warehouse are one fresh PostgreSQL database per measurement.
The workers are started (and have connected) before the clock starts; the time is the coordinator's run,
from `run_distributed` to its end. Efficiency = throughput with N workers / (N × throughput with 1).

    .venv/bin/python bench/workers.py                       # 24 + 6 assets, 0.5 s each
    .venv/bin/python bench/workers.py --assets 12 --sleep 0.3 --no-write

Writes (replaces) its own section of bench/RESULTS.md unless --no-write.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from results import write_section  # bench/ is on sys.path when a script in it runs

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MARKER = "## Workers"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
PYTHON = REPO / ".venv" / "bin" / "python" if (REPO / ".venv").is_dir() else Path(sys.executable)


def write_project(root: Path, url: str, assets: int, sleep: float) -> int:
    from tests.conftest import write_files, write_parquet

    files = {"kiban.yml": f"name: wbench\ntimezone: UTC\nwarehouse: {url}\nstate: {url}\n"}
    for i in range(assets):
        files[f"models/warehouse/w{i:03d}.sql"] = (
            f"select x.id, x.id * {i} as v from lake.t x cross join (select pg_sleep({sleep})) s\n")
    marts = 0
    for start in range(0, assets, 4):
        inputs = range(start, min(start + 4, assets))
        parts = " union all ".join(f"select id, v from warehouse.w{j:03d}" for j in inputs)
        files[f"models/mart/m{start // 4:03d}.sql"] = (
            f"select x.id, sum(x.v) as v from ({parts}) x cross join (select pg_sleep({sleep})) s group by x.id\n")
        marts += 1
    write_files(root, files)
    write_parquet(root / "lake" / "t" / "part-0.parquet", "select i as id from range(1, 101) t(i)")
    return assets + marts


def write_workload(root: Path, url: str, models: int, rows: int) -> int:
    """The 500-model benchmark project (bench/workload.py: real SQL over `orders`, no sleeps) on PostgreSQL."""
    import shutil

    import workload  # bench/ is on sys.path when a script in it runs

    spec = workload.build_spec(models)
    source = workload.orders_parquet(rows, Path(tempfile.gettempdir()) / "kiban-bench-data")
    workload.render_kiban(spec, source, root.parent / f"{root.name}-gen", threads=None)
    shutil.move(str(root.parent / f"{root.name}-gen" / "kiban"), str(root))
    (root / "kiban.yml").write_text(f"name: wbench\ntimezone: UTC\nwarehouse: {url}\nstate: {url}\n")
    return len(spec.models)


def measure(workers: int, assets: int, sleep: float, base: Path, rows: int = 0) -> tuple[float, int, str]:
    import psycopg

    from kiban.project import load_project
    from kiban.run import RunOptions
    from kiban.store import Store
    from kiban.workers import RunQueue, run_distributed

    db = f"kiban_wbench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'create database "{db}"'.encode())
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + db
    root = base / f"w{workers}"
    total = write_workload(root, url, assets, rows) if rows else write_project(root, url, assets, sleep)
    project = load_project(root)
    Store(url).close()  # create the store before the workers start
    env = {**os.environ, "NO_COLOR": "1"}
    procs = [subprocess.Popen([str(PYTHON), "-m", "kiban", "--project", str(root), "worker", "--name", f"b{i}",
                               "--idle-exit", "600"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for i in range(workers)]
    try:
        store = Store(url)
        queue = RunQueue(store)
        deadline = time.monotonic() + 120
        while queue.live_workers(project.name, 15) < workers and time.monotonic() < deadline:
            time.sleep(0.2)
        store.close()
        started = time.perf_counter()
        result = run_distributed(project, RunOptions())
        seconds = time.perf_counter() - started
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=60)
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{db}" with (force)'.encode())
    return seconds, total, result.status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=24)
    parser.add_argument("--sleep", type=float, default=0.5)
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2, 4])
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--workload-rows", type=int, default=0,
                        help="instead of sleeping models: the --assets-model benchmark project (bench/workload.py) "
                             "over this many order rows; prints the ratio, writes nothing")
    args = parser.parse_args(argv)
    if args.workload_rows:
        return workload_ratio(args.assets, args.workload_rows, args.workers)
    base = Path(tempfile.mkdtemp(prefix="kiban-bench-workers-"))
    rows = []
    single: float | None = None
    for count in args.workers:
        seconds, total, status = measure(count, args.assets, args.sleep, base)
        throughput = total / seconds
        if count == 1:
            single = throughput
        efficiency = throughput / (count * single) if single else None
        rows.append((count, total, seconds, throughput, efficiency, status))
        print(f"{count} workers: {seconds:.2f} s, {throughput:.2f} assets/s", flush=True)
    ideal = (args.assets + (args.assets + 3) // 4) * args.sleep
    header = ("| workers | assets | run (s) | assets/s | vs linear | status |\n"
              "|---:|---:|---:|---:|---:|---|\n")
    table = header + "\n".join(
        f"| {c} | {t} | {s:.2f} | {tp:.2f} | {'' if e is None else f'{e:.0%}'} | {st} |"
        for c, t, s, tp, e, st in rows)
    print(table)
    if not args.no_write:
        write_section(MARKER, f"{MARKER} (bench/workers.py)\n\n{args.assets} warehouse models and "
                      f"{(args.assets + 3) // 4} marts, each waiting {args.sleep} s in PostgreSQL (pg_sleep): "
                      f"{ideal:.1f} s of waiting for one worker. Workers are `kiban worker` processes on this "
                      "machine (2 cores, shared), started before the clock; *vs linear* = throughput / (workers × "
                      "throughput of one). Target: ≥ 80 %.\n\n" + table + "\n")
    return 0


def workload_ratio(models: int, rows: int, counts: list[int]) -> int:
    """Throughput of N workers on the benchmark project against one worker's, measured one after the other."""
    base = Path(tempfile.mkdtemp(prefix="kiban-bench-workload-"))
    single: float | None = None
    for count in counts:
        cpu = os.times()
        seconds, total, status = measure(count, models, 0.0, base, rows)
        used = os.times()
        throughput = total / seconds
        single = single or throughput
        print(f"{count} workers: {total} models in {seconds:.2f} s ({throughput:.2f} models/s, "
              f"{throughput / single:.2f}x one worker), status {status}, coordinator CPU "
              f"{used.user - cpu.user + used.system - cpu.system:.1f} s, load {os.getloadavg()[0]:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
