"""The Spark engine: models run as Spark SQL (transpiled from DuckDB's dialect by SQLGlot).

The warehouse is a folder of Parquet: ``<warehouse>/<layer>/<name>/v-<tag>/`` holds one built version, and
``<warehouse>/<layer>/<name>/_kiban.json`` names the published one with its fingerprint. Publishing is
write-audit-swap: write the new version to its own folder, audit it, then replace the pointer file
atomically (``os.replace``) and re-register the table. Readers of the old folder keep reading a complete
old version; a failure before the swap leaves the pointer — and so the published table — untouched.

Lake tables are read natively: the external table ``lake.<name>`` reads exactly the table's files (a collected table:
its committed loads; see ``engines.lake``), with ``<name>_latest`` / ``<name>_history`` as DuckDB offers them.
The session catalog is kiban's own (in-memory): ``prepare`` re-registers every table from the pointer
files, so the files are the truth.

URLs: ``spark:///abs/warehouse`` (local mode, ``?master=local[4]``), ``spark://host:7077/abs/warehouse``
(a standalone master), ``sc://host:15002/abs/warehouse`` (Spark Connect). Other query parameters are
Spark settings (``?spark.executor.memory=4g``). The warehouse folder must be visible at the same path to
kiban and to Spark (a shared mount on a cluster).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import logging
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from kiban.engines import spark_partitions as partitions
from kiban.engines.arrow_io import SparkArrowCursor
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
from kiban.errors import ConfigError, KibanError
from kiban.project import Asset

log = logging.getLogger(__name__)
SCHEMAS = ("lake", "warehouse", "mart")
POINTER = "_kiban.json"
FENCE = "_fence.json"  # {"token": n, "run_id": …, "published_run": …}: the newest claim of a worker on this asset
FENCE_LOCK = "_fence.lock"  # flock: a fence check and the pointer swap are one step
PUBLISHES = "_publishes.jsonl"  # the asset's publish log, one line per swap (appended behind the fence)
FENCE_WAIT = 30.0  # seconds a claim waits for a publish that holds the fence
TMP_PREFIX = "__kiban_tmp_"
PARTITION_LOCK = "_partitions.lock"  # flock: one partition of an asset replaced at a time (engines.spark_partitions)
PARTITION_WAIT = 600.0
KEEP_VERSIONS = 2  # the published version and the one before it (queries that started earlier still read it)


def quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def parse_url(url: str) -> tuple[str | None, str | None, Path, dict[str, str]]:
    """(master, remote, warehouse folder, settings) of a Spark warehouse URL."""
    parts = urlsplit(url)
    settings = dict(parse_qsl(parts.query))
    if not parts.path or parts.path == "/":
        raise ConfigError(f"the Spark warehouse URL {url} names no warehouse folder",
                          "e.g. spark:///data/kiban-warehouse (local), spark://master:7077/data/wh, "
                          "sc://connect-host:15002/data/wh")
    folder = Path(parts.path)
    if parts.scheme == "sc":
        return None, f"sc://{parts.netloc}", folder, settings
    master = settings.pop("master", None) or (f"spark://{parts.netloc}" if parts.netloc else "local[*]")
    return master, None, folder, settings


@contextlib.contextmanager
def _best_effort(what: str) -> Iterator[None]:
    """Bookkeeping that may fail on a session or view already gone: no loss, so not raised — but logged (debug),
    never swallowed."""
    try:
        yield
    except Exception:
        log.debug("spark: %s failed (nothing depends on it)", what, exc_info=True)


class SparkSqlSession:
    """A thread's handle on the shared SparkSession; its statements carry a tag so they can be interrupted."""

    dialect = "spark"  # the SQL it speaks (checks are written for it: kiban.checks.engine_sql)
    zone = "UTC"  # the session's time zone (the project's)

    def __init__(self, spark: Any, tag: str) -> None:
        self.spark = spark
        self.tag = tag
        self.known: dict[str, Any] = {}  # relation → its schema (StructType) when the engine knows it already
        # registers the tables a statement reads before it runs (the engine's: ``SparkEngine._ensure``)
        self.ensure: Callable[[str], None] = _nothing
        with _best_effort("tagging a session"):
            spark.addTag(tag)

    def execute(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        if params:
            raise KibanError("the Spark engine takes no bound parameters in audit SQL")
        self.ensure(sql)
        return [tuple(row) for row in self.spark.sql(sql).collect()]

    def columns_of(self, relation: str) -> list[tuple[str, str]] | None:
        """(name, Spark type) of ``relation`` when its schema is known without asking Spark (None: not known)."""
        schema = self.known.get(relation.strip('`"'))
        return None if schema is None else [(f.name, f.dataType.simpleString()) for f in schema.fields]

    def query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Column names and rows of ``sql``."""
        self.ensure(sql)
        frame = self.spark.sql(sql)
        return list(frame.columns), [tuple(row) for row in frame.collect()]

    def interrupt(self) -> None:
        with _best_effort("interrupting a statement"):
            self.spark.interruptTag(self.tag)

    def close(self) -> None:
        with _best_effort("untagging a session"):
            self.spark.removeTag(self.tag)


class SparkEngine(NotDuckDB):
    """Spark (local, standalone or Spark Connect) as the warehouse."""

    name = "spark"
    label = "Spark"

    def __init__(self, url: str, timezone: str | None = None) -> None:
        master, remote, folder, settings = parse_url(url)
        self.folder = folder
        self.full_refresh = False
        self.rebuild_whole: set[str] = set()
        self._lock = threading.RLock()
        self._counter = 0
        self._names: dict[str, str] = {}
        self._registered: dict[str, str | None] = {}  # layer.name → the version (or view SQL) registered now
        # layer.name → (version, folder, schema JSON) of the published table: registered when SQL first names it
        self._wanted: dict[str, tuple[str, Path, str | None]] = {}
        # asset → (fencing token, run id) of the claim a worker holds (kiban.workers): checked at the swap
        self.fences: dict[str, tuple[int, str]] = {}
        self._schemas: dict[str, tuple[str, dict[str, str]]] = {}  # layer.name → (version, its column types)
        self.timezone = timezone or "UTC"  # the project's: decides hours and dates of instants (was forced UTC)
        self._start = (master, remote, folder, settings)
        self._spark: Any = None  # started on first use: a run with nothing to build never starts a JVM
        self._pending: list[LakeTable] | None = None  # prepared, not registered in the session catalog yet
        self._starting = threading.RLock()

    @property
    def spark(self) -> Any:
        """The SparkSession, started (and the prepared catalog registered) on first use."""
        with self._starting:
            if self._spark is None:
                self._spark = _session(*self._start)
                self._spark.conf.set("spark.sql.session.timeZone", self.timezone)
            pending, self._pending = self._pending, None
            if pending is not None:
                self._register_catalog(pending)
            return self._spark

    def session(self) -> SparkSqlSession:
        with self._lock:
            self._counter += 1
            tag = f"kiban-{os.getpid()}-{self._counter}"
        session = SparkSqlSession(self.spark, tag)
        session.ensure = self._ensure  # the tables its statements read are registered first
        session.zone = self.timezone  # checks are transpiled through it too (kiban.checks.engine_sql)
        return session

    def close(self) -> None:
        """Leave the SparkSession running: starting a JVM costs seconds, and the next run in this process reuses it."""

    @staticmethod
    def retryable(error: BaseException) -> bool:
        from pyspark.errors import AnalysisException, ParseException

        return not isinstance(error, (AnalysisException, ParseException, KibanError, Fenced))

    # -- fencing (workers) ----------------------------------------------------------------------
    def _home(self, asset: str) -> Path:
        layer, name = asset.split(".", 1)
        return self.folder / layer / name

    def claim_fence(self, asset: str, token: int, run_id: str) -> bool:
        """Raise ``asset``'s fence to ``token``; False when a newer claim holds it. Waits for a swap in progress."""
        home = self._home(asset)
        home.mkdir(parents=True, exist_ok=True)
        with _flock(home / FENCE_LOCK, FENCE_WAIT):
            fence = _read_json(home / FENCE)
            if int(fence.get("token", 0)) > token:
                return False
            _write_json(home / FENCE, {**fence, "token": token, "run_id": run_id})
        self.fences[asset] = (token, run_id)
        return True

    def published_by(self, asset: str) -> str | None:
        value = _read_json(self._home(asset) / FENCE).get("published_run")
        return str(value) if value else None

    def _publish(self, home: Path, asset: str, pointer: dict[str, Any]) -> None:
        """The pointer swap, behind the fence when a worker holds a claim on ``asset``."""
        fence = self.fences.get(asset)
        if fence is None:
            self._swap(home, pointer)
            _log_publish(home, pointer, None)
            return
        with _flock(home / FENCE_LOCK, FENCE_WAIT):
            current = _read_json(home / FENCE)
            if int(current.get("token", 0)) != fence[0]:
                raise Fenced(f"{FENCED}{asset}: another worker took this claim over (fencing token {fence[0]}, now "
                             f"{current.get('token')}); this version is not published")
            self._swap(home, pointer)
            _write_json(home / FENCE, {**current, "published_run": fence[1]})
            _log_publish(home, pointer, fence)

    def publishes(self) -> list[tuple[str, str]]:
        """Every publish so far, oldest first: (asset, fingerprint) — as ``PostgresEngine.publishes``."""
        return publish_log(self.folder)

    def _sql(self, sql: str) -> Any:
        return self.spark.sql(sql)

    # -- preparing ----------------------------------------------------------------------------
    def prepare(self, lake_assets: list[Asset],
                collected: Mapping[str, CollectedTable] | None = None) -> dict[str, str]:
        """The lake tables' versions (from their files: no JVM), and the session catalog to rebuild from files —
        registered when Spark is first used, so that a run with nothing to build never starts Spark."""
        versions: dict[str, str] = {}
        readable: list[LakeTable] = []
        for table in lake_tables(lake_assets, collected):  # collected tables: exactly their committed files
            versions[table.asset.key] = table.version
            if not table.files:
                continue
            problem = _unreadable(table.files)
            if problem:  # a broken file fails the lake table's readers, not the whole run
                versions[table.asset.key] = UNREADABLE_LAKE + problem
                log.warning("spark: lake table %s is unreadable: %s", table.asset.key, problem)
            else:
                readable.append(table)
        with self._starting:
            self._pending = readable
        return versions

    def _register_catalog(self, tables: list[LakeTable]) -> None:
        """Register the lake tables and every published version in the session catalog (rebuilt from files)."""
        for schema in SCHEMAS:
            self._sql(f"drop database if exists {quote(schema)} cascade")  # metadata only: tables are external
            self._sql(f"create database {quote(schema)}")
        self._names = {}
        for table in tables:
            try:
                self._register_lake(table)
            except Exception:  # Spark refused what pyarrow read: its readers fail, not the whole run
                log.warning("spark: lake table %s is unreadable", table.asset.key, exc_info=True)
        self._registered = {}
        self._wanted = {}
        self._schemas = {}
        self._sync()

    def _register_lake(self, table: LakeTable) -> None:
        """The external table lake.<name> over exactly the table's files (one Hadoop glob), and its derived views."""
        name = table.name
        self._sql(f"create table lake.{quote(name)} using parquet options (path {literal(_glob(table.files))}, "
                  "mergeSchema 'true')")  # columns of every file (union by name), as DuckDB reads them
        self._names[name.lower()] = "lake"
        if table.collected is None:
            return
        columns = self.spark.table(f"lake.{quote(name)}").columns
        for view, sql in derived_views(name, table.collected, columns):
            self._sql(f"create or replace view lake.{quote(view)} as "
                      f"{transpile(sql, 'spark', f'lake.{view}', zone=self.timezone)}")
            self._names[view.lower()] = "lake"

    def _sync(self) -> None:
        """Take in every published version (other processes publish too: workers): a table is registered when
        SQL first names it (``_ensure``), a view at once."""
        views: list[tuple[str, str, str]] = []
        for layer, name, pointer in self._pointers():
            key = f"{layer}.{name}"
            if pointer.get("kind") == "view":
                if self._registered.get(key) != pointer.get("sql"):
                    self._registered[key] = pointer["sql"]
                    self._wanted.pop(key, None)
                    views.append((layer, name, pointer["sql"]))
            elif pointer.get("version") and self._wanted.get(key, ("",))[0] != pointer["version"]:
                self._want(key, self.folder / layer / name / pointer["version"], pointer.get("schema"))
        for _ in range(len(views)):  # views over views: register what can be, until nothing is left
            left = []
            for layer, name, sql in views:
                try:
                    self._ensure(sql)
                    self._sql(f"create or replace view {quote(layer)}.{quote(name)} as {sql}")
                    self._names[name.lower()] = layer
                except Exception:  # it reads a view not registered yet: tried again in the next round
                    log.debug("spark: view %s.%s not registered yet", layer, name, exc_info=True)
                    left.append((layer, name, sql))
            if len(left) == len(views):
                break
            views = left

    def _pointers(self) -> list[tuple[str, str, dict[str, Any]]]:
        found = []
        for layer in ("warehouse", "mart"):
            base = self.folder / layer
            if not base.is_dir():
                continue
            for entry in sorted(base.iterdir()):
                pointer = entry / POINTER
                if pointer.is_file():
                    with contextlib.suppress(ValueError, OSError):
                        found.append((layer, entry.name, json.loads(pointer.read_text())))
        return found

    def _drop(self, layer: str, name: str) -> None:
        """Unregister a table or view (metadata only: the data are external)."""
        from pyspark.errors import AnalysisException

        try:
            self._sql(f"drop table if exists {quote(layer)}.{quote(name)}")
        except AnalysisException:  # it is a view
            self._sql(f"drop view if exists {quote(layer)}.{quote(name)}")

    def _want(self, key: str, folder: Path, schema: str | None) -> None:
        """``key``'s published version is the one in ``folder``: its name resolves now, it is registered when SQL
        first reads it, and its column types are known from the pointer."""
        layer, name = key.split(".", 1)
        with self._lock:
            self._wanted[key] = (folder.name, folder, schema)
            self._names[name.lower()] = layer
            if schema:
                from pyspark.sql.types import StructType

                self._schemas[key] = (folder.name, _duckdb_types(StructType.fromJson(json.loads(schema))))

    def _ensure(self, sql: str) -> None:
        """Register (again) each published table ``sql`` may read whose current version is not registered yet —
        a run registers only what its statements read, once."""
        with self._lock:
            for key, (version, folder, schema) in list(self._wanted.items()):
                if self._registered.get(key) != version and _mentions(sql, key):
                    layer, name = key.split(".", 1)
                    self._register(layer, name, folder, schema)
                    self._registered[key] = version

    def _cursor(self) -> SparkArrowCursor:
        """What a Python model reads through: published tables straight from their Parquet files, the rest as
        Spark SQL."""
        return SparkArrowCursor(self.spark, self._readable, self._arrow_of)

    def _arrow_of(self, sql: str) -> Any | None:
        """A Python model's read of a published table (``select * from layer.name``, or some of its columns) as
        Arrow, read from the version's Parquet files with pyarrow — typed as ``DataFrame.toArrow()`` types them
        (the pointer's Spark schema; instants in UTC; every column nullable). None when ``sql`` is anything else,
        or the version is not plain Parquet files pyarrow reads: Spark runs it then.

        Why: ``toArrow()`` turns Spark's rows into Arrow batches in the JVM and sends them over a socket; for the
        shop's 1M order lines that took 8.8–21.8 s on a loaded 2-core machine, pyarrow reads the files in 0.6 s.
        """
        import sqlglot
        from sqlglot import exp

        tree = sqlglot.parse_one(sql, read="spark")
        if not isinstance(tree, exp.Select) or {k for k, v in tree.args.items() if v} - {"expressions", "from_"}:
            return None
        tables = list(tree.find_all(exp.Table))
        if len(tables) != 1 or tree.find(exp.Subquery) is not None:
            return None
        with self._lock:
            wanted = self._wanted.get(f"{tables[0].db}.{tables[0].name}")
        if wanted is None or wanted[2] is None:
            return None
        star = [e for e in tree.expressions if isinstance(e, exp.Star)]
        named = [e.name for e in tree.expressions if isinstance(e, exp.Column) and not e.table]
        if len(star) + len(named) != len(tree.expressions) or (star and named):
            return None
        return _parquet_arrow(wanted[1], wanted[2], named or None,
                              self._start[3].get("spark.sql.execution.arrow.useLargeVarTypes") == "true")

    def _readable(self, sql: str) -> None:
        """``_ensure`` for a Python model's cursor, which also probes tables that may not exist yet (a training's
        table before its first publish): a warehouse or mart table with no published version is refused here,
        without a Spark analysis that fails and logs its Java stack trace at ERROR (pyspark's query-context
        logger) for what is an expected answer."""
        import sqlglot
        from sqlglot import exp

        with self._lock:
            known = {key.lower() for key in (*self._wanted, *self._registered)}
        for table in sqlglot.parse_one(sql, read="spark").find_all(exp.Table):
            key = f"{table.db}.{table.name}".lower()
            if table.db.lower() in ("warehouse", "mart") and key not in known:
                raise KibanError(f"{key} has no published version on this Spark warehouse")
        self._ensure(sql)

    def _register(self, layer: str, name: str, folder: Path, schema: str | None = None) -> None:
        """The table ``layer.name`` over ``folder``; with its ``schema`` (JSON, from the pointer) Spark infers
        nothing (no footer reads, no job)."""
        if f"{layer}.{name}" in self._registered:
            self._drop(layer, name)  # nothing to drop after prepare's fresh databases (one call less a model)
        table = f"{quote(layer)}.{quote(name)}"
        if schema:
            from pyspark.sql.types import StructType

            self.spark.catalog.createTable(f"{layer}.{name}", path=str(folder), source="parquet",
                                           schema=StructType.fromJson(json.loads(schema)))
        else:  # a version written before pointers carried the schema
            self._sql(f"create table {table} using parquet location {literal(str(folder))}")
        self._names[name.lower()] = layer

    def published(self) -> dict[str, str]:
        """Every published version: its fingerprint, and ``+<token>`` when a backfill replaced partitions since
        its build (engines.spark_partitions)."""
        return {f"{layer}.{name}": pointer["fingerprint"] + (DATA_TOKEN + pointer["changes"]
                                                             if pointer.get("changes") else "")
                for layer, name, pointer in self._pointers() if "fingerprint" in pointer}

    # -- building -----------------------------------------------------------------------------
    def build(self, session: SessionProtocol, asset: Asset, fingerprint: str, tag: str,
              audit: AuditHook | None = None, python: PythonModels | None = None) -> BuildResult:
        """Write the new version to its own folder, audit it, then swap the pointer and re-register."""
        assert isinstance(session, SparkSqlSession), "a Spark build needs a Spark session"
        with self._lock:
            self._sync()
            names = dict(self._names)
        produced = None
        if asset.python is not None:  # Arrow in, Arrow out (engines.arrow_io); published like a SQL model's result
            if python is None:
                raise KibanError(f"{asset.key} is a Python model, and this build was given nothing to run it with",
                                 "build it through kiban run (or pass kiban.python.models.PythonModelRunner)")
            produced = python.produce(self._cursor(), asset, fingerprint)
            sql = ""
        else:
            sql = transpile((asset.sql or "").strip().rstrip(";"), "spark", asset.key, names, self._tables(names),
                            self.timezone)
        layer, name = asset.layer, asset.name
        home = self.folder / layer / name
        home.mkdir(parents=True, exist_ok=True)
        target = f"{quote(layer)}.{quote(name)}"
        if asset.config.materialized == "view" and produced is None:
            self._drop(layer, name)
            self._sql(f"create or replace view {target} as {sql}")
            watermark = self._watermark(target, asset)
            if audit:
                audit(session, target)
            self._publish(home, asset.key, {"kind": "view", "sql": sql, "fingerprint": fingerprint})
            with self._lock:
                self._names[name.lower()] = layer
                self._registered[asset.key] = sql
                self._wanted.pop(asset.key, None)
            return BuildResult(rows=None, nbytes=None, watermark=watermark)
        version = f"v-{tag}-{secrets.token_hex(4)}"  # never reused: workers' attempt counters all start at 1
        folder = home / version
        tmp = f"{TMP_PREFIX}{layer}_{name}_{tag}".replace("-", "_")
        try:
            frame = self.spark.createDataFrame(produced) if produced is not None else self._model(sql)
            extra: dict[str, Any] = {}
            if asset.config.incremental and produced is None:  # only the recent partitions are computed again
                frame = self._incremental(asset, frame, home)
                extra["code"] = partitions.code_of(asset)
            frame, observed = _observed(frame, asset)
            frame.write.mode("overwrite").parquet(str(folder))
            rows, watermark = observed()  # counted by the write job itself: no second scan
            schema = frame.schema  # known: the version is read back and registered without inferring it again
            self.spark.read.schema(schema).parquet(str(folder)).createOrReplaceTempView(tmp)
            if "code" in extra:
                extra["partitions"] = partitions.counted(self.spark, quote(tmp), asset)
            if audit:
                session.known[tmp] = schema
                audit(session, quote(tmp))  # the new version; the published table is still the old one
            self._publish(home, asset.key, {"kind": "table", "version": version, "fingerprint": fingerprint,
                                            "schema": schema.json(), **extra})
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            self._settle(asset, python)
            raise
        finally:
            session.known.pop(tmp, None)
            with _best_effort(f"dropping the temporary view {tmp}"):
                self.spark.catalog.dropTempView(tmp)
        self._swapped_in(asset, folder, version, schema.json())
        nbytes = sum(f.stat().st_size for f in folder.glob("*.parquet"))
        self._settle(asset, python)
        return BuildResult(rows=rows, nbytes=nbytes, watermark=watermark)

    def _swapped_in(self, asset: Asset, folder: Path, version: str, schema: str | None) -> None:
        """After the pointer names ``version``: this session reads it (registered when a statement first names
        it), and older versions are pruned."""
        self._want(asset.key, folder, schema)
        _prune(folder.parent, version)

    def _settle(self, asset: Asset, python: PythonModels | None) -> None:
        """A training asset's registry follows its publish: promoted when it committed, rejected when not."""
        if python is not None and asset.python is not None:
            try:
                python.settle(self._cursor(), asset)
            except Exception:  # the build's own outcome matters more than this bookkeeping
                log.warning("%s: the model registry could not follow the publish", asset.key, exc_info=True)

    def _tables(self, names: Mapping[str, str]) -> Mapping[str, Mapping[str, str]]:
        """``layer.name`` → its columns (lower name → DuckDB type) for the rewrites that depend on a type: read
        when the transpiler asks for a table the model reads (not for every table), kept per version."""
        return _Types({f"{layer}.{name}" for name, layer in names.items()}, self._types_of)

    def _types_of(self, key: str) -> dict[str, str]:
        layer, name = key.split(".", 1)
        cached = self._schemas.get(key)
        version = self._wanted[key][0] if key in self._wanted else self._registered.get(key) or "lake"
        if cached is None or cached[0] != version:
            columns: dict[str, str] = {}
            with _best_effort(f"reading the types of {key}"):  # a view that does not resolve: no types, no loss
                self._ensure(f"{layer}.{name}")
                columns = _duckdb_types(self.spark.table(f"{quote(layer)}.{quote(name)}").schema)
            cached = self._schemas[key] = (version, columns)
        return cached[1]

    @staticmethod
    def _swap(home: Path, pointer: dict[str, Any]) -> None:
        """The commit point: the pointer file is replaced atomically (write, fsync, rename)."""
        tmp = home / f".{POINTER}.{os.getpid()}.{threading.get_ident()}"
        with open(tmp, "w", encoding="utf-8") as out:
            json.dump(pointer, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, home / POINTER)

    def _watermark(self, relation: str, asset: Asset) -> date | None:
        column = asset.config.time_column
        if not column:
            return None
        from pyspark.errors import AnalysisException

        try:
            self._ensure(relation)
            row = self._sql(f"select cast(max({quote(column)}) as date) from {relation}").collect()
        except AnalysisException:
            raise KibanError(f"time_column '{column}' is not a date column of {asset.key}",
                             f"set time_column in {asset.config_path or asset.key} to one of its date columns"
                             ) from None
        return row[0][0] if row else None

    def _model(self, sql: str) -> Any:
        self._ensure(sql)
        frame = self._sql(sql)
        helpers = [c for c in frame.columns if c.startswith(QUALIFY_COLUMN)]  # of a rewritten SELECT * … QUALIFY
        return frame.drop(*helpers) if helpers else frame

    def _incremental(self, asset: Asset, model: Any, home: Path) -> Any:
        """What an incremental build writes: the published rows before its lookback and the model's from there on
        (engines.spark_partitions); the whole model when it has no usable published version."""
        pointer = _read_json(home / POINTER)
        if self.full_refresh or asset.key in self.rebuild_whole or pointer.get("kind") != "table":
            return partitions.whole(model, asset)
        published = self.spark.read.parquet(str(home / pointer["version"]))
        start = partitions.since(pointer, asset) if partitions.status(pointer, asset, model, published) is None \
            else None
        return partitions.recent(model, published, asset, start) if start else partitions.whole(model, asset)

    def _transpiled(self, asset: Asset) -> str:
        with self._lock:
            self._sync()
            names = dict(self._names)
        return transpile((asset.sql or "").strip().rstrip(";"), "spark", asset.key, names, self._tables(names),
                         self.timezone)

    def partition_blocker(self, asset: Asset) -> str | None:
        """Why partitions of the incremental ``asset`` cannot be rebuilt one by one now (None: they can)."""
        home = self._home(asset.key)
        pointer = _read_json(home / POINTER)
        if pointer.get("kind") != "table":
            return f"{asset.key} has not been built yet"
        return partitions.status(pointer, asset, self._model(self._transpiled(asset)),
                                 self.spark.read.parquet(str(home / pointer["version"])))

    def build_partition(self, session: SessionProtocol, asset: Asset, start: datetime, end: datetime,
                        audit: AuditHook | None = None) -> BuildResult:
        """Replace one partition [start, end): a new version (the other partitions' published rows and the
        model's rows in it) swapped in like a build's. One partition of an asset at a time (a lock file: other
        processes too), so that partitions built side by side never lose each other's rows."""
        sql = self._transpiled(asset)
        home = self._home(asset.key)
        layer, name = asset.layer, asset.name
        with self._lock:
            self._counter += 1
            tmp = f"{TMP_PREFIX}{layer}_{name}_p{os.getpid()}_{self._counter}"
        version = f"v-p-{secrets.token_hex(6)}"
        folder = home / version
        with _flock(home / PARTITION_LOCK, PARTITION_WAIT):
            pointer = _read_json(home / POINTER)
            model = self._model(sql)
            if pointer.get("kind") != "table":
                raise KibanError(f"{asset.key} has not been built yet")
            published = self.spark.read.parquet(str(home / pointer["version"]))
            blocker = partitions.status(pointer, asset, model, published)
            if blocker:
                raise KibanError(blocker)
            try:
                frame = partitions.between(model, published, asset, start, end)
                frame.write.mode("overwrite").parquet(str(folder))
                schema = frame.schema
                self.spark.read.schema(schema).parquet(str(folder)).createOrReplaceTempView(tmp)
                counts = partitions.counted(self.spark, quote(tmp), asset)
                rows = sum(n for s, n in counts.items() if start <= datetime.fromisoformat(s) < end)
                if audit:
                    audit(session, quote(tmp))
                changes = f"{pointer.get('changes', '')}{secrets.token_hex(4)}"[-16:]
                self._publish(home, asset.key, {**pointer, "version": version, "partitions": counts,
                                                "changes": changes, "schema": schema.json()})
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            finally:
                with _best_effort(f"dropping the temporary view {tmp}"):
                    self.spark.catalog.dropTempView(tmp)
            self._swapped_in(asset, folder, version, schema.json())
        return BuildResult(rows=rows, nbytes=None)

    def processed_partitions(self, asset: Asset) -> dict[datetime, int]:
        return partitions.processed(_read_json(self._home(asset.key) / POINTER))

    def watermark(self, asset: Asset) -> date | None:
        return self._watermark(f"{quote(asset.layer)}.{quote(asset.name)}", asset)


@contextlib.contextmanager
def _flock(path: Path, timeout: float) -> Iterator[None]:
    """An exclusive lock on ``path`` (flock: shared mounts that support it), waiting at most ``timeout`` s."""
    with open(path, "a+b") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{path} stayed locked for {timeout:g} s (a paused publisher?)") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _write_json(path: Path, value: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    with open(tmp, "w", encoding="utf-8") as out:
        json.dump(value, out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def publish_log(folder: Path) -> list[tuple[str, str]]:
    """Every publish into the warehouse ``folder`` so far, oldest first: (asset, fingerprint)."""
    found: list[tuple[float, int, str, str]] = []
    for layer in ("warehouse", "mart"):
        base = folder / layer
        for log_file in sorted(base.glob(f"*/{PUBLISHES}")) if base.is_dir() else []:
            for number, line in enumerate(log_file.read_text(encoding="utf-8").splitlines()):
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    entry = json.loads(line)
                    found.append((float(entry["at"]), number, f"{layer}.{log_file.parent.name}",
                                  str(entry["fingerprint"])))
    return [(asset, fingerprint) for _, _, asset, fingerprint in sorted(found)]


class _Types(Mapping[str, Mapping[str, str]]):
    """Tables' column types, read on first use (``SparkEngine._tables``)."""

    def __init__(self, keys: set[str], read: Callable[[str], dict[str, str]]) -> None:
        self.keys_, self.read = keys, read

    def __getitem__(self, key: str) -> Mapping[str, str]:
        if key not in self.keys_:
            raise KeyError(key)
        return self.read(key)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self.keys_))

    def __len__(self) -> int:
        return len(self.keys_)


