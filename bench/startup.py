#!/usr/bin/env python3
"""kiban's start-up cost: `kiban --help`, a cold 10-model `kiban run` and `kiban check` (4 checks, 90 rows), each a
fresh process, against another kiban (``--before SRC``) and the raw DuckDB script of the same 10 models.

    .venv/bin/python bench/startup.py --before /path/to/main/src --reps 7

Every command of a repetition runs for each kiban in turn (order flipped every repetition); the figure is the median
CPU time (user + sys of that child, ``os.wait4``) — on a loaded machine compare CPU, not wall. The kiban measured is
the one on the caller's PYTHONPATH. Byte-compiled files are written (PYTHONDONTWRITEBYTECODE is dropped), so
neither side pays for compiling. Prints a Markdown table; writes nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from workload import generate  # bench/ is on sys.path when a script in it runs

BENCH = Path(__file__).resolve().parent
ROOT = Path(os.environ.get("KIBAN_BENCH_ROOT", "/tmp/kiban-bench")) / "startup"
KEEP = {"kiban.yml", "lake", "models"}
CHECKS = ("checks:\n  - row_count: {min: 1}\n  - not_null: {column: order_date}\n"
          "  - not_null: {column: revenue}\n  - unique: [order_date]\n")


def clean(project: Path) -> None:
    for p in project.iterdir():
        if p.name not in KEEP:
            shutil.rmtree(p) if p.is_dir() else p.unlink()


def cpu_of(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    start = time.perf_counter()
    child = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"{argv} in {cwd} failed: {child.stderr.read().decode() if child.stderr else ''}")
    return usage.ru_utime + usage.ru_stime, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default="", help="another kiban's src/ folder, measured alongside")
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    py = sys.executable
    base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    kibans = {"kiban": {**base}}
    if args.before:
        kibans["before"] = {**base, "PYTHONPATH": args.before}
    proj = ROOT / "N10"
    generate(10, 10_000, proj, ROOT / "data", ("kiban", "baseline"), kiban_threads=1)
    run_dir, check_dir = proj / "kiban", ROOT / "check"
    shutil.rmtree(check_dir, ignore_errors=True)
    shutil.copytree(run_dir, check_dir, symlinks=True)
    (check_dir / "models" / "mart" / "mart_000.yml").write_text(CHECKS)
    subprocess.run([py, "-m", "kiban", "run"], cwd=check_dir, env=base, check=True, capture_output=True)
    statements, raw_db = proj / "baseline" / "statements.json", proj / "baseline" / "raw.duckdb"
    cases = {"help": (["--help"], run_dir, False), "run": (["run"], run_dir, True),
             "check": (["check"], check_dir, False)}
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
    loads = []
    for rep in range(args.reps):
        order = list(kibans) if rep % 2 == 0 else list(reversed(kibans))
        for case, (argv, cwd, cold) in cases.items():
            for name in order:
                if cold:
                    clean(cwd)
                samples.setdefault((case, name), []).append(cpu_of([py, "-m", "kiban", *argv], cwd, kibans[name]))
        for p in (raw_db, Path(f"{raw_db}.wal")):
            p.unlink(missing_ok=True)
        samples.setdefault(("run", "raw"), []).append(
            cpu_of([py, str(BENCH / "baseline.py"), "build", str(statements), str(raw_db)], proj, base))
        samples.setdefault(("floor", "raw"), []).append(cpu_of([py, "-c", "import duckdb"], proj, base))
        loads.append(os.getloadavg()[0])

    def cpu(case: str, name: str) -> float:
        return statistics.median(c for c, _ in samples[(case, name)])

    print(f"{args.reps} repetitions, load average {min(loads):.1f}–{max(loads):.1f} on {os.cpu_count()} cores\n")
    print("| command | " + " | ".join(f"{k} CPU s" for k in kibans) + " | raw DuckDB script CPU s | ratio |")
    print("|---|" + "---:|" * len(kibans) + "---:|---|")
    for case in cases:
        raw = cpu("run", "raw") if case == "run" else None
        ratio = " → ".join(f"{cpu(case, k) / raw:.2f}×" for k in reversed(kibans)) if raw else ""
        cells = " | ".join(f"{cpu(case, k):.3f}" for k in kibans)
        print(f"| {case} | {cells} | {f'{raw:.3f}' if raw else ''} | {ratio} |")
    print(f"| python -c 'import duckdb' (floor) | | | {cpu('floor', 'raw'):.3f} | |")


if __name__ == "__main__":
    main()
