"""Shared fixtures: small projects on disk, and the real services this machine runs."""

from __future__ import annotations

import os
import socket
import typing
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

# Console queries run at SCHED_IDLE by default: on a machine busy with other work (CI, parallel sessions) they
# would crawl; the tests of priority itself ask for "idle" explicitly.
os.environ.setdefault("KIBAN_CONSOLE_PRIORITY", "normal")
REQUIRE_SERVICES = os.environ.get("KIBAN_REQUIRE_SERVICES") == "1"

# Helpers shared by several test modules live in tests/helpers (never in another test module:
# tests/test_test_hygiene.py); their asserts get pytest's messages, and their fixtures are everyone's.
pytest.register_assert_rewrite("tests.helpers")
pytest_plugins = ("tests.helpers.console", "tests.helpers.browser", "tests.helpers.catalog", "tests.helpers.indexes",
                  "tests.helpers.team")


def write_files(root: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (relative path → text) under ``root``."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def write_parquet(path: Path, select_sql: str) -> Path:
    """Write the rows of ``select_sql`` to a Parquet file (atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    con = duckdb.connect()
    try:
        con.execute(f"copy ({select_sql}) to '{tmp}' (format parquet)")
    finally:
        con.close()
    os.replace(tmp, path)
    return path


@pytest.fixture
def project_dir(tmp_path: Path) -> Callable[..., Path]:
    """Build a project: ``project_dir({"models/warehouse/a.sql": "..."}, lake={"orders": "select ..."})``."""

    def build(files: dict[str, str], lake: dict[str, str] | None = None, config: str = "") -> Path:
        root = tmp_path / "proj"
        write_files(root, {"kiban.yml": f"name: test\ntimezone: Asia/Tokyo\n{config}", **files})
        for table, sql in (lake or {}).items():
            write_parquet(root / "lake" / table / "part-0.parquet", sql)
        return root

    return build


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def need_service(name: str, host: str, port: int) -> None:
    """Skip (or fail, under KIBAN_REQUIRE_SERVICES=1) when a server is not running here."""
    if _reachable(host, port):
        return
    unavailable(f"{name} is not running on {host}:{port}")


def unavailable(message: str) -> typing.NoReturn:
    """A part the test needs is missing here: skip, or fail under KIBAN_REQUIRE_SERVICES=1 (CI)."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{message}, and KIBAN_REQUIRE_SERVICES=1 requires it")
    pytest.skip(message)


@pytest.fixture
def postgres_url() -> str:
    """A fresh schema-less database URL on the local PostgreSQL (trust auth, database test)."""
    need_service("PostgreSQL", "127.0.0.1", 5432)
    import uuid

    import psycopg

    name = f"kiban_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')



@pytest.fixture
def mysql_url() -> str:
    """A fresh database URL on the local MariaDB (root, no password)."""
    need_service("MariaDB", "127.0.0.1", 3306)
    import uuid

    import pymysql

    name = f"kiban_test_{uuid.uuid4().hex[:10]}"

    def server(statement: str) -> None:
        conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute(statement)
        finally:
            conn.close()

    server(f"create database {name}")
    yield f"mysql://root@127.0.0.1:3306/{name}"
    server(f"drop database if exists {name}")

# --- projects from a dict, and the real `kiban` command (test_project_errors, test_graph, test_cli) ---


@pytest.fixture
def make_project(tmp_path: Path) -> Callable[..., Path]:
    """Write a project: ``make_project({"models/mart/x.sql": "select ..."}, lake={"orders": "select ..."})``.

    ``files`` maps paths relative to the project root to their text; without a ``kiban.yml`` entry a minimal
    one (``name: shop``) is written. ``lake`` maps a table name to the SELECT whose rows become
    ``lake/<table>/part-0.parquet`` (via DuckDB ``COPY``), or to None for an empty folder, which is enough
    for tests that only load the project and build its graph. ``root`` names the folder under ``tmp_path``.
    """

    def build(files: dict[str, str], lake: dict[str, str | None] | None = None,
              root: str = "project") -> Path:
        base = tmp_path / root
        write_files(base, {"kiban.yml": "name: shop\ntimezone: UTC\n", **files})
        for table, sql in (lake or {}).items():
            if sql is None:
                (base / "lake" / table).mkdir(parents=True, exist_ok=True)
            else:
                write_parquet(base / "lake" / table / "part-0.parquet", sql)
        return base.resolve()

    return build


@pytest.fixture(scope="session")
def cli() -> Callable[..., object]:
    """Run the real command line in a child process: ``cli("--project", root, "run")``.

    Returns the ``subprocess.CompletedProcess`` (text output). The terminal is wide and colourless so
    tables are not cut.
    """
    import subprocess
    import sys

    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb", "PYTHONIOENCODING": "utf-8"}

    def run(*args: object, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kiban", *map(str, args)], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=timeout, check=False)

    return run


class _Recorder(__import__("http.server").server.BaseHTTPRequestHandler):
    received: typing.ClassVar[list] = []

    def do_POST(self) -> None:
        import json

        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_hook():
    """A real HTTP server on loopback that records the JSON bodies POSTed to it: (port, received)."""
    import threading
    from http.server import ThreadingHTTPServer

    handler = type("Recorder", (_Recorder,), {"received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], handler.received
    server.shutdown()


@pytest.fixture
def dead_port() -> int:
    """A loopback port with nothing listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
