"""A model's dependencies are the tables DuckDB really reads when it builds the model — whatever the syntax.

Property: over generated SQL (PIVOT with and without IN, UNPIVOT, FROM-first, subqueries in WHERE, SELECT and
HAVING, CTEs named like tables, lateral joins, set operations, ``query_table``, the ``_latest``/``_history``
views of a collected table), the graph's ``deps`` of every model equal the tables DuckDB's profiler shows it
scanning when the model's SQL runs against tables of those names. The repo's example models are checked
against DuckDB's binder (``get_table_names``) the same way.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import duckdb
import pytest

from kiban.errors import ProjectError
from kiban.graph import build_graph
from kiban.graph.sqlrefs import SqlCache, cache_key, parse_sql
from kiban.project import load_project

SOURCE = """type: files
settle: 0s
tables:
  items:
    path: data/items_*.csv
    primary_key: [k]
    history: scd2
"""
# every name a generated model may read, and the asset DuckDB's scan of it belongs to
READABLE = {
    "lake.a": "lake.a", "lake.b": "lake.b", "a": "lake.a", "lake.shop_items": "lake.shop_items",
    "lake.shop_items_latest": "lake.shop_items", "lake.shop_items_history": "lake.shop_items",
    "warehouse.w1": "warehouse.w1", "w2": "warehouse.w2", "WAREHOUSE.W1": "warehouse.w1",
    '"lake"."b"': "lake.b",
}
SHADOWED = ("w1", "b", "shop_items")  # CTE names that are also tables' names


class Gen:
    """Random SELECTs with the columns (k, m, v), nested up to ``depth``."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.n = 0

    def alias(self) -> str:
        self.n += 1
        return f"s{self.n}"

    def table(self) -> str:
        return self.rng.choice(sorted(READABLE))

    def query(self, depth: int) -> str:
        rng = self.rng
        if depth <= 0:
            return rng.choice([
                lambda: f"select k, m, v from {self.table()}",
                lambda: f"from {self.table()} select k, m, v",
                lambda: f"select k, m, v from query_table('{self.table().replace(chr(39), '')}')",
            ])()
        q1, q2 = self.query(depth - 1), self.query(depth - 1)
        a, b = self.alias(), self.alias()
        shadow = rng.choice(SHADOWED)
        forms = [
            f"select k, 'p' as m, 1.0 as v from (pivot ({q1}) on m using sum(v) group by k) {a}",
            f"select k, 'p' as m, 1.0 as v from (pivot ({q1}) on m in ('x', 'y') using sum(v) group by k) {a}",
            f"select k, m, v from (unpivot (select k, v as v1, v as v2 from ({q1}) {a}) on v1, v2 "
            f"into name m value v) {b}",
            f"select k, m, v from ({q1}) {a} where k in (select k from ({q2}) {b})",
            f"select k, m, v from ({q1}) {a} where exists (select 1 from ({q2}) {b} where {b}.k = {a}.k)",
            f"select k, m, (select max(v) from ({q2}) {b}) as v from ({q1}) {a}",
            f"select k, max(m) as m, sum(v) as v from ({q1}) {a} group by k "
            f"having count(*) > (select count(*) from ({q2}) {b}) - 1000000",
            f"with {shadow} as ({q1}) select k, m, v from {shadow}",
            f"with {shadow} as ({q1}), {a} as (select * from {shadow}) select k, m, v from {a} "
            f"union all select k, m, v from ({q2}) {b}",
            f"select {a}.k, {a}.m, l.v from ({q1}) {a}, lateral (select v from ({q2}) {b} "
            f"where {b}.k = {a}.k limit 1) l",
            f"select k, m, v from ({q1}) {a} {rng.choice(['union', 'union all', 'except', 'intersect'])} "
            f"select k, m, v from ({q2}) {b}",
            f"from ({q1}) {a} join ({q2}) {b} using (k) select k, {a}.m, {b}.v",
        ]
        return rng.choice(forms)


def engine_db() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("create schema lake; create schema warehouse; create schema mart")
    for name in ("lake.a", "lake.b", "lake.shop_items", "warehouse.w1", "warehouse.w2"):
        con.execute(f"create table {name} as select 1 as k, 'x' as m, 2.0 as v")
    con.execute("create view lake.shop_items_latest as select k, m, v from lake.shop_items")
    con.execute("create view lake.shop_items_history as select k, m, v from lake.shop_items")
    con.execute("set search_path = 'main,lake,warehouse,mart'")
    return con


