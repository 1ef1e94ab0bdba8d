"""Several workers: real `kiban worker` processes on a PostgreSQL state store and warehouse.

The central promise: kill a worker mid-build and the run still completes, every asset published exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from kiban.errors import ConfigError, KibanError
from kiban.project import load_project
from kiban.run import RunOptions
from kiban.store import Store
from kiban.workers import RunQueue, run_distributed
from tests.helpers.timing import wait_for

SLEEP = 0.8  # each model sleeps this long inside PostgreSQL: I/O-bound work that workers share
LEASE = 4.0


def sleepy(select: str) -> str:
    return f"select x.* from ({select}) x cross join (select pg_sleep({SLEEP})) s\n"


MODELS = {
    **{f"models/warehouse/w{i}.sql": sleepy(f"select id, id * {i} as v from lake.t") for i in range(1, 6)},
    "models/mart/m1.sql": sleepy("select a.id, a.v + b.v as v from warehouse.w1 a join warehouse.w2 b on a.id = b.id"),
    "models/mart/m2.sql": sleepy("select id, v from warehouse.w3 union all select id, v from warehouse.w4"),
    "models/mart/m3.sql": sleepy("select id, sum(v) as v from warehouse.w5 group by id"),
}


# Workers idle this long stop by themselves (only a test that died leaves them behind: the others stop theirs).
# Not less: a worker waits idle from its start until the run is queued, and on a loaded machine a `kiban run`
# process took longer than 20 s to get there (the workers had stopped, and the run found none).
IDLE_EXIT = "120"


def start_worker(root: Path, name: str) -> subprocess.Popen[str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.Popen([sys.executable, "-m", "kiban", "--project", str(root), "worker", "--name", name,
                             "--lease", str(LEASE), "--idle-exit", IDLE_EXIT],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def rows(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql.encode()).fetchall()


def await_workers(url: str, count: int) -> None:
    """Wait until ``count`` workers have registered. A run gives up after four leases without a live worker: a
    process that starts slower than that on a loaded machine is the test's timing, not what it tests."""
    def live() -> bool:
        try:
            return rows(url, "select count(*) from workers where status <> 'stopped'")[0][0] >= count
        except psycopg.Error:  # the store's tables are created by the first worker
            return False

    wait_for(live, 120, 0.1, f"{count} worker(s) to register")


@pytest.fixture
def shared(make_project: Callable[..., Path], postgres_url: str) -> tuple[Path, str]:
    config = f"name: shop\ntimezone: UTC\nwarehouse: {postgres_url}\nstate: {postgres_url}\nretries: 0\n"
    root = make_project({**MODELS, "kiban.yml": config}, lake={"t": "select i as id from range(1, 21) t(i)"})
    return root, postgres_url


def test_a_killed_worker_is_replaced_and_every_asset_is_built_once(shared: tuple[Path, str]) -> None:
    root, url = shared
    project = load_project(root)
    procs = [start_worker(root, f"w{i}") for i in range(3)]
    killed: list[str] = []

    def kill_one_busy_worker() -> None:
        deadline = time.monotonic() + 120
        spared = 2  # at most two kills: one worker always lives on to finish the run
        while time.monotonic() < deadline and spared:
            try:
                busy = rows(url, "select worker_id from workers where status = 'busy' order by worker_id")
            except psycopg.Error:
                busy = []
            if busy:
                worker_id = busy[0][0]
                time.sleep(SLEEP / 3)  # mid-build: inside the model's pg_sleep
                proc = procs[int(worker_id[1:])]
                proc.send_signal(signal.SIGKILL)
                proc.wait(60)
                spared -= 1
                # what it held when it died (its row stays as it left it): on a loaded machine the asset seen busy
                # may have been finished, and the worker between two assets or on the next one, by the kill
                [(status, asset)] = rows(url, f"select status, asset from workers where worker_id = '{worker_id}'")
                if status == "busy":
                    killed.append(asset)
                    return
                continue  # it died holding nothing: nothing to take over, so kill another one mid-build
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one_busy_worker)
    killer.start()
    try:
        await_workers(url, 3)
        result = run_distributed(project, RunOptions(), lease=LEASE)
    finally:
        killer.join()
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        outputs = [proc.communicate(timeout=30)[0] for proc in procs]
    assert killed, "no worker was busy to be killed"
    assert result.status == "success", (result.outcomes, outputs)
    published = [r[0] for r in rows(url, "select asset from kiban.publishes")]
    expected = sorted(k for k in project.assets if project.assets[k].layer != "lake")
    assert sorted(published) == expected  # every asset exactly once, the killed one included
    claims = dict(rows(url, f"select asset, claims from run_queue where run_id = '{result.run_id}'"))
    assert claims[killed[0]] == 2  # claimed by the killed worker, then by another one
    builders = {r[0] for r in rows(url, f"select worker from run_queue where run_id = '{result.run_id}'")}
    assert len(builders) >= 2  # the work was shared
    # the published data is right
    assert rows(url, "select count(*), sum(v) from mart.m3") == [(20, 5 * 210)]
    # a rerun finds everything fresh: nothing is queued, nothing published again
    again = run_distributed(project, RunOptions(), lease=LEASE)
    assert again.status == "nothing"
    assert len(again.plan.fresh) == len(expected)
    assert len(rows(url, "select asset from kiban.publishes")) == len(expected)


