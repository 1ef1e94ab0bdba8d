"""Issue 23: what a cold run no longer pays per model, and the guarantees that stay.

A plain SQL model's table is published by its ``create or replace … as`` alone (one transaction of its own), its
fingerprint by a second small commit; a table caught between the two (a killed process) carries no fingerprint
and is rebuilt by the next run. A cold load asks DuckDB's parser for every model's tree in one statement."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from kiban.engines import duckdb_marks, open_engine
from kiban.graph import build_graph, duckrefs
from kiban.graph.sqlrefs import SqlCache
from kiban.project import load_project
from kiban.run import RunOptions, run_project
from kiban.status import AttemptStatus


def _project(root: Path, models: int = 3) -> Path:
    (root / "models" / "warehouse").mkdir(parents=True)
    (root / "kiban.yml").write_text("name: plain\nthreads: 1\n")
    for i in range(models):
        source = "select 1 as x" if i == 0 else f"select x + 1 as x from warehouse.m{i - 1}"
        (root / "models" / "warehouse" / f"m{i}.sql").write_text(source + "\n")
    return root


def _published(root: Path) -> dict[str, str]:
    project = load_project(root)
    engine = open_engine(project.warehouse_url, project.config.timezone)
    try:
        return engine.published()
    finally:
        engine.close()


def test_a_plain_table_carries_its_fingerprint_and_one_without_it_is_rebuilt(tmp_path):
    root = _project(tmp_path / "p")
    first = run_project(load_project(root), RunOptions())
    assert first.ok
    before = _published(root)
    assert sorted(k for k in before if k.startswith("warehouse.")) == ["warehouse.m0", "warehouse.m1", "warehouse.m2"]

    # a process killed between the table's commit and its fingerprint's: the table is whole, its version unknown
    con = duckdb.connect(str(root / "kiban.duckdb"))
    con.execute("comment on table warehouse.m1 is NULL")
    con.close()
    assert "warehouse.m1" not in _published(root)

    second = run_project(load_project(root), RunOptions())
    assert second.ok
    assert second.outcomes["warehouse.m1"].status == AttemptStatus.SUCCESS  # rebuilt, not taken as fresh
    assert "warehouse.m0" not in second.outcomes  # its fingerprint is there: fresh
    assert _published(root)["warehouse.m1"] == before["warehouse.m1"]  # same code, same inputs: same version
    con = duckdb.connect(str(root / "kiban.duckdb"), read_only=True)
    assert con.execute("select x from warehouse.m2").fetchall() == [(3,)]
    con.close()


def test_a_failing_plain_model_leaves_the_published_version_and_its_fingerprint(tmp_path):
    root = _project(tmp_path / "p")
    assert run_project(load_project(root), RunOptions()).ok
    before = _published(root)["warehouse.m1"]
    (root / "models" / "warehouse" / "m1.sql").write_text("select no_such_column as x from warehouse.m0\n")
    failed = run_project(load_project(root), RunOptions())
    assert failed.outcomes["warehouse.m1"].status == AttemptStatus.FAILED
    assert _published(root)["warehouse.m1"] == before
    con = duckdb.connect(str(root / "kiban.duckdb"), read_only=True)
    assert con.execute("select x from warehouse.m1").fetchall() == [(2,)]
    con.close()


def test_a_cold_load_parses_every_model_in_one_batch_with_the_same_graph(tmp_path, monkeypatch):
    root = _project(tmp_path / "p", models=6)
    (root / "models" / "warehouse" / "m5.sql").write_text(
        "with m0 as (select 1 as x) select * from m0 join warehouse.m4 using (x)\n")
    project = load_project(root)
    batched = build_graph(project, SqlCache(None))
    assert duckrefs._serialized == {}  # nothing kept after the load

    monkeypatch.setattr(duckrefs.Serialized, "BATCH", 0)  # no batch: every text parsed alone, as before
    monkeypatch.setattr(duckrefs.Serialized, "__enter__", lambda self: self)
    alone = build_graph(project, SqlCache(None))
    assert batched.deps == alone.deps
    assert batched.sql_hashes == alone.sql_hashes
    assert batched.deps["warehouse.m5"] == ("warehouse.m4",)  # the CTE named like a table is no dependency


def test_a_batch_the_parser_refuses_falls_back_to_one_text_at_a_time(tmp_path, monkeypatch):
    texts = ["select 1 as x", "select * from warehouse.a join lake.b using (k)"]

    class Refusing:
        def execute(self, sql: str) -> object:
            if "values" in sql:
                raise duckdb.Error("refused")
            return real.execute(sql)

    real = duckrefs._connection()
    monkeypatch.setattr(duckrefs, "_connection", lambda: Refusing())
    with duckrefs.Serialized(texts) as batch:
        assert batch.texts == []
        refs = duckrefs.duckdb_refs(texts[1], Path("m.sql"))
    assert [(r.schema, r.name) for r in refs] == [("warehouse", "a"), ("lake", "b")]


def test_quick_builds_fingerprints_are_written_together_before_the_snapshot(tmp_path, monkeypatch):
    """Ten quick plain models: their fingerprints go in one commit (not one each), and the snapshot readers open
    carries every one."""
    root = _project(tmp_path / "p", models=10)
    monkeypatch.setattr(duckdb_marks, "ALONE", 3600.0)  # no build counts as slow, and none waits too long,
    monkeypatch.setattr(duckdb_marks, "WAIT", 3600.0)  # however loaded the machine
    batches: list[int] = []
    write = duckdb_marks._write
    monkeypatch.setattr(duckdb_marks, "_write", lambda cur, batch: (batches.append(len(batch)), write(cur, batch)))
    assert run_project(load_project(root), RunOptions()).ok
    assert sum(batches) == 10
    assert [n for n in batches if n] == [10]  # written once, when the engine closed
    con = duckdb.connect(str(root / "kiban.duckdb.snapshot"), read_only=True)
    marked = con.execute("select count(*) from duckdb_tables() where schema_name = 'warehouse' and "
                         "comment like 'kiban:%'").fetchone()
    con.close()
    assert marked == (10,)


@pytest.mark.parametrize(("setting", "value", "written"), [
    ("ALONE", 0.0, [1, 1, 1, 1, 1, 1, 1]),  # every build counts as slow: its fingerprint goes at once
    ("WAIT", 0.0, [1, 1, 1, 1, 1, 1, 1]),  # none may wait: each goes with the next build's end, at once
    ("BATCH", 3, [3, 3, 1]),  # a full batch is written when it fills; the rest when the engine closes
])
def test_what_makes_waiting_fingerprints_be_written(tmp_path, monkeypatch, setting, value, written):
    root = _project(tmp_path / "p", models=7)
    for name, default in (("ALONE", 3600.0), ("WAIT", 3600.0), ("BATCH", 64)):
        monkeypatch.setattr(duckdb_marks, name, value if name == setting else default)
    batches: list[int] = []
    write = duckdb_marks._write
    monkeypatch.setattr(duckdb_marks, "_write", lambda cur, batch: (batches.append(len(batch)), write(cur, batch)))
    assert run_project(load_project(root), RunOptions()).ok
    assert [n for n in batches if n] == written
    assert sorted(k for k in _published(root) if k.startswith("warehouse.")) == [f"warehouse.m{i}" for i in range(7)]


def test_fingerprints_never_written_leave_tables_the_next_run_rebuilds(tmp_path, monkeypatch):
    """A process killed before the waiting fingerprints were written: every table is whole and carries no
    version (never another one's); the next run rebuilds exactly those and publishes what a clean run does."""
    clean = _project(tmp_path / "clean", models=4)
    assert run_project(load_project(clean), RunOptions()).ok
    root = _project(tmp_path / "p", models=4)
    with monkeypatch.context() as lost:
        lost.setattr(duckdb_marks, "_write", lambda cur, batch: None)
        assert run_project(load_project(root), RunOptions()).ok
    assert not [k for k in _published(root) if k.startswith("warehouse.")]
    again = run_project(load_project(root), RunOptions())
    assert {k: o.status for k, o in again.outcomes.items()} == {f"warehouse.m{i}": AttemptStatus.SUCCESS
                                                                for i in range(4)}
    assert _published(root) == _published(clean)