def scanned(con: duckdb.DuckDBPyConnection, sql: str, profile: Path) -> set[str]:
    """The tables DuckDB's profiler shows the query scanning (its catalog dropped: memory.lake.a → lake.a)."""
    con.execute("pragma enable_profiling = 'json'")
    con.execute(f"pragma profiling_output = '{profile}'")
    try:
        con.execute(sql).fetchall()
    finally:
        con.execute("pragma disable_profiling")
    found: set[str] = set()

    def walk(node: dict[str, Any]) -> None:
        table = (node.get("extra_info") or {}).get("Table")
        if table:
            found.add(".".join(table.split(".")[-2:]).lower())
        for child in node.get("children", []):
            walk(child)

    walk(json.loads(profile.read_text()))
    return {"lake.shop_items" if t.startswith("lake.shop_items") else t for t in found}


def generated_project(make_project: Any, seed: int, count: int) -> tuple[Path, dict[str, str]]:
    gen = Gen(random.Random(seed))
    models = {f"models/mart/g{i}.sql": gen.query(gen.rng.randint(0, 3)) for i in range(count)}
    root = make_project({
        "sources/shop.yml": SOURCE,
        "models/warehouse/w1.sql": "select k, m, v from lake.a",
        "models/warehouse/w2.sql": "select k, m, v from lake.b",
        **models}, lake={"a": None, "b": None}, root=f"p{seed}")
    return root, {f"mart.g{i}": sql for i, sql in enumerate(models.values())}


@pytest.mark.parametrize("seed", range(6))
def test_dependencies_are_exactly_the_tables_duckdb_scans(make_project: Any, tmp_path: Path, seed: int) -> None:
    root, models = generated_project(make_project, seed, 40)
    graph = build_graph(load_project(root))
    con = engine_db()
    for key, sql in models.items():
        touched = scanned(con, sql, tmp_path / "profile.json")
        assert set(graph.deps[key]) == touched, f"{key}: {sql}"


def test_the_generator_reaches_every_construct(make_project: Any) -> None:
    """The property above means something only if the generated SQL really uses what it claims to."""
    _, models = generated_project(make_project, 99, 200)
    text = "\n".join(models.values()).lower()
    for construct in ("pivot (", "in ('x', 'y')", "unpivot", "from lake", "with w1 as", "lateral",
                      " except ", " intersect ", "having", "query_table(", "_latest", "_history", "exists ("):
        assert construct in text, construct


# --- the cases that used to be missed, one by one ---------------------------------------------------


@pytest.mark.parametrize(("sql", "expected"), [
    ("pivot lake.a on m using sum(v) group by k", {"lake.a"}),
    ("unpivot lake.a on k, v into name n value x", {"lake.a"}),
    ("from lake.a select k", {"lake.a"}),
    ("select * from query_table('lake.b')", {"lake.b"}),
    ("select * from query('select k from lake.b')", {"lake.b"}),
    ("with lake_a as (from lake.a) pivot lake_a on m using count(*)", {"lake.a"}),
    ("select (select max(k) from lake.b) as x from lake.a", {"lake.a", "lake.b"}),
])
def test_duckdb_syntax_is_a_dependency(make_project: Any, sql: str, expected: set[str]) -> None:
    root = make_project({"models/mart/m.sql": sql}, lake={"a": None, "b": None})
    assert set(build_graph(load_project(root)).deps["mart.m"]) == expected


def test_a_computed_query_table_argument_is_refused_with_its_place(make_project: Any) -> None:
    root = make_project({"models/mart/m.sql": "select 1 as x,\n  * from query_table('lake.' || 'a')"},
                        lake={"a": None})
    with pytest.raises(ProjectError) as err:
        build_graph(load_project(root))
    assert "m.sql:2:" in str(err.value)
    assert "query_table" in str(err.value)


def test_sql_neither_parser_can_read_whole_is_refused_with_a_way_out(make_project: Any) -> None:
    # SQLGlot cannot parse ORDER BY after a PIVOT's GROUP BY; DuckDB splits a PIVOT without IN in two
    root = make_project({"models/mart/m.sql": "pivot lake.a on m using sum(v) group by k order by k"},
                        lake={"a": None})
    with pytest.raises(ProjectError) as err:
        build_graph(load_project(root))
    assert "m.sql:1:" in str(err.value)
    assert "IN list" in str(err.value)
    # with an IN list DuckDB reads it as one statement, and decides
    (root / "models/mart/m.sql").write_text("pivot lake.a on m in ('x') using sum(v) group by k order by k")
    assert build_graph(load_project(root)).deps["mart.m"] == ("lake.a",)


