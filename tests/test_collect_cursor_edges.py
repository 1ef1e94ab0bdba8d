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


# -- NULL cursors: SQLite, PostgreSQL, MariaDB ----------------------------------------------------------------------

def sqlite_source(path: Path, kind: str = "DATETIME") -> Source:
    conn = sqlite3.connect(path)
    conn.execute(f"create table acct (id integer primary key, balance integer, note text, updated_at {kind})")
    conn.commit()
    conn.close()
    return Source(lambda: sqlite3.connect(path), "?", lambda t: t.isoformat(sep=" "))


@pytest.mark.parametrize("seed", range(3))
def test_sqlite_rows_with_a_null_cursor_land_and_their_changes_too(tmp_path: Path, seed: int) -> None:
    source = sqlite_source(tmp_path / "src.db")
    root = project(tmp_path / "p", "sqlite", f"sqlite:///{tmp_path / 'src.db'}")
    counts = writers_with_null_cursors(source, root, seed, rounds=8)
    assert counts["null cursors"] > 0


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


@pytest.mark.parametrize("reader", ["duckdb", "driver", "duckdb-query"])
@pytest.mark.parametrize("kind", ["timestamptz", "timestamp"])
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


@pytest.mark.parametrize("reader", ["duckdb", "driver"])
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


@pytest.mark.parametrize("seed", range(4))
def test_sqlite_time_cursors_compare_as_instants_whatever_their_spelling(tmp_path: Path, seed: int) -> None:
    rnd = random.Random(seed)
    source = sqlite_source(tmp_path / "src.db")
    source.stamp = lambda t: spelled(rnd, t)  # type: ignore[method-assign]
    root = project(tmp_path / "p", "sqlite", f"sqlite:///{tmp_path / 'src.db'}")
    writers_with_null_cursors(source, root, seed, rounds=10)


# -- keys that are NULL: quarantined with their row, never folded into another one ---------------------------------

def quarantined_rows(root: Path) -> list[dict[str, Any]]:
    import duckdb

    files = sorted((root / "lake" / "_quarantine").rglob("*.parquet"))
    if not files:
        return []
    listed = ", ".join("'" + str(f) + "'" for f in files)
    cur = duckdb.connect().execute(f"select location, reason, raw from read_parquet([{listed}])")
    return [dict(zip(("location", "reason", "raw"), r, strict=True)) for r in cur.fetchall()]


@pytest.mark.parametrize("mode", ["full", "incremental"])
@pytest.mark.parametrize("seed", range(3))
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
    assert len(reasons) == refused and refused > 0
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


# -- a cursor ahead of the clock: a row dated in the future, a wall clock set back -----------------------------------

def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@pytest.mark.parametrize(("zone", "leads"), [
    ("UTC", (dt.timedelta(minutes=5), dt.timedelta(hours=9), dt.timedelta(days=3650))),
    # a naive cursor in a Tokyo project may be Tokyo's wall clock: a lead counts once it passes that too
    ("Asia/Tokyo", (dt.timedelta(hours=10), dt.timedelta(days=2), dt.timedelta(days=3650)))])
@pytest.mark.parametrize("seed", range(3))
def test_a_row_dated_in_the_future_does_not_hide_the_changes_after_it(tmp_path: Path, seed: int, zone: str,
                                                                     leads: tuple[dt.timedelta, ...]) -> None:
    """Writers stamp rows with the time (SQLite: the application sets the cursor, here in UTC); now and then one is
    dated ahead — a typo'd year, a client whose clock runs fast. The cursor jumps there, and before, every change
    stamped with the right time after it was never read again. The oracle: ``_latest`` is the source after every
    load."""
    rnd = random.Random(seed)
    source = sqlite_source(tmp_path / "src.db")
    root = project(tmp_path / "p", "sqlite", f"sqlite:///{tmp_path / 'src.db'}")
    (root / "kiban.yml").write_text(f"name: edges\ntimezone: {zone}\n")
    ids: list[int] = []
    ahead = 0
    for round_ in range(7):
        for _ in range(rnd.randint(1, 5)):
            stamp = utc_now()
            if (round_ in (1, 4) and rnd.random() < 0.5) or (round_ == 2 and not ahead):
                stamp += rnd.choice(leads)
                ahead += 1
            if not ids or rnd.random() < 0.5:
                ids.append(len(ids) + 1)
                source.run("insert into acct values (?, ?, ?, ?)", (ids[-1], rnd.randint(0, 99), "n",
                                                                    stamp.isoformat(sep=" ")))
            else:
                source.run("update acct set balance = ?, updated_at = ? where id = ?",
                           (rnd.randint(100, 999), stamp.isoformat(sep=" "), rnd.choice(ids)))
        load(root)
        assert_same(latest(root), source.rows(), seed)
    assert landed_twice(root) == 0
    assert ahead


def test_the_clock_floor_covers_every_change_across_the_end_of_daylight_saving_time() -> None:
    """A wall-clock cursor in Europe/Berlin (a server's `localtimestamp`, MySQL's DATETIME … CURRENT_TIMESTAMP):
    at 03:00 CEST on 2026-10-25 the clock shows 02:00 again. Random load times and writes around it: every write
    made after a load started carries a stamp at or past the next load's ``since`` (the generator of time: 2,000
    loads of random spacing)."""
    from zoneinfo import ZoneInfo

    from kiban.collect.load import clock_floor, since_of
    from kiban.collect.spec import TableSpec

    berlin = ZoneInfo("Europe/Berlin")
    table = TableSpec(mode="incremental", cursor="updated_at")
    rnd = random.Random(7)

    def wall(at: dt.datetime) -> dt.datetime:
        return at.astimezone(berlin).replace(tzinfo=None)

    for _ in range(2000):
        start = dt.datetime(2026, 10, 24, 23, 0, tzinfo=dt.UTC) + dt.timedelta(seconds=rnd.uniform(0, 4 * 3600))
        read = start + dt.timedelta(seconds=rnd.uniform(0, 3))
        cursor = wall(read) - dt.timedelta(seconds=rnd.uniform(0, 60))  # the newest row the load read
        following = read + dt.timedelta(seconds=rnd.uniform(1, 3 * 3600))
        writes = [read + (following - read) * rnd.random() for _ in range(5)]
        floor = clock_floor(cursor, start.replace(tzinfo=None), ("Europe/Berlin",), now=following)
        since = since_of(cursor, table, 5.0, floor)
        assert all(wall(w) >= since for w in writes), (start, cursor, since, [wall(w) for w in writes])
