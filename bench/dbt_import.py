#!/usr/bin/env python3
"""``kiban import dbt`` of a generated 500-model dbt project (target: ≤ 10 s).

The project comes from tests/dbt_generated.py: seeds, staging views, a chain of warehouse models and
marts using vars, env_var, aliases, ``{% for %}``/``{% if %}``/``{% set %}``, project macros with
adapter.dispatch, an incremental model every sixth chain model, tests of every core kind, a custom
generic test and an exposure. Each repetition imports into a new folder (rendering twice, as dbt
parses then compiles, every model a view of the import's DuckDB, tests converted, the project
written, loaded and its graph built before the rename). ``dbt parse`` of the same project is timed
too when a dbt virtualenv is found (``KIBAN_DBT_VENV``, default /tmp/dbtvenv), for scale.

    .venv/bin/python bench/dbt_import.py                 # 500 models, 3 repetitions
    .venv/bin/python bench/dbt_import.py --models 100 --no-write

Writes (replaces) its own section of bench/RESULTS.md unless --no-write.
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests"))
MARKER = "## dbt import"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=500)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    from dbt_generated import generate

    from kiban.dbt.importer import import_dbt

    work = Path(tempfile.mkdtemp(prefix="kiban-bench-dbt-"))
    try:
        gen = generate(work / "dbt", models=args.models, customers=200, orders=2000)
        walls, cpus = [], []
        report = None
        for rep in range(args.reps):
            start, cpu = time.perf_counter(), time.process_time()
            report = import_dbt(gen.root, work / f"kiban{rep}")
            walls.append(time.perf_counter() - start)
            cpus.append(time.process_time() - cpu)
        assert report is not None
        dbt_parse = _dbt_parse(gen.root)
        load = os.getloadavg()[0]
        lines = [
            f"{MARKER} (bench/dbt_import.py; {args.models} models, median of {args.reps})", "",
            f"A generated dbt project of {report.count('model')} models, 3 seeds and {report.tests} tests "
            "(tests/dbt_generated.py) imported by `kiban import dbt` into a new folder: every model rendered twice "
            "(parse, then compile in dependency order; a model becomes a view of the import's DuckDB only when a "
            "macro introspects, which none does here), tests converted to "
            "checks, the project written, loaded and its graph built before the rename. Target: ≤ 10 s.", "",
            "| what | median wall s | min-max | median CPU s |", "|---|---:|---:|---:|",
            f"| kiban import dbt, {report.count('model')} models | {statistics.median(walls):.2f} | "
            f"{min(walls):.2f}-{max(walls):.2f} | {statistics.median(cpus):.2f} |",
        ]
        if dbt_parse is not None:
            lines.append(f"| dbt parse of the same project (for scale; dbt-core, no rendering of SQL) | "
                         f"{dbt_parse:.2f} | - | - |")
        verdict = "PASS" if statistics.median(walls) <= 10 else "FAIL"
        lines += ["", f"Verdict: {verdict} (≤ 10 s). Machine: {os.cpu_count()} cores shared with other work, "
                  f"load average {load:.1f} when the run ended.", ""]
        text = "\n".join(lines)
        print(text)
        if not args.no_write:
            write_section(MARKER, text)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _dbt_parse(root: Path) -> float | None:
    dbt = Path(os.environ.get("KIBAN_DBT_VENV", "/tmp/dbtvenv")) / "bin" / "dbt"
    if not dbt.exists():
        return None
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DO_NOT_TRACK": "1"}
    start = time.perf_counter()
    result = subprocess.run([str(dbt), "parse", "--no-partial-parse", "--profiles-dir", str(root), "--project-dir",
                             str(root)], capture_output=True, text=True, env=env, cwd=root, timeout=1800)
    return time.perf_counter() - start if result.returncode == 0 else None


if __name__ == "__main__":
    main()
