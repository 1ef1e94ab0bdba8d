"""Reading the warehouse for the catalog: a read-only, sandboxed DuckDB connection, published columns.

The connection is opened read-only (writes are impossible whatever the SQL says), with file access
limited to the lake folder (the lake views read their Parquet files from there), extensions never
installed or loaded, and the configuration locked so no query can loosen any of that. It is opened
per use and closed at once: DuckDB lets no run write the file while a reader holds it.
"""

from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def open_readonly(project: Project) -> Iterator[Any]:
    """A read-only connection to the warehouse that can read nothing outside it but the lake folder."""
    import duckdb

    path = warehouse_path(project)
    if not path.exists():
        raise NothingPublished(f"nothing is published yet: {path} does not exist", "build it with `kiban run`")
    try:
        con = duckdb.connect(str(path), read_only=True, config={
            "autoinstall_known_extensions": False, "autoload_known_extensions": False})
    except duckdb.Error as exc:
        text = str(exc).lower()
        if "lock" in text or "different configuration" in text:
            raise ConfigError(f"the warehouse {path.name} is being written (a run holds it)",
                              "try again when the run has finished") from None
        raise ConfigError(f"cannot open the warehouse {path}: {str(exc).splitlines()[0]}") from None
    try:
        lake = str(project.lake_dir) + "/"
        # one round trip; bare table names resolve like the graph does (the checker refused ambiguous ones)
        con.execute(f"set allowed_directories = [{_sql_literal(lake)}]; "
                    "set search_path = 'mart,warehouse,lake,main'; "
                    "set enable_external_access = false; set lock_configuration = true")
        yield con
    finally:
        con.close()


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
