"""The PostgreSQL engine: models run inside PostgreSQL, transpiled from DuckDB's SQL by SQLGlot.

- **Lake.** Each lake table's files (a collected table: exactly its committed loads; see ``engines.lake``)
  are loaded into the table ``lake.<name>`` (Parquet → Arrow record batches → ``COPY … FROM STDIN``, one
  batch in memory at a time), with the views ``<name>_latest`` / ``<name>_history`` DuckDB offers too. The
  comment holds the data version, so an unchanged table is not loaded again. A load replaces the table and
  its views in one transaction.
- **Publish.** ``create table <tmp> as <model>``, audit the new table, drop the old one, rename, comment with
  the fingerprint and log the publish in ``kiban.publishes`` — all in ONE transaction. PostgreSQL's DDL is
  transactional, so readers see the old table until the commit, and a failure (or a killed client) leaves it.
- **Incremental models** replace their recent partitions inside the publish, and backfills single partitions,
  as on DuckDB (``engines.postgres_partitions``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import secrets
import threading
import zlib
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from kiban.engines import postgres_partitions as partitions
from kiban.engines.arrow_io import PostgresArrowCursor, arrow_to_postgres, copy_into, postgres_columns
from kiban.engines.base import (
    DATA_TOKEN,
    FENCED,
    UNREADABLE_LAKE,
    AuditHook,
    BuildResult,
    CollectedTable,
    Fenced,
    NotDuckDB,
    PythonModels,
)
from kiban.engines.base import Session as SessionProtocol
from kiban.engines.dialect import QUALIFY_COLUMN, transpile
from kiban.engines.lake import LakeTable, derived_views, lake_tables
from kiban.engines.meaning import POSTGRES_FUNCTIONS
from kiban.errors import ConfigError, KibanError
from kiban.project import Asset
from kiban.quoting import literal, quote

SCHEMAS = ("lake", "warehouse", "mart")
META_SCHEMA = "kiban"  # the publish log
TMP_PREFIX = "__kiban_tmp_"
COMMENT_PREFIX = "kiban:"
BATCH_ROWS = 64_000  # rows per Arrow batch while loading the lake: bounds the loader's memory
log = logging.getLogger(__name__)
PERMANENT_ERRORS = (pg_errors.SyntaxErrorOrAccessRuleViolation, pg_errors.DataError, KibanError,
                    pg_errors.FeatureNotSupported, Fenced)


class PostgresSession:
    """One connection (one transaction at a time) for one worker thread."""

    dialect = "postgres"  # the SQL it speaks (checks are written for it: kiban.checks.engine_sql)

    def __init__(self, url: str, settings: Mapping[str, str] | None = None) -> None:
        self.conn = _connect(url, autocommit=True, settings=settings)
        with contextlib.suppress(psycopg.Error):  # PostgreSQL 14+: a killed kiban's query stops within 2 s
            self.conn.execute("set client_connection_check_interval = 2000")
        self.conn.autocommit = False

    def execute(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        with self.conn.cursor() as cur:
            cur.execute(sql.encode(), params)  # bytes: '%' in the SQL is not a placeholder
            return cur.fetchall() if cur.description else []

    def query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Column names and rows of ``sql``."""
        with self.conn.cursor() as cur:
            cur.execute(sql.encode())
            return [d.name for d in cur.description or []], (cur.fetchall() if cur.description else [])

    def interrupt(self) -> None:
        with contextlib.suppress(psycopg.Error):
            getattr(self.conn, "cancel_safe", self.conn.cancel)()  # cancel_safe: psycopg 3.2+

    def close(self) -> None:
        self.conn.close()


