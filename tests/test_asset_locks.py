"""Locks per asset: a repair of one branch does not wait for an unrelated slow branch of a running run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from kiban.errors import RunLockedError
from kiban.project import load_project
from kiban.run.runner import RunOptions, run_project
from kiban.store import Store
from kiban.store.asset_locks import AssetLocks

LAKE = {"sales": "select (i % 3) as store_id, (i % 7)::double as qty from range(30) t(i)"}

SLOW = '''
import time
from pathlib import Path

import kiban
import pyarrow as pa


@kiban.asset
def slow(lake_sales: pa.Table) -> pa.Table:
    """Waits until the test lets it go (at most five minutes: the test always does, in its finally)."""
    Path({started!r}).write_text("started")
    for _ in range(3000):
        if Path({go!r}).exists():
            break
        time.sleep(0.1)
    return lake_sales
'''


def _project(project_dir, tmp_path: Path) -> Path:
    started, go = tmp_path / "slow.started", tmp_path / "slow.go"
    return project_dir({
        "models/warehouse/slow.py": SLOW.format(started=str(started), go=str(go)),
        "models/mart/slow_report.sql": "select count(*) as n from warehouse.slow",
        "models/warehouse/fast.sql": "select store_id, sum(qty) as qty from lake.sales group by all",
        "models/mart/quick.sql": "select store_id, qty from warehouse.fast",
    }, LAKE, config="threads: 4\n")


def _locks_behave(store: Store, project: str) -> None:
    locks = AssetLocks(store, project)
    locks.acquire("run-a", ["warehouse.a", "mart.a"])
    locks.acquire("run-b", ["warehouse.b"])  # disjoint: both hold their own
    with pytest.raises(RunLockedError, match=r"run-a .* still builds mart\.a") as caught:
        locks.acquire("run-c", ["mart.a", "mart.c"])
    assert "warehouse.a" not in str(caught.value)  # only what is shared is named
    with pytest.raises(RunLockedError):  # the project's exclusive lock waits for every asset lock
        store.acquire_lock(f"run:{project}", "backfill-1")
    locks.release("run-a", ["mart.a"])  # finished: free for others at once
    locks.acquire("run-c", ["mart.a", "mart.c"])
    assert locks.held() == {"warehouse.a": "run-a", "warehouse.b": "run-b", "mart.a": "run-c", "mart.c": "run-c"}
    for run in ("run-a", "run-b", "run-c"):
        locks.release(run)
    store.acquire_lock(f"run:{project}", "backfill-1")
    with pytest.raises(RunLockedError, match="whole project"):
        locks.acquire("run-d", ["warehouse.a"])
    store.release_lock(f"run:{project}", "backfill-1")
    locks.acquire("run-d", ["warehouse.a"])
    locks.release("run-d")


def test_disjoint_selections_hold_no_lock_in_common_and_overlapping_ones_name_what_they_share(project_dir) -> None:
    root = project_dir({"models/warehouse/a.sql": "select 1 as x"})
    project = load_project(root)
    store = Store(project.state_url)
    try:
        _locks_behave(store, project.name)
    finally:
        store.close()


def test_asset_locks_in_a_postgresql_store(postgres_url: str) -> None:
    store = Store(postgres_url)
    try:
        _locks_behave(store, "shop")
    finally:
        store.close()


@pytest.mark.slow
def test_a_repair_of_one_branch_completes_while_an_unrelated_slow_branch_runs(project_dir, tmp_path: Path) -> None:
    """The slow run holds the DuckDB file (one writer process): the repair's models are handed over to it and
    built ahead of its queue, while its slow step still runs; a repair that needs the slow step is refused,
    naming it."""
    root = _project(project_dir, tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    slow = subprocess.Popen([sys.executable, "-m", "kiban", "--project", str(root), "run"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(600):
            if (tmp_path / "slow.started").exists() or slow.poll() is not None:
                break
            time.sleep(0.1)
        assert (tmp_path / "slow.started").exists(), slow.communicate()[0] if slow.poll() is not None else ""
        project = load_project(root)
        (root / "lake/sales/part-1.parquet").write_bytes((root / "lake/sales/part-0.parquet").read_bytes())
        began = time.monotonic()  # the data was fixed (a second file): the repair rebuilds the fast branch
        for _ in range(100):  # the nightly run builds warehouse.fast quickly; until then it is shared
            try:
                result = run_project(project, RunOptions(select=["+mart.quick"], wait=30))
                break
            except RunLockedError:
                time.sleep(0.2)
        assert result.status == "success", result.outcomes
        assert result.outcomes["mart.quick"].status == "success"
        assert slow.poll() is None
        assert not (tmp_path / "slow.go").exists()  # the slow branch is still running
        assert time.monotonic() - began < 30
        with pytest.raises(RunLockedError, match=r"warehouse\.slow") as refused:
            run_project(project, RunOptions(select=["+mart.slow_report"]))
        assert "--wait" in (refused.value.hint or "")
    finally:
        (tmp_path / "slow.go").write_text("go")
        out = slow.communicate(timeout=120)[0]
    assert slow.returncode == 0, out
    con = duckdb.connect(project.warehouse_url.removeprefix("duckdb:///"), read_only=True)
    try:
        assert con.execute("select sum(qty) from mart.quick").fetchone() == (2 * sum(i % 7 for i in range(30)),)
        assert con.execute("select n from mart.slow_report").fetchone() in ((30,), (60,))
    finally:
        con.close()
    store = Store(project.state_url)
    try:  # the repair's attempts are its own, though the slow run's process built them
        attempts = {a.asset: a for a in store.attempts(result.run_id)}
        assert attempts["mart.quick"].status == attempts["warehouse.fast"].status == "success"
    finally:
        store.close()
