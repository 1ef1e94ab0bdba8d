"""Exactly once per change (issue 16): an update that keeps its cursor value lands, a transaction that commits
late is read again, and loads killed at random moments under two writers with overlapping transactions leave
`_latest` equal to the source — 0 lost, 0 stale, 0 duplicated — on the real MariaDB and PostgreSQL.

The short versions run in CI; ``-m slow`` runs the long ones (≥ 100 SIGKILLs per database)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from collect_race import Writers, collect, landed_twice, latest, project, race
from conftest import need_service

SOAK_KILLS = int(os.environ.get("KIBAN_SOAK_TRIALS", "100"))  # `make soak`: 100; a shorter soak: set it
MYSQL_ROOT = dict(host="127.0.0.1", port=3306, user="root", password="")


def my(database: str | None, *statements: str, params: Any = None) -> None:
    import pymysql

    conn = pymysql.connect(**MYSQL_ROOT, database=database, autocommit=True)  # type: ignore[arg-type]
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement, params)
    finally:
        conn.close()


@pytest.fixture
def mariadb() -> Iterator[tuple[str, str]]:
    need_service("MariaDB", "127.0.0.1", 3306)
    name = f"kiban_test_{uuid.uuid4().hex[:10]}"
    my(None, f"create database {name}")
    yield name, f"mysql://root@127.0.0.1:3306/{name}"
    my(None, f"drop database if exists {name}")


def pg(url: str, *statements: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)  # type: ignore[arg-type]


def my_source(rows: dict[Any, Any], database: str) -> dict[int, tuple[int, str]]:
    import pymysql

    conn = pymysql.connect(**MYSQL_ROOT, database=database)  # type: ignore[arg-type]
    try:
        with conn.cursor() as cur:
            cur.execute("select id, balance, note from acct")
            return {r[0]: (r[1], r[2]) for r in cur.fetchall()}
    finally:
        conn.close()


def pg_source(url: str) -> dict[int, tuple[int, str]]:
    import psycopg

    with psycopg.connect(url) as conn:
        return {r[0]: (r[1], r[2]) for r in conn.execute("select id, balance, note from acct").fetchall()}


# -- the same second ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("reader", ["duckdb", "driver"])
def test_mariadb_update_in_the_same_second_lands(tmp_path: Path, mariadb: tuple[str, str], reader: str) -> None:
    database, url = mariadb
    my(database, "create table acct (id int primary key, balance int, note varchar(20), "
                 "updated_at datetime not null default current_timestamp on update current_timestamp)")
    stamp = "set timestamp = unix_timestamp('2026-12-06 10:00:00')"  # the server's clock, held on one second
    my(database, stamp, "insert into acct values (1, 100, 'a', default), (2, 5, 'b', default)")
    root = project(tmp_path / "p", "mysql", f"    reader: {reader}\n")
    assert collect(root, url).returncode == 0
    my(database, stamp, "update acct set balance = 150 where id = 1")
    first = collect(root, url)
    assert first.returncode == 0, first.stderr
    my(database, stamp, "update acct set balance = 175 where id = 1")  # 10:00:00 again: the cursor did not move
    second = collect(root, url)
    assert second.returncode == 0, second.stderr
    read, landed, dropped = map(int, second.stdout.split()[:3])
    assert (read, landed, dropped) == (2, 1, 1), second.stdout  # the edge is read again; the unchanged row drops
    assert latest(root) == {1: (175, "a"), 2: (5, "b")}
    my(database, stamp, "update acct set balance = 150 where id = 1")  # back to an earlier value, same second
    assert collect(root, url).returncode == 0
    assert latest(root)[1] == (150, "a")
    again = collect(root, url)  # nothing changed: nothing lands
    assert again.stdout.split()[:3] == ["2", "0", "2"], again.stdout
    assert landed_twice(root) == 0


def test_postgres_update_in_the_same_transaction_time_lands(tmp_path: Path, postgres_url: str) -> None:
    pg(postgres_url, "create table acct (id int primary key, balance int, note text, updated_at timestamptz)",
       "insert into acct values (1, 100, 'a', '2026-12-06 10:00:00+00'), (2, 5, 'b', '2026-12-06 10:00:00+00')")
    root = project(tmp_path / "p", "postgres")
    assert collect(root, postgres_url).returncode == 0
    pg(postgres_url, "update acct set balance = 175 where id = 1")  # updated_at unchanged
    assert collect(root, postgres_url).returncode == 0
    assert latest(root) == {1: (175, "a"), 2: (5, "b")}


def test_a_declared_version_column_identifies_a_change(tmp_path: Path, postgres_url: str) -> None:
    pg(postgres_url, "create table acct (id int primary key, balance int, note text, updated_at timestamptz, "
                     "v int)",
       "insert into acct values (1, 100, 'a', '2026-12-06 10:00:00+00', 1)")
    root = project(tmp_path / "p", "postgres", "    version: v\n")
    assert collect(root, postgres_url).returncode == 0
    pg(postgres_url, "update acct set balance = 175, v = v + 1 where id = 1")
    done = collect(root, postgres_url)
    assert done.stdout.split()[:3] == ["1", "1", "0"], done.stdout
    pg(postgres_url, "update acct set note = 'ignored' where id = 1")  # the version did not move: no change
    done = collect(root, postgres_url)
    assert done.stdout.split()[:3] == ["1", "0", "1"], done.stdout
    assert latest(root) == {1: (175, "a")}


def test_postgres_xmin_is_the_rows_own_version(tmp_path: Path, postgres_url: str) -> None:
    """`version: xmin`: a change is (key, the transaction that wrote the row) — PostgreSQL's own row version."""
    pg(postgres_url, "create table acct (id int primary key, balance int, note text, updated_at timestamptz)",
       "insert into acct values (1, 100, 'a', '2026-12-06 10:00:00+00'), (2, 5, 'b', '2026-12-06 10:00:00+00')")
    root = project(tmp_path / "p", "postgres", "    version: xmin\n")
    first = collect(root, postgres_url)
    assert first.returncode == 0, first.stderr
    pg(postgres_url, "update acct set balance = 175 where id = 1")  # updated_at unchanged: xmin moved
    done = collect(root, postgres_url)
    assert done.stdout.split()[:3] == ["2", "1", "1"], done.stdout
    assert latest(root) == {1: (175, "a"), 2: (5, "b")}
    again = collect(root, postgres_url)  # nothing written: nothing lands
    assert again.stdout.split()[:3] == ["2", "0", "2"], again.stdout
    assert landed_twice(root) == 0
    (root / "sources" / "src.yml").write_text((root / "sources" / "src.yml").read_text().replace(
        "    version: xmin\n", "    version: xmin\n    query: select * from acct\n"))
    refused = collect(root, postgres_url)
    assert refused.returncode != 0
    assert "`version: xmin` reads PostgreSQL's row version" in refused.stderr


