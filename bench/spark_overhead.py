#!/usr/bin/env python3
"""kiban's per-model overhead on Spark (issue 18: ≤ 0.3 s a model), fitted over projects of N trivial models.

Each project: one lake table (1,000 rows), N warehouse models ``select id, id + i as v, d from lake.t``, each with
two checks (not_null and unique on ``id``) and ``time_column: d`` — the work kiban does around any model: plan,
build, row count, watermark, checks, publish. Built with one thread, so the fit is the serial cost of a model.

Per size: `kiban run --full-refresh` in-process (the JVM already running, the project already built once), the
median of ``--reps``. The fit is (t(N2) − t(N1)) / (N2 − N1), for kiban and for the raw engine doing the same N
statements (``spark.sql(...).write.parquet``, one each); kiban's overhead a model is the difference. JVM round
trips are counted at Py4J's client (every call from Python into the JVM). CPU = this process's and the JVM's
user+sys (the machine is shared: wall time swings with load).

    .venv/bin/python bench/spark_overhead.py                       # this kiban
    .venv/bin/python bench/spark_overhead.py --before /path/src    # and an older one, alternating, same run

A no-op is measured too: `kiban run` twice in a fresh process each; the second must find nothing to build and
should not start a JVM at all (``started a JVM``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from results import write_section  # bench/ is on sys.path when a script in it runs

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
ROOT = Path(os.environ.get("KIBAN_BENCH_ROOT", "/tmp/kiban-bench")) / "spark-overhead"
MARKER = "## Spark: per-model overhead"
SETTINGS = "master=local[2]"


def write_project(root: Path, models: int, checks: bool = True) -> Path:
    import duckdb

    shutil.rmtree(root, ignore_errors=True)
    (root / "lake" / "t").mkdir(parents=True)
    (root / "models" / "warehouse").mkdir(parents=True)
    duckdb.sql("select i as id, date '2026-01-01' + (i % 300)::int as d from range(1000) r(i)").write_parquet(
        str(root / "lake" / "t" / "part-0.parquet"))
    (root / "kiban.yml").write_text(f"name: n{models}\ntimezone: UTC\nwarehouse: 'spark://{root}/wh?{SETTINGS}'\n")
    for i in range(models):
        (root / "models" / "warehouse" / f"m{i}.sql").write_text(f"select id, id + {i} as v, d from lake.t\n")
        (root / "models" / "warehouse" / f"m{i}.yml").write_text(
            "time_column: d\n" + ("columns:\n  - name: id\n    checks: [not_null, unique]\n" if checks else ""))
    return root


def jvm_cpu(spark: Any) -> float:
    """user+sys seconds of the JVM (Spark local: the driver and its executors are one process)."""
    proc = spark.sparkContext._gateway.proc
    with open(f"/proc/{proc.pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Counter:
    """Py4J calls from Python into the JVM."""

    def __init__(self, spark: Any) -> None:
        self.calls = 0
        client = spark.sparkContext._gateway._gateway_client
        original = client.send_command

        def send(command: Any, *args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return original(command, *args, **kwargs)

        client.send_command = send


COUNTER: dict[str, Counter] = {}


def child(sizes: list[int], reps: int, label: str) -> dict[str, Any]:
    out = {"label": label, "sizes": sizes}
    for variant, checks in (("plain", False), ("checks", True)):
        out[variant] = measure(sizes, reps, f"{label}-{variant}", checks)
    return out


def measure(sizes: list[int], reps: int, label: str, checks: bool) -> dict[str, Any]:
    from kiban.engines.spark import SparkEngine
    from kiban.operate import run as run_project  # what `kiban run` does: the checks' gate, the catalog's listeners
    from kiban.project import load_project
    from kiban.run import RunOptions

    base = ROOT / label
    roots = {n: write_project(base / f"n{n}", n, checks) for n in sizes}
    engine = SparkEngine(f"spark://{roots[sizes[0]]}/wh?{SETTINGS}")  # the JVM, outside the measurement
    spark = engine.spark
    counter = COUNTER.get("c") or COUNTER.setdefault("c", Counter(spark))
    out: dict[str, Any] = {"kiban": {}, "raw": {}}
    for n in sizes:
        first = run_project(load_project(roots[n]), RunOptions(threads=1)).result
        assert first.status == "success", (n, first.status, {k: o.error for k, o in first.outcomes.items()})
    for n in sizes:
        walls, cpus, calls = [], [], []
        for _ in range(reps):
            project = load_project(roots[n])
            c0, t0, j0, r0 = time.process_time(), time.perf_counter(), jvm_cpu(spark), counter.calls
            result = run_project(project, RunOptions(threads=1, full_refresh=True)).result
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0 + jvm_cpu(spark) - j0)
            calls.append(counter.calls - r0)
            assert result.status == "success", result.status
        out["kiban"][n] = {"wall": statistics.median(walls), "cpu": statistics.median(cpus),
                           "calls": statistics.median(calls)}
    for n in sizes:  # the raw engine: the same statements, one parquet write each
        spark.read.parquet(str(roots[n] / "lake" / "t")).createOrReplaceTempView("raw_t")
        walls, cpus = [], []
        for _ in range(reps):
            c0, t0, j0 = time.process_time(), time.perf_counter(), jvm_cpu(spark)
            for i in range(n):
                spark.sql(f"select id, id + {i} as v, d from raw_t").write.mode("overwrite").parquet(
                    str(roots[n] / "raw" / f"m{i}"))
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0 + jvm_cpu(spark) - j0)
        out["raw"][n] = {"wall": statistics.median(walls), "cpu": statistics.median(cpus)}
    return out


def noop(src: Path, label: str) -> dict[str, Any]:
    """`kiban run` then `kiban run` again, each a fresh process; the second's wall time and whether it started Spark."""
    root = write_project(ROOT / label / "noop", 4)
    code = ("import sys, time; t = time.perf_counter(); from kiban.project import load_project; "
            "from kiban.run import RunOptions; from kiban.operate import run; "
            "r = run(load_project(sys.argv[1]), RunOptions()).result; "
            "from kiban.engines import spark; "
            "print(r.status, time.perf_counter() - t, bool(spark._SESSIONS))")
    env = {**os.environ, "PYTHONPATH": str(src)}
    subprocess.run([sys.executable, "-c", code, str(root)], env=env, check=True, capture_output=True, timeout=900)
    again = subprocess.run([sys.executable, "-c", code, str(root)], env=env, check=True, capture_output=True,
                           text=True, timeout=900).stdout.split()
    return {"status": again[0], "wall": float(again[1]), "jvm": again[2] == "True"}


