"""Crash recovery: SIGTERM stops a run cleanly; a run whose process died is reaped and resumed once, per policy.

The policy tests run the scheduler on a fake clock with fake run handles; the others use real processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import duckdb
import sqlalchemy as sa

from kiban.project import load_project
from kiban.schedule.clock import FakeClock, RealClock
from kiban.schedule.daemon import Scheduler
from kiban.store import Store
from kiban.store.store import HOST
from tests.helpers.schedule import LAKE, MODELS, FakeLauncher
from tests.helpers.timing import wait_for

ROWS = 3_000_000
BIG_LAKE = {"orders": f"select i as order_id, i % 37 as store_id, (i * 7) % 1000 as amount from range({ROWS}) t(i)"}
CHAIN = {  # one thread: they build one after the other, each long enough to be caught mid-build
    "models/warehouse/orders.sql": "select order_id, store_id, amount from lake.orders",
    "models/warehouse/ranked.sql": "select order_id, store_id, amount, "
                                   "row_number() over (order by amount desc, order_id) as r from warehouse.orders",
    "models/mart/by_store.sql": "select store_id, count(*) as n, sum(amount) as total from warehouse.ranked "
                                "group by store_id",
    "models/mart/top.sql": "select * from warehouse.ranked where r <= 1000",
}
TABLES = ["warehouse.orders", "warehouse.ranked", "mart.by_store", "mart.top"]


def _checksums(path: Path) -> dict[str, str]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        present = {f"{s}.{t}" for s, t in con.execute("select schema_name, table_name from duckdb_tables()").fetchall()}
        return {t: con.execute(f"select count(*) || ':' || coalesce(sum(hash(x)), 0) from {t} x").fetchone()[0]
                for t in TABLES if t in present} | {
            "tmp": str(con.execute("select count(*) from duckdb_tables() where table_name like '__kiban_tmp%'")
                       .fetchone()[0])}
    finally:
        con.close()


def _reference(root: Path) -> dict[str, str]:
    con = duckdb.connect(str(root / "ref.duckdb"))
    for schema in ("lake", "warehouse", "mart"):
        con.execute(f"create schema {schema}")
    con.execute(f"create table lake.orders as {BIG_LAKE['orders']}")
    for table in TABLES:
        layer, name = table.split(".")
        con.execute(f"create table {table} as {CHAIN[f'models/{layer}/{name}.sql']}")
    con.close()
    return _checksums(root / "ref.duckdb")


def test_sigterm_cancels_a_run_cleanly_and_resume_completes_it(project_dir, cli):
    root = project_dir(CHAIN, lake=BIG_LAKE, config="threads: 1\n")
    proc = subprocess.Popen([sys.executable, "-m", "kiban", "--project", str(root), "run", "--log-format", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    finished: list[str] = []
    for line in proc.stdout:  # wait until one asset is published and the next one is being built
        event = json.loads(line)
        if event["kind"] == "asset_finished":
            finished.append(event["asset"])
        if event["kind"] == "asset_started" and finished:
            proc.send_signal(signal.SIGTERM)
            break
    proc.communicate(timeout=60)
    assert proc.returncode == 130

    store = Store(load_project(root).state_url)
    try:
        run = store.runs("test", 1)[0]
        attempts = {a.asset: a.status for a in store.attempts(run.run_id)}
    finally:
        store.close()
    assert run.status == "cancelled"
    assert "cancelled" in attempts.values()
    assert attempts["warehouse.orders"] == "success"
    published = {k for k in _checksums(root / "kiban.duckdb") if k != "tmp"}
    assert published == {k for k, v in attempts.items() if v == "success"}  # nothing cancelled was published
    assert _checksums(root / "kiban.duckdb")["tmp"] == "0"

    done = cli("--project", root, "run", "--resume")
    assert done.returncode == 0, done.stdout + done.stderr
    assert _checksums(root / "kiban.duckdb") == _reference(root)


# --- the scheduler's on_crash policy (fake clock, fake run handles) -----------------------------------------

CRASHY = """
jobs:
  nightly:
    select: [+mart.daily]
    cron: "0 2 * * *"
    on_crash: {policy}