def _nothing(_sql: str) -> None:
    """A statement's tables need no registering (a session not opened by ``SparkEngine.session``)."""


def _mentions(sql: str, key: str) -> bool:
    """Whether ``sql`` may read the table ``layer.name`` (named with its layer, as transpiled models and checks
    name tables; any case and quoting: a false yes only registers more)."""
    layer, name = (re.escape(part) for part in key.split(".", 1))
    pattern = rf"(?<![\w$])[`\"]?{layer}[`\"]?\s*\.\s*[`\"]?{name}(?![\w$])"
    return re.search(pattern, sql, re.IGNORECASE) is not None


def _unreadable(files: tuple[str, ...]) -> str | None:
    """Why Spark could not read ``files`` as one table (a footer that does not read, a column whose type differs
    between files as Spark sees types), found with pyarrow — no JVM; None when they read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    kinds: dict[str, tuple[str, str]] = {}  # column → (Spark's kind of type, the file that had it first)
    for file in files:
        try:
            schema = pq.read_schema(file)
        except (OSError, pa.ArrowException) as exc:
            return f"{file}: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
        for field in schema:
            kind = _spark_kind(field.type)
            seen = kinds.setdefault(field.name, (kind, file)) if kind else None
            if seen and seen[0] != kind:
                return (f"column {field.name} is {seen[0]} in {seen[1]} and {kind} in {file} "
                        "(Spark does not widen types across files)")
    return None


def _spark_kind(kind: Any) -> str | None:
    """The Spark type an Arrow type reads as (None: a column of nulls, which fits any)."""
    import pyarrow as pa

    if pa.types.is_null(kind):
        return None
    if pa.types.is_dictionary(kind):
        return _spark_kind(kind.value_type)
    if pa.types.is_timestamp(kind):
        return "timestamp" if kind.tz else "timestamp_ntz"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return "string"
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_binary_view(kind):
        return "binary"
    if pa.types.is_time(kind):
        return "time"
    return str(kind)


def _parquet_arrow(folder: Path, schema: str, columns: list[str] | None, large: bool) -> Any | None:
    """The Parquet files of a version in ``folder`` as ``toArrow()`` would give them (``SparkEngine._arrow_of``):
    ``schema`` is the version's Spark schema (JSON); ``columns`` a projection (names as in the schema), None for
    all. None when pyarrow cannot give exactly that: nested columns, files missing or unlike the schema."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    from pyspark.sql.pandas.types import to_arrow_schema
    from pyspark.sql.types import StructType

    target = to_arrow_schema(StructType.fromJson(json.loads(schema)), timezone="UTC", prefers_large_types=large)
    if any(pa.types.is_nested(field.type) for field in target):
        return None
    target = pa.schema([field.with_nullable(True) for field in target])  # Spark reads files as nullable
    if columns is not None:
        if not set(columns) <= set(target.names):  # a name in another case, or not a column: Spark answers it
            return None
        target = pa.schema([target.field(name) for name in columns])
    # Spark writes instants as INT96 (UTC): read as microseconds, as Spark does, not nanoseconds (which overflow)
    files = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(coerce_int96_timestamp_unit="us"))
    try:
        table = ds.dataset(str(folder), format=files).to_table(columns=target.names)
        return table.cast(target)
    except (pa.ArrowException, OSError, KeyError, ValueError):  # Spark reads it (or says why it cannot)
        log.debug("spark: %s read through Spark, not pyarrow", folder, exc_info=True)
        return None


