"""The store without SQLAlchemy: a SQLite state store read and written with the standard library, for hot paths.

Importing SQLAlchemy and opening the store through it cost about a third of a CPU-second (≈ 0.17 s with the
schema and a new store's ``create_all``). The paths that cannot pay that: every ``kiban run`` on a SQLite file
(``store.Store`` opens the file here — ``open_store`` makes a new store at the head revision from ``store.ddl``,
the statements ``metadata.create_all`` makes — and writes a run's runs, attempts, heartbeats and asset locks
here; its SQLAlchemy engine is made only when something else asks for it), the no-op stamp (``kiban.cli.quick``:
a plain ``kiban run`` with nothing to do) and ``kiban check`` and a run's gate (``kiban.checks.ledger``). Their
SQL lives here, next to ``store.store``, so that one layer writes the store's tables and a column added by a
migration is seen in both writers (``tests/test_table_owners.py`` finds raw SQL naming a store table outside its
owners; ``tests/test_store_lite.py``, ``tests/test_noop_stamp.py`` and ``tests/test_check_ledger.py`` compare every
column each path writes with the full path's).

What it writes: ``runs``, ``attempts`` and ``locks`` (a run's bookkeeping, for ``store.Store`` and
``store.asset_locks``), ``loads`` (a stamped run: the run, one ``fresh`` attempt per asset, an empty committed load
and a 0-row collection attempt per landing table) and ``check_results``. What it reads: runs and attempts, held
locks, the identity of the store a stamp depends on (latest run, held locks, backfilled partitions, loads,
profiles, revision), the newest attempts (``kiban status``), a run's loads, attempts and check results, the volume
check's history.

Rules: the stamp and ``kiban check`` never create the store (``mode=rw``: a missing store is ``store.Store``'s to
make); a store at another revision is ``store.Store``'s to migrate (through Alembic); journal and sync as
``store.Store`` sets them (WAL, ``synchronous=full``); times as SQLAlchemy's SQLite ``DateTime`` stores them
(naive UTC, six fraction digits). Only the standard library and kiban's leaves are imported: ``kiban.store``'s
package does not load ``store.store`` until asked for it.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from kiban.status import AttemptStatus, BackfillStatus, LoadStatus, RunStatus
from kiban.store import ddl

ALEMBIC_VERSION = "create table alembic_version (version_num varchar(32) not null primary key)"
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


# -- the Store's SQLite door: opening (a new store made at the head), runs, attempts, locks --------------------------

def open_store(path: str, head: str) -> sqlite3.Connection | None:
    """``store.Store``'s connection to the SQLite file at ``path``, shared by its threads (always used under its lock):
    a new store is made here at ``head``, with ``ddl.SQLITE`` — what ``metadata.create_all`` and the revision table
    make, in one ``begin immediate`` transaction as ``store.Store`` did through SQLAlchemy. None when the store is
    at another revision (its migrations run through Alembic)."""
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("pragma journal_mode=wal")
        conn.execute("pragma synchronous=full")  # as store.Store: a recorded run survives a power loss
        with transaction(conn):
            tables = {name for (name,) in conn.execute("select name from sqlite_master where type = 'table'")}
            at = revision(conn) if "alembic_version" in tables else None
            if at is None and "runs" not in tables:
                for statement in ddl.SQLITE:
                    conn.execute(statement)
                conn.execute("insert into alembic_version values (?)", (head,))
                at = head
    except BaseException:
        conn.close()
        raise
    if at != head:
        conn.close()
        return None
    return conn


def parsed(value: str | None) -> datetime | None:
    """A stored time as SQLAlchemy's SQLite ``DateTime`` reads it (naive)."""
    return datetime.fromisoformat(value) if value is not None else None


def parsed_date(value: str | None) -> date | None:
    return date.fromisoformat(value) if value is not None else None


def _stored_or_none(value: datetime | date | None) -> str | None:
    if value is None:
        return None
    return stored(value) if isinstance(value, datetime) else value.isoformat()


RUN_COLUMNS = ("run_id", "project", "status", "selection", "options", "started_at", "ended_at", "heartbeat_at", "pid",
               "host", "error")
ATTEMPT_COLUMNS = ("id", "run_id", "asset", "attempt", "status", "started_at", "ended_at", "seconds", "rows", "bytes",
                   "fingerprint", "error", "watermark")
LOCK_COLUMNS = ("name", "run_id", "pid", "host", "acquired_at", "heartbeat_at")


