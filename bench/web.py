#!/usr/bin/env python3
"""Web console: Today, Asset, Runs and the index pages (catalog, checks, jobs, models) under 8 concurrent
clients, on a store with 1,000 assets and 100,000 recorded asset runs.

The project (1,000 SQL models in chains over 5 lake tables, 10 use cases) is generated, and its state store
is filled directly with 100 daily runs of every asset (100,000 attempts) — the history a year-old
installation would hold. ``kiban serve`` runs in its own process on a free loopback port; 8 asynchronous
httpx clients then request each page for a fixed number of requests. Reported per page: the server's own
time (``Server-Timing``) and the time the client saw, p50/p95/max; and, side by side in the same run, the
raw core call behind the page (the same view function, without HTTP or HTML) — the ratio is what the
console adds. Target: p95 ≤ 100 ms.

    .venv/bin/python bench/web.py                  # 1,000 assets, 100,495 attempts, 400 requests per page
    .venv/bin/python bench/web.py --assets 200 --requests 100 --no-write
    .venv/bin/python bench/web.py --in-process     # every page of the nav, in-process, one request at a time

Writes (replaces) the "Web console" section of bench/RESULTS.md unless --no-write; ``--in-process`` writes its own
section, "Web console: every page, in-process": the ASGI app called through Starlette's test client (httpx), no
server process and no other client, so each figure is the page's own work — server time (``Server-Timing``) and
the CPU time the process spent on the request — and the machine's load average is reported beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from results import write_section  # bench/ is on sys.path when a script in it runs

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
MARKER = "## Web console"
EVERY = "## Web console: every page, in-process"
PASSWORD = "bench-password-1"


def generate(root: Path, assets: int, days: int) -> tuple[str, str]:
    """The project and its history; returns (an asset to open, an API token)."""
    import duckdb

    rng = random.Random(7)
    lake = 5
    (root / "models/warehouse").mkdir(parents=True)
    (root / "models/mart").mkdir(parents=True)
    (root / "usecases").mkdir()
    (root / "kiban.yml").write_text("name: bench\ntimezone: Asia/Tokyo\n")
    con = duckdb.connect()
    for i in range(lake):
        folder = root / "lake" / f"src{i}"
        folder.mkdir(parents=True)
        con.execute(f"copy (select range as id, range % 7 as k from range(100)) to '{folder}/part-0.parquet' "
                    "(format parquet)")
    con.close()
    models = assets - lake
    marts = models // 5
    warehouse = models - marts
    names: list[str] = []
    for i in range(warehouse):
        ups = [f"lake.src{rng.randrange(lake)}"] if i < 20 or rng.random() < 0.1 else \
            rng.sample(names[max(0, i - 60):], k=min(2, len(names[max(0, i - 60):])))
        sql = " union all ".join(f"select id, k from {u}" for u in ups)
        (root / f"models/warehouse/w{i:04d}.sql").write_text(f"select id, k from ({sql}) t\n")
        (root / f"models/warehouse/w{i:04d}.yml").write_text(
            f"description: warehouse table {i} about orders and customers\nowner: team{i % 7}@example\n"
            f"tags: [t{i % 9}]\ncolumns:\n  - name: id\n    description: the key of row {i}\n")
        names.append(f"warehouse.w{i:04d}")
    mart_names = []
    feeds: dict[str, str] = {}  # mart → the warehouse table it reads
    for i in range(marts):
        up = rng.choice(names)
        feeds[f"mart.m{i:04d}"] = up
        (root / f"models/mart/m{i:04d}.sql").write_text(f"select k, count(*) as n from {up} group by k\n")
        mart_names.append(f"mart.m{i:04d}")
    served = []
    for u in range(10):
        chosen = rng.sample(mart_names, 3)
        served += chosen
        (root / f"usecases/uc{u}.yml").write_text(
            f"description: use case {u}\nowner: team{u}@example\nconsumers:\n  - name: people {u}\n"
            f"assets: [{', '.join(chosen)}]\nneed:\n  by: \"0{u % 9}:30\"\n  on: every_day\n"
            "target:\n  attainment: 0.9\n  window_days: 28\n")

    from kiban.graph import build_graph
    from kiban.project import load_project
    from kiban.store import Store
    from kiban.store.schema import attempts, runs
    from kiban.web.accounts import Accounts

    project = load_project(root)
    graph = build_graph(project)  # fills the SQL parse cache, so the server starts quickly
    keys = [k for k in graph.order if graph.assets[k].layer != "lake"]
    store = Store(project.state_url)
    start = datetime.utcnow().replace(hour=18, minute=0, second=0, microsecond=0) - timedelta(days=days)
    with store.engine.begin() as conn:
        for d in range(days):
            run_id = f"{(start + timedelta(days=d)):%Y%m%dT%H%M%S}-{d:06x}"
            t = start + timedelta(days=d)
            rows = []
            for n, key in enumerate(keys):
                began = t + timedelta(seconds=n * 0.5)
                secs = 0.2 + rng.random()
                failed = rng.random() < 0.002
                rows.append(dict(run_id=run_id, asset=key, attempt=1, status="failed" if failed else "success",
                                 started_at=began, ended_at=began + timedelta(seconds=secs), seconds=secs,
                                 rows=1000 + rng.randrange(100), bytes=50_000, error="boom" if failed else None))
            conn.execute(runs.insert().values(run_id=run_id, project="bench", status="success", selection="[]",
                                              options="{}", started_at=t, ended_at=t + timedelta(minutes=9),
                                              heartbeat_at=t, pid=None, host="bench"))
            conn.execute(attempts.insert(), rows)
    accounts = Accounts(store)
    accounts.add_user("bench", PASSWORD, "admin")  # /users is for admins
    token = accounts.create_token("bench", "bench")
    store.close()
    return feeds[served[0]], token  # a warehouse table some use case depends on: its page shows deadlines


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def load(base: str, path: str, token: str, total: int, clients: int) -> tuple[list[float], list[float]]:
    """(server ms, client ms) of ``total`` requests of ``path`` by ``clients`` concurrent clients."""
    import httpx

    server: list[float] = []
    client: list[float] = []
    left = total

    async def worker(http: httpx.AsyncClient) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            began = time.perf_counter()
            answer = await http.get(path)
            client.append((time.perf_counter() - began) * 1000)
            answer.raise_for_status()
            server.append(float(answer.headers["server-timing"].split("dur=")[1]))

    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
        await http.get(path)  # warm
        await asyncio.gather(*(worker(http) for _ in range(clients)))
    return server, client


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def raw(root: Path, asset: str, reps: int) -> dict[str, float]:
    """The core call behind each page, in-process, median ms (assessment cache off: every call computes)."""
    from kiban.web import views

    site = views.Site(root)
    out = {}
    for name, call in (("Today", lambda: (site.forget(), views.today(site))),
                       ("Asset", lambda: (site.forget(), views.asset_detail(site, asset, True))),
                       ("Runs", lambda: views._run_list(site, 25))):
        times = []
        for _ in range(reps):
            began = time.perf_counter()
            call()
            times.append((time.perf_counter() - began) * 1000)
        out[name] = statistics.median(times)
    site.close()
    return out


NAV = [("Today", "/"), ("Runs", "/runs"), ("Incidents", "/incidents"), ("Lineage", "/graph"), ("Catalog", "/catalog"),
       ("Loads", "/loads"), ("Jobs", "/schedule"), ("Checks", "/checks"), ("Models", "/models"),
       ("Recipes", "/recipes"), ("SQL console", "/console"), ("Requests", "/requests"), ("Forms", "/forms"),
       ("Usage", "/usage"), ("Value", "/initiatives"), ("Team", "/team"), ("Users", "/users"), ("Audit", "/audit")]


def every_page(root: Path, asset: str, token: str, requests: int) -> list[tuple[str, str, list[float], list[float]]]:
    """(page, path, server ms, CPU ms) of ``requests`` requests of each page in the nav and each kind of detail
    page, one at a time, in-process (no server process: the ASGI app through the test client)."""
    from fastapi.testclient import TestClient

    from kiban.web import create_app

    out = []
    with TestClient(create_app(root), base_url="http://127.0.0.1",
                    headers={"Authorization": f"Bearer {token}"}) as client:
        run_id = client.get("/api/v1/runs?limit=1").json()["runs"][0]["run_id"]
        pages = [*NAV, ("Use case", "/usecases/uc0"), ("Asset", f"/assets/{asset}"), ("Run", f"/runs/{run_id}"),
                 ("Lineage, focused", f"/graph?focus=%2B{asset}%2B&depth=2"), ("Search", "/search?q=ordr"),
                 ("Catalog, filtered and sorted", "/catalog?layer=mart&sort=-rows"),
                 ("Today, in Japanese", "/"), ("health (floor)", "/health")]
        for name, path in pages:
            headers = {"Accept-Language": "ja"} if name.endswith("in Japanese") else {}
            for _ in range(3):  # warm: the first request lays out, parses, fills what the console shares
                client.get(path, headers=headers).raise_for_status()
            server, cpu = [], []
            for _ in range(requests):
                began = time.process_time()
                answer = client.get(path, headers=headers)
                cpu.append((time.process_time() - began) * 1000)
                answer.raise_for_status()
                server.append(float(answer.headers["server-timing"].split("dur=")[1]))
            out.append((name, path, server, cpu))
            print(f"{name:30} server p50 {pct(server, .5):6.1f} p95 {pct(server, .95):6.1f} ms · "
                  f"CPU p50 {pct(cpu, .5):6.1f} p95 {pct(cpu, .95):6.1f} ms · load {os.getloadavg()[0]:.1f}",
                  flush=True)
    return out


def write_every(measured: list[tuple[str, str, list[float], list[float]]], args: argparse.Namespace, made: float,
                loads: tuple[float, float]) -> None:
    attempts = (args.assets - 5) * args.days
    lines = [EVERY, "",
             f"`bench/web.py --in-process`: the same generated project ({args.assets:,} assets, {attempts:,} recorded "
             f"asset runs, {args.days} daily runs), every page of the nav and each kind of detail page, "
             f"{args.requests} requests per page one at a time after 3 warm-ups, through the ASGI app in-process "
             "(Starlette's test client over httpx; no server process, no other client), signed in as an admin "
             "with an API token. Server = the `Server-Timing` the console reports (sign-in check, work, HTML); "
             "CPU = the process's CPU time for the request (what the page costs whatever the machine's load). "
             f"Target: server p95 ≤ 100 ms. Generating the project and store took {made:.0f} s.", "",
             "| page | path | server p50 | server p95 | server max | CPU p50 | CPU p95 | p95 ≤ 100 ms |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for name, path, server, cpu in measured:
        ok = "yes" if pct(server, .95) <= 100 else "**no**"
        lines.append(f"| {name} | `{path}` | {pct(server, .5):.1f} ms | {pct(server, .95):.1f} ms | "
                     f"{max(server):.0f} ms | {pct(cpu, .5):.1f} ms | {pct(cpu, .95):.1f} ms | {ok} |")
    lines += ["", f"Machine: {os.cpu_count()} cores shared with other engineers' work; load average "
              f"{loads[0]:.1f} when the run started, {loads[1]:.1f} when it ended ({datetime.now():%Y-%m-%d %H:%M})."]
    write_section(EVERY, "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=1000)
    parser.add_argument("--days", type=int, default=101, help="daily runs of every asset (attempts = assets × days)")
    parser.add_argument("--requests", type=int, default=400, help="requests per page")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--in-process", action="store_true", help="every page, in-process, one request at a time")
    args = parser.parse_args(argv)
    if args.in_process:
        work = Path(tempfile.mkdtemp(prefix="kiban-bench-web-"))
        try:
            began = time.perf_counter()
            asset, token = generate(work / "proj", args.assets, args.days)
            made = time.perf_counter() - began
            before = os.getloadavg()[0]
            measured = every_page(work / "proj", asset, token, args.requests)
            if not args.no_write:
                write_every(measured, args, made, (before, os.getloadavg()[0]))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return 0
    work = Path(tempfile.mkdtemp(prefix="kiban-bench-web-"))
    try:
        began = time.perf_counter()
        asset, token = generate(work / "proj", args.assets, args.days)
        made = time.perf_counter() - began
        port = free_port()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        server = subprocess.Popen([sys.executable, "-m", "kiban", "--project", str(work / "proj"), "serve",
                                   "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            import httpx

            base = f"http://127.0.0.1:{port}"
            for _ in range(600):
                try:
                    if httpx.get(base + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            run_id = httpx.get(base + "/api/v1/runs?limit=1", headers={"Authorization": f"Bearer {token}"},
                               timeout=30).json()["runs"][0]["run_id"]
            pages = [("Today", "/"), ("Asset", f"/assets/{asset}"), ("Runs", "/runs"), ("Run", f"/runs/{run_id}"),
                     ("Lineage", "/graph"), ("Lineage, focused", f"/graph?focus=%2B{asset}%2B&depth=2"),
                     ("Incidents", "/incidents"), ("Search", "/search?q=ordr"), ("Catalog", "/catalog"),
                     ("Catalog, filtered and sorted", "/catalog?layer=mart&sort=-rows"), ("Checks", "/checks"),
                     ("Loads", "/loads"), ("Jobs", "/schedule"), ("Models", "/models"), ("SQL console", "/console"),
                     ("Users", "/users"), ("health (floor)", "/health")]
            results, alone = {}, {}
            for name, path in pages:
                results[name] = asyncio.run(load(base, path, token, args.requests, args.clients))
                alone[name] = asyncio.run(load(base, path, token, max(args.requests // 4, 20), 1))[0]
        finally:
            server.terminate()
            server.wait(10)
        core = raw(work / "proj", asset, 5)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    attempts = (args.assets - 5) * args.days
    lines = [f"{MARKER}", "",
             f"`bench/web.py`: {args.assets:,} assets, {attempts:,} recorded asset runs ({args.days} daily runs), "
             f"{args.clients} concurrent clients (httpx, async) on loopback against `kiban serve` (uvicorn, one "
             f"process), {args.requests} requests per page, signed in with an API token. Server = the "
             "`Server-Timing` the console reports (sign-in check, query, HTML); client = what the client waited "
             "(queueing behind the other 7 included). Core = the page's view function called in-process with "
             "nothing cached (median of 5): what the page costs without HTTP and HTML and without the "
             "console's sharing of the service-level assessment and the runs list. Target: p95 ≤ 100 ms. "
             f"Generating the project and store took {made:.0f} s.", "",
             "| page | server p50 | server p95 | server max | client p50 | client p95 | 1 client: server p95 | "
             "core (no cache) |", "|---|---|---|---|---|---|---|---|"]
    print(f"{'page':16} {'srv p50':>8} {'srv p95':>8} {'srv max':>8} {'cli p50':>8} {'cli p95':>8} {'1c p95':>8} "
          f"{'core':>8}")
    for name, (srv, cli) in results.items():
        c = core.get(name)
        one = pct(alone[name], .95)
        print(f"{name:16} {pct(srv, .5):8.1f} {pct(srv, .95):8.1f} {max(srv):8.1f} {pct(cli, .5):8.1f} "
              f"{pct(cli, .95):8.1f} {one:8.1f} {c if c is not None else float('nan'):8.1f}")
        lines.append(f"| {name} | {pct(srv, .5):.1f} ms | {pct(srv, .95):.1f} ms | {max(srv):.0f} ms | "
                     f"{pct(cli, .5):.1f} ms | {pct(cli, .95):.1f} ms | {one:.1f} ms | "
                     + (f"{c:.1f} ms |" if c else "– |"))
    busy = os.getloadavg()[0]
    lines += ["", f"Machine: {os.cpu_count()} cores, load average {busy:.1f} when the run ended (shared with other "
              "work: one process serves all 8 clients, so under load each answer also waits for the others' CPU; "
              "the 1-client column is the pages' own cost).", "",
              "Today, Asset and Runs share what they read (the service-level assessment, the board, the runs list, "
              "an asset's history and charts) until the store's pulse moves — a run, a check result or an "
              "incident, looked at twice a second for all clients — or a deadline passes; nothing is recomputed on "
              "a timer while nothing happens (computing the assessment holds the interpreter for the core column's "
              "time, and every request in flight would wait behind it). The core column is the same work with "
              "nothing shared. The health row is the floor: what any answer costs on this machine at this load."]
    if not args.no_write:
        write_section(MARKER, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
