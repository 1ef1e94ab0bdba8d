"""Physical-limit baseline: the workload's statements, in DAG order, on one DuckDB connection.

    python bench/baseline.py build|checks STATEMENTS_JSON DB_PATH

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
    elif mode == "checks":
        for c in spec["checks"]:
            row = con.execute(c["sql"]).fetchone()
            failed += bool(row and row[0])
        count = len(spec["checks"])
    else:
        raise SystemExit("mode must be build or checks")
    con.close()
    t2 = time.perf_counter()
    print(f"{mode}: {count} statements, failed_checks={failed}, import+connect={t1 - t0:.3f}s work={t2 - t1:.3f}s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
