"""Backfills: every partition of a range, recorded; resumable after SIGKILL; failures keep the old rows."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from kiban.errors import RunLockedError, UsageError
from kiban.project import load_project
from kiban.run import RunOptions, run_project
from kiban.run.backfill import BackfillOptions, run_backfill
from kiban.run.partitions import partition_range
from kiban.store import Store
from tests.conftest import write_parquet

DAILY_SQL = ("select cast(ts as date) as day, store, count(*) as n, sum(amount) as total, "
             "min(case when amount < 0 then error('negative amount') end) as guard "
             "from lake.events group by all")
MODELS = {
    "models/warehouse/daily.sql": DAILY_SQL,
    "models/warehouse/daily.yml": "materialized: incremental\ntime_column: day\nlookback: 1\n",
    "models/mart/monthly.sql": "select date_trunc('month', day)::date as month, sum(total) as total "
                               "from warehouse.daily group by all",
    "models/mart/monthly.yml": "materialized: incremental\ntime_column: month\ngrain: month\nlookback: 0\n",
    "models/mart/stores.sql": "select distinct store from warehouse.daily",
}
TABLES = ("warehouse.daily", "mart.monthly")


def events(days: int, factor: int = 1, bad_day: int | None = None) -> str:
    """A year's worth of rows from 2024-01-01, a few per hour; ``bad_day`` gets a negative amount."""
    bad = f"case when cast(ts as date) = date '2024-01-01' + {bad_day} then -1 else amount end" \
        if bad_day is not None else "amount"
    return (f"select ts, store, {bad} as amount from (select timestamp '2024-01-01' + to_minutes(i * 53) as ts, "
            f"i % 4 as store, (i % 50) * {factor} as amount from range({days * 24 * 60 // 53}) t(i))")


def checksum(con: duckdb.DuckDBPyConnection, table: str) -> str:
    return con.execute(f"select count(*) || ':' || coalesce(sum(hash(t)), 0) from {table} t").fetchone()[0]


def published(root: Path) -> dict[str, str]:
    con = duckdb.connect(str(root / "kiban.duckdb"), read_only=True)
    try:
        return {t: checksum(con, t) for t in TABLES}
    finally:
        con.close()


def run(root: Path, **options: object):
    return run_project(load_project(root), RunOptions(**options))  # type: ignore[arg-type]


def backfill(root: Path, start: str, end: str, *select: str, **options: object):
    return run_backfill(load_project(root), BackfillOptions(select=select or ("warehouse.daily", "mart.monthly"),
                                                            start=start, end=end, **options))  # type: ignore[arg-type]


@pytest.fixture
def year(make_project):
    """A project built on a year of data whose amounts then all changed (outside any lookback)."""

    def build(name: str = "project") -> Path:
        root = make_project(MODELS, {"events": events(366)}, root=name)
        assert run(root).status == "success"
        write_parquet(root / "lake/events/part-0.parquet", events(366, factor=3))
        return root

    return build


def test_partition_ranges():
    assert len(partition_range("2024-01-01", "2024-12-31", "day")) == 366
    assert partition_range("2024-01-15", "2024-03-02", "month") == [datetime(2024, 1, 1), datetime(2024, 2, 1),
                                                                    datetime(2024, 3, 1)]
    assert len(partition_range("2024-03-01", "2024-03-02", "hour")) == 48
    assert partition_range("2024-12", "2024-12", "month") == [datetime(2024, 12, 1)]
    with pytest.raises(UsageError, match="is after"):
        partition_range("2024-02-01", "2024-01-01", "day")
    with pytest.raises(UsageError, match="not a date"):
        partition_range("yesterday", "2024-01-01", "day")


def test_a_backfill_reprocesses_every_partition_and_equals_a_full_rebuild(year, make_project):
    root = year()
    before = published(root)
    result = backfill(root, "2024-01-01", "2024-12-31", concurrency=4)
    assert result.status == "success"
    assert result.total == 366 + 12  # days, and months
    assert result.processed == result.total
    assert published(root) != before
    run(root, full_refresh=True)
    rebuilt = published(root)
    assert backfill(root, "2024-01-01", "2024-12-31").status == "success"  # a finished backfill starts anew
    assert published(root) == rebuilt
    # the store knows every partition's outcome
    store = Store(load_project(root).state_url)
    try:
        from kiban.store.backfills import BackfillLedger

        ledger = BackfillLedger(store)
        latest = ledger.recent("shop")[0]
        assert latest.status == "success"
        assert latest.counts == {"success": 366 + 12}
    finally:
        store.close()


def test_a_failing_partition_keeps_its_previous_rows(year):
    root = year()
    write_parquet(root / "lake/events/part-0.parquet", events(366, factor=3, bad_day=40))
    con = duckdb.connect(str(root / "kiban.duckdb"), read_only=True)
    old_day = con.execute("select * from warehouse.daily where day = date '2024-02-10' order by store").fetchall()
    con.close()
    result = backfill(root, "2024-02-01", "2024-02-29", "warehouse.daily", concurrency=3)
    assert result.status == "failed"
    assert [(o.start, o.status) for o in result.failed] == [(datetime(2024, 2, 10), "failed")]
    assert "negative amount" in (result.failed[0].error or "")
    con = duckdb.connect(str(root / "kiban.duckdb"), read_only=True)
    assert con.execute("select * from warehouse.daily where day = date '2024-02-10' order by store").fetchall() \
        == old_day
    assert con.execute("select sum(total) from warehouse.daily where day = date '2024-02-11'").fetchone()[0] \
        == con.execute("select sum(amount) * 3 / 3 from lake.events where cast(ts as date) = '2024-02-11'"
                       ).fetchone()[0]
    con.close()
    # fixed: the same backfill resumes and processes only the failed partition
    write_parquet(root / "lake/events/part-0.parquet", events(366, factor=3))
    again = backfill(root, "2024-02-01", "2024-02-29", "warehouse.daily")
    assert again.status == "success"
    assert again.resumed
    assert again.done_before == 28
    assert [o.start for o in again.outcomes] == [datetime(2024, 2, 10)]


