"""An independent hostile corpus: a grammar composes hostile techniques into new queries.

``test_console_hostile`` lists queries someone wrote; here Hypothesis *composes* them: a probe on a personal
column (a cast, a regex, a length, json, list functions, an error raised on a condition …) is used by a technique
(a filter, a sort, a join, a group, a window, an aggregate, a recursive CTE, PIVOT/UNPIVOT/SUMMARIZE, a set
operation, a lateral join), wrapped in subqueries or CTEs, and sometimes combined with something the console
must never do (COPY, ATTACH, PRAGMA, a setting, a table function, a file reader of a canary file). Every query
runs against two warehouses that differ only in personal data: the answers must be equal (noninterference);
no answer may carry a personal value or the canary's text; a query with a forbidden part never returns rows;
nothing on disk changes. ``test_generated_corpus_soak`` runs the same grammar at corpus size (``make soak``).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kiban.catalog.usage import Actor
from tests.helpers.hostile import answer, clear_values, files, hostile_shop

T, L, ORD = "warehouse.customers", "lake.customers", "warehouse.orders"
PII = {T: ["full_name", "email", "phone", "email_upper"], L: ["full_name", "email", "phone"], ORD: ["email"]}
KEY = {T: "customer_id", L: "customer_id", ORD: "order_id"}
CANARY = "canary-7f3a-secret-text"

# a probe turns a personal column {c} into something a technique can use
PROBES = [
    "{c}", "lower({c})", "substr({c}, 1, 2)", "length({c})", "md5({c})", "hash({c})", "{c}::int",
    "try_cast({c} as int)", "regexp_extract({c}, '[0-9]+')", "json_extract(to_json({c}), '$')",
    "list_value({c}, 'x')[1]", "string_split({c}, '@')[1]", "ascii({c})", "{c} || 'x'",
    "struct_pack(a := {c}).a", "strptime({c}, '%Y')", "levenshtein({c}, 'user1@example.com')",
    "case when {c} like 'u%' then error('hit') else 1 end", "regexp_matches({c}, '^user4')", "{c} > 'm'",
    "{c}::date", "from_base64({c})", "left({c}, 1) = 'u'", "instr({c}, '4')", "{c}::blob",
    "array_to_string([{c}], ',')", "map_from_entries([({c}, 1)])", "unnest([{c}])", "list_sort([{c}, 'm'])[1]",
    "json_object('k', {c})::varchar", "(select max({c}) from {t})", "coalesce({c}, 'none')",
]
# a technique uses a probe {p} over a relation {t} (key {k})
TECHNIQUES = [
    "select {p} as x from {t} where {k} = 42",
    "select count(*) from {t} where ({p})::varchar like 'u%'",
    "select count(*) from {t} where ({p})::varchar = 'user42@example.com'",
    "select {k} from {t} order by {p}, {k} limit 5",
    "select a.{k} from (select {k}, ({p})::varchar as v from {t}) a join (select {k}, ({p})::varchar as v from {t}) b "
    "on a.v = b.v and a.{k} < b.{k} order by 1 limit 5",
    "select ({p})::varchar as g, count(*) from {t} group by 1 order by 2 desc, 1 limit 5",
    "select {k}, row_number() over (order by {p}) as r from {t} order by 1 limit 5",
    "select min({p}), max({p}), count(distinct {p}) from {t}",
    "select string_agg(({p})::varchar, ',' order by {k}) from {t}",
    "select histogram(({p})::varchar) from {t}",
    "with recursive r(n, v) as (select 1, (select min(({p})::varchar) from {t}) union all "
    "select n + 1, v || '.' from r where n < 2) select * from r",
    "pivot (select ({p})::varchar as v, {k} % 3 as g from {t}) on v using count(*)",
    "select * from (unpivot (select {k}, ({p})::varchar as v from {t}) on v into name n value w) "
    "where w like 'u%'",
    "select column_name, min, max from (summarize select {p} as x from {t})",
    "select ({p})::varchar from {t} union select ({p})::varchar from {t} order by 1 limit 5",
    "select ({p})::varchar from {t} except select 'user1@example.com' order by 1 limit 5",
    "select {k}, l.y from {t}, lateral (select ({p})::varchar as y) l order by 1 limit 5",
    "select bool_or(({p})::varchar ilike '%example%') from {t}",
    "select arg_min({k}, {p}), arg_max({k}, {p}) from {t}",
    "select list(({p})::varchar order by {k})[1:3] from {t}",
]
WRAPPERS = ["{q}", "select * from ({q}) s", "with w as ({q}) select * from w", "select count(*) from ({q}) s"]
# parts the console must never run, alone or inside a query
FORBIDDEN = [
    "copy (select * from {t}) to '{out}'", "attach '{out}.db' as x", "pragma database_list",
    "set enable_external_access = true", "select * from read_csv('{canary}')", "select * from '{canary}'",
    "select read_text('{canary}')", "select * from glob('{dir}/*')", "select * from query('select * from {t}')",
    "select * from duckdb_settings()", "select getvariable('x')", "select current_setting('threads')",
    "select * from read_json_auto('{canary}')", "select * from parquet_metadata('{canary}')",
    "install httpfs", "select * from sniff_csv('{canary}')", "call pragma_version()",
]
FORBIDDEN_IN_QUERY = ["{q} union all select * from read_csv('{canary}')",
                      "select *, (select content from read_text('{canary}')) as z from ({q}) s",
                      "with f as (select * from glob('{dir}/*')) select * from ({q}) s, f"]


@st.composite
def hostile_query(draw: st.DrawFn) -> tuple[str, bool]:
    """A generated query, and whether it holds something the console must refuse."""
    table = draw(st.sampled_from([T, L, ORD]))
    column = draw(st.sampled_from(PII[table]))
    probe = draw(st.sampled_from(PROBES)).format(c=column, t=table)
    technique = draw(st.sampled_from(TECHNIQUES))
    query = technique.format(p=probe, t=table, k=KEY[table], c=column)
    for _ in range(draw(st.integers(0, 2))):
        query = draw(st.sampled_from(WRAPPERS)).format(q=query)
    forbidden = draw(st.integers(0, 5))
    if forbidden == 4:
        return draw(st.sampled_from(FORBIDDEN)).replace("{t}", table), True
    if forbidden == 5:
        return draw(st.sampled_from(FORBIDDEN_IN_QUERY)).replace("{q}", query), True
    return query, False


@pytest.fixture(scope="module")
def shops(tmp_path_factory):
    from kiban.store import Store

    base = tmp_path_factory.mktemp("generated")
    a, store_a = hostile_shop(base, "a")
    b, store_b = hostile_shop(base, "b")
    canary = base / "canary.csv"
    canary.write_text(f"secret\n{CANARY}\n")
    yield a, b, canary
    store_a.close()
    store_b.close()
    assert isinstance(store_a, Store)


def check(shops, generated: tuple[str, bool]) -> None:
    a, b, canary = shops
    sql, forbidden = generated
    sql = (sql.replace("{canary}", str(canary)).replace("{dir}", str(canary.parent))
           .replace("{out}", str(canary.parent / "written")))
    analyst = Actor("eve", "red-team")
    got_a, got_b = answer(a, sql, analyst), answer(b, sql, analyst)
    assert got_a == got_b, f"the answer depends on the personal data: {sql}\n{got_a}\n{got_b}"
    text = repr(got_a)
    leaked = [s for s in clear_values("a") if s in text and s not in sql]
    assert not leaked, (sql, leaked[:3])
    assert CANARY not in text, sql
    if forbidden:
        assert got_a[0] != "rows", (sql, got_a)
    assert not list(canary.parent.glob("written*")), sql


SETTINGS = {"deadline": None, "derandomize": True, "suppress_health_check": list(HealthCheck),
            "database": None}


@settings(max_examples=24, **SETTINGS)
@given(generated=hostile_query())
def test_generated_hostile_queries_reveal_nothing_and_write_nothing(shops, generated):
    check(shops, generated)


@pytest.mark.soak
@settings(max_examples=400, **{**SETTINGS, "derandomize": False})
@given(generated=hostile_query())
def test_generated_corpus_soak(shops, generated):
    check(shops, generated)


def test_nothing_on_disk_changed_and_the_log_keeps_no_value(shops):
    a, _b, _canary = shops
    before = files(a.project.root)
    check(shops, (f"select email::int from {T} where customer_id = 42", False))
    assert files(a.project.root) == before
    from kiban.catalog.usage import history

    assert all(r.error is None or "user42" not in r.error for r in history(a.store, "shop", "eve", limit=1000))
