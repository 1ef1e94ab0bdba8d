"""The DuckDB engine: one database file, one connection, a cursor per worker thread.

Publishing is write-audit-swap: the model is built as ``<schema>.__kiban_tmp_<name>_<tag>``,
audited, then renamed over the published table in one transaction together with a comment that
records its fingerprint. So the fingerprint lives *with* the data: whatever the state store says,
``published()`` reads what is really there.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from pathlib import Path
from typing import Any

import duckdb

from kiban.engines.base import AuditHook, BuildResult, Session
from kiban.errors import ConfigError
from kiban.project import Asset

TMP_PREFIX = "__kiban_tmp_"
COMMENT_PREFIX = "kiban:"
SCHEMAS = ("lake", "warehouse", "mart")


def quote(name: str) -> str:
    """Quote an identifier for DuckDB."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """A SQL string literal (for DDL, where DuckDB takes no bound parameters)."""
    return "'" + text.replace("'", "''") + "'"


class DuckDBSession:
    """A cursor of the shared connection; ``interrupt`` stops its running statement."""

    def __init__(self, cursor: duckdb.DuckDBPyConnection) -> None:
        self.cursor = cursor

    def execute(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        result = self.cursor.execute(sql, params) if params else self.cursor.execute(sql)
        try:
            return result.fetchall()
        except duckdb.InvalidInputException:
            return []  # statement without a result set

    def interrupt(self) -> None:
        self.cursor.interrupt()

    def close(self) -> None:
        self.cursor.close()


def lake_version(folder: Path) -> tuple[str, int]:
    """A version of a lake folder from its Parquet files' paths, sizes and modification times."""
    digest = hashlib.sha256()
    count = 0
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for filename in sorted(filenames):
            if filename.endswith(".parquet"):
                stat = os.stat(os.path.join(dirpath, filename))
                rel = os.path.relpath(os.path.join(dirpath, filename), folder)
                digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
                count += 1
    return digest.hexdigest(), count


