"""Project macros (``macros/*.sql``, DuckDB ``CREATE MACRO``): available to every model, part of the graph and of
the fingerprint — a macro edit rebuilds exactly its users, the tables a macro reads are dependencies."""

from __future__ import annotations

import random
from pathlib import Path

import duckdb
import pytest

from kiban import operate
from kiban.errors import ProjectError
from kiban.graph import build_graph
from kiban.project import load_project
from kiban.project.macros import callees_first, parse_macros
from kiban.run import RunOptions
from tests.conftest import write_files

MACROS = """-- money
create macro with_tax(x) as x * 11 / 10;
CREATE OR REPLACE TEMP MACRO doubled_tax(x) AS with_tax(x) * 2;  -- calls another macro
/* a table macro reading the warehouse */
create macro big(n) as table select * from warehouse.orders where amount > n;
create macro priciest() as (select max(amount) from lake.prices);
"""


def run(root: Path) -> dict[str, str]:
    result = operate.run(load_project(root), RunOptions()).result
    statuses = {k: "fresh" for k in result.plan.fresh}
    statuses.update({k: o.status for k, o in result.outcomes.items()})
    return statuses


def rows(root: Path, key: str) -> list[tuple[object, ...]]:
    con = duckdb.connect(str(root / "kiban.duckdb"), read_only=True)
    try:
        return sorted(con.execute(f"select * from {key}").fetchall())
    finally:
        con.close()


@pytest.fixture
def shop(project_dir) -> Path:  # type: ignore[no-untyped-def]
    return project_dir({
        "macros/money.sql": MACROS,
        "models/warehouse/orders.sql": "select id, amount from lake.raw",
        "models/mart/taxed.sql": "select id, with_tax(amount) as gross from warehouse.orders",
        "models/mart/doubled.sql": "select id, doubled_tax(amount) as g2 from warehouse.orders",
        "models/mart/big_ones.sql": "select id from big(15)",
        "models/mart/capped.sql": "select least(amount, priciest()) as a from warehouse.orders",
        "models/mart/plain.sql": "select id from warehouse.orders",
    }, lake={"raw": "select i as id, i * 10 as amount from range(4) t(i)", "prices": "select 25 as amount"})


def test_macros_are_parsed_with_their_lines() -> None:
    macros = parse_macros(MACROS, Path("macros/money.sql"))
    assert [(m.name, m.line, m.table) for m in macros] == [
        ("with_tax", 2, False), ("doubled_tax", 3, False), ("big", 5, True), ("priciest", 6, False)]
    assert macros[1].definition.lower().startswith("create or replace macro doubled_tax")
    assert macros[2].body == "select * from warehouse.orders where amount > n"


def test_anything_but_create_macro_is_refused_with_its_line() -> None:
    with pytest.raises(ProjectError) as caught:
        parse_macros("create macro a(x) as x;\n\nselect 1;\n", Path("macros/m.sql"))
    assert caught.value.location is not None
    assert caught.value.location.line == 3


@pytest.mark.parametrize("seed", range(5))
def test_callees_are_created_first_whatever_the_file_order(seed: int) -> None:
    names = [f"m{i}" for i in range(6)]
    bodies = {n: " + ".join([f"{c}(x)" for c in names[i + 1:i + 3]] or ["x"]) for i, n in enumerate(names)}
    text = ";\n".join(f"create macro {n}(x) as {bodies[n]}" for n in random.Random(seed).sample(names, len(names)))
    ordered = callees_first(parse_macros(text, Path("m.sql")))
    con = duckdb.connect()
    for macro in ordered:  # DuckDB binds calls at creation: an order that is wrong fails here
        con.execute(macro.definition)
    assert con.execute("select m0(1)").fetchone() is not None


def test_the_graph_sees_what_macros_read(shop: Path) -> None:
    graph = build_graph(load_project(shop))
    assert graph.deps["mart.big_ones"] == ("warehouse.orders",)
    assert set(graph.deps["mart.capped"]) == {"warehouse.orders", "lake.prices"}


def test_a_macro_edit_rebuilds_exactly_its_users(shop: Path) -> None:
    assert set(run(shop).values()) == {"success"}
    assert rows(shop, "mart.taxed")[1] == (1, 11.0)
    assert set(run(shop).values()) == {"fresh"}
    write_files(shop, {"macros/money.sql": MACROS.replace("x * 11 / 10", "x * 12 / 10")})
    statuses = run(shop)
    assert {k for k, s in statuses.items() if s == "success"} == {"mart.taxed", "mart.doubled"}
    assert rows(shop, "mart.taxed")[1] == (1, 12.0)
    assert rows(shop, "mart.doubled")[1] == (1, 24.0)


def test_a_table_a_macro_reads_is_an_input(shop: Path) -> None:
    run(shop)
    assert rows(shop, "mart.capped")[-1] == (25,)
    from tests.conftest import write_parquet

    write_parquet(shop / "lake" / "prices" / "part-0.parquet", "select 5 as amount")
    statuses = run(shop)
    assert statuses["mart.capped"] == "success"
    assert statuses["mart.plain"] == "fresh"
    assert rows(shop, "mart.capped")[-1] == (5,)


def test_a_removed_macro_is_gone_from_the_warehouse(shop: Path) -> None:
    run(shop)
    write_files(shop, {"macros/money.sql": MACROS.replace(
        "create macro priciest() as (select max(amount) from lake.prices);\n", ""),
        "models/mart/capped.sql": "select amount as a from warehouse.orders"})
    run(shop)
    con = duckdb.connect(str(shop / "kiban.duckdb"), read_only=True)
    try:
        names = {r[0] for r in con.execute("select function_name from duckdb_functions() where not internal "
                                           "and schema_name = 'main'").fetchall()}
    finally:
        con.close()
    assert "priciest" not in names
    assert "with_tax" in names
