"""The scheduler: cron ticks on business days, catch-up, sensors, deadline-aware order, leader election.

Schedules run on a fake clock and a fake launcher (no processes), so they take milliseconds; leader
failover uses two real `kiban scheduler` processes against one SQLite store.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from kiban.project import load_project
from kiban.project.jobs import JobConfig
from kiban.schedule.clock import FakeClock
from kiban.schedule.daemon import Scheduler
from kiban.schedule.leader import Leader
from kiban.schedule.ticks import JobSchedule, catch_up
from kiban.store import Store
from tests.helpers.schedule import LAKE, MODELS, FakeLauncher
from tests.helpers.timing import slowdown, wait_for


def scheduler_for(root: Path, clock: FakeClock, launcher: FakeLauncher) -> Scheduler:
    project = load_project(root)
    return Scheduler(project, Store(project.state_url), clock=clock, launcher=launcher)


def ticks_of(store: Store) -> list[tuple[str, datetime, str]]:
    with store.engine.connect() as conn:
        rows = conn.execute(sa.text("select job, scheduled_at, status from job_ticks order by scheduled_at, id")).all()
    return [(r[0], datetime.fromisoformat(str(r[1])), r[2]) for r in rows]


NIGHTLY = """
jobs:
  nightly:
    select: [+mart.daily]
    cron: "0 2 * * *"
    calendar: jp
    catch_up: {policy}
