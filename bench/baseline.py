"""Physical-limit baseline: the workload's statements, in DAG order, on one DuckDB connection.

    python bench/baseline.py build|checks|parallel STATEMENTS_JSON DB_PATH

``parallel``: the engine's limit for builds side by side — the statements in dependency order on two cursors of
one connection, one DuckDB thread per query (what kiban does with light builds; bench/RESULTS.md, session 8).

`STATEMENTS_JSON` is written by bench/workload.py (`<project>/baseline/statements.json`).
Only the standard library and `duckdb` are imported, so the process cost is close to the floor.
"""

from __future__ import annotations

import json
import sys
import time


def main(argv: list[str]) -> int:
    t0 = time.perf_counter()
    import duckdb

    mode, statements, db = argv
    with open(statements) as f:
        spec = json.load(f)
    con = duckdb.connect(db)
    t1 = time.perf_counter()
    failed = 0
    if mode == "build":
        for m in spec["models"]:  # already in dependency order
            con.execute(f"create or replace table {m['name']} as\n{m['sql']}")
        count = len(spec["models"])
    elif mode == "parallel":
        count = _parallel(con, spec["models"], workers=2)
    elif mode == "checks":
        for c in spec["checks"]:
            row = con.execute(c["sql"]).fetchone()
            failed += bool(row and row[0])
        count = len(spec["checks"])
    else:
        raise SystemExit("mode must be build, parallel or checks")
    con.close()
    t2 = time.perf_counter()
    print(f"{mode}: {count} statements, failed_checks={failed}, import+connect={t1 - t0:.3f}s work={t2 - t1:.3f}s")
    return 1 if failed else 0


def _parallel(con: object, models: list[dict[str, str]], workers: int) -> int:
    """Build ``models`` on ``workers`` threads, each statement once its inputs are built (names found in its text)."""
    import re
    import threading
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    con.execute("set threads = 1")  # type: ignore[attr-defined]
    sql = {m["name"]: m["sql"] for m in models}
    waiting = {n: {d for d in re.findall(r"\b(\w+)\b", text) if d in sql and d != n} for n, text in sql.items()}
    children: dict[str, list[str]] = {n: [] for n in sql}
    for name, deps in waiting.items():
        for dep in deps:
            children[dep].append(name)
    local = threading.local()

    def build(name: str) -> str:
        if not hasattr(local, "cursor"):
            local.cursor = con.cursor()  # type: ignore[attr-defined]
        local.cursor.execute(f"create or replace table {name} as\n{sql[name]}")
        return name

    ready = [n for n in sql if not waiting[n]]
    running: set = set()
    with ThreadPoolExecutor(workers) as pool:
        while ready or running:
            while ready and len(running) < workers:
                running.add(pool.submit(build, ready.pop(0)))
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                running.discard(future)
                for child in children[future.result()]:
                    waiting[child].discard(future.result())
                    if not waiting[child]:
                        ready.append(child)
    return len(sql)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
