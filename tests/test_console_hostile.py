"""A hostile-query corpus against the console, run as an analyst without PII clearance.

Two warehouses are built that differ ONLY in their personal data (names, e-mails, phones). Every query of
the corpus runs against both: it must be refused in both, or give exactly the same answer (rows, or error
text) in both. Equal answers prove that nothing about the personal values reached the analyst — not the
values themselves, not their equality, order, length, count or any error they would cause (noninterference).
Then every answer is searched for every clear personal value of the fixture, and nothing may have changed
on disk.
"""

from __future__ import annotations

import pytest

from kiban.catalog.console import QueryConsole, QueryFailed
from kiban.catalog.safety import QueryRefused
from kiban.catalog.usage import Actor, history
from kiban.project import load_project
from kiban.run import RunOptions, run_project
from tests.helpers.hostile import answer, clear_values, files, hostile_shop

T = "warehouse.customers"
L = "lake.customers"
CORPUS: dict[str, list[str]] = {
    "reshaping": [
        f"select * from (unpivot {T} on full_name, email, phone into name k value v)",
        f"select column_name, min from (summarize select email, phone from {T} where customer_id = 42)",
        f"select * from (summarize select * from {L})",
        "select * from (summarize warehouse.customers)",
        f"select column_name, max, approx_unique from (summarize select email_upper from {T})",
        f"unpivot {T} on columns(* exclude (customer_id)) into name k value v",
        f"select c from {L} c",
        f"select to_json(c) as j from {L} c",
        f"select row(email, phone) as r from {T}",
        f"select {{'e': email}} as s from {T}",
        f"select [email, phone] as l from {T}",
        f"select map([email], [phone]) as m from {T}",
        f"select columns('e.*') from {L}",
        f"select columns(*) from {T}",
        f"select * like '%mail%' from {L}",
        f"select #3 from {L}",
        f"select coalesce(*columns(['email'])) as x from {L}",
        f"select string_agg(email, ',') as s from {T}",
        f"select list(email order by email) as l from {T}",
        f"select unnest(list(email)) as e from {T}",
        f"select x.e from (select email as e from {L}) x",
        f"select (select max(email) from {L}) as m",
        f"with q as (select email, phone from {T}) select * from q",
        f"with recursive r(n, e) as (select 1, (select min(email) from {T}) union all "
        "select n + 1, e from r where n < 3) select * from r",
        f"select email from {T} union all select phone from {L}",
        f"select email from {T} intersect select email from {L}",
        f"select * from {T} t, lateral (select t.email as e) l",
        f"select struct_pack(a := full_name) as s from {L}",
        f"select * from {T} where customer_id = 42",
    ],
    "filters and inference": [
        f"select count(*) from {T} where email like 'u%'",
        f"select count(*) from {T} where email like 'user4%'",
        f"select count(*) from {T} where email = 'user42@example.com'",
        f"select count(*) from {T} where md5(email) = md5('user42@example.com')",
        f"select count(*) from {T} where length(email) > 17",
        f"select customer_id from {T} where substr(email, 1, 1) = 'u' order by 1",
        f"select customer_id from {T} where regexp_matches(email, '^user4') order by 1",
        f"select customer_id from {T} where starts_with(full_name, 'Taro') order by 1",
        f"select customer_id from {T} where contains(phone, '1234') order by 1",
        f"select customer_id from {T} where ascii(email) = 117 order by 1",
        f"select customer_id from {T} where email between 'a' and 'v' order by 1",
        f"select customer_id from {T} where email in ('user1@example.com', 'user2@example.com') order by 1",
        f"select customer_id, case when email like '%example%' then 1 else 0 end as hit from {T} order by 1",
        f"select customer_id from {T} t where exists (select 1 from {L} l where l.email = 'user7@example.com' "
        "and l.customer_id = t.customer_id) order by 1",
        f"select city, count(*) from {T} group by city having max(email) > 'user5' order by 1",
        f"select count(*) filter (where email ilike '%EXAMPLE%') from {T}",
        f"select customer_id from {T} where email_upper like 'USER%' order by 1",
        f"select customer_id from {T} where levenshtein(email, 'user1@example.com') < 3 order by 1",
        f"select customer_id from {T} where jaccard(email, 'user1@example.com') > 0.5 order by 1",
        f"select customer_id from {T} where hash(email) % 2 = 0 order by 1",
        f"select customer_id from {T} where strlen(phone) = 13 order by 1",
        f"select customer_id from {T} where phone is null order by 1",
        f"select customer_id from {T} where email glob 'user*' order by 1",
        f"select customer_id from {T} where email similar to 'user[0-9]+@example.com' order by 1",
        f"select customer_id from {T} where instr(email, '4') = 5 order by 1",
        f"select customer_id from {T} where split_part(email, '@', 2) = 'example.com' order by 1",
        f"select customer_id from {T} where email ^@ 'user' order by 1",
        f"select customer_id from {T} where lower(full_name) = 'taro 42' order by 1",
    ],
    "sort": [
        f"select customer_id from {T} order by email",
        f"select customer_id from {T} order by email desc, customer_id",
        f"select customer_id from {T} order by length(email), customer_id",
        f"select customer_id from {T} order by phone nulls first, customer_id",
        f"select customer_id, row_number() over (order by email) as r from {T} order by 1",
        f"select customer_id, rank() over (order by full_name) as r from {T} order by 1",
        f"select customer_id, ntile(4) over (order by phone) as q from {T} order by 1",
        f"select arg_min(customer_id, email) from {T}",
        f"select arg_max(customer_id, phone) from {T}",
        f"select first(customer_id order by email) from {T}",
        f"select customer_id, lag(customer_id) over (order by email) from {T} order by 1",
        f"select customer_id from {T} order by email limit 1",
        f"select customer_id, percent_rank() over (order by email_upper) from {T} order by 1",
        f"select list(customer_id order by email) from {T}",
        f"select min_by(customer_id, full_name), max_by(customer_id, full_name) from {T}",
    ],
    "joins": [
        f"select a.customer_id, b.customer_id from {T} a join {T} b on a.email = b.email "
        "and a.customer_id < b.customer_id order by 1, 2",
        f"select count(*) from {T} a join {T} b on a.email = b.email",
        f"select count(*) from {T} a join {L} b on a.email = b.email",
        f"select count(*) from {T} a join {T} b on substr(a.email, 1, 5) = substr(b.email, 1, 5)",
        f"select count(*) from {T} a join {T} b on md5(a.phone) = md5(b.phone)",
        f"select count(*) from {T} a semi join {L} b on a.full_name = b.full_name",
        f"select count(*) from {T} a anti join {L} b on a.email = b.email",
        f"select count(*) from {T} a asof join {T} b on a.email >= b.email",
        f"select count(*) from {T} a positional join {L} b where a.email = b.email",
        f"select count(*) from {T} a cross join {T} b where a.email < b.email",
        f"select count(*) from warehouse.orders o join {T} c on o.email = c.email",
        f"select count(*) from {T} a join (values ('user1@example.com')) v(e) on a.email = v.e",
        f"select count(*) from {T} a left join {T} b on a.phone = b.phone where b.customer_id is null",
        f"select count(*) from {T} a join {T} b using (email)",
        f"select count(*) from {T} natural join {L}",
        f"select count(*) from {T} a join {T} b on a.email_upper = upper(b.email)",
    ],
    "aggregates": [
        f"select count(distinct email) from {T}",
        f"select approx_count_distinct(email) from {T}",
        f"select min(email), max(email) from {T}",
        f"select min(phone), max(full_name) from {L}",
        f"select mode(email) from {T}",
        f"select histogram(email) from {T}",
        f"select approx_top_k(email, 3) from {T}",
        f"select entropy(email) from {T}",
        f"select sum(hash(email)) from {T}",
        f"select bit_xor(hash(phone)) from {T}",
        f"select list_distinct(list(email)) from {T}",
        f"select count(distinct phone), count(phone) from {T}",
        f"select sum(length(email)) from {T}",
        f"select avg(strlen(full_name)) from {T}",
        f"select city, min(email) from {T} group by city order by city",
        f"select email, count(*) from {T} group by email order by 2 desc, 1",
        f"select count(*) from (select distinct email from {T})",
        f"select max(md5(email)) from {T}",
        f"select bool_or(email like '%@example.com') from {T}",
        f"select quantile_disc(email, 0.5) from {T}",
        f"select string_agg(distinct substr(email, 1, 1), '') from {T}",
        f"select first(email), last(phone), any_value(full_name) from {T}",
    ],
    "casts and errors": [
        f"select email::int from {T} where customer_id = 42",
        f"select cast(email as integer) from {T}",
        f"select error(email) from {T} where customer_id = 42",
        f"select strptime(email, '%Y') from {T} where customer_id = 42",
        f"select json(email) from {T} where customer_id = 42",
        f"select email::date from {T} where customer_id = 42",
        f"select email::uuid from {T} where customer_id = 42",
        f"select phone::bigint from {T} where customer_id = 42",
        f"select full_name::timestamp from {T} where customer_id = 42",
        f"select email::blob::int from {T} where customer_id = 42",
        f"select from_hex(email) from {T} where customer_id = 42",
        f"select from_base64(email) from {T} where customer_id = 42",
        f"select email::decimal(10, 2) from {T} where customer_id = 42",
        f"select email::boolean from {T} where customer_id = 42",
        f"select email::interval from {T} where customer_id = 42",
        f"select email::int[] from {T} where customer_id = 42",
        f"select json_extract(email, '$.a') from {T} where customer_id = 42",
        f"select regexp_matches('x', email) from {T} where customer_id = 42",
        f"select to_timestamp(email::double) from {T} where customer_id = 42",
        f"select [1, 2][email::int] from {T} where customer_id = 42",
        f"select 1 / (length(email) - 3) from {T} where customer_id = 42",
        f"select struct_extract({{'a': 1}}, email) from {T} where customer_id = 42",
        f"select format('{{:d}}', email) from {T} where customer_id = 42",
        f"select try_cast(email as int) from {T}",
        f"select printf('%d', phone) from {T} where customer_id = 42",
        f"select email::time from {T} where customer_id = 42",
    ],
    "pivot": [
        f"pivot {T} on city using count(*)",
        f"pivot {T} on email using count(*)",
        f"pivot {T} on full_name using count(*) group by city",
        f"select * from (pivot {T} on city using max(email) group by customer_id) order by 1",
        f"pivot {L} on substr(email, 1, 4) using count(*)",
        f"pivot (select city, phone from {T}) on phone using count(*)",
        f"with q as (select * from {L}) pivot q on full_name, city using count(*)",
        f"pivot {T} on email in ('user1@example.com', 'zq413@other.jp') using count(*)",
        f"select * from {T} pivot (count(*) for email in ('user1@example.com', 'user2@example.com'))",
        f"pivot {T} on length(email) using count(*)",
        f"pivot {T} on email like 'u%' using count(*)",
        f"pivot {T} on city using string_agg(email, ',')",
        f"pivot (select * from {T} where email like 'user4%') on city using count(*)",
        f"pivot {T} on (select max(email) from {L}) using count(*)",
        f"pivot {T} on email_upper using first(phone) group by city",
        f"select * from (pivot (pivot {T} on city using count(*)) on email using count(*))",
    ],
    "system catalogs": [
        "select * from duckdb_tables()",
        "select * from duckdb_views()",
        "select sql from duckdb_views",
        "select * from duckdb_columns()",
        "select * from duckdb_databases()",
        "select * from duckdb_functions()",
        "select * from information_schema.tables",
        "select * from information_schema.columns",
        "select * from pg_catalog.pg_class",
        "select * from pg_class",
        "select * from sqlite_master",
        "select * from pragma_table_info('warehouse.customers')",
        "select * from pragma_storage_info('warehouse.customers')",
        "with duckdb_views as (select 1 as x) select * from duckdb_views",
        "select * from memory.warehouse.customers",
        "select * from system.main.duckdb_views",
        "select * from __kiban_src_0000000000000000.warehouse.customers",
        "select * from main.__kiban_partitions",
        "select current_database()",
        "select current_schemas(true)",
    ],
    "table functions": [
        "select * from query('select * from warehouse.customers')",
        "select * from query_table('warehouse.customers')",
        f"select * from json_execute_serialized_sql(json_serialize_sql('select email from {T}'))",
        "select * from getvariable('x')",
        "summarize warehouse.customers",
        "describe warehouse.customers",
        "show tables",
        "select * from duckdb_settings()",
        "select * from which_secret('s3://x', 's3')",
        "select * from test_all_types()",
        "select * from sql_auto_complete('select')",
        "select * from duckdb_secrets()",
        "select * from duckdb_extensions()",
        "select * from pivot_list()",
    ],
    "file access": [
        "select * from read_csv('/etc/passwd')",
        "select * from read_parquet('lake/customers/part-0.parquet')",
        "select * from 'lake/customers/part-0.parquet'",
        "select * from read_text('/etc/hostname')",
        "select read_blob('/etc/hostname')",
        "select * from glob('/etc/*')",
        "select * from 'https://example.com/x.csv'",
        "select * from sqlite_scan('x.db', 't')",
        "select * from read_json_auto('/etc/x.json')",
        "select * from parquet_metadata('lake/customers/part-0.parquet')",
        "copy (select * from warehouse.customers) to '/tmp/leak.csv'",
    ],
    "writes": [
        "drop table warehouse.customers",
        "delete from warehouse.customers",
        "update warehouse.customers set email = 'x'",
        "insert into warehouse.customers select * from warehouse.customers",
        "create table mart.x as select * from warehouse.customers",
        "create view mart.leak as select * from lake.customers",
        "create macro m(x) as x",
        "alter table warehouse.customers rename to y",
        "attach ':memory:' as other",
        "detach database memory",
        "checkpoint",
        "export database '/tmp/dump'",
        "with x as (select 1) delete from warehouse.customers",
        "select 1; drop table warehouse.customers",
        "create temp table t as select email from warehouse.customers",
    ],
    "config changes": [
        "set enable_external_access = true",
        "reset lock_configuration",
        "set memory_limit = '100GB'",
        "set threads = 64",
        "pragma disable_checkpoint_on_shutdown",
        "use memory",
        "set variable x = 1",
        "install httpfs",
        "load httpfs",
        "select set_config('threads', '1', false)",
        "call enable_logging()",
    ],
    "duckdb syntax": [  # wave 10: DuckDB's own spellings, whole-row values, oracles, odd names
        f"from {T} select email",
        f"from {L}",
        f"select * exclude (customer_id) from {T}",
        f"select * replace (email as city) from {T}",
        f"select * rename (email as note) from {T}",
        f"select * from (describe {T})",
        f"select * from (summarize {T})",
        f"select {T}::varchar from {T}",
        "select customers from warehouse.customers",
        f"select c::varchar as r from {L} c",
        "select to_json(customers) from warehouse.customers",
        f"select struct_pack(*columns(*)) from {T} limit 3",
        f"select * from {T} using sample 5 rows (reservoir, 42) order by customer_id",
        'select "EMAIL" from warehouse."CUSTOMERS"',
        "select email from WAREHOUSE.Customers",
        "select email from warehouse/**/.customers",
        f"select {T}.email from {T}",
        f"select email collate nocase from {T} order by customer_id limit 3",
        f"select count(*) from {T} where email collate nocase = 'USER1@EXAMPLE.COM'",
        f"select count(*) from (select email from {T} intersect select 'user1@example.com')",
        f"select count(*) from (select 'user1@example.com' except select email from {T})",
        f"select count(*) from (select email from {T} union all by name select 'x' as email)",
        f"select regexp_extract(email, '(.)', 1) from {T} order by customer_id limit 3",
        f"select list_transform(list(email), x -> length(x)) from {T}",
        f"select list_filter(list(email), x -> x like 'user1%') from {T}",
        f"select histogram(length(email)) from {T}",
        f"select unnest(map_keys(map_from_entries(list(struct_pack(k := customer_id, v := email))))) from {T}",
        "select * from unnest((select list(email) from warehouse.customers))",
        "select * from range((select count(*) from warehouse.customers where email like 'user1%'))",
        "select * from generate_series(1, (select length(max(email)) from warehouse.customers))",
        f"select customer_id from {T} qualify row_number() over (partition by substr(email, 1, 5)) = 1 "
        "order by 1",
        f"select count(*) from {T} where email ~ '^user[0-9]+@'",
        f"select max(email) filter (where email ilike 'USER%') from {T}",
        f"select customer_id, email[1:4] as p from {T} order by 1 limit 3",
        f"select customer_id, email[1] as c from {T} order by 1 limit 3",
        f"select count(*) from {T} where md5(email) like 'a%'",
        f"select sha256(email) from {T} order by customer_id limit 2",
        f"select count(*) from {T} where contains(lower(full_name), 'taro')",
        f"select customer_id from {T} order by email collate nocase, customer_id limit 5",
        f"with recursive r as (select email from {T} union select email from r) select count(*) from r",
        f"select * from {T} t1 join {T} t2 using (email) order by 1 limit 3",
    ],
    "session and catalog (wave 10)": [
        "select email from temp.main.customers",
        "select * from information_schema.views",
        "select * from pg_tables",
        "select * from duckdb_schemas",
        "select * from main.duckdb_views",
        "select * from system.information_schema.views",
        "select * from duckdb_log()",
        "select * from duckdb_memory()",
        "select * from pragma_database_size()",
        "select * from enumerate_files('lake')",
        "select * from duckdb_temporary_files()",
        "select * from checkpoint()",
        "select * from json_each('{}')",
        "select * from parquet_kv_metadata('lake/customers/part-0.parquet')",
        "select * from 'kiban.duckdb.snapshot'",
        "select * from read_text('kiban.yml')",
        "attach 'kiban.duckdb.snapshot' as s",
        "show select * from warehouse.customers",
        "explain analyze select * from warehouse.customers",
        "prepare p as select email from warehouse.customers",
        "execute p",
        "set variable x = (select max(email) from warehouse.customers)",
        "select nextval('s')",
        "select email from warehouse.customers at (version => 1)",
    ],
    "resource exhaustion": [
        "select count(*) from range(100000000000) a",
        f"select count(*) from {T} a, {T} b, {T} c, {T} d, {T} e, range(100000) f",
        "select length(list(i)) from range(300000000) t(i)",
        "select i, count(*) from range(300000000) t(i) group by i order by 2 desc limit 1",
        "with recursive r(n) as (select 1 union all select n + 1 from r) select max(n) from r",
    ],
}
@pytest.fixture(scope="module")
def shops(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    a, store_a = hostile_shop(base, "a")
    b, store_b = hostile_shop(base, "b")
    yield a, b
    store_a.close()
    store_b.close()


def test_the_corpus_is_big_and_grouped_by_technique():
    assert sum(len(q) for q in CORPUS.values()) >= 150
    assert all(len(q) >= 4 for q in CORPUS.values())


@pytest.mark.parametrize("technique", list(CORPUS))
def test_no_hostile_query_reveals_anything_about_personal_data(shops, technique):
    a, b = shops
    analyst = Actor("mallory", "red-team")
    secrets = clear_values("a")
    before = files(a.project.root)
    for sql in CORPUS[technique]:
        got_a, got_b = answer(a, sql, analyst), answer(b, sql, analyst)
        assert got_a == got_b, f"the answer depends on the personal data: {sql}\n{got_a}\n{got_b}"
        text = repr(got_a)
        leaked = [s for s in secrets if s in text and s not in sql]
        assert not leaked, (sql, leaked[:3])
        if technique in ("writes", "config changes", "file access", "system catalogs", "table functions",
                         "session and catalog (wave 10)"):
            assert got_a[0] in ("refused", "QueryFailed"), (sql, got_a)
    assert files(a.project.root) == before
    records = history(a.store, "shop", "mallory", limit=1000)
    assert all(r.error is None or not any(s in r.error for s in secrets) for r in records)


def test_the_issue_examples_are_masked_or_refused(shops):
    a, _b = shops
    analyst = Actor("mallory", "red-team")
    unpivot = a.run(f"select * from (unpivot {T} on full_name, email, phone into name k value v)", analyst)
    assert unpivot.rows
    assert {r[-1] for r in unpivot.rows} <= {"•••"}
    summary = a.run(f"select column_name, min from (summarize select email, phone from {T} "
                    "where customer_id = 42)", analyst)
    assert {r[1] for r in summary.rows} == {"•••"}
    assert a.run(f"select count(*) from {T} where email like 'u%'", analyst).rows == [(0,)]
    with pytest.raises(QueryFailed) as caught:
        a.run(f"select email::int from {T} where customer_id = 42", analyst)
    assert "user42" not in caught.value.message
    assert "values are not shown" in caught.value.message
    assert history(a.store, "shop", "mallory")[0].error == caught.value.message
    # the same query for someone with clearance sees the values, and the error says what it is
    dpo = Actor("dpo", "legal", pii_clearance=True)
    assert a.run(f"select email from {T} where customer_id = 42", dpo).rows == [("user42@example.com",)]
    with pytest.raises(QueryFailed, match=r"user42@example\.com"):
        a.run(f"select email::int from {T} where customer_id = 42", dpo)


def test_a_hash_mask_keeps_equality_only_where_declared(make_project):
    from tests.helpers.shop import SHOP_LAKE

    root = make_project({"models/lake/customers.yml": "columns:\n  - {name: email, pii: {mask: hash}}\n"
                                                      "  - {name: phone, tags: [pii]}\n",
                         "models/warehouse/c.sql": "select id, email, phone from lake.customers"}, lake=SHOP_LAKE)
    assert run_project(load_project(root), RunOptions()).ok
    console = QueryConsole(load_project(root))
    rows = console.run("select a.id, a.email, b.email, a.phone from lake.customers a join warehouse.c b "
                       "using (id) order by id", Actor("ann"), limit=3).rows
    assert all(r[1] == r[2] and len(r[1]) == 16 and "@" not in r[1] and r[3] == "•••" for r in rows)
    assert len({r[1] for r in rows}) == 3  # distinct people stay distinct
    assert console.run("select count(distinct phone) from lake.customers", Actor("ann")).rows == [(1,)]
    with pytest.raises(QueryRefused):  # nobody can compute the hash of a guess
        console.run("select __kiban_mask_000000000000('user1@example.com')", Actor("ann"))
    key = root / ".kiban" / "console.key"
    assert key.stat().st_mode & 0o777 == 0o600
