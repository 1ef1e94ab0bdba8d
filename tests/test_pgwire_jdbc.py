"""kiban pg as BI tools meet it: the real PostgreSQL JDBC driver (Debian's libpostgresql-jdbc-java, `make jdbc`)
running what Metabase/DBeaver run on connect — DatabaseMetaData's schemas, tables, columns, keys and types,
prepared statements with typed parameters past the driver's server-prepare threshold (binary dates, numerics) —
and TLS: SSLRequest answered with a configured certificate, checked with psql and psycopg at sslmode=require."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
from datetime import date
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from kiban.pgwire.server import serve_pg, tls_context
from kiban.project import load_project
from kiban.store import Store
from kiban.web.accounts import Accounts
from tests.helpers.live import free_port
from tests.helpers.shop import write_shop

JAR = next((p for p in (Path("/usr/share/java/postgresql.jar"),) if p.exists()), None)
JAVA, JAVAC, PSQL = shutil.which("java"), shutil.which("javac"), shutil.which("psql")
PROBE = Path(__file__).parent / "jdbc" / "BiProbe.java"


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    root = write_shop(tmp_path_factory.mktemp("pgjdbc"))
    Accounts(Store(load_project(root).state_url)).add_user("ana", "ana-password", "analyst")
    cert, key = root / "cert.pem", root / "key.pem"
    made = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                           "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)], capture_output=True, timeout=60)
    assert made.returncode == 0, made.stderr
    servers, ports = [], {}
    for name, require in (("open", False), ("strict", True)):
        ports[name] = free_port()
        server = serve_pg(load_project(root), "127.0.0.1", ports[name], timeout=20,
                          tls=tls_context(str(cert), str(key)), require_tls=require)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    yield {"root": root, "ports": ports, "cert": cert}
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    if not (JAR and JAVA and JAVAC):
        pytest.skip("JDBC needs java, javac and libpostgresql-jdbc-java (`make jdbc`)")
    build = tmp_path_factory.mktemp("probe")
    compiled = subprocess.run([JAVAC, "-cp", str(JAR), "-d", str(build), str(PROBE)], capture_output=True,
                              text=True, timeout=120)
    assert compiled.returncode == 0, compiled.stderr
    return build


# the driver's defaults (server-prepared after 5 runs, binary results), and every statement server-prepared with
# binary transfer from the first run, over TLS
@pytest.mark.parametrize("options", ["", "?prepareThreshold=-1&sslmode=require"])
def test_the_jdbc_driver_reads_the_catalog_and_masked_data_with_prepared_statements(shop, probe, options):
    build = probe
    url = f"jdbc:postgresql://127.0.0.1:{shop['ports']['open']}/shop{options}"
    ran = subprocess.run([JAVA, "-cp", f"{JAR}{os.pathsep}{build}", "BiProbe", url, "ana", "ana-password"],
                         capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    found = dict(line.split(" ", 1) for line in ran.stdout.splitlines())
    assert found["product"] == "PostgreSQL 15"
    assert found["schemas"] == "lake,mart,pg_catalog,warehouse"  # no DuckDB internals, no kiban_pg
    assert found["tables"] == "mart.daily_sales:TABLE,mart.old_report:TABLE"
    # PostgreSQL's types and java.sql.Types: DATE 91, BIGINT -5, DOUBLE 8
    assert found["columns"] == "order_date:date:91,orders:int8:-5,revenue:float8:8"
    assert found["primarykeys"] == "0"
    assert found["typeinfo"] == "true"
    assert found["current_schema"] == "mart"
    rows = "2026-11-10/true/10;2026-11-11/true/10;2026-11-12/true/10"
    assert found["prepared0"] == f"date,float8,int8 {rows}"
    assert found["prepared6"] == f"date,float8,int8 {rows}"  # server-prepared, binary results
    assert found["masked"] == "•••"
    assert found["count"] == "true"
    assert found["write"] == "refused 25006"
    assert found["after"] == "1"


def test_bi_catalog_questions_get_postgresql_answers(shop):
    with psycopg.connect(host="127.0.0.1", port=shop["ports"]["open"], user="ana", password="ana-password",
                         dbname="shop", autocommit=True, connect_timeout=10) as conn:
        columns = conn.execute("select column_name, data_type from information_schema.columns "
                               "where table_schema = 'mart' and table_name = 'daily_sales' "
                               "order by ordinal_position").fetchall()
        assert columns == [("order_date", "date"), ("orders", "bigint"), ("revenue", "double precision")]
        assert conn.execute("select current_database(), current_user").fetchone() == ("shop", "ana")
        assert conn.execute("show transaction isolation level").fetchone() == ("read committed",)
        assert conn.execute("select datname from pg_database").fetchall() == [("shop",)]
        assert conn.execute("select typname from pg_type where oid = 25").fetchall() == [("text",)]
        # binary parameters (psycopg sends them when asked): numeric, date, int, text
        cur = conn.cursor(binary=True)
        cur.execute("select count(*) from mart.daily_sales where revenue > %b and order_date >= %b "
                    "and orders >= %b and %b <> 'none'", [Decimal("0.5"), date(2026, 11, 10), 1, "x"])
        assert cur.fetchone()[0] == 21
        cur.execute("select order_date, sum(revenue)::decimal(18, 3) from mart.daily_sales "
                    "where order_date = %s group by 1", [date(2026, 11, 10)])
        day, total = cur.fetchone()
        assert day == date(2026, 11, 10)
        assert isinstance(total, Decimal)
        assert total > 0


def test_tls_with_psycopg_and_psql_and_refusal_without_it(shop):
    strict = shop["ports"]["strict"]
    with psycopg.connect(host="127.0.0.1", port=strict, user="ana", password="ana-password", dbname="shop",
                         sslmode="require", connect_timeout=10) as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.execute("select count(*) from warehouse.orders").fetchone() == (300,)
    with psycopg.connect(host="127.0.0.1", port=strict, user="ana", password="ana-password", dbname="shop",
                         sslmode="verify-ca", sslrootcert=str(shop["cert"]), connect_timeout=10) as conn:
        assert conn.pgconn.ssl_in_use
    with pytest.raises(psycopg.OperationalError, match="TLS connections only"):
        psycopg.connect(host="127.0.0.1", port=strict, user="ana", password="ana-password", dbname="shop",
                        sslmode="disable", connect_timeout=10)
    # the open endpoint takes both; a client that stops half-way through the handshake holds nothing
    with socket.create_connection(("127.0.0.1", shop["ports"]["open"]), timeout=5) as raw:
        raw.sendall(b"\x00\x00\x00\x08\x04\xd2\x16\x2f")  # SSLRequest
        assert raw.recv(1) == b"S"
        raw.sendall(b"\x16\x03\x01\x00\x05garbage")
        raw.settimeout(15)
        raw.recv(100)  # a TLS alert, or the end: the handshake failed and the server let go
    with psycopg.connect(host="127.0.0.1", port=shop["ports"]["open"], user="ana", password="ana-password",
                         dbname="shop", sslmode="disable", connect_timeout=10) as conn:
        assert not conn.pgconn.ssl_in_use
    if PSQL is None:
        pytest.skip("psql is not installed")
    ran = subprocess.run([PSQL, f"host=127.0.0.1 port={strict} user=ana dbname=shop sslmode=require", "-X", "-A",
                          "-t", "-c", r"\conninfo", "-c", "select count(*) from mart.daily_sales"],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PGPASSWORD": "ana-password", "PGCONNECT_TIMEOUT": "10"})
    assert ran.returncode == 0, ran.stderr
    assert "SSL connection" in ran.stdout
    assert ran.stdout.split()[-1] == "30"
