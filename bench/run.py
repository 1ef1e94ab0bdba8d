"""kiban benchmark: kiban, dbt, SQLMesh and a plain-DuckDB baseline on the same workload, in one run.

Every operation runs as its own process under GNU `/usr/bin/time` and `timeout` (wall, user+sys CPU,
peak RSS), repeated `--reps` times with the tool order rotated per repetition; the tables report
medians over successful repetitions. A failing tool is recorded as failed and the run carries on.

    bash bench/setup_peers.sh && .venv/bin/python bench/run.py          # full matrix (long)
    .venv/bin/python bench/run.py --quick                              # 10x10000,100x10000, 1 rep
    .venv/bin/python bench/run.py --configs 10x10000 --reps 1 --tools kiban,baseline
    .venv/bin/python bench/run.py --report-only                        # rebuild RESULTS.md

Generated data, projects, logs: ${KIBAN_BENCH_ROOT:-/tmp/kiban-bench}. Results: bench/RESULTS.md and
bench/results-raw.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from results import keep_others  # bench/ is on sys.path when a script in it runs
from workload import KIBAN_WAREHOUSE, generate

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
ROOT = Path(os.environ.get("KIBAN_BENCH_ROOT", "/tmp/kiban-bench"))
VENVS = ROOT / "venvs"
KIBAN_BIN = REPO / ".venv" / "bin"
KIBAN_CLI = Path(os.environ.get("KIBAN_CLI", KIBAN_BIN / "kiban"))  # override: test a build elsewhere
RESULTS_MD = BENCH / "RESULTS.md"
OWN_SECTIONS = ("## Machine", "## Versions", "## Targets", "## Medians", "## Same outputs", "## Failures", "## Notes")
RESULTS_RAW = BENCH / "results-raw.json"
TIME = "/usr/bin/time"

DEFAULT_CONFIGS = "10x10000,100x10000,500x10000,10x10000000"
QUICK_CONFIGS = "10x10000,100x10000"
ALL_TOOLS = ("kiban", "dbt", "sqlmesh", "baseline")
LARGE_ROWS = 1_000_000  # at or above: cold runs of kiban, baseline and dbt only (time budget)

# Bytecode writing stays on (a caller's PYTHONDONTWRITEBYTECODE would make every kiban start recompile).
ENV = {
    **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
    "DO_NOT_TRACK": "1",
    "SQLMESH__DISABLE_ANONYMIZED_ANALYTICS": "1",
}


# --------------------------------------------------------------------------- data types
@dataclass
class Op:
    tool: str
    key: str  # stable id used by the targets, e.g. "run-cold"
    label: str
    argv: list[str]
    cwd: Path
    large: bool = False  # also run for R >= LARGE_ROWS


@dataclass
class Suite:
    tool: str
    reset: Callable[[], None]
    ops: list[Op]


@dataclass
class Row:
    tool: str
    key: str
    label: str
    n: int  # 0 for startup rows
    rows: int
    rep: int
    wall_s: float = math.nan
    cpu_s: float = math.nan
    rss_mb: float = math.nan
    rc: int = 0
    other_cpu: float = 0.0
    error: str = ""


@dataclass
class Run:
    run_id: str
    meta: dict[str, object]
    rows: list[Row] = field(default_factory=list)
    verify: dict[str, dict[str, object]] = field(default_factory=dict)


# --------------------------------------------------------------------------- paths / tools
def venv_bin(tool: str) -> Path:
    return KIBAN_BIN if tool in ("kiban", "baseline") else VENVS / tool / "bin"


def rm(*paths: Path) -> None:
    for p in paths:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists() or p.is_symlink():
            p.unlink()


def db_files(path: Path) -> list[Path]:
    return [path, path.with_name(path.name + ".wal")]


KIBAN_INPUTS = {"kiban.yml", "lake", "models"}


def generated(project: Path) -> list[Path]:
    """Everything kiban wrote into its project (warehouse, .kiban state, caches): removed for a cold run."""
    return [p for p in project.iterdir() if p.name not in KIBAN_INPUTS]


def suites(proj: Path) -> list[Suite]:
    k, d, s, b = (proj / t for t in ALL_TOOLS)
    kiban = [str(KIBAN_CLI), "run"]  # cwd is the project folder (kiban finds kiban.yml from there)
    dbt = [str(venv_bin("dbt") / "dbt"), "run", "--project-dir", str(d), "--profiles-dir", str(d)]
    plan = [str(venv_bin("sqlmesh") / "sqlmesh"), "-p", str(s), "plan", "--auto-apply", "--no-prompts"]
    base = [str(venv_bin("baseline") / "python"), str(BENCH / "baseline.py"), "build"]
    base += [str(b / "statements.json"), str(b / "bench.duckdb")]
    return [
        Suite(
            "kiban",
            lambda: rm(*generated(k)),
            [
                Op("kiban", "run-cold", "kiban run (cold: new warehouse + state)", kiban, k, True),
                Op("kiban", "run-2nd", "kiban run (2nd: nothing changed)", kiban, k),
            ],
        ),
        Suite(
            "dbt",
            lambda: rm(*db_files(d / "bench.duckdb"), d / "target", d / "logs"),
            [
                Op("dbt", "run-cold", "dbt run (cold: new db, no parse cache)", dbt, d, True),
                Op("dbt", "run-2nd", "dbt run (2nd: rebuilds all)", dbt, d),
            ],
        ),
        Suite(
            "sqlmesh",
            lambda: rm(*db_files(s / "bench.duckdb"), s / ".cache", s / "logs"),
            [
                Op("sqlmesh", "plan-cold", "sqlmesh plan --auto-apply (cold, incl. audits)", plan, s),
                Op("sqlmesh", "plan-2nd", "sqlmesh plan --auto-apply (2nd: no changes)", plan, s),
            ],
        ),
        Suite(
            "baseline",
            lambda: rm(*db_files(b / "bench.duckdb")),
            [
                Op("baseline", "build-cold", "baseline build (same SQL, one process, new db)", base, b, True),
            ],
        ),
    ]


def startup_ops(tools: list[str]) -> list[Op]:
    py = str(venv_bin("baseline") / "python")
    ops = [
        Op("python", "startup", "python -c pass (interpreter floor)", [py, "-c", "pass"], ROOT),
        Op("baseline", "startup", "python -c 'import duckdb'", [py, "-c", "import duckdb"], ROOT),
        Op("kiban", "help", "kiban --help", [str(KIBAN_CLI), "--help"], ROOT),
        Op("dbt", "help", "dbt --help", [str(venv_bin("dbt") / "dbt"), "--help"], ROOT),
        Op("sqlmesh", "help", "sqlmesh --help", [str(venv_bin("sqlmesh") / "sqlmesh"), "--help"], ROOT),
    ]
    return [o for o in ops if o.tool in tools or o.tool == "python"]


# --------------------------------------------------------------------------- measuring
def cpu_jiffies() -> tuple[int, int]:
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:9]]
    return sum(vals) - vals[3] - vals[4], sum(vals)


def wait_quiet(max_wait: float, threshold: float = 0.5) -> None:
    """Wait up to max_wait s until other processes use less than `threshold` of all cores."""
    waited = 0.0
    while waited < max_wait:
        b0, t0 = cpu_jiffies()
        time.sleep(0.5)
        b1, t1 = cpu_jiffies()
        if (b1 - b0) / max(1, t1 - t0) < threshold:
            return
        waited += 0.5


def last_lines(text: str, count: int = 4) -> list[str]:
    """Last meaningful lines, newest first (traceback caret markers dropped)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().strip("^~ ")]
    return lines[::-1][:count]


