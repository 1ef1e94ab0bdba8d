"""Wave 10 hold-out attacks on time cursors ahead of the clock: a row dated in the future (a typo'd year, a client
whose clock runs fast) and a wall clock set back at the end of daylight saving time — before, every change stamped
with the right time after it fell behind ``since`` and was never read. A generator of writers against the oracle
(``_latest`` is the source after every load), a generator of load times across the end of DST, and loads
SIGKILLed at random moments with NULL and future cursors on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pytest
from collect_race import landed_twice, latest

from tests.helpers.cursor_edges import assert_same, load, pg_database, project, sqlite_source, utc_now

__all__ = ["pg_database"]  # a fixture, asked for by name


# -- a cursor ahead of the clock: a row dated in the future, a wall clock set back -----------------------------------

@pytest.mark.parametrize(("zone", "leads"), [
    ("UTC", (dt.timedelta(minutes=5), dt.timedelta(hours=9), dt.timedelta(days=3650))),
    # a naive cursor in a Tokyo project may be Tokyo's wall clock: a lead counts once it passes that too
    ("Asia/Tokyo", (dt.timedelta(hours=10), dt.timedelta(days=2), dt.timedelta(days=3650)))])
@pytest.mark.parametrize("seed", [0, *(pytest.param(n, marks=pytest.mark.slow) for n in range(1, 5))])
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


# -- all of it at once, with loads SIGKILLed at random moments ------------------------------------------------------

def kill_trial(tmp_path: Path, url: str, kills: int, seed: int) -> dict[str, int]:
    """PostgreSQL: random inserts and updates — the server's clock, NULL, now and then a row dated ahead — while
    loads run in child processes and are SIGKILLed at random moments; plain loads between. After two loads that
    catch up, ``_latest`` is the source and no version landed twice."""
    import psycopg
    from collect_race import collect, collect_killed

    rnd = random.Random(seed)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create table acct (id int primary key, balance int, note text, updated_at timestamptz)")
    root = project(tmp_path / "p", "postgres", "env:RACE_DB_URL")
    killed = finished = 0
    ids: list[int] = []
    while killed < kills:
        with psycopg.connect(url, autocommit=True) as conn:
            for _ in range(rnd.randint(1, 8)):
                stamp = rnd.choices(["now()", "null", "now() + interval '3 days'"], [0.7, 0.25, 0.05])[0]
                if not ids or rnd.random() < 0.4:
                    ids.append(len(ids) + 1)
                    conn.execute(f"insert into acct values (%s, %s, 'n', {stamp})",  # type: ignore[arg-type]
                                 (ids[-1], rnd.randint(0, 99)))
                else:
                    conn.execute(f"update acct set balance = %s, updated_at = {stamp} where id = %s",  # type: ignore[arg-type]
                                 (rnd.randint(100, 999), rnd.choice(ids)))
        if collect_killed(root, url, rnd.uniform(0.3, 2.5)):
            killed += 1
        else:
            finished += 1
        if rnd.random() < 0.5:
            done = collect(root, url)
            assert done.returncode == 0, done.stderr[-2000:]
            finished += 1
    for _ in range(2):
        done = collect(root, url)
        assert done.returncode == 0, done.stderr[-2000:]
    with psycopg.connect(url) as conn:
        source = {r[0]: (r[1], r[2]) for r in conn.execute("select id, balance, note from acct").fetchall()}
    assert_same(latest(root), source, seed)
    assert landed_twice(root) == 0
    return {"killed": killed, "finished": finished, "ids": len(ids)}


def test_null_and_future_cursors_with_loads_killed_at_random(tmp_path: Path, pg_database: str) -> None:
    kill_trial(tmp_path, pg_database, kills=3, seed=3)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
def test_null_and_future_cursors_with_loads_killed_at_random_soak(tmp_path: Path, pg_database: str,
                                                                  seed: int) -> None:
    kill_trial(tmp_path, pg_database, kills=40, seed=seed)
