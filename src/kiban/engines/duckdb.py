"""The DuckDB engine: one database file, one connection, a cursor per worker thread.

Publishing is write-audit-publish in ONE transaction: ``create or replace`` the table, audit the new
version (the blocking-checks hook), record the fingerprint in the table's comment, commit. DuckDB's
MVCC keeps showing every other reader the old version until the commit, and a failure or a killed
process rolls the whole transaction back — so a published table is always a complete old or new
version, and no temporary leftovers exist. The fingerprint lives *with* the data: ``published()``
reads what is really there, whatever the state store says.

A plain SQL model's table (nothing to audit, not incremental, no ``time_column``) is published by the ``create
or replace … as`` statement alone — itself one transaction — and its fingerprint is written afterwards, with
other quick builds' in one commit (``_publish_plain``, ``kiban.engines.duckdb_marks``).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb

from kiban.engines import duckdb_partitions as partitions
from kiban.engines import duckdb_snapshot as snapshots
from kiban.engines.base import (
    COLLECTED_VERSION,
    DATA_TOKEN,
    EMPTY_LAKE,
    UNREADABLE_LAKE,
    AuditHook,
    BuildResult,
    CollectedTable,
    PythonModels,
    Session,
)
from kiban.engines.duckdb_marks import Marks
from kiban.engines.lake import LakeTable, derived_views, lake_table
from kiban.errors import ConfigError, KibanError
from kiban.project import Asset
from kiban.project.macros import Macro, callees_first
from kiban.quoting import literal, quote

log = logging.getLogger(__name__)

TMP_PREFIX = "__kiban_tmp_"
COMMENT_PREFIX = "kiban:"
SCHEMAS = ("lake", "warehouse", "mart")
SEARCH_PATH = "set search_path = 'main," + ",".join(SCHEMAS) + "'"
PERMANENT_ERRORS = (duckdb.BinderException, duckdb.ParserException, duckdb.CatalogException,
                    duckdb.ConversionException, duckdb.NotImplementedException, KibanError)
SIZE_FROM_ROWS = 50_000  # measuring storage costs ~3 ms; worth it only for tables big enough to matter


class DuckDBSession:
    """A cursor of the shared connection; ``interrupt`` stops its running statement. ``reusable``: after a
    build that committed, the cursor is clean (no open transaction, only the search path set) and the executor
    may hand it to the next build."""

    reusable = True

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


class DuckDBEngine:
    """DuckDB as kiban's embedded default warehouse."""

    name = "duckdb"

    def __init__(self, path: str, timezone: str | None = None) -> None:
        if path != ":memory:":
            if Path(path).stem.lower() in SCHEMAS:
                raise ConfigError(
                    f"the warehouse file {Path(path).name} would make DuckDB confuse its catalog with the "
                    f"'{Path(path).stem}' schema", "name the file differently, e.g. duckdb:///kiban.duckdb")
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._new = path == ":memory:" or not Path(path).exists()  # a new file holds no macro of an earlier run
        try:
            self.con = snapshots.connect_writer(path) if path != ":memory:" else duckdb.connect(path)
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise ConfigError(f"the warehouse {path} is open in another program",
                                  "close other DuckDB sessions on this file, then try again") from None
            raise ConfigError(f"cannot open the warehouse {path}: {exc}") from None
        self.path = path
        # the project's time zone on every connection: never the machine's (issue 18). Set globally, so every
        # cursor made from this connection starts with it (one statement per run, not one per model)
        self.timezone = timezone
        if timezone:
            self.con.execute(f"SET TimeZone = {literal(timezone)}")
            self.con.execute(f"SET GLOBAL TimeZone = {literal(timezone)}")
        self._catalog_lock = threading.Lock()
        self._kinds: dict[str, str] | None = None
        self._threads = self._threads_now = 0  # DuckDB's threads as configured (read on the first share) and now
        self.full_refresh = False  # incremental models: rebuild whole tables instead of recent partitions
        self.rebuild_whole: set[str] = set()
        self._pending_macros: list[Macro] = []  # macros reading tables a build of this run creates first
        # assets with data changes recorded (published() reads them): a build clears its own only when it has
        # some. None: not read yet, so every build clears. A change recorded later by another process is only
        # kept (its asset is rebuilt once more by the next run), never lost.
        self._changed: set[str] | None = None
        self._marks = Marks()  # plain tables' fingerprints waiting to be written together

    def session(self) -> DuckDBSession:
        cursor = self.con.cursor()  # inherits the global TimeZone set in __init__
        # Unqualified names a model may use (the graph resolves `orders` to warehouse.orders when only one
        # layer has it) find their table through the search path, as `lake.`/`warehouse.` names do directly.
        with contextlib.suppress(duckdb.CatalogException):  # before prepare() the schemas may not exist yet
            cursor.execute(SEARCH_PATH)
        return DuckDBSession(cursor)

    def close(self) -> None:
        if getattr(self, "_closed", False):
            return
        self._closed = True
        self._marks.flush(self.con)  # before the snapshot: readers' copy carries every fingerprint
        if self.path != ":memory:":  # readers (the console, profiles) read this copy: they never block a run
            snapshots.publish_snapshot(self.con, self.path)
        self.con.close()
        if self.path != ":memory:":
            snapshots.private(self.path)

    def share(self, running: int, light: bool = False) -> None:
        """Builds running at once share DuckDB's threads: each query gets ``threads // running`` (at least one), a
        build running alone all of them. A model small enough to run beside others gains little from a query's
        own threads and pays for waking them (500 models of 10,000 rows, two at once: ≈ 20% less CPU, and the
        wall time of two queries on one thread each rather than two on two); a big one runs alone. ``light``
        builds (inputs under one row group, which DuckDB scans on one thread anyway) get one thread each."""
        with self._catalog_lock:
            if not self._threads:
                row = self.con.execute("select current_setting('threads')").fetchone()
                self._threads = self._threads_now = int(row[0]) if row else 1
            want = 1 if light else max(1, self._threads // max(1, running))
            if want != self._threads_now:
                self.con.execute(f"set threads = {want}")
                self._threads_now = want

    @staticmethod
    def retryable(error: BaseException) -> bool:
        """Retrying helps with I/O, memory, locks and interruptions — never with wrong SQL or bad casts."""
        return not isinstance(error, PERMANENT_ERRORS)

    # -- preparing ----------------------------------------------------------------------------
    def prepare(self, lake_assets: list[Asset],
                collected: Mapping[str, CollectedTable] | None = None) -> dict[str, str]:
        con = self.con
        existing = {r[0] for r in con.execute(
            "select schema_name from duckdb_schemas() where database_name = current_database()").fetchall()}
        for schema in SCHEMAS:
            if schema not in existing:
                con.execute(f"create schema if not exists {quote(schema)}")
        for schema, table in con.execute(
                "select schema_name, table_name from duckdb_tables() "
                # a constant, not a bound value: any bound parameter makes DuckDB's Python client import
                # pandas (≈0.3 s), which the run's path must not pay
                f"where database_name = current_database() and starts_with(table_name, {literal(TMP_PREFIX)})"
                ).fetchall():
            con.execute(f"drop table if exists {quote(schema)}.{quote(table)}")
        partitions.create_state_tables(con)
        return self.refresh_lake(lake_assets, collected)

    def refresh_lake(self, lake_assets: list[Asset],
                     collected: Mapping[str, CollectedTable] | None = None) -> dict[str, str]:
        """Remake the lake views whose files changed; their versions. Safe while builds run (unlike ``prepare``,
        which also drops leftover temporary tables — a running build's among them)."""
        con = self.con
        current = self._comments("lake")
        texts = self._view_texts()
        versions: dict[str, str] = {}
        for asset in lake_assets:
            if str(asset.path.resolve()) not in texts.get(asset.key, ""):
                # its files are named by another folder's path: the project was moved, copied or checked out
                # elsewhere. Same data, so the same version — but the view is made again, over these files.
                current.pop(asset.key, None)
            if collected is not None and asset.key in collected:
                versions[asset.key] = self._prepare_collected(lake_table(asset, collected), current.get(asset.key))
                continue
            if current.get(asset.key, "").startswith(COLLECTED_VERSION):
                versions[asset.key] = current[asset.key]  # a collected table: its views stay as committed
                continue
            version = lake_table(asset, None).version
            versions[asset.key] = version
            if version == EMPTY_LAKE or current.get(asset.key) == version:
                continue
            target = f"lake.{quote(asset.name)}"
            glob = literal(str(asset.path.resolve() / "**" / "*.parquet"))
            con.execute("begin transaction")
            try:
                con.execute(f"create or replace view {target} as "
                            f"select * from read_parquet({glob}, union_by_name = true)")
                con.execute(f"comment on view {target} is {literal(COMMENT_PREFIX + version)}")
                con.execute("commit")
            except duckdb.Error as exc:  # a broken file fails the lake table's readers, not the whole run
                con.execute("rollback")
                versions[asset.key] = UNREADABLE_LAKE + str(exc).splitlines()[0]
        return versions

    def define_macros(self, macros: Sequence[Macro]) -> None:
        """The project's macros: stale ones dropped (a model must never run against a definition the project no
        longer has), each created or replaced, callees first (DuckDB binds a macro's calls when it creates it).

        A macro whose body reads a model that does not exist yet (its first build is in this run) cannot be
        created now: its old definition is dropped and it is created before the next build, when the tables it
        reads exist (``_define_pending``)."""
        con = self.con
        wanted = {m.name for m in macros}
        # (listing them costs ≈ 20 CPU-ms: DuckDB describes each of its thousands of functions first)
        present = [] if self._new else con.execute(
            "select function_name, function_type from duckdb_functions() where not internal "
            "and database_name = current_database() and schema_name = 'main' "
            "and function_type in ('macro', 'table_macro')").fetchall()
        self._new = False
        kinds = {str(name).lower(): str(kind) for name, kind in present}
        for name, kind in kinds.items():
            if name not in wanted:
                self._drop_macro(con, name, kind)
        self._pending_macros = []
        for macro in callees_first(macros):
            try:
                con.execute(macro.definition)
            except duckdb.CatalogException:  # it reads a table (or calls a macro) not there yet
                if macro.name in kinds:
                    self._drop_macro(con, macro.name, kinds.pop(macro.name))
                self._pending_macros.append(macro)
            except duckdb.Error as exc:
                raise KibanError(f"{macro.path}:{macro.line}: macro {macro.name}: "
                                 f"{str(exc).splitlines()[0]}") from None

    @staticmethod
    def _drop_macro(con: duckdb.DuckDBPyConnection, name: str, kind: str) -> None:
        con.execute(f"drop macro {'table ' if kind == 'table_macro' else ''}if exists {quote(name)}")

    def _define_pending(self, cur: duckdb.DuckDBPyConnection) -> None:
        """Create the macros that could not be created yet, as far as the tables they read exist now."""
        with self._catalog_lock:
            waiting: list[Macro] = []
            for macro in self._pending_macros:
                try:
                    cur.execute(macro.definition)
                except duckdb.CatalogException:
                    waiting.append(macro)
            self._pending_macros = waiting

    def _prepare_collected(self, table: LakeTable, current: str | None) -> str:
        """The views of a collected table over exactly its committed files, replaced in one transaction."""
        if not table.files or table.collected is None:
            return current or EMPTY_LAKE
        version = table.version
        if current == version:
            return version
        con = self.con
        name = table.name
        target = f"lake.{quote(name)}"
        files = "[" + ", ".join(literal(f) for f in table.files) + "]"
        # hive_partitioning off: a lake folder named load_date=…/ (older lakes) must not shadow a source column
        views = [(target, f"select * from read_parquet({files}, union_by_name = true, hive_partitioning = false)")]
        try:  # the columns the files really have (settings may be newer than the data)
            columns = [r[0] for r in con.execute(f"describe select * from read_parquet({files}, "
                                                 "union_by_name = true, hive_partitioning = false)").fetchall()]
        except duckdb.Error as exc:
            return UNREADABLE_LAKE + str(exc).splitlines()[0]
        views += [(f"lake.{quote(view)}", sql) for view, sql in derived_views(name, table.collected, columns)]
        con.execute("begin transaction")
        try:
            for view, sql in views:
                con.execute(f"create or replace view {view} as {sql}")
                con.execute(f"comment on view {view} is {literal(COMMENT_PREFIX + version)}")
            con.execute("commit")
        except duckdb.Error as exc:  # a broken file fails the lake table's readers, not the whole run
            con.execute("rollback")
            return UNREADABLE_LAKE + str(exc).splitlines()[0]
        return version

    def _view_texts(self) -> dict[str, str]:
        """The SQL of every lake view (which files it names)."""
        rows = self.con.execute("select schema_name || '.' || view_name, sql from duckdb_views() "
                                "where database_name = current_database() and schema_name = 'lake'").fetchall()
        return {str(key): str(sql or "") for key, sql in rows}

    def _comments(self, *schemas: str) -> dict[str, str]:
        self._marks.flush(self.con)  # the fingerprints of this process's builds first
        names = ", ".join(literal(s) for s in schemas)  # not bound: see duckdb_partitions.value
        rows = self.con.execute(
            "select schema_name, table_name, comment from duckdb_tables() "
            f"where database_name = current_database() and schema_name in ({names}) "
            "union all select schema_name, view_name, comment from duckdb_views() "
            f"where database_name = current_database() and schema_name in ({names})").fetchall()
        return {f"{s}.{t}": c[len(COMMENT_PREFIX):] for s, t, c in rows
                if c and c.startswith(COMMENT_PREFIX)}

    def published(self) -> dict[str, str]:
        """Every published version: its fingerprint, and ``+<token>`` when its data changed since without a
        rebuild (partitions replaced by a backfill)."""
        versions = self._comments(*SCHEMAS)
        changes = partitions.data_changes(self.con.cursor())
        with self._catalog_lock:
            self._changed = set(changes)
        for key, token in changes.items():
            if key in versions:
                versions[key] = f"{versions[key]}{DATA_TOKEN}{token}"
        return versions

    def _kind(self, schema: str, name: str) -> str | None:
        """'table', 'view' or None: from the catalog read once per run, kept current by publishes."""
        if self._kinds is None:
            rows = self.con.execute(
                "select schema_name || '.' || table_name, 'table' from duckdb_tables() "
                "where database_name = current_database() union all "
                "select schema_name || '.' || view_name, 'view' from duckdb_views() "
                "where database_name = current_database() and not internal").fetchall()
            self._kinds = dict(rows)
        return self._kinds.get(f"{schema}.{name}")

    # -- building -----------------------------------------------------------------------------
    def build(self, session: Session, asset: Asset, fingerprint: str, tag: str,
              audit: AuditHook | None = None, python: PythonModels | None = None) -> BuildResult:
        """Build, audit and publish in ONE transaction: until it commits, readers see the old version;
        if anything fails (or the process dies) DuckDB rolls it all back — nothing half-built remains.

        A Python model's table comes from ``python`` (the run's :class:`~kiban.engines.base.PythonModels`), made
        before the transaction opens; the engine publishes it like a SQL model's result."""
        assert isinstance(session, DuckDBSession), "a DuckDB build needs a DuckDB session"
        cur = session.cursor
        schema, name = asset.layer, asset.name
        target = f"{quote(schema)}.{quote(name)}"
        comment = literal(COMMENT_PREFIX + fingerprint)
        sql = (asset.sql or "").strip().rstrip(";")
        physical = "view" if asset.config.materialized == "view" else "table"
        if self._pending_macros:
            self._define_pending(cur)
        with self._catalog_lock:
            kind = self._kind(schema, name)
        rows: int | None = None
        nbytes: int | None = None
        produced = None
        if asset.python is not None:  # a Python model runs first, outside the transaction (it may take minutes)
            if python is None:
                raise KibanError(f"{asset.key} is a Python model, and this build was given nothing to run it with",
                                 "build it through kiban run (or pass kiban.python.models.PythonModelRunner)")
            produced = python.produce(cur, asset, fingerprint)
        elif (audit is None and physical == "table" and kind in (None, "table") and not asset.config.incremental
              and not asset.config.time_column):  # nothing that may refuse the new version once it is made
            return self._publish_plain(cur, asset, target, sql, comment)
        cur.execute("begin transaction")
        try:
            if kind and kind != physical:
                cur.execute(f"drop {kind} {target}")
            if produced is not None:  # its Arrow result, published like a SQL model's SELECT
                view = f"{TMP_PREFIX}py_{tag}"
                cur.register(view, produced)
                try:
                    created = cur.execute(f"create or replace table {target} as select * from {quote(view)}").fetchone()
                finally:
                    cur.unregister(view)
                rows = int(created[0]) if created else None
            elif asset.config.materialized == "view":
                cur.execute(f"create or replace view {target} as {sql}")
            elif asset.config.incremental:  # only the partitions that may have changed, in this transaction
                rows = partitions.build(cur, asset, target, kind == "table",
                                        self.full_refresh or asset.key in self.rebuild_whole)
            else:
                created = cur.execute(f"create or replace table {target} as {sql}").fetchone()
                rows = int(created[0]) if created else None
            watermark = self._watermark(cur, target, asset)
            if audit:
                audit(session, target)  # sees the new version; everyone else still sees the old one
            with self._catalog_lock:
                clear = self._changed is None or asset.key in self._changed
            if clear:  # a whole new version: built from what its print names
                partitions.clear_data_changes(cur, asset)
            # the fingerprint and the commit in one call (one round trip less per model); DuckDB stops at the
            # first failing statement, so a comment that fails never commits
            cur.execute(f"comment on {physical} {target} is {comment}; commit")
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                cur.execute("rollback")
            if python is not None and produced is not None:
                try:
                    python.settle(cur, asset)
                except Exception:  # the original error matters more than this bookkeeping
                    log.warning("%s: the model registry could not follow the refused publish", asset.key,
                                exc_info=True)
            raise
        if python is not None and produced is not None:
            python.settle(cur, asset)
        with self._catalog_lock:
            if self._kinds is not None:
                self._kinds[f"{schema}.{name}"] = physical
        if rows is not None and rows >= SIZE_FROM_ROWS:  # blocks exist only once committed
            nbytes = self._bytes(cur, schema, name)
        return BuildResult(rows=rows, nbytes=nbytes, watermark=watermark)

    def _publish_plain(self, cur: duckdb.DuckDBPyConnection, asset: Asset, target: str, sql: str,
                       comment: str) -> BuildResult:
        """A SQL model's table with nothing to audit: ``create or replace … as`` is itself one transaction (readers
        see the old table or the whole new one, and a failure or a kill leaves the old one). The fingerprint
        follows, written with other quick builds' in one commit (``duckdb_marks``): until then the new table has
        no comment (``create or replace`` drops the old one), so a process killed in between leaves a complete
        table of unknown version, which the next run rebuilds — never a table whose comment names another version
        than its data."""
        began = time.monotonic()
        created = cur.execute(f"create or replace table {target} as {sql}").fetchone()
        rows = int(created[0]) if created else None
        with self._catalog_lock:
            clear = self._changed is None or asset.key in self._changed
        if clear:  # a whole new version: built from what its print names (with the print, in one commit)
            cur.execute("begin transaction")
            try:
                partitions.clear_data_changes(cur, asset)
                cur.execute(f"comment on table {target} is {comment}; commit")
            except BaseException:
                with contextlib.suppress(duckdb.Error):
                    cur.execute("rollback")
                raise
        else:  # written with others' in one commit (kiban.engines.duckdb_marks); until then: no version
            self._marks.add(cur, target, comment, time.monotonic() - began)
        with self._catalog_lock:
            if self._kinds is not None:
                self._kinds[f"{asset.layer}.{asset.name}"] = "table"
        nbytes = self._bytes(cur, asset.layer, asset.name) if rows is not None and rows >= SIZE_FROM_ROWS else None
        return BuildResult(rows=rows, nbytes=nbytes)

    def partition_blocker(self, asset: Asset) -> str | None:
        """Why partitions of the incremental ``asset`` cannot be rebuilt one by one now (None: they can)."""
        target = f"{quote(asset.layer)}.{quote(asset.name)}"
        if self._kind(asset.layer, asset.name) != "table":
            return f"{asset.key} has not been built yet"
        return partitions.status(self.con.cursor(), asset, target)

    def build_partition(self, session: Session, asset: Asset, start: datetime, end: datetime,
                        audit: AuditHook | None = None) -> BuildResult:
        """Replace one partition [start, end) of the published incremental table in ONE transaction.

        The table's fingerprint stays (its code and inputs did not change), but its data did: a data change is
        recorded in the same commit (an insert, so partitions built side by side do not conflict), the published
        version carries it (``published()``), and every model reading it is rebuilt by the next run
        (``run.plan``) instead of being called fresh over rows that no longer exist."""
        assert isinstance(session, DuckDBSession), "a DuckDB build needs a DuckDB session"
        if self._pending_macros:
            self._define_pending(session.cursor)
        cur = session.cursor
        target = f"{quote(asset.layer)}.{quote(asset.name)}"
        cur.execute("begin transaction")
        try:
            rows = partitions.build_partition(cur, asset, target, start, end)
            if audit:
                audit(session, target)
            with self._catalog_lock:
                if self._changed is not None:
                    self._changed.add(asset.key)
            partitions.record_data_change(cur, asset, secrets.token_hex(8))
            cur.execute("commit")
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                cur.execute("rollback")
            raise
        return BuildResult(rows=rows, nbytes=None)

    def processed_partitions(self, asset: Asset) -> dict[datetime, int]:
        return partitions.processed(self.con.cursor(), asset)

    def watermark(self, asset: Asset) -> date | None:
        """The watermark of the published version (for assets whose builds did not record one)."""
        return self._watermark(self.con.cursor(), f"{quote(asset.layer)}.{quote(asset.name)}", asset)

    @staticmethod
    def _watermark(cur: duckdb.DuckDBPyConnection, relation: str, asset: Asset) -> date | None:
        """How far the data reaches: the newest date in the model's declared ``time_column``."""
        column = asset.config.time_column
        if not column:
            return None
        try:
            row = cur.execute(f"select max({quote(column)})::date from {relation}").fetchone()
        except duckdb.BinderException:
            raise KibanError(f"time_column '{column}' is not a column of {asset.key}",
                             f"set time_column in {asset.config_path or asset.key} to one of its date columns"
                             ) from None
        except duckdb.ConversionException:
            raise KibanError(f"time_column '{column}' of {asset.key} is not a date or timestamp") from None
        return row[0] if row else None

    @staticmethod
    def _bytes(cur: duckdb.DuckDBPyConnection, schema: str, table: str) -> int | None:
        try:
            row = cur.execute(
                "select count(distinct block_id) * (select any_value(block_size) from pragma_database_size() "
                "where database_name = current_database()) from "
                f"pragma_storage_info({literal(quote(schema) + '.' + quote(table))}) where block_id >= 0").fetchone()
        except duckdb.Error:
            return None
        return int(row[0]) if row and row[0] else None  # 0: not checkpointed yet, size unknown
