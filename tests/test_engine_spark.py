"""The Spark engine in local mode: transpiled models, Parquet versions behind an atomic pointer, fingerprints.

One SparkSession serves the whole module (the engine keeps it warm between runs of one process).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from kiban.engines.spark import parse_url
from kiban.errors import ConfigError, KibanError
from kiban.project import load_project
from kiban.run import RunOptions, run_project
from tests.conftest import write_files, write_parquet
from tests.engine_project import COMMITTED_ROWS, LATEST_ROWS, MARTS, MODELS, collected_lake, lake, normalise

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs Java")


def spark_url(folder: Path) -> str:
    return f"spark://{folder}?master=local[2]&spark.sql.shuffle.partitions=2"  # folder is absolute: spark:///…


def run(root: Path, **options: object):  # type: ignore[no-untyped-def]
    return run_project(load_project(root), RunOptions(**options))  # type: ignore[arg-type]


def statuses(result: object) -> dict[str, str]:
    return {k: o.status for k, o in result.outcomes.items()}  # type: ignore[attr-defined]


def pointer(warehouse: Path, key: str) -> dict:
    layer, name = key.split(".")
    return json.loads((warehouse / layer / name / "_kiban.json").read_text())


def published_rows(warehouse: Path, key: str) -> list[tuple]:
    """Read the published version's Parquet with DuckDB: what any reader of the warehouse sees."""
    layer, name = key.split(".")
    folder = warehouse / layer / name / pointer(warehouse, key)["version"]
    return duckdb.connect().execute(f"select * from read_parquet('{folder}/*.parquet')").fetchall()


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(Spark project, its warehouse folder, the same project on DuckDB), the DuckDB one already built."""
    base = tmp_path_factory.mktemp("spark")
    warehouse = base / "warehouse"
    roots = []
    for name, url in (("spark", spark_url(warehouse)), ("duck", "duckdb:///kiban.duckdb")):
        root = write_files(base / name, {**MODELS, "kiban.yml": f"name: shop\ntimezone: UTC\nwarehouse: '{url}'\n"})
        for table, sql in lake().items():
            write_parquet(root / "lake" / table / "part-0.parquet", sql)
        roots.append(root)
    assert run(roots[1]).status == "success"
    return roots[0], warehouse, roots[1]


def test_marts_equal_duckdb_row_by_row(projects: tuple[Path, Path, Path]) -> None:
    root, warehouse, duck = projects
    result = run(root)
    assert result.status == "success", result.outcomes
    con = duckdb.connect(str(duck / "kiban.duckdb"), read_only=True)
    try:
        for mart in MARTS:
            expected = normalise(con.execute(f"select * from {mart}").fetchall())
            assert len(expected) > 3
            assert normalise(published_rows(warehouse, mart)) == expected, mart
    finally:
        con.close()
    assert result.outcomes["warehouse.orders"].rows == 200


def test_rerun_is_fresh_then_a_lake_change_rebuilds(projects: tuple[Path, Path, Path]) -> None:
    root, warehouse, _ = projects
    if not (warehouse / "mart" / "monthly" / "_kiban.json").exists():
        assert run(root).status == "success"
    before = pointer(warehouse, "mart.monthly")
    again = run(root)
    assert again.status == "nothing"
    assert len(again.plan.fresh) == 4
    assert pointer(warehouse, "mart.monthly") == before
    first = root / "lake" / "orders" / "part-0.parquet"  # a new file with the same column types
    write_parquet(root / "lake" / "orders" / "part-1.parquet",
                  f"select order_id + 1000 as order_id, * exclude (order_id) from read_parquet('{first}') "
                  "where order_id = 1")
    third = run(root)
    assert set(statuses(third).values()) == {"success"}
    assert third.outcomes["warehouse.orders"].rows == 201  # the new lake file is read natively
    assert pointer(warehouse, "mart.monthly")["fingerprint"] != before["fingerprint"]
    versions = [p for p in (warehouse / "mart" / "monthly").iterdir() if p.name.startswith("v-")]
    assert len(versions) == 2  # the published one and the one before it; older ones are pruned


def test_failed_build_leaves_the_published_version(projects: tuple[Path, Path, Path]) -> None:
    root, warehouse, _ = projects
    assert run(root).status in ("success", "nothing")
    before = pointer(warehouse, "warehouse.orders")
    folders = sorted(p.name for p in (warehouse / "warehouse" / "orders").iterdir())
    sql = root / "models/warehouse/orders.sql"
    original = sql.read_text()
    try:  # fails at run time (ANSI cast of a non-number), after Spark started writing
        sql.write_text(original.replace("o.amount,", "cast('x' || o.order_id as integer) as amount,"))
        result = run(root)
        assert statuses(result)["warehouse.orders"] == "failed"
        assert statuses(result)["mart.monthly"] == "skipped"
        assert pointer(warehouse, "warehouse.orders") == before
        assert sorted(p.name for p in (warehouse / "warehouse" / "orders").iterdir()) == folders
        # a construct Spark cannot express: refused when the project loads, naming file, line and construct
        sql.write_text("select o.*\nfrom lake.orders o asof join lake.customers c on o.customer_id >= c.customer_id")
        with pytest.raises(KibanError) as refused:
            run(root, select=["warehouse.orders"])
        error = str(refused.value)
        assert "orders.sql:2" in error
        assert "ASOF JOIN" in error
        assert "Spark" in error
        assert "hint" in error
    finally:
        sql.write_text(original)


def test_spark_urls() -> None:
    assert parse_url("spark:///data/wh?master=local[2]&spark.executor.memory=1g") == (
        "local[2]", None, Path("/data/wh"), {"spark.executor.memory": "1g"})
    assert parse_url("spark://master:7077/data/wh")[:3] == ("spark://master:7077", None, Path("/data/wh"))
    assert parse_url("sc://connect:15002/data/wh")[:3] == (None, "sc://connect:15002", Path("/data/wh"))
    with pytest.raises(ConfigError, match="names no warehouse folder"):
        parse_url("sc://connect:15002")



REGISTER_AGAIN_AND_AGAIN = """
import sys
from kiban.engines.spark import SparkEngine
engine = SparkEngine(sys.argv[1])
for _ in range(int(sys.argv[2])):
    engine.prepare([], {})  # the next use registers the catalog again: its databases dropped and made anew
    assert engine.session().execute("select 1") == [(1,)]