def test_only_incremental_models_that_were_built_can_be_backfilled(year, make_project):
    root = year()
    with pytest.raises(UsageError, match=r"only incremental models can be backfilled; mart\.stores is rebuilt"):
        backfill(root, "2024-01-01", "2024-01-31", "warehouse.daily+")
    fresh = make_project(MODELS, {"events": events(10)}, root="never_built")
    with pytest.raises(UsageError, match="has not been built yet"):
        backfill(fresh, "2024-01-01", "2024-01-05", "warehouse.daily")


def test_a_backfill_waits_for_the_run_lock(year):
    root = year()
    store = Store(load_project(root).state_url)
    try:
        store.acquire_lock("run:shop", "someone-else")
        with pytest.raises(RunLockedError):
            backfill(root, "2024-01-01", "2024-01-31")
    finally:
        store.release_lock("run:shop", "someone-else")
        store.close()


def done_partitions(root: Path) -> int:
    path = root / ".kiban/state.db"
    if not path.exists():
        return 0
    try:
        con = sqlite3.connect(path, timeout=5)
        try:
            return con.execute("select count(*) from backfill_partitions where status = 'success'").fetchone()[0]
        finally:
            con.close()
    except sqlite3.OperationalError:  # the table does not exist yet
        return 0


@pytest.mark.slow
def test_a_killed_backfill_resumes_where_it_stopped(year, cli):
    uninterrupted = year("uninterrupted")
    assert backfill(uninterrupted, "2024-01-01", "2024-12-31", concurrency=2).status == "success"
    root = year("killed")
    command = [sys.executable, "-m", "kiban", "--project", str(root), "backfill", "warehouse.daily", "mart.monthly",
               "--from", "2024-01-01", "--to", "2024-12-31", "--concurrency", "2"]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while done_partitions(root) < 40 and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.005)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    killed_at = done_partitions(root)
    assert 40 <= killed_at < 366 + 12, "the backfill was not killed mid-way"
    status = cli("--project", root, "backfill", "--status")
    assert "abandoned" in status.stdout, status.stdout
    resumed = cli("--project", root, "backfill", "warehouse.daily", "mart.monthly", "--from", "2024-01-01",
                  "--to", "2024-12-31")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"{killed_at} of {366 + 12} partitions were done already" in resumed.stdout
    assert published(root) == published(uninterrupted)
    run(root, full_refresh=True)
    assert published(root) == published(uninterrupted)


def test_a_backfill_gives_way_to_deadline_work(make_project):
    """While a job that feeds a use case waits, the backfill lets go of the warehouse and the run lock."""
    import threading

    import sqlalchemy as sa

    from kiban.run import backfill as backfill_module
    from kiban.store.schema import backfills, job_ticks

    files = {**MODELS,
             "usecases/morning.yml": "assets: [mart.monthly]\nneed: {by: '08:30', on: every_day, calendar: none}\n"}
    root = make_project(files, {"events": events(366)}, root="yielding")
    (root / "kiban.yml").write_text((root / "kiban.yml").read_text()
                                    + "jobs:\n  nightly:\n    select: [mart.monthly]\n    cron: '0 2 * * *'\n"
                                      "    for: morning\n")
    assert run(root).status == "success"
    project = load_project(root)
    store = Store(project.state_url)
    with store.engine.begin() as conn:  # the scheduler has claimed the deadline job's tick: it is waiting
        conn.execute(job_ticks.insert().values(project=project.name, job="nightly", kind="cron", status="queued",
                                               scheduled_at=datetime(2024, 1, 1), created_at=datetime(2024, 1, 1)))
    seen: list[str] = []

    def deadline_work() -> None:  # what the waiting run does: take the lock, finish, mark the tick done
        for _ in range(600):  # it starts while the backfill holds the lock
            with store.engine.connect() as conn:
                if conn.execute(sa.select(backfills.c.status)).scalar_one_or_none() == "running":
                    break
            time.sleep(0.01)
        store.acquire_lock(f"run:{project.name}", "deadline-run", wait=60)
        with store.engine.connect() as conn:
            state = conn.execute(sa.select(backfills.c.status)).scalar_one_or_none()
        seen.append(f"ran while the backfill was {state}")
        store.release_lock(f"run:{project.name}", "deadline-run")
        with store.engine.begin() as conn:
            conn.execute(job_ticks.update().values(status="success"))

    worker = threading.Thread(target=deadline_work)
    backfill_module.GiveWay.CHECK_SECONDS = 0.0
    try:
        worker.start()
        result = run_backfill(project, BackfillOptions(select=("warehouse.daily",), start="2024-01-01",
                                                       end="2024-03-31", concurrency=2))
    finally:
        backfill_module.GiveWay.CHECK_SECONDS = 2.0
        worker.join(30)
    assert seen == ["ran while the backfill was running"]  # not after it: the backfill gave way
    assert result.status == "success"
    assert result.processed == 91
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(job_ticks.c.status)).scalar_one() == "success"
    store.close()