def insert_run(conn: sqlite3.Connection, run: StampedRun, selection: str) -> None:
    """A run as it starts (``selection``: JSON)."""
    at = stored(run.started_at)
    conn.execute(
        "insert into runs (run_id, project, status, selection, options, started_at, heartbeat_at, pid, host) "
        "values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (run.run_id, run.project, RunStatus.RUNNING.value, selection, run.options, at, at, run.pid, run.host))


def beat(conn: sqlite3.Connection, run_id: str, now: datetime) -> None:
    """A run's heartbeat and its locks'."""
    conn.execute("update runs set heartbeat_at = ? where run_id = ?", (stored(now), run_id))
    conn.execute("update locks set heartbeat_at = ? where run_id = ?", (stored(now), run_id))


def end_run(conn: sqlite3.Connection, run_id: str, status: str, ended_at: datetime, error: str | None) -> None:
    conn.execute("update runs set status = ?, ended_at = ?, error = ? where run_id = ?",
                 (str(status), stored(ended_at), error, run_id))


def abandon_run(conn: sqlite3.Connection, run_id: str, ended_at: datetime, error: str) -> None:
    conn.execute("update runs set status = ?, ended_at = ?, error = ? where run_id = ?",
                 (RunStatus.ABANDONED.value, stored(ended_at), error, run_id))


def insert_attempts(conn: sqlite3.Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Attempt rows as ``store.Store.record_attempts`` has them (``attempt`` 1 when absent: the column's default)."""
    conn.executemany(
        "insert into attempts (run_id, asset, attempt, status, started_at, ended_at, seconds, rows, bytes, "
        "fingerprint, error, watermark) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(r["run_id"], r["asset"], r.get("attempt", 1), str(r["status"]),
          _stored_or_none(r.get("started_at")), _stored_or_none(r.get("ended_at")), r.get("seconds"), r.get("rows"),
          r.get("bytes"), r.get("fingerprint"), r.get("error"), _stored_or_none(r.get("watermark"))) for r in rows])


def runs_where(conn: sqlite3.Connection, where: str, params: Sequence[Any], tail: str = "") -> list[tuple[Any, ...]]:
    """Rows of ``runs`` (``RUN_COLUMNS``) matching ``where``; ``tail``: order and limit."""
    return conn.execute(f"select {', '.join(RUN_COLUMNS)} from runs where {where} {tail}", params).fetchall()


def attempts_where(conn: sqlite3.Connection, where: str, params: Sequence[Any], tail: str = ""
                   ) -> list[tuple[Any, ...]]:
    """Rows of ``attempts`` (``ATTEMPT_COLUMNS``) matching ``where``; ``tail``: order and limit."""
    return conn.execute(f"select {', '.join(ATTEMPT_COLUMNS)} from attempts where {where} {tail}", params).fetchall()


def newest_attempt_rows(conn: sqlite3.Connection, project: str, status: str | None = None) -> list[tuple[Any, ...]]:
    """Each asset's newest attempt (``ATTEMPT_COLUMNS``) in the project's runs, of ``status`` only when given."""
    only = " and a.status = ?" if status is not None else ""
    return attempts_where(conn, "id in (select max(a.id) from attempts a join runs r on r.run_id = a.run_id where "
                          f"r.project = ?{only} group by a.asset)", (project, *([status] if status else [])))


def codes_for(conn: sqlite3.Connection, project: str, fingerprints: Sequence[str]) -> list[tuple[str, str]]:
    """(fingerprint, code) recorded for these fingerprints (``fingerprint_code``), oldest first."""
    found: list[tuple[str, str]] = []
    for i in range(0, len(fingerprints), 500):
        batch = list(fingerprints[i:i + 500])
        found += conn.execute("select fingerprint, code from fingerprint_code where project = ? and fingerprint in "
                              f"({', '.join('?' * len(batch))}) order by id", (project, *batch)).fetchall()
    return found


def insert_codes(conn: sqlite3.Connection, project: str, codes: Sequence[tuple[str, str]], at: datetime) -> None:
    """New (fingerprint, code) rows of ``fingerprint_code`` (``store.Store.record_codes`` leaves out known ones)."""
    conn.executemany("insert into fingerprint_code (project, fingerprint, code, recorded_at) values (?, ?, ?, ?)",
                     [(project, fingerprint, code, stored(at)) for fingerprint, code in codes])


def locks_named(conn: sqlite3.Connection, names: Sequence[str]) -> list[tuple[Any, ...]]:
    """Rows of ``locks`` (``LOCK_COLUMNS``) with these names."""
    found: list[tuple[Any, ...]] = []
    for at in range(0, len(names), 500):  # SQLite's bound-parameter limit
        chunk = names[at:at + 500]
        found += conn.execute(f"select {', '.join(LOCK_COLUMNS)} from locks where name in "
                              f"({', '.join('?' * len(chunk))})", chunk).fetchall()
    return found


def locks_like(conn: sqlite3.Connection, pattern: str) -> list[tuple[Any, ...]]:
    """Held rows of ``locks`` whose name is like ``pattern``."""
    return conn.execute(f"select {', '.join(LOCK_COLUMNS)} from locks where name like ? and run_id is not null",
                        (pattern,)).fetchall()


def insert_free_lock(conn: sqlite3.Connection, name: str) -> None:
    conn.execute("insert into locks (name, run_id) values (?, null)", (name,))


def take_locks(conn: sqlite3.Connection, names: Sequence[str], run_id: str, holder: tuple[int, str],
               now: datetime) -> None:
    """These locks, held by ``run_id`` from ``now`` (``holder``: pid, host): updated when there, else inserted."""
    pid, host = holder
    there = {row[0] for row in locks_named(conn, names)}
    at = stored(now)
    conn.executemany("update locks set run_id = ?, pid = ?, host = ?, acquired_at = ?, heartbeat_at = ? "
                     "where name = ?", [(run_id, pid, host, at, at, n) for n in names if n in there])
    conn.executemany("insert into locks (name, run_id, pid, host, acquired_at, heartbeat_at) values "
                     "(?, ?, ?, ?, ?, ?)", [(n, run_id, pid, host, at, at) for n in names if n not in there])


def free_locks(conn: sqlite3.Connection, run_id: str, names: Sequence[str]) -> None:
    """The run's hold on these locks ends."""
    conn.executemany("update locks set run_id = null, pid = null, host = null where run_id = ? and name = ?",
                     [(run_id, n) for n in names])


def free_locks_like(conn: sqlite3.Connection, run_id: str, pattern: str) -> None:
    conn.execute("update locks set run_id = null, pid = null, host = null where run_id = ? and name like ?",
                 (run_id, pattern))


def replaced(conn: sqlite3.Connection, project: str) -> dict[str, str]:
    """``store.backfills.BackfillLedger.replaced``: asset → a digest of every partition a backfill replaced."""
    found = conn.execute(
        "select p.asset, p.backfill_id, p.partition_start from backfill_partitions p join backfills b "
        "on b.id = p.backfill_id where b.project = ? and p.status = ?",
        (project, BackfillStatus.SUCCESS.value)).fetchall()
    return digest_by_asset([(asset, backfill, datetime.fromisoformat(start)) for asset, backfill, start in found])


def digest_by_asset(partitions: Sequence[tuple[str, str, datetime]]) -> dict[str, str]:
    """asset → a digest of its (backfill id, partition start) pairs."""
    by_asset: dict[str, list[str]] = {}
    for asset, backfill, start in partitions:
        by_asset.setdefault(asset, []).append(f"{backfill}:{start.isoformat()}")
    return {asset: hashlib.sha256("\n".join(sorted(items)).encode()).hexdigest()[:16]
            for asset, items in by_asset.items()}


def profiles_in_use(conn: sqlite3.Connection, project: str) -> bool:
    """Whether ``kiban docs profile`` has profiled the project (a run then re-profiles what it publishes)."""
    return bool(conn.execute("select count(*) from column_profiles where project = ?", (project,)).fetchone()[0])


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
    profiled = profiles_in_use(conn, project)
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


def check_results_of_run(conn: sqlite3.Connection, run_id: str) -> list[tuple[Any, ...]]:
    """(run_id, asset, check_name, kind, severity, status, failures, rows, detail, checked_at, fingerprint, samples)
    of a run's check results, in the order they were checked."""
    return conn.execute(
        "select run_id, asset, check_name, kind, severity, status, failures, rows, detail, checked_at, fingerprint, "
        "samples from check_results where run_id = ? order by checked_at, id", (run_id,)).fetchall()


def observed_history(conn: sqlite3.Connection, project: str, asset: str, check: str, limit: int
                     ) -> list[tuple[datetime, str]]:
    """(checked_at as naive UTC, observed JSON) of a check's measurements, newest first."""
    found = conn.execute(
        "select checked_at, observed from check_results where asset = ? and check_name = ? and observed is not "
        "null and (project = ? or project is null) order by checked_at desc limit ?",
        (asset, check, project, limit)).fetchall()
    return [(datetime.fromisoformat(at), observed) for at, observed in found]
