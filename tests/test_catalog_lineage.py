"""Column lineage is exact on a corpus of tricky SQL, follows the project's models (SELECT * expanded from
declared, computed or published columns), and `kiban lineage` prints it as a tree or JSON."""

from __future__ import annotations

import json

import pytest

from kiban.catalog.lineage import asset_resolver, build_column_graph, query_lineage
from kiban.catalog.warehouse import published_columns
from kiban.graph import build_graph
from kiban.project import load_project
from tests.helpers.shop import build_shop

ASSETS = ["lake.raw", "warehouse.orders", "warehouse.stores", "mart.x"]
SCHEMA = {"warehouse.orders": ["id", "store_id", "amount", "day"], "warehouse.stores": ["id", "name", "region"],
          "lake.raw": ["a", "b"]}
ORD, STO, RAW = "warehouse.orders", "warehouse.stores", "lake.raw"

# (SQL, {output column: {(asset, column), ...}}) — the exact expected lineage, output order included
CORPUS = [
    ("select id, amount from warehouse.orders", {"id": {(ORD, "id")}, "amount": {(ORD, "amount")}}),
    ("select amount * 1.1 as gross, upper(name) as n from orders o join stores s on s.id = o.store_id",
     {"gross": {(ORD, "amount")}, "n": {(STO, "name")}}),
    ("select * from orders", {"id": {(ORD, "id")}, "store_id": {(ORD, "store_id")}, "amount": {(ORD, "amount")},
                              "day": {(ORD, "day")}}),
    ("select o.*, s.name from orders o left join stores s on s.id = o.store_id",
     {"id": {(ORD, "id")}, "store_id": {(ORD, "store_id")}, "amount": {(ORD, "amount")}, "day": {(ORD, "day")},
      "name": {(STO, "name")}}),
    ("select * exclude (day, store_id) from orders", {"id": {(ORD, "id")}, "amount": {(ORD, "amount")}}),
    ("with a as (select store_id, amount from orders), b as (select store_id, sum(amount) as total from a "
     "group by store_id) select s.region, b.total from b join stores s on s.id = b.store_id",
     {"region": {(STO, "region")}, "total": {(ORD, "amount")}}),
    ("select t.doubled from (select amount * 2 as doubled from orders where day > '2026-01-01') t",
     {"doubled": {(ORD, "amount")}}),
    ("select day, sum(amount) over (partition by store_id order by day) as running from orders",
     {"day": {(ORD, "day")}, "running": {(ORD, "amount"), (ORD, "store_id"), (ORD, "day")}}),
    ("select id, rank() over w as r from orders window w as (partition by store_id order by amount desc)",
     {"id": {(ORD, "id")}, "r": {(ORD, "store_id"), (ORD, "amount")}}),
    ("select id as k, amount as v from orders union all select id, cast(region as double) from stores",
     {"k": {(ORD, "id"), (STO, "id")}, "v": {(ORD, "amount"), (STO, "region")}}),
    ("select a from raw union select name from stores union select 'none'", {"a": {(RAW, "a"), (STO, "name")}}),
    ("select (select max(amount) from orders) as top, name from stores",
     {"top": {(ORD, "amount")}, "name": {(STO, "name")}}),
    ("select o.id, case when amount > 100 then 'big' else region end as label from orders o "
     "join stores s on s.id = o.store_id",
     {"id": {(ORD, "id")}, "label": {(ORD, "amount"), (STO, "region")}}),
    ("select coalesce(a, b) as c, count(*) as n from raw group by 1", {"c": {(RAW, "a"), (RAW, "b")}, "n": set()}),
    ("select store_id, count(distinct id) as orders from orders where amount > 0 group by store_id",
     {"store_id": {(ORD, "store_id")}, "orders": {(ORD, "id")}}),
    ("select * from (select * from (select id, amount from orders) x) y", {"id": {(ORD, "id")},
                                                                          "amount": {(ORD, "amount")}}),
    ("select l.doubled from orders o, lateral (select o.amount * 2 as doubled) l", {"doubled": {(ORD, "amount")}}),
    ("select u.v from raw, unnest([a, b]) as u(v)", {"v": {(RAW, "a"), (RAW, "b")}}),
    ("with recursive n as (select 1 as i union all select i + 1 from n where i < 5) select i from n", {"i": set()}),
    ("select distinct on (store_id) store_id, amount from orders order by store_id, amount desc",
     {"store_id": {(ORD, "store_id")}, "amount": {(ORD, "amount")}}),
    ("select x.* from mart.x x", {"*": {("mart.x", "*")}}),  # unknown columns: the star is kept, not guessed
    ("select id, 42 as answer, current_date as today from orders",
     {"id": {(ORD, "id")}, "answer": set(), "today": set()}),
    ("SELECT ID, Amount FROM Warehouse.Orders", {"id": {(ORD, "id")}, "amount": {(ORD, "amount")}}),
]