print("ok")
"""


def test_processes_on_one_warehouse_never_drop_each_others_catalog(tmp_path: Path) -> None:
    """Workers and runs are separate JVMs on one warehouse folder: each one's session catalog (lake, warehouse,
    mart databases, re-made at every run) is its own. They shared one directory, so one process dropping its
    databases deleted the folder another had just made ("Unable to create database lake"; found by the soak)."""
    url = spark_url(tmp_path / "warehouse")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, "-c", REGISTER_AGAIN_AND_AGAIN, url, "40"], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(2)]
    outputs = [proc.communicate(timeout=600)[0] for proc in procs]
    assert [o.strip().splitlines()[-1] for o in outputs] == ["ok", "ok"], [o[-3000:] for o in outputs]
    assert not (tmp_path / "warehouse" / "_spark").exists()  # nothing of a session's catalog in the shared folder


def test_the_lake_is_exactly_the_committed_files(tmp_path: Path) -> None:
    from kiban.engines.spark import SparkEngine

    root = write_files(tmp_path / "lake", {"kiban.yml": "name: shop\ntimezone: UTC\n"})
    asset, collected = collected_lake(root)
    engine = SparkEngine(spark_url(tmp_path / "warehouse"))
    assert engine.prepare([asset], collected) == {"lake.events": "load:L1"}
    session = engine.session()
    assert sorted(session.execute("select id, v from lake.events")) == COMMITTED_ROWS
    assert sorted(session.execute("select id, v from lake.events_latest")) == LATEST_ROWS
    assert len(session.execute("select valid_from, valid_to from lake.events_history")) == 4


def test_planning_needs_no_spark_and_the_publish_log_has_every_swap(projects: tuple[Path, Path, Path]) -> None:
    """A run with nothing to build never starts a JVM: the plan comes from the pointers and the lake's files."""
    from kiban.engines.spark import SparkEngine

    root, warehouse, _ = projects
    assert run(root).status in ("success", "nothing")
    project = load_project(root)
    engine = SparkEngine(spark_url(warehouse))
    versions = engine.prepare([a for a in project.assets.values() if a.layer == "lake"])
    published = engine.published()
    assert engine._spark is None  # neither the session nor the catalog was touched
    assert set(versions) == {"lake.orders", "lake.customers"}
    assert "mart.monthly" in published
    log = engine.publishes()
    assert log
    assert {asset for asset, _ in log} >= set(published)
    assert [f for a, f in log if a == "mart.monthly"][-1] == published["mart.monthly"]
    assert engine.session().execute("select count(*) from mart.monthly")[0][0] > 0  # registered when read


def test_a_lake_table_spark_cannot_read_is_found_without_spark(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from kiban.engines.base import UNREADABLE_LAKE
    from kiban.engines.spark import SparkEngine

    root = write_files(tmp_path / "p", {"kiban.yml": "name: shop\ntimezone: UTC\n",
                                        "models/warehouse/x.sql": "select * from lake.t\n"})
    (root / "lake" / "t").mkdir(parents=True)
    pq.write_table(pa.table({"a": pa.array([1], pa.int32())}), root / "lake" / "t" / "part-0.parquet")
    pq.write_table(pa.table({"a": pa.array([2], pa.int64())}), root / "lake" / "t" / "part-1.parquet")
    engine = SparkEngine(spark_url(tmp_path / "warehouse"))
    versions = engine.prepare([load_project(root).assets["lake.t"]])
    assert versions["lake.t"].startswith(UNREADABLE_LAKE)
    assert "int32" in versions["lake.t"]
    assert engine._spark is None
