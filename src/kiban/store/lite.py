"""The store without SQLAlchemy: a SQLite state store read and written with the standard library, for hot paths.

Importing SQLAlchemy and opening the store through it cost about a third of a CPU-second. Two paths cannot pay
that: the no-op stamp (``kiban.cli.quick``: a plain ``kiban run`` with nothing to do) and ``kiban check``
(``kiban.checks.ledger``). Their SQL lives here, next to ``store.store``, so that one layer writes the store's
tables and a column added by a migration is seen in both writers (``tests/test_table_owners.py`` finds raw SQL
naming a store table outside its owners; ``tests/test_noop_stamp.py`` and ``tests/test_check_ledger.py`` compare
every column each path writes with the full path's).

What it writes: ``runs``, ``attempts`` and ``loads`` (a stamped run: the run, one ``fresh`` attempt per asset,
an empty committed load and a 0-row collection attempt per landing table) and ``check_results``. What it reads:
the identity of the store a stamp depends on (latest run, held locks, backfilled partitions, loads, profiles,
revision), the newest attempts (``kiban status``), a run's loads and attempts, the volume check's history.

Rules: the store is never created here (``mode=rw``: a missing store is ``store.Store``'s to make and migrate);
journal and sync as ``store.Store`` sets them (WAL, ``synchronous=full``); times as SQLAlchemy's SQLite
``DateTime`` stores them (naive UTC, six fraction digits). Only the standard library and kiban's leaves are
imported: ``kiban.store``'s package does not load ``store.store`` until asked for it.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from kiban.status import AttemptStatus, BackfillStatus, LoadStatus, RunStatus

VERSIONS = Path(__file__).resolve().parent / "migrations" / "versions"
SQLITE = "sqlite:///"


def head_revision() -> str | None:
    """The newest migration's revision (its file name's number), read from the folder: no import needed."""
    numbers = [p.name.split("_", 1)[0] for p in VERSIONS.glob("[0-9][0-9][0-9][0-9]_*.py")]
    return max(numbers) if numbers else None


def connect(path: str, check_same_thread: bool = True) -> sqlite3.Connection:
    """The store at ``path``, never created here (mode=rw), in autocommit mode (transactions are explicit)."""
    conn = sqlite3.connect(f"file:{quote(path)}?mode=rw", uri=True, timeout=30, isolation_level=None,
                           check_same_thread=check_same_thread)
    try:
        conn.execute("pragma journal_mode=wal")
        conn.execute("pragma synchronous=full")  # as store.Store: a recorded run survives a power loss
    except sqlite3.Error:
        conn.close()
        raise
    return conn


def revision(conn: sqlite3.Connection) -> str | None:
    row = conn.execute("select version_num from alembic_version").fetchone()
    return row[0] if row else None


def open_at_head(state_url: str, check_same_thread: bool = True) -> sqlite3.Connection | None:
    """The store when it is a SQLite file at the newest revision; None otherwise (``store.Store`` handles it)."""
    if not state_url.startswith(SQLITE):
        return None
    try:
        conn = connect(state_url[len(SQLITE):], check_same_thread)
    except sqlite3.Error:
        return None
    try:
        at = revision(conn)
    except sqlite3.Error:
        conn.close()
        return None
    if at is None or at != head_revision():
        conn.close()
        return None
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``begin immediate`` … ``commit``; rolled back on any exception (or a ``Rollback``)."""
    conn.execute("begin immediate")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("rollback")
        raise
    if conn.in_transaction:
        conn.execute("commit")


def rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("rollback")


def stored(moment: datetime) -> str:
    """A time as the store keeps it (SQLAlchemy's SQLite DateTime: always six fraction digits)."""
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def utcnow() -> datetime:
    """Naive UTC, as ``store.utcnow``."""
    return datetime.now(UTC).replace(tzinfo=None)


# -- runs, attempts, loads: the no-op stamp ------------------------------------------------------------------------

