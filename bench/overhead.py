#!/usr/bin/env python3
"""kiban's own overhead: the same SQL through `kiban run` and through a plain DuckDB script, in one run.

Workload: bench/workload.py (the peer benchmark's DAG and data, 10,000 source rows). Each timed command is a
fresh process; kiban and the raw script alternate (order rotated per repetition), and every figure is a
median. Wall time is the process's elapsed time; CPU is user+sys of that one child (``os.wait4``), which is
what to compare on a loaded machine; peak RSS is that child's ``ru_maxrss``.

    .venv/bin/python bench/overhead.py                         # 10 and 500 models, 3 repetitions
    .venv/bin/python bench/overhead.py --big 5000             # also the no-op rerun at 5,000 models
    .venv/bin/python bench/overhead.py --before /path/to/src  # also an older kiban (its src/ on PYTHONPATH)

What is measured:
- raw: bench/baseline.py (the same CREATE OR REPLACE TABLE statements in dependency order, one connection);
- `kiban run` cold (no warehouse, no state, no caches) with one thread, and with kiban's default threads;
- `kiban run` again with nothing changed (no-op), and `kiban status`;
- the interpreter floor `python -c "import duckdb"`.
The kiban measured is the one importable with this interpreter and the caller's PYTHONPATH (``--before``
adds another). Writes its own section of bench/RESULTS.md unless --no-write.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from results import write_section  # bench/ is on sys.path when a script in it runs
from workload import generate

BENCH = Path(__file__).resolve().parent
ROOT = Path(os.environ.get("KIBAN_BENCH_ROOT", "/tmp/kiban-bench")) / "overhead"
MARKER = "## Overhead: kiban against the raw engine"
KIBAN_INPUTS = {"kiban.yml", "lake", "models"}
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


@dataclass
class Sample:
    wall: float
    cpu: float
    rss_mb: float


@dataclass
class Case:
    key: str
    label: str
    argv: list[str]
    cwd: Path
    env: dict[str, str]
    cold: Path | None = None  # a project whose generated files are removed before each run (None: keep)
    raw_db: Path | None = None  # the raw script's database, removed before each run
    drop_stamp: Path | None = None  # a project whose no-op stamp is removed before each run (the full path)
    samples: list[Sample] = field(default_factory=list)


def clean(project: Path) -> None:
    for p in project.iterdir():
        if p.name not in KIBAN_INPUTS:
            shutil.rmtree(p) if p.is_dir() else p.unlink()


def measure(case: Case) -> Sample:
    if case.cold is not None:
        clean(case.cold)
    if case.raw_db is not None:
        for p in (case.raw_db, Path(f"{case.raw_db}.wal")):
            p.unlink(missing_ok=True)
    stamp = case.drop_stamp / ".kiban" / "cache" / "noop.json" if case.drop_stamp is not None else None
    aside = case.drop_stamp.with_name(f"{case.drop_stamp.name}.stamp") if case.drop_stamp is not None else None
    if stamp is not None and aside is not None and stamp.exists():  # kept outside the project: not an input
        stamp.rename(aside)
    start = time.perf_counter()
    proc = subprocess.Popen(case.argv, cwd=case.cwd, env=case.env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if stamp is not None and aside is not None and aside.exists():  # the next case finds the stamp as it was
        if stamp.exists():  # the full no-op wrote a new one
            aside.unlink()
        else:
            aside.rename(stamp)
    if proc.returncode != 0:
        raise SystemExit(f"{case.label} failed ({proc.returncode}):\n{err[-2000:]}")
    return Sample(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


def kiban_env(src: str | None) -> dict[str, str]:
    env = dict(ENV)
    if src:
        env["PYTHONPATH"] = src
    return env


def build_cases(args: argparse.Namespace) -> tuple[list[Case], list[Case]]:
    py = sys.executable
    builds = [("kiban", os.environ.get("PYTHONPATH"))]
    if args.before:
        builds.append(("kiban-before", args.before))
    data = ROOT / "data"
    cases: list[Case] = [Case("floor", "python -c 'import duckdb' (floor)", [py, "-c", "import duckdb"], ROOT, ENV)]
    setup: list[Case] = []  # untimed: the first build a no-op rerun needs
    for n in (10, 500):
        proj = ROOT / f"N{n}"
        generate(n, 10_000, proj, data, ("kiban", "baseline"), kiban_threads=1)
        statements = proj / "baseline" / "statements.json"
        db = proj / "baseline" / "raw.duckdb"
        cases.append(Case(f"raw{n}", f"{n} models: raw DuckDB script", [py, str(BENCH / "baseline.py"), "build",
                                                                          str(statements), str(db)],
                          proj, ENV, raw_db=db))
        for name, src in builds:
            env = kiban_env(src)
            cases.append(Case(f"{name}{n}cold", f"{n} models: {name} run, cold, 1 thread",
                              [py, "-m", "kiban", "run"], proj / "kiban", env, cold=proj / "kiban"))
            if n == 500:
                threads = ROOT / f"N{n}-threads"
                if not threads.exists():
                    shutil.copytree(proj / "kiban", threads, symlinks=True)
                    text = (threads / "kiban.yml").read_text().replace("threads: 1", "")
                    (threads / "kiban.yml").write_text(text)
                cases.append(Case(f"{name}{n}threads", f"{n} models: {name} run, cold, default threads",
                                  [py, "-m", "kiban", "run"], threads, env, cold=threads))
                # the no-op and status read a separate, already built copy
                noop = ROOT / f"N{n}-noop-{name}"
                built = args.keep_built and (noop / ".kiban").exists()
                if not built:
                    shutil.rmtree(noop, ignore_errors=True)
                    shutil.copytree(proj / "kiban", noop, symlinks=True)
                _noop_cases(name, n, noop, env, setup, cases, built)
    if args.big:
        n = args.big
        proj = ROOT / f"N{n}"
        generate(n, 10_000, proj, data, ("kiban",), kiban_threads=0)
        for name, src in builds:
            noop = ROOT / f"N{n}-noop-{name}"
            built = args.keep_built and (noop / ".kiban").exists()
            if not built:
                shutil.rmtree(noop, ignore_errors=True)
                shutil.copytree(proj / "kiban", noop, symlinks=True)
            env = kiban_env(src)
            _noop_cases(name, n, noop, env, setup, cases, built)
    return setup, cases


def _noop_cases(name: str, n: int, noop: Path, env: dict[str, str], setup: list[Case], cases: list[Case],
                built: bool = False) -> None:
    """A built copy (untimed: the build, then the first no-op, which writes the stamp); timed: the no-op and
    `kiban status` answered from the stamp, and both again the full way (the stamp removed before each)."""
    py = sys.executable
    if not built:
        setup.append(Case(f"{name}{n}setup", "setup", [py, "-m", "kiban", "run"], noop, env))
    setup.append(Case(f"{name}{n}stamp", "setup", [py, "-m", "kiban", "run"], noop, env))
    cases.append(Case(f"{name}{n}noop", f"{n} models: {name} run, nothing changed",
                      [py, "-m", "kiban", "run"], noop, env))
    cases.append(Case(f"{name}{n}status", f"{n} models: {name} status",
                      [py, "-m", "kiban", "status"], noop, env))
    cases.append(Case(f"{name}{n}noopfull", f"{n} models: {name} run, nothing changed, no stamp (full path)",
                      [py, "-m", "kiban", "run"], noop, env, drop_stamp=noop))
    cases.append(Case(f"{name}{n}statusfull", f"{n} models: {name} status, no stamp (full path)",
                      [py, "-m", "kiban", "status"], noop, env, drop_stamp=noop))


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(cases: list[Case], args: argparse.Namespace, started: str, loads: list[float]) -> str:
    by = {c.key: c for c in cases}

    def m(key: str, what: str) -> float:
        c = by.get(key)
        return med([getattr(s, what) for s in c.samples]) if c else float("nan")

    lines = [MARKER, "",
             f"`bench/overhead.py --reps {args.reps}{f' --big {args.big}' if args.big else ''}"
             f"{' --before …' if args.before else ''}`, {started}. Fresh processes, kiban and the raw DuckDB "
             "script interleaved (order rotated per repetition), medians. **The machine was loaded** (2 cores "
             f"shared with other work; load average {min(loads):.1f}–{max(loads):.1f} during the run), so wall "
             "times are inflated and noisy: compare CPU (user+sys of the one process, `os.wait4`) first. "
             "Workload: bench/workload.py, 10,000 source rows.", "",
             "| what | median wall s | median CPU s | peak RSS MB | runs |", "|---|---:|---:|---:|---:|"]
    for c in cases:
        lines.append(f"| {c.label} | {m(c.key, 'wall'):.3f} | {m(c.key, 'cpu'):.3f} | {m(c.key, 'rss_mb'):.0f} | "
                     f"{len(c.samples)} |")
    lines += ["", "| target | limit | wall | CPU | verdict (wall / CPU) |", "|---|---|---:|---:|---|"]

    def ratio(target: str, a: str, b: str, limit: float) -> None:
        rw, rc = m(a, "wall") / m(b, "wall"), m(a, "cpu") / m(b, "cpu")
        verdict = f"{'PASS' if rw <= limit else 'FAIL'} / {'PASS' if rc <= limit else 'FAIL'}"
        lines.append(f"| {target} | ≤ {limit}× | {rw:.2f}× | {rc:.2f}× | {verdict} |")

    def absolute(target: str, a: str, limit: float) -> None:
        w, c = m(a, "wall"), m(a, "cpu")
        lines.append(f"| {target} | ≤ {limit} s | {w:.3f} s | {c:.3f} s | "
                     f"{'PASS' if w <= limit else 'FAIL'} / {'PASS' if c <= limit else 'FAIL'} |")

    for name in ("kiban", "kiban-before"):
        if f"{name}10cold" not in by:
            continue
        ratio(f"{name}: 10 models cold ÷ raw", f"{name}10cold", "raw10", 2.0)
        ratio(f"{name}: 500 models cold, 1 thread ÷ raw", f"{name}500cold", "raw500", 1.15)
        ratio(f"{name}: 500 models cold, default threads ÷ raw serial", f"{name}500threads", "raw500", 0.8)
        absolute(f"{name}: no-op rerun, 500 models", f"{name}500noop", 0.25)
        absolute(f"{name}: `kiban status`, 500 models", f"{name}500status", 0.25)
        if args.big:
            absolute(f"{name}: no-op rerun, {args.big} models", f"{name}{args.big}noop", 0.6)
    lines += ["", "Fixed and per-model cost (CPU, from the 10- and 500-model cold runs; same run):", ""]
    for name in ("raw", "kiban", "kiban-before"):
        a = f"{name}10" if name == "raw" else f"{name}10cold"
        b = f"{name}500" if name == "raw" else f"{name}500cold"
        if a in by and b in by:
            per = (m(b, "cpu") - m(a, "cpu")) / 490
            fixed = m(a, "cpu") - 10 * per
            lines.append(f"- {name}: {1000 * per:.2f} CPU-ms per model + {fixed:.2f} CPU-s fixed")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--big", type=int, default=0, help="also the no-op rerun and status at this many models")
    parser.add_argument("--before", default="", help="another kiban's src/ folder, measured alongside")
    parser.add_argument("--keep-built", action="store_true",
                        help="reuse the built no-op copies of an earlier run (no rebuild: their stamp is made again)")
    parser.add_argument("--only", default="", help="comma-separated case keys (default: all)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    ROOT.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    setup, cases = build_cases(args)
    if args.only:
        keep = set(args.only.split(","))
        cases = [c for c in cases if c.key in keep or c.key == "floor"]
    for case in setup:
        if any(c.cwd == case.cwd for c in cases):
            print(f"setup: {case.cwd.name}", flush=True)
            measure(case)
    loads = [os.getloadavg()[0]]
    for rep in range(args.reps):
        order = cases[rep % len(cases):] + cases[:rep % len(cases)]
        for case in order:
            sample = measure(case)
            case.samples.append(sample)
            loads.append(os.getloadavg()[0])
            print(f"rep {rep + 1} {case.key:24s} wall {sample.wall:7.3f} cpu {sample.cpu:7.3f} "
                  f"rss {sample.rss_mb:5.0f}", flush=True)
    text = report(cases, args, started, loads)
    print(text)
    if not args.no_write:
        write_section(MARKER, text)


if __name__ == "__main__":
    main()
