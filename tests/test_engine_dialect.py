"""Transpiling models from DuckDB's SQL: the rewrites the other engines need, and clear refusals."""

from __future__ import annotations

import pytest

from kiban.engines.dialect import transpile
from kiban.errors import KibanError


@pytest.mark.parametrize(("sql", "construct"), [
    ("select * exclude (note) from lake.orders", "SELECT * EXCLUDE/REPLACE/RENAME"),
    ("select columns('amount_.*') from lake.orders", "COLUMNS(…)"),
    ("select order_id::hugeint as id from lake.orders", "the HUGEINT type"),
    ("select o.* from lake.orders o asof join lake.prices p on o.at >= p.at", "ASOF JOIN"),
])
@pytest.mark.parametrize(("target", "engine"), [("postgres", "PostgreSQL"), ("spark", "Spark SQL")])
def test_a_construct_the_target_lacks_is_an_error_naming_model_and_construct(
        sql: str, construct: str, target: str, engine: str) -> None:
    with pytest.raises(KibanError) as caught:
        transpile(sql, target, "mart.orders_wide")
    message = str(caught.value)
    assert message.startswith("mart.orders_wide: ")
    assert construct in message
    assert engine in message


@pytest.mark.parametrize(("sql", "construct"), [
    ("select {'id': order_id} as s from lake.orders", "STRUCT"),
    ("select list_transform(tags, t -> upper(t)) as tags from lake.orders", "lambda"),
    ("select order_id from lake.orders order by all", "ORDER BY ALL"),
    ("select * from lake.orders pivot (sum(amount) for channel in ('web', 'store'))", "PIVOT"),  # SQLGlot's own
])
def test_postgres_refuses_what_it_cannot_run(sql: str, construct: str) -> None:
    with pytest.raises(KibanError, match=f"mart.x: .*{construct}.*PostgreSQL"):
        transpile(sql, "postgres", "mart.x")


def test_qualify_keeps_select_star_valid_and_its_helper_is_named() -> None:
    sql = ("select *, upper(name) as loud from lake.customers "
           "qualify row_number() over (partition by id order by updated_at desc) = 1")
    for target in ("postgres", "spark"):
        out = transpile(sql, target, "warehouse.customers")
        assert " QUALIFY " not in out.upper()
        assert "__kiban_qualify_0 = 1" in out, out
        assert out.count("AS loud") == 1, out  # not selected twice


def test_qualify_without_star_selects_exactly_the_model_columns() -> None:
    out = transpile("select id, name from lake.c qualify row_number() over (partition by id order by v) = 1",
                    "postgres", "warehouse.c")
    assert out.startswith('SELECT "id", "name" FROM (SELECT id, name, ROW_NUMBER()'), out


def test_group_by_all_becomes_the_plain_select_items_on_postgres() -> None:
    out = transpile("select store, day, count(*) as n, sum(x) over () as w from lake.s group by all",
                    "postgres", "mart.s")
    assert out.endswith("GROUP BY store, day"), out


@pytest.mark.parametrize(("sql", "postgres", "spark"), [
    ("dayname(d)", "TO_CHAR(d, 'FMDay')", "DATE_FORMAT(d, 'EEEE')"),
    ("isodow(d)", "EXTRACT(isodow FROM d)", "WEEKDAY(d) + 1"),
    ("hour(t)", "EXTRACT(hour FROM t)", "HOUR(t)"),
    ("regexp_full_match(s, 'a+')", "s ~ '^(?:a+)$'", "s RLIKE '^(?:a+)$'"),
    ("regexp_extract(s, 'x(\\d)', 1)", "COALESCE(REGEXP_SUBSTR(s, 'x([0-9])', 1, 1, '', 1), '')", "REGEXP_EXTRACT"),
    ("timezone('Asia/Tokyo', cast(t as timestamptz))", "TIMEZONE('Asia/Tokyo'",
     "CONVERT_TIMEZONE('UTC', 'Asia/Tokyo', CAST(CAST(t AS TIMESTAMP) AS TIMESTAMP_NTZ))"),  # session zone: UTC
    ("timezone('Asia/Tokyo', cast(t as timestamp))", "TIMEZONE('Asia/Tokyo'",
     "CAST(CONVERT_TIMEZONE('Asia/Tokyo', 'UTC', "),
    ("round(a / b, 2)", "kiban.round(CASE WHEN", "ELSE CAST(a AS DOUBLE) / CAST(b AS DOUBLE) END, 2)"),
    ("cast(t as time)", "CAST(t AS TIME)", "CAST(t AS TIME)"),
])
def test_duckdb_functions_mean_the_same_on_every_engine(sql: str, postgres: str, spark: str) -> None:
    assert postgres in transpile(f"select {sql} as v from lake.t", "postgres", "m")
    assert spark in transpile(f"select {sql} as v from lake.t", "spark", "m")