def tail(path: Path) -> str:
    return " | ".join(last_lines(path.read_text(errors="replace")[-4000:]))


def parse_time(path: Path) -> tuple[float, float]:
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    try:
        _wall, user, system, rss_kb = lines[-1].split()
        return float(user) + float(system), int(rss_kb) / 1024
    except (IndexError, ValueError):
        return math.nan, math.nan


def measure(op: Op, row: Row, log: Path, timeout: int, max_wait: float) -> Row:
    if not os.access(op.argv[0], os.X_OK):
        row.rc, row.error = 127, f"executable not found: {op.argv[0]}"
        return row
    wait_quiet(max_wait)
    fd, tf = tempfile.mkstemp(prefix="time-", dir=ROOT)
    os.close(fd)
    argv = [TIME, "-f", "%e %U %S %M", "-o", tf, "timeout", "-k", "10", str(timeout), *op.argv]
    log.parent.mkdir(parents=True, exist_ok=True)
    clk = os.sysconf("SC_CLK_TCK")
    b0, j0 = cpu_jiffies()
    t0 = time.perf_counter()
    with open(log, "w") as out:
        out.write(f"$ {' '.join(op.argv)}\n# cwd={op.cwd}\n")
        out.flush()
        rc = subprocess.call(argv, cwd=op.cwd, env=ENV, stdout=out, stderr=subprocess.STDOUT)
    row.wall_s = round(time.perf_counter() - t0, 3)
    b1, j1 = cpu_jiffies()
    cpu, rss = parse_time(Path(tf))
    os.unlink(tf)
    row.cpu_s, row.rss_mb, row.rc = round(cpu, 2), round(rss, 1), rc
    own = 0.0 if math.isnan(cpu) else cpu * clk
    row.other_cpu = round(max(0.0, (b1 - b0 - own) / max(1, j1 - j0)), 2)
    if rc != 0:
        row.error = ("TIMEOUT " if rc in (124, 137) else f"rc={rc} ") + tail(log)
    return row


