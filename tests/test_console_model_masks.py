"""Personal data that reaches a published relation through the project's own models stays masked.

The console masks what a query reads, so the whole promise rests on the mask plan: which columns of each
published relation carry personal data. That plan comes from column lineage, and a lineage that is wrong but
*known* shows a clear value. Here a grammar composes how a model may carry a PII column into an innocent-looking
column (renames, struct and row packing, set operations — BY NAME too —, the project's macros, scalar and
table, a Python model, the lake table's files read directly) with how a model further down reads it (a plain
column, ``*``, a rename, ``UNION BY NAME``). One project holds every combination; one run builds it; an analyst
without clearance reads every relation, and no clear personal value may come back, through the console or the
Arrow reads BI and notebooks use.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiban.catalog.console import QueryConsole
from kiban.catalog.lineage import asset_resolver, query_lineage
from kiban.catalog.reading import Reader
from kiban.catalog.usage import Actor
from kiban.project import load_project
from kiban.run import RunOptions, run_project

C = "lake.customers"
# how a warehouse model carries a personal value into the column `note` (next to `customer_id`)
CARRIERS = {
    "rename": f"select customer_id, email as note from {C}",
    "union_by_name": f"select customer_id, city as note from {C} union all by name "
                     f"select email as note, customer_id from {C}",
    "union_by_name_3": f"select customer_id, city as note from {C} union by name select customer_id, city as note "
                       f"from {C} union all by name select phone as note, customer_id from {C}",
    "union_by_name_star": f"select * from (select customer_id, city as note from {C}) union by name "
                          f"select email as note, customer_id from {C}",
    "macro_scalar": f"select customer_id, first_email() as note from {C}",
    "macro_nested": f"select customer_id, via_other() as note from {C}",
    "macro_table_join": f"select c.customer_id, p.note from {C} c join people() p using (customer_id)",
    "macro_table_star": "select * from people()",
    "macro_in_cte": f"with p as (select * from people()) select c.customer_id, p.note from {C} c "
                    "join p using (customer_id)",
    "python": "python",
    "lake_files": "select customer_id, email as note from read_parquet('{root}/lake/customers/*.parquet')",
    "lake_files_glob": "select * rename (email as note) from read_parquet('{root}/lake/*/*.parquet')",
    "struct": f"select customer_id, {{'e': email}}.e as note from {C}",
    "row_json": f"select customer_id, to_json(c)::varchar as note from {C} c",
    "columns_expr": f"select customer_id, columns('email') as note from {C}",
    "lateral": f"select c.customer_id, l.note from {C} c, lateral (select c.email as note) l",
    "pivot": f"select * rename (\"Tokyo\" as note) from (pivot (select customer_id, city, email from {C}) "
             "on city in ('Tokyo') using first(email))",
    "struct_unpack": f"select customer_id, s.* from (select customer_id, struct_pack(note := email) as s from {C})",
    "unnest_recursive": f"select unnest(s, recursive := true) from (select {{'customer_id': customer_id, "
                        f"'note': email}} as s from {C})",
    "alias_columns": f"select * from (select customer_id, email from {C}) t(customer_id, note)",
    "cte_columns": f"with q(customer_id, note) as (select customer_id, email from {C}) select * from q",
    "columns_exclude": f"select customer_id, columns(* exclude (customer_id, city, phone)) as note from {C}",
    "dynamic_query": f"select * from query('select customer_id, email as note from {C}')",
    "query_table": f"select * rename (email as note) from query_table('{C}')",
    "recursive": f"with recursive r(customer_id, note) as (select 0, 'x' union all select r.customer_id + 1, "
                 f"c.email from r join {C} c on c.customer_id = r.customer_id + 1 where r.customer_id < 3) "
                 "select * from r",
}
# how a mart reads a warehouse model {w}
READERS = {
    "column": "select customer_id, note from {w}",
    "star": "select * from {w}",
    "renamed": "select customer_id as id, note as remark from {w}",
    "by_name": "select customer_id, 'x' as note from {w} union all by name select note, customer_id from {w}",
    "nested": "select id, remark from (select customer_id as id, upper(note) as remark from {w})",
}
MACROS = """create macro first_email() as (select min(email) from lake.customers);
create macro via_other() as first_email();
create macro people() as table select customer_id, email as note from lake.customers;
"""
PYTHON = '''import kiban
import pyarrow as pa


@kiban.asset
def w_python(lake_customers: pa.Table) -> pa.Table:
    return lake_customers.select(["customer_id", "email"]).rename_columns(["customer_id", "note"])
'''
SECRETS = ("@example.com", "090-1234-")


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    from tests.conftest import write_files, write_parquet

    root = tmp_path_factory.mktemp("model-masks")
    files = {"kiban.yml": "name: masks\ntimezone: UTC\n", "macros/people.sql": MACROS,
             "models/lake/customers.yml": "columns:\n  - {name: email, tags: [pii]}\n  - {name: phone, tags: [pii]}\n",
             "models/warehouse/w_python.py": PYTHON}
    for name, sql in CARRIERS.items():
        if sql != "python":
            files[f"models/warehouse/w_{name}.sql"] = sql.replace("{root}", str(root))
        for reader, template in READERS.items():
            files[f"models/mart/m_{name}_{reader}.sql"] = template.format(w=f"warehouse.w_{name}")
    write_files(root, files)
    write_parquet(root / "lake" / "customers" / "part-0.parquet",
                  "select i as customer_id, 'user' || i || '@example.com' as email, "
                  "'090-1234-' || lpad(i::varchar, 4, '0') as phone, ['Tokyo', 'Osaka'][1 + i % 2] as city "
                  "from range(1, 9) t(i)")
    project = load_project(root)
    result = run_project(project, RunOptions())
    assert result.ok, {k: o.error for k, o in result.outcomes.items() if o.error}
    return project


def relations() -> list[str]:
    return [f"warehouse.w_{c}" for c in CARRIERS] + [f"mart.m_{c}_{r}" for c, r in itertools.product(CARRIERS,
                                                                                                    READERS)]


def test_no_relation_made_from_personal_data_shows_it_in_clear(shop):
    console = QueryConsole(shop, max_running=100, max_per_user=100)
    # every relation's rows, whole, in one query (one worker): each row as JSON next to the relation's name
    sql = " union all ".join(f"select '{r}' as relation, to_json(t)::varchar as row from {r} t" for r in relations())
    result = console.run(sql, Actor("mallory"), limit=10_000)
    assert not result.truncated
    assert {r for r, _ in result.rows} == set(relations())
    leaks = sorted({(r, row) for r, row in result.rows if any(s in row for s in SECRETS)})
    assert not leaks, leaks
    # a person with clearance sees them: the values are there, the plan masks them
    cleared = console.run("select note from mart.m_macro_scalar_column limit 1", Actor("dpo", pii_clearance=True))
    assert "@example.com" in cleared.rows[0][0]


def test_the_arrow_reads_of_bi_and_notebooks_mask_them_too(shop):
    reader = Reader(shop, kind="bi")
    try:
        for relation in ("mart.m_python_column", "mart.m_macro_table_join_renamed", "warehouse.w_union_by_name",
                         "mart.m_union_by_name_3_by_name"):
            table = reader.arrow(f"select * from {relation}", Actor("mallory")).table
            assert table.num_rows, relation
            assert not any(s in repr(table.to_pylist()) for s in SECRETS), relation
    finally:
        reader.close()


@settings(max_examples=60, deadline=None)
@given(st.permutations(range(4)), st.permutations(range(4)), st.booleans())
def test_union_by_name_lineage_matches_columns_by_name(first, second, distinct):
    """Each branch names four columns from four different source columns, in any order; whatever the order, a
    column's lineage is the source columns that carry its *name* in every branch."""
    names = ["a", "b", "c", "d"]
    left = ", ".join(f"l{i} as {names[i]}" for i in first)
    right = ", ".join(f"r{i} as {names[i]}" for i in second)
    sql = f"select {left} from lake.t union {'' if distinct else 'all '}by name select {right} from lake.t"
    schema = {"lake.t": [f"l{i}" for i in range(4)] + [f"r{i}" for i in range(4)]}
    lineage = query_lineage(sql, asset_resolver(["lake.t"]), schema)
    assert lineage.sources == {names[i]: frozenset({("lake.t", f"l{i}"), ("lake.t", f"r{i}")}) for i in range(4)}
