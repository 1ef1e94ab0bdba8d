"""``kiban run`` with nothing to do, answered without loading the project: the no-op stamp.

A plain ``kiban run`` (no options) whose plan found every asset fresh leaves a *stamp*
(``.kiban/cache/noop.json``): the assets it confirmed (key, fingerprint, watermark), and the identity of
everything that plan depended on —

- every file under the project folder (path, size, mtime, ctime, inode; the warehouse file, the lake, the
  models, ``kiban.yml``, the parse and lake-folder caches), except the state store, the run intents and the
  stamp itself;
- kiban's own source files and the Python path's folders (an upgraded package changes them), the interpreter,
  and the environment (``env:NAME`` in kiban.yml);
- the state store: the project's latest run (the one that wrote the stamp), its backfilled partitions, its loads
  (count, newest, retractions) and the schema revision.

The next plain ``kiban run`` recomputes those identities (a directory walk and a few ``stat`` calls, no
imports beyond the standard library). When all are the same, the plan cannot differ, so it records the run
— one SQLite transaction: the run and one ``fresh`` attempt per asset, exactly as the full path writes them; the
SQL is the store layer's, ``kiban.store.lite`` —
prints the same two lines and exits. A project with checks is stamped like any (a run that builds nothing judges
nothing). A project whose sources are landing folders inside it (files, logs, xlsx) is stamped when the run's
loads all committed empty and every landing file had settled before the run began; the stamp then also records,
per table, the empty load and the 0-row collection attempt the full path records, and prints its lines. Anything
else (a different identity, a run going on, a lock held, another store than SQLite, database or HTTP sources, use
cases, OpenLineage, Python models or models reading files) takes the full path, which writes a new stamp when it
again finds nothing to do.

Files changed while a stamp is written are not trusted: an entry whose ctime is not older than the probe
taken before the run started makes the stamp unwritten (git's "racy clean" rule), so a change in the same
clock tick as the stamp is never missed. ctime cannot be set back by a user, unlike mtime. kiban's own caches
(``.kiban/cache/``) are exempt from that rule, not from the digest: the run that stamps writes them itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import sqlite3
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from kiban.status import AttemptStatus, LoadStatus, RunStatus
from kiban.store import lite

VERSION = 1
STAMP = "noop.json"
PROBE = "noop.probe"
MAX_ENTRIES = 50_000  # a project folder bigger than this is not stamped (the walk would cost more than it saves)
SKIP_DIRS = {".git", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
VOLATILE_ENV = {"_", "OLDPWD", "SHLVL", "PWD", "COLUMNS", "LINES"}
PROJECT_FILE = "kiban.yml"

started_probe: int | None = None  # ctime (ns) of the probe touched before a full plain run: see remember()


def _find_root(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        if (folder / PROJECT_FILE).is_file():
            return folder
    return None


def _cache(root: Path) -> Path:
    return root / ".kiban" / "cache"


def _walk(folder: Path, skip: set[Path], out: list[tuple[Any, ...]], base: Path) -> bool:
    """Append (relative path, size, mtime, ctime, inode) of every file under ``folder``; False when too many."""
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return True
    for entry in entries:
        path = Path(entry.path)
        if path in skip or entry.name in SKIP_DIRS:
            continue
        try:
            st = entry.stat()  # follows symbolic links: a linked lake file is identified by its target
        except FileNotFoundError:
            out.append((str(path.relative_to(base)), "gone"))
            continue
        if entry.is_dir():
            out.append((str(path.relative_to(base)), "dir"))
            if len(out) > MAX_ENTRIES or not _walk(path, skip, out, base):
                return False
        else:
            out.append((str(path.relative_to(base)), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
    return len(out) <= MAX_ENTRIES


def _code_identity() -> list[tuple[Any, ...]]:
    """kiban's own files, the Python path's folders and the interpreter: a new version of any changes these."""
    out: list[tuple[Any, ...]] = [(sys.executable, sys.version, tuple(sys.path))]
    package = Path(__file__).resolve().parent.parent
    files: list[tuple[Any, ...]] = []
    _walk(package, set(), files, package)
    out += files
    for entry in sys.path:
        try:
            st = os.stat(entry or ".")
        except OSError:
            continue
        out.append((entry, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
    return out


def inputs_identity(root: Path) -> tuple[str | None, int]:
    """A digest of everything a no-op plan depends on outside the state store, and the newest ctime seen
    (None: too many files to stamp)."""
    cache = _cache(root)
    state = root / ".kiban"
    skip = {state / "intents", cache / STAMP, cache / PROBE, cache / f"{STAMP}.tmp",
            *(state / f"state.db{suffix}" for suffix in ("", "-wal", "-shm", "-journal"))}
    files: list[tuple[Any, ...]] = []
    if not _walk(root, skip, files, root):
        return None, 0
    # the racy rule (see remember) is for inputs: kiban's own caches are written by the very run that stamps,
    # keyed by content (sql.json) or only by runs, which the store's latest run tells apart (lake_folders.json)
    own = str(cache.relative_to(root)) + os.sep
    newest = max((f[3] for f in files if len(f) == 5 and not f[0].startswith(own)), default=0)
    env = sorted((k, v) for k, v in os.environ.items() if k not in VOLATILE_ENV)
    blob = json.dumps([VERSION, str(root), sorted(files), env, _code_identity()], default=str)
    return hashlib.sha256(blob.encode()).hexdigest(), newest


def _write_stamp(cache: Path, stamp: dict[str, Any]) -> None:
    tmp = cache / f"{STAMP}.tmp"
    tmp.write_text(json.dumps(stamp))
    os.replace(tmp, cache / STAMP)


def _read_stamp(root: Path) -> dict[str, Any] | None:
    try:
        stamp = json.loads((_cache(root) / STAMP).read_text())
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) and stamp.get("version") == VERSION else None


def try_quick(argv: list[str], cwd: Path | None = None) -> bool:
    """``kiban run`` or ``kiban status`` answered from the stamp; False when the full command must run."""
    if argv in (["status"], ["status", "--json"]):
        return try_status(argv[1:] == ["--json"], cwd)
    return try_noop(argv, cwd)


def try_status(as_json: bool = False, cwd: Path | None = None) -> bool:
    """``kiban status`` from the stamp's list of assets (valid while no project file changed) and the store."""
    root = _find_root((cwd or Path.cwd()).resolve())
    stamp = _read_stamp(root) if root is not None else None
    if root is None or stamp is None or "assets" not in stamp:
        return False
    digest, _ = inputs_identity(root)
    if digest is None or digest != stamp.get("inputs"):
        return False
    try:
        conn = lite.connect(stamp["state"])
    except sqlite3.Error:
        return False
    try:
        project = stamp["project"]
        if lite.running_runs(conn, project):
            return False  # a run going on (or one to reap as abandoned): the full command
        latest = {r["asset"]: _Attempt(r) for r in lite.newest_attempts(conn, project)}
        built = {r["asset"]: _Attempt(r) for r in lite.newest_attempts(conn, project, AttemptStatus.SUCCESS.value)}
    except sqlite3.Error:
        return False
    finally:
        conn.close()
    from kiban.cli.status_view import print_status_data, status_rows

    print_status_data(status_rows([(k, layer) for k, layer in stamp["assets"]], latest, built, []),
                      stamp["timezone"], as_json)
    return True