"""


def test_a_business_day_job_skips_japanese_holidays():
    config = load_config("Asia/Tokyo")
    schedule = JobSchedule("nightly", JobConfig(cron="0 2 * * *", calendar="jp"), config)
    local = [schedule.local(t).date().isoformat()
             for t in schedule.ticks(datetime(2026, 11, 19), datetime(2026, 11, 26))]
    # Fri 20th fires; the weekend and Mon 23rd (Labor Thanksgiving Day) do not; Tue-Thu do
    assert local == ["2026-11-20", "2026-11-24", "2026-11-25", "2026-11-26"]
    assert schedule.next_tick(datetime(2026, 11, 20, 17)) == datetime(2026, 11, 23, 17)  # 24th 02:00 JST
    every_day = JobSchedule("d", JobConfig(cron="0 2 * * *"), config)
    assert len(every_day.ticks(datetime(2026, 11, 19), datetime(2026, 11, 26))) == 7


def test_cron_reads_the_jobs_timezone_across_daylight_saving():
    schedule = JobSchedule("ny", JobConfig(cron="30 2 * * *", timezone="America/New_York"), load_config("UTC"))
    ticks = schedule.ticks(datetime(2026, 3, 7), datetime(2026, 3, 10))
    assert next(t.isoformat() for t in ticks) == "2026-03-07T07:30:00"  # EST = UTC-5
    assert ticks[-1].isoformat() == "2026-03-09T06:30:00"  # EDT = UTC-4
    assert ticks[1].isoformat() == "2026-03-08T07:00:00"  # the 8th has no 02:30: it fires when the gap ends
    assert len(ticks) == 3


def load_config(tz: str):
    from kiban.project.config import ProjectConfig

    return ProjectConfig(name="x", timezone=tz)


def test_catch_up_policies_split_missed_ticks():
    ticks = [datetime(2026, 11, d, 17) for d in (23, 24, 25, 26)]
    now = datetime(2026, 11, 26, 17, 0, 30)
    assert catch_up("latest", ticks, now) == ([ticks[-1]], ticks[:-1])
    assert catch_up("all", ticks, now) == (ticks, [])
    assert catch_up("skip", ticks, now) == ([ticks[-1]], ticks[:-1])
    assert catch_up("skip", ticks, datetime(2026, 11, 26, 18)) == ([], ticks)


def run_nightly(project_dir, policy: str) -> tuple[FakeLauncher, Store]:
    root = project_dir(MODELS, lake=LAKE, config=NIGHTLY.format(policy=policy))
    clock = FakeClock(datetime(2026, 11, 19, 16, 59, 30))  # 01:59:30 in Tokyo on Fri 20th
    launcher = FakeLauncher()
    daemon = scheduler_for(root, clock, launcher)
    assert daemon.step()
    assert launcher.started == []
    clock.advance(45)
    daemon.step()  # the 02:00 tick: claimed and started
    daemon.step()  # its run ended: recorded
    assert [s[0] for s in launcher.started] == ["nightly"]
    clock.set(datetime(2026, 11, 26, 17, 0, 20))  # down for a week; now 02:00:20 on Fri 27th
    daemon.step()
    daemon.step()
    return launcher, daemon.store


def test_after_downtime_latest_runs_once_and_records_the_skipped_ticks(project_dir):
    launcher, store = run_nightly(project_dir, "latest")
    ticks = ticks_of(store)
    assert [(t.day, s) for _, t, s in ticks] == [(19, "success"), (23, "skipped"), (24, "skipped"),
                                                 (25, "skipped"), (26, "success")]  # no tick on the 22nd (holiday)
    assert len(launcher.started) == 2


def test_after_downtime_all_runs_every_missed_tick_in_order(project_dir):
    launcher, store = run_nightly(project_dir, "all")
    assert len(launcher.started) == 3  # max_runs 1: one more per look, as the previous one ended
    daemon_ticks = [s for _, _, s in ticks_of(store)]
    assert daemon_ticks.count("skipped") == 0


def test_all_catch_up_drains_the_queue(project_dir):
    root = project_dir(MODELS, lake=LAKE, config=NIGHTLY.format(policy="all"))
    clock = FakeClock(datetime(2026, 11, 19, 16, 59, 30))
    launcher = FakeLauncher()
    daemon = scheduler_for(root, clock, launcher)
    daemon.step()
    clock.set(datetime(2026, 11, 26, 17, 0, 20))
    for _ in range(8):
        daemon.step()
    assert [s for _, _, s in ticks_of(daemon.store)] == ["success"] * 5  # 20th, 24th-27th (not the 23rd)
    started = [t for _, t in launcher.started]
    assert started == sorted(started)


def test_skip_runs_only_a_tick_that_is_on_time(project_dir):
    _launcher, store = run_nightly(project_dir, "skip")
    assert [s for _, _, s in ticks_of(store)] == ["success", "skipped", "skipped", "skipped", "success"]


def test_a_tick_is_claimed_once_even_by_two_schedulers(project_dir):
    root = project_dir(MODELS, lake=LAKE, config=NIGHTLY.format(policy="latest"))
    clock = FakeClock(datetime(2026, 11, 19, 17, 0, 10))
    one, two = FakeLauncher(), FakeLauncher()
    a, b = scheduler_for(root, clock, one), scheduler_for(root, clock, two)
    a.step()
    assert not b.step()  # a follower does nothing
    b.is_leader = True  # even a scheduler that wrongly believes it leads cannot claim the tick again
    assert b.claim_cron_ticks(clock.now()) == []
    assert len(one.started) == 1
    assert two.started == []


@pytest.fixture(params=["sqlite", "postgresql"])
def lease_store(request, tmp_path):
    """The lease on both state stores: SQLite for one machine, PostgreSQL for several."""
    url = f"sqlite:///{tmp_path}/state.db" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    store = Store(url)
    yield store
    store.close()


def test_a_lease_expires_and_another_scheduler_takes_over(lease_store):
    store = lease_store
    clock = FakeClock(datetime(2026, 11, 19, 12))
    a, b = Leader(store, "p", clock, lease=20), Leader(store, "p", clock, lease=20)
    assert a.acquire()
    assert not b.acquire()
    clock.advance(15)
    assert a.acquire()  # renewed
    clock.advance(15)
    assert not b.acquire()  # 15 s after the renewal: still a's
    clock.advance(6)
    assert b.acquire()
    assert not a.acquire()  # a stopped renewing: b leads
    b.release()
    assert a.acquire()


SENSOR = """
jobs:
  partners:
    select: [mart.daily]
    sensors:
      - landing: landing/partners
        pattern: "*.csv"
        min_interval: 5m
