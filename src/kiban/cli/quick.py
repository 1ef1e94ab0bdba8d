"""``kiban run`` with nothing to do, answered without loading the project: the no-op stamp.

A plain ``kiban run`` (no options) whose plan found every asset fresh leaves a *stamp*
(``.kiban/cache/noop.json``): the assets it confirmed (key, fingerprint, watermark), and the identity of
everything that plan depended on —

- every file under the project folder (path, size, mtime, ctime, inode; the warehouse file, the lake, the
  models, ``kiban.yml``, the parse and lake-folder caches), except the state store, the run intents and the
  stamp itself;
- kiban's own source files and the Python path's folders (an upgraded package changes them), the interpreter,
  and the environment (``env:NAME`` in kiban.yml);
- the state store: the project's latest run (the one that wrote the stamp), its backfilled partitions and the
  schema revision.

The next plain ``kiban run`` recomputes those identities (a directory walk and a few ``stat`` calls, no
imports beyond the standard library). When all are the same, the plan cannot differ, so it records the run
— one SQLite transaction: the run and one ``fresh`` attempt per asset, exactly as the full path writes them —
prints the same two lines and exits. Anything else (a different identity, a run going on, a lock held, another
store than SQLite, a project with sources, checks, use cases, OpenLineage, Python models or models reading
files) takes the full path, which writes a new stamp when it again finds nothing to do.

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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from kiban.status import AttemptStatus, BackfillStatus, RunStatus

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


def _store_identity(conn: sqlite3.Connection, project: str) -> dict[str, Any] | None:
    """What the plan reads from the store: the latest run, backfilled partitions, the schema revision.
    None when a run is going on or any lock of the project is held (the full path handles those)."""
    running = conn.execute("select count(*) from runs where project = ? and status = ?",
                           (project, RunStatus.RUNNING.value)).fetchone()[0]
    held = conn.execute("select count(*) from locks where (name = ? or name like ?) and run_id is not null",
                        (f"run:{project}", f"asset:{project}:%")).fetchone()[0]
    if running or held:
        return None
    last = conn.execute("select run_id from runs where project = ? order by started_at desc limit 1",
                        (project,)).fetchone()
    revision = conn.execute("select version_num from alembic_version").fetchone()
    partitions = conn.execute(
        "select p.asset, p.backfill_id, p.partition_start from backfill_partitions p join backfills b "
        "on b.id = p.backfill_id where b.project = ? and p.status = ? order by 1, 2, 3",
        (project, BackfillStatus.SUCCESS.value)).fetchall()
    return {"last_run": last[0] if last else None, "revision": revision[0] if revision else None,
            "backfilled": hashlib.sha256(json.dumps(partitions, default=str).encode()).hexdigest()}


def _connect(path: str) -> sqlite3.Connection:
    """The store, never created here (mode=rw): a missing store is the full path's to make, private to its owner."""
    conn = sqlite3.connect(f"file:{quote(path)}?mode=rw", uri=True, timeout=30, isolation_level=None)
    conn.execute("pragma journal_mode=wal")
    conn.execute("pragma synchronous=full")  # as the full path's store: a recorded run survives a power loss
    return conn


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _stored(moment: datetime) -> str:
    """A time as the store keeps it (SQLAlchemy's SQLite DateTime: always six fraction digits)."""
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


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
        conn = _connect(stamp["state"])
    except sqlite3.Error:
        return False
    try:
        conn.row_factory = sqlite3.Row
        project = stamp["project"]
        if conn.execute("select count(*) from runs where project = ? and status = ?",
                        (project, RunStatus.RUNNING.value)).fetchone()[0]:
            return False  # a run going on (or one to reap as abandoned): the full command
        newest = ("select * from attempts where id in (select max(a.id) from attempts a join runs r on r.run_id = "
                  "a.run_id where r.project = ?{} group by a.asset)")
        latest = {r["asset"]: _Attempt(r) for r in conn.execute(newest.format(""), (project,))}
        built = {r["asset"]: _Attempt(r) for r in conn.execute(newest.format(" and a.status = ?"),
                                                               (project, AttemptStatus.SUCCESS.value))}
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
        conn = _connect(stamp["state"])
    except (sqlite3.Error, KeyError):
        return False
    try:
        started = _utcnow()
        run_id = started.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
        conn.execute("begin immediate")
        try:
            if _store_identity(conn, stamp["project"]) != stamp["store"]:
                conn.execute("rollback")
                return False
            options = json.dumps({"exclude": [], "full_refresh": False, "resume": False, "pid": os.getpid()})
            at = _stored(started)
            conn.execute(
                "insert into runs (run_id, project, status, selection, options, started_at, heartbeat_at, pid, "
                "host) values (?, ?, ?, '[]', ?, ?, ?, ?, ?)",
                (run_id, stamp["project"], RunStatus.RUNNING.value, options, at, at, os.getpid(),
                 socket.gethostname()))
            conn.executemany(
                "insert into attempts (run_id, asset, attempt, status, started_at, ended_at, seconds, "
                "fingerprint, watermark) values (?, ?, 0, ?, ?, ?, 0.0, ?, ?)",
                [(run_id, key, AttemptStatus.FRESH.value, at, at, fingerprint, watermark)
                 for key, fingerprint, watermark in stamp["fresh"]])
            ended = _utcnow()
            conn.execute("update runs set status = ?, ended_at = ? where run_id = ?",
                         (RunStatus.NOTHING.value, _stored(ended), run_id))
            conn.execute("commit")
        except BaseException:
            if conn.in_transaction:
                conn.execute("rollback")
            raise
    except sqlite3.Error:
        return False
    finally:
        conn.close()
    stamp["store"]["last_run"] = run_id  # this run is the latest now: the next one may answer from here too
    _write_stamp(_cache(root), stamp)
    fresh = len(stamp["fresh"])
    print(f"run {run_id}: 0 asset(s) to build" + (f", {fresh} fresh" if fresh else ""), file=sys.stderr)
    summary = f"fresh {fresh}" if fresh else "nothing selected"
    print(f"run {run_id} up to date in {(ended - started).total_seconds():.2f}s: {summary}")
    return True