def emit(run: Run, row: Row) -> None:
    run.rows.append(row)
    save_raw(run)
    where = f"N={row.n} R={row.rows}" if row.n else "startup"
    status = "" if row.rc == 0 else f"  FAILED {row.error[:240]}"
    print(
        f"[{time.strftime('%H:%M:%S')}] {row.tool:<8} {where:<18} rep={row.rep} {row.label:<50} "
        f"wall={row.wall_s:7.2f}s cpu={row.cpu_s:7.2f}s rss={row.rss_mb:7.1f}MB "
        f"other={row.other_cpu:.2f}{status}",
        flush=True,
    )


# --------------------------------------------------------------------------- running
def run_startup(run: Run, tools: list[str], reps: int, args: argparse.Namespace) -> None:
    logdir = ROOT / "logs" / run.run_id / "startup"
    for op in startup_ops(tools):
        measure(op, Row(op.tool, op.key, op.label, 0, 0, 0), logdir / "warmup.log", 120, 0)  # page cache
        for rep in range(1, reps + 1):
            row = Row(op.tool, op.key, op.label, 0, 0, rep)
            emit(run, measure(op, row, logdir / f"{op.tool}-{op.key}-{rep}.log", 120, args.max_wait))


def rotated(items: list[Suite], rep: int) -> list[Suite]:
    k = (rep - 1) % max(1, len(items))
    return items[k:] + items[:k]


def run_suite(run: Run, suite: Suite, n: int, r: int, rep: int, args: argparse.Namespace) -> None:
    suite.reset()
    logdir = ROOT / "logs" / run.run_id / f"N{n}_R{r}"
    failed_first = False
    for i, op in enumerate(suite.ops):
        if r >= LARGE_ROWS and not op.large:
            continue
        row = Row(op.tool, op.key, op.label, n, r, rep)
        if failed_first:
            row.rc, row.error = -1, "skipped: the cold run failed"
        else:
            row = measure(op, row, logdir / f"{op.tool}-{op.key}-{rep}.log", args.timeout, args.max_wait)
            failed_first = i == 0 and row.rc != 0
        emit(run, row)


def run_config(run: Run, n: int, r: int, tools: list[str], args: argparse.Namespace) -> None:
    proj = ROOT / "proj" / f"N{n}_R{r}"
    t0 = time.perf_counter()
    generate(n, r, proj, ROOT / "data", tuple(ALL_TOOLS), kiban_threads=args.kiban_threads or None)
    print(f"generated {proj} in {time.perf_counter() - t0:.1f}s", flush=True)
    chosen = [s for s in suites(proj) if s.tool in tools]
    if r >= LARGE_ROWS:
        chosen = [s for s in chosen if any(o.large for o in s.ops)]
    for rep in range(1, args.reps + 1):
        for suite in rotated(chosen, rep):
            run_suite(run, suite, n, r, rep, args)
    run.verify[f"{n}x{r}"] = verify(proj, [s.tool for s in chosen])
    save_raw(run)


# --------------------------------------------------------------------------- verification
PROBE = r"""
import duckdb, json, sys
db, schema, marts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
con = duckdb.connect(db, read_only=True)
q = "select count(*), sum(revenue), sum(n_orders) from {}.{}"
r = [con.execute(q.format(schema, m)).fetchone() for m in marts]
print(json.dumps([len(marts), sum(x[0] for x in r), sum(x[1] for x in r), sum(x[2] for x in r)]))
"""

