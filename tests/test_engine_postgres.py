"""The PostgreSQL engine against the real server: transpiled models, lake loads, atomic publish, fingerprints."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb
import psycopg
import pytest

from kiban.engines.postgres import PostgresEngine
from kiban.errors import KibanError
from kiban.project import load_project
from kiban.run import RunOptions, run_project
from tests.conftest import write_parquet
from tests.engine_project import COMMITTED_ROWS, LATEST_ROWS, MARTS, MODELS, collected_lake, lake, normalise


def pg_rows(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql.encode()).fetchall()


def duck_rows(root: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(root / "kiban.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def run(root: Path, **options: object):  # type: ignore[no-untyped-def]
    return run_project(load_project(root), RunOptions(**options))  # type: ignore[arg-type]


def statuses(result: object) -> dict[str, str]:
    return {k: o.status for k, o in result.outcomes.items()}  # type: ignore[attr-defined]


def publishes(url: str) -> list[str]:
    return [r[0] for r in pg_rows(url, "select asset from kiban.publishes order by published_at")]


@pytest.fixture
def shop(make_project: Callable[..., Path], postgres_url: str) -> tuple[Path, str]:
    root = make_project({**MODELS, "kiban.yml": f"name: shop\ntimezone: UTC\nwarehouse: {postgres_url}\n"},
                        lake=lake(), root="pg")
    return root, postgres_url


def test_marts_equal_duckdb_row_by_row(shop: tuple[Path, str], make_project: Callable[..., Path]) -> None:
    root, url = shop
    result = run(root)
    assert result.status == "success", result.outcomes
    duck = make_project(MODELS, lake=lake(), root="duck")
    assert run(duck).status == "success"
    for mart in MARTS:
        expected = normalise(duck_rows(duck, f"select * from {mart}"))
        got = normalise(pg_rows(url, f"select * from {mart}"))
        assert len(expected) > 3
        assert got == expected, mart
    assert result.outcomes["warehouse.orders"].rows == 200
    # the lake was loaded into PostgreSQL, with its version as the table comment
    assert pg_rows(url, "select count(*) from lake.orders") == [(200,)]
    assert pg_rows(url, "select obj_description('lake.orders'::regclass)")[0][0].startswith("kiban:")


def test_rerun_is_fresh_and_lake_change_rebuilds(shop: tuple[Path, str]) -> None:
    root, url = shop
    assert run(root).status == "success"
    assert len(publishes(url)) == 4
    engine = PostgresEngine(url)
    published = engine.published()
    engine.close()
    assert {"warehouse.orders", "mart.daily_sales", "lake.orders"} <= set(published)
    lake_table = pg_rows(url, "select 'lake.orders'::regclass::oid")
    again = run(root)
    assert pg_rows(url, "select 'lake.orders'::regclass::oid") == lake_table  # unchanged lake: not reloaded
    assert set(statuses(again).values()) == set()
    assert sorted(again.plan.fresh) == sorted(
        ["warehouse.orders", *MARTS])
    assert len(publishes(url)) == 4  # nothing built again
    loaded = pg_rows(url, "select count(*) from lake.orders")
    # new lake data: loaded once, then everything downstream rebuilt
    write_parquet(root / "lake" / "orders" / "part-1.parquet",
                  "select 1000 as order_id, 1 as customer_id, date '2024-03-01' as order_date, "
                  "10.25 as amount, 'paid' as status, 'web' as channel")
    third = run(root)
    assert set(statuses(third).values()) == {"success"}
    assert pg_rows(url, "select count(*) from lake.orders") == [(loaded[0][0] + 1,)]
    assert len(publishes(url)) == 8


def test_failed_build_keeps_the_old_version(shop: tuple[Path, str]) -> None:
    root, url = shop
    assert run(root).status == "success"
    before = pg_rows(url, "select count(*), obj_description('warehouse.orders'::regclass) from warehouse.orders")
    # a runtime failure (division by zero) inside the build: the transaction rolls back
    (root / "models/warehouse/orders.sql").write_text(
        MODELS["models/warehouse/orders.sql"].replace("o.amount,", "cast('x' || o.order_id as integer) as amount,"))
    result = run(root)
    assert statuses(result)["warehouse.orders"] == "failed"
    assert statuses(result)["mart.daily_sales"] == "skipped"
    after = pg_rows(url, "select count(*), obj_description('warehouse.orders'::regclass) from warehouse.orders")
    assert after == before
    leftovers = pg_rows(url, "select count(*) from pg_tables where tablename like '\\_\\_kiban\\_tmp%'")
    assert leftovers == [(0,)]


def test_audit_failure_blocks_the_publish(shop: tuple[Path, str]) -> None:
    root, url = shop
    assert run(root).status == "success"
    before = pg_rows(url, "select obj_description('mart.monthly'::regclass)")

    def audit_for(asset, run_id, fingerprint):  # type: ignore[no-untyped-def]
        def hook(session, relation):  # type: ignore[no-untyped-def]
            count = session.execute(f"select count(*) from {relation}")[0][0]
            assert count > 0  # the new version is visible to the audit, inside the transaction
            raise KibanError("blocked by the audit")
        return hook if asset.key == "mart.monthly" else None

    (root / "models/mart/monthly.sql").write_text(MODELS["models/mart/monthly.sql"] + " having count(*) > 1\n")
    result = run_project(load_project(root), RunOptions(), audit=audit_for)
    assert statuses(result)["mart.monthly"] == "failed"
    assert "blocked by the audit" in (result.outcomes["mart.monthly"].error or "")
    assert pg_rows(url, "select obj_description('mart.monthly'::regclass)") == before


def test_construct_without_postgres_equivalent_names_model(make_project: Callable[..., Path],
                                                           postgres_url: str) -> None:
    """Refused before anything runs (issue 18), as the CLI loads the project and as a run starts: the file, the
    line, the construct and a rewrite hint. The loader itself knows no SQL dialect (.importlinter)."""
    from kiban.engines.dialect import refuse_unportable
    from kiban.errors import ProjectError

    root = make_project({"models/mart/bad.sql": "select a,\n  b\nfrom lake.t pivot (sum(a) for b in ('x', 'y'))",
                         "models/mart/weeks.sql": "select\n  date_diff('week', d, d) as w from lake.t",
                         "kiban.yml": f"name: shop\nwarehouse: {postgres_url}\n"},
                        lake={"t": "select 1 as a, 'x' as b, date '2024-01-01' as d"}, root="bad")
    project = load_project(root)
    with pytest.raises(KibanError) as caught:
        refuse_unportable(project)
    text = str(caught.value)
    with pytest.raises(KibanError) as at_run:
        run_project(project, RunOptions())
    assert str(at_run.value) == text
    assert "bad.sql" in text
    assert "PIVOT" in text
    assert "PostgreSQL" in text
    assert "weeks.sql:2" in text
    assert "date_diff('week', …)" in text
    assert "date_diff('day', a, b) // 7" in text
    assert isinstance(caught.value, ProjectError) or "2 problems" in text or text.count("hint") >= 2


def test_unreachable_server_is_a_clear_error(dead_port: int) -> None:
    with pytest.raises(KibanError, match="cannot connect to the PostgreSQL warehouse"):
        PostgresEngine(f"postgresql://postgres@127.0.0.1:{dead_port}/test")


def test_transpile_qualifies_bare_names_but_not_ctes() -> None:
    from kiban.engines.dialect import transpile

    sql = transpile("with c as (select 1 as id) select * from c join customers using (id)", "postgres", "m",
                    {"customers": "lake", "c": "mart"})
    assert "lake.customers" in sql
    assert "mart.c" not in sql
    with pytest.raises(KibanError, match="m: a model is one SELECT statement"):
        transpile("select 1; select 2", "postgres", "m")


def test_timeout_cancels_the_statement_in_postgres(make_project: Callable[..., Path], postgres_url: str) -> None:
    root = make_project({"models/mart/slow.sql": "select t.a from lake.t cross join (select pg_sleep(30)) s",
                         "kiban.yml": f"name: shop\nwarehouse: {postgres_url}\ntimeout: 1\n"},
                        lake={"t": "select 1 as a"}, root="slow")
    result = run(root)
    assert result.outcomes["mart.slow"].status == "failed"
    assert "timed out after 1 s" in (result.outcomes["mart.slow"].error or "")
    assert (result.outcomes["mart.slow"].ended_at - result.outcomes["mart.slow"].started_at).total_seconds() < 10
    assert pg_rows(postgres_url, "select count(*) from pg_stat_activity where query like '%pg_sleep(30)%' "
                   "and state = 'active' and pid <> pg_backend_pid()") == [(0,)]


def test_the_lake_is_exactly_the_committed_files(make_project: Callable[..., Path], postgres_url: str) -> None:
    root = make_project({"kiban.yml": f"name: shop\ntimezone: UTC\nwarehouse: {postgres_url}\n"}, root="lake")
    asset, collected = collected_lake(root)
    engine = PostgresEngine(postgres_url)
    try:
        assert engine.prepare([asset], collected) == {"lake.events": "load:L1"}
    finally:
        engine.close()
    assert sorted(pg_rows(postgres_url, "select id, v from lake.events")) == COMMITTED_ROWS
    assert sorted(pg_rows(postgres_url, "select id, v from lake.events_latest")) == LATEST_ROWS
    assert len(pg_rows(postgres_url, "select valid_from, valid_to from lake.events_history")) == 4


def test_a_view_over_a_lake_table_never_blocks_its_reload(make_project: Callable[..., Path],
                                                          postgres_url: str) -> None:
    """Issue 18: `warehouse.stores` (a view over lake.stores) made every reload of lake.stores fail."""
    models = {
        "models/warehouse/stores.sql": "select store_id, upper(name) as name from lake.stores",
        "models/warehouse/stores.yml": "materialized: view\n",
        "models/mart/store_count.sql": "select count(*) as stores, max(name) as last_name from warehouse.stores",
    }
    root = make_project({**models, "kiban.yml": f"name: shop\ntimezone: UTC\nwarehouse: {postgres_url}\n"},
                        lake={"stores": "select i as store_id, 'store ' || i as name from range(1, 4) t(i)"},
                        root="pg_reload")
    assert run(root).status == "success"
    with psycopg.connect(postgres_url, autocommit=True) as conn:  # someone else's view over the lake table too
        conn.execute("create view public.my_stores as select * from lake.stores")
    # the source changes: more rows, then a new column (schema drift)
    write_parquet(root / "lake" / "stores" / "part-0.parquet",
                  "select i as store_id, 'store ' || i as name from range(1, 6) t(i)")
    result = run(root)
    assert result.status == "success", {k: o.error for k, o in result.outcomes.items() if o.error}
    assert pg_rows(postgres_url, "select stores, last_name from mart.store_count") == [(5, "STORE 5")]
    write_parquet(root / "lake" / "stores" / "part-0.parquet",
                  "select i as store_id, 'store ' || i as name, i * 10 as size from range(1, 8) t(i)")
    result = run(root)
    assert result.status == "success", {k: o.error for k, o in result.outcomes.items() if o.error}
    assert pg_rows(postgres_url, "select stores from mart.store_count") == [(7,)]
    assert pg_rows(postgres_url, "select count(*), sum(size) from lake.stores") == [(7, 280)]
    assert pg_rows(postgres_url, "select count(*) from public.my_stores") == [(7,)]


@pytest.fixture
def icu_url() -> object:
    """A fresh database whose default collation is ICU's en-US (a < B), as many servers' en_US.UTF-8 is."""
    import uuid

    from tests.conftest import need_service

    need_service("PostgreSQL", "127.0.0.1", 5432)
    name = f"kiban_icu_{uuid.uuid4().hex[:10]}"
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as conn:
        try:
            conn.execute(f"create database \"{name}\" template template0 locale_provider icu icu_locale 'en-US' "
                         "locale 'C.UTF-8'")
        except psycopg.Error as exc:
            pytest.skip(f"this PostgreSQL has no ICU collation: {exc}")
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


def test_computed_text_orders_by_bytes_downstream_under_any_database_collation(
        make_project: Callable[..., Path], icu_url: str) -> None:
    """A model's text from literals or functions took the database's collation (en-US: a < B), so a model
    reading it ordered, compared and took min/max differently from DuckDB (bytes: B < a)."""
    files = {
        "models/warehouse/labels.sql": "select id, case when id > 2 then 'a' else 'B' end as label, "
                                       "dayname(date '2024-01-01' + id) as day, s from lake.items",
        "models/mart/ordered.sql": "select id, label, min(label) over () as lo, max(day) over () as hi, "
                                   "row_number() over (order by label, day, id) as n, label < 'a' as upper_first "
                                   "from warehouse.labels",
    }
    items = "select * from (values (1, 'a'), (2, 'B'), (3, 'b'), (4, '_')) v(id, s)"
    pg = make_project({**files, "kiban.yml": f"name: shop\ntimezone: UTC\nwarehouse: {icu_url}\n"},
                      lake={"items": items}, root="pg")
    assert run(pg).status == "success"
    duck = make_project(files, lake={"items": items}, root="duck")
    assert run(duck).status == "success"
    query = "select * from mart.ordered order by id"
    assert pg_rows(icu_url, query) == duck_rows(duck, query)
    assert pg_rows(icu_url, "select collation_name from information_schema.columns where table_schema = "
                            "'warehouse' and table_name = 'labels' and data_type = 'text' order by 1") == [("C",)] * 3
