"""PostgreSQL sources against the real server on 127.0.0.1:5432 (each test in its own fresh database).

Both readers — DuckDB's postgres scanner (the fast path) and psycopg COPY (the fallback) — must give the same
rows and types; loads go through the real loader (and once through a killed child process).
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pytest

from kiban.collect.connector import ReadContext, SourceError, read_batches
from kiban.collect.load import load_table
from kiban.collect.manifest import Manifests
from kiban.collect.spec import SourceSpec
from kiban.project import load_project
from kiban.store import Store

READERS = ["duckdb", "driver"]
UTC = dt.UTC


def sql(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def batches(url: str | None, table: dict[str, Any], source: dict[str, Any] | None = None, since: Any = None,
            batch_rows: int = 1000) -> tuple[list[pa.RecordBatch], ReadContext]:
    spec = SourceSpec.model_validate({"type": "postgres", "url": "env:X", **(source or {}), "tables": {"t": table}})
    ctx = ReadContext("pos", "t", spec, spec.tables["t"], Path("."), url=url, since=since, batch_rows=batch_rows)
    return list(read_batches(ctx)), ctx


def rows_of(found: list[pa.RecordBatch]) -> list[dict[str, Any]]:
    return pa.Table.from_batches(found).to_pylist() if found else []


@pytest.fixture
def orders(postgres_url: str) -> str:
    sql(postgres_url, "create schema sales",
        "create table sales.orders (id bigint primary key, amount numeric(12,2), paid_at timestamptz, "
        "day date, note text, vip boolean, extra jsonb, blob bytea, tags int[], ratio real)",
        "insert into sales.orders select i, i * 1.25, timestamptz '2024-01-01 09:00+09' + i * interval '1 hour', "
        "date '2024-01-01' + i, case when i = 2 then null else 'n, \"q\" ' || i end, i % 2 = 0, "
        "jsonb_build_object('i', i), '\\x00ff'::bytea, array[i, i + 1], i / 4.0 from generate_series(1, 25) i")
    return postgres_url


@pytest.mark.parametrize("reader", READERS)
def test_full_read_keeps_types_and_values(orders: str, reader: str) -> None:
    found, ctx = batches(orders, {"table": "sales.orders"}, {"reader": reader}, batch_rows=10)
    assert [b.num_rows for b in found] == [10, 10, 5]  # bounded by batch_rows
    schema = found[0].schema
    assert schema.field("amount").type == pa.decimal128(12, 2)
    assert schema.field("paid_at").type == pa.timestamp("us", "UTC")
    assert schema.field("day").type == pa.date32()
    assert schema.field("vip").type == pa.bool_()
    assert schema.field("blob").type == pa.binary()
    first = sorted(rows_of(found), key=lambda r: r["id"])[:2]
    assert first[0]["amount"] == Decimal("1.25")
    assert first[0]["paid_at"] == dt.datetime(2024, 1, 1, 1, 0, tzinfo=UTC)  # 10:00+09 is 01:00 UTC
    assert first[0]["note"] == 'n, "q" 1'
    assert first[1]["note"] is None
    assert first[0]["blob"] == b"\x00\xff"
    assert first[0]["day"] == dt.date(2024, 1, 2)
    assert first[0]["extra"].replace(" ", "") == '{"i":1}'
    assert ctx.notes == []


@pytest.mark.parametrize("reader", READERS)
def test_incremental_reads_past_the_cursor_in_order_and_lookback_includes_the_edge(orders: str, reader: str) -> None:
    table = {"table": "sales.orders", "select": ["id", "paid_at"], "mode": "incremental", "cursor": "paid_at"}
    since = dt.datetime(2024, 1, 1, 20, 0, tzinfo=UTC)  # id 20's
    found, _ = batches(orders, table, {"reader": reader}, since=since, batch_rows=4)
    ids = [r["id"] for r in rows_of(found)]
    # always >=: the edge is read again (a change inside the last cursor value), the loader drops what it had
    assert ids == [20, 21, 22, 23, 24, 25]
    assert found[0].schema.names == ["id", "paid_at"]
    found, _ = batches(orders, {**table, "lookback": "1h"}, {"reader": reader}, since=since)
    assert [r["id"] for r in rows_of(found)] == [20, 21, 22, 23, 24, 25]
    query = {"query": "select id, amount from sales.orders where vip", "mode": "incremental", "cursor": "id"}
    found, _ = batches(orders, query, {"reader": reader}, since=20)
    assert [(r["id"], r["amount"]) for r in rows_of(found)] == [(20, Decimal("25.00")), (22, Decimal("27.50")),
                                                                (24, Decimal("30.00"))]


def test_the_cursor_value_is_bound_not_pasted(orders: str) -> None:
    table = {"table": "sales.orders", "mode": "incremental", "cursor": "note"}
    for reader in READERS:
        found, _ = batches(orders, table, {"reader": reader}, since="n' or '1'='1")
        # rows without a cursor value are read by every incremental load (no comparison places a NULL)
        assert all(r["note"] is None or r["note"] >= "n' or '1'='1" for r in rows_of(found))
        assert 0 < len([r for r in rows_of(found) if r["note"] is not None]) < 25


def test_bad_configurations_give_clear_messages(orders: str, dead_port: int) -> None:
    def error(url: str | None, table: dict[str, Any], **source: Any) -> str:
        with pytest.raises(SourceError) as caught:
            batches(url, table, source)
        return str(caught.value)

    secret = orders.replace("postgres@", "postgres:s3cretpw@")
    message = error(secret.replace(":5432/", f":{dead_port}/"), {"table": "sales.orders"})
    assert "source pos, table t: cannot reach the server at postgresql://postgres:***@127.0.0.1" in message
    assert "s3cretpw" not in message
    message = error(orders.replace("postgres@", "nobody_here:pw@"), {"table": "sales.orders"})
    assert "refused the credentials" in message
    assert "pw@" not in message
    message = error(orders, {"table": "sales.order"})
    assert "table sales.order does not exist" in message
    assert "did you mean 'sales.orders'" in message
    message = error(orders, {"table": "sales.orders", "mode": "incremental", "cursor": "paid"})
    assert "cursor column paid (`cursor:`) is not a column of table sales.orders" in message
    assert "did you mean 'paid_at'" in message
    message = error(orders, {"query": "select id, nope from sales.orders"})
    assert "reading the query failed" in message
    assert "nope" in message
    assert "`query:` must be one SELECT" in error(orders, {"query": "delete from sales.orders"})
    assert "no `url:`" in error(None, {"table": "sales.orders"})


# -- through the loader ---------------------------------------------------------------------------------------------

SOURCE = """type: postgres
url: env:{env}
batch_rows: {batch_rows}
tables:
  orders:
    table: {table}
    mode: incremental
    cursor: updated_at
    lookback: 1h
    primary_key: [id]