# tool -> (db file relative to the project, schema holding the marts)
OUTPUTS = {
    "kiban": (f"kiban/{KIBAN_WAREHOUSE}", "mart"),
    "dbt": ("dbt/bench.duckdb", "main"),
    "sqlmesh": ("sqlmesh/bench.duckdb", "bench.bench"),
    "baseline": ("baseline/bench.duckdb", "main"),
}


def mart_totals(proj: Path, tool: str, marts: list[str]) -> list[float] | str:
    rel, schema = OUTPUTS[tool]
    db = proj / rel
    if not db.exists():
        return "no database"
    argv = [str(venv_bin(tool) / "python"), "-c", PROBE, str(db), schema, json.dumps(marts)]
    out = subprocess.run(argv, capture_output=True, text=True, env=ENV)
    if out.returncode != 0:
        lines = last_lines(out.stderr, 1)
        return "error: " + (lines[0] if lines else f"rc={out.returncode}")
    return [float(x) for x in json.loads(out.stdout)]


def same(a: list[float], b: list[float]) -> bool:
    return all(math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-6) for x, y in zip(a, b, strict=True))


def verify(proj: Path, tools: list[str]) -> dict[str, object]:
    """Sum over all marts (mart count, rows, revenue, n_orders) per tool; all must agree."""
    marts = json.loads((proj / "spec.json").read_text())["models"]
    names = [m["name"] for m in marts if m["layer"] == "mart"]
    totals = {t: mart_totals(proj, t, names) for t in tools}
    good = [v for v in totals.values() if isinstance(v, list)]
    agree = bool(good) and all(same(good[0], v) for v in good)
    missing = [t for t, v in totals.items() if isinstance(v, str)]
    status = "INCOMPLETE" if agree and missing else "IDENTICAL" if agree else "DIFFERENT"
    for tool, v in totals.items():
        shown = v if isinstance(v, str) else f"marts={v[0]:.0f} rows={v[1]:.0f} revenue={v[2]:.2f} n_orders={v[3]:.0f}"
        print(f"  verify {proj.name} {tool:<8} {shown}")
    note = f" ({len(good)} tools agree; no output from {', '.join(missing)})" if missing else ""
    print(f"  verify {proj.name}: {status}{note}", flush=True)
    return {"status": status, "missing": missing, "totals": totals}


# --------------------------------------------------------------------------- metadata
VERSION_PKGS = {
    "kiban": ["kiban", "duckdb", "sqlglot"],
    "dbt": ["dbt-core", "dbt-duckdb", "dbt-adapters", "duckdb"],
    "sqlmesh": ["sqlmesh", "sqlglot", "duckdb"],
    "baseline": ["duckdb"],
}
VERSION_CODE = (
    "import importlib.metadata as m, json, sys, platform\n"
    "r = {'python': platform.python_version()}\n"
    "for p in sys.argv[1:]:\n"
    "    try: r[p] = m.version(p)\n"
    "    except Exception: r[p] = 'not installed'\n"
    "print(json.dumps(r))"
)


def versions() -> dict[str, str]:
    out = {}
    for tool, pkgs in VERSION_PKGS.items():
        py = venv_bin(tool) / "python"
        if not py.exists():
            out[tool] = f"not installed ({py.parent.parent})"
            continue
        try:
            res = json.loads(subprocess.check_output([str(py), "-c", VERSION_CODE, *pkgs], text=True))
            out[tool] = ", ".join(f"{k} {v}" for k, v in res.items())
        except (subprocess.CalledProcessError, json.JSONDecodeError) as e:
            out[tool] = f"error: {e}"
    return out


def machine() -> dict[str, str]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "nproc": str(os.cpu_count()),
        "ram": f"{ram:.1f} GiB",
        "cpu": cpu,
        "os": f"{platform.system()} {platform.release()}",
        "python (runner)": platform.python_version(),
    }


# --------------------------------------------------------------------------- reporting
Key = tuple[str, str, int, int]  # tool, op key, N, R


@dataclass
class Cell:
    label: str
    ok: list[Row]
    total: int

    def med(self, attr: str) -> float:
        vals = [getattr(r, attr) for r in self.ok if not math.isnan(getattr(r, attr))]
        return statistics.median(vals) if vals else math.nan