def _duckdb_types(schema: Any) -> dict[str, str]:
    """Lower column name → DuckDB type of a Spark ``StructType`` (the rewrites that depend on a type)."""
    from sqlglot import exp
    from sqlglot.errors import SqlglotError

    columns: dict[str, str] = {}
    for field in schema.fields:
        with contextlib.suppress(SqlglotError, ValueError):
            columns[field.name.lower()] = exp.DataType.build(field.dataType.simpleString(), dialect="spark").sql(
                "duckdb")
    return columns


def _observed(frame: Any, asset: Asset) -> tuple[Any, Callable[[], tuple[int, date | None]]]:
    """``frame`` observed while it is written: its row count and watermark come from the write job itself."""
    from pyspark.errors import AnalysisException
    from pyspark.sql import Observation
    from pyspark.sql import functions as fn

    observation = Observation(f"kiban_{secrets.token_hex(6)}")
    metrics = [fn.count(fn.lit(1)).alias("rows")]
    column = asset.config.time_column
    if column:
        metrics.append(fn.max(fn.col(quote(column))).cast("date").alias("watermark"))
    try:
        observed = frame.observe(observation, *metrics)
    except AnalysisException:
        raise KibanError(f"time_column '{column}' is not a date column of {asset.key}",
                         f"set time_column in {asset.config_path or asset.key} to one of its date columns") from None

    def result() -> tuple[int, date | None]:
        values = observation.get
        return int(values.get("rows") or 0), values.get("watermark")

    return observed, result


