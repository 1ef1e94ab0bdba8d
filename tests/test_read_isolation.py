"""Notebook reads and the BI endpoint run each query in a worker process the OS bounds, like the console: a
memory-hungry query fails alone ("the query used too much memory") while the endpoint keeps answering its
other connections, and neither the kernel nor the server grows with it."""

from __future__ import annotations

import socket
import sys
import threading
import time

import psycopg
import pytest

from kiban.catalog.reading import Reader, shared_reader
from kiban.catalog.sandbox import QueryStopped
from kiban.catalog.usage import Actor
from kiban.pgwire.server import serve_pg
from kiban.store import Store
from kiban.web.accounts import Accounts
from tests.helpers.sandbox import HOGS, people_project, rss_mb

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the OS limits are Linux's")
SMALL = ("256MB", 768 * 2**20)  # DuckDB's limit and the worker's address space, as the console's test has them
# a result that only becomes big once it is Arrow (outside DuckDB's accounting), and one DuckDB itself tracks
WIRE_HOGS = ["select repeat('x', 100000000) as big from range(12)", HOGS[0]]


def admitted(conn: psycopg.Connection, sql: str) -> psycopg.Cursor:
    """Run ``sql``, waiting while the console's slots are taken (one slot on a 2-core machine)."""
    deadline = time.monotonic() + 120  # generous: a hog's slot is given back slowly on a loaded machine
    while time.monotonic() < deadline:
        try:
            return conn.execute(sql)
        except psycopg.errors.TooManyConnections:
            time.sleep(0.05)
    raise AssertionError("never admitted")


@pytest.fixture
def small(make_project):
    return people_project(make_project)


def test_a_notebook_read_that_blows_up_fails_alone(small):
    assert shared_reader(small.root, "notebook").isolated  # kiban.read and kiban.query read this way
    reader = Reader(small, Store(small.state_url), memory_limit=SMALL[0], address_space=SMALL[1])
    ann = Actor("ann")
    assert reader.arrow("select count(*) as n from lake.people", ann).table.column("n").to_pylist() == [2000]
    before = rss_mb()
    for sql in WIRE_HOGS:
        with pytest.raises(QueryStopped, match="too much memory"):
            reader.arrow(sql, ann, timeout=60)
    assert rss_mb() - before < 150, "the notebook's own process must not grow with the read"
    masked = reader.arrow("select email from lake.people where id = ?", ann, [1]).table
    assert masked.column("email").to_pylist() == ["•••"]  # masked in the worker, parameters passed
    reader.flush()


def test_a_bi_query_that_blows_up_fails_alone_while_the_endpoint_keeps_serving(small):
    Accounts(Store(small.state_url)).add_user("ana", "ana-password", "analyst")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = serve_pg(small, "127.0.0.1", port, timeout=60, memory=SMALL)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def connect() -> psycopg.Connection:
        return psycopg.connect(host="127.0.0.1", port=port, user="ana", password="ana-password", dbname="shop",
                               autocommit=True, connect_timeout=10)

    answered: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def meanwhile() -> None:  # another user of the endpoint, reading all along
        try:
            with connect() as other:
                while not stop.is_set():
                    try:
                        answered.append(other.execute("select count(*) from mart.groups").fetchone()[0])
                    except psycopg.errors.TooManyConnections:  # 53300: the slots are taken (2 cores: one slot)
                        answered.append(-1)
                    time.sleep(0.05)
        except BaseException as exc:
            errors.append(exc)

    try:
        with connect() as hog:
            hog.execute("select 1")
            before = rss_mb()
            thread = threading.Thread(target=meanwhile)
            thread.start()
            for sql in WIRE_HOGS:
                with pytest.raises(psycopg.errors.QueryCanceled, match="too much memory"):  # 57014
                    admitted(hog, sql)
            # the hog's own connection is still usable, and so is the endpoint
            assert admitted(hog, "select count(*) from lake.people").fetchone() == (2000,)
            time.sleep(0.5)
            stop.set()
            thread.join(60)
            assert rss_mb() - before < 150, "the server must not grow with its queries"
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
    assert not errors, errors  # every request of the other connection was answered, none failed
    assert 7 in answered
    assert set(answered) <= {7, -1}