def remember(project: Any, result: Any, gated: bool) -> bool:
    """After a full plain ``kiban run``: write the stamp when the run found everything fresh and the project is
    one the stamp can speak for. Returns whether it was written."""
    global started_probe
    probe, started_probe = started_probe, None
    if probe is None or not _stampable(project, result, gated):
        return False
    root = Path(project.root).resolve()
    state = project.state_url[len("sqlite:///"):]
    digest, newest = inputs_identity(root)
    if digest is None or newest >= probe:  # a file changed since the run began: it may not be what was planned
        return False
    try:
        conn = _connect(state)
    except sqlite3.Error:
        return False
    try:
        store = _store_identity(conn, project.name)
        rows = conn.execute("select asset, fingerprint, watermark from attempts where run_id = ? and status = ? "
                            "order by id", (result.run_id, AttemptStatus.FRESH.value)).fetchall()
    finally:
        conn.close()
    if store is None or store["last_run"] != result.run_id or len(rows) != len(result.plan.fresh):
        return False
    assets = [[key, project.assets[key].layer] for key in result.plan.order]
    if set(project.assets) != {key for key, _ in assets}:
        return False
    _write_stamp(_cache(root), {"version": VERSION, "inputs": digest, "state": state, "project": project.name,
                                "store": store, "fresh": [list(r) for r in rows], "assets": assets,
                                "timezone": project.config.timezone})
    return True


def _stampable(project: Any, result: Any, gated: bool) -> bool:
    from kiban.graph.duckrefs import read_files

    root = Path(project.root).resolve()
    if result.status != RunStatus.NOTHING or result.outcomes or result.plan.build or gated:
        return False
    if project.sources or project.usecases or getattr(project.config, "openlineage", None) is not None:
        return False
    if not project.state_url.startswith("sqlite:///") or not project.warehouse_url.startswith("duckdb:///"):
        return False
    inside = [Path(project.warehouse_url[len("duckdb:///"):]), project.lake_dir]
    if not all(p.resolve().is_relative_to(root) for p in inside):
        return False
    return not any(a.python is not None or (a.sql and read_files(a.sql)) for a in project.assets.values())
