"""Which rows of a load land, and what the load says about itself: de-duplication on the primary key, comparison
with earlier loads (incremental look-back, ``history: scd2``, ``detect_deletes``), schema drift, the new cursor and
watermark — from DuckDB over the staged batches (:func:`finalize`) or over the lake files a one-pass load already
wrote (:func:`finalize_streamed`). A refused load is recorded by :func:`refuse`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from kiban.collect import lake as layout
from kiban.collect.casting import quote
from kiban.collect.connector import SourceError
from kiban.collect.drift import ACTIONS, compare
from kiban.collect.drift import note as drift_note
from kiban.collect.manifest import Fence, LoadRecord, Manifests, TableState
from kiban.collect.spec import LOAD_ID, LOADED_AT, SOURCE_FILE, SOURCE_LINE, SourceSpec, TableSpec
from kiban.errors import did_you_mean
from kiban.quoting import literal as _literal
from kiban.status import LoadStatus
from kiban.store import utcnow

if TYPE_CHECKING:
    from kiban.project import Project

ORDINAL = "__kiban_ord"  # a row's position in the load: the last one read wins among equal cursors
DELETED = "_deleted"  # detect_deletes: true on the rows that say "this key is gone from the source"
ROW_HASH = "_row_hash"  # history: scd2: the hash of a version's values, to land only what changed
KIBAN_COLUMNS = (LOAD_ID, LOADED_AT, SOURCE_FILE, SOURCE_LINE, ORDINAL, DELETED, ROW_HASH)
BATCH_ROWS = 100_000  # rows per batch from DuckDB to the lake writer
# which landed version of a key is the newest: the latest load's (loads of a table never overlap, and each reads a
# later snapshot of the source), then the newest cursor — never the cursor first: a transaction that began
# earlier can commit a smaller updated_at (PostgreSQL's now() is the transaction's start) after a larger one
LEGACY_FOLDER_COLUMN = "load_date"  # what a Hive-guessing reader made of the lake's old day folders
LATEST_ORDER = f"{quote(LOADED_AT)} desc, {quote(LOAD_ID)} desc"


class LoadFailed(SourceError):
    """The load was refused (too many quarantined rows, schema drift under on_drift: fail): nothing landed."""

    exit_code = 1

    def __init__(self, record: LoadRecord, message: str, hint: str | None = None) -> None:
        super().__init__(record.source, record.table, message, hint)
        self.record = record


@dataclass
class LoadResult:
    record: LoadRecord
    notes: list[str] = field(default_factory=list)
    cursor_before: Any = None
    since: Any = None
    watermark: date | None = None  # max(time_column) of the rows read, when the table declares one
    reread_before: float | None = None  # the last committed load's reread_s


def newer(old: Any, new: Any) -> Any:
    """The later of two cursor values (None: none yet)."""
    if new is None:
        return old
    if old is None:
        return new
    try:
        return max(old, new)
    except TypeError:  # the cursor column changed type: the new value counts
        return new


def refuse(manifests: Manifests, record: LoadRecord, message: str, hint: str) -> LoadResult:
    """Record a refused load (for `kiban show` and the quarantine), land nothing, move no cursor."""
    record.status, record.error, record.ended_at = LoadStatus.FAILED, message, utcnow()
    record.rows_landed, record.rows_dropped, record.rows_deleted, record.cursor = 0, 0, 0, None
    manifests.commit(record, [])
    raise LoadFailed(record, message, hint)


def judge_drift(manifests: Manifests, record: LoadRecord, result: LoadResult, table: TableSpec,
                before: Sequence[tuple[str, str]], schema: Sequence[tuple[str, str]],
                files_on_refusal: list[Any] | None = None) -> None:
    """Compare the load's schema with the last committed one: record the drift and note it, or — under
    ``on_drift: fail`` — refuse the load (``files_on_refusal``: what the refused load's record lists)."""
    names = {n for n, _ in schema}
    # loads of older versions recorded the lake folder's load_date=…/ as a column: not the source's
    before = [(n, t) for n, t in before if n != LEGACY_FOLDER_COLUMN or n in names]
    changes = compare(before, schema)
    if not changes:
        return
    action = ACTIONS[table.on_drift]
    record.drift = [(d, action) for d in changes]
    message = drift_note(record.asset, changes, table.on_drift)
    if table.on_drift == "fail":
        if files_on_refusal is not None:
            record.files = files_on_refusal
        refuse(manifests, record, message.split(": ", 1)[1],
               "set on_drift: evolve (or warn) on the table to accept it, or fix the source")
    result.notes.append(message)


def _files_sql(paths: list[Path] | list[str]) -> str:
    # hive_partitioning off: the lake's folder load_date=…/ is not a column (a source column load_date is)
    return ("read_parquet([" + ", ".join(_literal(str(p)) for p in paths) + "], union_by_name = true, "
            "hive_partitioning = false)")


@dataclass(frozen=True)
class LoadJob:
    """One load of one table as its steps share it (``collect.load`` reads and types, ``finalize`` lands): what
    it loads, what it records, and the table's state before it — passed down once instead of lists of 11–14
    parameters. ``record`` and ``result`` fill in as the load goes; the rest is fixed for the load."""

    project: Project
    source: SourceSpec
    table: TableSpec
    record: LoadRecord  # the manifest entry being written: load id, start, run, kind, replayed rows
    result: LoadResult
    manifests: Manifests
    state: TableState | None  # the table's committed state before this load (None: its first)
    cancel: threading.Event
    rows_per_file: int = layout.ROWS_PER_FILE
    batches: Any = None  # replaying quarantined rows: these record batches instead of the connector's
    fence: Fence | None = None  # a worker's claim: checked before the Delta commit and inside the manifest's
    lake_base: int | None = None  # shared storage: the Delta version this load's commit must follow (after repair)

    @property
    def lake(self) -> Path:
        return self.project.lake_dir


def finalize(con: duckdb.DuckDBPyConnection, job: LoadJob, parts: list[Path], good: int, quarantined: int,
             writer: layout.RollingWriter) -> None:
    """De-duplicate the staged rows, compare them with earlier loads, and write what lands through ``writer``."""
    lake, table, record, result, state, manifests = job.lake, job.table, job.record, job.result, job.state, \
        job.manifests
    prior = [lake / p for p in state.files] if state else []
    if parts:
        con.execute(f"create view staged as select * from {_files_sql(parts)}")
        columns = [(r[0], r[1]) for r in con.execute("describe staged").fetchall()]
    else:
        columns = list(state.schema) if state else []
        con.execute("create table staged as select 1 where false")  # nothing read: a placeholder
    schema = [(n, t) for n, t in columns if n not in KIBAN_COLUMNS]
    names = [n for n, _ in schema]
    if parts:
        _check_columns(record, table, names)
    cursor = table.cursor
    # -- drift ------------------------------------------------------------------------------------------------
    if state and parts:
        judge_drift(manifests, record, result, table, state.schema, schema)
    record.schema = schema if parts else (list(state.schema) if state else [])
    # -- which rows land --------------------------------------------------------------------------------------
    rows = "staged"
    if parts and table.primary_key:
        order = (f"{quote(cursor)} desc nulls last, " if cursor else "") + f"{ORDINAL} desc"
        con.execute(f"create view deduped as select * from staged qualify row_number() over (partition by "
                    f"{_cols(table.primary_key)} order by {order}) = 1")
        rows = "deduped"
    if parts and prior and table.mode == "incremental":
        rows = _unseen_changes(con, table, rows, names, prior, result.since)
    history = table.history == "scd2"
    current = bool(prior) and (history or table.detect_deletes) and bool(table.primary_key)
    if current:
        latest_order = LATEST_ORDER + (f", {quote(cursor)} desc nulls last" if cursor else "")
        deleted = f"coalesce({DELETED}, false)" if _has_column(con, prior, DELETED) else "false"
        hashed = ROW_HASH if _has_column(con, prior, ROW_HASH) else "null::varchar"
        con.execute(f"create table current_rows as select {_cols(table.primary_key)}, {deleted} as {DELETED}, "
                    f"{hashed} as {ROW_HASH} from {_files_sql(prior)} qualify row_number() over "
                    f"(partition by {_cols(table.primary_key)} order by {latest_order}) = 1")
    extra = ""
    if history and parts:
        extra += f", md5(cast({{{', '.join(f'{_literal(n)}: {quote(n)}' for n in names)}}} as varchar)) as {ROW_HASH}"
    if table.detect_deletes:
        extra += f", false as {DELETED}"
    detect = table.detect_deletes and current and table.mode == "full" and record.kind == "load"  # not replays
    if detect and quarantined:
        result.notes.append(f"{record.asset}: deletions not detected in this load: {quarantined} "
                            "row(s) were quarantined and their keys are unknown")
        detect = False
    # a table only where a DELETE or an INSERT follows (scd2 against the current rows, deletions); otherwise the
    # rows stream from the view to the lake files as DuckDB makes them
    materialise = (history and current) or detect
    if parts:
        con.execute(f"create {'table' if materialise else 'view'} landed as select *{extra} from {rows}")
    else:
        con.execute("create table landed as select 1 as x where false")
    if history and current and parts:  # land only new versions: a key that is new, changed or back from deleted
        join = " and ".join(f"l.{quote(c)} is not distinct from c.{quote(c)}" for c in table.primary_key)
        con.execute(f"delete from landed l using current_rows c where {join} and not c.{DELETED} "
                    f"and l.{ROW_HASH} = c.{ROW_HASH}")
    # -- deletions (full mode): keys of the current state that this load did not see ---------------------------
    if detect:
        on = " and ".join(f"s.{quote(c)} is not distinct from c.{quote(c)}" for c in table.primary_key)
        seen = f"(select {_cols(table.primary_key)} from staged)" if parts else "(select null where false)"
        gone_sql = (f"select c.* exclude ({DELETED}, {ROW_HASH}) from current_rows c anti join {seen} s on {on} "
                    f"where not c.{DELETED}") if parts else \
            f"select * exclude ({DELETED}, {ROW_HASH}) from current_rows where not {DELETED}"
        con.execute(f"create table gone as {gone_sql}")
        record.rows_deleted = int(con.execute("select count(*) from gone").fetchone()[0])  # type: ignore[index]
        if record.rows_deleted:
            stamp = [record.load_id, record.started_at]
            if parts:
                con.execute(f"insert into landed by name select *, ? as {LOAD_ID}, ?::timestamp as {LOADED_AT}, "
                            f"true as {DELETED} from gone", stamp)
                result.notes.append(f"{record.asset}: {record.rows_deleted} row(s) gone from the source, "
                                    "landed as deletions")
            else:
                con.execute(f"create or replace table landed as select *, ? as {LOAD_ID}, "
                            f"?::timestamp as {LOADED_AT}, true as {DELETED} from gone", stamp)
    if table.time_column and table.time_column in names:
        with contextlib.suppress(duckdb.Error):  # not a date: the checks will say so
            found = con.execute(f"select max({quote(table.time_column)})::date from staged").fetchone()
            result.watermark = found[0] if found else None
    if cursor and parts:
        newest = con.execute(f"select max({quote(cursor)}) from staged").fetchone()
        record.cursor = newer(result.cursor_before, newest[0] if newest else None)
    else:
        record.cursor = result.cursor_before
    # -- write ------------------------------------------------------------------------------------------------
    has_ordinal = _has_column(con, [], ORDINAL, "landed")
    select = f"select * exclude ({ORDINAL}) from landed" if has_ordinal else "select * from landed"
    reader = con.execute(select).to_arrow_reader(BATCH_ROWS)
    sink = layout.Background(writer.write)
    try:
        for batch in reader:
            if batch.num_rows:
                sink.put(batch)
    finally:
        sink.close()
    total = writer.rows
    if not total and not prior and parts:  # the table's first load landed nothing: an empty file still gives it
        writer.write_empty(reader.schema)  # columns
    record.files = [(p, "data", r, b) for p, r, b in writer.close()]
    landed = total - record.rows_deleted  # deletion rows are not rows read
    record.rows_landed = landed
    record.rows_dropped = good - landed


def finalize_streamed(con: duckdb.DuckDBPyConnection, job: LoadJob, written: list[tuple[str, int, int]],
                      good: int) -> None:
    """The schema, drift, cursor and watermark of a load already written to its lake files (one pass): read
    from the files themselves — their footers, and at most one scan of the cursor and time columns."""
    lake, table, record, result, state, manifests = job.lake, job.table, job.record, job.result, job.state, \
        job.manifests
    first = not (state and state.files)  # a first load's empty file carries the table's columns
    record.files = [(p, "data", r, b) for p, r, b in written if r or (first and len(written) == 1)]
    record.rows_landed, record.rows_dropped = good, 0
    files = [lake / f[0] for f in record.files]
    if not files:
        record.schema = list(state.schema) if state else []
        record.cursor = result.cursor_before
        return
    columns = [(r[0], r[1]) for r in con.execute(f"describe select * from {_files_sql(files)}").fetchall()]
    schema = [(n, t) for n, t in columns if n not in KIBAN_COLUMNS]
    names = [n for n, _ in schema]
    _check_columns(record, table, names)
    if state:
        judge_drift(manifests, record, result, table, state.schema, schema, files_on_refusal=[])
    record.schema = schema
    cursor = table.cursor
    time_column = table.time_column if table.time_column in names else None
    newest: Any = None
    if cursor or time_column:
        wanted = [f"max({quote(cursor)})" if cursor else "null"]
        if time_column:
            wanted.append(f"max({quote(time_column)})::date")
        try:
            found = con.execute(f"select {', '.join(wanted)} from {_files_sql(files)}").fetchone()
        except duckdb.Error:  # the time column is not a date: the checks will say so
            found = con.execute(f"select {wanted[0]} from {_files_sql(files)}").fetchone()
            time_column = None
        if found:
            newest = found[0]
            if time_column:
                result.watermark = found[1]
    record.cursor = newer(result.cursor_before, newest) if cursor else result.cursor_before


def content_hash(names: Sequence[str], present: set[str] | None = None, alias: str = "") -> str:
    """SQL for the hash of a row's source columns (``present``: the columns the relation has; others count as
    NULL; ``alias``: the relation's alias): two versions with equal values have equal hashes."""
    prefix = f"{alias}." if alias else ""
    items = [f"{_literal(n)}: {prefix + quote(n) if present is None or n in present else 'null'}" for n in names]
    return f"md5(cast({{{', '.join(items)}}} as varchar))"


def _unseen_changes(con: duckdb.DuckDBPyConnection, table: TableSpec, rows: str, names: list[str],
                    prior: list[Path], since: Any) -> str:
    """Exactly once per change: of the rows an incremental load read (the last cursor value and the look-back
    are read again), drop those already landed — a key whose newest landed version (by load, then cursor) is
    this very version. A version is the declared ``version:`` column, or else the hash of the row's values, so
    a change that kept its cursor value (two updates in one second) lands. Without a primary key a row is its
    values: a row landed before in the window is dropped. Returns the relation of what lands."""
    cursor = table.cursor
    landed_columns = {r[0] for r in con.execute(f"describe select * from {_files_sql(prior)}").fetchall()}
    # the window the read covered: the look-back, and the rows with no cursor value (read by every load)
    window = f" where ({quote(cursor)} >= ? or {quote(cursor)} is null)" \
        if cursor and since is not None and cursor in landed_columns else ""
    params = [since] if window else None
    if table.version and table.version in landed_columns:
        mine, theirs = f"r.{quote(table.version)}", quote(table.version)
    else:
        mine, theirs = content_hash(names, alias="r"), content_hash(names, landed_columns)
    if table.primary_key and set(table.primary_key) <= landed_columns:
        key = list(table.primary_key)
        order = LATEST_ORDER + (f", {quote(cursor)} desc nulls last" if cursor and cursor in landed_columns else "")
        con.execute(f"create table landed_versions as select {_cols(key)}, {theirs} as __kiban_version "
                    f"from {_files_sql(prior)}{window} qualify row_number() over (partition by {_cols(key)} "
                    f"order by {order}) = 1", params)
        join = " and ".join(f"r.{quote(c)} is not distinct from p.{quote(c)}" for c in key)
    else:
        con.execute(f"create table landed_versions as select distinct {theirs} as __kiban_version "
                    f"from {_files_sql(prior)}{window}", params)
        join = "true"
    con.execute(f"create view fresh as select r.* from {rows} r anti join landed_versions p on {join} "
                f"and {mine} is not distinct from p.__kiban_version")
    return "fresh"


def _cols(names: list[str] | tuple[str, ...]) -> str:
    return ", ".join(quote(n) for n in names)


def _has_column(con: duckdb.DuckDBPyConnection, files: list[Path], column: str, relation: str | None = None) -> bool:
    if relation is None:
        source = _files_sql(files)
        rows = con.execute(f"describe select * from {source}").fetchall()
    else:
        rows = con.execute(f"describe {relation}").fetchall()
    return any(r[0] == column for r in rows)


def _check_columns(record: LoadRecord, table: TableSpec, names: list[str]) -> None:
    wanted = [("primary_key", c) for c in table.primary_key]
    if table.cursor:
        wanted.append(("cursor", table.cursor))
    if table.version:
        wanted.append(("version", table.version))
    for what, column in wanted:
        if column not in names:
            raise SourceError(record.source, record.table, f"{what} column {column} is not among the source's "
                              f"columns", did_you_mean(column, names) or f"columns: {', '.join(names)[:300]}")