class _Attempt:
    """An attempts row with the fields ``status_rows`` reads (times as the store's naive UTC datetimes)."""

    def __init__(self, row: sqlite3.Row) -> None:
        self.status, self.error, self.rows, self.bytes = row["status"], row["error"], row["rows"], row["bytes"]
        self.seconds = row["seconds"]
        self.ended_at = datetime.fromisoformat(row["ended_at"]) if row["ended_at"] else None


def try_noop(argv: list[str], cwd: Path | None = None) -> bool:
    """Answer a plain ``kiban run`` from a valid stamp; False (nothing done) when the full path must run."""
    global started_probe
    if argv != ["run"]:
        return False
    root = _find_root((cwd or Path.cwd()).resolve())
    if root is None:
        return False
    cache = _cache(root)
    stamp = _read_stamp(root)
    if stamp is not None and _answer(root, stamp):
        return True
    try:  # the full path runs: remember when it started, for the stamp it may write at its end
        cache.mkdir(parents=True, exist_ok=True)
        probe = cache / PROBE
        probe.write_text(str(time.time_ns()))
        started_probe = probe.stat().st_ctime_ns
    except OSError:
        started_probe = None
    return False


def _answer(root: Path, stamp: dict[str, Any]) -> bool:
    digest, _ = inputs_identity(root)
    if digest is None or digest != stamp.get("inputs"):
        return False
    try:
        conn = lite.connect(stamp["state"])
    except (sqlite3.Error, KeyError):
        return False
    collect: list[dict[str, Any]] = stamp.get("collect", [])
    try:
        started = lite.utcnow()
        options = json.dumps({"exclude": [], "full_refresh": False, "resume": False, "pid": os.getpid()})
        run = lite.StampedRun(run_id=started.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3),
                              project=stamp["project"], options=options, started_at=started, pid=os.getpid(),
                              host=socket.gethostname())
        with lite.transaction(conn):
            if lite.store_identity(conn, run.project) != stamp["store"]:
                lite.rollback(conn)
                return False
            lite.start_run(conn, run)
            loaded = _record_loads(conn, run, collect)
            lite.record_fresh(conn, run, stamp["fresh"])
            ended = lite.utcnow()
            lite.finish_run(conn, run.run_id, RunStatus.SUCCESS if collect else RunStatus.NOTHING, ended)
            stamp["store"] = lite.store_identity(conn, run.project)  # this run (and its loads) the latest now
    except sqlite3.Error:
        return False
    finally:
        conn.close()
    run_id = run.run_id
    _write_stamp(_cache(root), stamp)  # the next run may answer from here too
    _say(run_id, len(stamp["fresh"]), loaded, (ended - started).total_seconds())
    return True


