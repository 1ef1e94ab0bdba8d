"""One resolver of asset names (kiban.assetkey.KeyResolver): the graph, column lineage, the console's query check
and the checks' relationships resolve every spelling alike — the lake's ``_latest``/``_history`` views included."""

from __future__ import annotations

import pytest

from kiban.assetkey import AssetKey, KeyResolver, lake_views
from kiban.catalog.lineage import asset_resolver
from kiban.catalog.safety import QueryRefused, check_query
from kiban.checks.suite import suite_of
from kiban.errors import ProjectError
from kiban.graph import build_graph
from kiban.project import load_project

CRM = """type: files
tables:
  members:
    path: data/members_*.csv
    primary_key: [id]
    history: scd2
"""
SPELLINGS = ["lake.crm_members", "crm_members", "LAKE.CRM_MEMBERS", "lake.crm_members_latest", "crm_members_latest",
             "lake.crm_members_history", "crm_members_history", "warehouse.orders", "orders", "mart.orders"]


@pytest.fixture
def graph(project_dir):
    root = project_dir({
        "sources/crm.yml": CRM,
        "models/warehouse/orders.sql": "select 1 as id, 1 as member",
        "models/mart/orders.sql": "select * from warehouse.orders",
        "models/mart/latest.sql": "select * from lake.crm_members_latest",
        "models/mart/history.sql": "select * from crm_members_history",
    })
    return build_graph(load_project(root))


def test_a_key_parses_and_prints() -> None:
    assert AssetKey.parse(" Warehouse.Orders ") == AssetKey("warehouse", "orders")
    assert str(AssetKey("mart", "x")) == "mart.x"
    with pytest.raises(ValueError, match=r"layer\.name"):
        AssetKey.parse("orders")


def test_the_resolver_answers_views_with_their_table_and_refuses_ambiguity() -> None:
    keys = KeyResolver(["lake.t", "warehouse.o", "mart.o"], lake_views("lake.t", latest=True, history=False))
    assert keys.resolve("lake", "t_latest") == "lake.t"
    assert keys.resolve("", "T_LATEST") == "lake.t"
    assert keys.resolve("lake", "t_history") is None
    assert keys.resolve("", "o") is None
    assert keys.candidates("o") == ["warehouse.o", "mart.o"]
    assert keys.hint("", "o") == "qualify it with its layer, e.g. warehouse.o"
    assert keys.hint("warehouse", "oo") == "did you mean 'warehouse.o'?"


def test_graph_lineage_console_and_checks_agree_on_every_spelling(graph) -> None:
    graph_says = KeyResolver.of_graph(graph)
    lineage = asset_resolver(graph.readable)
    expected = {"lake.crm_members": "lake.crm_members", "crm_members": "lake.crm_members",
                "LAKE.CRM_MEMBERS": "lake.crm_members", "lake.crm_members_latest": "lake.crm_members",
                "crm_members_latest": "lake.crm_members", "lake.crm_members_history": "lake.crm_members",
                "crm_members_history": "lake.crm_members", "warehouse.orders": "warehouse.orders",
                "orders": None, "mart.orders": "mart.orders"}
    for text in SPELLINGS:
        schema, _, name = text.rpartition(".")
        assert graph_says.key(text) == expected[text], text
        assert lineage(schema, name) == expected[text], text
        if expected[text] is None:
            with pytest.raises(QueryRefused, match="ambiguous"):
                check_query(f"select * from {text}", graph.readable)
        else:
            assert check_query(f"select * from {text}", graph.readable).assets == (expected[text],), text
    # the graph itself: a model reading a view depends on the table
    assert graph.deps["mart.latest"] == ("lake.crm_members",)
    assert graph.deps["mart.history"] == ("lake.crm_members",)


def test_a_relationship_target_resolves_as_the_graph_resolves_it(project_dir) -> None:
    root = project_dir({"sources/crm.yml": CRM,
                        "models/warehouse/orders.sql": "select 1 as id, 1 as member",
                        "models/mart/orders.sql": "select * from warehouse.orders",
                        "models/warehouse/orders.yml": """\
columns:
  - name: member
    checks:
      - relationships: {to: crm_members, field: id}
      - relationships: {to: LAKE.CRM_MEMBERS, field: id}
"""})
    project = load_project(root)
    graph = build_graph(project)
    suite = suite_of(project.assets["warehouse.orders"], project.assets)
    graph_says = KeyResolver.of_graph(graph)
    assert [c.target for c in suite.checks] == ["lake.crm_members", "lake.crm_members"]
    assert [c.target for c in suite.checks] == [graph_says.key(t) for t in ("crm_members", "LAKE.CRM_MEMBERS")]


def test_every_front_end_says_the_same_about_an_unknown_or_ambiguous_name(graph) -> None:
    from kiban.cli.catalog import _asset_key
    from kiban.errors import KibanError
    from kiban.graph.selection import select

    keys = KeyResolver.of_graph(graph)
    assert keys.explain("orders") == ("'orders' is ambiguous: mart.orders, warehouse.orders",
                                      "qualify it with its layer")
    assert keys.explain("mart.ordres") == ("unknown asset 'mart.ordres'", "did you mean 'mart.orders'?")
    for front_end in (lambda t: _asset_key(graph, t), lambda t: select(graph, [t])):
        for text in ("orders", "mart.ordres"):
            with pytest.raises(KibanError) as raised:
                front_end(text)
            assert raised.value.hint == keys.explain(text)[1]
        assert front_end("crm_members_latest") in ("lake.crm_members", ["lake.crm_members"])


def test_an_unknown_table_in_sql_says_did_you_mean(project_dir) -> None:
    root = project_dir({"sources/crm.yml": CRM, "models/mart/x.sql": "select * from lake.crm_member_latest"})
    with pytest.raises(ProjectError) as raised:
        build_graph(load_project(root))
    assert raised.value.hint == "did you mean 'lake.crm_members_latest'?"