def test_a_name_that_is_no_asset_is_refused_with_its_place(make_project: Any) -> None:
    root = make_project({"models/mart/m.sql": "select *\nfrom (pivot lake.nope on m using sum(v)) p"},
                        lake={"a": None})
    with pytest.raises(ProjectError) as err:
        build_graph(load_project(root))
    assert "m.sql:2:" in str(err.value)
    assert "unknown table lake.nope" in str(err.value)


def test_the_parse_cache_is_keyed_by_the_parsers_versions(make_project: Any, monkeypatch: Any) -> None:
    import kiban.graph.sqlrefs as sqlrefs

    root = make_project({"models/mart/m.sql": "from lake.a select k"}, lake={"a": None})
    build_graph(load_project(root))
    cache = SqlCache(root / ".kiban" / "cache" / "sql.json")
    assert set(cache.entries) == {cache_key("from lake.a select k")}
    sqlrefs.parser_versions.cache_clear()
    monkeypatch.setattr(sqlrefs, "version", lambda package: "0.0-other")
    try:
        assert cache_key("from lake.a select k") not in cache.entries  # another parser: parsed again
    finally:
        sqlrefs.parser_versions.cache_clear()


def test_every_example_model_depends_on_what_duckdbs_binder_names(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[1] / "examples"
    for kiban_yml in sorted(example.glob("*/kiban.yml")):
        project = load_project(kiban_yml.parent)
        graph = build_graph(project, SqlCache(None))
        views = project.lake_views()
        for key, asset in project.assets.items():
            if asset.sql is None:
                continue
            # the binder's qualified names may carry the alias ("warehouse.customers AS c")
            named = {n.lower().split(" as ")[0] for n in duckdb.get_table_names(asset.sql, qualified=True)}
            resolved = set()
            for name in named:
                qualified = name if "." in name else next(k for k in project.assets if k.endswith("." + name))
                resolved.add(views.get(qualified, qualified))
            assert set(graph.deps[key]) == resolved, key
            assert parse_sql(asset.sql, asset.path).refs, key


# --- DuckDB alone where SQLGlot cannot differ (issue 23) -------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_duckdbs_reading_alone_equals_both_parsers_reading(seed: int) -> None:
    """Over generated SQL (CTEs named like tables, PIVOT, query_table, …): what DuckDB's parser alone gives —
    the tables and the text's identity — is exactly what asking SQLGlot too gives."""
    gen = Gen(random.Random(1000 + seed))
    for i in range(60):
        sql = gen.query(gen.rng.randint(0, 3))
        alone, both = parse_sql(sql, Path(f"g{i}.sql")), parse_sql(sql, Path(f"g{i}.sql"), agree=True)
        assert {(r.schema.lower(), r.name.lower()) for r in alone.refs} == \
            {(r.schema.lower(), r.name.lower()) for r in both.refs}, sql
        assert alone.normalized_hash == both.normalized_hash, sql
        assert both.agreed
        lines = sql.split("\n")
        for ref in alone.refs if not alone.agreed else ():  # DuckDB's places: the table's name, or the call
            written = lines[ref.line - 1][ref.column - 1:].lower()
            assert written.lstrip('"').startswith((ref.name.lower(), "query")), (sql, ref)


def test_sqlglot_is_asked_only_where_a_cte_is_named_like_a_table(make_project: Any) -> None:
    root = make_project({"models/warehouse/orders.sql": "select k, m, v from lake.a",
                         "models/mart/plain.sql": "with t as (select k from warehouse.orders) select k from t",
                         "models/mart/shadow.sql": "with orders as (select k from warehouse.orders) "
                                                   "select k from orders"},
                        lake={"a": None})
    project = load_project(root)
    cache = SqlCache(None)
    graph = build_graph(project, cache)
    assert graph.deps["mart.plain"] == graph.deps["mart.shadow"] == ("warehouse.orders",)
    agreed = {project.assets[k].sql: cache.entries[cache_key(project.assets[k].sql or "")]["agreed"]
              for k in ("mart.plain", "mart.shadow")}
    assert list(agreed.values()) == [False, True]  # `t` hides no table; `orders` might have


def test_sql_whose_tree_the_walk_does_not_know_is_read_by_both_parsers(make_project: Any) -> None:
    """DESCRIBE is a SELECT to DuckDB's parser, with a node kind (SHOW_REF) that names its table in its own way:
    it is not read by DuckDB's walk alone, and SQLGlot's parse refuses it as a model."""
    root = make_project({"models/mart/m.sql": "describe lake.a"}, lake={"a": None})
    with pytest.raises(ProjectError) as err:
        build_graph(load_project(root))
    assert "not DESCRIBE" in str(err.value)


def test_the_texts_identity_ignores_comments_layout_and_keyword_case() -> None:
    texts = ["select k, sum(v) as v from lake.a group by k",
             "-- totals\nSELECT k,\n       SUM(v) AS v\n  FROM lake.a /* all */\n GROUP BY k\n",
             "Select K, Sum(V) As V From Lake.A Group By K"]
    hashes = {parse_sql(t, Path("m.sql")).normalized_hash for t in texts}
    assert len(hashes) == 2  # identifiers keep their case (as written), keywords and layout do not count
    assert parse_sql(texts[0], Path("m.sql")).normalized_hash == parse_sql(texts[1], Path("m.sql")).normalized_hash
    assert parse_sql(texts[0], Path("m.sql")).normalized_hash != \
        parse_sql("select k, sum(v) as w from lake.a group by k", Path("m.sql")).normalized_hash


# Pairs of models that differ in meaning by one detail, across DuckDB's syntax: the text's identity (DuckDB's
# rendering of its parse tree) must tell them apart, or a change would not rebuild the model (stale data).
DIFFERENT = [
    ("select a from t order by a asc", "select a from t order by a desc"),
    ("select a from t order by a nulls first", "select a from t order by a nulls last"),
    ("select * from t using sample 10%", "select * from t using sample 20%"),
    ("select * from t using sample 10% (bernoulli)", "select * from t using sample 10% (system)"),
    ("select * from t tablesample 10", "select * from t tablesample 11"),
    ("select sum(a) over (order by b rows between 1 preceding and current row) from t",
     "select sum(a) over (order by b range between 1 preceding and current row) from t"),
    ("select distinct on (a) a, b from t order by a, b", "select distinct on (b) a, b from t order by a, b"),
    ("select * exclude (a) from t", "select * exclude (b) from t"),
    ("select * replace (a + 1 as a) from t", "select * replace (a + 2 as a) from t"),
    ("select a from t limit 10%", "select a from t limit 10"),
    ("select 'it''s'", "select 'its'"),
    ("select \"A\" from t", "select a from t"),
    ("select a collate nocase from t", "select a collate noaccent from t"),
    ("select a::decimal(10,2) from t", "select a::decimal(10,3) from t"),
    ("select try_cast(a as int) from t", "select cast(a as int) from t"),
    ("select a from t where a ilike 'x%'", "select a from t where a like 'x%'"),
    ("select a is distinct from b from t", "select a is not distinct from b from t"),
    ("select * from t asof join u on t.a >= u.a", "select * from t join u on t.a >= u.a"),
    ("select * from t positional join u", "select * from t cross join u"),
    ("select * from t anti join u using (a)", "select * from t semi join u using (a)"),
    ("select list_transform(l, x -> x + 1) from t", "select list_transform(l, x -> x + 2) from t"),
    ("select {'a': 1}", "select {'a': 2}"),
    ("select a from t group by all", "select a from t group by a"),
    ("select a from t union by name select a from u", "select a from t union select a from u"),
    ("select a from t union all select a from u", "select a from t union select a from u"),
    ("select a from t qualify row_number() over () = 1", "select a from t qualify row_number() over () = 2"),
    ("with recursive r(n) as (select 1 union all select n + 1 from r where n < 3) select * from r",
     "with recursive r(n) as (select 1 union select n + 1 from r where n < 3) select * from r"),
    ("pivot t on a in ('x') using sum(b)", "pivot t on a in ('y') using sum(b)"),
    ("unpivot t on a, b into name n value v", "unpivot t on a, c into name n value v"),
    ("select columns('a.*') from t", "select columns('b.*') from t"),
    ("select count(distinct a) from t", "select count(a) from t"),
    ("select sum(a) filter (where b) from t", "select sum(a) filter (where c) from t"),
    ("select first(a order by b) from t", "select first(a order by b desc) from t"),
    ("select a from t where b between 1 and 2", "select a from t where b not between 1 and 2"),
    ("select interval 1 day", "select interval 1 hour"),
    ("select a from t limit 5 offset 1", "select a from t limit 5 offset 2"),
    ("select * from read_parquet('a.parquet', hive_partitioning = true)",
     "select * from read_parquet('a.parquet', hive_partitioning = false)"),
    ("select a // 2 from t", "select a / 2 from t"),
    ("select a from t where a = $$x$$", "select a from t where a = 'y'"),
]


@pytest.mark.parametrize(("one", "other"), DIFFERENT)
def test_a_change_of_meaning_changes_the_texts_identity(one: str, other: str) -> None:
    assert parse_sql(one, Path("m.sql")).normalized_hash != parse_sql(other, Path("m.sql")).normalized_hash