def store_identity(conn: sqlite3.Connection, project: str) -> dict[str, Any] | None:
    """What a plan reads from the store: the latest run, backfilled partitions, loads, profiles, the revision.
    None when a run is going on or any lock of the project is held (the full path handles those)."""
    held = conn.execute("select count(*) from locks where (name = ? or name like ? or name like ?) and "
                        "run_id is not null", (f"run:{project}", f"asset:{project}:%", f"collect:{project}:%")
                        ).fetchone()[0]
    if running_runs(conn, project) or held:
        return None
    last = conn.execute("select run_id from runs where project = ? order by started_at desc limit 1",
                        (project,)).fetchone()
    partitions = conn.execute(
        "select p.asset, p.backfill_id, p.partition_start from backfill_partitions p join backfills b "
        "on b.id = p.backfill_id where b.project = ? and p.status = ? order by 1, 2, 3",
        (project, BackfillStatus.SUCCESS.value)).fetchall()
    # a load retracted (or committed by `kiban collect`) since: the lake views, and so the plan, may differ
    loads = conn.execute("select count(*), max(load_id), count(retracted_at), max(retracted_at) from loads "
                         "where project = ?", (project,)).fetchone()
    # profiles in use (`kiban docs profile`): a run that collects re-profiles what it collected, recorded each run
    profiled = conn.execute("select count(*) from column_profiles where project = ?", (project,)).fetchone()[0]
    return {"last_run": last[0] if last else None, "revision": revision(conn),
            "backfilled": hashlib.sha256(json.dumps(partitions, default=str).encode()).hexdigest(),
            "loads": list(loads), "profiled": bool(profiled)}


def running_runs(conn: sqlite3.Connection, project: str) -> int:
    return int(conn.execute("select count(*) from runs where project = ? and status = ?",
                            (project, RunStatus.RUNNING.value)).fetchone()[0])


def newest_attempts(conn: sqlite3.Connection, project: str, status: str | None = None) -> list[sqlite3.Row]:
    """Each asset's newest attempt in the project's runs (of ``status`` only, when given): ``kiban status``."""
    conn.row_factory = sqlite3.Row
    try:
        newest = ("select * from attempts where id in (select max(a.id) from attempts a join runs r on r.run_id = "
                  "a.run_id where r.project = ?{} group by a.asset)")
        if status is None:
            return conn.execute(newest.format(""), (project,)).fetchall()
        return conn.execute(newest.format(" and a.status = ?"), (project, status)).fetchall()
    finally:
        conn.row_factory = None


@dataclass(frozen=True)
class StampedRun:
    """A run answered by the no-op stamp, as the full path records the same run (``store.Store.start_run``)."""

    run_id: str
    project: str
    options: str  # JSON, as the full path's RunOptions record
    started_at: datetime
    pid: int
    host: str


@dataclass(frozen=True)
class EmptyLoad:
    """A landing table's load with nothing new: an empty committed load and its 0-row collection attempt."""

    load_id: str
    asset: str
    source: str
    table: str
    cursor: str | None
    schema: str | None
    reread_s: float | None
    watermark: str | None
    started_at: datetime
    ended_at: datetime


def start_run(conn: sqlite3.Connection, run: StampedRun) -> None:
    at = stored(run.started_at)
    conn.execute(
        "insert into runs (run_id, project, status, selection, options, started_at, heartbeat_at, pid, "
        "host) values (?, ?, ?, '[]', ?, ?, ?, ?, ?)",
        (run.run_id, run.project, RunStatus.RUNNING.value, run.options, at, at, run.pid, run.host))


def record_fresh(conn: sqlite3.Connection, run: StampedRun, fresh: Sequence[Sequence[Any]]) -> None:
    """One ``fresh`` attempt per (asset, fingerprint, watermark), at the run's start."""
    at = stored(run.started_at)
    conn.executemany(
        "insert into attempts (run_id, asset, attempt, status, started_at, ended_at, seconds, "
        "fingerprint, watermark) values (?, ?, 0, ?, ?, ?, 0.0, ?, ?)",
        [(run.run_id, key, AttemptStatus.FRESH.value, at, at, fingerprint, watermark)
         for key, fingerprint, watermark in fresh])


