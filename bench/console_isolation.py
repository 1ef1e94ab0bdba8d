#!/usr/bin/env python3
"""The console cannot stall the platform: a run's duration while console queries read, and /health's latency
while many console queries are sent at once.

A generated project (a lake table of ``--rows`` customers with PII, a warehouse model, a mart) is built; ``kiban
serve`` runs in its own process with ten analysts. Measured:

1. ``kiban run --full-refresh`` on an idle machine, then again while ``--readers`` console queries of about
   ``--seconds`` each run (their time limit stops them): the ratio busy/idle (target: 1 ± 0.2), and that the
   run succeeded (before the snapshot design it failed: "open in another program").
2. ``/health`` p50/p95 while ``--burst`` console queries are posted at once (target p95 ≤ 100 ms), and how many
   were answered at once with 429 "busy, try again" (admission control) rather than queued.

    .venv/bin/python bench/console_isolation.py --rows 2000000 --seconds 10 --readers 10 --burst 50

``--priority`` sets the console workers' CPU priority in the server (``idle``: SCHED_IDLE + nice 19, the
default; ``low``: nice 19; ``normal``: nice 10) to compare. The machine's load average is printed: on a shared
machine read the ratios, not the absolute times.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from web import free_port, pct  # bench/ is on sys.path when a script in it runs

PASSWORD = "bench-password-1"
LONG = "select count(*) from warehouse.customers a, range(100000000000) b where a.id + b.range = -1"


def project(root: Path, rows: int) -> None:
    import duckdb

    (root / "models" / "lake").mkdir(parents=True)
    (root / "models" / "warehouse").mkdir()
    (root / "models" / "mart").mkdir()
    (root / "lake" / "customers").mkdir(parents=True)
    (root / "kiban.yml").write_text("name: bench\ntimezone: UTC\n")
    (root / "models" / "lake" / "customers.yml").write_text("columns:\n  - {name: email, tags: [pii]}\n")
    (root / "models" / "warehouse" / "customers.sql").write_text(
        "select id, email, city, upper(email) as email_upper from lake.customers")
    (root / "models" / "mart" / "cities.sql").write_text(
        "select city, count(*) as customers from warehouse.customers group by city")
    duckdb.connect().execute(
        f"copy (select i as id, 'user' || i || '@example.com' as email, 'city' || (i % 50) as city "
        f"from range({rows}) t(i)) to '{root / 'lake' / 'customers' / 'part-0.parquet'}' (format parquet)")


def kiban(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kiban", "--project", str(root), *args], capture_output=True,
                          text=True, check=False)


def timed_run(root: Path) -> tuple[float, int, str]:
    began = time.perf_counter()
    done = kiban(root, "run", "--full-refresh")
    return time.perf_counter() - began, done.returncode, done.stderr[-300:]


def main() -> None:
    import httpx

    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--readers", type=int, default=10)
    parser.add_argument("--burst", type=int, default=50)
    parser.add_argument("--priority", choices=("idle", "low", "normal"), default="idle")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="kiban-bench-console-") as folder:
        root = Path(folder) / "bench"
        root.mkdir()
        project(root, args.rows)
        assert kiban(root, "run").returncode == 0
        idle = [timed_run(root)[0] for _ in range(3)]
        from kiban.project import load_project
        from kiban.store import Store
        from kiban.web.accounts import Accounts

        store = Store(load_project(root).state_url)
        accounts = Accounts(store)
        tokens = []
        for n in range(10):
            accounts.add_user(f"analyst{n}", PASSWORD, "analyst")
            tokens.append(accounts.create_token(f"analyst{n}", "bench"))
        store.close()
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "kiban", "--project", str(root), "serve", "--port",
                                   str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  env={**os.environ, "KIBAN_CONSOLE_PRIORITY": args.priority})
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(100):
                try:
                    if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            statuses: list[int] = []

            def query(n: int) -> None:
                answer = httpx.post(f"{base}/api/v1/query", json={"sql": LONG, "timeout": args.seconds},
                                    headers={"Authorization": f"Bearer {tokens[n % 10]}"}, timeout=args.seconds + 30)
                statuses.append(answer.status_code)

            readers = [threading.Thread(target=query, args=(n,)) for n in range(args.readers)]
            for reader in readers:
                reader.start()
            time.sleep(1.0)
            busy, code, error = timed_run(root)
            for reader in readers:
                reader.join()
            reader_statuses = sorted(statuses)
            health_idle = []
            probe = httpx.Client(base_url=base, timeout=30)  # one kept-alive connection, like a load balancer's
            for _ in range(30):
                began = time.perf_counter()
                probe.get("/health")
                health_idle.append((time.perf_counter() - began) * 1000)
            statuses.clear()
            burst = [threading.Thread(target=query, args=(n,)) for n in range(args.burst)]
            for thread in burst:
                thread.start()
            health_busy = []
            while any(t.is_alive() for t in burst):
                began = time.perf_counter()
                probe.get("/health")
                health_busy.append((time.perf_counter() - began) * 1000)
                time.sleep(0.05)
            for thread in burst:
                thread.join()
        finally:
            server.terminate()
            server.wait()
    idle_s = statistics.median(idle)
    print(f"console priority {args.priority}; {os.cpu_count()} cores; load average {load_before:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end")
    print(f"run, idle: {', '.join(f'{s:.2f}' for s in idle)} s")
    print(f"run, idle: {idle_s:.2f} s (median of {len(idle)}); while {args.readers} console queries of "
          f"~{args.seconds:g} s read: {busy:.2f} s, exit {code} (ratio {busy / idle_s:.2f}) {error if code else ''}")
    print(f"  reader answers: {reader_statuses}")
    print(f"/health idle p50 {statistics.median(health_idle):.1f} ms p95 {pct(health_idle, 0.95):.1f} ms; during "
          f"{args.burst} concurrent queries p50 {statistics.median(health_busy):.1f} ms p95 "
          f"{pct(health_busy, 0.95):.1f} ms (n={len(health_busy)})")
    print(f"  burst answers: {sum(s == 200 for s in statuses)} ran (stopped at their limit: "
          f"{sum(s == 400 for s in statuses)}), {sum(s == 429 for s in statuses)} answered 429 busy at once")


if __name__ == "__main__":
    main()
