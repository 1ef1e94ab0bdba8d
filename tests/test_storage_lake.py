"""The lake on shared storage (issue 18, item 3): each collected table is a Delta table on an S3-compatible
server on loopback, one commit per load; DuckDB models read the snapshot the state store recorded; a retraction
is a new snapshot; a process killed between its Delta commit and its manifest leaves no load visible to kiban, and
the next load undoes the stray commit with a new snapshot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests import s3_server
from tests.helpers.loads import MODEL, SOURCE, mart
from tests.s3_server import CREDENTIALS, S3, kiban

s3_endpoint, s3 = s3_server.s3_endpoint, s3_server.s3  # the fixtures

deltalake = pytest.importorskip("deltalake")

def delta_rows(s3: S3, version: int | None = None) -> dict[str, int]:
    """Rows per load id of the shared table, as another tool reads it (delta-rs, no kiban)."""
    table = deltalake.DeltaTable(f"s3://{s3.bucket}/lake/seed_items", version=version, storage_options=s3.options())
    data = table.to_pyarrow_table(columns=["_load_id"]).column("_load_id").to_pylist()
    return {load: data.count(load) for load in set(data)}


def project(make_project: Any, s3: S3, **files: str) -> Path:
    return make_project({"kiban.yml": "name: shop\ntimezone: UTC\n" + s3.yml(), "sources/seed.yml": SOURCE,
                         **MODEL, **files})


def test_loads_commit_to_s3_models_read_the_snapshot_and_retract_is_a_new_snapshot(
        make_project: Any, s3: S3) -> None:
    root = project(make_project, s3, **{"data/a.csv": "k,v\n1,10\n2,20\n3,30\n"})
    done = kiban("--project", root, "run")
    assert done.returncode == 0, done.stderr
    (root / "data/b.csv").write_text("k,v\n4,40\n5,50\n")
    assert kiban("--project", root, "run").returncode == 0
    assert mart(root) == (5, 150)
    loads = json.loads(kiban("--project", root, "loads", "seed_items", "--json").stdout)
    first, second = loads[1]["load_id"], loads[0]["load_id"]
    assert delta_rows(s3) == {first: 3, second: 2}  # one commit per load, readable by any Delta reader
    assert delta_rows(s3, 0) == {first: 3}  # the snapshot before the second load is still there
    # the models read the shared table, not the local folder: empty the local lake, and the rows are still there
    for path in (root / "lake" / "seed").rglob("*.parquet"):
        path.unlink()
    (root / "models/mart/n.sql").write_text("select count(*) as n, sum(v::int) + 0 as total from lake.seed_items")
    assert kiban("--project", root, "run").returncode == 0
    assert mart(root) == (5, 150)
    retracted = kiban("--project", root, "loads", "retract", first, "--json")
    assert retracted.returncode == 0, retracted.stderr
    assert json.loads(retracted.stdout)["retracted_version"] == 2  # the snapshot kiban reads from now on
    assert [x["lake_version"] for x in loads] == [1, 0]
    assert delta_rows(s3) == {second: 2}  # a new snapshot without the load's rows …
    assert delta_rows(s3, 1) == {first: 3, second: 2}  # … and the one before it stays readable
    (root / "data/a.csv").unlink()
    assert kiban("--project", root, "run").returncode == 0
    assert mart(root) == (2, 90)


KILL_AFTER_DELTA_COMMIT = textwrap.dedent("""
    import os, signal, sys
    from kiban.collect import manifest
    from kiban.collect.load import load_table
    from kiban.project import load_project
    from kiban.store import Store

    def killed(self, record, *args, **kwargs):  # the Delta commit is made; the manifest is not
        os.kill(os.getpid(), signal.SIGKILL)

    manifest.Manifests.commit = killed
    project = load_project(sys.argv[1])
    load_table(project, "seed", "items", Store(project.state_url))
""")


def test_a_load_killed_between_delta_commit_and_manifest_is_never_seen_and_is_undone(
        make_project: Any, s3: S3) -> None:
    root = project(make_project, s3, **{"data/a.csv": "k,v\n1,10\n2,20\n3,30\n"})
    assert kiban("--project", root, "run").returncode == 0
    (first,) = delta_rows(s3)
    (root / "data/b.csv").write_text("k,v\n4,40\n5,50\n")
    child = subprocess.run([sys.executable, "-c", KILL_AFTER_DELTA_COMMIT, str(root)], capture_output=True,
                           text=True, timeout=120, check=False, env={**os.environ, **CREDENTIALS})
    assert child.returncode == -9, child.stderr
    stray = delta_rows(s3)
    assert len(stray) == 2  # the bucket holds the killed load's commit …
    (root / "models/mart/n.sql").write_text("select count(*) as n, sum(v::int) + 0 as total from lake.seed_items")
    assert kiban("--project", root, "run", "mart.n").returncode == 0
    assert mart(root) == (3, 60)  # … but kiban reads the recorded snapshot: the load is not there
    assert kiban("--project", root, "run").returncode == 0  # the next load undoes it, then lands b.csv once
    assert mart(root) == (5, 150)
    rows = delta_rows(s3)
    assert rows[first] == 3
    assert sum(rows.values()) == 5
    assert len(rows) == 2
    history = deltalake.DeltaTable(f"s3://{s3.bucket}/lake/seed_items", storage_options=s3.options()).history()
    assert [h.get("kiban.load") for h in history][:2][1] == "repair"


KEYED = "type: files\ntables:\n  items:\n    path: data/*.csv\n    settle: 0\n    primary_key: [k]\n    history: scd2\n"


def test_another_machine_collects_a_keyed_table_against_the_shared_snapshot(make_project: Any, s3: S3) -> None:
    root = make_project({"kiban.yml": "name: shop\ntimezone: UTC\n" + s3.yml(), "sources/seed.yml": KEYED,
                         "models/mart/n.sql": "select count(*) as n, sum(v::int) as total from lake.seed_items_latest",
                         "data/a.csv": "k,v\n1,10\n2,20\n"})
    assert kiban("--project", root, "run").returncode == 0
    assert mart(root) == (2, 30)
    for path in (root / "lake").rglob("*.parquet"):  # this machine never saw the first load's files
        path.unlink()
    # a new version of key 1, key 2 unchanged (scd2 compares it with the current version: it does not land), key 3
    (root / "data/b.csv").write_text("k,v\n1,11\n2,20\n3,30\n")
    done = kiban("--project", root, "run")
    assert done.returncode == 0, done.stderr + done.stdout
    assert mart(root) == (3, 61)
    assert sum(delta_rows(s3).values()) == 4  # key 1 twice (two versions), 2 and 3 once
