"""kiban pg as two more real BI clients meet it, on loopback:

- Excel's way in: ODBC, with Debian's psqlODBC driver (`make odbc`: unixodbc + odbc-postgresql) through pyodbc —
  SQLTables and SQLColumns as Excel's "From ODBC" navigator asks them, a parameterised query, masking, and the
  driver's "Use Declare/Fetch" mode (DECLARE … CURSOR WITH HOLD, FETCH n) that large Excel imports turn on;
- Superset's and Redash's way in: SQLAlchemy's postgresql+psycopg dialect — what it asks on connect (hstore's
  type, server version, standard_conforming_strings), the inspector's calls behind a dataset editor, and
  ``pandas.read_sql``.
"""

from __future__ import annotations

import socket
import threading
from datetime import date

import pytest

from kiban.pgwire.server import serve_pg
from kiban.project import load_project
from kiban.store import Store
from kiban.web.accounts import Accounts

ODBC_DRIVER = "PostgreSQL Unicode"


def _odbc_missing() -> str | None:
    try:
        import pyodbc
    except ImportError:
        return "pyodbc is not installed (the test extra has it)"
    if ODBC_DRIVER not in pyodbc.drivers():
        return "the psqlODBC driver is missing: `make odbc` (apt-get install unixodbc odbc-postgresql)"
    return None


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    from tests.helpers.shop import write_shop

    root = write_shop(tmp_path_factory.mktemp("pgclients"))
    accounts = Accounts(Store(load_project(root).state_url))
    accounts.add_user("ana", "ana-password", "analyst")
    accounts.add_user("boss", "boss-password", "admin")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = serve_pg(load_project(root), "127.0.0.1", port, timeout=20)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {"port": port}
    server.shutdown()
    server.server_close()


def odbc(endpoint, user="ana", password="ana-password", **options):
    import pyodbc

    settings = {"DRIVER": "{" + ODBC_DRIVER + "}", "SERVER": "127.0.0.1", "PORT": endpoint["port"],
                "DATABASE": "shop", "UID": user, "PWD": password, "SSLMODE": "disable", **options}
    return pyodbc.connect(";".join(f"{k}={v}" for k, v in settings.items()), timeout=10)


@pytest.mark.parametrize("options", [{}, {"UseDeclareFetch": 1, "Fetch": 2}, {"UseServerSidePrepare": 0}],
                         ids=["defaults", "declare-fetch", "client-side-prepare"])
def test_odbc_lists_tables_and_columns_and_reads_masked_rows_with_parameters(endpoint, options):
    missing = _odbc_missing()
    if missing:
        pytest.skip(missing)
    import pyodbc

    with odbc(endpoint, **options) as con:
        assert con.getinfo(pyodbc.SQL_DBMS_NAME) == "PostgreSQL"
        cur = con.cursor()
        # Excel's navigator: SQLTables, then SQLColumns of the chosen table
        tables = {(r.table_schem, r.table_name, r.table_type) for r in cur.tables(schema="mart")}
        assert tables == {("mart", "daily_sales", "TABLE"), ("mart", "old_report", "TABLE")}
        assert {(r.table_schem, r.table_name) for r in cur.tables()} >= {("warehouse", "customers"),
                                                                         ("lake", "orders")}
        columns = [(r.column_name, r.type_name, r.data_type) for r in cur.columns(table="daily_sales", schema="mart")]
        # ODBC's types: SQL_TYPE_DATE is reported as SQL_DATE (91), SQL_BIGINT -5, SQL_FLOAT 6
        assert columns == [("order_date", "date", 91), ("orders", "int8", -5), ("revenue", "float8", 6)]
        assert list(cur.primaryKeys("daily_sales", schema="mart")) == []
        assert list(cur.statistics("daily_sales", schema="mart")) == []
        assert len(cur.getTypeInfo().fetchall()) > 10
        # a parameterised query (Excel's "Microsoft Query" with [?] parameters)
        rows = cur.execute("select order_date, orders, revenue from mart.daily_sales where order_date >= ? "
                           "and revenue > ? order by 1", date(2026, 11, 10), 100).fetchall()
        assert len(rows) == 21
        assert rows[0][0] == date(2026, 11, 10)
        assert isinstance(rows[0][1], int)
        assert cur.execute("select count(*) from warehouse.orders where amount >= ?", 50).fetchone()[0] > 0
        # a masked column stays masked, in the value and in what a filter can see
        assert [r[0] for r in cur.execute("select email from warehouse.customers order by id").fetchall()[:2]] == \
            ["•••", "•••"]
        assert cur.execute("select count(*) from warehouse.customers where email like 'user%'").fetchone()[0] == 0
        # writes are refused, the connection carries on
        with pytest.raises(pyodbc.Error, match="only reads"):
            cur.execute("delete from mart.daily_sales")
        assert cur.execute("select 1").fetchone()[0] == 1
    with odbc(endpoint, "boss", "boss-password", **options) as con:
        assert con.cursor().execute("select email from warehouse.customers where id = ?", 1).fetchone()[0] == \
            "user1@example.com"