def test_mariadb_on_update_cursor_suggests_a_version_column(tmp_path: Path, mariadb: tuple[str, str]) -> None:
    database, url = mariadb
    my(database, "create table acct (id int primary key, balance int, note varchar(20), lock_version int, "
                 "updated_at datetime not null default current_timestamp on update current_timestamp)",
       "insert into acct values (1, 100, 'a', 1, default)")
    root = project(tmp_path / "p", "mysql")
    first = collect(root, url)
    assert first.returncode == 0, first.stderr
    assert "ON UPDATE CURRENT_TIMESTAMP in seconds" in first.stdout
    assert "`version: lock_version`" in first.stdout
    assert "ON UPDATE" not in collect(root, url).stdout  # said once, on the first load


def test_a_late_commit_behind_the_cursor_is_read_again(tmp_path: Path, postgres_url: str) -> None:
    """A transaction stamps updated_at = now() (its start), a load reads past it, it commits 8 s later — longer
    than the default look-back: the load saw it open and the next one reads back that far."""
    import time

    import psycopg

    pg(postgres_url, "create table acct (id int primary key, balance int, note text, updated_at timestamptz)",
       "insert into acct values (1, 100, 'a', now() - interval '1 hour'), (2, 5, 'b', now() - interval '1 hour')")
    root = project(tmp_path / "p", "postgres")
    assert collect(root, postgres_url).returncode == 0
    with psycopg.connect(postgres_url) as late:
        late.execute("update acct set balance = 999, updated_at = now() where id = 1")
        time.sleep(8)
        pg(postgres_url, "update acct set balance = 6, updated_at = now() where id = 2")  # moves the cursor on
        done = collect(root, postgres_url)
        assert done.returncode == 0, done.stderr
        late.commit()
    assert latest(root) == {1: (100, "a"), 2: (6, "b")}
    assert collect(root, postgres_url).returncode == 0
    assert latest(root) == {1: (999, "a"), 2: (6, "b")}


SLOW_READ = """
import sys, time
from pathlib import Path
import kiban.collect.connectors.mysql as mysql
from kiban.collect.load import load_table
from kiban.project import load_project
from kiban.store import Store
read = mysql.read
def slow(ctx, options):  # the machine stalls between asking for open transactions and reading
    Path(sys.argv[2]).touch()
    for _ in range(2400):  # until the test has made its writes (a fixed stall raced them on a loaded machine)
        if Path(sys.argv[3]).exists():
            break
        time.sleep(0.05)
    yield from read(ctx, options)
mysql.read = slow
project = load_project(sys.argv[1])
result = load_table(project, "src", "acct", Store(project.state_url))
print(result.record.rows_read, result.record.rows_landed, result.record.reread_s)
"""


