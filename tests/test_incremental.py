"""Incremental models: only recent partitions are processed, and the result always equals a full rebuild."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from kiban.project import load_project
from kiban.run import RunOptions, run_project
from tests.conftest import write_parquet

DAILY_SQL = ("select cast(ts as date) as day, store, count(*) as n, sum(amount) as total "
             "from lake.events group by all")
EVENTS_SQL = "select ts, store, amount, case when amount < 0 then error('negative amount') end as guard " \
             "from lake.events"
MODELS = {
    "models/warehouse/daily.sql": DAILY_SQL,
    "models/warehouse/daily.yml": "materialized: incremental\ntime_column: day\ngrain: day\nlookback: 2\n",
    "models/warehouse/events.sql": EVENTS_SQL,
    "models/warehouse/events.yml": "materialized: incremental\ntime_column: ts\ngrain: hour\nlookback: 48\n",
    "models/mart/monthly.sql": "select date_trunc('month', day)::date as month, sum(total) as total "
                               "from warehouse.daily group by all",
    "models/mart/monthly.yml": "materialized: incremental\ntime_column: month\ngrain: month\nlookback: 0\n",
}


def events(first_day: int, days: int, seed: int = 0, amount_offset: int = 0) -> str:
    """Rows of ``days`` days from 2024-01-<first_day>: a few per hour, in three stores."""
    return (f"select timestamp '2024-01-01' + to_days({first_day - 1}) + to_minutes(i * 37) as ts, "
            f"(i + {seed}) % 3 as store, ((i * 7 + {seed}) % 100) + {amount_offset} as amount "
            f"from range({days * 24 * 60 // 37}) t(i)")


def run(root: Path, **options: object):
    return run_project(load_project(root), RunOptions(**options))  # type: ignore[arg-type]


def checksum(con: duckdb.DuckDBPyConnection, table: str) -> str:
    return con.execute(f"select count(*) || ':' || coalesce(sum(hash(t)), 0) from {table} t").fetchone()[0]


def published(root: Path) -> dict[str, str]:
    con = duckdb.connect(str(root / "kiban.duckdb"), read_only=True)
    try:
        return {t: checksum(con, t) for t in ("warehouse.daily", "warehouse.events", "mart.monthly")}
    finally:
        con.close()


def rebuilt(root: Path, events_too: bool = True) -> dict[str, str]:
    """What a full rebuild of the same lake gives (plain DuckDB, rows with a null time left out)."""
    con = duckdb.connect()
    try:
        for schema in ("lake", "warehouse", "mart"):
            con.execute(f"create schema {schema}")
        glob = str(root / "lake/events/*.parquet")
        con.execute(f"create view lake.events as select * from read_parquet('{glob}', union_by_name = true)")
        con.execute(f"create table warehouse.daily as select * from ({DAILY_SQL}) where day is not null")
        if events_too:
            con.execute(f"create table warehouse.events as select * from ({EVENTS_SQL}) where ts is not null")
        con.execute("create table mart.monthly as select date_trunc('month', day)::date as month, "
                    "sum(total) as total from warehouse.daily group by all")
        return {t: checksum(con, t) for t in ("warehouse.daily", "warehouse.events", "mart.monthly")
                if events_too or t != "warehouse.events"}
    finally:
        con.close()


def processed_at(root: Path, asset: str) -> dict[str, str]:
    con = duckdb.connect(str(root / "kiban.duckdb"), read_only=True)
    try:
        rows = con.execute('select start::varchar, processed_at::varchar from main."__kiban_partitions" '
                           "where asset = ?", [asset]).fetchall()
    finally:
        con.close()
    return dict(rows)


@pytest.fixture
def shop(make_project):
    root = make_project(MODELS, {"events": events(1, 5)})
    return root


def test_appends_late_arrivals_and_updates_equal_a_full_rebuild(shop):
    root = shop
    assert run(root).status == "success"
    assert published(root) == rebuilt(root)
    before = processed_at(root, "warehouse.daily")
    assert len(before) == 5

    # append two new days
    write_parquet(root / "lake/events/part-1.parquet", events(6, 2, seed=1))
    assert run(root).status == "success"
    assert published(root) == rebuilt(root)
    after = processed_at(root, "warehouse.daily")
    assert len(after) == 7
    # only the newest processed day minus the lookback of 2 and later were processed again
    assert {d for d in after if after[d] == before.get(d)} == {"2024-01-01 00:00:00", "2024-01-02 00:00:00"}

    # late rows for a day inside the lookback window
    write_parquet(root / "lake/events/part-2.parquet", events(6, 1, seed=2))
    assert run(root).status == "success"
    assert published(root) == rebuilt(root)

    # an update: the file of the newest days is replaced with other amounts
    write_parquet(root / "lake/events/part-1.parquet", events(6, 2, seed=1, amount_offset=5))
    assert run(root).status == "success"
    assert published(root) == rebuilt(root)

    # nothing new: nothing to do
    again = run(root)
    assert again.status == "nothing"
    assert again.plan.build == []


def test_a_late_arrival_outside_the_lookback_needs_a_full_refresh(shop):
    root = shop
    run(root)
    write_parquet(root / "lake/events/part-1.parquet", events(6, 5, seed=1))
    run(root)
    write_parquet(root / "lake/events/part-2.parquet", events(1, 1, seed=3))  # day 1: far behind the lookback
    run(root)
    assert published(root)["warehouse.daily"] != rebuilt(root)["warehouse.daily"]
    assert run(root, full_refresh=True).status == "success"
    assert published(root) == rebuilt(root)


def test_a_failing_run_keeps_the_previous_rows(shop):
    root = shop
    run(root)
    good = published(root)
    write_parquet(root / "lake/events/part-1.parquet", events(5, 1, seed=1, amount_offset=-500))
    result = run(root)
    assert result.status == "failed"
    assert result.outcomes["warehouse.events"].status == "failed"
    assert "negative amount" in (result.outcomes["warehouse.events"].error or "")
    assert published(root)["warehouse.events"] == good["warehouse.events"]
    # the other models took the new rows
    assert published(root)["warehouse.daily"] == rebuilt(root, events_too=False)["warehouse.daily"]


def test_changed_sql_rebuilds_the_whole_table(shop):
    root = shop
    run(root)
    (root / "models/warehouse/daily.sql").write_text(DAILY_SQL.replace("sum(amount)", "sum(amount) * 2"))
    run(root)
    con = duckdb.connect(str(root / "kiban.duckdb"), read_only=True)
    try:
        total = con.execute("select sum(total) from warehouse.daily").fetchone()[0]
        raw = con.execute("select sum(amount) from warehouse.events").fetchone()[0]
    finally:
        con.close()
    assert total == 2 * raw


def test_a_missing_time_column_is_a_clear_error(make_project):
    root = make_project({"models/warehouse/daily.sql": DAILY_SQL,
                         "models/warehouse/daily.yml": "materialized: incremental\ntime_column: nope\n"},
                        {"events": events(1, 2)})
    result = run(root)
    assert result.status == "failed"
    assert "time_column 'nope' is not a column of warehouse.daily" in (result.outcomes["warehouse.daily"].error or "")


@pytest.mark.parametrize(("sidecar", "message", "line"), [
    ("description: x\nmaterialized: incremental\n", "an incremental model needs a time_column", 2),
    ("materialized: incremental\ntime_column: day\ngrain: week\n", "grain", 3),
    ("time_column: day\nlookback: 2\n", "`lookback` only applies to incremental models", 2),
    ("materialized: incremental\ntime_column: day\nlookback: -1\n", "lookback", 3),
])
def test_bad_incremental_config_names_file_and_line(make_project, cli, sidecar, message, line):
    root = make_project({"models/warehouse/daily.sql": DAILY_SQL, "models/warehouse/daily.yml": sidecar},
                        {"events": events(1, 1)})
    result = cli("--project", root, "run")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert message in result.stderr
    assert f"daily.yml:{line}" in result.stderr