def _log_publish(home: Path, pointer: dict[str, Any], fence: tuple[int, str] | None) -> None:
    """One line in the asset's publish log (O_APPEND: one write per line, so lines never interleave)."""
    entry = {"fingerprint": pointer.get("fingerprint"), "version": pointer.get("version"), "at": time.time(),
             "token": fence[0] if fence else None, "run": fence[1] if fence else None}
    fd = os.open(home / PUBLISHES, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(entry) + "\n").encode())
    finally:
        os.close(fd)


def _glob(files: tuple[str, ...]) -> str:
    """One Hadoop glob that matches exactly ``files``: their common folder, then ``{a,b,…}`` of the rest."""
    def escape(text: str) -> str:
        return "".join("\\" + c if c in "\\{}[]*?,^" else c for c in text)

    if len(files) == 1:
        return escape(files[0])
    base = os.path.commonpath(files)
    return escape(base) + "/{" + ",".join(escape(os.path.relpath(f, base)) for f in files) + "}"


def _prune(home: Path, current: str) -> None:
    """Keep the newest KEEP_VERSIONS version folders (the current one always)."""
    versions = sorted((p for p in home.iterdir() if p.is_dir() and p.name.startswith("v-")),
                      key=lambda p: p.stat().st_mtime, reverse=True)
    for old in [p for p in versions if p.name != current][KEEP_VERSIONS - 1:]:
        shutil.rmtree(old, ignore_errors=True)


