"""The console is read-only by construction: hostile queries are refused with a clear message each, and
nothing changes on disk. A second line of defence (the read-only, sandboxed connection) refuses the same
writes and file reads even when the checker is bypassed."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pytest

from kiban.catalog.console import QueryConsole
from kiban.catalog.safety import QueryRefused, check_query
from kiban.catalog.usage import Actor, history
from kiban.catalog.warehouse import open_readonly
from kiban.project import load_project
from kiban.store import Store
from tests.helpers.shop import build_shop
from tests.helpers.warehouse import project_maker

# (query, what the refusal must say); {tmp} is a folder outside the project, {lake} the project's lake
HOSTILE = [
    ("drop table mart.daily_sales", "DROP"),
    ("delete from mart.daily_sales", "DELETE"),
    ("update mart.daily_sales set revenue = 0", "UPDATE"),
    ("insert into mart.daily_sales select * from mart.daily_sales", "INSERT"),
    ("create table mart.x as select 1 as a", "CREATE"),
    ("create or replace view mart.daily_sales as select 1 as a", "CREATE"),
    ("alter table mart.daily_sales rename to y", "ALTER"),
    ("copy mart.daily_sales to '{tmp}/out.csv'", "COPY"),
    ("copy (select * from lake.customers) to '{tmp}/leak.parquet' (format parquet)", "COPY"),
    ("copy mart.daily_sales from '{tmp}/in.csv'", "COPY"),
    ("attach '{tmp}/other.duckdb' as other", "ATTACH"),
    ("detach other", "DETACH"),
    ("install httpfs", "INSTALL/LOAD"),
    ("load httpfs", "INSTALL/LOAD"),
    ("set threads = 1", "SET"),
    ("reset memory_limit", "SET"),
    ("set enable_external_access = true", "SET"),
    ("pragma enable_profiling", "PRAGMA"),
    ("select * from read_csv('/etc/passwd')", "read_csv"),
    ("select * from read_parquet('{lake}/orders/part-0.parquet')", "read_parquet"),
    ("select * from '{lake}/orders/part-0.parquet'", "reads a file or URL"),
    ("select * from 'https://example.com/data.csv'", "reads a file or URL"),
    ("select * from read_json_auto('{tmp}/x.json')", "read_json"),
    ("select * from glob('/etc/*')", "glob"),
    ("select read_text('/etc/passwd') as t", "read_text"),
    ("select * from sqlite_scan('{tmp}/x.db', 't')", "sqlite_scan"),
    ("select * from query_table('mart.daily_sales')", "query_table"),
    ("select * from duckdb_settings()", "duckdb_settings"),
    ("select current_setting('threads') as t", "current_setting"),
    ("select getenv('HOME') as h", "getenv"),
    ("select * from mart.daily_sales; drop table mart.daily_sales", "2 statements"),
    ("select 1 as a; -- harmless\ndelete from mart.daily_sales", "2 statements"),
    ("select 1 as a /* ; */ ; drop table mart.daily_sales", "2 statements"),
    ("/* just a look */ drop table mart.daily_sales -- select", "DROP"),
    ("with x as (select 1 as a) delete from mart.daily_sales", "DELETE"),
    ("export database '{tmp}/dump'", "exports"),
    ("checkpoint", "CALL"),
    ("begin transaction", "transactions"),
    ("vacuum", "vacuums"),
    ("prepare p as delete from mart.daily_sales", "prepares"),
    ("create secret (type s3, key_id 'x', secret 'y')", "CREATE"),
    ("select * from other.main.t", "another database"),
    ("select * from information_schema.tables", "unknown table"),
    ("select * from main.__kiban_partitions", "unknown table"),
    ("summarize mart.daily_sales", "not a SELECT"),
    ("", "empty"),
    ("-- nothing but a comment", "no statement"),
]


def snapshot(*roots: Path) -> dict[str, tuple[bytes, int]]:
    """Every file's bytes and mtime under ``roots``, except the state store (it records the refusals)."""
    found = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file() and ".kiban" not in path.parts:
                found[str(path)] = (path.read_bytes(), path.stat().st_mtime_ns)
    return found


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    base = tmp_path_factory.mktemp("safety")
    make_project = project_maker(base)
    root = build_shop(make_project)
    outside = base / "outside"
    outside.mkdir()
    (outside / "in.csv").write_text("order_date,orders,revenue\n2020-01-01,1,1\n")
    project = load_project(root)
    store = Store(project.state_url)
    yield QueryConsole(project, store), root, outside
    store.close()


def test_the_corpus_is_big_enough():
    assert len(HOSTILE) >= 30


def test_every_hostile_query_is_refused_with_a_clear_message_and_nothing_changes(shop):
    console, root, outside = shop
    before = snapshot(root, outside)
    for template, reason in HOSTILE:
        sql = template.format(tmp=outside, lake=root / "lake")
        with pytest.raises(QueryRefused) as caught:
            console.run(sql, Actor("mallory", "red-team"))
        message = str(caught.value)
        assert message.startswith("query refused: "), sql
        assert reason.lower() in message.lower(), (sql, message)
        assert "Traceback" not in message
        assert caught.value.hint
    assert snapshot(root, outside) == before
    assert sorted(p.name for p in outside.iterdir()) == ["in.csv"]
    records = history(console.store, "shop", "mallory", limit=100)
    assert len(records) == len(HOSTILE)
    assert {r.status for r in records} == {"refused"}


def test_reading_queries_pass_the_same_checks(shop):
    console, _root, _outside = shop
    ok = [
        "select * from mart.daily_sales",
        "from mart.daily_sales select order_date",
        "select d.order_date, sum(o.amount) as amount from mart.daily_sales d join warehouse.orders o "
        "using (order_date) group by all",
        "with recursive r as (select 1 as n union all select n + 1 from r where n < 3) select * from r",
        "select * from range(3) t(i)",
        "select 'drop table x; -- not a statement' as text",
        "select * from mart.daily_sales where order_date = $day",
    ]
    for sql in ok:
        assert check_query(sql, console.graph.assets).sql == sql


def test_the_sandboxed_connection_refuses_writes_and_file_reads_even_without_the_checker(shop):
    console, root, outside = shop
    before = snapshot(root, outside)
    bypass = ["drop table mart.daily_sales", "delete from mart.daily_sales", "create table mart.x as select 1",
              f"copy mart.daily_sales to '{outside}/out.csv'", f"attach '{outside}/x.duckdb' as x",
              "install httpfs", "set enable_external_access = true", "select * from read_csv('/etc/passwd')",
              f"select * from read_csv('{outside}/in.csv')"]
    with open_readonly(console.project) as con:
        for sql in bypass:
            with pytest.raises(duckdb.Error):
                con.execute(sql)
        assert con.execute("select count(*) from mart.daily_sales").fetchone() == (30,)
        assert con.execute("select count(*) from lake.orders").fetchone() == (300,)  # the lake stays readable
    assert snapshot(root, outside) == before
    assert not os.path.exists(outside / "out.csv")