def cells(rows: list[Row]) -> dict[Key, Cell]:
    out: dict[Key, Cell] = {}
    for r in rows:
        c = out.setdefault((r.tool, r.key, r.n, r.rows), Cell(r.label, [], 0))
        c.total += 1
        if r.rc == 0:
            c.ok.append(r)
    return out


def fmt(x: float, digits: int = 2) -> str:
    return "-" if math.isnan(x) else f"{x:.{digits}f}"


def table_rows(run: Run) -> list[list[str]]:
    groups = cells(run.rows)
    tool_order = {t: i for i, t in enumerate(("python", *ALL_TOOLS))}
    keys = sorted(groups, key=lambda k: (k[3], k[2], tool_order.get(k[0], 9)))
    out = []
    for k in keys:
        c = groups[k]
        walls = [r.wall_s for r in c.ok]
        spread = f"{min(walls):.2f}-{max(walls):.2f}" if walls else "-"
        wall = fmt(c.med("wall_s")) if c.ok else "FAILED"
        other = statistics.median(r.other_cpu for r in c.ok) if c.ok else math.nan
        out.append(
            [
                str(k[2]) if k[2] else "-",
                f"{k[3]:,}" if k[3] else "-",
                k[0],
                c.label,
                wall,
                spread,
                fmt(c.med("cpu_s")),
                fmt(c.med("rss_mb"), 0),
                f"{len(c.ok)}/{c.total}",
                fmt(other),
            ]
        )
    return out


HEADERS = [
    "N",
    "R",
    "tool",
    "operation",
    "median wall s",
    "wall min-max",
    "median CPU s",
    "peak RSS MB",
    "ok/reps",
    "other load",
]


@dataclass
class Target:
    label: str
    num: Key
    den: Key | None  # None: absolute value of num
    metric: str  # wall_s | rss_mb
    limit: float


TARGETS = [
    Target(
        "500 models, first run: kiban / dbt (wall)",
        ("kiban", "run-cold", 500, 10_000),
        ("dbt", "run-cold", 500, 10_000),
        "wall_s",
        0.2,
    ),
    Target(
        "500 models, first run: kiban / baseline (wall)",
        ("kiban", "run-cold", 500, 10_000),
        ("baseline", "build-cold", 500, 10_000),
        "wall_s",
        1.5,
    ),
    Target("500 models, second run: kiban absolute (s)", ("kiban", "run-2nd", 500, 10_000), None, "wall_s", 1.0),
    Target(
        "500 models, second run: kiban / dbt 2nd (wall)",
        ("kiban", "run-2nd", 500, 10_000),
        ("dbt", "run-2nd", 500, 10_000),
        "wall_s",
        0.05,
    ),
    Target(
        "10 models x 10M rows, first run: kiban / baseline (wall)",
        ("kiban", "run-cold", 10, 10_000_000),
        ("baseline", "build-cold", 10, 10_000_000),
        "wall_s",
        1.1,
    ),
    Target(
        "10 models x 10M rows, first run: kiban / baseline (peak RSS)",
        ("kiban", "run-cold", 10, 10_000_000),
        ("baseline", "build-cold", 10, 10_000_000),
        "rss_mb",
        1.2,
    ),
    Target("`kiban --help` startup (s)", ("kiban", "help", 0, 0), None, "wall_s", 0.3),
]


def target_value(t: Target, groups: dict[Key, Cell], metric: str) -> float:
    num = groups.get(t.num)
    if num is None or not num.ok:
        return math.nan
    if t.den is None:
        return num.med(metric)
    den = groups.get(t.den)
    if den is None or not den.ok:
        return math.nan
    return num.med(metric) / den.med(metric)


def missing_verdict(t: Target, groups: dict[Key, Cell]) -> str:
    for key in (t.num, t.den):
        if key is None:
            continue
        if key not in groups:
            return "n/a (not run)"
        if not groups[key].ok:
            return f"FAIL ({key[0]} failed)" if key[0] == "kiban" else f"n/a ({key[0]} failed)"
    return "n/a"


def target_rows(run: Run) -> list[list[str]]:
    groups = cells(run.rows)
    out = []
    for t in TARGETS:
        value = target_value(t, groups, t.metric)
        cpu = target_value(t, groups, "cpu_s") if t.metric == "wall_s" else math.nan
        verdict = missing_verdict(t, groups) if math.isnan(value) else "PASS" if value <= t.limit else "FAIL"
        out.append([t.label, f"≤ {t.limit:g}", fmt(value, 3), fmt(cpu, 3), verdict])
    return out


