"""Published warehouse/mart tables on shared storage (issue 18, item 3): after a run each published table is one
Delta commit on an S3-compatible server on loopback (or a local folder), readable by other tools; a reader in
another process sees the old snapshot or the new one — never a mix — while tables are republished, and a publish
killed midway leaves the previous snapshot whole."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from kiban.storage.delta import DeltaTables
from tests import s3_server
from tests.s3_server import CREDENTIALS, S3, kiban

s3_endpoint, s3 = s3_server.s3_endpoint, s3_server.s3  # the fixtures
deltalake = pytest.importorskip("deltalake")

SOURCE = "type: files\ntables:\n  items:\n    path: data/*.csv\n    settle: 0\n"
MODELS = {"models/warehouse/items.sql": "select k::int as k, v::int as v, 'ü' || k as label from lake.seed_items",
          "models/mart/n.sql": "select count(*) as n, sum(v) as total from warehouse.items"}


def test_a_run_publishes_its_tables_to_s3_and_other_readers_read_them(make_project: Any, s3: S3) -> None:
    root = make_project({"kiban.yml": "name: shop\ntimezone: UTC\n" + s3.yml(warehouse="published"),
                         "sources/seed.yml": SOURCE, **MODELS, "data/a.csv": "k,v\n1,10\n2,20\n3,30\n"})
    done = kiban("--project", root, "run")
    assert done.returncode == 0, done.stderr
    opts = s3.options()
    mart = deltalake.DeltaTable(f"s3://{s3.bucket}/published/mart/n", storage_options=opts)
    assert mart.to_pyarrow_table().to_pylist() == [{"n": 3, "total": 60}]
    items = deltalake.DeltaTable(f"s3://{s3.bucket}/published/warehouse/items", storage_options=opts)
    assert sorted(items.to_pyarrow_table().column("label").to_pylist()) == ["ü1", "ü2", "ü3"]
    (root / "data/b.csv").write_text("k,v\n4,40\n")
    assert kiban("--project", root, "run").returncode == 0
    mart = deltalake.DeltaTable(f"s3://{s3.bucket}/published/mart/n", storage_options=opts)
    assert mart.version() == 1
    assert mart.to_pyarrow_table().to_pylist() == [{"n": 4, "total": 100}]
    assert mart.history(1)[0]["kiban.version"]  # the run it came from
    # nothing rebuilt, nothing written again
    assert kiban("--project", root, "run").returncode == 0
    assert deltalake.DeltaTable(f"s3://{s3.bucket}/published/mart/n", storage_options=opts).version() == 1


def test_local_disk_storage_other_engines_read_the_snapshot_files(make_project: Any) -> None:
    root = make_project({"kiban.yml": "name: shop\ntimezone: UTC\nstorage:\n  lake: shared/lake\n"
                                      "  warehouse: shared/published\n",
                         "sources/seed.yml": SOURCE, **MODELS, "data/a.csv": "k,v\n1,10\n2,20\n3,30\n"})
    done = kiban("--project", root, "run")
    assert done.returncode == 0, done.stderr
    lake = deltalake.DeltaTable(str(root / "shared/lake/seed_items"))
    assert lake.to_pyarrow_table().num_rows == 3
    # another engine reads the Parquet files the snapshot lists (as Spark or any Parquet reader would)
    files = deltalake.DeltaTable(str(root / "shared/published/mart/n")).file_uris()
    con = duckdb.connect()
    assert con.execute("select n, total from read_parquet($1)", [files]).fetchall() == [(3, 60)]


READER = textwrap.dedent("""
    import json, sys, time
    from deltalake import DeltaTable
    uri, opts, until = sys.argv[1], json.loads(sys.argv[2]), time.monotonic() + float(sys.argv[3])
    seen = []
    while time.monotonic() < until:
        table = DeltaTable(uri, storage_options=opts).to_pyarrow_table()
        gens = table.column("gen").unique().to_pylist()
        seen.append([table.num_rows, gens])
    print(json.dumps(seen))
