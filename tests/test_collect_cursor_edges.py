"""Wave 10 hold-out attacks on incremental cursors: rows whose cursor the source leaves NULL, SQLite cursors
spelled as the application writes them (ISO text with a ``T`` or a time-zone offset, epoch seconds), and keys
that are NULL. A generator of random writers against an oracle (the source itself) on SQLite, PostgreSQL and
MariaDB: after every load ``_latest`` equals the source — 0 lost, 0 stale — and no version landed twice."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from collect_race import latest

from kiban.collect.load import load_table
from kiban.project import load_project
from kiban.store import Store
from tests.helpers.cursor_edges import (
    MYSQL_ROOT,
    Source,
    assert_same,
    load,
    mariadb_database,
    pg_database,
    project,
    quarantined_rows,
    sqlite_source,
    writers_with_null_cursors,
)

__all__ = ["mariadb_database", "pg_database"]  # fixtures, asked for by name


# -- NULL cursors: SQLite, PostgreSQL, MariaDB ----------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, *(pytest.param(n, marks=pytest.mark.slow) for n in range(1, 6))])
def test_sqlite_rows_with_a_null_cursor_land_and_their_changes_too(tmp_path: Path, seed: int) -> None:
    source = sqlite_source(tmp_path / "src.db")
    root = project(tmp_path / "p", "sqlite", f"sqlite:///{tmp_path / 'src.db'}")
    counts = writers_with_null_cursors(source, root, seed, rounds=8)
    assert counts["null cursors"] > 0


@pytest.mark.parametrize(("kind", "reader"), [
    ("timestamptz", "duckdb"), ("timestamp", "driver"),
    *(pytest.param(k, r, marks=pytest.mark.slow) for k, r in [("timestamptz", "driver"), ("timestamp", "duckdb"),
                                                                ("timestamptz", "duckdb-query"),
                                                                ("timestamp", "duckdb-query")])])
def test_postgres_rows_with_a_null_cursor_land_and_their_changes_too(tmp_path: Path, pg_database: str,
                                                                     reader: str, kind: str) -> None:
    import psycopg

    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute(f"create table acct (id int primary key, balance int, note text, updated_at {kind})")
    source = Source(lambda: psycopg.connect(pg_database), "%s",
                    lambda t: t.replace(tzinfo=dt.UTC) if kind == "timestamptz" else t)
    os.environ["EDGES_PG_URL"] = pg_database
    extra = "    reader: duckdb\n    query: select * from acct\n" if reader == "duckdb-query" else \
        f"    reader: {reader}\n"
    root = project(tmp_path / "p", "postgres", "env:EDGES_PG_URL", extra)
    writers_with_null_cursors(source, root, seed=11, rounds=6)


@pytest.mark.parametrize("reader", ["driver", pytest.param("duckdb", marks=pytest.mark.slow)])
def test_mariadb_rows_with_a_null_cursor_land_and_their_changes_too(tmp_path: Path, mariadb_database: str,
                                                                    reader: str) -> None:
    import pymysql

    def connect() -> Any:
        return pymysql.connect(**MYSQL_ROOT, database=mariadb_database)  # type: ignore[arg-type]

    conn = connect()
    try:
        conn.cursor().execute("create table acct (id int primary key, balance int, note varchar(20), "
                              "updated_at datetime(6) null)")
    finally:
        conn.close()
    os.environ["EDGES_MY_URL"] = f"mysql://root@127.0.0.1:3306/{mariadb_database}"
    root = project(tmp_path / "p", "mysql", "env:EDGES_MY_URL", f"    reader: {reader}\n")
    writers_with_null_cursors(Source(connect, "%s", lambda t: t), root, seed=5, rounds=6)


# -- SQLite: a time cursor however the application spells it --------------------------------------------------------

def spelled(rnd: random.Random, instant: dt.datetime) -> Any:
    """One instant (UTC) as applications write it into a SQLite DATETIME column."""
    utc = instant.replace(tzinfo=dt.UTC)
    tokyo, new_york = utc.astimezone(dt.timezone(dt.timedelta(hours=9))), utc.astimezone(dt.timezone(-dt.timedelta(
        hours=5)))
    return rnd.choice([
        instant.isoformat(sep=" "),  # what SQLite's own datetime() writes
        instant.isoformat(),  # Python's default: a T
        instant.isoformat() + "Z",
        tokyo.isoformat(),  # +09:00
        new_york.isoformat(sep=" "),  # -05:00
        int(utc.timestamp()) if not instant.microsecond else utc.timestamp(),  # epoch seconds
        utc.timestamp(),
    ])


@pytest.mark.parametrize("seed", [0, *(pytest.param(n, marks=pytest.mark.slow) for n in range(1, 8))])
def test_sqlite_time_cursors_compare_as_instants_whatever_their_spelling(tmp_path: Path, seed: int) -> None:
    rnd = random.Random(seed)
    source = sqlite_source(tmp_path / "src.db")
    source.stamp = lambda t: spelled(rnd, t)  # type: ignore[method-assign]
    root = project(tmp_path / "p", "sqlite", f"sqlite:///{tmp_path / 'src.db'}")
    writers_with_null_cursors(source, root, seed, rounds=10)


# -- keys that are NULL: quarantined with their row, never folded into another one ---------------------------------

@pytest.mark.parametrize("mode", ["full", "incremental"])
@pytest.mark.parametrize("seed", [0, *(pytest.param(n, marks=pytest.mark.slow) for n in range(1, 5))])
def test_sqlite_rows_with_a_null_key_are_quarantined_not_dropped(tmp_path: Path, mode: str, seed: int) -> None:
    """A source table whose key column has no constraint: random rows, some with a NULL key. Every load's NULL-key
    rows are quarantined (with the reason), every other row lands, and the counts reconcile."""
    rnd = random.Random(seed)
    path = tmp_path / "src.db"
    conn = sqlite3.connect(path)
    conn.execute("create table acct (id integer, balance integer, note text, updated_at DATETIME)")
    conn.commit()
    root = project(tmp_path / "p", "sqlite", f"sqlite:///{path}")
    if mode == "full":
        (root / "sources" / "src.yml").write_text(f"type: sqlite\nurl: sqlite:///{path}\ntables:\n  acct:\n"
                                                  "    primary_key: [id]\n")
    clock = dt.datetime(2026, 12, 6, 10)
    next_id, refused = 1, 0
    for _ in range(5):
        new_nulls = 0
        for n in range(rnd.randint(2, 9)):  # one keyed row at least: a load whose every row is refused fails
            clock += dt.timedelta(seconds=rnd.choice([1, 10]))
            key = None if n and rnd.random() < 0.3 else next_id
            next_id += key is not None
            new_nulls += key is None
            conn.execute("insert into acct values (?, ?, ?, ?)", (key, rnd.randint(0, 9), "n", clock.isoformat()))
        conn.commit()
        read, landed, dropped, quarantined = load(root)
        assert read == landed + dropped + quarantined
        all_nulls = conn.execute("select count(*) from acct where id is null").fetchone()[0]
        # full: every NULL-key row of the table, each load; incremental: at least this round's (the look-back
        # reads some earlier ones again, and quarantines them again)
        assert quarantined == all_nulls if mode == "full" else new_nulls <= quarantined <= all_nulls
        refused += quarantined
        source = {r[0]: (r[1], r[2]) for r in conn.execute("select id, balance, note from acct where id is not null")}
        assert_same(latest(root), source, seed)
    stamps = {r[0] for r in conn.execute("select updated_at from acct where id is null")}
    conn.close()
    reasons = quarantined_rows(root)
    assert refused > 0
    assert len(reasons) == refused
    assert all(r["reason"] == "primary key column id is NULL: the row cannot be told from others" for r in reasons)
    assert all('"id": null' in r["raw"] for r in reasons)
    assert {json.loads(r["raw"])["updated_at"] for r in reasons} >= {s.replace("T", " ") for s in stamps} or \
        {json.loads(r["raw"])["updated_at"] for r in reasons} >= stamps  # every NULL-key row is in quarantine


def test_csv_rows_with_an_empty_key_are_quarantined_with_their_line(tmp_path: Path) -> None:
    root = tmp_path / "p"
    (root / "sources").mkdir(parents=True)
    (root / "landing").mkdir()
    (root / "kiban.yml").write_text("name: edges\n")
    (root / "sources" / "shop.yml").write_text(
        "type: files\ntables:\n  orders:\n    path: landing/*.csv\n    settle: 0\n    primary_key: [id]\n"
        "    columns:\n      - {name: id, type: INTEGER}\n")
    (root / "landing" / "a.csv").write_text("id,amount\n1,10\n,11\n,12\n2,13\n")
    proj = load_project(root)
    store = Store(proj.state_url)
    try:
        r = load_table(proj, "shop", "orders", store).record
    finally:
        store.engine.dispose()
    assert (r.rows_read, r.rows_landed, r.rows_dropped, r.rows_quarantined) == (4, 2, 0, 2)
    where = sorted(row["location"] for row in quarantined_rows(root))
    assert where == ["landing/a.csv:3", "landing/a.csv:4"]
