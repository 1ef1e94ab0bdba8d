"""The asset graph: dependencies inferred from SQL, order, reach, selection syntax, rendering."""

from __future__ import annotations

import json
import re

import pytest

from kiban.errors import SelectionError
from kiban.graph import build_graph, select
from kiban.graph.render import render
from kiban.graph.sqlrefs import SqlCache
from kiban.project import load_project

LAKE: dict[str, str | None] = {"raw_orders": None, "raw_customers": None, "raw_events": None}

#   lake.raw_orders ──► warehouse.orders ─┬─► warehouse.order_facts ──► mart.customer_sales
#   lake.raw_customers ► warehouse.customers ┘                        └► mart.churn
#                        warehouse.orders ─► mart.daily_sales
#   lake.raw_events ───► mart.events_per_day              (mart.static reads nothing)
MODELS = {
    "models/warehouse/orders.sql": "select * from lake.raw_orders",
    "models/warehouse/customers.sql": 'select * from "lake"."raw_customers"',
    "models/warehouse/order_facts.sql": (
        "with o as (select * from warehouse.orders)\n"
        "select o.*, c.name from o join customers c using (customer_id)\n"
    ),
    "models/mart/daily_sales.sql": "select order_date, sum(amount) from warehouse.orders group by 1",
    "models/mart/daily_sales.yml": "tags: [sales, daily]\nowner: sales-team\n",
    "models/mart/customer_sales.sql": "select name, sum(amount) from warehouse.order_facts group by 1",
    "models/mart/customer_sales.yml": "tags: [sales]\n",
    "models/mart/churn.sql": "select customer_id from warehouse.order_facts group by 1 having count(*) = 1",
    "models/mart/churn.yml": "tags: [risk]\nmaterialized: view\n",
    "models/mart/events_per_day.sql": "select count(*) as events from raw_events",
    "models/mart/events_per_day.yml": "tags: [daily]\n",
    "models/mart/static.sql": "select * from read_parquet('lake/raw_orders/*.parquet')",
}
ALL = {f"lake.{t}" for t in LAKE} | {
    "warehouse.orders", "warehouse.customers", "warehouse.order_facts",
    "mart.daily_sales", "mart.customer_sales", "mart.churn", "mart.events_per_day", "mart.static",
}


@pytest.fixture
def graph(make_project):
    return build_graph(load_project(make_project(MODELS, LAKE)))


# --- dependency inference ---------------------------------------------------------------------------

BASE_FOR_DEPS = {
    "models/warehouse/orders.sql": "select * from lake.raw_orders",
    "models/warehouse/customers.sql": "select * from lake.raw_customers",
    "models/warehouse/products.sql": "select 1 as product_id",
}


