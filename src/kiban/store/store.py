"""The state store: the single source of facts about runs, attempts and locks.

SQLite by default (a file under ``.kiban/``), PostgreSQL by URL. The schema is managed by
Alembic; opening a store that is already at the newest revision does not import Alembic.

A SQLite file does not import SQLAlchemy either, unless something asks for ``Store.engine``: the store is opened
through ``kiban.store.lite`` (the standard library's ``sqlite3``), a new one is made there at the head revision
from ``kiban.store.ddl`` (the statements ``metadata.create_all`` makes, written out and held to it by
``tests/test_store_ddl.py``), and a run's own facts — runs, attempts, heartbeats, the asset locks — are read and
written on that connection (one, shared by the run's threads under the store's lock; WAL, ``synchronous=full``,
``begin immediate`` as before). ``Store.engine`` (SQLAlchemy) is made on first use, for everything else; an
older store is migrated through it (Alembic). PostgreSQL, and SQLite in memory, go through SQLAlchemy only.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from kiban.diskfull import disk_full, is_disk_full
from kiban.errors import ConfigError, RunLockedError
from kiban.status import AttemptStatus, RunStatus
from kiban.store import lite

if TYPE_CHECKING:
    import sqlalchemy as sa
    from sqlalchemy.engine import Connection, Engine

HEAD_REVISION = "0021"
ABANDONED = "the process running it stopped without finishing (killed or crashed)"
STALE_AFTER = timedelta(seconds=60)  # a heartbeat older than this means the holder is gone
HOST = socket.gethostname()


class AttemptDetails(TypedDict, total=False):
    """What an attempt may say beyond its run, asset and status (``Store.record_attempt``'s keywords)."""

    attempt: int
    started_at: datetime | None
    ended_at: datetime | None
    rows: int | None
    nbytes: int | None
    fingerprint: str | None
    error: str | None
    watermark: date | None


@dataclass(frozen=True)
class LockRelease:
    """Locks (their full names, see ``kiban.store.asset_locks``) a run hands back with a store write."""

    run_id: str
    names: Sequence[str]


def utcnow() -> datetime:
    """Now in UTC, without tzinfo (the store keeps naive UTC everywhere)."""
    return datetime.now(UTC).replace(tzinfo=None)


def pid_alive(pid: int | None, host: str | None) -> bool | None:
    """True/False for a process on this host; None when it runs elsewhere (use heartbeats)."""
    if pid is None or host != HOST:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holder_gone(pid: int | None, host: str | None, heartbeat_at: datetime | None, now: datetime) -> bool:
    """Whether the process behind a run, lock or backfill is gone: its pid is dead on this host, or — on
    another host — it has not heartbeated for STALE_AFTER."""
    alive = pid_alive(pid, host)
    stale = heartbeat_at is None or now - heartbeat_at > STALE_AFTER
    return alive is False or (alive is None and stale)


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    project: str
    status: str  # a kiban.status.RunStatus
    selection: list[str]
    options: dict[str, Any]
    started_at: datetime
    ended_at: datetime | None
    heartbeat_at: datetime | None
    pid: int | None
    host: str | None
    error: str | None


@dataclass(frozen=True)
class AttemptRecord:
    run_id: str
    asset: str
    attempt: int
    status: str
    started_at: datetime | None
    ended_at: datetime | None
    seconds: float | None
    rows: int | None
    bytes: int | None
    fingerprint: str | None
    error: str | None
    watermark: date | None = None


def _run(row: Any) -> RunRecord:
    return RunRecord(row.run_id, row.project, row.status, json.loads(row.selection or "[]"),
                     json.loads(row.options or "{}"), row.started_at, row.ended_at, row.heartbeat_at,
                     row.pid, row.host, row.error)


def _attempt(row: Any) -> AttemptRecord:
    return AttemptRecord(row.run_id, row.asset, row.attempt, row.status, row.started_at, row.ended_at,
                         row.seconds, row.rows, row.bytes, row.fingerprint, row.error, row.watermark)


def _run_of(row: Sequence[Any]) -> RunRecord:
    """A ``runs`` row read through ``lite`` (``lite.RUN_COLUMNS``), as SQLAlchemy reads it."""
    run_id, project, status, selection, options, started, ended, beat, pid, host, error = row
    return RunRecord(run_id, project, status, json.loads(selection or "[]"), json.loads(options or "{}"),
                     lite.parsed(started), lite.parsed(ended), lite.parsed(beat), pid, host, error)  # type: ignore[arg-type]


def _attempt_of(row: Sequence[Any]) -> AttemptRecord:
    """An ``attempts`` row read through ``lite`` (``lite.ATTEMPT_COLUMNS``), as SQLAlchemy reads it."""
    _id, run_id, asset, attempt, status, started, ended, seconds, rows, nbytes, fingerprint, error, watermark = row
    return AttemptRecord(run_id, asset, attempt, status, lite.parsed(started), lite.parsed(ended), seconds, rows,
                         nbytes, fingerprint, error, lite.parsed_date(watermark))


def _sqlite_file(url: str) -> str | None:
    """The path of a SQLite store's file (None: another database, or SQLite in memory)."""
    if not url.startswith("sqlite:///") or url.endswith(":memory:") or "?" in url:
        return None
    return url[len("sqlite:///"):]


def _new_file(path: Path) -> None:
    """The store holds users, sessions and the audit log: private to its owner from its first byte (SQLite takes
    an empty file as a new database, and gives its WAL and shared-memory files the same mode)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


class Store:
    """Facts about runs. Thread-safe: the executor's worker threads record attempts here."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._write_lock = threading.Lock()
        self._lite_lock = threading.RLock()  # the one sqlite3 connection: one statement (or transaction) at a time
        self._engine: Engine | None = None
        self.lite: sqlite3.Connection | None = None  # a SQLite file's connection without SQLAlchemy (see above)
        path = _sqlite_file(url)
        if path is not None:
            try:
                _new_file(Path(path))
                self.lite = lite.open_store(path, HEAD_REVISION)
            except (sqlite3.Error, OSError) as exc:
                if is_disk_full(exc):
                    raise disk_full([Path(path).parent], "opening the state store") from None
                raise ConfigError(f"cannot open the state store: {str(exc).strip()}") from None
            if self.lite is not None:
                return
        self._open_with_sqlalchemy()

    def _open_with_sqlalchemy(self) -> None:
        import sqlalchemy as sa

        try:
            self._engine = _make_engine(self.url)
            self._migrate()
        except sa.exc.ArgumentError as exc:
            raise ConfigError(f"state store URL is not valid: {exc}") from None
        except sa.exc.OperationalError as exc:
            if self.url.startswith("sqlite:///") and is_disk_full(exc):
                raise disk_full([Path(self.url[len("sqlite:///"):]).parent], "opening the state store") from None
            raise ConfigError(f"cannot open the state store: {str(exc.orig).strip()}") from None

    @property
    def engine(self) -> Engine:
        """SQLAlchemy's engine, made (and SQLAlchemy imported) on first use when the store was opened through
        ``lite``."""
        if self._engine is None:
            self._engine = _make_engine(self.url)
        return self._engine

    @engine.setter
    def engine(self, engine: Engine) -> None:
        self._engine = engine

    @contextmanager
    def lite_tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``begin immediate``) on the ``lite`` connection, under the store's write lock."""
        with self.lite_locked() as conn, lite.transaction(conn):
            yield conn

    @contextmanager
    def lite_locked(self) -> Iterator[sqlite3.Connection]:
        """The ``lite`` connection under the store's write lock, for a caller whose ``lite`` SQL opens its own
        transaction (``checks.ledger.CheckLedger``)."""
        assert self.lite is not None
        with self._write_lock, self._lite_lock:
            yield self.lite

    @contextmanager
    def lite_read(self) -> Iterator[sqlite3.Connection]:
        """The ``lite`` connection for reads (each statement its own transaction)."""
        assert self.lite is not None
        with self._lite_lock:
            yield self.lite

    # -- schema -----------------------------------------------------------------------------
    def _migrate(self) -> None:
        import sqlalchemy as sa

        from kiban.store.schema import metadata

        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":  # several processes (workers) may open a new store at once
                conn.execute(sa.text("select pg_advisory_xact_lock(7460121)"))
            inspector = sa.inspect(conn)
            inspector_has = inspector.has_table("alembic_version")
            current = conn.execute(sa.text("select version_num from alembic_version")).scalar() \
                if inspector_has else None
            if current == HEAD_REVISION:
                return
            if current is None and not inspector.has_table("runs"):
                # A new store: create the newest schema directly and stamp it, as Alembic recommends;
                # the migrations are for stores that already hold history (tests keep both in step).
                metadata.create_all(conn)
                conn.execute(sa.text(lite.ALEMBIC_VERSION))
                conn.execute(sa.text("insert into alembic_version values (:v)"), {"v": HEAD_REVISION})
                return
            from alembic import command
            from alembic.config import Config

            cfg = Config()
            cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self._write_lock, self.engine.begin() as conn:
            yield conn

    def close(self) -> None:
        if self.lite is not None:
            with self._lite_lock:
                self.lite.close()
        if self._engine is not None:
            self._engine.dispose()

    # -- runs -------------------------------------------------------------------------------
    def start_run(self, run_id: str, project: str, selection: Sequence[str], options: dict[str, Any]) -> None:
        now = utcnow()
        if self.lite is not None:
            with self.lite_tx() as conn:
                lite.insert_run(conn, lite.StampedRun(run_id, project, json.dumps(options), now, os.getpid(), HOST),
                                json.dumps(list(selection)))
            return
        from kiban.store.schema import runs

        with self._tx() as conn:
            conn.execute(runs.insert().values(
                run_id=run_id, project=project, status=RunStatus.RUNNING, selection=json.dumps(list(selection)),
                options=json.dumps(options), started_at=now, heartbeat_at=now, pid=os.getpid(), host=HOST))

    def heartbeat(self, run_id: str) -> None:
        now = utcnow()
        if self.lite is not None:
            with self.lite_tx() as conn:
                lite.beat(conn, run_id, now)
            return
        from kiban.store.schema import locks, runs

        with self._tx() as conn:
            conn.execute(runs.update().where(runs.c.run_id == run_id).values(heartbeat_at=now))
            conn.execute(locks.update().where(locks.c.run_id == run_id).values(heartbeat_at=now))

    def finish_run(self, run_id: str, status: RunStatus, error: str | None = None) -> None:
        if self.lite is not None:
            with self.lite_tx() as conn:
                lite.end_run(conn, run_id, status, utcnow(), error)
            return
        from kiban.store.schema import runs

        with self._tx() as conn:
            conn.execute(runs.update().where(runs.c.run_id == run_id)
                         .values(status=status, ended_at=utcnow(), error=error))

    def record_attempt(self, run_id: str, asset: str, status: str, **details: Unpack[AttemptDetails]) -> None:
        """One attempt of ``asset`` in ``run_id``; ``details`` are the optional columns (``attempt`` is 1 unless
        given, ``nbytes`` is stored as ``bytes``). ``record_attempts`` takes many as dicts."""
        row: dict[str, Any] = {**dict.fromkeys(AttemptDetails.__annotations__), "attempt": 1, **details}
        row["bytes"] = row.pop("nbytes")
        self.record_attempts([dict(run_id=run_id, asset=asset, status=status, **row)])

    def record_attempts(self, rows: list[dict[str, Any]], release: LockRelease | None = None) -> None:
        """Record attempt rows; with ``release``, also hand those locks back — one transaction (one commit)."""
        names = list(release.names) if release is not None else []
        if not rows and not names:
            return
        for row in rows:
            start, end = row.get("started_at"), row.get("ended_at")
            row["seconds"] = (end - start).total_seconds() if start and end else None
        if self.lite is not None:
            with self.lite_tx() as lconn:
                if rows:
                    lite.insert_attempts(lconn, rows)
                if release is not None and names:
                    lite.free_locks(lconn, release.run_id, names)
            return
        from kiban.store.schema import attempts, locks

        with self._tx() as conn:
            if rows:
                conn.execute(attempts.insert(), rows)
            if release is not None and names:
                conn.execute(locks.update().where(locks.c.run_id == release.run_id, locks.c.name.in_(names))
                             .values(run_id=None, pid=None, host=None))

    def _runs(self, where: str, params: Sequence[Any], tail: str = "") -> list[RunRecord]:
        with self.lite_read() as conn:
            return [_run_of(r) for r in lite.runs_where(conn, where, params, tail)]

    def _attempts(self, where: str, params: Sequence[Any], tail: str = "") -> list[AttemptRecord]:
        with self.lite_read() as conn:
            return [_attempt_of(r) for r in lite.attempts_where(conn, where, params, tail)]

    def run(self, run_id: str) -> RunRecord | None:
        if self.lite is not None:
            found = self._runs("run_id = ?", (run_id,))
            return found[0] if found else None
        from kiban.store.schema import runs

        with self.engine.connect() as conn:
            row = conn.execute(runs.select().where(runs.c.run_id == run_id)).first()
        return _run(row) if row else None

    def find_run(self, prefix: str) -> RunRecord | None:
        if self.lite is not None:
            escaped = prefix.replace("/", "//").replace("%", "/%").replace("_", "/_")
            rows = self._runs("run_id like ? escape '/'", (f"{escaped}%",), "limit 2")
            return rows[0] if len(rows) == 1 else None
        from kiban.store.schema import runs

        with self.engine.connect() as conn:
            found = conn.execute(runs.select().where(runs.c.run_id.startswith(prefix)).limit(2)).all()
        return _run(found[0]) if len(found) == 1 else None

    def runs(self, project: str, limit: int = 20) -> list[RunRecord]:
        if self.lite is not None:
            return self._runs("project = ?", (project,), f"order by started_at desc limit {int(limit)}")
        from kiban.store.schema import runs

        with self.engine.connect() as conn:
            rows = conn.execute(runs.select().where(runs.c.project == project)
                                .order_by(runs.c.started_at.desc()).limit(limit)).all()
        return [_run(r) for r in rows]

    def last_run(self, project: str, finished_only: bool = True) -> RunRecord | None:
        if self.lite is not None:
            where, params = ("project = ? and status != ?", (project, RunStatus.RUNNING.value)) if finished_only \
                else ("project = ?", (project,))
            found = self._runs(where, params, "order by started_at desc limit 1")
            return found[0] if found else None
        from kiban.store.schema import runs

        query = runs.select().where(runs.c.project == project)
        if finished_only:
            query = query.where(runs.c.status != RunStatus.RUNNING)
        with self.engine.connect() as conn:
            row = conn.execute(query.order_by(runs.c.started_at.desc()).limit(1)).first()
        return _run(row) if row else None

    def attempts(self, run_id: str) -> list[AttemptRecord]:
        if self.lite is not None:
            return self._attempts("run_id = ?", (run_id,), "order by id")
        from kiban.store.schema import attempts

        with self.engine.connect() as conn:
            rows = conn.execute(attempts.select().where(attempts.c.run_id == run_id)
                                .order_by(attempts.c.id)).all()
        return [_attempt(r) for r in rows]

    def asset_history(self, project: str, asset: str, limit: int = 20) -> list[AttemptRecord]:
        """The asset's newest attempts in this project's runs (another project sharing the store may have an asset
        of the same name: its builds are not this one's history)."""
        if self.lite is not None:
            return self._attempts("asset = ? and run_id in (select run_id from runs where project = ?)",
                                  (asset, project), f"order by id desc limit {int(limit)}")
        import sqlalchemy as sa

        from kiban.store.schema import attempts, runs

        with self.engine.connect() as conn:
            rows = conn.execute(attempts.select().where(
                attempts.c.asset == asset,
                attempts.c.run_id.in_(sa.select(runs.c.run_id).where(runs.c.project == project)))
                                .order_by(attempts.c.id.desc()).limit(limit)).all()
        return [_attempt(r) for r in rows]

    def latest_attempts(self, project: str) -> dict[str, AttemptRecord]:
        """The newest attempt of every asset that ever ran in this project."""
        return self._newest(project, None)

    def last_built(self, project: str) -> dict[str, AttemptRecord]:
        """The newest successful build (not 'fresh') of every asset."""
        return self._newest(project, AttemptStatus.SUCCESS)

    def _newest(self, project: str, status: AttemptStatus | None) -> dict[str, AttemptRecord]:
        if self.lite is not None:
            with self.lite_read() as lconn:
                found = [_attempt_of(r) for r in lite.newest_attempt_rows(
                    lconn, project, status.value if status is not None else None)]
            return {a.asset: a for a in found}
        import sqlalchemy as sa

        from kiban.store.schema import attempts, runs

        newest = (sa.select(sa.func.max(attempts.c.id).label("id"))
                  .select_from(attempts.join(runs, runs.c.run_id == attempts.c.run_id))
                  .where(runs.c.project == project, *([attempts.c.status == status] if status is not None else []))
                  .group_by(attempts.c.asset).subquery())
        with self.engine.connect() as conn:
            rows = conn.execute(attempts.select().where(attempts.c.id.in_(sa.select(newest.c.id)))).all()
        return {r.asset: _attempt(r) for r in rows}

    def record_codes(self, project: str, codes: dict[str, str]) -> None:
        """Record what each planned fingerprint was planned from (``codes``: fingerprint → the definitions' code,
        ``kiban.graph.code``); a pair already recorded is not recorded again."""
        if not codes:
            return
        now = utcnow()
        if self.lite is not None:
            with self.lite_tx() as lconn:
                known = set(lite.codes_for(lconn, project, sorted(codes)))
                lite.insert_codes(lconn, project, [p for p in sorted(codes.items()) if p not in known], now)
            return
        from kiban.store.schema import fingerprint_code

        with self._tx() as conn:
            known = set()
            for i in range(0, len(codes), 500):
                batch = sorted(codes)[i:i + 500]
                known |= {(r.fingerprint, r.code) for r in conn.execute(fingerprint_code.select().where(
                    fingerprint_code.c.project == project, fingerprint_code.c.fingerprint.in_(batch)))}
            new = [dict(project=project, fingerprint=f, code=c, recorded_at=now)
                   for f, c in sorted(codes.items()) if (f, c) not in known]
            if new:
                conn.execute(fingerprint_code.insert(), new)

    def codes(self, project: str, fingerprints: Sequence[str]) -> dict[str, list[str]]:
        """fingerprint → every definitions' code a run planned it from, oldest first (absent: none recorded,
        e.g. a build by a kiban older than the record)."""
        wanted = sorted(set(fingerprints))
        if not wanted:
            return {}
        if self.lite is not None:
            with self.lite_read() as lconn:
                rows = lite.codes_for(lconn, project, wanted)
        else:
            from kiban.store.schema import fingerprint_code

            rows = []
            with self.engine.connect() as conn:
                for i in range(0, len(wanted), 500):
                    rows += [(r.fingerprint, r.code) for r in conn.execute(
                        fingerprint_code.select().where(fingerprint_code.c.project == project,
                                                        fingerprint_code.c.fingerprint.in_(wanted[i:i + 500]))
                        .order_by(fingerprint_code.c.id))]
        found: dict[str, list[str]] = {}
        for fingerprint, code in rows:
            found.setdefault(fingerprint, []).append(code)
        return found

    def reap_abandoned(self, project: str) -> list[str]:
        """Mark runs whose process is gone as abandoned; returns their ids."""
        if self.lite is None:
            from kiban.store.schema import runs

            return self.abandon_dead(runs, runs.c.run_id, project)
        reaped: list[str] = []
        now = utcnow()
        with self.lite_tx() as conn:
            for run in [_run_of(r) for r in lite.runs_where(conn, "project = ? and status = ?",
                                                           (project, RunStatus.RUNNING.value))]:
                if holder_gone(run.pid, run.host, run.heartbeat_at, now):
                    lite.abandon_run(conn, run.run_id, run.heartbeat_at or now, ABANDONED)
                    reaped.append(run.run_id)
        return reaped

    def abandon_dead(self, table: sa.Table, key: sa.Column[Any], project: str) -> list[str]:
        """Rows of ``table`` (runs, backfills) still ``running`` whose process is gone become ``abandoned``."""
        reaped: list[str] = []
        now = utcnow()
        with self._tx() as conn:
            for row in conn.execute(table.select().where(table.c.project == project,
                                                         table.c.status == RunStatus.RUNNING)).all():
                if holder_gone(row.pid, row.host, row.heartbeat_at, now):
                    conn.execute(table.update().where(key == row._mapping[key.name]).values(
                        status=RunStatus.ABANDONED, ended_at=row.heartbeat_at or now, error=ABANDONED))
                    reaped.append(row._mapping[key.name])
        return reaped

    # -- locks ------------------------------------------------------------------------------
    def acquire_lock(self, name: str, run_id: str, wait: float = 0.0,
                     steal: Callable[[str], bool] | None = None) -> None:
        """Take the named lock, taking it over from a dead holder; wait up to ``wait`` seconds. ``steal``: holders
        whose lock is taken over although they live (a worker's claim on a collection whose earlier claim was
        given to it: the queue's fence, not this lock, decides who may commit)."""
        deadline = time.monotonic() + wait
        while True:
            holder = self._try_lock(name, run_id, steal)
            if holder is None:
                return
            if time.monotonic() >= deadline:
                since = holder.acquired_at.strftime("%Y-%m-%d %H:%M:%S UTC") if holder.acquired_at else "?"
                raise RunLockedError(
                    f"another run ({holder.run_id}, pid {holder.pid} on {holder.host}, since {since}) "
                    f"is working on this project",
                    "wait for it to finish, or pass --wait SECONDS to queue behind it")
            time.sleep(0.5)

    def _try_lock(self, name: str, run_id: str, steal: Callable[[str], bool] | None = None) -> Any:
        from kiban.store.schema import locks

        now = utcnow()
        with self._tx() as conn:
            row = conn.execute(locks.select().where(locks.c.name == name).with_for_update()).first()
            if row is not None and row.run_id is not None and not holder_gone(
                    row.pid, row.host, row.heartbeat_at, now) and not (steal is not None and steal(row.run_id)):
                return row
            if name.startswith("run:"):  # the project's exclusive lock: not while a run holds any of its assets
                for held in conn.execute(locks.select().where(
                        locks.c.name.like(f"asset:{name[4:]}:%"), locks.c.run_id.is_not(None),
                        locks.c.run_id != run_id)):
                    if not holder_gone(held.pid, held.host, held.heartbeat_at, now):
                        return held
            values = dict(run_id=run_id, pid=os.getpid(), host=HOST, acquired_at=now, heartbeat_at=now)
            if row is None:
                conn.execute(locks.insert().values(name=name, **values))
            else:
                conn.execute(locks.update().where(locks.c.name == name).values(**values))
        return None

    def release_lock(self, name: str, run_id: str) -> None:
        from kiban.store.schema import locks

        with self._tx() as conn:
            conn.execute(locks.update().where(locks.c.name == name, locks.c.run_id == run_id)
                         .values(run_id=None, pid=None, host=None))


def _make_engine(url: str) -> Engine:
    import sqlalchemy as sa

    if url.startswith("sqlite:///") and not url.endswith(":memory:"):
        _new_file(Path(url[len("sqlite:///"):]))
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # let SQLAlchemy's begin below issue BEGIN IMMEDIATE
            cur = dbapi_conn.cursor()
            cur.execute("pragma journal_mode=wal")
            # FULL: a commit (a load's manifest, a run's record) survives a power loss, not only a crash; with
            # WAL it costs one fsync of the log per commit — the store commits per load and attempt, not per row
            cur.execute("pragma synchronous=full")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql("begin immediate")

        return engine
    return sa.create_engine(url, pool_pre_ping=True)
