"""What the cursor hold-out tests share (tests/test_collect_cursor_edges.py, tests/test_collect_cursor_clock.py): a
project collecting ``src.acct`` from a real database, one load in this process, a source written through DB-API,
the oracle (``_latest`` is the source), a generator of writers with NULL cursors, and fresh databases."""

from __future__ import annotations

import datetime as dt
import random
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from collect_race import landed_twice, latest
from conftest import need_service

from kiban.collect.load import load_table
from kiban.project import load_project
from kiban.store import Store

MYSQL_ROOT = dict(host="127.0.0.1", port=3306, user="root", password="")


def project(root: Path, kind: str, url: str, extra: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "kiban.yml").write_text("name: edges\ntimezone: Asia/Tokyo\n")
    (root / "sources").mkdir(exist_ok=True)
    (root / "sources" / "src.yml").write_text(
        f"type: {kind}\nurl: {url}\ntables:\n  acct:\n    mode: incremental\n    cursor: updated_at\n"
        f"    primary_key: [id]\n{extra}")
    return root


def load(root: Path) -> tuple[int, int, int, int]:
    proj = load_project(root)
    store = Store(proj.state_url)
    try:
        r = load_table(proj, "src", "acct", store).record
    finally:
        store.engine.dispose()
    return r.rows_read, r.rows_landed, r.rows_dropped, r.rows_quarantined


class Source:
    """A table ``acct (id, balance, note, updated_at)`` in a real database, written through DB-API."""

    def __init__(self, connect: Callable[[], Any], mark: str, stamp: Callable[[dt.datetime], Any]) -> None:
        self.connect, self.mark, self.stamp = connect, mark, stamp

    def run(self, sql: str, *rows: tuple[Any, ...]) -> None:
        conn = self.connect()
        try:
            cur = conn.cursor()
            for row in rows or [()]:
                cur.execute(sql.replace("?", self.mark), row)
            conn.commit()
        finally:
            conn.close()

    def rows(self) -> dict[Any, tuple[Any, Any]]:
        conn = self.connect()
        try:
            cur = conn.cursor()
            cur.execute("select id, balance, note from acct")
            return {r[0]: (r[1], r[2]) for r in cur.fetchall()}
        finally:
            conn.close()


def assert_same(landed: dict[Any, Any], source: dict[Any, Any], seed: int) -> None:
    lost = [k for k in source if k not in landed]
    stale = [k for k in source if k in landed and landed[k] != source[k]]
    extra = [k for k in landed if k not in source]
    assert not (lost or stale or extra), f"seed {seed}: {len(lost)} lost {lost[:5]}, {len(stale)} stale " \
        f"{stale[:5]}, {len(extra)} not in the source, of {len(source)} rows"


def writers_with_null_cursors(source: Source, root: Path, seed: int, rounds: int) -> dict[str, int]:
    """Random inserts and updates between loads: a cursor the application sets — a clock that moves forward, or
    NULL (not known yet, cleared) — and after each load the oracle: ``_latest`` is the source, nothing twice."""
    rnd = random.Random(seed)
    clock = dt.datetime(2026, 12, 6, 10, 0, 0)
    ids: list[int] = []
    nulls = 0
    for _ in range(rounds):
        for _ in range(rnd.randint(1, 6)):
            clock += dt.timedelta(seconds=rnd.choice([0, 1, 7]))
            cursor = None if rnd.random() < 0.35 else source.stamp(clock)
            nulls += cursor is None
            if not ids or rnd.random() < 0.4:
                ids.append(len(ids) + 1)
                source.run("insert into acct values (?, ?, ?, ?)", (ids[-1], rnd.randint(0, 99), "n", cursor))
            else:
                key = rnd.choice(ids)
                source.run("update acct set balance = ?, note = ?, updated_at = ? where id = ?",
                           (rnd.randint(0, 99), rnd.choice("xyz"), cursor, key))
        load(root)
        assert_same(latest(root), source.rows(), seed)
    assert landed_twice(root) == 0
    return {"ids": len(ids), "null cursors": nulls}



def sqlite_source(path: Path, kind: str = "DATETIME") -> Source:
    conn = sqlite3.connect(path)
    conn.execute(f"create table acct (id integer primary key, balance integer, note text, updated_at {kind})")
    conn.commit()
    conn.close()
    return Source(lambda: sqlite3.connect(path), "?", lambda t: t.isoformat(sep=" "))


@pytest.fixture
def pg_database() -> Iterator[str]:
    need_service("PostgreSQL", "127.0.0.1", 5432)
    import psycopg

    name = f"kiban_edges_{uuid.uuid4().hex[:10]}"
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
        conn.execute(f"alter database \"{name}\" set timezone = 'Asia/Tokyo'")  # a server far from UTC
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture
def mariadb_database() -> Iterator[str]:
    need_service("MariaDB", "127.0.0.1", 3306)
    import pymysql

    name = f"kiban_edges_{uuid.uuid4().hex[:10]}"
    conn = pymysql.connect(**MYSQL_ROOT, autocommit=True)  # type: ignore[arg-type]
    try:
        conn.cursor().execute(f"create database {name}")
        yield name
        conn.cursor().execute(f"drop database if exists {name}")
    finally:
        conn.close()


def quarantined_rows(root: Path) -> list[dict[str, Any]]:
    import duckdb

    files = sorted((root / "lake" / "_quarantine").rglob("*.parquet"))
    if not files:
        return []
    listed = ", ".join("'" + str(f) + "'" for f in files)
    cur = duckdb.connect().execute(f"select location, reason, raw from read_parquet([{listed}])")
    return [dict(zip(("location", "reason", "raw"), r, strict=True)) for r in cur.fetchall()]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)