"""


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _running_run(store: Store, run_id: str) -> None:
    """A run the store still believes is running, whose process is gone (a crash)."""
    with store.engine.begin() as conn:
        conn.execute(sa.text("insert into runs (run_id, project, status, selection, options, started_at, "
                             "heartbeat_at, pid, host) values (:r, 'test', 'running', '[]', '{}', :t, :t, :p, :h)"),
                     {"r": run_id, "t": datetime(2026, 11, 19, 17), "p": _dead_pid(), "h": HOST})


def _ticks(store: Store) -> list[tuple[str, str]]:
    with store.engine.connect() as conn:
        return [(r[0], r[1]) for r in conn.execute(sa.text("select kind, status from job_ticks order by id"))]


def _crashing_scheduler(project_dir, policy: str) -> tuple[Scheduler, FakeLauncher, FakeClock]:
    root = project_dir(MODELS, lake=LAKE, config=CRASHY.format(policy=policy))
    clock = FakeClock(datetime(2026, 11, 19, 16, 59, 59))
    launcher = FakeLauncher(instant=False)
    project = load_project(root)
    scheduler = Scheduler(project, Store(project.state_url), clock=clock, launcher=launcher)
    scheduler.step()
    clock.advance(2)
    scheduler.step()  # the 02:00 tick starts
    assert len(launcher.started) == 1
    return scheduler, launcher, clock


def test_a_crashed_run_is_reaped_and_resumed_once(project_dir):
    scheduler, launcher, clock = _crashing_scheduler(project_dir, "resume")
    _running_run(scheduler.store, "run-1000")  # the fake handle's run id
    launcher.handles[0].code = -9  # killed (say, by the OOM killer)
    clock.advance(1)
    scheduler.step()  # seen: the run is reaped as abandoned, the tick is lost, a resume is queued and started
    assert scheduler.store.run("run-1000").status == "abandoned"
    assert launcher.resumed == [False, True]
    assert _ticks(scheduler.store) == [("cron", "lost"), ("resume", "running")]
    launcher.handles[1].code = -9  # the resume crashes too: no second resume
    clock.advance(1)
    scheduler.step()
    clock.advance(1)
    scheduler.step()
    assert _ticks(scheduler.store) == [("cron", "lost"), ("resume", "lost")]
    assert len(launcher.started) == 2
    scheduler.store.close()


def test_a_run_that_died_before_starting_is_retried_and_a_failure_is_not_a_crash(project_dir):
    scheduler, launcher, clock = _crashing_scheduler(project_dir, "resume")
    launcher.handles[0].run_id = lambda: None  # type: ignore[method-assign]  # died before recording a run
    launcher.handles[0].code = -11
    clock.advance(1)
    scheduler.step()
    assert _ticks(scheduler.store) == [("cron", "lost"), ("retry", "running")]
    assert launcher.resumed == [False, False]  # nothing to resume: the job's selection runs again
    launcher.handles[1].code = 1  # a failed run recorded its failure: not a crash, nothing more is queued
    clock.advance(1)
    scheduler.step()
    assert _ticks(scheduler.store) == [("cron", "lost"), ("retry", "failed")]
    scheduler.store.close()


def test_on_crash_none_leaves_a_crashed_run_to_a_person(project_dir):
    scheduler, launcher, clock = _crashing_scheduler(project_dir, "none")
    launcher.handles[0].code = -9
    clock.advance(1)
    scheduler.step()
    assert _ticks(scheduler.store) == [("cron", "lost")]
    assert len(launcher.started) == 1
    scheduler.store.close()


def test_a_run_the_scheduler_stops_is_cancelled_not_resumed(project_dir):
    scheduler, launcher, _clock = _crashing_scheduler(project_dir, "resume")
    launcher.handles[0].terminate = lambda: setattr(launcher.handles[0], "code", -15)  # type: ignore[method-assign]
    scheduler.shutdown()
    assert _ticks(scheduler.store) == [("cron", "cancelled")]
    scheduler.store.close()


# --- real processes: the scheduler resumes a run that was killed -------------------------------------------

EVERY_SECOND = """
threads: 1
scheduler: {poll: 0.2}
jobs:
  chain:
    select: [mart.by_store+, +mart.top]
    cron: "* * * * * *"