"""


def test_a_new_file_in_a_landing_folder_starts_one_run(project_dir):
    root = project_dir(MODELS, lake=LAKE, config=SENSOR)
    clock = FakeClock(datetime(2026, 11, 19, 12))
    launcher = FakeLauncher()
    daemon = scheduler_for(root, clock, launcher)
    daemon.step()
    assert launcher.started == []  # the folder does not exist yet
    landing = root / "landing" / "partners"
    landing.mkdir(parents=True)
    (landing / "notes.txt").write_text("not a csv")
    clock.advance(1)
    daemon.step()
    assert launcher.started == []
    (landing / "acme-20261119.csv").write_text("id\n1\n")
    clock.advance(1)
    daemon.step()
    clock.advance(1)
    daemon.step()
    assert [j for j, _ in launcher.started] == ["partners"]
    (landing / "acme-20261120.csv").write_text("id\n2\n")
    clock.advance(60)
    daemon.step()
    assert len(launcher.started) == 1  # min_interval: 5 minutes
    clock.advance(300)
    daemon.step()
    assert len(launcher.started) == 2
    reasons = [t.reason for t in daemon.ledger.recent()]
    assert any("acme-20261120.csv" in (r or "") for r in reasons)


ASSET_SENSOR = """
jobs:
  downstream:
    select: [mart.daily]
    sensors:
      - asset: lake.orders
        min_interval: 0
"""


def test_an_updated_upstream_asset_runs_the_downstream(project_dir):
    from tests.conftest import write_parquet

    root = project_dir(MODELS, lake=LAKE, config=ASSET_SENSOR)
    clock = FakeClock(datetime(2026, 11, 19, 12))
    launcher = FakeLauncher()
    daemon = scheduler_for(root, clock, launcher)
    daemon.step()
    assert launcher.started == []  # the first look only remembers the version
    write_parquet(root / "lake" / "orders" / "part-1.parquet", "select 2 as id, date '2026-11-20' as day")
    clock.advance(1)
    daemon.step()
    assert [j for j, _ in launcher.started] == ["downstream"]


PRIORITY = """
scheduler: {{max_runs: 1}}
jobs:
  a_backfill:
    select: [warehouse.orders]
    cron: "0 1 * * *"
  managers:
    select: [+mart.daily]
    cron: "0 1 * * *"
    for: managers
  {extra}
"""
USECASE = {"usecases/managers.yml": "assets: [mart.daily]\nneed: {by: \"08:30\", on: every_day}\n",
           "models/mart/daily.yml": "expected_duration: 2h\n"}


def test_the_job_feeding_the_nearest_deadline_starts_first(project_dir):
    root = project_dir({**MODELS, **USECASE}, lake=LAKE, config=PRIORITY.format(extra=""))
    clock = FakeClock(datetime(2026, 11, 19, 15, 59, 50))  # 00:59:50 Tokyo
    launcher = FakeLauncher(instant=False)
    daemon = scheduler_for(root, clock, launcher)
    daemon.step()
    clock.advance(20)
    daemon.step()
    assert [j for j, _ in launcher.started] == ["managers"]  # a_backfill sorts first by name, but has no deadline
    launcher.handles[0].code = 0
    daemon.step()
    assert [j for j, _ in launcher.started] == ["managers", "a_backfill"]


def test_a_schedule_that_cannot_meet_its_deadline_is_reported(project_dir, cli):
    late = "late:\n    select: [+mart.daily]\n    cron: \"0 7 * * *\"\n    for: managers\n"
    root = project_dir({**MODELS, **USECASE}, lake=LAKE, config=PRIORITY.format(extra=late))
    done = cli("--project", root, "jobs")
    assert done.returncode == 0, done.stderr
    assert "managers" in done.stdout
    assert "late" in done.stdout
    assert "warning: job late cannot meet use case managers" in " ".join(done.stdout.split())
    assert "job managers cannot" not in done.stdout  # 01:00 + 2 h is before 08:30
    listed = cli("--project", root, "jobs", "--json")
    import json

    rows = {r["job"]: r for r in json.loads(listed.stdout)}
    assert rows["managers"]["critical_path_s"] == 7200 + 60
    assert rows["managers"]["warning"] is None
    assert rows["a_backfill"]["latest_start"] is None


# --- real processes -------------------------------------------------------------------------------------

# The leader renews every second and keeps its lease for 8: on a loaded machine a process can stall for seconds,
# and a leader that misses its renewals loses its lease by design (fenced, no double tick) — which is not what
# this test is about. A 3 s lease made "the second one stands by" fail under load.
LEASE = 8
FAST = f"""
scheduler: {{lease: {LEASE}, renew: 1, poll: 0.2}}
jobs:
  often:
    select: [mart.daily]
    cron: "* * * * * */2"
