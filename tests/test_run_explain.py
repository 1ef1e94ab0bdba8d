"""``kiban run --explain``: the plan with each model's reason, and nothing built, collected or recorded."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from tests.conftest import write_files


def tables(root: Path) -> set[str]:
    con = duckdb.connect(str(root / "kiban.duckdb"), read_only=True)
    try:
        return {f"{s}.{t}" for s, t in con.execute("select schema_name, table_name from duckdb_tables()").fetchall()}
    finally:
        con.close()


def test_explain_prints_the_plan_and_builds_nothing(project_dir, cli) -> None:  # type: ignore[no-untyped-def]
    root = project_dir({"models/warehouse/a.sql": "select x from lake.t",
                        "models/mart/b.sql": "select x * 2 as y from warehouse.a",
                        "models/mart/c.sql": "select 1 as z"},
                       lake={"t": "select 1 as x"})
    shown = cli("--project", root, "run", "--explain")
    assert shown.returncode == 0, shown.stderr
    assert "warehouse.a" in shown.stdout
    assert "not built yet" in shown.stdout
    assert not {"warehouse.a", "mart.b"} & tables(root)  # nothing was built
    runs = cli("--project", root, "runs", "--json")
    assert json.loads(runs.stdout)["runs"] == []  # nor recorded

    assert cli("--project", root, "run").returncode == 0
    write_files(root, {"models/warehouse/a.sql": "select x + 1 as x from lake.t"})
    shown = cli("--project", root, "run", "--explain", "--json")
    plan = json.loads(shown.stdout)
    steps = {s["asset"]: s for s in plan["steps"]}
    assert steps["warehouse.a"]["action"] == "build"
    assert "changed" in steps["warehouse.a"]["reason"]
    assert steps["mart.b"]["reason"] == "upstream rebuilt: warehouse.a"
    assert steps["mart.c"]["action"] == "fresh"
    assert plan["build"] == ["warehouse.a", "mart.b"]
    again = json.loads(cli("--project", root, "run", "--explain", "--json").stdout)
    assert again["build"] == ["warehouse.a", "mart.b"]  # explaining changed nothing
