#!/usr/bin/env python3
"""Web console, catalog pages: asset columns, column lineage, search, SQL console, recipes, requests and usage
on the example project (examples/shop: 28 published assets, about a million order lines, profiled).

``kiban serve`` runs in its own process on a free loopback port; 4 asynchronous httpx clients request each
page (or post each query) a fixed number of times, signed in with an API token of an analyst. Reported per
page: the server's own time (``Server-Timing``) p50/p95/max and the client's p95; beside it, in the same run,
the catalog call behind the page done in-process with nothing shared (``core``), and for the two queries the
raw engine doing the same work (DuckDB: connect read-only, execute, fetch, close). Target: p95 ≤ 100 ms.

    .venv/bin/python bench/web_catalog.py                      # copies and builds examples/shop (about 80 s)
    .venv/bin/python bench/web_catalog.py --project /tmp/shop  # an already built copy (kiban run + docs profile)
    .venv/bin/python bench/web_catalog.py --requests 40 --no-write

Writes (replaces) the "Web console: catalog pages" section of bench/RESULTS.md unless --no-write.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from results import write_section  # bench/ is on sys.path when a script in it runs
from web import free_port, pct

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
MARKER = "## Web console: catalog pages"
PASSWORD = "bench-password-1"
QUERY = "select store_code, sum(revenue) as revenue, sum(orders) as orders from mart.daily_sales group by all"
PII_QUERY = "select * from warehouse.customers limit 200"


def build(root: Path) -> float:
    """Copy the example, generate its data, run it, profile it; returns the seconds it took."""
    began = time.perf_counter()
    shutil.copytree(REPO / "examples" / "shop", root, ignore=shutil.ignore_patterns("sources_data", ".kiban",
                                                                                      "lake", "*.duckdb"))
    kiban = [sys.executable, "-m", "kiban", "--project", str(root)]
    subprocess.run([sys.executable, "generate.py"], cwd=root, check=True, capture_output=True)
    subprocess.run([*kiban, "run"], check=False, capture_output=True)  # the example's checks may warn
    subprocess.run([*kiban, "docs", "profile"], check=True, capture_output=True)
    return time.perf_counter() - began


def prepare(root: Path) -> str:
    """An analyst with a token, some history and a data request (so history and usage have rows)."""
    from kiban.catalog.requests import RequestDraft, new_request
    from kiban.project import load_project
    from kiban.store import Store
    from kiban.web.accounts import Accounts

    project = load_project(root)
    store = Store(project.state_url)
    try:
        accounts = Accounts(store)
        if accounts.user("bench") is None:
            accounts.add_user("bench", PASSWORD, "analyst")
        new_request(store, project.name, RequestDraft("Sales per hour", "bench", team="stores", purpose="staffing"))
        return accounts.create_token("bench", "bench")
    finally:
        store.close()


async def load(base: str, method: str, path: str, body: Any, token: str, total: int,
               clients: int) -> tuple[list[float], list[float]]:
    """(server ms, client ms) of ``total`` requests by ``clients`` concurrent clients."""
    import httpx

    server: list[float] = []
    client: list[float] = []
    left = total

    async def worker(http: httpx.AsyncClient) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            began = time.perf_counter()
            answer = await http.request(method, path, json=body)
            client.append((time.perf_counter() - began) * 1000)
            answer.raise_for_status()
            server.append(float(answer.headers["server-timing"].split("dur=")[1]))

    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
        (await http.request(method, path, json=body)).raise_for_status()  # warm
        await asyncio.gather(*(worker(http) for _ in range(clients)))
    return server, client


def median_ms(call: Callable[[], Any], reps: int = 5) -> float:
    times = []
    for _ in range(reps):
        began = time.perf_counter()
        call()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def core(root: Path, pii: tuple[str, str]) -> dict[str, float]:
    """The catalog call behind each page, in-process, nothing shared (median of 5)."""
    from kiban.catalog.console import QueryConsole
    from kiban.catalog.dictionary import build_dictionary
    from kiban.catalog.lineage import build_column_graph
    from kiban.catalog.recipes import get_recipe, run_recipe
    from kiban.catalog.search import SearchIndex
    from kiban.catalog.usage import Actor, unused, weekly
    from kiban.catalog.warehouse import published_columns
    from kiban.graph import build_graph
    from kiban.project import load_project
    from kiban.store import Store

    project = load_project(root)
    graph = build_graph(project)
    store = Store(project.state_url)
    who = Actor("bench", "stores")
    try:
        dictionary = build_dictionary(project, graph, store)
        index = SearchIndex(dictionary.assets.values())

        def lineage() -> None:
            known = {k: [c for c, _ in v] for k, v in published_columns(project).items()}
            columns = build_column_graph(graph, known, project.state_dir / "cache" / "lineage.json")
            columns.upstream(pii), columns.downstream(pii)

        def query(sql: str) -> None:
            QueryConsole(project, None, graph).run(sql, who)  # a fresh console: its lineage built again

        recipe = get_recipe(project, "region_revenue")
        return {
            "asset columns": median_ms(lambda: build_dictionary(project, graph, store)),
            "column lineage": median_ms(lineage),
            "search": median_ms(lambda: index.search("売上", 100)),
            "query": median_ms(lambda: query(QUERY)),
            "query with PII": median_ms(lambda: query(PII_QUERY)),
            "recipe run": median_ms(lambda: run_recipe(QueryConsole(project, None, graph), recipe, {}, who,
                                                       record=False)),
            "usage": median_ms(lambda: (weekly(store, project.name), unused(store, project, graph, 90))),
        }
    finally:
        store.close()


def raw_engine(root: Path) -> dict[str, float]:
    """DuckDB alone doing the queries' work: connect read-only, execute, fetch, close."""
    import duckdb

    path = str(root / "kiban.duckdb")

    def run(sql: str) -> None:
        con = duckdb.connect(path, read_only=True)
        try:
            con.execute(sql).fetchmany(1001)
        finally:
            con.close()

    return {"query": median_ms(lambda: run(QUERY)), "query with PII": median_ms(lambda: run(PII_QUERY))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, help="an already built copy of examples/shop")
    parser.add_argument("--requests", type=int, default=200, help="requests per page")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="kiban-bench-web-catalog-"))
    try:
        root = work / "shop"
        if args.project:
            shutil.copytree(args.project, root)
            made = None
        else:
            made = build(root)
        token = prepare(root)
        from kiban.catalog.dictionary import build_dictionary
        from kiban.graph import build_graph
        from kiban.project import load_project

        project = load_project(root)
        docs = build_dictionary(project, build_graph(project))
        asset, column = next((k, c.name.lower()) for k, d in docs.assets.items() if d.layer == "warehouse"
                             for c in d.columns if c.pii and c.pii_from is None)
        pages: list[tuple[str, str, str, Any]] = [
            ("asset columns", "GET", f"/assets/{asset}", None),
            ("column lineage", "GET", f"/assets/{asset}/columns/{column}", None),
            ("search", "GET", "/search?q=売上", None),
            ("console page", "GET", "/console", None),
            ("query", "POST", "/api/v1/query", {"sql": QUERY, "team": "stores"}),
            ("query with PII", "POST", "/api/v1/query", {"sql": PII_QUERY, "team": "stores"}),
            ("recipe form", "GET", "/recipes/region_revenue", None),
            ("recipe run", "POST", "/api/v1/recipes/region_revenue/run", {"params": {}}),
            ("requests", "GET", "/requests", None),
            ("usage", "GET", "/usage", None),
        ]
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "kiban", "--project", str(root), "serve", "--port",
                                   str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            import httpx

            base = f"http://127.0.0.1:{port}"
            for _ in range(600):
                try:
                    if httpx.get(base + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            results, alone = {}, {}
            for name, method, path, body in pages:
                results[name] = asyncio.run(load(base, method, path, body, token, args.requests, args.clients))
                alone[name] = asyncio.run(load(base, method, path, body, token, max(args.requests // 4, 20), 1))[0]
        finally:
            server.terminate()
            server.wait(10)
        inner = core(root, (asset, column))
        engine = raw_engine(root)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = [MARKER, "",
             f"`bench/web_catalog.py`: the example project (examples/shop, profiled), `kiban serve` in its own "
             f"process, {args.clients} concurrent clients (httpx, async) on loopback, {args.requests} requests per "
             "page, an analyst's API token. Server = `Server-Timing` (sign-in check, work, HTML or JSON); client "
             "p95 includes queueing behind the other clients. Core = the catalog call behind the page in-process "
             "with nothing shared (median of 5): the dictionary for the asset page's columns, the column graph "
             "for a column's lineage, a fresh `QueryConsole.run` for a query. Raw engine = DuckDB alone doing "
             "the query (connect read-only, execute, fetch, close). Target: server p95 ≤ 100 ms."
             + (f" Building the example took {made:.0f} s." if made else ""), "",
             "| page | server p50 | server p95 | server max | client p95 | 1 client: server p95 | core (no cache) | "
             "raw engine | server p50 / raw |", "|---|---|---|---|---|---|---|---|---|"]
    print(f"{'page':16} {'srv p50':>8} {'srv p95':>8} {'srv max':>8} {'cli p95':>8} {'1c p95':>8} {'core':>8} "
          f"{'raw':>8}")
    for name, (srv, cli) in results.items():
        c, r, one = inner.get(name), engine.get(name), pct(alone[name], .95)
        print(f"{name:16} {pct(srv, .5):8.1f} {pct(srv, .95):8.1f} {max(srv):8.1f} {pct(cli, .95):8.1f} {one:8.1f} "
              f"{c if c is not None else float('nan'):8.1f} {r if r is not None else float('nan'):8.1f}")
        lines.append(f"| {name} | {pct(srv, .5):.1f} ms | {pct(srv, .95):.1f} ms | {max(srv):.0f} ms | "
                     f"{pct(cli, .95):.1f} ms | {one:.1f} ms | " + (f"{c:.1f} ms" if c is not None else "–") + " | "
                     + (f"{r:.1f} ms | {pct(srv, .5) / r:.1f}× |" if r else "– | – |"))
    lines += ["", f"Machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} when the run ended "
              "(shared with other work: one server process answers all clients, so under load each answer also waits "
              "for the others' CPU; the 1-client column is the pages' own cost).", "",
              "Pages share the dictionary (columns, lineage, PII, profiles) and its search index for 60 s, marked "
              "stale by a run, and keep one query console per loaded project, so a page pays for none of the core "
              "column's work once warm; a query pays the check, the sandboxed read-only connection, the masking "
              "walk and the history insert on top of the engine."]
    if not args.no_write:
        write_section(MARKER, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