def fit(figures: dict[Any, dict[str, float]], sizes: list[int], what: str) -> float:
    small, big = sizes[0], sizes[-1]
    return (figures[str(big)][what] - figures[str(small)][what]) / (big - small)


def row(label: str, variant: str, m: dict[str, Any], sizes: list[int]) -> str:
    per_wall, per_cpu = fit(m["kiban"], sizes, "wall"), fit(m["kiban"], sizes, "cpu")
    raw_wall, raw_cpu = fit(m["raw"], sizes, "wall"), fit(m["raw"], sizes, "cpu")
    calls = fit(m["kiban"], sizes, "calls")
    big = str(sizes[-1])
    what = "two checks a model" if variant == "checks" else "no checks"
    return (f"| {label} | {what} | {m['kiban'][big]['wall']:.2f} | {m['raw'][big]['wall']:.2f} | {per_wall:.3f} | "
            f"{raw_wall:.3f} | **{per_wall - raw_wall:.3f}** | {per_cpu:.3f} | {raw_cpu:.3f} | "
            f"{per_cpu - raw_cpu:.3f} | {calls:.0f} | {m['noop']['wall']:.1f} s"
            f"{', started a JVM' if m['noop']['jvm'] else ', no JVM'} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="4,24")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--before", type=Path, help="an older kiban's src/ to measure in the same run")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.child:
        print("RESULT " + json.dumps(child(sizes, args.reps, args.child)))
        return 0
    versions = [("after", REPO / "src")] + ([("before", args.before)] if args.before else [])
    measured: dict[str, dict[str, Any]] = {}
    for label, src in reversed(versions):
        env = {**os.environ, "PYTHONPATH": str(src)}
        out = subprocess.run([sys.executable, __file__, "--child", label, "--sizes", args.sizes, "--reps",
                              str(args.reps)], env=env, capture_output=True, text=True, timeout=7200)
        line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
        if not line:
            print(out.stdout[-3000:], out.stderr[-5000:], file=sys.stderr)
            return 1
        measured[label] = json.loads(line[0][len("RESULT "):])
        measured[label]["noop"] = noop(src, label)
        print(label, json.dumps(measured[label]), flush=True)
    load = os.getloadavg()[0]
    rows = []
    for label, _ in versions:
        for variant in ("plain", "checks"):
            rows.append(row(label, variant, {**measured[label][variant], "noop": measured[label]["noop"]}, sizes))
    body = "\n".join([
        f"{MARKER} (issue 18; bench/spark_overhead.py)",
        "",
        f"`bench/spark_overhead.py --sizes {args.sizes} --reps {args.reps}`: projects of N trivial models (one "
        "lake table of 1,000 rows; each model `select id, id + i as v, d from lake.t` with `time_column: d`, and "
        "without or with two checks, not_null and unique), Spark local[2], one thread, the JVM already running; "
        "`kiban run --full-refresh` against the "
        "raw engine writing the same N statements to Parquet, in the same process. Per model = the slope between "
        f"N={sizes[0]} and N={sizes[-1]} (median of {args.reps}); CPU = Python + JVM user+sys. JVM calls = Py4J "
        "calls a model. No-op = `kiban run` with nothing to do, a fresh process.",
        "",
        f"| kiban | models | run N={sizes[-1]} (s) | raw N={sizes[-1]} (s) | wall / model | raw wall / model | "
        "**overhead / model (s)** | CPU / model | raw CPU / model | CPU overhead / model | JVM calls / model | "
        "no-op |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        *rows,
        "",
        f"Machine: 2 cores shared with other engineers, load average {load:.1f} when the run ended.",
    ])
    print(body)
    if not args.no_write:
        write_section(MARKER, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