def test_sqlalchemy_connects_introspects_and_reads_like_superset_and_redash(endpoint):
    pd = pytest.importorskip("pandas")
    sa = pytest.importorskip("sqlalchemy")

    engine = sa.create_engine(f"postgresql+psycopg://ana:ana-password@127.0.0.1:{endpoint['port']}/shop")
    try:
        with engine.connect() as con:
            # on connect the dialect asked hstore's type, the version, standard_conforming_strings and more
            assert engine.dialect.server_version_info[0] == 15
            assert con.execute(sa.text("show standard_conforming_strings")).scalar() == "on"
            inspector = sa.inspect(con)
            assert inspector.default_schema_name == "mart"
            assert {"lake", "mart", "warehouse"} <= set(inspector.get_schema_names())
            assert sorted(inspector.get_table_names(schema="mart")) == ["daily_sales", "old_report"]
            # visible on the search path (mart, warehouse, lake): a name shadowed by an earlier schema is not
            assert sorted(inspector.get_table_names()) == ["customers", "daily_sales", "old_report", "orders"]
            assert inspector.get_view_names(schema="mart") == []
            columns = inspector.get_columns("daily_sales", schema="mart")
            assert [(c["name"], type(c["type"]).__name__) for c in columns] == \
                [("order_date", "DATE"), ("orders", "BIGINT"), ("revenue", "DOUBLE_PRECISION")]
            assert inspector.has_table("daily_sales", schema="mart")
            assert not inspector.has_table("no_such_table", schema="mart")
            assert inspector.get_pk_constraint("daily_sales", schema="mart")["constrained_columns"] == []
            assert inspector.get_foreign_keys("daily_sales", schema="mart") == []
            assert inspector.get_indexes("daily_sales", schema="mart") == []
            assert inspector.get_unique_constraints("daily_sales", schema="mart") == []
            assert inspector.get_table_comment("daily_sales", schema="mart") == {"text": None}
            # a chart's query, with a bound parameter
            frame = pd.read_sql(sa.text("select order_date, revenue from mart.daily_sales where revenue > :floor "
                                        "order by order_date"), con, params={"floor": 100})
            assert len(frame) == 30
            assert list(frame.columns) == ["order_date", "revenue"]
            masked = pd.read_sql(sa.text("select id, email, email_hash from warehouse.customers order by id"), con)
            assert set(masked["email"]) == {"•••"}
            assert len(masked) == 20
            # a table Superset's dataset editor reads through the ORM's table reflection
            table = sa.Table("customers", sa.MetaData(), schema="warehouse", autoload_with=con)
            rows = con.execute(sa.select(table.c.email).where(table.c.id < 3).order_by(table.c.id)).all()
            assert rows == [("•••",), ("•••",)]
    finally:
        engine.dispose()


def test_cursor_statements_are_routed_and_split_outside_quotes():
    from kiban.pgwire.catalog import route
    from kiban.pgwire.server import split

    declared = route('declare "SQL_CUR0x1" cursor with hold for select * from mart.daily_sales where x = \';\'')
    assert (declared.kind, declared.name, declared.value) == ("declare", "SQL_CUR0x1", "data")
    assert declared.sql == "select * from mart.daily_sales where x = ';'"
    assert route("declare c cursor for delete from mart.daily_sales").kind == "refused"  # a cursor only reads
    assert route("declare c no scroll cursor for select * from pg_class").value == "catalog"
    assert [(r.kind, r.name, r.value) for r in map(route, ('fetch 100 in "SQL_CUR0x1"', "FETCH ALL FROM c",
                                                           "fetch c", "close c", "CLOSE ALL"))] == \
        [("fetch", "SQL_CUR0x1", "100"), ("fetch", "c", "all"), ("fetch", "c", "1"), ("close", "c", ""),
         ("close", "", "")]
    # what psqlODBC sends in one simple query, which DuckDB's parser cannot split
    assert split('BEGIN;declare "a;b" cursor with hold for select \'x;y\' -- ;\nfrom t;fetch 2 in "a;b"') == \
        ["BEGIN", 'declare "a;b" cursor with hold for select \'x;y\' -- ;\nfrom t', 'fetch 2 in "a;b"']


def test_a_declared_cursor_is_fetched_in_steps_over_the_extended_protocol(endpoint):
    import psycopg

    with psycopg.connect(host="127.0.0.1", port=endpoint["port"], user="ana", password="ana-password",
                         dbname="shop", connect_timeout=10) as con:
        cur = con.cursor()
        cur.execute("declare c cursor with hold for select email, order_date from warehouse.orders "
                    "where amount >= %s order by order_id", [0])
        assert cur.statusmessage == "DECLARE CURSOR"
        cur.execute("fetch 2 from c")
        assert cur.fetchall() == [("•••", date(2026, 11, 2)), ("•••", date(2026, 11, 3))]
        assert cur.statusmessage == "FETCH 2"
        cur.execute("fetch all in c")
        assert len(cur.fetchall()) == 298
        assert cur.statusmessage == "FETCH 298"
        cur.execute("fetch 5 from c")
        assert cur.fetchall() == []
        assert cur.statusmessage == "FETCH 0"
        cur.execute("close c")
        with pytest.raises(psycopg.Error, match='cursor "c" does not exist'):
            cur.execute("fetch 1 from c")