def test_a_date_series_is_a_set_of_rows_on_every_engine() -> None:
    sql = "select cast(unnest(generate_series(min(d), max(d), interval 1 day)) as date) as d from lake.t"
    assert transpile(sql, "postgres", "m").startswith(  # dates: DuckDB's naive timestamps (engines.meaning_postgres)
        "SELECT CAST(GENERATE_SERIES(kiban.naive(MIN(d)), kiban.naive(MAX(d))")
    assert transpile(sql, "spark", "m").startswith("SELECT EXPLODE(CAST(SEQUENCE(MIN(d), MAX(d), INTERVAL '1' DAY) "
                                                   "AS ARRAY<DATE>))")


def test_unqualified_names_get_their_layer() -> None:
    out = transpile("select * from orders join lake.stores using (store_id)", "postgres", "mart.m",
                    {"orders": "warehouse", "stores": "lake"})
    assert "FROM warehouse.orders JOIN lake.stores" in out


@pytest.mark.parametrize(("sql", "construct", "line"), [
    ("select id,\n  s ~ 'a+' as v from lake.t", "the regex operator ~", 2),  # DuckDB: a full match
    ("select id,\n\n  s !~ 'a+' as v from lake.t", "the regex operator ~", 3),
    ("select id,\n  strftime(d, '%U') as v from lake.t", "strftime(t, '%U')", 2),  # no to_char equivalent
    ("select format('{}', id) as v from lake.t", "format(…)", 1),  # {} placeholders vs %s
])
def test_postgres_refuses_what_it_would_compute_differently_with_its_line(sql: str, construct: str,
                                                                          line: int) -> None:
    from kiban.engines.dialect import Untranslatable

    with pytest.raises(Untranslatable) as caught:
        transpile(sql, "postgres", "mart.x")
    assert construct in str(caught.value)
    assert caught.value.line == line


def test_a_bitwise_not_is_not_a_regex() -> None:
    assert "~" in transpile("select ~id as v from lake.t", "postgres", "mart.x")


def test_strftime_literal_text_is_quoted_for_to_char() -> None:
    out = transpile("select strftime(d, 'Day %d of %B') as v from lake.t", "postgres", "mart.x")
    assert """TO_CHAR(d, '"Day "DD" of "FMMonth')""" in out, out


def test_like_keeps_duckdbs_lack_of_an_escape_character() -> None:
    sql = r"select s like 'a\%' as v from lake.t"
    assert "ESCAPE ''" in transpile(sql, "postgres", "mart.x")  # PostgreSQL's default escape is the backslash
    with pytest.raises(KibanError, match="LIKE with a backslash"):
        transpile(sql, "spark", "mart.x")  # Spark's too, and it cannot be turned off
    assert "ESCAPE '!'" in transpile(r"select s like 'a\%' escape '!' as v from lake.t", "spark", "mart.x")


def test_a_refusal_at_load_names_file_line_and_column() -> None:
    from pathlib import Path

    from kiban.engines.dialect import refusals

    sql = "\n-- weekly report\nselect id,\n       strftime(d, '%U') as week,\n  s as full\nfrom lake.t\n"
    errors = refusals("postgres", {"mart.weeks": (sql, Path("models/mart/weeks.sql")),
                                   "mart.tilde": (sql.replace("strftime(d, '%U')", "d").replace("s as", "s ~ 'a+' as"),
                                                  Path("models/mart/tilde.sql"))})
    where = {str(e.location) for e in errors}
    assert where == {"models/mart/weeks.sql:4:8", "models/mart/tilde.sql:5:5"}, where
    assert all("PostgreSQL" in e.message for e in errors)


@pytest.mark.parametrize(("sql", "collated"), [
    ("select 'a' as k union all select 'B'", 2),  # text of the model's own: byte order (COLLATE "C")
    ("select * from (values ('a'), ('B')) v(k)", 2),
    ("select d from lake.t union all select '2024-01-01'", 0),  # a date in DuckDB: left for PostgreSQL to type
    ("select * from (values (date '2024-01-01'), ('2024-01-02')) v(d)", 0),
])
def test_text_literals_are_byte_ordered_only_where_they_are_text(sql: str, collated: int) -> None:
    assert transpile(sql, "postgres", "mart.x").count('COLLATE "C"') == collated


def test_computed_text_is_byte_ordered_alike_in_distinct_on_and_order_by() -> None:
    out = transpile("select distinct on (dayname(d)) dayname(d) as k, id from lake.t order by dayname(d), id",
                    "postgres", "mart.x")
    assert "DISTINCT ON (TO_CHAR(d, 'FMDay') COLLATE \"C\")" in out, out  # PostgreSQL: they must match
    assert "ORDER BY TO_CHAR(d, 'FMDay') COLLATE \"C\", id" in out, out
