"""The derived lake views (``lake.X_latest``, ``lake.X_history``) are read like their table: lineage and PII tags
flow through them, the console reads them (masked), and a project folder moved or copied elsewhere reads its
own lake."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import duckdb

from kiban import operate
from kiban.catalog.console import Actor, QueryConsole
from kiban.catalog.pii import pii_columns
from kiban.project import load_project
from kiban.run import RunOptions
from kiban.store import Store

CRM = """type: files
settle: 0s
tables:
  members:
    path: data/members_*.csv
    primary_key: [id]
    cursor: updated
    history: scd2
    columns:
      - {name: id, type: integer}
      - {name: email, tags: [pii]}
      - {name: plan}
      - {name: updated, type: integer}
"""
FILES = {
    "sources/crm.yml": CRM,
    "data/members_1.csv": "id,email,plan,updated\n1,a@example.com,free,1\n2,b@example.com,pro,1\n",
    "data/members_2.csv": "id,email,plan,updated\n1,a2@example.com,pro,2\n",
    "models/warehouse/members.sql": "select id, email as contact, plan from lake.crm_members_latest",
    "models/mart/plan_changes.sql": "select id, upper(email) as who, plan, valid_from from lake.crm_members_history",
}
SALES = Actor("alice", "sales")


def run(root: Path, **options: Any) -> Any:
    result = operate.run(load_project(root), RunOptions(**options)).result
    assert result.ok, {k: o.error for k, o in result.outcomes.items() if o.error}
    return result


def tables(root: Path) -> dict[str, list[tuple[Any, ...]]]:
    con = duckdb.connect(str(root / "kiban.duckdb"), read_only=True)
    try:
        return {t: sorted(con.execute(f"select * from {t}").fetchall(), key=repr)
                for t in ("warehouse.members", "mart.plan_changes", "lake.crm_members_latest")}
    finally:
        con.close()


def test_pii_tags_and_lineage_flow_through_latest_and_history_views(make_project):
    root = make_project(FILES)
    run(root)
    project = load_project(root)
    store = Store(project.state_url)
    try:
        console = QueryConsole(project, store)
        graph = console.column_graph
        pii = pii_columns(project, graph)
        assert pii[("warehouse.members", "contact")] == ("lake.crm_members", "email")
        assert pii[("mart.plan_changes", "who")] == ("lake.crm_members", "email")
        assert ("warehouse.members", "plan") not in pii
        upstream = graph.upstream(("warehouse.members", "contact"))
        assert [(c.asset, c.column) for c in upstream.children] == [("lake.crm_members", "email")]
    finally:
        store.close()


def test_the_console_reads_a_latest_view_and_masks_what_it_must(make_project):
    root = make_project(FILES)
    run(root)
    project = load_project(root)
    store = Store(project.state_url)
    try:
        console = QueryConsole(project, store)
        result = console.run("select id, email, plan from lake.crm_members_latest order by id", SALES)
        assert [r[0] for r in result.rows] == [1, 2]
        assert [r[2] for r in result.rows] == ["pro", "pro"]
        assert "email" in result.masked
        assert not {r[1] for r in result.rows} & {"a2@example.com", "b@example.com"}
        assert result.assets == ("lake.crm_members",)
        joined = console.run("select m.contact from warehouse.members m join crm_members_latest l using (id)", SALES)
        assert "contact" in joined.masked
    finally:
        store.close()


def test_a_moved_project_folder_runs_refreshes_and_serves_the_same_tables(make_project, tmp_path):
    root = make_project({**FILES, "models/warehouse/plain.sql": "select count(*) as n from lake.events"},
                        lake={"events": "select range as i from range(7)"})
    run(root)
    before = tables(root)
    moved = tmp_path / "elsewhere" / "renamed"
    moved.parent.mkdir()
    shutil.move(str(root), str(moved))
    again = run(moved)
    assert again.plan.build == []
    assert {"warehouse.members", "warehouse.plain"} <= set(again.plan.fresh)
    assert tables(moved) == before
    refreshed = run(moved, full_refresh=True)
    assert set(refreshed.plan.build) >= {"warehouse.members", "mart.plan_changes", "warehouse.plain"}
    assert tables(moved) == before
    con = duckdb.connect(str(moved / "kiban.duckdb"), read_only=True)
    try:  # no view names a file by the old folder's path
        sqls = [r[0] for r in con.execute("select sql from duckdb_views() where schema_name = 'lake'").fetchall()]
        assert sqls
        assert not any(str(root) in s for s in sqls)
    finally:
        con.close()
    # and the console reads the moved lake through its sandbox
    project = load_project(moved)
    store = Store(project.state_url)
    try:
        assert QueryConsole(project, store).run("select n from warehouse.plain", SALES).rows == [(7,)]
        assert len(QueryConsole(project, store).run("select * from lake.events", SALES).rows) == 7
    finally:
        store.close()


def test_a_view_over_another_folders_files_is_made_again_over_this_ones(make_project, tmp_path):
    root = make_project({"models/warehouse/plain.sql": "select count(*) as n from lake.events"},
                        lake={"events": "select range as i from range(3)"})
    run(root)
    con = duckdb.connect(str(root / "kiban.duckdb"))
    try:
        comment = con.execute("select comment from duckdb_views() where view_name = 'events'").fetchone()[0]
        elsewhere = tmp_path / "copy-of-the-lake"  # what a copied project's warehouse still names
        shutil.copytree(root / "lake", elsewhere)
        glob = str(elsewhere / "events" / "**" / "*.parquet")
        con.execute(f"create or replace view lake.events as select * from read_parquet('{glob}')")
        con.execute(f"comment on view lake.events is '{comment}'")
    finally:
        con.close()
    assert run(root).status == "nothing"  # the same data: nothing to rebuild …
    con = duckdb.connect(str(root / "kiban.duckdb"), read_only=True)
    try:  # … but the view reads this project's lake again
        sql = con.execute("select sql from duckdb_views() where view_name = 'events'").fetchone()[0]
        assert str(elsewhere) not in sql
        assert str(root / "lake" / "events") in sql
    finally:
        con.close()
