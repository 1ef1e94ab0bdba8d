"""MySQL / MariaDB sources against the real server on 127.0.0.1:3306 (each test in its own fresh database).

Both readers — DuckDB's mysql scanner (the fast path) and PyMySQL (the fallback) — must give the same rows
and types; one load sequence goes through the real loader.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from kiban.collect.connector import ReadContext, SourceError, read_batches
from kiban.collect.load import load_table
from kiban.collect.spec import SourceSpec
from kiban.project import load_project
from kiban.store import Store

READERS = ["duckdb", "driver"]


def sql(database: str | None, *statements: str) -> None:
    import pymysql

    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", database=database,
                           autocommit=True)
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()



def batches(url: str | None, table: dict[str, Any], source: dict[str, Any] | None = None, since: Any = None,
            batch_rows: int = 1000) -> list[pa.RecordBatch]:
    spec = SourceSpec.model_validate({"type": "mysql", "url": "env:X", **(source or {}), "tables": {"t": table}})
    ctx = ReadContext("shop", "t", spec, spec.tables["t"], Path("."), url=url, since=since, batch_rows=batch_rows)
    return list(read_batches(ctx))


def rows_of(found: list[pa.RecordBatch]) -> list[dict[str, Any]]:
    return pa.Table.from_batches(found).to_pylist() if found else []


@pytest.fixture
def customers(mysql_url: str) -> str:
    database = mysql_url.rsplit("/", 1)[1]
    sql(database, "create table customers (id int primary key, name varchar(40), balance decimal(12,2), "
        "vip tinyint(1), joined date, seen datetime(6), big bigint unsigned, score double, photo blob)",
        "insert into customers with recursive n(i) as (select 1 union all select i + 1 from n where i < 25) "
        "select i, case when i = 2 then null else concat('c, \"', i) end, i * 1.25, i % 2, "
        "date_add('2024-01-01', interval i day), timestamp('2024-01-01 00:00:00') + interval i hour, "
        "18446744073709551615 - i, i / 4, x'00ff' from n")
    return mysql_url


@pytest.mark.parametrize("reader", READERS)
def test_full_read_keeps_types_and_values(customers: str, reader: str) -> None:
    found = batches(customers, {"table": "customers"}, {"reader": reader}, batch_rows=10)
    assert [b.num_rows for b in found] == [10, 10, 5]
    schema = found[0].schema
    assert schema.field("balance").type == pa.decimal128(12, 2)
    assert schema.field("vip").type == pa.bool_()
    assert schema.field("joined").type == pa.date32()
    assert schema.field("seen").type == pa.timestamp("us")
    assert schema.field("big").type == pa.uint64()
    assert schema.field("photo").type == pa.binary()
    first = sorted(rows_of(found), key=lambda r: r["id"])[:2]
    assert first[0]["balance"] == Decimal("1.25")
    assert first[0]["vip"] is True
    assert first[1]["name"] is None
    assert first[0]["name"] == 'c, "1'
    assert first[0]["big"] == 18446744073709551614
    assert first[0]["seen"] == dt.datetime(2024, 1, 1, 1)
    assert first[0]["photo"] == b"\x00\xff"


@pytest.mark.parametrize("reader", READERS)
def test_incremental_reads_past_the_cursor_in_order(customers: str, reader: str) -> None:
    table = {"table": "customers", "select": ["id", "seen"], "mode": "incremental", "cursor": "seen"}
    since = dt.datetime(2024, 1, 1, 20, tzinfo=dt.UTC)  # id 20's
    found = batches(customers, table, {"reader": reader}, since=since, batch_rows=4)
    # always >=: the edge is read again (a change inside the last cursor value), the loader drops what it had
    assert [r["id"] for r in rows_of(found)] == [20, 21, 22, 23, 24, 25]
    assert found[0].schema.names == ["id", "seen"]
    found = batches(customers, {**table, "lookback": "1h"}, {"reader": reader}, since=since)
    assert [r["id"] for r in rows_of(found)] == [20, 21, 22, 23, 24, 25]
    query = {"query": "select id, balance from customers where vip = 0", "mode": "incremental", "cursor": "id"}
    found = batches(customers, query, {"reader": reader}, since=20)
    assert [(r["id"], r["balance"]) for r in rows_of(found)] == [(20, Decimal("25.00")), (22, Decimal("27.50")),
                                                                 (24, Decimal("30.00"))]
    injected = batches(customers, {"table": "customers", "mode": "incremental", "cursor": "name"},
                       {"reader": reader}, since="c, \"2' or '1'='1")
    named = [r for r in rows_of(injected) if r["name"] is not None]  # NULL cursors: read by every load
    assert all(r["name"] >= "c, \"2' or '1'='1" for r in named)
    assert 0 < len(named) < 20  # the value is bound, never pasted into the SQL


def test_bad_configurations_give_clear_messages(customers: str, dead_port: int) -> None:
    def error(url: str | None, table: dict[str, Any]) -> str:
        with pytest.raises(SourceError) as caught:
            batches(url, table)
        return str(caught.value)

    message = error(customers.replace("root@", "root:s3cretpw@").replace(":3306/", f":{dead_port}/"),
                    {"table": "customers"})
    assert "source shop, table t: cannot reach the server at mysql://root:***@127.0.0.1" in message
    assert "s3cretpw" not in message
    message = error(customers.replace("root@", "kiban_nobody:pw@"), {"table": "customers"})
    assert "refused the credentials" in message
    assert "pw@" not in message
    message = error(customers, {"table": "customer"})
    assert "table customer does not exist" in message
    assert "did you mean 'customers'" in message
    message = error(customers, {"table": "customers", "mode": "incremental", "cursor": "updated"})
    assert "cursor column updated (`cursor:`) is not a column of table customers" in message
    message = error(customers, {"query": "select nope from customers"})
    assert "reading the query failed" in message
    assert "nope" in message


def test_inserts_and_updates_between_loads_land_exactly_once(mysql_url: str, make_project: Any,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    database = mysql_url.rsplit("/", 1)[1]
    sql(database, "create table orders (id int primary key, amount decimal(8,2), updated_at datetime(6))",
        "insert into orders with recursive n(i) as (select 1 union all select i + 1 from n where i < 100) "
        "select i, i, timestamp('2024-01-01') + interval i minute from n")
    env = "KIBAN_MY_" + database.upper()
    monkeypatch.setenv(env, mysql_url)
    root = make_project({"sources/shop.yml": f"type: mysql\nurl: env:{env}\ntables:\n  orders:\n    mode: incremental\n"
                                             "    cursor: updated_at\n    lookback: 1h\n    primary_key: [id]\n"})

    def load() -> Any:
        p = load_project(root)
        store = Store(p.state_url)
        try:
            return load_table(p, "shop", "orders", store).record
        finally:
            store.close()

    assert load().rows_landed == 100
    sql(database, "insert into orders values (1000, 5, '2024-01-01 01:30:00')",
        "update orders set amount = 99, updated_at = '2024-01-01 02:00:00' where id = 7")
    second = load()
    assert (second.rows_landed, second.cursor) == (2, dt.datetime(2024, 1, 1, 2))
    assert load().rows_landed == 0