@pytest.mark.parametrize(("sql", "expected"), CORPUS, ids=[str(i) for i in range(len(CORPUS))])
def test_lineage_is_exact_on_tricky_sql(sql, expected):
    lineage = query_lineage(sql, asset_resolver(ASSETS), SCHEMA)
    assert list(lineage.columns) == list(expected)
    assert {k: set(v) for k, v in lineage.sources.items()} == expected


def test_the_project_column_graph_follows_models_and_expands_stars(make_project):
    root = build_shop(make_project, run=False, extra={
        "models/mart/everything.sql": "select * from warehouse.customers",  # expanded from the computed columns
    })
    project = load_project(root)
    graph = build_graph(project)
    columns = build_column_graph(graph, cache_path=project.state_dir / "cache" / "lineage.json")
    # lake.customers is not built: its columns come from the sidecar's declared ones (email, phone)
    assert columns.columns["lake.customers"] == ("email", "phone")
    assert columns.columns["mart.everything"] == ("id", "name", "email", "email_hash", "email_upper")
    assert columns.sources[("mart.everything", "email_upper")] == {("warehouse.customers", "email_upper")}
    tree = columns.upstream(("mart.everything", "email_upper")).to_dict()
    assert tree["children"][0] == {"asset": "warehouse.customers", "column": "email_upper", "children": [
        {"asset": "lake.customers", "column": "email", "children": []}]}
    down = {(c["asset"], c["column"]) for c in columns.downstream(("lake.customers", "email")).to_dict()["children"]}
    assert down == {("warehouse.customers", "email"), ("warehouse.customers", "email_hash"),
                    ("warehouse.customers", "email_upper"), ("warehouse.orders", "email")}
    # a second build reads the cache and gives the same answer
    again = build_column_graph(graph, cache_path=project.state_dir / "cache" / "lineage.json")
    assert again.sources == columns.sources


def test_published_columns_expand_stars_over_the_lake(make_project):
    root = build_shop(make_project)
    project = load_project(root)
    known = {k: [c for c, _ in v] for k, v in published_columns(project).items()}
    assert known["lake.customers"] == ["id", "name", "email", "phone"]
    columns = build_column_graph(build_graph(project), known)
    assert columns.columns["warehouse.orders"] == ("order_id", "customer_id", "amount", "order_date", "email")
    assert columns.sources[("mart.daily_sales", "revenue")] == {("warehouse.orders", "amount")}
    assert columns.reach(("lake.orders", "amount")) == {("warehouse.orders", "amount"),
                                                        ("mart.daily_sales", "revenue")}


def test_cli_lineage_as_tree_and_json(make_project, cli):
    root = build_shop(make_project)
    out = cli("--project", root, "lineage", "mart.daily_sales.revenue", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["upstream"]["children"] == [{"asset": "warehouse.orders", "column": "amount", "children": [
        {"asset": "lake.orders", "column": "amount", "children": []}]}]
    assert data["downstream"]["children"] == []
    out = cli("--project", root, "lineage", "daily_sales.revenu")
    assert out.returncode == 2
    assert "did you mean 'revenue'" in out.stderr