@pytest.mark.parametrize(("sql", "expected"), [
    # plain, qualified, unqualified, case and quotes
    ("select * from warehouse.orders", {"warehouse.orders"}),
    ("select * from products", {"warehouse.products"}),
    ("select * from raw_events", {"lake.raw_events"}),
    ("select * from WAREHOUSE.Orders", {"warehouse.orders"}),
    ('select * from "warehouse"."orders"', {"warehouse.orders"}),
    ('select * from "products"', {"warehouse.products"}),
    ("select * from kiban.warehouse.orders", {"warehouse.orders"}),
    # CTEs are not tables, even chained, recursive or named like an asset
    ("with x as (select * from warehouse.orders), y as (select * from x) select * from y",
     {"warehouse.orders"}),
    ("with recursive t(n) as (select 1 union all select n + 1 from t where n < 3) select * from t", set()),
    ("with products as (select * from lake.raw_orders) select * from products", {"lake.raw_orders"}),
    ("with orders as (select 1 as a) select * from warehouse.orders", {"warehouse.orders"}),
    # subqueries everywhere
    ("select * from (select * from warehouse.orders) sub", {"warehouse.orders"}),
    ("select (select max(product_id) from products) as m from warehouse.orders", {"warehouse.products",
                                                                                   "warehouse.orders"}),
    ("select * from warehouse.orders where customer_id in (select customer_id from warehouse.customers)",
     {"warehouse.orders", "warehouse.customers"}),
    ("select * from warehouse.orders o where exists (select 1 from customers c where c.id = o.customer_id)",
     {"warehouse.orders", "warehouse.customers"}),
    ("select * from warehouse.orders o where not exists (select 1 from (select * from products) p)",
     {"warehouse.orders", "warehouse.products"}),
    # joins and set operations
    ("select * from warehouse.orders o join warehouse.customers c on o.customer_id = c.customer_id "
     "left join products p using (product_id) cross join lake.raw_events",
     {"warehouse.orders", "warehouse.customers", "warehouse.products", "lake.raw_events"}),
    ("select * from warehouse.orders a join warehouse.orders b on a.id = b.parent_id", {"warehouse.orders"}),
    ("select 1 as a from warehouse.orders union all select 1 from customers "
     "union select 1 from products except select 1 from lake.raw_events",
     {"warehouse.orders", "warehouse.customers", "warehouse.products", "lake.raw_events"}),
    ("select * from warehouse.orders, lateral (select * from products p where p.product_id = orders.id) l",
     {"warehouse.orders", "warehouse.products"}),
    # table functions read files, not assets
    ("select * from read_parquet('lake/raw_orders/*.parquet')", set()),
    ("select * from read_csv_auto('x.csv') r join warehouse.orders o on true", {"warehouse.orders"}),
    ("select * from range(10) t(i)", set()),
    ("select * from unnest([1, 2, 3]) t(i)", set()),
])
def test_dependencies_are_inferred_from_the_sql(make_project, sql, expected):
    files = {**BASE_FOR_DEPS, "models/warehouse/subject.sql": sql}
    graph = build_graph(load_project(make_project(files, LAKE)))
    assert set(graph.deps["warehouse.subject"]) == expected
    assert len(graph.deps["warehouse.subject"]) == len(expected), "each upstream is listed once"


def test_edges_of_the_whole_project(graph):
    assert set(graph.assets) == ALL
    assert graph.deps["warehouse.customers"] == ("lake.raw_customers",)
    assert set(graph.deps["warehouse.order_facts"]) == {"warehouse.orders", "warehouse.customers"}
    assert graph.deps["mart.daily_sales"] == ("warehouse.orders",)
    assert graph.deps["mart.events_per_day"] == ("lake.raw_events",)
    assert graph.deps["mart.static"] == ()
    for key in LAKE:
        assert graph.deps[f"lake.{key}"] == ()
    assert sorted(graph.children["warehouse.order_facts"]) == ["mart.churn", "mart.customer_sales"]
    assert graph.children["mart.churn"] == []


def test_topological_order_puts_every_upstream_first(graph):
    assert sorted(graph.order) == sorted(ALL)
    position = {key: i for i, key in enumerate(graph.order)}
    for key, ups in graph.deps.items():
        for up in ups:
            assert position[up] < position[key], f"{up} must come before {key}"


def test_upstream_and_downstream_are_transitive(graph):
    assert graph.upstream("mart.customer_sales") == {
        "warehouse.order_facts", "warehouse.orders", "warehouse.customers", "lake.raw_orders",
        "lake.raw_customers"}
    assert graph.upstream("lake.raw_orders") == set()
    assert graph.downstream("lake.raw_orders") == {
        "warehouse.orders", "warehouse.order_facts", "mart.daily_sales", "mart.customer_sales", "mart.churn"}
    assert graph.downstream("mart.churn") == set()
    assert graph.downstream("warehouse.customers") == {"warehouse.order_facts", "mart.customer_sales",
                                                       "mart.churn"}


def test_a_second_build_from_the_parse_cache_gives_the_same_graph(make_project):
    root = make_project(MODELS, LAKE)
    first = build_graph(load_project(root))
    cache_file = root / ".kiban" / "cache" / "sql.json"
    assert cache_file.exists()
    cache = SqlCache(cache_file)
    assert len(cache.entries) == sum(1 for rel in MODELS if rel.endswith(".sql"))
    second = build_graph(load_project(root), cache)
    assert second.deps == first.deps
    assert second.sql_hashes == first.sql_hashes
    assert not cache.dirty, "every model came from the cache"