""")

ROWS = 200_000


def generation(gen: int) -> pa.Table:
    return pa.table({"i": pa.array(range(ROWS), pa.int64()), "gen": pa.array([gen] * ROWS, pa.int64()),
                     "pad": pa.array([f"row-{gen}"] * ROWS)})


def test_a_reader_sees_old_or_new_never_a_mix_while_a_table_is_republished(s3: S3) -> None:
    tables = DeltaTables(f"s3://{s3.bucket}/published", s3.options())
    tables.publish("mart/big", generation(0), "g0")
    reader = subprocess.Popen([sys.executable, "-c", READER, f"s3://{s3.bucket}/published/mart/big",
                               json.dumps(s3.options()), "6"], stdout=subprocess.PIPE, text=True)
    gen = 0
    while reader.poll() is None and gen < 40:
        gen += 1
        tables.publish("mart/big", generation(gen), f"g{gen}")
    out, _ = reader.communicate(timeout=60)
    seen = json.loads(out)
    assert seen, "the reader read nothing"
    assert all(rows == ROWS and len(gens) == 1 for rows, gens in seen), [s for s in seen if s[0] != ROWS][:3]
    assert len({gens[0] for _, gens in seen}) >= 2  # it read while the table changed


PUBLISHER = textwrap.dedent("""
    import json, sys
    import pyarrow as pa
    from kiban.storage.delta import DeltaTables
    rows = 3_000_000
    data = pa.table({"i": pa.array(range(rows), pa.int64()), "gen": pa.array([1] * rows, pa.int64())})
    print("writing", flush=True)
    DeltaTables(sys.argv[1], json.loads(sys.argv[2])).publish("mart/big", data, "g1")
""")


def test_a_publish_killed_midway_leaves_the_previous_snapshot_whole(s3: S3) -> None:
    root = f"s3://{s3.bucket}/published"
    tables = DeltaTables(root, s3.options())
    tables.publish("mart/big", generation(0), "g0")
    killed, took = 0, []
    rng = random.Random(18)
    for _ in range(3):
        env = {**os.environ, **CREDENTIALS, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
        child = subprocess.Popen([sys.executable, "-c", PUBLISHER, root, json.dumps(s3.options())], env=env,
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "writing"
        started = time.monotonic()
        time.sleep(rng.uniform(0.05, 0.6))  # somewhere in writing its data files (a whole publish takes longer)
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            killed += 1
        child.wait(60)
        took.append(time.monotonic() - started)
        table = deltalake.DeltaTable(f"{root}/mart/big", storage_options=s3.options()).to_pyarrow_table()
        gens = table.column("gen").unique().to_pylist()
        assert len(gens) == 1
        assert table.num_rows == {0: ROWS, 1: 3_000_000}[gens[0]]
        if gens == [1]:  # it finished before the kill: start again from the old snapshot
            tables.publish("mart/big", generation(0), "g0")
    assert killed, "no publish was killed midway"
    tables.publish("mart/big", generation(2), "g2")  # the next publish works over the leftovers
    assert tables.tag("mart/big") == "g2"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs Java")
def test_spark_reads_the_newest_snapshot_of_a_local_disk_table(tmp_path: Path) -> None:
    """Spark (no Delta jar, no downloads) reads a snapshot as the Parquet files it lists: only the newest rows."""
    pyspark = pytest.importorskip("pyspark.sql")
    tables = DeltaTables(str(tmp_path / "published"), {})
    tables.publish("mart/x", pa.table({"a": [1, 2, 3], "s": ["ü", "b", None]}), "g0")
    tables.publish("mart/x", pa.table({"a": [4, 5], "s": ["x", "y"]}), "g1")
    files = deltalake.DeltaTable(tables.uri("mart/x")).file_uris()
    spark = pyspark.SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false").getOrCreate()
    try:
        assert sorted(tuple(r) for r in spark.read.parquet(*files).collect()) == [(4, "x"), (5, "y")]
    finally:
        spark.stop()
