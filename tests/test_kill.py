"""SIGKILL at random moments never leaves a half-published table, a run stuck as running, or lost work."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from kiban.project import load_project
from kiban.store import Store
from tests.conftest import write_files, write_parquet

ROWS = 2_000_000
MODELS = {
    "models/warehouse/orders.sql": "select order_id, store_id, amount, gen from lake.orders",
    "models/warehouse/big_orders.sql": "select * from warehouse.orders where amount > 500",
    "models/warehouse/store_totals.sql":
        "select store_id, gen, count(*) as n, sum(amount) as total from warehouse.orders group by all",
    "models/mart/by_store.sql": "select s.*, b.big from warehouse.store_totals s join "
                                "(select store_id, count(*) as big from warehouse.big_orders group by 1) b "
                                "using (store_id)",
    "models/mart/ranked.sql": "select order_id, amount, row_number() over (order by amount desc, order_id) as r "
                              "from warehouse.big_orders",
    "models/mart/summary.sql": "select gen, count(*) as n, sum(total) as total from warehouse.store_totals "
                               "group by gen",
}
TABLES = ["warehouse.orders", "warehouse.big_orders", "warehouse.store_totals",
          "mart.by_store", "mart.ranked", "mart.summary"]
GENERATIONS = 3


def lake_sql(gen: int) -> str:
    return (f"select i as order_id, i % 37 as store_id, ((i * {gen + 7}) % 1000) as amount, {gen} as gen "
            f"from range({ROWS}) t(i)")


def checksum(con: duckdb.DuckDBPyConnection, table: str) -> str:
    return con.execute(f"select count(*) || ':' || coalesce(sum(hash(t)), 0) from {table} t").fetchone()[0]


def reference(tmp: Path) -> dict[int, dict[str, str]]:
    """What each table holds after a clean build of each lake generation (plain DuckDB)."""
    refs: dict[int, dict[str, str]] = {}
    for gen in range(GENERATIONS):
        con = duckdb.connect()
        for schema in ("lake", "warehouse", "mart"):
            con.execute(f"create schema {schema}")
        con.execute(f"create table lake.orders as {lake_sql(gen)}")
        for table in TABLES:
            layer, name = table.split(".")
            con.execute(f"create table {table} as {MODELS[f'models/{layer}/{name}.sql']}")
        refs[gen] = {t: checksum(con, t) for t in TABLES}
        con.close()
    return refs


def set_generation(root: Path, gen: int) -> None:
    write_parquet(root / "lake/orders/data.parquet", lake_sql(gen))


def kiban(root: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "kiban", "--project", str(root), "run", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.slow
@pytest.mark.timeout(600)  # 40 real runs; ~300 s on a loaded shared 2-core machine (each also publishes a snapshot)
def test_sigkill_at_random_moments_loses_nothing(tmp_path):
    root = write_files(tmp_path / "proj", {"kiban.yml": "name: killme\nthreads: 2\n", **MODELS})
    refs = reference(tmp_path)
    rng = random.Random(7)
    set_generation(root, 0)
    seen: dict[str, set[str]] = {t: set() for t in TABLES}
    killed_mid_build = 0
    for iteration in range(20):
        gen = (iteration + 1) % GENERATIONS
        set_generation(root, gen)
        proc = kiban(root)
        time.sleep(rng.uniform(0.3, 1.6))
        finished = proc.poll() is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_mid_build += not finished

        # every published table is a complete version of some generation
        con = duckdb.connect(str(root / "kiban.duckdb"))  # replays the WAL the killed run left
        try:
            present = {f"{s}.{t}" for s, t in con.execute(
                "select schema_name, table_name from duckdb_tables()").fetchall()}
            for table in TABLES:
                if table in present:
                    value = checksum(con, table)
                    assert value in {refs[g][table] for g in range(GENERATIONS)}, (iteration, table)
                    seen[table].add(value)
        finally:
            con.close()

        # the killed run is not left "running" forever
        store = Store(load_project(root).state_url)
        try:
            store.reap_abandoned("killme")
            assert all(r.status != "running" for r in store.runs("killme", 50))
        finally:
            store.close()

        # and the next run completes and equals a clean build
        done = kiban(root)
        _, err = done.communicate(timeout=120)
        assert done.returncode == 0, err.decode()
        con = duckdb.connect(str(root / "kiban.duckdb"), read_only=True)
        try:
            assert {t: checksum(con, t) for t in TABLES} == refs[gen]
            assert con.execute("select count(*) from duckdb_tables() where table_name like '__kiban_tmp%'"
                               ).fetchone() == (0,)
        finally:
            con.close()
    assert killed_mid_build >= 10, "the test should kill most runs before they finish"
    assert sum(len(v) for v in seen.values()) > len(TABLES), "kills should observe tables in several versions"
