"""Reserved names never shadow source columns (issue 16): a source column named load_date reads back its own
values through the engine's lake views, and drift compares source columns only — also on a lake written by an
older kiban whose day folders were named load_date=…/."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import duckdb
import sqlalchemy as sa

from kiban.collect.load import load_table
from kiban.collect.manifest import Manifests
from kiban.project import load_project
from kiban.run import RunOptions, run_project
from kiban.store import Store
from kiban.store.schema import load_files, loads

SOURCE = """type: files
settle: 0s
tables:
  events:
    path: data/events_*.csv
    on_drift: fail
    columns:
      - {name: load_date, type: DATE}
"""
MODEL = {"models/warehouse/ev.sql": "select id, load_date from lake.shop_events"}


def warehouse(root: Path, sql: str) -> list[Any]:
    con = duckdb.connect(str(root / "kiban.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_a_source_column_named_load_date_keeps_its_values_and_drift_stays_quiet(make_project: Any) -> None:
    root = make_project({"sources/shop.yml": SOURCE, **MODEL,
                         "data/events_1.csv": "id,load_date\n1,2020-01-01\n2,2019-05-05\n"})
    first = run_project(load_project(root), RunOptions())
    assert first.status == "success"
    (root / "data/events_2.csv").write_text("id,load_date\n3,2018-03-03\n")
    second = run_project(load_project(root), RunOptions())
    assert second.status == "success"  # on_drift: fail — no false "column load_date is gone"
    got = warehouse(root, "select id::int, load_date::varchar from warehouse.ev order by 1")
    assert got == [(1, "2020-01-01"), (2, "2019-05-05"), (3, "2018-03-03")]
    project = load_project(root)
    store = Store(project.state_url)
    assert Manifests(store).drift(project.name, "lake.shop_events") == []
    state = Manifests(store).state(project.name, "lake.shop_events")
    assert state is not None
    assert [n for n, _ in state.schema] == ["id", "load_date"]


def test_a_lake_of_older_day_folders_reads_without_a_made_up_column(make_project: Any) -> None:
    """Files under load_date=…/ (as older versions wrote them) and a recorded schema that has that folder as a
    column: the next load under on_drift: fail lands, and no load_date column appears."""
    source = SOURCE.replace("    columns:\n      - {name: load_date, type: DATE}\n", "")
    root = make_project({"sources/shop.yml": source, "models/warehouse/ev.sql": "select * from lake.shop_events",
                         "data/events_1.csv": "id,name\n1,a\n"})
    project = load_project(root)
    store = Store(project.state_url)
    load_table(project, "shop", "events", store)
    [old] = Manifests(store).state(project.name, "lake.shop_events").files  # type: ignore[union-attr]
    legacy = old.replace("/events/", "/events/load_date=").rsplit("/", 1)
    legacy_path = f"{legacy[0]}/{legacy[1]}"
    (project.lake_dir / legacy_path).parent.mkdir(parents=True)
    shutil.move(project.lake_dir / old, project.lake_dir / legacy_path)
    with store.engine.begin() as conn:  # the manifest as an older version wrote it
        conn.execute(sa.update(load_files).where(load_files.c.path == old).values(path=legacy_path))
        conn.execute(sa.update(loads).values(schema='[["id", "VARCHAR"], ["name", "VARCHAR"], '
                                                    '["load_date", "DATE"]]'))
    (root / "data/events_2.csv").write_text("id,name\n2,b\n")
    assert run_project(load_project(root), RunOptions()).status == "success"
    con = duckdb.connect(str(root / "kiban.duckdb"), read_only=True)
    try:
        columns = [r[0] for r in con.execute("describe warehouse.ev").fetchall()]
    finally:
        con.close()
    assert "load_date" not in columns
    assert warehouse(root, "select count(*) from warehouse.ev") == [(2,)]
