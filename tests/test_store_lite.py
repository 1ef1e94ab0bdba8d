"""A SQLite store opened without SQLAlchemy (``store.Store.lite``, ``kiban.store.lite``) is the store SQLAlchemy
makes and writes: a new store has the same ``sqlite_master`` and revision; every row a run's bookkeeping writes
(runs, attempts, heartbeats, asset locks, reaping) is the same, column for column; and each reads the other's rows
alike. The full path is forced by making ``lite.open_store`` decline (as it does for a store to migrate)."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import kiban.store.asset_locks as asset_locks_module
import kiban.store.store as store_module
from kiban import operate
from kiban.errors import RunLockedError
from kiban.project import load_project
from kiban.run import RunOptions
from kiban.status import AttemptStatus, RunStatus
from kiban.store import Store, ddl, lite, schema
from kiban.store.asset_locks import AssetLocks
from kiban.store.store import LockRelease

AT = datetime(2026, 12, 7, 10, 11, 12)  # no fraction: SQLAlchemy still stores six digits
LATER = AT + timedelta(seconds=1, microseconds=500)


def _full_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lite, "open_store", lambda path, head: None)


def _master(path: Path) -> list[tuple[str, str, str, str | None]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("select type, name, tbl_name, sql from sqlite_master order by type, name").fetchall()
    finally:
        conn.close()


def _revision(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("select version_num from alembic_version").fetchone()[0]
    finally:
        conn.close()


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_written_ddl_is_what_create_all_makes() -> None:
    assert schema.sqlite_ddl() == ddl.SQLITE, \
        "regenerate: python -c 'from kiban.store.schema import write_sqlite_ddl as w; w(\"src/kiban/store/ddl.py\")'"


def test_a_new_store_is_made_alike_both_ways(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    quick, full = tmp_path / "lite.db", tmp_path / "full.db"
    store = Store(f"sqlite:///{quick}")
    assert store.lite is not None
    store.close()
    with monkeypatch.context() as patched:
        _full_path(patched)
        store = Store(f"sqlite:///{full}")
        assert store.lite is None
        store.close()
    assert _master(quick) == _master(full)
    assert _revision(quick) == store_module.HEAD_REVISION
    assert _revision(full) == store_module.HEAD_REVISION
    assert oct(quick.stat().st_mode & 0o777) == oct(0o600)


def test_a_new_store_does_not_import_sqlalchemy(tmp_path: Path) -> None:
    code = ("import sys; from kiban.store import Store; from kiban.store.asset_locks import AssetLocks; "
            f"s = Store('sqlite:///{tmp_path / 'state.db'}'); AssetLocks(s, 'p').acquire('r', ['a']); "
            "s.start_run('r', 'p', [], {}); s.record_attempts([dict(run_id='r', asset='a', status='success')]); "
            "s.finish_run('r', 'success'); print(s.last_built('p')['a'].status, s.lite is not None); s.close(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sqlalchemy'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}).stdout.split("\n")
    assert out[0] == "success True"
    assert out[1] == "[]"


def _bookkeeping(store: Store, dead: int) -> str:
    """A run's store traffic, with every kind of row and lock move; returns the refusal a held lock gives."""
    locks = AssetLocks(store, "p")
    store.start_run("r1", "p", ["a+"], {"exclude": [], "pid": 1})
    locks.acquire("r1", ["a", "b", "c"])
    store.heartbeat("r1")
    store.record_attempts([dict(run_id="r1", asset="a", status=AttemptStatus.FRESH, attempt=0, started_at=AT,
                                ended_at=AT, fingerprint="f", watermark=date(2026, 1, 1))],
                          LockRelease("r1", locks.names(["a"])))
    store.record_attempt("r1", "b", AttemptStatus.SKIPPED, attempt=0, fingerprint="g", error="upstream")
    store.record_attempts([dict(run_id="r1", asset="c", status=AttemptStatus.SUCCESS, attempt=2, started_at=AT,
                                ended_at=LATER, rows=5, bytes=7, fingerprint="h", error=None, watermark=None)])
    locks.release("r1", ["b"])
    locks.release("r1")
    store.finish_run("r1", RunStatus.SUCCESS)
    store.start_run("r2", "p", [], {})  # killed: its process is gone, its lock is taken over
    locks.acquire("r2", ["d"])
    with sqlite3.connect(store.url[len("sqlite:///"):]) as conn:
        conn.execute("update runs set pid = ? where run_id = 'r2'", (dead,))
        conn.execute("update locks set pid = ? where run_id = 'r2'", (dead,))
    assert store.reap_abandoned("p") == ["r2"]
    locks.acquire("r3", ["d", "e"])
    try:
        locks.acquire("r4", ["e"])
    except RunLockedError as exc:
        return str(exc)
    raise AssertionError("a held lock was taken")


