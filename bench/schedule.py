#!/usr/bin/env python3
"""From a cron tick to the first asset starting: the scheduler's latency.

Target (issue 6): median ≤ 0.5 s. A real `kiban scheduler` runs a job on a cron with a seconds field
(every ``--every`` seconds, so each run ends before the next tick) over a small project whose lake file
is rewritten between ticks, so every run really builds (an unchanged project would only find its assets
fresh). For each tick the state store says when it was due (``job_ticks.scheduled_at``), when the scheduler
started its process (``job_ticks.started_at``), when the run began (``runs.started_at``) and when its first
asset's build started (the earliest ``attempts.started_at``). Prints a table and replaces its own section of
bench/RESULTS.md (other sections are kept).

    .venv/bin/python bench/schedule.py [--ticks 12] [--every 2]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import duckdb
import sqlalchemy as sa
from results import write_section  # bench/ is on sys.path when a script in it runs

from kiban.store import Store

MARKER = "## Scheduler: cron tick → first asset"
MODELS = {
    "models/warehouse/orders.sql": "select * from lake.orders",
    "models/mart/daily.sql": "select day, count(*) as n, sum(amount) as amount from warehouse.orders group by day",
}


def write_lake(root: Path, generation: int) -> None:
    path = root / "lake" / "orders" / "part-0.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    con = duckdb.connect()
    con.execute(f"copy (select i as id, date '2026-11-01' + (i % 30)::int as day, (i * {generation + 3}) % 997 "
                f"as amount from range(10000) t(i)) to '{tmp}' (format parquet)")
    con.close()
    os.replace(tmp, path)  # atomic: a run never reads half a file


def project(root: Path, every: int) -> None:
    for rel, sql in MODELS.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(sql + "\n")
    (root / "kiban.yml").write_text(
        "name: bench\ntimezone: Asia/Tokyo\nthreads: 2\n"
        f"jobs:\n  often:\n    select: [+mart.daily]\n    cron: \"* * * * * */{every}\"\n    catch_up: latest\n")
    write_lake(root, 0)


def measure(store: Store) -> list[dict[str, float]]:
    query = sa.text("""
        select t.scheduled_at, t.started_at as launched, r.started_at as run_started,
               (select min(a.started_at) from attempts a where a.run_id = t.run_id and a.status != 'fresh')
                 as first_asset
        from job_ticks t join runs r on r.run_id = t.run_id
        where t.status = 'success' order by t.scheduled_at""")
    out = []
    with store.engine.connect() as conn:
        for row in conn.execute(query):
            times = [datetime.fromisoformat(str(v)) if v is not None else None for v in row]
            if times[3] is None:
                continue  # nothing was built (should not happen: the lake changes every tick)
            due = times[0]
            out.append({"launch": (times[1] - due).total_seconds(), "run": (times[2] - due).total_seconds(),
                        "first": (times[3] - due).total_seconds()})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=12, help="ticks to measure (at least 10)")
    parser.add_argument("--every", type=int, default=2, help="seconds between ticks")
    parser.add_argument("--no-write", action="store_true", help="do not touch bench/RESULTS.md")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        project(root, args.every)
        subprocess.run([sys.executable, "-m", "kiban", "--project", str(root), "run", "--log-format", "json"],
                       check=True, stdout=subprocess.DEVNULL)  # creates the store and the tables
        store = Store(f"sqlite:///{root}/.kiban/state.db")
        stop = threading.Event()

        def change_lake() -> None:  # a new lake version between ticks, so every run builds
            generation = 1
            while not stop.wait(args.every / 2):
                write_lake(root, generation)
                generation += 1

        changer = threading.Thread(target=change_lake, daemon=True)
        changer.start()
        daemon = subprocess.Popen([sys.executable, "-m", "kiban", "--project", str(root), "scheduler",
                                   "--log-format", "json"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + args.ticks * args.every * 3 + 30
            while len(measure(store)) < args.ticks + 1 and time.monotonic() < deadline:
                time.sleep(0.5)
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(90)
            stop.set()
        samples = measure(store)[1:]  # the first tick may be the scheduler's first look (no steady state)
        store.close()
    if len(samples) < 10:
        print(f"only {len(samples)} ticks measured", file=sys.stderr)
        return 1
    med = {k: statistics.median(s[k] for s in samples) for k in ("launch", "run", "first")}
    worst = max(s["first"] for s in samples)
    lines = [
        f"| tick → the scheduler starts the run's process | {med['launch']:.3f} s |",
        f"| tick → the run starts (its process loaded the project, opened the store, took the lock) "
        f"| {med['run']:.3f} s |",
        f"| **tick → first asset starts building** | **{med['first']:.3f} s** "
        f"({'PASS' if med['first'] <= 0.5 else 'FAIL'} ≤ 0.5 s; worst {worst:.3f} s) |",
    ]
    header = (f"{MARKER} (medians of {len(samples)} ticks, cron every {args.every} s)\n\n"
              "| what | result |\n|---|---|\n")
    notes = ("\nThe leader sleeps until the next cron tick (not a whole `poll`), and hands the run to a process that "
             "has already started Python and imported kiban (`kiban.schedule.warm`). Before both, the same "
             "benchmark gave 0.86 s (1 s poll, cold start: about 0.5 s from process start to the run).\n")
    text = header + "\n".join(lines) + "\n" + notes
    print(text)
    if not args.no_write:
        write_section(MARKER, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
