"""kiban pg: BI tools and psql read the marts over the PostgreSQL protocol — console users, read-only, masked."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading

import psycopg
import pytest

from kiban.catalog.reading import flush_all
from kiban.catalog.usage import history
from kiban.pgwire.catalog import route
from kiban.pgwire.server import serve_pg, statements
from kiban.project import load_project
from kiban.store import Store
from kiban.web.accounts import Accounts
from tests.helpers.live import free_port
from tests.helpers.shop import build_shop, write_shop

PSQL = shutil.which("psql")


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    root = write_shop(tmp_path_factory.mktemp("pg"))
    store = Store(load_project(root).state_url)
    accounts = Accounts(store)
    accounts.add_user("ana", "ana-password", "analyst")
    accounts.add_user("boss", "boss-password", "admin")
    token = accounts.create_token("ana")
    port = free_port()
    server = serve_pg(load_project(root), "127.0.0.1", port, timeout=5)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {"port": port, "root": root, "store": store, "token": token}
    server.shutdown()
    server.server_close()


def connect(endpoint, user="ana", password="ana-password"):
    return psycopg.connect(host="127.0.0.1", port=endpoint["port"], user=user, password=password, dbname="shop",
                           connect_timeout=10)


def psql(endpoint, *commands, password="ana-password"):
    args = [PSQL, "-h", "127.0.0.1", "-p", str(endpoint["port"]), "-U", "ana", "-d", "shop", "-X", "-A", "-t"]
    for command in commands:
        args += ["-c", command]
    return subprocess.run(args, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "10"})


@pytest.mark.skipif(PSQL is None, reason="psql is not installed")
def test_psql_lists_describes_and_queries(endpoint):
    listing = psql(endpoint, r"\dt")
    assert listing.returncode == 0, listing.stderr
    assert "mart|daily_sales|table|kiban" in listing.stdout
    assert "warehouse|customers|table|kiban" in listing.stdout
    described = psql(endpoint, r"\d mart.daily_sales")
    assert described.returncode == 0, described.stderr
    assert "revenue|double precision" in described.stdout
    assert "order_date|date" in described.stdout
    found = psql(endpoint, "select count(*) from warehouse.orders", "select version()", "show timezone",
                 "set application_name = 'metabase'", "show application_name")
    assert found.returncode == 0, found.stderr
    assert found.stdout.split() == ["300", "PostgreSQL", "15.0", "(kiban,", "read-only;", "DuckDB", "underneath)",
                                    "Asia/Tokyo", "SET", "metabase"]


@pytest.mark.skipif(PSQL is None, reason="psql is not installed")
def test_psql_writes_and_wrong_passwords_are_refused(endpoint):
    refused = psql(endpoint, "delete from mart.daily_sales")
    assert refused.returncode != 0
    assert "only reads: DELETE is refused" in refused.stderr
    wrong = psql(endpoint, "select 1", password="not-the-password")
    assert wrong.returncode != 0
    assert 'password authentication failed for user "ana"' in wrong.stderr


def test_psycopg_queries_with_parameters_and_types(endpoint):
    with connect(endpoint) as con:
        rows = con.execute("select order_date, orders, revenue from mart.daily_sales where revenue > %s "
                           "order by 1 limit 2", [100]).fetchall()
        assert len(rows) == 2
        assert rows[0][0].isoformat() == "2026-11-01"
        assert isinstance(rows[0][1], int)
        assert isinstance(rows[0][2], float)
        # what BI tools ask on connect: information_schema, pg_catalog, settings
        columns = con.execute("select column_name, data_type from information_schema.columns "
                              "where table_schema = %s and table_name = %s order by ordinal_position",
                              ["mart", "daily_sales"]).fetchall()
        assert columns == [("order_date", "date"), ("orders", "bigint"), ("revenue", "double precision")]
        assert con.execute("select current_setting('timezone')").fetchone() == ("Asia/Tokyo",)
        names = con.execute("select nspname from pg_catalog.pg_namespace order by 1").fetchall()
        assert ("mart",) in names
        # a server-side prepared statement (psycopg prepares after a few runs): the same answer each time
        for _ in range(6):
            assert con.execute("select count(*) from lake.orders where amount >= %s", [50]).fetchone()[0] > 0


def test_pii_is_masked_unless_the_role_has_clearance_and_every_read_is_recorded(endpoint):
    sql = "select email from warehouse.customers order by id limit 2"
    with connect(endpoint) as con:
        assert con.execute(sql).fetchall() == [("•••",), ("•••",)]
        # a filter cannot probe the clear value: masking is where the query reads
        assert con.execute("select count(*) from warehouse.customers where email like 'user%'").fetchone() == (0,)
        # the catalog holds no values either
        assert con.execute("select count(*) from pg_catalog.pg_class").fetchone()[0] > 0
    with connect(endpoint, "boss", "boss-password") as con:
        assert con.execute(sql).fetchall() == [("user1@example.com",), ("user2@example.com",)]
    with connect(endpoint, "ana", endpoint["token"]) as con:  # an API token signs in too
        assert con.execute(sql).fetchall() == [("•••",), ("•••",)]
    flush_all()
    kinds = {(r.user, r.kind) for r in history(endpoint["store"], "shop", limit=200)}
    assert ("ana", "bi") in kinds
    assert ("boss", "bi") in kinds


def test_files_settings_and_other_databases_stay_out_of_reach(endpoint):
    with connect(endpoint) as con:
        for sql in ("select * from read_csv('/etc/passwd')", "select read_text('/etc/passwd')",
                    "copy mart.daily_sales to '/tmp/x.csv'", "attach '/tmp/x.duckdb' as x",
                    "create table mart.x as select 1", "select * from duckdb_settings()"):
            with pytest.raises(psycopg.Error):
                con.execute(sql)
            con.rollback()
        assert con.execute("select 1").fetchone() == (1,)  # the connection survives refusals


ENGINE_SETTINGS = ("memory_limit", "temp_directory", "allowed_directories", "secret_directory", "home_directory",
                   "extension_directory", "threads", "enable_external_access")


@pytest.mark.parametrize("relation", ["pg_settings", "pg_catalog.pg_settings", "PG_CATALOG.PG_SETTINGS",
                                      "pg_catalog . pg_settings"])
def test_pg_settings_show_the_connections_settings_never_the_engines(endpoint, relation):
    """BI tools read pg_settings; DuckDB's emulation of it listed the server's own engine settings (its folders,
    its memory, where secrets are kept): it shows what SHOW answers for this connection, and nothing else."""
    with connect(endpoint) as con:
        shown = dict(con.execute(f"select name, setting from {relation}").fetchall())
        assert shown["server_version"] == con.execute("show server_version").fetchone()[0]
        assert not set(ENGINE_SETTINGS) & {n.lower() for n in shown}
        assert str(endpoint["root"]) not in repr(shown)
        for name in ENGINE_SETTINGS:
            assert con.execute(f"select setting from {relation} where name = '{name}'").fetchall() == []


def test_wrong_password_and_unknown_user_fail_the_same_way(endpoint):
    for user, password in (("ana", "nope-nope"), ("nobody", "ana-password"), ("boss", "kbn_not_a_token")):
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            connect(endpoint, user, password)


def test_statements_are_routed_by_what_they_read():
    assert route("select * from pg_catalog.pg_class").kind == "catalog"
    assert route("select version()").kind == "catalog"
    assert route("/* hi */ select * from mart.daily_sales").kind == "data"
    assert route("select * from mart.x join pg_class on true").kind == "data"  # mixed: the data path refuses
    assert route("SET extra_float_digits = 3").kind == "set"
    assert route("BEGIN").kind == "transaction"
    assert route("insert into mart.x values (1)").kind == "refused"
    assert route("  ;  ").kind == "empty"


def test_the_endpoint_reads_the_snapshot_so_a_run_proceeds(endpoint, make_project):
    """A connection holding a long result open never blocks a run: it reads the published snapshot."""
    from kiban.run import RunOptions, run_project

    root = endpoint["root"]
    with connect(endpoint) as con:
        cur = con.cursor()
        cur.execute("select * from warehouse.orders")
        cur.fetchone()
        (root / "models/mart/old_report.sql").write_text("select order_id, amount from warehouse.orders")
        assert run_project(load_project(root), RunOptions()).ok
        assert len(cur.fetchall()) == 299
    with connect(endpoint) as con:  # the new version, on the next read
        assert [c.name for c in con.execute("select * from mart.old_report limit 1").description] == \
            ["order_id", "amount"]
    assert build_shop  # the shop's definition is shared with the console's tests


def _cells(wire: bytes) -> list[list[bytes | None]]:
    import struct

    rows, at = [], 0
    while at < len(wire):
        assert wire[at:at + 1] == b"D"
        (size,) = struct.unpack_from("!i", wire, at + 1)
        (width,) = struct.unpack_from("!h", wire, at + 5)
        pos, row = at + 7, []
        for _ in range(width):
            (length,) = struct.unpack_from("!i", wire, pos)
            pos += 4
            row.append(None if length < 0 else wire[pos:pos + length])
            pos += max(length, 0)
        assert pos == at + 1 + size
        rows.append(row)
        at = pos
    return rows


def test_rows_are_encoded_column_by_column_as_postgresql_spells_them():
    import struct
    from datetime import date, datetime, timedelta
    from decimal import Decimal

    import pyarrow as pa

    from kiban.pgwire import messages as m

    table = pa.table({
        "i": pa.array([1, None, -3], pa.int64()), "s": pa.array([2, 3, None], pa.int16()),
        "f": pa.array([0.5, float("nan"), float("-inf")]), "b": pa.array([True, None, False]),
        "t": pa.array(["東京", None, ""]), "d": pa.array([date(2000, 1, 2), None, date(1999, 12, 31)]),
        "ts": pa.array([datetime(2026, 1, 1, 10, 0, 0, 5), None, datetime(2026, 1, 1)]),
        "n": pa.array([Decimal("1.50"), None, Decimal("-2.00")], pa.decimal128(12, 2)),
    })
    text = _cells(b"".join(m.data_rows(table)))
    assert text == [[b"1", b"2", b"0.5", b"t", "東京".encode(), b"2000-01-02", b"2026-01-01 10:00:00.000005", b"1.50"],
                    [None, b"3", b"NaN", None, None, None, None, None],
                    [b"-3", None, b"-Infinity", b"f", b"", b"1999-12-31", b"2026-01-01 00:00:00", b"-2.00"]]
    binary = _cells(b"".join(m.data_rows(table, [1])))
    assert binary[0][:6] == [struct.pack("!q", 1), struct.pack("!h", 2), struct.pack("!d", 0.5), b"\1",
                             "東京".encode(), struct.pack("!i", 1)]
    since = datetime(2026, 1, 1, 10, 0, 0, 5) - datetime(2000, 1, 1)  # microseconds since PostgreSQL's epoch
    assert binary[0][6] == struct.pack("!q", since // timedelta(microseconds=1))
    assert binary[1] == [None, struct.pack("!h", 3), struct.pack("!d", float("nan")), None, None, None, None, None]
    assert binary[2][5] == struct.pack("!i", -1)
    assert binary[2][7] is not None
    # blocks of ROWS_PER_WRITE rows, and no rows at all
    many = pa.table({"x": pa.array(range(m.ROWS_PER_WRITE + 5))})
    chunks = list(m.data_rows(many))
    assert len(chunks) == 2
    assert len(_cells(chunks[1])) == 5
    assert b"".join(m.data_rows(many.slice(0, 0))) == b""
    assert _cells(b"".join(m.data_rows(pa.table({"x": [1, 2]}).select([])))) == [[], []]


@pytest.mark.parametrize(("text", "expected"), [
    ("BEGIN;declare c cursor for select 1;fetch 100 in c",
     ["BEGIN", "declare c cursor for select 1", "fetch 100 in c"]),
    ("select 'a;b', \"x;y\" from t; select 2", ["select 'a;b', \"x;y\" from t", "select 2"]),
    ("select $$a;b$$; select $q$;$q$", ["select $$a;b$$", "select $q$;$q$"]),
    ("select 1 -- a;b\n; select 2 /* ; */", ["select 1 -- a;b", "select 2 /* ; */"]),
    ("select 'it''s;'; ;", ["select 'it''s;'"]),
    ("select 'unterminated;", ["select 'unterminated;"]),
    (" ; ", []),
])
def test_a_simple_query_is_split_only_at_semicolons_outside_strings_identifiers_and_comments(text, expected):
    assert statements(text) == expected