class DuckDBEngine:
    """DuckDB as kiban's embedded default warehouse."""

    name = "duckdb"

    def __init__(self, path: str) -> None:
        if path != ":memory:":
            if Path(path).stem.lower() in SCHEMAS:
                raise ConfigError(
                    f"the warehouse file {Path(path).name} would make DuckDB confuse its catalog with the "
                    f"'{Path(path).stem}' schema", "name the file differently, e.g. duckdb:///kiban.duckdb")
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.con = duckdb.connect(path)
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise ConfigError(f"the warehouse {path} is open in another program",
                                  "close other DuckDB sessions on this file, then try again") from None
            raise ConfigError(f"cannot open the warehouse {path}: {exc}") from None
        self.path = path
        self._catalog_lock = threading.Lock()

    def session(self) -> DuckDBSession:
        return DuckDBSession(self.con.cursor())

    def close(self) -> None:
        self.con.close()

    # -- preparing ----------------------------------------------------------------------------
    def prepare(self, lake_assets: list[Asset]) -> dict[str, str]:
        con = self.con
        existing = {r[0] for r in con.execute(
            "select schema_name from duckdb_schemas() where database_name = current_database()").fetchall()}
        for schema in SCHEMAS:
            if schema not in existing:
                con.execute(f"create schema if not exists {quote(schema)}")
        for schema, table in con.execute(
                "select schema_name, table_name from duckdb_tables() "
                "where database_name = current_database() and starts_with(table_name, ?)",
                [TMP_PREFIX]).fetchall():
            con.execute(f"drop table if exists {quote(schema)}.{quote(table)}")
        current = self._comments("lake")
        versions: dict[str, str] = {}
        for asset in lake_assets:
            version, files = lake_version(asset.path)
            versions[asset.key] = version
            if current.get(asset.key) == version:
                continue
            target = f"lake.{quote(asset.name)}"
            if files == 0:
                continue
            glob = literal(str(asset.path.resolve() / "**" / "*.parquet"))
            con.execute("begin transaction")
            try:
                con.execute(f"create or replace view {target} as "
                            f"select * from read_parquet({glob}, union_by_name = true)")
                con.execute(f"comment on view {target} is {literal(COMMENT_PREFIX + version)}")
                con.execute("commit")
            except Exception:
                con.execute("rollback")
                raise
        return versions

    def _comments(self, *schemas: str) -> dict[str, str]:
        rows = self.con.execute(
            "select schema_name, table_name, comment from duckdb_tables() "
            "where database_name = current_database() and list_contains(?, schema_name) "
            "union all select schema_name, view_name, comment from duckdb_views() "
            "where database_name = current_database() and list_contains(?, schema_name)",
            [list(schemas), list(schemas)]).fetchall()
        return {f"{s}.{t}": c[len(COMMENT_PREFIX):] for s, t, c in rows
                if c and c.startswith(COMMENT_PREFIX)}

    def published(self) -> dict[str, str]:
        return self._comments(*SCHEMAS)

    def _kind(self, cursor: duckdb.DuckDBPyConnection, schema: str, name: str) -> str | None:
        row = cursor.execute(
            "select 'table' from duckdb_tables() where database_name = current_database() "
            "and schema_name = ? and table_name = ? union all "
            "select 'view' from duckdb_views() where database_name = current_database() "
            "and schema_name = ? and view_name = ?", [schema, name, schema, name]).fetchone()
        return row[0] if row else None

    # -- building -----------------------------------------------------------------------------
    def build(self, session: Session, asset: Asset, fingerprint: str, tag: str,
              audit: AuditHook | None = None) -> BuildResult:
        assert isinstance(session, DuckDBSession), "a DuckDB build needs a DuckDB session"
        cur = session.cursor
        schema, name = asset.layer, asset.name
        target = f"{quote(schema)}.{quote(name)}"
        comment = literal(COMMENT_PREFIX + fingerprint)
        sql = (asset.sql or "").strip().rstrip(";")
        if asset.config.materialized == "view":
            cur.execute("begin transaction")
            try:
                if self._kind(cur, schema, name) == "table":
                    cur.execute(f"drop table {target}")
                cur.execute(f"create or replace view {target} as {sql}")
                if audit:
                    audit(session, target)
                cur.execute(f"comment on view {target} is {comment}")
                cur.execute("commit")
            except BaseException:
                cur.execute("rollback")
                raise
            return BuildResult(rows=None, nbytes=None)

        tmp_name = f"{TMP_PREFIX}{name}_{tag}"
        tmp = f"{quote(schema)}.{quote(tmp_name)}"
        cur.execute(f"drop table if exists {tmp}")
        try:
            cur.execute(f"create table {tmp} as {sql}")
            rows = cur.execute(f"select count(*) from {tmp}").fetchone()
            if audit:
                audit(session, tmp)
            nbytes = self._bytes(cur, schema, tmp_name)
            cur.execute("begin transaction")
            try:
                kind = self._kind(cur, schema, name)
                if kind:
                    cur.execute(f"drop {kind} {target}")
                cur.execute(f"alter table {tmp} rename to {quote(name)}")
                cur.execute(f"comment on table {target} is {comment}")
                cur.execute("commit")
            except BaseException:
                cur.execute("rollback")
                raise
        except BaseException:
            with contextlib.suppress(duckdb.Error):  # else the next run's prepare() drops it
                cur.execute(f"drop table if exists {tmp}")
            raise
        return BuildResult(rows=int(rows[0]) if rows else None, nbytes=nbytes)

    @staticmethod
    def _bytes(cur: duckdb.DuckDBPyConnection, schema: str, table: str) -> int | None:
        try:
            row = cur.execute(
                "select count(distinct block_id) * (select any_value(block_size) from pragma_database_size() "
                "where database_name = current_database()) from pragma_storage_info(?) where block_id >= 0",
                [f"{quote(schema)}.{quote(table)}"]).fetchone()
        except duckdb.Error:
            return None
        return int(row[0]) if row and row[0] else None  # 0: not checkpointed yet, size unknown