def record_empty_load(conn: sqlite3.Connection, run: StampedRun, load: EmptyLoad) -> None:
    """What ``collect.manifest`` and the collector record for a landing table with nothing new."""
    begun, done = stored(load.started_at), stored(load.ended_at)
    conn.execute(
        "insert into loads (load_id, project, asset, source, table_name, run_id, kind, status, started_at, "
        "ended_at, rows_read, rows_landed, rows_quarantined, rows_dropped, rows_deleted, cursor, schema, "
        "reread_s) values (?, ?, ?, ?, ?, ?, 'load', ?, ?, ?, 0, 0, 0, 0, 0, ?, ?, ?)",
        (load.load_id, run.project, load.asset, load.source, load.table, run.run_id, LoadStatus.COMMITTED.value,
         begun, done, load.cursor, load.schema, load.reread_s))
    conn.execute(
        "insert into attempts (run_id, asset, attempt, status, started_at, ended_at, seconds, rows, watermark) "
        "values (?, ?, 1, ?, ?, ?, ?, 0, ?)",
        (run.run_id, load.asset, AttemptStatus.SUCCESS.value, begun, done,
         (load.ended_at - load.started_at).total_seconds(), load.watermark))


def finish_run(conn: sqlite3.Connection, run_id: str, status: RunStatus, ended_at: datetime) -> None:
    conn.execute("update runs set status = ?, ended_at = ? where run_id = ?", (status.value, stored(ended_at), run_id))


def fresh_attempts(conn: sqlite3.Connection, run_id: str) -> list[tuple[str, str | None, str | None]]:
    """(asset, fingerprint, watermark) of a run's ``fresh`` attempts, in the order recorded."""
    return conn.execute("select asset, fingerprint, watermark from attempts where run_id = ? and status = ? "
                        "order by id", (run_id, AttemptStatus.FRESH.value)).fetchall()


def run_loads(conn: sqlite3.Connection, run_id: str) -> list[tuple[Any, ...]]:
    """A run's loads by asset: (asset, source, table, cursor, schema, reread_s, status, rows_read, rows_landed,
    rows_quarantined, rows_dropped, rows_deleted, lake_version, load_id, files + consumed files + drift events)."""
    return conn.execute(
        "select l.asset, l.source, l.table_name, l.cursor, l.schema, l.reread_s, l.status, l.rows_read, "
        "l.rows_landed, l.rows_quarantined, l.rows_dropped, l.rows_deleted, l.lake_version, l.load_id, "
        "(select count(*) from load_files f where f.load_id = l.load_id) + (select count(*) from consumed_files c "
        "where c.load_id = l.load_id) + (select count(*) from drift_events d where d.load_id = l.load_id) "
        "from loads l where l.run_id = ? order by l.asset", (run_id,)).fetchall()


def built_attempts(conn: sqlite3.Connection, run_id: str) -> list[tuple[str, str, int, int | None, str | None]]:
    """(asset, status, attempt, rows, watermark) of a run's attempts other than ``fresh``."""
    return conn.execute("select asset, status, attempt, rows, watermark from attempts where run_id = ? and "
                        "status != ?", (run_id, AttemptStatus.FRESH.value)).fetchall()


# -- check_results: kiban check ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class CheckRow:
    """One check_results row, as ``checks.history.record`` writes it (detail cut, JSON already encoded)."""

    run_id: str | None
    project: str
    asset: str
    check_name: str
    kind: str
    severity: str
    status: str
    failures: int | None
    detail: str
    checked_at: datetime
    fingerprint: str | None
    rows: int | None
    observed: str | None
    samples: str | None


def insert_check_results(conn: sqlite3.Connection, rows: Sequence[CheckRow]) -> None:
    """The rows in one transaction."""
    values = [(r.run_id, r.project, r.asset, r.check_name, r.kind, r.severity, r.status, r.failures, r.detail,
               stored(r.checked_at), r.fingerprint, r.rows, r.observed, r.samples) for r in rows]
    with transaction(conn):
        conn.executemany(
            "insert into check_results (run_id, project, asset, check_name, kind, severity, status, failures, "
            "detail, checked_at, fingerprint, rows, observed, samples) values "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", values)


def observed_history(conn: sqlite3.Connection, project: str, asset: str, check: str, limit: int
                     ) -> list[tuple[datetime, str]]:
    """(checked_at as naive UTC, observed JSON) of a check's measurements, newest first."""
    found = conn.execute(
        "select checked_at, observed from check_results where asset = ? and check_name = ? and observed is not "
        "null and (project = ? or project is null) order by checked_at desc limit ?",
        (asset, check, project, limit)).fetchall()
    return [(datetime.fromisoformat(at), observed) for at, observed in found]