def _record_loads(conn: sqlite3.Connection, run: lite.StampedRun, collect: list[dict[str, Any]]
                  ) -> list[tuple[str, float]]:
    """What the full path records for a landing folder with nothing new: an empty committed load and a
    successful collection attempt (0 rows) per source table. Returns (asset, seconds) of each."""
    loaded: list[tuple[str, float]] = []
    for one in collect:
        begun = lite.utcnow()
        load_id = begun.strftime("%Y%m%dT%H%M%S%f")[:-3] + "-" + secrets.token_hex(3)  # collect.load.new_load_id
        done = lite.utcnow()
        lite.record_empty_load(conn, run, lite.EmptyLoad(
            load_id=load_id, asset=one["asset"], source=one["source"], table=one["table"], cursor=one["cursor"],
            schema=one["schema"], reread_s=one["reread_s"], watermark=one["watermark"], started_at=begun,
            ended_at=done))
        loaded.append((one["asset"], (done - begun).total_seconds()))
    return loaded


def _say(run_id: str, fresh: int, loaded: list[tuple[str, float]], elapsed: float) -> None:
    """The lines the full path prints for the same run (plain progress on stderr, the summary on stdout)."""
    if loaded:
        print(f"collecting {len(loaded)} source table(s)", file=sys.stderr)
        for asset, seconds in loaded:
            print(f"  collecting {asset}", file=sys.stderr)
            print(f"  collected {asset}: {AttemptStatus.SUCCESS.value}, 0 row(s) landed in {seconds:.2f}s",
                  file=sys.stderr)
    print(f"run {run_id}: {len(loaded)} asset(s) to build" + (f", {fresh} fresh" if fresh else ""), file=sys.stderr)
    if not loaded:
        summary = f"fresh {fresh}" if fresh else "nothing selected"
        print(f"run {run_id} up to date in {elapsed:.2f}s: {summary}")
        return
    from rich.table import Table

    from kiban.cli.output import console, styled

    table = Table(title=None, box=None, header_style="bold")  # as cli.report.print_run_summary draws it
    for col, justify in (("asset", "left"), ("status", "left"), ("time", "right"), ("rows", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for asset, seconds in loaded:
        table.add_row(asset, styled(AttemptStatus.SUCCESS), f"{seconds:.2f}s", "0")
    console.print(table)
    counts = {AttemptStatus.SUCCESS.value: len(loaded)}
    if fresh:
        counts[AttemptStatus.FRESH.value] = fresh
    summary = ", ".join(f"{styled(s)} {n}" for s, n in sorted(counts.items()))
    console.print(f"run {run_id} [green]done[/] in {elapsed:.2f}s: {summary}")


def remember(project: Any, result: Any, gated: bool) -> bool:
    """After a full plain ``kiban run``: write the stamp when the run found everything fresh and the project is
    one the stamp can speak for. Returns whether it was written. ``gated`` (checks judge the run's builds) does
    not matter: a run that built nothing judged nothing and recorded no check result."""
    global started_probe
    probe, started_probe = started_probe, None
    if probe is None or not _stampable(project, result) or not _settled(project, probe):
        return False
    root = Path(project.root).resolve()
    state = project.state_url[len("sqlite:///"):]
    digest, newest = inputs_identity(root)
    if digest is None or newest >= probe:  # a file changed since the run began: it may not be what was planned
        return False
    try:
        conn = lite.connect(state)
    except sqlite3.Error:
        return False
    try:
        store = lite.store_identity(conn, project.name)
        rows = lite.fresh_attempts(conn, result.run_id)
        collect = _empty_loads(conn, project, result)
    finally:
        conn.close()
    if store is None or store["last_run"] != result.run_id or len(rows) != len(result.plan.fresh) or collect is None:
        return False
    if collect and store["profiled"]:  # the full path profiles the tables it collected, even empty loads
        return False
    assets = [[key, project.assets[key].layer] for key in result.plan.order]
    if set(project.assets) != {key for key, _ in assets}:
        return False
    _write_stamp(_cache(root), {"version": VERSION, "inputs": digest, "state": state, "project": project.name,
                                "store": store, "fresh": [list(r) for r in rows], "assets": assets,
                                "timezone": project.config.timezone, "collect": collect})
    return True


def _empty_loads(conn: sqlite3.Connection, project: Any, result: Any) -> list[dict[str, Any]] | None:
    """The run's collections, when every one was an empty committed load (nothing new in its landing folder:
    no files, nothing consumed, no drift, one attempt): what the stamp records again. None otherwise."""
    collected = {k for k in result.outcomes}
    if not collected:
        return []
    loads = lite.run_loads(conn, result.run_id)
    attempts = lite.built_attempts(conn, result.run_id)
    if {row[0] for row in loads} != collected or len(loads) != len(collected) or len(attempts) != len(collected):
        return None
    marks = {asset: watermark for asset, status, attempt, rows, watermark in attempts
             if status == AttemptStatus.SUCCESS and attempt == 1 and rows == 0}
    out = []
    for asset, source, table, cursor, schema, reread, status, *counts, lake_version, _load, extra in loads:
        if status != LoadStatus.COMMITTED or any(counts) or lake_version is not None or extra or asset not in marks:
            return None
        out.append({"asset": asset, "source": source, "table": table, "cursor": cursor, "schema": schema,
                    "reread_s": reread, "watermark": marks[asset]})
    order = {key: i for i, key in enumerate(result.plan.order)}  # the summary lists them in the plan's order
    return sorted(out, key=lambda one: order.get(one["asset"], len(order)))


FILE_SOURCES = ("files", "logs", "xlsx")  # landing folders: what a load would read is there to see


def _landing_folders(project: Any, root: Path) -> list[tuple[Path, float]] | None:
    """The folder each landing table's glob starts from, with its settle time; None when a source is not a
    landing folder inside the project (a database or an API changes without a file changing here)."""
    folders = []
    for spec in project.sources.values():
        if spec.type not in FILE_SOURCES:
            return None
        for table in spec.tables.values():
            paths = table.options.get("path")
            for pattern in [paths] if isinstance(paths, str) else list(paths or []):
                if not isinstance(pattern, str):
                    return None
                parts = Path(pattern).parts
                fixed = next((i for i, part in enumerate(parts) if any(c in part for c in "*?[")), len(parts))
                folder = (root / Path(*parts[:fixed])) if fixed else root
                if not folder.resolve().is_relative_to(root):
                    return None
                folders.append((folder.resolve(), table.settle_seconds()))
            if not paths:
                return None
    return folders


def _settled(project: Any, probe: int) -> bool:
    """Every landing file had stood still for its table's ``settle:`` before the run began, so none was left
    for a later load because it was young (time alone would change what the next load takes)."""
    if not project.sources:
        return True
    root = Path(project.root).resolve()
    folders = _landing_folders(project, root)
    if folders is None:
        return False
    for folder, settle in folders:
        try:
            if folder.is_dir():
                files: list[tuple[Any, ...]] = []
                _walk(folder, set(), files, folder)
                mtimes = [f[2] for f in files if len(f) == 5]
            else:  # a path without a wildcard names one file (or nothing yet)
                mtimes = [folder.stat().st_mtime_ns] if folder.exists() else []
        except OSError:
            return False
        if any(mtime + int(settle * 1e9) >= probe for mtime in mtimes):
            return False
    return True


def _stampable(project: Any, result: Any) -> bool:
    from kiban.graph.duckrefs import clock_reads, read_files

    root = Path(project.root).resolve()
    # checks (gated) judge new versions only: a run that built nothing ran none and recorded none
    collected = set(project.source_tables()) if project.sources else set()
    if result.plan.build or set(result.outcomes) - collected:
        return False
    if result.status != (RunStatus.SUCCESS if result.outcomes else RunStatus.NOTHING):
        return False
    if project.sources and (_landing_folders(project, root) is None or project.config.storage is not None):
        return False
    if project.usecases or getattr(project.config, "openlineage", None) is not None:
        return False
    if not project.state_url.startswith("sqlite:///") or not project.warehouse_url.startswith("duckdb:///"):
        return False
    inside = [Path(project.warehouse_url[len("duckdb:///"):]), project.lake_dir]
    if not all(p.resolve().is_relative_to(root) for p in inside):
        return False
    if any(clock_reads(m.query) for m in project.macros.values()):
        return False  # a model calling it would be as new as the clock
    return not any(a.python is not None or (a.sql and (read_files(a.sql) or clock_reads(a.sql)))
                   for a in project.assets.values())