def _connect(url: str, autocommit: bool = False, settings: Mapping[str, str] | None = None) -> psycopg.Connection[Any]:
    """A connection with ``settings`` (``TimeZone``, timeouts) set for its whole life (outside any transaction,
    so no rollback undoes them)."""
    try:
        conn = psycopg.connect(url, autocommit=True, application_name="kiban")
    except psycopg.OperationalError as exc:
        raise ConfigError(f"cannot connect to the PostgreSQL warehouse: {str(exc).strip().splitlines()[0]}",
                          "check the warehouse URL in kiban.yml (passwords belong in env:NAME)") from None
    try:
        for name, value in (settings or {}).items():
            conn.execute("select set_config(%s, %s, false)", [name, value])
    except psycopg.Error as exc:
        conn.close()
        raise ConfigError(f"the PostgreSQL warehouse refuses the setting {name} = {value}: "
                          f"{str(exc).strip().splitlines()[0]}") from None
    conn.autocommit = autocommit
    return conn


class PostgresEngine(NotDuckDB):
    """PostgreSQL as the warehouse: lake loaded into it, models built and published inside it."""

    name = "postgres"
    label = "PostgreSQL"

    def __init__(self, url: str, timezone: str | None = None) -> None:
        self.url = url
        # every connection's settings: the project's time zone (never the server's), and what a worker adds
        # (lock_timeout, statement_timeout, idle_in_transaction_session_timeout: kiban.workers)
        self.settings: dict[str, str] = {"TimeZone": timezone} if timezone else {}
        self.timezone = timezone or "UTC"  # instants read for Python models carry it
        self.conn = _connect(url, autocommit=True, settings=self.settings)
        self.full_refresh = False
        self.rebuild_whole: set[str] = set()
        self._lock = threading.Lock()
        # asset → (fencing token, run id) of the claim a worker holds (kiban.workers): checked inside the publish
        self.fences: dict[str, tuple[int, str]] = {}

    def configure(self, settings: Mapping[str, str]) -> None:
        """More settings for every connection from now on (a worker's timeouts)."""
        self.settings.update(settings)
        with self._lock:
            for name, value in settings.items():
                self.conn.execute("select set_config(%s, %s, false)", [name, value])

    # -- fencing (workers) ----------------------------------------------------------------------
    def claim_fence(self, asset: str, token: int, run_id: str) -> bool:
        """Raise ``asset``'s fence to ``token`` (a worker's new claim). False: a newer claim already holds it.

        Waits (up to ``lock_timeout``) for a publish that holds the fence to commit: a publish either committed
        before this or will see the new token and refuse."""
        with self._lock, self.conn.cursor() as cur:
            row = cur.execute(
                f"insert into {quote(META_SCHEMA)}.fences as f (asset, token, run_id) values (%s, %s, %s) "
                "on conflict (asset) do update set token = excluded.token, run_id = excluded.run_id "
                "where f.token <= excluded.token returning f.token", [asset, token, run_id]).fetchone()
        if row is None:
            return False
        self.fences[asset] = (token, run_id)
        return True

    def published_by(self, asset: str) -> str | None:
        """The run whose worker last published ``asset`` (None: not published by a worker)."""
        rows = self._rows(f"select published_run from {quote(META_SCHEMA)}.fences where asset = %s", [asset])
        return rows[0][0] if rows else None

    def _check_fence(self, cur: psycopg.Cursor[Any], asset: str) -> None:
        """Inside the publish: the claim must still hold the fence (locked until the commit)."""
        fence = self.fences.get(asset)
        if fence is None:
            return
        row = cur.execute(f"select token from {quote(META_SCHEMA)}.fences where asset = %s for update",
                          [asset]).fetchone()
        if row is None or row[0] != fence[0]:
            raise Fenced(f"{FENCED}{asset}: another worker took this claim over (fencing token {fence[0]}, now "
                         f"{row[0] if row else 'none'}); this version is not published")
        cur.execute(f"update {quote(META_SCHEMA)}.fences set published_run = %s where asset = %s", [fence[1], asset])

    def session(self) -> PostgresSession:
        return PostgresSession(self.url, self.settings)

    def close(self) -> None:
        self.conn.close()

    @staticmethod
    def retryable(error: BaseException) -> bool:
        """Connection trouble, cancels, deadlocks: worth another attempt; wrong SQL or bad data: never."""
        return not isinstance(error, PERMANENT_ERRORS)

    def _rows(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        with self._lock, self.conn.cursor() as cur:
            cur.execute(sql.encode() if params is None else sql, params)
            return cur.fetchall() if cur.description else []

    # -- preparing ----------------------------------------------------------------------------
    def prepare(self, lake_assets: list[Asset],
                collected: Mapping[str, CollectedTable] | None = None) -> dict[str, str]:
        with self._lock, self.conn.transaction():
            self.conn.execute("select pg_advisory_xact_lock(%s)", [_lock_key("kiban:schemas")])
            for schema in (*SCHEMAS, META_SCHEMA):
                self.conn.execute(f"create schema if not exists {quote(schema)}".encode())
            self.conn.execute(f"create table if not exists {quote(META_SCHEMA)}.publishes (asset text not null, "
                              "fingerprint text not null, published_at timestamptz not null default now())".encode())
            self.conn.execute(f"create table if not exists {quote(META_SCHEMA)}.fences (asset text primary key, "
                              "token bigint not null, run_id text, published_run text)".encode())
            for ddl in partitions.TABLES:  # incremental models' partitions (engines.postgres_partitions)
                self.conn.execute(ddl.encode())
            for function in POSTGRES_FUNCTIONS:  # what transpiled models call for DuckDB's meaning (engines.meaning)
                self.conn.execute(function.encode())
        current = self._comments(("lake",))
        versions: dict[str, str] = {}
        for table in lake_tables(lake_assets, collected):  # collected tables: exactly their committed files
            versions[table.asset.key] = table.version
            if not table.files or current.get(table.asset.key) == table.version:
                continue
            try:
                self._load_lake(table)
            except (KibanError, psycopg.Error, OSError, ValueError, TypeError) as exc:  # Arrow errors among them
                versions[table.asset.key] = UNREADABLE_LAKE + str(exc).strip().splitlines()[0]
        return versions

    def _load_lake(self, table: LakeTable) -> None:
        """Parquet files → the table lake.<name> (and its derived views), replaced in one transaction, one
        Arrow batch at a time."""
        import pyarrow as pa
        import pyarrow.csv as pacsv
        import pyarrow.dataset as ds
        import pyarrow.parquet as pq

        name, files, version = table.name, list(table.files), table.version
        # union by name with widened types, as DuckDB reads a folder
        schema = pa.unify_schemas([pq.read_schema(f) for f in files], promote_options="permissive")
        columns = ", ".join(f"{quote(f.name)} {arrow_to_postgres(f.type, f.name, 'lake.' + name)}" for f in schema)
        views = [(view, transpile(sql, "postgres", f"lake.{view}"))
                 for view, sql in (derived_views(name, table.collected, schema.names) if table.collected else [])]
        tmp_name = TMP_PREFIX + name[:40]
        tmp = f"{quote('lake')}.{quote(tmp_name)}"
        target = f"{quote('lake')}.{quote(name)}"
        conn = _connect(self.url, settings=self.settings)
        try:
            with conn.transaction():
                conn.execute("select pg_advisory_xact_lock(%s)", [_lock_key("lake." + name)])
                if self._comments(("lake",), conn).get(f"lake.{name}") == version:
                    return  # another process loaded this version while we waited
                conn.execute(f"create table {tmp} ({columns})".encode())
                names = ", ".join(quote(f.name) for f in schema)
                options = pacsv.WriteOptions(include_header=False)
                dataset = ds.dataset(files, schema=schema, format="parquet")
                with conn.cursor() as cur, cur.copy(f"copy {tmp} ({names}) from stdin (format csv)".encode()) as copy:
                    for batch in dataset.to_batches(batch_size=BATCH_ROWS):
                        buffer = io.BytesIO()
                        pacsv.write_csv(batch, buffer, options)
                        copy.write(buffer.getvalue())
                if _refill(conn, name, tmp_name):  # views (kiban's or anyone's) over the table keep working
                    for view, sql in views:
                        try:
                            with conn.transaction():  # a savepoint: the view may have other columns now
                                conn.execute(f"create or replace view lake.{quote(view)} as {sql}".encode())
                        except (pg_errors.InvalidTableDefinition, pg_errors.DependentObjectsStillExist):
                            _replace_view(conn, view, sql)
                else:
                    with conn.cursor() as cur:  # kiban's views over it (models materialized as views): made again
                        aside = _set_aside_views(cur, "lake", name)
                    for view in (f"{name}_latest", f"{name}_history"):  # they read the table being replaced
                        conn.execute(f"drop view if exists lake.{quote(view)}".encode())
                    try:
                        with conn.transaction():
                            conn.execute(f"drop table if exists {target}".encode())
                    except pg_errors.DependentObjectsStillExist:
                        raise KibanError(f"lake.{name}: its columns changed type or disappeared, and views depend "
                                         f"on it ({', '.join(_dependents(conn, 'lake', name))}), so it cannot be "
                                         "replaced", "drop those views (kiban rebuilds its own on the next run)"
                                         ) from None
                    conn.execute(f"alter table {tmp} rename to {quote(name)}".encode())
                    for view, sql in views:
                        conn.execute(f"create view lake.{quote(view)} as {sql}".encode())
                    derived = {("lake", view) for view, _ in views}
                    with conn.cursor() as cur:
                        _restore_views(cur, [v for v in aside if (v[0], v[1]) not in derived])
                conn.execute(f"comment on table {target} is {literal(COMMENT_PREFIX + version)}".encode())
                for view, _sql in views:
                    conn.execute(f"comment on view lake.{quote(view)} is {literal(COMMENT_PREFIX + version)}".encode())
                conn.execute(f"analyze {target}".encode())
        finally:
            conn.close()

    def _comments(self, schemas: tuple[str, ...], conn: psycopg.Connection[Any] | None = None) -> dict[str, str]:
        sql = ("select n.nspname, c.relname, d.description from pg_class c "
               "join pg_namespace n on n.oid = c.relnamespace "
               "join pg_description d on d.objoid = c.oid and d.objsubid = 0 "
               "and d.classoid = 'pg_class'::regclass "
               "where n.nspname = any(%s) and c.relkind in ('r', 'v', 'p', 'm') and d.description like 'kiban:%%'")
        rows = self._rows(sql, [list(schemas)]) if conn is None else conn.execute(sql, [list(schemas)]).fetchall()
        return {f"{s}.{t}": c[len(COMMENT_PREFIX):] for s, t, c in rows}

    def published(self) -> dict[str, str]:
        """Every published version: its fingerprint, and ``+<token>`` when its data changed since without a
        rebuild (partitions replaced by a backfill)."""
        versions = self._comments(SCHEMAS)
        with self._lock, self.conn.cursor() as cur:
            try:
                changes = partitions.data_changes(cur)
            except pg_errors.UndefinedTable:  # a warehouse prepared by an older kiban: none recorded
                changes = {}
        for key, token in changes.items():
            if key in versions:
                versions[key] = f"{versions[key]}{DATA_TOKEN}{token}"
        return versions

    def _names(self) -> dict[str, str]:
        """Bare name → layer of every table and view kiban's schemas hold (for unqualified references)."""
        rows = self._rows("select table_schema, table_name from information_schema.tables "
                          "where table_schema = any(%s)", [list(SCHEMAS)])
        found: dict[str, list[str]] = {}
        for schema, table in rows:
            found.setdefault(table.lower(), []).append(schema)
        return {name: layers[0] for name, layers in found.items() if len(layers) == 1}

    # -- building -----------------------------------------------------------------------------
    def build(self, session: SessionProtocol, asset: Asset, fingerprint: str, tag: str,
              audit: AuditHook | None = None, python: PythonModels | None = None) -> BuildResult:
        """Create under a temporary name, audit, swap, comment and log in ONE transaction."""
        assert isinstance(session, PostgresSession), "a PostgreSQL build needs a PostgreSQL session"
        produced = None
        if asset.python is not None:  # run first, outside the publishing transaction (it may take minutes)
            if python is None:
                raise KibanError(f"{asset.key} is a Python model, and this build was given nothing to run it with",
                                 "build it through kiban run (or pass kiban.python.models.PythonModelRunner)")
            try:
                produced = python.produce(PostgresArrowCursor(session.conn, self.timezone), asset, fingerprint)
            finally:
                session.conn.rollback()  # no read transaction left open while the model ran
            sql = ""
        else:
            sql = transpile((asset.sql or "").strip().rstrip(";"), "postgres", asset.key, self._names())
        schema, name = asset.layer, asset.name
        target = f"{quote(schema)}.{quote(name)}"
        tmp_name = f"{TMP_PREFIX}{name[:30]}_{tag}_{secrets.token_hex(3)}"[:63]  # unique: workers share tags
        tmp = f"{quote(schema)}.{quote(tmp_name)}"
        conn = session.conn
        rows: int | None = None
        watermark: date | None = None
        try:
            with conn.cursor() as cur:
                kind = cur.execute("select c.relkind from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                                   "where n.nspname = %s and c.relname = %s", [schema, name]).fetchone()
                in_place = False
                aside: list[tuple[str, str, str, str]] = []  # kiban's views over the old relation, re-made over the new
                if produced is not None:  # its Arrow result, published like a SQL model's SELECT
                    cur.execute(f"create table {tmp} ({postgres_columns(produced, asset.key)})".encode())
                    copy_into(cur, tmp, produced)
                    rows = produced.num_rows
                    relation, physical = tmp, "table"
                elif asset.config.materialized == "view":
                    if kind:
                        aside = _set_aside_views(cur, schema, name)
                        cur.execute(f"drop {'view' if kind[0] == 'v' else 'table'} {target}".encode())
                    cur.execute(f"create view {target} as {sql}".encode())
                    relation, physical = target, "view"
                else:
                    start = self._incremental_start(cur, asset, sql, target, bool(kind and kind[0] == "r"))
                    if start is not None:  # only the partitions that may have changed, in this transaction
                        partitions.recent(cur, asset, sql, target, start)
                        in_place, relation, physical = True, target, "table"
                        row = cur.execute(f"select count(*) from {target}".encode()).fetchone()
                        rows = int(row[0]) if row else None
                    else:
                        if asset.config.incremental:
                            partitions.full(cur, asset, sql, tmp)
                        else:
                            cur.execute(f"create table {tmp} as {sql}".encode())
                        rows = cur.rowcount if cur.rowcount >= 0 else None
                        _text_in_byte_order(cur, tmp)
                        for (helper,) in cur.execute(  # what a rewritten `SELECT * … QUALIFY` could not leave out
                                "select column_name from information_schema.columns where table_schema = %s and "
                                "table_name = %s and column_name like %s", [schema, tmp_name, QUALIFY_COLUMN + "%"]
                                ).fetchall():
                            cur.execute(f"alter table {tmp} drop column {quote(helper)}".encode())
                        if asset.config.incremental:
                            partitions.record_full(cur, asset, tmp)
                        relation, physical = tmp, "table"
                cur.execute(f"delete from {quote(META_SCHEMA)}.data_changes where asset = %s", [asset.key])
                watermark = self._watermark(cur, relation, asset)
                if audit:
                    audit(session, relation)  # sees the new version; every other reader still sees the old one
                self._check_fence(cur, asset.key)  # a worker whose lease was taken never gets past this
                if physical == "table" and not in_place:
                    if kind:
                        aside = _set_aside_views(cur, schema, name)
                        cur.execute(f"drop {'view' if kind[0] == 'v' else 'table'} {target}".encode())
                    cur.execute(f"alter table {tmp} rename to {quote(name)}".encode())
                _restore_views(cur, aside)
                cur.execute(f"comment on {physical} {target} is {literal(COMMENT_PREFIX + fingerprint)}".encode())
                cur.execute(f"insert into {quote(META_SCHEMA)}.publishes (asset, fingerprint) values (%s, %s)",
                            [asset.key, fingerprint])
            conn.commit()
        except pg_errors.DependentObjectsStillExist:
            conn.rollback()
            raise KibanError(f"{asset.key}: views outside kiban depend on {schema}.{name}, so it cannot be "
                             "replaced", "drop those views, or make them read a kiban model instead") from None
        except BaseException:
            with contextlib.suppress(psycopg.Error):
                conn.rollback()
            self._settle(session, asset, python)
            raise
        self._settle(session, asset, python)
        return BuildResult(rows=rows, nbytes=None, watermark=watermark)

    def _settle(self, session: PostgresSession, asset: Asset, python: PythonModels | None) -> None:
        """A training asset's registry follows its publish: promoted when it committed, rejected when not."""
        if python is not None and asset.python is not None:
            try:
                python.settle(PostgresArrowCursor(session.conn, self.timezone), asset)
            except Exception:  # the build's own outcome matters more than this bookkeeping
                log.warning("%s: the model registry could not follow the publish", asset.key, exc_info=True)

    def _incremental_start(self, cur: psycopg.Cursor[Any], asset: Asset, sql: str, target: str,
                           exists: bool) -> datetime | None:
        """Where an incremental build of ``asset`` starts replacing rows (None: it rebuilds the whole table)."""
        if not asset.config.incremental or not exists or self.full_refresh or asset.key in self.rebuild_whole:
            return None
        if partitions.status(cur, asset, sql, target) is not None:
            return None
        return partitions.since(cur, asset)

    def partition_blocker(self, asset: Asset) -> str | None:
        """Why partitions of the incremental ``asset`` cannot be rebuilt one by one now (None: they can)."""
        target = f"{quote(asset.layer)}.{quote(asset.name)}"
        sql = transpile((asset.sql or "").strip().rstrip(";"), "postgres", asset.key, self._names())
        with self._lock, self.conn.cursor() as cur:
            if cur.execute("select to_regclass(%s)", [f"{asset.layer}.{asset.name}"]).fetchone() in (None, (None,)):
                return f"{asset.key} has not been built yet"
            with self.conn.transaction():
                return partitions.status(cur, asset, sql, target)

    def build_partition(self, session: SessionProtocol, asset: Asset, start: datetime, end: datetime,
                        audit: AuditHook | None = None) -> BuildResult:
        """Replace one partition [start, end) of the published incremental table in ONE transaction; the data
        change is recorded in the same commit, so the models reading it are rebuilt by the next run."""
        assert isinstance(session, PostgresSession), "a PostgreSQL build needs a PostgreSQL session"
        sql = transpile((asset.sql or "").strip().rstrip(";"), "postgres", asset.key, self._names())
        target = f"{quote(asset.layer)}.{quote(asset.name)}"
        conn = session.conn
        try:
            with conn.cursor() as cur:
                cur.execute("select pg_advisory_xact_lock(%s)", [_lock_key("partitions:" + asset.key)])
                rows = partitions.one(cur, asset, sql, target, start, end)
                if audit:
                    audit(session, target)
                self._check_fence(cur, asset.key)
                cur.execute(f"insert into {quote(META_SCHEMA)}.data_changes (asset, token) values (%s, %s)",
                            [asset.key, secrets.token_hex(8)])
            conn.commit()
        except BaseException:
            with contextlib.suppress(psycopg.Error):
                conn.rollback()
            raise
        return BuildResult(rows=rows, nbytes=None)

    def processed_partitions(self, asset: Asset) -> dict[datetime, int]:
        with self._lock, self.conn.cursor() as cur:
            return partitions.processed(cur, asset)

    def watermark(self, asset: Asset) -> date | None:
        with self._lock, self.conn.cursor() as cur:
            return self._watermark(cur, f"{quote(asset.layer)}.{quote(asset.name)}", asset)

    @staticmethod
    def _watermark(cur: psycopg.Cursor[Any], relation: str, asset: Asset) -> date | None:
        column = asset.config.time_column
        if not column:
            return None
        try:
            with cur.connection.transaction():  # a savepoint: a wrong column must not abort the publish
                row = cur.execute(f"select max({quote(column)})::date from {relation}".encode()).fetchone()
        except pg_errors.UndefinedColumn:
            raise KibanError(f"time_column '{column}' is not a column of {asset.key}",
                             f"set time_column in {asset.config_path or asset.key} to one of its date columns"
                             ) from None
        except (pg_errors.CannotCoerce, pg_errors.DatatypeMismatch):
            raise KibanError(f"time_column '{column}' of {asset.key} is not a date or timestamp") from None
        return row[0] if row else None

    # -- the publish log ----------------------------------------------------------------------------
    def publishes(self) -> list[tuple[str, str]]:
        """Every publish so far, oldest first: (asset, fingerprint)."""
        return [(a, f) for a, f in self._rows(
            f"select asset, fingerprint from {quote(META_SCHEMA)}.publishes order by published_at")]


def _columns(conn: psycopg.Connection[Any], schema: str, table: str) -> list[tuple[str, str]]:
    """(name, type) of a table's columns in order; [] when it does not exist."""
    return [(str(n), str(t)) for n, t in conn.execute(
        "select a.attname, format_type(a.atttypid, a.atttypmod) from pg_attribute a "
        "join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace "
        "where n.nspname = %s and c.relname = %s and c.relkind = 'r' and a.attnum > 0 and not a.attisdropped "
        "order by a.attnum", [schema, table]).fetchall()]


def _refill(conn: psycopg.Connection[Any], name: str, tmp_name: str) -> bool:
    """Replace the rows of lake.<name> by those of the freshly loaded lake.<tmp_name>, in place, when every old
    column is still there with its type (new columns are added): a view over the table — a model materialized
    as a view, a user's — never blocks a reload (issue 18). False when the table must be replaced whole."""
    old = _columns(conn, "lake", name)
    new = _columns(conn, "lake", tmp_name)
    if not old or not set(old) <= set(new):
        return False
    target = f"{quote('lake')}.{quote(name)}"
    known = {n for n, _ in old}
    for column, kind in new:
        if column not in known:  # schema drift: a new column, as DuckDB's union by name shows it
            conn.execute(f"alter table {target} add column {quote(column)} {kind}".encode())
    names = ", ".join(quote(n) for n, _ in new)
    conn.execute(f"truncate {target}".encode())
    conn.execute(f"insert into {target} ({names}) select {names} from lake.{quote(tmp_name)}".encode())
    conn.execute(f"drop table lake.{quote(tmp_name)}".encode())
    return True


def _replace_view(conn: psycopg.Connection[Any], view: str, sql: str) -> None:
    try:
        with conn.transaction():
            conn.execute(f"drop view if exists lake.{quote(view)}".encode())
    except pg_errors.DependentObjectsStillExist:
        raise KibanError(f"lake.{view} changed its columns, and views depend on it "
                         f"({', '.join(_dependents(conn, 'lake', view))}), so it cannot be replaced",
                         "drop those views (kiban rebuilds its own on the next run)") from None
    conn.execute(f"create view lake.{quote(view)} as {sql}".encode())


def _set_aside_views(cur: psycopg.Cursor[Any], schema: str, name: str) -> list[tuple[str, str, str, str]]:
    """Drop kiban's own views that read ``schema.name`` (directly or through each other), deepest first, and
    return them (schema, view, definition, comment) in the order to make them again: PostgreSQL binds a view to
    the table it reads, so a model materialized as a view over a table model would otherwise block every later
    publish of that table. A view that is not kiban's is left alone: dropping the table then fails, as before."""
    rows = cur.execute(
        "with recursive deps(oid, depth) as ("
        " select r.ev_class, 1 from pg_depend d join pg_rewrite r on r.oid = d.objid"
        "  where d.refobjid = to_regclass(%s) and r.ev_class <> d.refobjid"
        " union all"
        " select r.ev_class, deps.depth + 1 from deps join pg_depend d on d.refobjid = deps.oid"
        "  join pg_rewrite r on r.oid = d.objid where r.ev_class <> deps.oid and deps.depth < 100)"
        " select n.nspname, c.relname, max(deps.depth), pg_get_viewdef(c.oid), obj_description(c.oid, 'pg_class')"
        " from deps join pg_class c on c.oid = deps.oid join pg_namespace n on n.oid = c.relnamespace"
        " where c.relkind = 'v' group by c.oid, n.nspname, c.relname order by 3",
        [f"{quote(schema)}.{quote(name)}"]).fetchall()
    if not rows or not all(str(comment or "").startswith(COMMENT_PREFIX) for *_, comment in rows):
        return []  # none, or someone else's among them: the drop says so
    for view_schema, view, *_ in reversed(rows):
        cur.execute(f"drop view {quote(view_schema)}.{quote(view)}".encode())
    return [(view_schema, view, definition, comment) for view_schema, view, _, definition, comment in rows]


def _restore_views(cur: psycopg.Cursor[Any], views: list[tuple[str, str, str, str]]) -> None:
    """Make the views :func:`_set_aside_views` dropped again, with their fingerprints (a view whose inputs changed
    is rebuilt by its own plan). One that no longer binds (a column it reads is gone) stays dropped: its own build
    makes it again, or fails and says why."""
    for view_schema, view, definition, comment in views:
        target = f"{quote(view_schema)}.{quote(view)}"
        try:
            with cur.connection.transaction():
                cur.execute(f"create view {target} as {definition}".encode())
                cur.execute(f"comment on view {target} is {literal(comment)}".encode())
        except psycopg.Error:
            continue


def _dependents(conn: psycopg.Connection[Any], schema: str, name: str) -> list[str]:
    """The views that read ``schema.name``."""
    return sorted({f"{s}.{v}" for s, v in conn.execute(
        "select distinct vn.nspname, vc.relname from pg_depend d join pg_rewrite r on r.oid = d.objid "
        "join pg_class vc on vc.oid = r.ev_class join pg_namespace vn on vn.oid = vc.relnamespace "
        "join pg_class t on t.oid = d.refobjid join pg_namespace tn on tn.oid = t.relnamespace "
        "where tn.nspname = %s and t.relname = %s and vc.oid <> t.oid", [schema, name]).fetchall()})


def _lock_key(text: str) -> int:
    """A stable advisory-lock key for a name (signed 32-bit fits pg_advisory_xact_lock(bigint))."""
    return zlib.crc32(text.encode()) - 2**31


def _text_in_byte_order(cur: psycopg.Cursor[Any], table: str) -> None:
    """Every text column of a freshly built ``table`` in ``COLLATE "C"``, as lake text is: a column computed
    from literals or functions (``case … then 'a' else 'B' end``, ``dayname(d)``) takes the database's default
    collation, and a model reading it would order, compare, min and max it in that collation (``a`` < ``B`` in
    en_US) where DuckDB orders bytes (``B`` < ``a``). The table is new and not yet visible: no one waits."""
    columns = cur.execute(
        "select a.attname, format_type(a.atttypid, a.atttypmod) from pg_attribute a "
        "where a.attrelid = %s::regclass and a.attnum > 0 and not a.attisdropped and a.attcollation <> 0 "
        "and a.attcollation <> 'pg_catalog.\"C\"'::regcollation order by a.attnum", [table]).fetchall()
    if columns:
        changes = ", ".join(f'alter column {quote(name)} type {kind} collate "C"' for name, kind in columns)
        cur.execute(f"alter table {table} {changes}".encode())