def _rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(path)
    try:
        return {t: conn.execute(f"select * from {t} order by 1, 2").fetchall() for t in ("runs", "attempts", "locks")}
    finally:
        conn.close()


def _pin_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "utcnow", lambda: AT)
    monkeypatch.setattr(asset_locks_module, "utcnow", lambda: AT)


def test_a_runs_rows_are_the_same_both_ways(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _pin_time(monkeypatch)
    quick, full = tmp_path / "lite.db", tmp_path / "full.db"
    dead = _dead_pid()
    store = Store(f"sqlite:///{quick}")
    said_quick = _bookkeeping(store, dead)
    store.close()
    with monkeypatch.context() as patched:
        _full_path(patched)
        store = Store(f"sqlite:///{full}")
        said_full = _bookkeeping(store, dead)
        store.close()
    assert said_quick == said_full
    quick_rows, full_rows = _rows(quick), _rows(full)
    for table in ("runs", "attempts", "locks"):
        assert quick_rows[table] == full_rows[table], table
    assert len(quick_rows["attempts"]) == 3


def _reads(store: Store) -> list[Any]:
    return [store.run("r1"), store.run("nope"), store.find_run("r"), store.find_run("r1"), store.runs("p"),
            store.runs("p", 1), store.last_run("p"), store.last_run("p", finished_only=False), store.attempts("r1"),
            store.asset_history("p", "c"), store.asset_history("p", "a", 1), store.asset_history("q", "a"),
            store.latest_attempts("p"), store.last_built("p"),
            AssetLocks(store, "p").held()]


def test_each_way_reads_the_rows_alike(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _pin_time(monkeypatch)
    path = tmp_path / "state.db"
    store = Store(f"sqlite:///{path}")
    _bookkeeping(store, _dead_pid())
    quick = _reads(store)
    store.close()
    with monkeypatch.context() as patched:
        _full_path(patched)
        store = Store(f"sqlite:///{path}")
        full = _reads(store)
        store.close()
    assert quick == full
    assert quick[-1] == {"d": "r3", "e": "r3"}


def test_a_store_at_another_revision_is_left_to_alembic(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    store = Store(f"sqlite:///{path}")
    store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("update alembic_version set version_num = '0001'")
    assert lite.open_store(str(path), store_module.HEAD_REVISION) is None  # migrations: through Alembic


TIME = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}"
MODELS = {"models/warehouse/t.sql": "select id, d from lake.src",
          "models/warehouse/t.yml": "time_column: d\nchecks:\n  - row_count: {min: 1}\n",
          "models/mart/m.sql": "select count(*) as n from warehouse.t"}


def _masked(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every column of a run's rows; ids, run ids, times, pid and host only as filled or empty (times in the store's
    format), as tests/test_noop_stamp.py compares a stamped run's."""
    conn = sqlite3.connect(path)
    try:
        found = {}
        for table, volatile in (("runs", {"run_id", "started_at", "ended_at", "heartbeat_at", "pid", "host"}),
                                ("attempts", {"id", "run_id", "started_at", "ended_at", "seconds"}),
                                ("locks", {"run_id", "pid", "host", "acquired_at", "heartbeat_at"}),
                                ("check_results", {"id", "run_id", "checked_at"})):
            cur = conn.execute(f"select * from {table} order by 1")
            names = [d[0] for d in cur.description]
            found[table] = sorted(tuple(_mask(v) if n in volatile else v for n, v in zip(names, row, strict=True))
                                  for row in cur.fetchall())
        return found
    finally:
        conn.close()


def _mask(value: Any) -> str:
    if value is None:
        return "empty"
    return "time" if isinstance(value, str) and re.fullmatch(TIME, value) else "filled"


def test_a_whole_run_writes_the_same_rows_both_ways(project_dir, monkeypatch: pytest.MonkeyPatch) -> None:
    root = project_dir(MODELS, lake={"src": "select 1 as id, date '2026-12-01' as d"})
    state, kept = root / ".kiban" / "state.db", {}
    for way in ("full", "lite"):
        shutil.rmtree(root / ".kiban", ignore_errors=True)
        (root / "kiban.duckdb").unlink(missing_ok=True)
        with monkeypatch.context() as patched:
            if way == "full":
                _full_path(patched)
            done = operate.run(load_project(root), RunOptions())
        assert done.result.ok
        kept[way] = _masked(state)
    assert kept["lite"] == kept["full"]
    assert [row[2] for row in kept["lite"]["attempts"]] == ["mart.m", "warehouse.t"]
    assert kept["lite"]["attempts"][1][-1] == "2026-12-01"  # the watermark, as a Date column stores it
    assert len(kept["lite"]["check_results"]) == 1
