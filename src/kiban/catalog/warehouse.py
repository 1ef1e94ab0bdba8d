"""Reading the warehouse for the catalog: a read-only, sandboxed DuckDB connection, published columns.

The connection is opened read-only (writes are impossible whatever the SQL says), with file access
limited to the lake folder (the lake views read their Parquet files from there), extensions never
installed or loaded, and the configuration locked so no query can loosen any of that. It is opened
per use and closed at once: DuckDB lets no run write the file while a reader holds it.

A PostgreSQL warehouse is read the same way: an in-memory DuckDB attaches it READ_ONLY through the packaged
postgres extension (which reads in ``READ ONLY`` transactions), then locks itself down with no file access at
all. So the console speaks one SQL dialect, and its safety checks hold, whichever engine built the tables.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiban.errors import ConfigError, KibanError

if TYPE_CHECKING:
    from kiban.project import Project

SCHEMAS = ("lake", "warehouse", "mart")


class NothingPublished(KibanError):
    """The warehouse file does not exist yet."""


def warehouse_path(project: Project) -> Path:
    url = project.warehouse_url
    if not url.startswith("duckdb:///"):
        raise ConfigError(f"the catalog reads DuckDB warehouses; this project's is {url.split(':', 1)[0]}")
    return Path(url[len("duckdb:///"):])


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


_OPENING = threading.Lock()  # connections of one process to one file share a DuckDB instance: set up one at a time


@contextlib.contextmanager
def open_readonly(project: Project) -> Iterator[Any]:
    """A read-only connection to the warehouse that can read nothing outside it but the lake folder."""
    if project.warehouse_url.startswith(("postgresql://", "postgres://")):
        con = _attach_postgres(project.warehouse_url)
        try:
            yield con
        finally:
            con.close()
        return
    path = warehouse_path(project)
    if not path.exists():
        raise NothingPublished(f"nothing is published yet: {path} does not exist", "build it with `kiban run`")
    with _OPENING:
        con = _connect(path)
        try:
            _sandbox(con, project, path)
        except BaseException:
            con.close()
            raise
    try:
        yield con
    finally:
        con.close()


def _connect(path: Path) -> Any:
    import duckdb

    try:
        return duckdb.connect(str(path), read_only=True, config={
            "autoinstall_known_extensions": False, "autoload_known_extensions": False})
    except duckdb.Error as exc:
        text = str(exc).lower()
        if "lock" in text or "different configuration" in text:
            raise ConfigError(f"the warehouse {path.name} is being written (a run holds it)",
                              "try again when the run has finished") from None
        raise ConfigError(f"cannot open the warehouse {path}: {str(exc).splitlines()[0]}") from None


def _attach_postgres(url: str) -> Any:
    """An in-memory DuckDB with the PostgreSQL warehouse attached read-only as its default catalog, locked."""
    import duckdb

    from kiban.collect.connectors.database import extension_file

    extension = extension_file("postgres")
    if extension is None:
        raise ConfigError("reading a PostgreSQL warehouse needs DuckDB's postgres extension",
                          "pip install 'kiban[postgres]'")
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    try:
        con.execute(f"load {_sql_literal(str(extension))}")
        con.execute(f"attach {_sql_literal(url)} as warehouse_db (type postgres, read_only)")
    except duckdb.Error as exc:
        con.close()
        text = str(exc).splitlines()[0].replace(url, "<warehouse url>")
        raise ConfigError(f"cannot open the PostgreSQL warehouse: {text}") from None
    con.execute("use warehouse_db; set search_path = 'warehouse_db.mart,warehouse_db.warehouse,warehouse_db.lake'; "
                "set enable_external_access = false; set lock_configuration = true")
    return con


def _sandbox(con: Any, project: Project, path: Path) -> None:
    lake = str(project.lake_dir) + "/"
    # bare table names resolve like the graph does (the checker refused ambiguous ones); a session setting
    search_path = "set search_path = 'mart,warehouse,lake,main'"
    locked, external, allowed = con.execute(
        "select current_setting('lock_configuration'), current_setting('enable_external_access'), "
        "current_setting('allowed_directories')").fetchone()
    # lake views name their files relative to the warehouse's folder (engines.duckdb: a moved project still
    # works); DuckDB checks the relative name against allowed_directories before it searches file_search_path
    base = path.resolve().parent
    relative = [os.path.relpath(lake, base) + "/"] if Path(lake).is_relative_to(base) else []
    if not locked:  # one round trip
        allowed = ", ".join(_sql_literal(d) for d in [lake, *relative])
        con.execute(f"set allowed_directories = [{allowed}]; set global file_search_path = "
                    f"{_sql_literal(str(base))}; {search_path}; "
                    "set enable_external_access = false; set lock_configuration = true")
    elif external or lake not in (allowed or []):
        raise ConfigError(f"the warehouse {path.name} is open in this process without the console's sandbox",
                          "try again in a moment")
    else:
        # another connection of this process shares the database instance (DuckDB keeps one per file) and has
        # already locked it down as above: those global settings hold for this connection too
        con.execute(search_path)


def published_columns(project: Project) -> dict[str, list[tuple[str, str]]]:
    """The columns (name, type) of every published table and lake view, by asset key; {} before the first run."""
    try:
        with open_readonly(project) as con:
            rows = con.execute(
                "select table_schema, table_name, column_name, data_type from information_schema.columns "
                "where table_catalog = current_database() and table_schema in ('lake', 'warehouse', 'mart') "
                "and not starts_with(table_name, '__kiban') order by table_schema, table_name, ordinal_position"
            ).fetchall()
    except (NothingPublished, ConfigError):
        return {}
    found: dict[str, list[tuple[str, str]]] = {}
    for schema, table, column, kind in rows:
        found.setdefault(f"{schema}.{table}".lower(), []).append((column, kind))
    return found