def md_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)] + [
        "| " + " | ".join(r) + " |" for r in rows
    ]


def failures(run: Run) -> list[str]:
    return [
        f"- {r.tool} {f'N={r.n} R={r.rows}' if r.n else 'startup'} rep {r.rep} `{r.label}`: {r.error[:500]}"
        for r in run.rows
        if r.rc != 0
    ]


def describe_totals(t: list[float] | str) -> str:
    if isinstance(t, str):
        return t
    return f"{t[0]:.0f} marts, {t[1]:.0f} rows, revenue {t[2]:.2f}, n_orders {t[3]:.0f}"


def verify_lines(run: Run) -> list[str]:
    lines = []
    for cfg, v in run.verify.items():
        totals = v["totals"]
        assert isinstance(totals, dict)
        if v["status"] == "IDENTICAL":
            first = next(iter(totals.values()))
            lines.append(f"- {cfg}: **IDENTICAL** ({', '.join(totals)}): {describe_totals(first)}")
            continue
        parts = [f"{tool}: {describe_totals(t)}" for tool, t in totals.items()]
        lines.append(f"- {cfg}: **{v['status']}**: " + "; ".join(parts))
    return lines


NOTES = [
    "Workload (bench/workload.py, seed 42): orders Parquet with R rows; N models = ceil(0.2N) staging, "
    "ceil(0.1N) marts, the rest intermediate (enrich / 2-3-way join / customer-day aggregate / union + "
    "aggregate). Same SQL and data as the published peer benchmark; every model is a table.",
    "kiban: staging + intermediate models in `warehouse`, marts in `mart`, source as `lake.orders` "
    "(the same Parquet file); kiban's default parallelism (one asset per core, here 2) unless "
    "--kiban-threads says otherwise; the peers run serially (their defaults). "
    "No checks (not yet in kiban).",
    "Peers: dbt-duckdb threads 1 (its project also carries the workload's tests, not run here); "
    "SQLMesh kind FULL — its `plan` runs the attached audits (4/13/53 for N=10/100/500) as part of the "
    "plan; baseline = bench/baseline.py, the same CREATE OR REPLACE TABLE statements in order on one "
    "DuckDB connection, with kiban's DuckDB.",
    "Cold = fresh database and state (dbt: no target/, SQLMesh: no .cache). 2nd = same command again with "
    "nothing changed. At R >= 1M only the cold runs of kiban, dbt and the baseline are measured.",
    "Wall = elapsed time of the whole process; CPU = user+sys (GNU time); peak RSS = largest resident set "
    "(GNU time %M); other load = share of all cores used by other processes meanwhile (noisy machine: "
    "compare CPU too). Medians over successful repetitions.",
]


def render_md(run: Run) -> str:
    m = run.meta
    mach = m.get("machine", {})
    vers = m.get("versions", {})
    assert isinstance(mach, dict) and isinstance(vers, dict)
    out = [f"# kiban benchmark results (run {run.run_id})", ""]
    out += [
        f"- started {m.get('started')}, finished {m.get('finished', '(incomplete)')}",
        f"- configs {m.get('configs')}; reps {m.get('reps')}; per-command timeout {m.get('timeout')} s",
        "",
    ]
    out += ["## Machine", ""] + [f"- {k}: {v}" for k, v in mach.items()] + [""]
    out += ["## Versions", ""] + [f"- {k}: {v}" for k, v in vers.items()] + [""]
    out += ["## Targets", ""]
    out += [*md_table(["target", "limit", "value", "CPU ratio (info)", "verdict"], target_rows(run)), ""]
    out += ["## Medians", "", *md_table(HEADERS, table_rows(run)), ""]
    out += ["## Same outputs", "", "Sum over all marts per tool (must agree):", ""]
    out += (verify_lines(run) or ["- (no config run)"]) + [""]
    fails = failures(run)
    if fails:
        out += ["## Failures", "", *fails, ""]
    out += ["## Notes", ""] + [f"- {n}" for n in NOTES]
    return "\n".join(out) + "\n"