def _local_cores(master: str | None) -> int:
    """Cores of a local master (``local``, ``local[4]``, ``local[*]``); 8 for a cluster."""
    if not master or not master.startswith("local"):
        return 8
    inside = master.partition("[")[2].split("]")[0].split(",")[0]
    if inside in ("", "*"):
        return os.cpu_count() or 2 if inside else 1
    return max(1, int(inside)) if inside.isdigit() else 2


_SESSIONS: dict[tuple[Any, ...], Any] = {}


def _private_catalog() -> str:
    """A directory for this process's session catalog (empty database folders), removed when it exits."""
    folder = tempfile.mkdtemp(prefix="kiban-spark-catalog-")
    atexit.register(shutil.rmtree, folder, True)
    return folder


def _session(master: str | None, remote: str | None, folder: Path, settings: dict[str, str]) -> Any:
    """The SparkSession for these settings, started once per process."""
    key = (master, remote, str(folder), tuple(sorted(settings.items())))
    if key in _SESSIONS:
        return _SESSIONS[key]
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise ConfigError("the Spark engine needs PySpark", "pip install 'pyspark>=4.0'") from None
    folder.mkdir(parents=True, exist_ok=True)
    builder = SparkSession.builder.appName("kiban")
    if remote:
        builder = builder.remote(remote)
    else:
        builder = (builder.master(master or "local[*]")
                   .config("spark.ui.enabled", "false")
                   .config("spark.ui.showConsoleProgress", "false")
                   .config("spark.sql.catalogImplementation", "in-memory")
                   # the session catalog's databases are this process's own: its tables are external (the
                   # warehouse folder's versions), and processes sharing one folder (workers, a run and the
                   # console) would otherwise drop and re-make the same database directories under each other
                   .config("spark.sql.warehouse.dir", _private_catalog())
                   .config("spark.sql.session.timeZone", "UTC")
                   .config("spark.sql.shuffle.partitions", str(_local_cores(master)))  # small jobs: few tasks
                   .config("spark.sql.adaptive.enabled", "true")  # and adaptive plans coalesce what is left
                   .config("spark.sql.timeType.enabled", "true"))  # lake tables may have TIME columns
    for name, value in settings.items():
        builder = builder.config(name, value)
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # no Java, no Spark Connect client libraries, server unreachable
        raise ConfigError(f"cannot start Spark ({remote or master}): {str(exc).strip().splitlines()[0]}",
                          "Spark needs Java 17+ locally; Spark Connect needs `pip install 'pyspark[connect]'` "
                          "and a reachable server") from None
    _SESSIONS[key] = spark
    return spark

