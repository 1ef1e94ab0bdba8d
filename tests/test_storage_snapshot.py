"""Published tables as one snapshot (issue 18): a run's published warehouse/mart tables become visible together,
through the run-level publication (``<storage.warehouse>/_kiban_publications``, one Delta commit per run). A
reader looping while two dependent tables are republished run after run never sees one run's ``warehouse.a``
with another run's ``mart.b``; a reader taking each table's newest version on its own can."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest

from kiban.project import load_project
from kiban.storage import publish
from kiban.storage.delta import DeltaTables

pytest.importorskip("deltalake")

RUNS = 6
MODELS = {"models/warehouse/a.sql": "select id, gen, id * gen as v from lake.t",
          "models/mart/b.sql": "select max(gen) as gen, sum(v) as total from warehouse.a"}


def write_lake(root: Path, gen: int) -> None:
    folder = root / "lake" / "t"
    for old in folder.glob("*.parquet"):
        old.unlink()
    duckdb.connect().execute(f"copy (select i as id, {gen} as gen from range(1, 2001) t(i)) to "
                             f"'{folder}/part-{gen}.parquet' (format parquet)")


def consistent(a: Any, b: Any) -> bool:
    gens = set(a.column("gen").to_pylist())
    row = b.to_pylist()[0]
    return gens == {row["gen"]} and sum(a.column("v").to_pylist()) == row["total"]


def test_a_reader_never_sees_two_runs_mixed(make_project: Any) -> None:
    root = make_project({"kiban.yml": "name: shop\ntimezone: UTC\nstorage:\n  warehouse: shared/published\n",
                         **MODELS}, lake={"t": "select i as id, 1 as gen from range(1, 2001) t(i)"})
    from kiban.operate import run
    from kiban.run import RunOptions

    assert run(load_project(root), RunOptions()).result.ok
    project = load_project(root)
    delta = DeltaTables(str(root / "shared/published"), {})
    stop = threading.Event()
    seen = {"pointer": 0, "pointer_mixed": 0, "newest": 0, "newest_mixed": 0}
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            while not stop.is_set():
                tables = publish.read_published(project, ["warehouse.a", "mart.b"])  # one publication
                seen["pointer"] += 1
                seen["pointer_mixed"] += not consistent(tables["warehouse.a"], tables["mart.b"])
                # each table's newest version on its own: what a reader without the publication gets
                a = delta.read("warehouse/a", delta.latest("warehouse/a") or 0)
                b = delta.read("mart/b", delta.latest("mart/b") or 0)
                seen["newest"] += 1
                seen["newest_mixed"] += not consistent(a, b)
        except BaseException as exc:  # reported by the test's thread
            errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for gen in range(2, RUNS + 2):
            write_lake(root, gen)
            assert run(load_project(root), RunOptions()).result.ok
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(60)
    assert not errors, errors
    assert seen["pointer"] > RUNS, seen
    assert seen["pointer_mixed"] == 0, seen
    print("reads", seen)
    versions = publish.published_versions(project)
    assert set(versions) == {"warehouse.a", "mart.b"}
    final = publish.read_published(project, ["warehouse.a", "mart.b"])
    assert final["mart.b"].to_pylist()[0]["gen"] == RUNS + 1
    # the publication names the run's versions, and lists what each table's newest commit says it came from
    assert versions == {"warehouse.a": delta.latest("warehouse/a"), "mart.b": delta.latest("mart/b")}
