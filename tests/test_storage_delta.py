"""kiban.storage on an S3-compatible server on loopback, below the CLI: the ``storage:`` block refuses what it
cannot use safely; a load that supersedes others is ONE commit; repair undoes commits no manifest recorded; a
snapshot's files are fetched once."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from kiban.storage.cache import local_files, snapshot_uris
from kiban.storage.delta import DeltaTables, delta_ready
from kiban.storage.spec import StorageConfig, StorageError
from tests import s3_server
from tests.s3_server import S3

s3_endpoint, s3 = s3_server.s3_endpoint, s3_server.s3  # the fixtures
deltalake = pytest.importorskip("deltalake")


@pytest.mark.parametrize(("block", "message"), [
    ({"lake": "s3://b/l", "access_key_id": "AKIAREALKEY"}, "env:NAME"),
    ({"lake": "s3://"}, "name a bucket"),
    ({"lake": "gs://b/l"}, "s3://bucket/prefix or a local folder"),
    ({"lake": "s3://b/l", "bucket": "x"}, "Extra inputs"),
])
def test_the_storage_block_refuses_what_it_cannot_use(block: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        StorageConfig(**block)  # type: ignore[arg-type]


def test_a_missing_credential_names_the_variable_never_a_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KIBAN_NO_SUCH_KEY", raising=False)
    monkeypatch.setenv("KIBAN_SECRET_SET", "s3cr3t-value")
    spec = StorageConfig(lake="s3://b/l", access_key_id="env:KIBAN_NO_SUCH_KEY",
                         secret_access_key="env:KIBAN_SECRET_SET")
    with pytest.raises(StorageError) as raised:
        spec.options()
    assert "KIBAN_NO_SUCH_KEY" in str(raised.value)
    assert "s3cr3t" not in str(raised.value)


def _load(folder: Path, load_id: str, values: list[int]) -> Path:
    path = folder / f"{load_id}.parquet"
    pq.write_table(pa.table({"v": pa.array(values, pa.int64()), "_load_id": [load_id] * len(values)}), path)
    return path


def _rows(tables: DeltaTables, name: str, version: int | None = None) -> dict[str, int]:
    data = deltalake.DeltaTable(tables.uri(name), version=version, storage_options=tables.options)
    ids = data.to_pyarrow_table().column("_load_id").to_pylist()
    return {i: ids.count(i) for i in set(ids)}


def test_a_superseding_load_is_one_commit_and_repair_undoes_unrecorded_commits(s3: S3, tmp_path: Path) -> None:
    tables = DeltaTables(f"s3://{s3.bucket}/lake", s3.options())
    v0 = tables.commit_load("t", [_load(tmp_path, "a", [1, 2, 3])], "a")
    v1 = tables.commit_load("t", [_load(tmp_path, "b", [4])], "b")
    v2 = tables.commit_load("t", [_load(tmp_path, "c", [5, 6])], "c", replaces=["a"])
    assert (v0, v1, v2) == (0, 1, 2)  # one commit each: a's rows left in the commit that added c's
    assert _rows(tables, "t") == {"b": 1, "c": 2}
    assert _rows(tables, "t", 1) == {"a": 3, "b": 1}
    tables.commit_load("t", [_load(tmp_path, "d", [7])], "d")  # a commit no manifest recorded (killed after it)
    assert tables.repair("t", recorded=2) == 4
    assert _rows(tables, "t") == {"b": 1, "c": 2}
    assert tables.repair("t", recorded=4) is None  # nothing to undo
    assert tables.retract("t", ["b"]) == 5
    assert _rows(tables, "t") == {"c": 2}
    assert tables.repair("u", recorded=None) is None  # no table
    tables.commit_load("u", [_load(tmp_path, "e", [1])], "e")
    assert tables.repair("u", recorded=None) == 1
    assert _rows(tables, "u") == {}  # nothing recorded: empty


def test_a_snapshot_is_fetched_once_and_read_as_its_rows(s3: S3, tmp_path: Path) -> None:
    tables = DeltaTables(f"s3://{s3.bucket}/lake", s3.options())
    version = tables.commit_load("t", [_load(tmp_path, "a", [1, 2]), _load(tmp_path, "b", [3])], "a")
    uris = tables.files("t", version)
    cache = tmp_path / "cache"
    first = local_files(uris, cache, tables.options)
    stamps = [Path(p).stat().st_mtime_ns for p in first]
    again = local_files(uris, cache, tables.options)
    assert again == first
    assert [Path(p).stat().st_mtime_ns for p in again] == stamps  # not fetched again
    assert sorted(pq.read_table(first).column("v").to_pylist()) == [1, 2, 3]
    assert not list(cache.rglob("*.part"))
    # a version's file list is read from the Delta log once per machine: it never changes
    asked: list[int] = []
    listing = lambda: asked.append(1) or tables.files("t", version)  # noqa: E731
    assert snapshot_uris(cache, tables.uri("t"), version, listing) == uris
    assert snapshot_uris(cache, tables.uri("t"), version, listing) == uris
    assert asked == [1]


def test_types_delta_has_no_name_for_are_widened() -> None:
    schema = pa.schema([("a", pa.uint8()), ("b", pa.uint64()), ("c", pa.dictionary(pa.int32(), pa.string()))])
    assert delta_ready(schema).types == [pa.int16(), pa.decimal128(20, 0), pa.string()]