"""


def test_the_scheduler_resumes_a_killed_run_and_the_tables_are_complete(project_dir):
    root = project_dir(CHAIN, lake=BIG_LAKE, config=EVERY_SECOND)
    project = load_project(root)
    store = Store(project.state_url)
    clock = RealClock()
    scheduler = Scheduler(project, store, clock=clock)
    try:
        def started() -> bool:
            scheduler.step()
            return bool(scheduler.running)

        def published() -> bool:
            scheduler._collect()
            return bool(item.run_id) and any(a.status == "success" for a in store.attempts(item.run_id))

        def resumed() -> bool:
            scheduler._collect()
            scheduler._start_queued(clock.now())
            return ("resume", "success") in _ticks(store)

        # the deadlines are generous: a loaded machine starts the run's process slowly; none decides the verdict
        wait_for(started, 120, 0.1, "the cron tick's run to start")
        (item,) = scheduler.running.values()
        schedules = scheduler.schedules
        scheduler.schedules = {}  # no further cron ticks: only the crashed one and its resume
        wait_for(published, 120, 0.05, "the run to publish something")  # kill it once it has
        assert item.handle.pid is not None
        os.kill(item.handle.pid, signal.SIGKILL)
        scheduler.schedules = schedules
        wait_for(resumed, 180, 0.1, "the resumed run to succeed")
        assert [t for t in _ticks(store) if t[1] != "skipped"] == [("cron", "lost"), ("resume", "success")]
    finally:
        scheduler.shutdown()
        store.close()
    assert _checksums(root / "kiban.duckdb") == _reference(root)


# --- kiban runs --watch, kiban logs ---------------------------------------------------------------------------

LONG_ERROR = "select * from lake.orders where " + " and ".join(f"id_{i} > 0" for i in range(40))
WATCHED = """
jobs:
  chain:
    select: [mart.daily]
    cron: "* * * * * *"
"""


def test_logs_show_a_runs_attempts_in_full_and_the_scheduler_log(project_dir, cli):
    root = project_dir({**MODELS, "models/mart/broken.sql": LONG_ERROR}, lake=LAKE, config=WATCHED)
    failed = cli("--project", root, "run")
    assert failed.returncode == 1
    store = Store(load_project(root).state_url)
    run_id = store.runs("test", 1)[0].run_id
    shown = cli("--project", root, "logs", run_id[:12])
    assert shown.returncode == 0, shown.stderr
    text = " ".join(shown.stdout.split())
    assert "mart.broken attempt 1 failed" in text
    assert "id_0" in text
    assert "warehouse.orders attempt 1 success" in text
    assert "rows 1" in text
    one = cli("--project", root, "logs", run_id, "daily")
    assert "mart.daily attempt 1 success" in " ".join(one.stdout.split())
    assert "mart.broken" not in one.stdout
    wrong = cli("--project", root, "logs", run_id, "dialy")
    assert wrong.returncode != 0
    assert "did you mean 'daily'" in wrong.stderr

    assert cli("--project", root, "scheduler", "--once").returncode == 0  # one tick: its run has a log file
    (tick_run,) = [t.run_id for t in Scheduler(load_project(root), store).ledger.recent() if t.run_id]
    logged = cli("--project", root, "logs", tick_run)
    assert "started by job chain" in " ".join(logged.stdout.split())
    assert "scheduler log" in logged.stdout
    assert "run_finished" in logged.stdout
    store.close()

    watched = cli("--project", root, "runs", "--watch", "--count", "2")
    assert watched.returncode == 0, watched.stderr
    assert run_id in watched.stdout
    assert tick_run in watched.stdout


def test_a_tick_whose_scheduler_died_before_starting_its_process_is_settled_lost_and_retried(project_dir):
    scheduler, launcher, clock = _crashing_scheduler(project_dir, "resume")
    # as if the leader had died between marking the tick running and starting its process: no pid, no run
    with scheduler.store.engine.begin() as conn:
        conn.execute(sa.text("update job_ticks set pid = null, holder = 'a-dead-scheduler'"))
    scheduler.running.clear()
    successor = Scheduler(scheduler.project, scheduler.store, clock=clock, launcher=launcher)
    successor.step()
    assert _ticks(scheduler.store) == [("cron", "running")]  # within the lease it may still be starting
    clock.advance(2 * scheduler.project.config.scheduler.lease + 1)
    successor.step()
    assert _ticks(scheduler.store)[0] == ("cron", "lost")
    assert _ticks(scheduler.store)[1:] == [("retry", "running")]  # no run began: it starts afresh, once
    scheduler.store.close()