def test_comments_and_layout_do_not_change_the_sql_hash(make_project):
    a = build_graph(load_project(make_project({"models/mart/m.sql": "select 1 as a"}, root="a")))
    b = build_graph(load_project(make_project({"models/mart/m.sql": "-- hello\nSELECT\n    1   AS a\n"},
                                              root="b")))
    c = build_graph(load_project(make_project({"models/mart/m.sql": "select 2 as a"}, root="c")))
    assert a.sql_hashes["mart.m"] == b.sql_hashes["mart.m"]
    assert a.sql_hashes["mart.m"] != c.sql_hashes["mart.m"]


# --- selection --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("include", "exclude", "expected"), [
    ([], [], ALL),
    (["daily_sales"], [], {"mart.daily_sales"}),
    (["mart.daily_sales"], [], {"mart.daily_sales"}),
    (["warehouse.orders"], [], {"warehouse.orders"}),
    (["+daily_sales"], [], {"mart.daily_sales", "warehouse.orders", "lake.raw_orders"}),
    (["orders+"], [], {"warehouse.orders", "warehouse.order_facts", "mart.daily_sales", "mart.customer_sales",
                       "mart.churn"}),
    (["+order_facts+"], [], {"warehouse.order_facts", "warehouse.orders", "warehouse.customers",
                             "lake.raw_orders", "lake.raw_customers", "mart.customer_sales", "mart.churn"}),
    (["layer:mart"], [], {k for k in ALL if k.startswith("mart.")}),
    (["layer:lake"], [], {k for k in ALL if k.startswith("lake.")}),
    (["tag:sales"], [], {"mart.daily_sales", "mart.customer_sales"}),
    (["tag:daily"], [], {"mart.daily_sales", "mart.events_per_day"}),
    (["churn", "tag:daily"], [], {"mart.churn", "mart.daily_sales", "mart.events_per_day"}),
    (["churn,static"], [], {"mart.churn", "mart.static"}),
    (["churn, static", "customers"], [], {"mart.churn", "mart.static", "warehouse.customers"}),
    (["+churn"], ["layer:lake"], {"mart.churn", "warehouse.order_facts", "warehouse.orders",
                                  "warehouse.customers"}),
    (["layer:mart"], ["tag:sales"], {"mart.churn", "mart.events_per_day", "mart.static"}),
    (["tag:sales"], ["daily_sales,churn"], {"mart.customer_sales"}),
    ([], ["layer:mart", "layer:lake"], {"warehouse.orders", "warehouse.customers", "warehouse.order_facts"}),
    (["orders+"], ["order_facts+"], {"warehouse.orders", "mart.daily_sales"}),
    (["daily_sales"], ["daily_sales"], set()),
])
def test_selection(graph, include, exclude, expected):
    chosen = select(graph, include, exclude)
    assert set(chosen) == expected
    assert len(chosen) == len(set(chosen))
    assert chosen == [k for k in graph.order if k in expected], "a selection comes in dependency order"


@pytest.mark.parametrize(("selector", "message", "hint"), [
    ("daily_sale", "no asset matches 'daily_sale'", "did you mean 'daily_sales'?"),
    ("mart.dayly_sales", "no asset matches 'mart.dayly_sales'", "did you mean 'mart.daily_sales'?"),
    ("+custmers+", "no asset matches 'custmers'", "did you mean 'customers'?"),
    ("layer:marts", "unknown layer 'marts' in selector 'layer:marts'", "did you mean 'mart'?"),
    ("layer:gold", "unknown layer 'gold'", "layers are lake, warehouse, mart"),
    ("tag:sale", "no asset has tag 'sale'", "did you mean 'sales'?"),
    ("+", "empty selector '+'", None),
    ("++", "empty selector '++'", None),
])
def test_unknown_selectors_are_errors_with_suggestions(graph, selector, message, hint):
    with pytest.raises(SelectionError) as caught:
        select(graph, [selector])
    assert caught.value.message.startswith(message)
    assert caught.value.hint == hint
    assert caught.value.exit_code == 2


