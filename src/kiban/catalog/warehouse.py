"""Reading the warehouse for the catalog: read-only, sandboxed DuckDB sessions that never block a run.

Every reader gets its own in-memory DuckDB in which the warehouse is ATTACHed ``READ_ONLY``: for a DuckDB
warehouse its snapshot (``kiban.duckdb.snapshot``, published by the writer when it closes the file, see
:mod:`kiban.engines.duckdb_snapshot`), so a reader never holds the file a run writes; for a PostgreSQL
warehouse the database itself through the packaged postgres extension (``READ ONLY`` transactions; MVCC
readers never block writers there). The session is then locked: no file access but the lake folder (the
lake views read their Parquet files), extensions never installed or loaded, the configuration locked so no
query can loosen any of that.

:func:`open_readonly` is for kiban's own readers (published columns, profiles, PII suggestions): the source
is the session's default catalog. People's queries get a *masked* session instead
(:mod:`kiban.catalog.masking`), where the source sits under an internal alias no query may name.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
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


def is_postgres(project: Project) -> bool:
    return project.warehouse_url.startswith(("postgresql://", "postgres://"))


_COPYING = threading.Lock()  # one process makes a missing snapshot once, not once per thread


def source_file(project: Project) -> Path:
    """The file readers attach: the snapshot of the warehouse (made now when it is missing or stale and no
    writer holds the live file; a writer holding it means the last snapshot is the current truth)."""
    import duckdb

    from kiban.engines.duckdb_snapshot import copy_for_readers, current, snapshot_path

    path = warehouse_path(project)
    if not path.exists():
        raise NothingPublished(f"nothing is published yet: {path} does not exist", "build it with `kiban run`")
    snapshot = snapshot_path(path)
    if current(path):
        return snapshot
    with _COPYING:
        if current(path):
            return snapshot
        try:
            return copy_for_readers(path)
        except duckdb.Error as exc:
            if snapshot.exists():
                return snapshot  # a run is writing: its close publishes the next snapshot
            text = str(exc).lower()
            if "lock" in text or "different configuration" in text:
                raise ConfigError(f"the warehouse {path.name} is being written (a run holds it) and has no "
                                  "snapshot for readers yet", "try again when the run has finished") from None
            raise ConfigError(f"cannot open the warehouse {path}: {str(exc).splitlines()[0]}") from None


def new_session() -> Any:
    """An empty in-memory DuckDB that never installs or loads an extension by itself."""
    import duckdb

    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    with contextlib.suppress(duckdb.Error):  # the Python client's scans of local variables: never
        con.execute("set python_enable_replacements = false")
    return con


@dataclass(frozen=True)
class Source:
    """What a reader attaches, as plain data (a query's worker process gets it): the DuckDB snapshot's path or
    the PostgreSQL URL (with the postgres extension's file), and the lake folder the lake views read."""

    kind: str  # "duckdb" or "postgres"
    target: str
    lake_dir: str
    extension: str | None = None


def source_of(project: Project) -> Source:
    """The warehouse readers attach now (for DuckDB its snapshot, made here when missing or stale)."""
    if is_postgres(project):
        from kiban.collect.connectors.database import extension_file

        extension = extension_file("postgres")
        if extension is None:
            raise ConfigError("reading a PostgreSQL warehouse needs DuckDB's postgres extension",
                              "pip install 'kiban[postgres]'")
        return Source("postgres", project.warehouse_url, "", str(extension))
    return Source("duckdb", str(source_file(project)), str(project.lake_dir))


def attach_source(con: Any, source: Source, alias: str) -> None:
    """ATTACH the warehouse READ_ONLY under ``alias`` (the DuckDB snapshot, or PostgreSQL)."""
    import duckdb

    if source.kind == "postgres":
        url = source.target
        try:
            con.execute(f"load {_sql_literal(str(source.extension))}")
            con.execute(f"attach {_sql_literal(url)} as {alias} (type postgres, read_only)")
        except duckdb.Error as exc:
            text = str(exc).splitlines()[0].replace(url, "<warehouse url>")
            raise ConfigError(f"cannot open the PostgreSQL warehouse: {text}") from None
        return
    try:
        con.execute(f"attach {_sql_literal(source.target)} as {alias} (read_only)")
    except duckdb.Error as exc:
        raise ConfigError(f"cannot open the warehouse {source.target}: {str(exc).splitlines()[0]}") from None


def lock_down(con: Any, source: Source, *, search_path: str, memory_limit: str | None = None,
              threads: int | None = None) -> None:
    """No file access but the lake folder, no spilling, bounded memory and threads, configuration locked."""
    allowed = [] if source.kind == "postgres" else [source.lake_dir + "/"]
    settings = [f"set search_path = {_sql_literal(search_path)}",
                f"set allowed_directories = [{', '.join(_sql_literal(a) for a in allowed)}]"]
    if memory_limit:
        settings.append(f"set memory_limit = {_sql_literal(memory_limit)}")
        settings.append("set temp_directory = ''")  # a query past its memory fails; it never fills the disk
    if threads:
        settings.append(f"set threads = {int(threads)}")
    settings += ["set enable_external_access = false", "set lock_configuration = true"]
    con.execute("; ".join(settings))


def source_alias() -> str:
    """An internal, unguessable catalog name for the attached warehouse."""
    return f"__kiban_src_{secrets.token_hex(8)}"


@contextlib.contextmanager
def open_readonly(project: Project) -> Iterator[Any]:
    """A read-only session over the warehouse (kiban's own readers) that can read nothing else but the lake."""
    source = source_of(project)
    con = new_session()
    try:
        alias = "warehouse_db" if source.kind == "postgres" else source_alias()
        attach_source(con, source, alias)
        con.execute(f"use {alias}")
        lock_down(con, source, search_path=",".join(f"{alias}.{s}" for s in ("mart", "warehouse", "lake")))
    except BaseException:
        con.close()
        raise
    try:
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