def test_a_transaction_begun_after_the_question_and_before_the_read_is_read_again(
        tmp_path: Path, mariadb: tuple[str, str]) -> None:
    """The 100-kill soak under load once lost an inserted row: the load asked for open transactions, the machine
    stalled for seconds, a writer began (not in the answer) and stamped its row, another committed a later stamp
    that the read saw, and the first committed after the read — behind cursor minus the 5-second look-back. The
    next load now also reads back the time from the question to the end of the read."""
    import subprocess
    import sys
    import time

    import pymysql

    database, url = mariadb
    my(database, "create table acct (id int primary key, balance int, note varchar(20), "
                 "updated_at datetime not null default current_timestamp on update current_timestamp)",
       "insert into acct (id, balance, note, updated_at) values (1, 100, 'a', now() - interval 1 hour), "
       "(2, 5, 'b', now() - interval 1 hour)")
    root = project(tmp_path / "p", "mysql", "    reader: driver\n")
    assert collect(root, url).returncode == 0
    asked, go = tmp_path / "asked", tmp_path / "go"
    env = {**os.environ, "RACE_DB_URL": url, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen([sys.executable, "-c", SLOW_READ, str(root), str(asked), str(go)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    late = pymysql.connect(**MYSQL_ROOT, database=database)  # type: ignore[arg-type]
    try:
        deadline = time.monotonic() + 60
        while not asked.exists():
            assert time.monotonic() < deadline, child.stderr.read() if child.stderr else ""
            assert child.poll() is None, child.stderr.read() if child.stderr else ""
            time.sleep(0.05)
        with late.cursor() as cur:  # begins after the question: stamps now()
            cur.execute("update acct set balance = 999 where id = 1")
        time.sleep(7)
        my(database, "update acct set balance = 6 where id = 2")  # committed 7 s later: the read's cursor
        go.touch()  # the stalled load reads now, after both writes (and before the first commits)
        out, err = child.communicate(timeout=180)
        assert child.returncode == 0, err[-2000:]
        late.commit()  # after the read
    finally:
        late.close()
    assert latest(root) == {1: (100, "a"), 2: (6, "b")}
    assert collect(root, url).returncode == 0
    assert latest(root) == {1: (999, "a"), 2: (6, "b")}
    assert float(out.split()[2]) >= 12  # read back: 5 s + the ≥ 7 s between the question and the read's end


# -- two writers, loads killed at random moments ------------------------------------------------------------------

def _mariadb_race(tmp_path: Path, mariadb: tuple[str, str], kills: int) -> None:
    import pymysql

    database, url = mariadb
    my(database, "create table acct (id int primary key, balance int, note varchar(40), "
                 "updated_at datetime not null default current_timestamp on update current_timestamp)")
    my(database, "insert into acct (id, balance, note) with recursive n(i) as (select 1 union all select i + 1 "
                 "from n where i < 1000) select i, 0, 'start' from n")
    root = project(tmp_path / "p", "mysql")
    writers = Writers(lambda: pymysql.connect(**MYSQL_ROOT, database=database),  # type: ignore[arg-type]
                      "update acct set balance = %s, note = %s where id = %s",
                      "insert into acct (id, balance, note) values (%s, %s, %s)", ids=1000, long_every=10)
    counts = race(root, url, writers, kills)
    source, lake = my_source({}, database), latest(root)
    lost = set(source) - set(lake)
    stale = {k for k in source if k in lake and lake[k] != source[k]}
    assert (lost, stale, landed_twice(root)) == (set(), set(), 0), counts
    assert counts["killed"] >= kills
    assert counts["commits"] > 0
    print(f"race: {counts} — {len(source)} rows, 0 lost, 0 stale, 0 duplicated")


def _postgres_race(tmp_path: Path, url: str, kills: int) -> None:
    import psycopg

    pg(url, "create table acct (id int primary key, balance int, note text, updated_at timestamptz default now())",
       "insert into acct select i, 0, 'start', now() from generate_series(1, 1000) i")
    root = project(tmp_path / "p", "postgres")
    writers = Writers(lambda: psycopg.connect(url),
                      "update acct set balance = %s, note = %s, updated_at = now() where id = %s",
                      "insert into acct (id, balance, note) values (%s, %s, %s)", ids=1000, long_every=10)
    counts = race(root, url, writers, kills)
    source, lake = pg_source(url), latest(root)
    lost = set(source) - set(lake)
    stale = {k for k in source if k in lake and lake[k] != source[k]}
    assert (lost, stale, landed_twice(root)) == (set(), set(), 0), counts
    assert counts["killed"] >= kills
    assert counts["commits"] > 0
    print(f"race: {counts} — {len(source)} rows, 0 lost, 0 stale, 0 duplicated")


def test_mariadb_two_writers_and_killed_loads(tmp_path: Path, mariadb: tuple[str, str]) -> None:
    _mariadb_race(tmp_path, mariadb, kills=6)


def test_postgres_two_writers_and_killed_loads(tmp_path: Path, postgres_url: str) -> None:
    _postgres_race(tmp_path, postgres_url, kills=6)


@pytest.mark.soak
@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_mariadb_two_writers_and_a_hundred_killed_loads(tmp_path: Path, mariadb: tuple[str, str]) -> None:
    _mariadb_race(tmp_path, mariadb, kills=SOAK_KILLS)


@pytest.mark.soak
@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_postgres_two_writers_and_a_hundred_killed_loads(tmp_path: Path, postgres_url: str) -> None:
    _postgres_race(tmp_path, postgres_url, kills=SOAK_KILLS)