def test_failure_skips_downstream_and_branches_go_on(shared: tuple[Path, str]) -> None:
    root, url = shared
    (root / "models/warehouse/w1.sql").write_text("select id, cast('x' || id as integer) as v from lake.t\n")
    project = load_project(root)
    proc = start_worker(root, "solo")
    try:
        await_workers(url, 1)
        result = run_distributed(project, RunOptions(select=["w1+", "w3+"]), lease=LEASE)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    statuses = {k: o.status for k, o in result.outcomes.items()}
    assert statuses["warehouse.w1"] == "failed"
    assert statuses["mart.m1"] == "skipped"
    assert statuses["warehouse.w3"] == "success"
    assert result.status == "failed"
    store = Store(url)
    try:
        recorded = {(a.asset, a.status) for a in store.attempts(result.run_id)}
    finally:
        store.close()
    assert ("mart.m1", "skipped") in recorded
    assert ("warehouse.w1", "failed") in recorded


def test_cli_run_with_workers(shared: tuple[Path, str], cli: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    root, url = shared
    procs = [start_worker(root, f"c{i}") for i in range(2)]
    try:
        await_workers(url, 2)
        done = cli("--project", root, "run", "--workers", "--log-format", "json", "+mart.m3", timeout=120)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        outputs = [proc.communicate(timeout=30)[0] for proc in procs]
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"kind": "run_finished"' in done.stdout
    assert '"status": "success"' in done.stdout
    assert sorted(r[0] for r in rows(url, "select asset from kiban.publishes")) == ["mart.m3", "warehouse.w5"]
    assert any("stopped after" in out for out in outputs)


def test_a_sqlite_state_store_cannot_hold_the_queue(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/state.db")
    try:
        with pytest.raises(ConfigError, match="PostgreSQL state store"):
            RunQueue(store)
    finally:
        store.close()


def test_without_any_worker_the_run_stops_with_a_clear_error(shared: tuple[Path, str]) -> None:
    root, url = shared
    project = load_project(root)
    with pytest.raises(KibanError, match="no `kiban worker` of project shop"):
        run_distributed(project, RunOptions(select=["warehouse.w1"]), lease=1.0)
    assert rows(url, "select status from run_queue") == [("cancelled",)]
    assert rows(url, "select status from runs") == [("failed",)]


def test_a_worker_that_died_after_publishing_is_not_built_again(shared: tuple[Path, str]) -> None:
    """The gap between a publish and its record: the next worker sees the fingerprint and only records it."""
    from kiban.engines.postgres import PostgresEngine

    root, url = shared
    project = load_project(root)
    store = Store(url)
    queue = RunQueue(store)
    # a worker that will publish and then vanish: alive (heartbeating, its claim with it) until it does, as a real
    # one is; a run gives up after four leases without any live worker, and a loaded machine may take longer than
    # that to start the process that replaces it
    queue.register("ghost", "shop", os.getpid())
    vanished = threading.Event()

    def heartbeat() -> None:
        beats = Store(url)
        try:
            while not vanished.wait(0.25):
                RunQueue(beats).heartbeat("ghost")
        finally:
            beats.close()

    beating = threading.Thread(target=heartbeat)
    beating.start()
    results: list[object] = []

    def coordinate() -> None:
        try:
            results.append(run_distributed(project, RunOptions(select=["warehouse.w1"]), lease=2.0))
        except Exception as exc:
            results.append(exc)

    coordinator = threading.Thread(target=coordinate)
    coordinator.start()
    proc: subprocess.Popen[str] | None = None
    try:
        claim = wait_for(lambda: queue.claim("shop", "ghost"), 120, 0.05, "the run's queue")
        assert claim.asset == "warehouse.w1"
        engine = PostgresEngine(url)
        assert engine.claim_fence(claim.asset, claim.token, claim.run_id)  # what a worker does before building
        session = engine.session()
        engine.build(session, project.assets["warehouse.w1"], claim.fingerprint, "ghost")
        session.close()
        engine.close()
        proc = subprocess.Popen([sys.executable, "-m", "kiban", "--project", str(root), "worker", "--lease", "2",
                                 "--idle-exit", IDLE_EXIT], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        await_workers(url, 2)  # the ghost and its replacement
    finally:
        vanished.set()  # the ghost dies: no goodbye, its heartbeat stops
        beating.join()
        store.close()
        coordinator.join(timeout=120)
        output = ""
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            output = proc.communicate(timeout=30)[0]
    assert not coordinator.is_alive(), output
    [result] = results
    assert not isinstance(result, Exception), (result, output)
    assert result.status == "success", output  # type: ignore[attr-defined]
    assert rows(url, "select count(*) from kiban.publishes where asset = 'warehouse.w1'") == [(1,)]
    assert rows(url, "select claims from run_queue") == [(2,)]