"""


def project(make_project: Any, url: str, monkeypatch: pytest.MonkeyPatch, table: str = "orders",
            batch_rows: int = 1000) -> Path:
    env = "KIBAN_PG_" + url.rsplit("/", 1)[1].upper()
    monkeypatch.setenv(env, url)
    return make_project({"sources/pos.yml": SOURCE.format(env=env, table=table, batch_rows=batch_rows)})


def load(root: Path) -> Any:
    p = load_project(root)
    store = Store(p.state_url)
    try:
        return load_table(p, "pos", "orders", store)
    finally:
        store.close()


def lake(root: Path, query: str) -> list[tuple[Any, ...]]:
    from kiban.collect.collector import collected_tables
    from kiban.engines.duckdb import DuckDBEngine

    p = load_project(root)
    store = Store(p.state_url)
    engine = DuckDBEngine(str(root / "kiban.duckdb"))
    try:
        engine.prepare([a for a in p.assets.values() if a.layer == "lake"], collected_tables(p, store))
        return engine.con.execute(query).fetchall()
    finally:
        engine.close()
        store.close()


def test_inserts_and_updates_between_loads_land_exactly_once(postgres_url: str, make_project: Any,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    sql(postgres_url, "create table orders (id int primary key, amount numeric(8,2), updated_at timestamptz)",
        "insert into orders select i, i, timestamptz '2024-01-01 00:00Z' + i * interval '1 minute' "
        "from generate_series(1, 100) i")
    root = project(make_project, postgres_url, monkeypatch)
    first = load(root).record
    assert (first.rows_read, first.rows_landed) == (100, 100)
    assert first.cursor == dt.datetime(2024, 1, 1, 1, 40, tzinfo=UTC)
    # a late commit inside the look-back window, an update, and new rows
    sql(postgres_url, "insert into orders values (1000, 5, timestamptz '2024-01-01 01:30Z')",
        "update orders set amount = 99, updated_at = timestamptz '2024-01-01 02:00Z' where id = 7",
        "insert into orders select i, i, timestamptz '2024-01-01 03:00Z' from generate_series(101, 110) i")
    second = load(root).record
    assert second.rows_landed == 12  # 1000, 7's new version, 101..110; the look-back's re-reads dropped
    assert second.rows_read > second.rows_landed
    assert load(root).record.rows_landed == 0
    assert lake(root, "select count(*), count(distinct id), sum(amount) from pos_orders_latest".replace(
        "pos_orders_latest", "lake.pos_orders_latest")) == [(111, 111, Decimal(sum(range(1, 111)) - 7 + 99 + 5))]
    assert lake(root, "select count(*) from lake.pos_orders") == [(112,)]


KILL = """
from kiban.project import load_project
from kiban.store import Store
from kiban.collect.load import load_table
p = load_project({root!r})
load_table(p, "pos", "orders", Store(p.state_url))
"""


def test_a_killed_load_leaves_nothing_visible_and_the_next_load_collects_the_rest(
        postgres_url: str, make_project: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    sql(postgres_url, "create table orders (id int primary key, amount numeric(8,2), updated_at timestamptz, "
        "note text)",
        "insert into orders select i, i, timestamptz '2024-01-01 00:00Z' + i * interval '1 second', repeat('x', 1000) "
        "from generate_series(1, 50) i",
        # every row of the view takes 5 ms or more: the load (15 s) is slow enough to be killed mid-read even when
        # a loaded machine is slow to notice it started (at 0.5 ms a row it could finish first)
        "create view slow_orders as select o.* from orders o where pg_sleep(0.005)::text = ''")
    root = project(make_project, postgres_url, monkeypatch, table="slow_orders", batch_rows=50)
    assert load(root).record.rows_landed == 50
    sql(postgres_url, "insert into orders select i, i, timestamptz '2024-01-02 00:00Z' + i * interval '1 second', "
        "repeat('x', 1000) from generate_series(51, 3050) i")
    child = subprocess.Popen([sys.executable, "-c", KILL.format(root=str(root))], env={**os.environ})
    deadline = time.monotonic() + 60
    reading: list[Any] = []
    while time.monotonic() < deadline and not reading and child.poll() is None:
        time.sleep(0.1)
        with psycopg.connect(postgres_url) as conn:  # the child's COPY out of the slow view is running
            reading = conn.execute("select 1 from pg_stat_activity where query ilike 'copy%slow_orders%' and "
                                   "state = 'active' and datname = current_database()").fetchall()
    time.sleep(0.5)
    assert reading, "the load finished before it could be killed"
    assert child.poll() is None, "the load finished before it could be killed"
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert lake(root, "select count(*) from lake.pos_orders") == [(50,)]
    p = load_project(root)
    store = Store(p.state_url)
    try:
        state = Manifests(store).state(p.name, "lake.pos_orders")
    finally:
        store.close()
    assert state is not None
    assert state.cursor == dt.datetime(2024, 1, 1, 0, 0, 50, tzinfo=UTC)  # not advanced
    # the same source table, now read from the table itself (the killed reader may still hold the view)
    (root / "sources/pos.yml").write_text((root / "sources/pos.yml").read_text().replace("slow_orders", "orders"))
    again = load(root).record
    assert again.rows_landed == 3000
    assert again.cursor == dt.datetime(2024, 1, 2, 0, 50, 50, tzinfo=UTC)
    assert lake(root, "select count(*), count(distinct id) from lake.pos_orders") == [(3050, 3050)]


def test_without_the_scanner_package_the_driver_reads_and_says_so(orders: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from kiban.collect.connectors import database

    monkeypatch.setattr(database, "extension_file", lambda name: None)  # as if the package were not installed
    found, ctx = batches(orders, {"table": "sales.orders"})
    assert len(rows_of(found)) == 25
    assert len(ctx.notes) == 1
    assert "reading with psycopg COPY (CSV) (slower" in ctx.notes[0]
    with pytest.raises(SourceError, match=r"scanner for DuckDB .* is not installed"):
        batches(orders, {"table": "sales.orders"}, {"reader": "duckdb"})


def test_a_missing_environment_variable_is_named(make_project: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KIBAN_PG_NOT_SET", raising=False)
    root = make_project({"sources/pos.yml": SOURCE.format(env="KIBAN_PG_NOT_SET", table="orders", batch_rows=10)})
    with pytest.raises(SourceError, match="source pos, table orders: environment variable KIBAN_PG_NOT_SET is not set"):
        load(root)


@pytest.mark.parametrize("template", ["postgresql://postgres:s3cretpw@127.0.0.1:{port}/x",
                                      "host=127.0.0.1 port={port} user=postgres password=s3cretpw dbname=x"])
def test_the_scanner_path_never_shows_the_password(dead_port: int, template: str) -> None:
    from kiban.collect.connectors import postgres
    from kiban.collect.connectors.database import Options

    spec = SourceSpec.model_validate({"type": "postgres", "url": "env:X", "tables": {"t": {}}})
    ctx = ReadContext("pos", "t", spec, spec.tables["t"], Path("."), url=template.format(port=dead_port))
    with pytest.raises(SourceError) as caught:
        list(postgres.read(ctx, Options()))  # straight to DuckDB's ATTACH, whose message quotes the URL
    assert "cannot reach the server" in str(caught.value)
    assert "s3cretpw" not in str(caught.value)