def print_tables(run: Run) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        targets = md_table(["target", "limit", "value", "CPU", "verdict"], target_rows(run))
        print("\n".join([*md_table(HEADERS, table_rows(run)), "", *targets]))
        return
    console = Console(width=max(160, shutil.get_terminal_size().columns))
    for title, headers, rows in (
        ("medians", HEADERS, table_rows(run)),
        ("targets", ["target", "limit", "value", "CPU ratio", "verdict"], target_rows(run)),
    ):
        table = Table(title=title)
        for h in headers:
            table.add_column(h)
        for r in rows:
            table.add_row(*r)
        console.print(table)


def save_raw(run: Run) -> None:
    data = {
        "run_id": run.run_id,
        "meta": run.meta,
        "verify": run.verify,
        "rows": [asdict(r) for r in run.rows],
    }
    RESULTS_RAW.write_text(json.dumps(data, indent=1) + "\n")


def load_raw() -> Run:
    data = json.loads(RESULTS_RAW.read_text())
    return Run(data["run_id"], data["meta"], [Row(**r) for r in data["rows"]], data.get("verify", {}))


def write_report(run: Run) -> None:
    # the other scripts' sections (checks, service levels, scheduler, backfill) stay as they are
    RESULTS_MD.write_text(keep_others(render_md(run), OWN_SECTIONS))
    print(f"wrote {RESULTS_MD}")


# --------------------------------------------------------------------------- main
def parse_configs(text: str) -> list[tuple[int, int]]:
    out = []
    for cfg in text.split(","):
        n, r = cfg.lower().strip().split("x")
        out.append((int(n), int(r)))
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default=DEFAULT_CONFIGS, help=f"NxR list (default {DEFAULT_CONFIGS})")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help=f"--configs {QUICK_CONFIGS} --reps 1")
    ap.add_argument("--tools", default=",".join(ALL_TOOLS))
    ap.add_argument("--no-startup", action="store_true", help="skip the --help / import startup rows")
    ap.add_argument("--timeout", type=int, default=900, help="per-command timeout in seconds")
    ap.add_argument("--max-wait", type=float, default=3.0, help="max seconds to wait for a quiet machine")
    ap.add_argument("--kiban-threads", type=int, default=0,
                    help="threads in kiban.yml (0, the default: kiban's own default of one per core)")
    ap.add_argument("--report-only", action="store_true", help="rebuild RESULTS.md from results-raw.json")
    args = ap.parse_args(argv)
    if args.quick:
        args.configs, args.reps = QUICK_CONFIGS, 1
    return args


def precompile_kiban() -> None:
    """Compile kiban's (editable) sources once, as an installed package would be, so no run pays it."""
    src = REPO / "src" / "kiban"
    py = KIBAN_BIN / "python"
    if src.is_dir() and py.exists():
        subprocess.run([str(py), "-m", "compileall", "-q", str(src)], env=ENV, check=False)


def check_prerequisites(tools: list[str]) -> None:
    if not os.access(TIME, os.X_OK):
        raise SystemExit(f"{TIME} missing: run `bash bench/setup_peers.sh` (installs GNU time)")
    for tool in tools:
        if tool in ("dbt", "sqlmesh") and not (VENVS / tool / "bin" / "python").exists():
            print(f"warning: {tool} venv missing under {VENVS}; run bash bench/setup_peers.sh", file=sys.stderr)
    if "kiban" in tools and not KIBAN_CLI.exists():
        print(
            f"warning: {KIBAN_CLI} missing (pip install -e {REPO}); kiban rows will fail",
            file=sys.stderr,
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report_only:
        write_report(load_raw())
        return 0
    tools = [t for t in args.tools.split(",") if t]
    check_prerequisites(tools)
    if "kiban" in tools:
        precompile_kiban()
    ROOT.mkdir(parents=True, exist_ok=True)
    run = Run(
        time.strftime("%Y%m%dT%H%M%S"),
        {
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "configs": args.configs,
            "reps": args.reps,
            "timeout": args.timeout,
            "tools": tools,
            "machine": machine(),
            "versions": versions(),
        },
    )
    print(json.dumps(run.meta["versions"], indent=1), flush=True)
    if not args.no_startup:
        run_startup(run, tools, args.reps, args)
    for n, r in parse_configs(args.configs):
        try:
            run_config(run, n, r, tools, args)
        except Exception as e:  # keep going with the next config
            print(f"config {n}x{r} failed: {e!r}", flush=True)
        write_report(run)
    run.meta["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    save_raw(run)
    write_report(run)
    print_tables(run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