"""


def _daemon(root: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.Popen([sys.executable, "-m", "kiban", "--project", str(root), "scheduler",
                             "--log-format", "json"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)


def _lease(store: Store) -> int | None:
    with store.engine.connect() as conn:
        return conn.execute(sa.text("select pid from scheduler_leases where expires_at > :now"),
                            {"now": datetime.now(UTC).replace(tzinfo=None)}).scalar()


def _count(store: Store, sql: str) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.text(sql)).scalar() or 0)


def _until(predicate, timeout: float = 120) -> float:
    """Seconds until ``predicate()`` holds (the deadline is generous: a loaded machine starts Python slowly)."""
    start = time.monotonic()
    wait_for(predicate, timeout, 0.1)
    return time.monotonic() - start


def test_when_the_leader_is_killed_the_other_scheduler_takes_over_and_no_tick_runs_twice(project_dir, cli):
    root = project_dir(MODELS, lake=LAKE, config=FAST)
    assert cli("--project", root, "run").returncode == 0  # creates the store; later runs find everything fresh
    store = Store(load_project(root).state_url)
    first = _daemon(root)
    second = None
    try:
        _until(lambda: _lease(store) == first.pid)
        second = _daemon(root)
        _until(lambda: _count(store, "select count(*) from job_ticks where status = 'success'") >= 2)
        assert _lease(store) == first.pid  # the second one stands by
        first.send_signal(signal.SIGKILL)
        first.wait()
        took = _until(lambda: _lease(store) == second.pid)
        assert took < LEASE + 5 * slowdown()  # once the dead leader's lease runs out (plus a poll), not later
        before = _count(store, "select count(*) from job_ticks where status = 'success' and holder is not null")
        _until(lambda: _count(store, "select count(*) from job_ticks where status = 'success'") >= before + 2)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
    assert second.returncode == 0, second.stdout.read() if second.stdout else ""
    # every started tick made exactly one run — except that a tick whose process was stopped (cancelled) or died
    # with the killed leader (lost) may have made none, its process gone before it recorded one (a slow machine
    # can do that); the new leader settled such a tick, and never ran it twice
    started = _count(store, "select count(*) from job_ticks where started_at is not null")
    unsure = _count(store, "select count(*) from job_ticks where started_at is not null and run_id is null "
                           "and status in ('cancelled', 'lost')")
    runs = _count(store, "select count(*) from runs") - 1  # the first, manual run
    assert started - unsure <= runs <= started
    with store.engine.connect() as conn:
        runless = conn.execute(sa.text("select * from job_ticks where started_at is not null and run_id is null "
                                       "and status not in ('cancelled', 'lost')")).fetchall()
    assert runless == []
    assert _count(store, "select count(*) from (select distinct job, scheduled_at from job_ticks) t") == \
        _count(store, "select count(*) from job_ticks")
    assert _count(store, "select count(*) from job_ticks where run_id is not null") == \
        _count(store, "select count(distinct run_id) from job_ticks where run_id is not null")
    # ticks still queued wait for the next scheduler; none may be left running
    assert _count(store, "select count(*) from job_ticks where status = 'running'") == 0
    store.close()


def test_the_scheduler_notices_a_deadline_passing_when_nothing_ran(project_dir):
    """The nightly batch never started: the scheduler's own service-level check opens the incident."""
    from kiban.incidents import IncidentLog
    from tests.slo_history import add_run

    root = project_dir({
        "models/warehouse/orders.sql": "select 1 as x",
        "usecases/morning.yml": "assets: [warehouse.orders]\nneed: {by: '08:30', on: every_day, calendar: none}\n",
    })
    clock = FakeClock(datetime(2026, 11, 19, 23, 45))  # 08:45 Tokyo on the 20th: the 08:30 deadline has passed
    scheduler = scheduler_for(root, clock, FakeLauncher())
    add_run(scheduler.store, "test", "yesterday", datetime(2026, 11, 18, 17, 0),
            [("warehouse.orders", "success", 5, None, None)])  # ran on the 19th, nothing since
    assert scheduler.step()
    incidents = IncidentLog(scheduler.store, "test").recent()
    assert [(i.usecase, str(i.due_date), i.verdict) for i in incidents] == [("morning", "2026-11-20", "failed")]
    scheduler.store.close()