def test_an_unknown_exclude_is_an_error_too(graph):
    with pytest.raises(SelectionError, match="no asset matches 'dialy_sales'") as caught:
        select(graph, ["layer:mart"], ["dialy_sales"])
    assert caught.value.hint == "did you mean 'daily_sales'?"


def test_a_name_two_layers_share_is_ambiguous(make_project):
    root = make_project({"models/warehouse/raw_orders.sql": "select * from lake.raw_orders"}, LAKE)
    graph = build_graph(load_project(root))
    with pytest.raises(SelectionError) as caught:
        select(graph, ["raw_orders"])
    assert caught.value.message == "'raw_orders' is ambiguous: lake.raw_orders, warehouse.raw_orders"
    assert select(graph, ["warehouse.raw_orders"]) == ["warehouse.raw_orders"]


# --- rendering --------------------------------------------------------------------------------------


def edges_of(graph, keys):
    chosen = set(keys)
    return {(up, key) for key in keys for up in graph.deps[key] if up in chosen}


def test_render_json(graph):
    data = json.loads(render(graph, graph.order, "json"))
    assert [a["key"] for a in data["assets"]] == graph.order
    assert {tuple(e) for e in data["edges"]} == edges_of(graph, graph.order)
    assert len(data["edges"]) == len(edges_of(graph, graph.order))
    by_key = {a["key"]: a for a in data["assets"]}
    assert by_key["mart.churn"] == {"key": "mart.churn", "layer": "mart", "name": "churn", "tags": ["risk"],
                                    "materialized": "view", "depends_on": ["warehouse.order_facts"]}
    assert by_key["lake.raw_orders"]["depends_on"] == []


def test_render_json_of_a_selection_keeps_only_edges_inside_it(graph):
    keys = select(graph, ["+daily_sales"], ["layer:lake"])
    data = json.loads(render(graph, keys, "json"))
    assert {a["key"] for a in data["assets"]} == {"warehouse.orders", "mart.daily_sales"}
    assert data["edges"] == [["warehouse.orders", "mart.daily_sales"]]
    assert next(a for a in data["assets"] if a["key"] == "warehouse.orders")["depends_on"] == []


def test_render_dot(graph):
    text = render(graph, graph.order, "dot")
    assert text.startswith("digraph kiban {")
    assert text.rstrip().endswith("}")
    drawn = set(re.findall(r'^\s*"([^"]+)" -> "([^"]+)";$', text, flags=re.MULTILINE))
    assert drawn == edges_of(graph, graph.order)
    nodes = set(re.findall(r'^\s*"([^"]+)" \[fillcolor=', text, flags=re.MULTILINE))
    assert nodes == ALL


def test_render_mermaid(graph):
    text = render(graph, graph.order, "mermaid")
    lines = text.splitlines()
    assert lines[0] == "graph LR"
    assert '  mart_daily_sales["mart.daily_sales"]' in lines
    drawn = set(re.findall(r"^\s*(\w+) --> (\w+)$", text, flags=re.MULTILINE))
    assert drawn == {(a.replace(".", "_"), b.replace(".", "_")) for a, b in edges_of(graph, graph.order)}


def test_render_tree(graph):
    keys = select(graph, ["+customer_sales", "+churn"])
    lines = render(graph, keys, "tree").splitlines()
    roots = [line for line in lines if not line.startswith((" ", "│", "├", "└"))]
    assert sorted(roots) == ["lake.raw_customers", "lake.raw_orders"]
    for key in keys:
        assert any(line.endswith(key) or line.endswith(f"{key} (…see above)") for line in lines), key
    # order_facts is reached from both lake tables: drawn once in full, then referred to
    assert sum("warehouse.order_facts" in line for line in lines) == 2
    assert sum("(…see above)" in line for line in lines) == 1
    # children are indented under their parent
    first = lines.index(next(line for line in lines if line.endswith("warehouse.order_facts")))
    below = lines[first + 1: first + 3]
    assert sorted(line.strip("│├└─ ") for line in below) == ["mart.churn", "mart.customer_sales"]


def test_render_tree_of_nothing(graph):
    assert render(graph, [], "tree") == "(no assets selected)"
