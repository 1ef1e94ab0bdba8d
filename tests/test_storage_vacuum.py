"""Loads land directly in shared storage, and `kiban storage vacuum` (issue 18): a load's landed Parquet files are
put into the Delta table as they are (no re-encoding, one commit); files put by a load killed before its commit
are invisible, and vacuum removes them with the files of old versions — never a file of the version the state
store recorded or the current publication names — and prunes the local read cache. On a local disk and on an
S3-compatible server on loopback (moto)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests import s3_server
from tests.helpers.loads import SOURCE, mart
from tests.s3_server import S3, kiban

s3_endpoint, s3 = s3_server.s3_endpoint, s3_server.s3  # the fixtures
deltalake = pytest.importorskip("deltalake")

MODELS = {"models/warehouse/items.sql": "select k::int as k, v::int as v from lake.seed_items",
          "models/mart/n.sql": "select count(*) as n, sum(v) as total from warehouse.items"}


@pytest.fixture(params=["disk", "s3"])
def where(request: pytest.FixtureRequest) -> tuple[str, dict[str, str], str]:
    """(kiban.yml storage block, delta-rs options, the lake table's URI prefix)."""
    if request.param == "disk":
        return "storage:\n  lake: shared/lake\n  warehouse: shared/published\n  retention: 0\n", {}, "shared/lake"
    bucket: S3 = request.getfixturevalue("s3")
    return (bucket.yml(warehouse="published").replace("storage:\n", "storage:\n  retention: 0\n"), bucket.options(),
            f"s3://{bucket.bucket}/lake")


def table_uri(root: Path, prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix.startswith("s3://") else str(root / prefix / name)


def test_loads_land_as_they_are_and_vacuum_removes_only_what_no_kept_version_names(
        make_project: Any, where: tuple[str, dict[str, str], str]) -> None:
    block, options, prefix = where
    root = make_project({"kiban.yml": "name: shop\ntimezone: UTC\n" + block, "sources/seed.yml": SOURCE, **MODELS,
                         "data/a.csv": "k,v\n1,10\n2,20\n3,30\n"})
    assert kiban("--project", root, "run").returncode == 0
    (root / "data/b.csv").write_text("k,v\n4,40\n")
    done = kiban("--project", root, "run")
    assert done.returncode == 0, done.stderr
    assert mart(root) == (4, 100)
    loads = json.loads(kiban("--project", root, "loads", "seed_items", "--json").stdout)
    second = loads[0]
    uri = table_uri(root, prefix, "seed_items")
    lake = deltalake.DeltaTable(uri, storage_options=options)
    # the second load's file is in the table under its load id, byte for byte the file it landed
    direct = [u for u in lake.file_uris() if u.rsplit("/", 1)[-1] == f"{second['load_id']}-0.parquet"]
    assert len(direct) == 1
    assert lake.version() == second["lake_version"] == 1
    landed = (root / "lake" / second["files"][0]["path"]).read_bytes()
    import pyarrow.fs as pafs

    filesystem, path = pafs.FileSystem.from_uri(direct[0]) if not options else (
        pafs.S3FileSystem(endpoint_override=options["AWS_ENDPOINT_URL"].split("//")[1], scheme="http",
                          access_key=options["AWS_ACCESS_KEY_ID"], secret_key=options["AWS_SECRET_ACCESS_KEY"],
                          region="us-east-1"), direct[0][len("s3://"):])
    with filesystem.open_input_stream(path) as stream:
        assert stream.read() == landed  # not re-encoded
    # a load killed after it put its file and before its commit: the file is there, in no version
    orphan = f"{uri}/20991231T000000000-dead00-0.parquet"
    with filesystem.open_output_stream(orphan[len("s3://"):] if options else orphan) as out:
        out.write(landed)
    assert orphan not in deltalake.DeltaTable(uri, storage_options=options).file_uris()
    # a retraction makes version 2 without the second load: version 1's new file is kept only by retention
    assert kiban("--project", root, "loads", "retract", second["load_id"]).returncode == 0
    (root / "data/b.csv").unlink()  # else the next run collects it again (a retracted load's files may be)
    assert kiban("--project", root, "run").returncode == 0
    assert mart(root) == (3, 60)
    time.sleep(1.1)
    dry = json.loads(kiban("--project", root, "storage", "vacuum", "--dry-run", "--json").stdout)
    assert dry["dry_run"]
    assert any(f.endswith("dead00-0.parquet") for f in dry["tables"][uri])
    assert any(f.endswith("dead00-0.parquet") for f in
               deltalake.DeltaTable(uri, storage_options=options).vacuum(0, dry_run=True,
                                                                         enforce_retention_duration=False, full=True))
    done = kiban("--project", root, "storage", "vacuum", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    removed = report["tables"][uri]
    assert any(f.endswith("dead00-0.parquet") for f in removed)  # the killed load's file
    assert any(f.endswith(f"{second['load_id']}-0.parquet") for f in removed)  # retracted, past retention
    assert report["kept_versions"][uri] == [2]
    # what kiban reads is whole: the recorded version, the published tables at the current publication
    assert kiban("--project", root, "run", "--full-refresh").returncode == 0
    assert mart(root) == (3, 60)
    after = deltalake.DeltaTable(uri, storage_options=options)
    assert sorted(after.to_pyarrow_table().column("k").to_pylist()) == ["1", "2", "3"]
    published = deltalake.DeltaTable(table_uri(root, prefix.replace("lake", "published"), "mart/n"),
                                     storage_options=options)
    assert published.to_pyarrow_table().to_pylist() == [{"n": 3, "total": 60}]
    # the vacuum's own bookkeeping commits are no unrecorded load: the next load repaired nothing
    history = deltalake.DeltaTable(uri, storage_options=options).history()
    assert not [h for h in history if h.get("kiban.load") == "repair"], history
    if not options:  # on disk: what is left is exactly the recorded version's files
        left = {p.name for p in Path(uri).glob("*.parquet")}
        assert left == {u.rsplit("/", 1)[-1] for u in after.file_uris()}


def test_vacuum_keeps_the_recorded_and_published_versions_however_old(make_project: Any) -> None:
    root = make_project({"kiban.yml": "name: shop\ntimezone: UTC\nstorage:\n  lake: shared/lake\n"
                                      "  warehouse: shared/published\n  retention: 0\n",
                         "sources/seed.yml": SOURCE, **MODELS, "data/a.csv": "k,v\n1,10\n"})
    assert kiban("--project", root, "run").returncode == 0
    before = mart(root)
    time.sleep(1.1)
    done = kiban("--project", root, "storage", "vacuum", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["files"] == 0  # every file is the recorded or published version's
    published = str(root / "shared/published/mart/n")
    assert report["kept_versions"][published] == [0]
    # another reader (a machine with the published tables only) reads it whole after the vacuum
    files = deltalake.DeltaTable(published).file_uris()
    assert duckdb.connect().execute("select n, total from read_parquet($1)", [files]).fetchone() == before


def test_the_cache_is_pruned_of_copies_no_kept_version_names(make_project: Any, s3: S3) -> None:
    root = make_project({"kiban.yml": "name: shop\ntimezone: UTC\n" + s3.yml().replace(
        "storage:\n", "storage:\n  retention: 0\n"), "sources/seed.yml": SOURCE, **MODELS, "data/a.csv": "k,v\n1,10\n"})
    assert kiban("--project", root, "run").returncode == 0
    cache = root / ".kiban/storage-cache"
    stale = cache / s3.bucket / "lake/seed_items/old-copy.parquet"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"x" * 100)
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    fresh = cache / s3.bucket / "lake/seed_items/just-fetched.parquet"
    fresh.write_bytes(b"y" * 10)  # a run on this machine may be reading it: younger than the grace
    kept = [p for p in cache.rglob("*.parquet") if p not in (stale, fresh)]
    assert kept  # the snapshot's own copies
    for path in kept:
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    report = json.loads(kiban("--project", root, "storage", "vacuum", "--json").stdout)
    assert not stale.exists()
    assert fresh.exists()
    assert all(p.exists() for p in kept)
    assert report["cache_files"] == 1
    assert report["cache_bytes"] == 100
    assert mart(root) == (1, 10)
