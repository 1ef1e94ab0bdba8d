#!/usr/bin/env python3
"""The lineage page at 5,000 assets: server time and first paint in Debian's chromium.

The project of ``bench/web.py`` (SQL models in chains over 5 lake tables) is generated with 5,000 assets and a
short history; ``kiban serve`` runs in its own process. Measured:

- the server's own time (``Server-Timing``) for the whole graph and for a focused view (``+asset+``, depth 2),
  one client, after the first request (which lays the graph out once per filter);
- in chromium (Playwright, 1440×900, signed in with an API token): navigation start → first contentful paint,
  and → the first frame after the ``load`` event (every box parsed, the view set by the script), the
  conservative figure; then the time a Find takes to mark its matches and a keyboard zoom to apply.

Target: first paint ≤ 1 s at 5,000 assets.

    .venv/bin/python bench/lineage.py                 # 5,000 assets (generating takes 1–2 min)
    .venv/bin/python bench/lineage.py --project DIR   # reuse a project bench/web.py or this script made
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results import write_section  # bench/ is on sys.path when a script in it runs
from web import free_port, generate, pct

MARKER = "## Lineage at 5,000 assets"
CHROMIUM = "/usr/bin/chromium"


def token_for(root: Path) -> str:
    from kiban.project import load_project
    from kiban.store import Store
    from kiban.web.accounts import Accounts

    store = Store(load_project(root).state_url)
    accounts = Accounts(store)
    if accounts.user("bench") is None:
        accounts.add_user("bench", "bench-password-1", "admin")
    token = accounts.create_token("bench", f"lineage-{time.time_ns()}")
    store.close()
    return token


def browser_times(base: str, token: str, path: str, reps: int) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    fcp, ready, find, zoom, nodes, size = [], [], [], [], 0, 0
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1440, "height": 900},
                                      extra_http_headers={"Authorization": f"Bearer {token}"})
        for _ in range(reps):
            page = context.new_page()
            answer = page.goto(base + path, wait_until="load")
            assert answer is not None and answer.status == 200
            size = len(answer.body())
            ready.append(page.evaluate("() => new Promise(r => requestAnimationFrame(() => "
                                       "requestAnimationFrame(() => r(performance.now()))))"))
            fcp.append(page.evaluate(  # the entry may land a moment after `load` on a busy machine: wait for it
                "() => new Promise(r => { const seen = () => { const e = performance.getEntriesByName("
                "'first-contentful-paint')[0]; if (e) r(e.startTime); else setTimeout(seen, 20); }; seen(); })"))
            nodes = page.locator("#lineage a.node").count()
            began = time.perf_counter()
            page.fill("#graph-find", "w01")
            page.wait_for_selector("#lineage a.node.hit")
            find.append((time.perf_counter() - began) * 1000)
            before = page.locator("#lineage").get_attribute("viewBox")
            began = time.perf_counter()
            page.focus("#lineage")
            page.keyboard.press("-")
            while page.locator("#lineage").get_attribute("viewBox") == before:  # the CSP forbids wait_for_function
                time.sleep(0.005)
            zoom.append((time.perf_counter() - began) * 1000)
            page.close()
        browser.close()
    return {"fcp": statistics.median(fcp), "ready": statistics.median(ready), "find": statistics.median(find),
            "zoom": statistics.median(zoom), "nodes": nodes, "kb": size / 1024}


def server_times(base: str, token: str, path: str, reps: int) -> list[float]:
    import httpx

    out = []
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=120) as http:
        http.get(path).raise_for_status()  # the layout of this filter, once
        for _ in range(reps):
            answer = http.get(path)
            answer.raise_for_status()
            out.append(float(answer.headers["server-timing"].split("dur=")[1]))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=5000)
    parser.add_argument("--project", type=Path, help="a project generated before (skips generating)")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="kiban-bench-lineage-"))
    try:
        root = args.project
        if root is None:
            root = work / "proj"
            generate(root, args.assets, 2)
        token = token_for(root)
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "kiban", "--project", str(root), "serve", "--port",
                                   str(port)], env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            import httpx

            base = f"http://127.0.0.1:{port}"
            for _ in range(1200):
                try:
                    if httpx.get(base + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            focus = "/graph?focus=%2Bwarehouse.w0100%2B&depth=2"
            rows = []
            for name, path in (("whole graph", "/graph"), ("focus +warehouse.w0100+, depth 2", focus)):
                srv = server_times(base, token, path, args.reps * 4)
                b = browser_times(base, token, path, args.reps)
                rows.append((name, srv, b))
        finally:
            server.terminate()
            server.wait(10)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = [MARKER, "",
             f"`bench/lineage.py`: the generated project of `bench/web.py` at {args.assets:,} assets, `kiban serve` "
             "in its own process, Debian's chromium 1440×900 through Playwright. Server = `Server-Timing` p50/p95 "
             "(one client, after the first request laid the filter out). First paint = navigation start → first "
             "contentful paint; ready = → the first frame after `load` (every box parsed and the opening view "
             f"set: the conservative figure). Medians of {args.reps} page loads. Target: first paint ≤ 1 s.", "",
             "| view | boxes | HTML | server p50 | server p95 | first paint | ready | Find marks | key zoom |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, srv, b in rows:
        line = (f"| {name} | {b['nodes']:,} | {b['kb']:,.0f} KB | {pct(srv, .5):.1f} ms | {pct(srv, .95):.1f} ms | "
                f"{b['fcp']:.0f} ms | {b['ready']:.0f} ms | {b['find']:.0f} ms | {b['zoom']:.0f} ms |")
        lines.append(line)
        print(line)
    lines += ["", f"Machine: {os.cpu_count()} cores shared with other work, load average {os.getloadavg()[0]:.1f} "
              "at the end; the browser times include Playwright's round trips."]
    if not args.no_write:
        write_section(MARKER, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
