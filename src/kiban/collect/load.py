"""One load of one source table: read → type → quarantine → de-duplicate → land → commit.

The steps, and why each is safe to kill at any moment:

1. Take the table's collection lock; remove leftovers of loads that died (files no manifest names).
2. Resolve the URL (``env:NAME``), read the last committed cursor; ``since`` = cursor − lookback.
3. Stream the connector's batches: cast declared columns (rows that fail → quarantine), add ``_load_id``
   and ``_loaded_at`` — memory holds a batch or two. When nothing needs the whole load at once (no primary
   key, no look-back against earlier loads, no scd2, no detect_deletes: :func:`streams`), the batches go
   straight to ``lake/SOURCE/TABLE/load_date=…/LOAD_ID[-N].parquet`` and the schema, drift and cursor are
   read back from those files. Otherwise they are staged as Parquet under ``lake/_staging``, and
4. DuckDB (bounded memory; a scratch file next to the staging for big loads) drops duplicates on the
   primary key (the newest cursor wins), rows already landed (same key and cursor; incremental), rows
   unchanged since the current version (scd2), adds deletion rows (detect_deletes), and compares the schema
   with the last committed one (drift); the rows that land stream from its query into the lake files.
5. The refused rows go to ``lake/_quarantine/…``; then the manifest commits — load, counts, schema, cursor,
   files — in ONE store transaction. Until that commit nobody sees the files, and the cursor has not moved;
   a refused or failed load removes the data files it wrote (a killed one leaves them to the next load).
"""

from __future__ import annotations

import os
import secrets
import shutil
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from kiban import envref
from kiban.collect import lake as layout
from kiban.collect import sessions, shared_lake
from kiban.collect.casting import Declared, cast_batch
from kiban.collect.connector import EXACT_DECIMAL, BadRow, ReadContext, SourceError, exact_numbers, read_batches
from kiban.collect.landing import (
    ORDINAL,
    LoadFailed,
    LoadJob,
    LoadResult,
    finalize,
    finalize_streamed,
    refuse,
)
from kiban.collect.manifest import Fence, LoadRecord, Manifests, TableState
from kiban.collect.spec import LOAD_ID, LOADED_AT, SourceSpec, TableSpec
from kiban.engines.base import Fenced
from kiban.errors import KibanError, RunLockedError, did_you_mean
from kiban.quoting import quote
from kiban.status import LoadStatus
from kiban.store import Store, utcnow

if TYPE_CHECKING:
    from kiban.project import Project

__all__ = ["LoadCancelled", "LoadFailed", "LoadJob", "LoadResult", "Replay", "load_claimed", "load_table", "streams"]
SCRATCH_FILE_ROWS = 2_000_000  # above this many rows, a load de-duplicates in a database file, not in memory
QUARANTINE_SCHEMA = pa.schema([("row_number", pa.int64()), ("location", pa.string()), ("file", pa.string()),
                               ("line", pa.int64()), ("column", pa.string()), ("raw", pa.string()),
                               ("reason", pa.string()), ("load_id", pa.string())])


class LoadCancelled(KibanError):
    """The load was asked to stop (cancel, timeout) between two batches."""


def asset_key(source: str, table: str) -> str:
    return f"lake.{source}_{table}"


def new_load_id(now: datetime) -> str:
    """Sortable by time (milliseconds), unique by its random tail."""
    return now.strftime("%Y%m%dT%H%M%S%f")[:-3] + "-" + secrets.token_hex(3)


def resolve_source_url(source_name: str, table_name: str, source: SourceSpec) -> str | None:
    """The connection URL; ``env:NAME`` from the environment (the value is never shown)."""
    if source.url is None:
        return None
    return envref.resolve(source.url, lambda name: SourceError(
        source_name, table_name, f"environment variable {name} is not set (url: env:{name})",
        f"export {name}=... before collecting"))


# Time cursors: the least the next load reads again behind the last cursor, in seconds. The last cursor value
# itself is always read again (two changes can share one second: MariaDB's `ON UPDATE CURRENT_TIMESTAMP`
# stores seconds); a few seconds more cover the moments between asking the source for its open transactions
# and taking the read's snapshot, and a cursor stored to the second (a row written at 10:00:00.9 says 10:00:00).
DEFAULT_LOOKBACK_S = 5.0


def clock_floor(cursor: Any, read_at: datetime | None, zones: tuple[str, ...] = (),
                now: datetime | None = None) -> Any:
    """Where to read from when the last cursor is ahead of the clock — a row dated in the future (a typo, a client
    whose clock runs fast), or a wall clock set back (the end of daylight saving time repeats an hour): the
    clock's reading when the last load started, in the cursor's terms, less what a wall clock was set back since.
    Changes made after that carry no earlier cursor. None when the cursor is not ahead (or not a time).

    A naive time cursor may be UTC or a wall clock: UTC, the project's timezone and this machine's are tried. Only
    a cursor ahead of every one of them is ahead for certain; then the earliest is taken (reading more again is
    safe). A cursor ahead of one and not of another (a UTC cursor a few hours fast, with the project in Tokyo) is
    kept: it may be a wall clock's."""
    if read_at is None or not isinstance(cursor, date):
        return None
    from zoneinfo import ZoneInfo

    then = read_at.replace(tzinfo=UTC) if read_at.tzinfo is None else read_at.astimezone(UTC)
    now = (now or datetime.now(UTC)).astimezone(UTC)
    if isinstance(cursor, datetime) and cursor.tzinfo is not None:
        return then if cursor > then else None
    floors = []
    for zone in (None, *zones, ""):  # UTC, the project's, this machine's ("": the C library's local time)
        def wall(at: datetime, zone: str | None = zone) -> datetime:
            local = at if zone is None else at.astimezone() if zone == "" else at.astimezone(ZoneInfo(zone))
            return local.replace(tzinfo=None)
        # a wall clock set back since the last read shows less now than then plus the time that passed
        floor = min(wall(then), wall(now) - (now - then))
        floors.append(floor if isinstance(cursor, datetime) else floor.date())
    return min(floors) if cursor > max(floors) else None


def since_of(cursor: Any, table: TableSpec, reread_s: float | None = None, floor: Any = None) -> Any:
    """Where an incremental read starts (inclusive): the last cursor minus the look-back (None: read everything).

    For a time cursor the look-back is the largest of the declared ``lookback:``, :data:`DEFAULT_LOOKBACK_S`,
    and ``reread_s`` — what the last load recorded: how long the source's oldest open transaction had been
    running when it read (a transaction's rows carry a cursor no older than its start, and commit later)."""
    if cursor is None or table.mode != "incremental":
        return None
    if floor is not None:  # a cursor ahead of the clock (a row dated in the future, a wall clock set back) reads
        cursor = floor  # from the clock (clock_floor): changes made since carry no earlier value than it showed
    back = table.lookback_value() or 0
    if isinstance(cursor, date):  # datetime too
        back = max(back, DEFAULT_LOOKBACK_S if reread_s is None else max(reread_s, DEFAULT_LOOKBACK_S))
    if not back:
        return cursor
    if isinstance(cursor, datetime):
        return cursor - timedelta(seconds=back)
    if isinstance(cursor, date):
        return cursor - timedelta(days=int(back // 86400))
    if isinstance(cursor, int) and not isinstance(cursor, bool):
        return cursor - int(back)
    if isinstance(cursor, Decimal):
        return cursor - Decimal(str(back))
    if isinstance(cursor, float):
        return cursor - back
    return cursor


def _ahead(cursor: Any, floor: Any) -> bool:
    """Whether a time cursor is more than a minute ahead of the clock floor (a few seconds are usual: rows stamped
    between a load's start and its read)."""
    if floor is None:
        return False
    return bool(cursor - floor > timedelta(minutes=1)) if isinstance(cursor, datetime) else True


def late_commits(table: TableSpec, ctx: ReadContext, record: LoadRecord) -> list[str]:
    """After an incremental read: how far back the next load must read (``record.reread_s``), and warnings
    where this configuration can lose rows that commit late."""
    if table.mode != "incremental" or ctx.source.type not in ("postgres", "mysql"):
        if isinstance(record.cursor, date):
            record.reread_s = DEFAULT_LOOKBACK_S
        return []
    cursor, notes = record.cursor, []
    if isinstance(cursor, date):
        # a transaction open when the source was asked had run open_for; one that began after the question (and
        # before the read's snapshot) is not in the answer, but stamps its rows no earlier than the question: the
        # time from the question to now bounds how far behind the cursor it can be (a loaded machine can take
        # seconds between the two — a 100-kill soak under load lost a row to that gap before)
        waited = time.monotonic() - ctx.open_seen_at if ctx.open_seen_at is not None else 0.0
        record.reread_s = DEFAULT_LOOKBACK_S + (ctx.open_for or 0.0) + waited
        if ctx.open_for is None and table.lookback is None:
            notes.append(f"cannot see the source's open transactions (PostgreSQL: grant pg_read_all_stats; "
                         f"MySQL: grant PROCESS): a transaction running longer than {DEFAULT_LOOKBACK_S:g} s "
                         f"can commit rows behind the cursor that no load reads — declare `lookback:` longer "
                         "than the longest transaction that writes this table")
    elif cursor is not None and table.lookback is None and (ctx.open_for is None or ctx.open_for > 0):
        what = "could not see whether transactions were open" if ctx.open_for is None else \
            f"a transaction had been open for {ctx.open_for:.1f} s"
        notes.append(f"{what} while reading by the cursor {table.cursor}: a value it took before this read and "
                     f"commits after it (an id below {cursor}) is never read — declare `lookback:` (a number of "
                     "ids) or use a time cursor")
    return notes


class _Staging:
    """Typed batches on disk: a new part whenever the schema changes (union_by_name reads them together)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.parts: list[Path] = []
        self._writer: pq.ParquetWriter | None = None
        self._schema: pa.Schema | None = None

    def write(self, table: pa.Table) -> None:
        if self._writer is None or not table.schema.equals(self._schema):
            self.close()
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / f"part-{len(self.parts)}.parquet"
            # read once, soon, by DuckDB: no codec, no dictionaries, no statistics — just fast to write
            self._writer = pq.ParquetWriter(path, table.schema, compression="none", use_dictionary=False,
                                            write_statistics=False)
            self._schema = table.schema
            self.parts.append(path)
        self._writer.write_table(table)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class _Quarantine:
    """Refused rows of this load, numbered and written to a staging file as they come (memory holds counts)."""

    def __init__(self, load_id: str, folder: Path) -> None:
        self.load_id, self.path = load_id, folder / "quarantine.parquet"
        self.count = 0
        self.reasons: dict[str, int] = {}
        self._writer: pq.ParquetWriter | None = None

    def add(self, rows: list[BadRow]) -> None:
        if not rows:
            return
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self.path, QUARANTINE_SCHEMA, compression="snappy")
        self._writer.write_table(pa.Table.from_pylist(
            [dict(row_number=self.count + i, location=r.location, file=r.file, line=r.line, column=r.column,
                  raw=r.raw[:4000], reason=r.reason, load_id=self.load_id) for i, r in enumerate(rows)],
            schema=QUARANTINE_SCHEMA))
        self.count += len(rows)
        for row in rows:
            key = f"column {row.column}" if row.column else row.reason.split(":")[0]
            self.reasons[key] = self.reasons.get(key, 0) + 1

    def finish(self, target: Path) -> int:
        """Move the refused rows to their place in the lake; returns the file's size."""
        self.close()
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.path, target)
        layout.durable(target)
        return target.stat().st_size

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def summary(self) -> str:
        return ", ".join(f"{n} × {k}" for k, n in sorted(self.reasons.items(), key=lambda kv: -kv[1])[:3])


@dataclass(frozen=True)
class Replay:
    """Quarantined rows loaded again (``kiban quarantine replay``): their batches, read instead of the source,
    and which rows they are (load id, row number), marked replayed in the commit that lands them."""

    batches: Any
    rows: list[tuple[str, int]]


def load_table(project: Project, source_name: str, table_name: str, store: Store, *, run_id: str | None = None,
               cancel: threading.Event | None = None, rows_per_file: int = layout.ROWS_PER_FILE,
               replay: Replay | None = None) -> LoadResult:
    """Collect one table of one source into the lake; returns what landed. Raises :class:`SourceError`
    (unreadable source, bad options), :class:`LoadFailed` (refused: nothing landed) or :class:`LoadCancelled`.

    ``replay`` replaces the connector (replaying quarantined rows): see :class:`Replay`."""
    return _load(project, _Call(source_name, table_name, store, run_id, cancel, rows_per_file, replay))


def load_claimed(project: Project, source_name: str, table_name: str, store: Store, fence: Fence,
                 cancel: threading.Event | None = None) -> LoadResult:
    """:func:`load_table` for a worker's claim (``kiban.workers``): the claim's ``fence`` is checked before the
    Delta commit and inside the manifest's transaction, and the table's collection lock is taken over from the
    run's earlier claim of it (a worker paused or killed past its lease) — whose load then commits nothing.
    Raises ``kiban.engines.base.Fenced`` when this claim itself was taken over."""
    return _load(project, _Call(source_name, table_name, store, fence.run_id, cancel, layout.ROWS_PER_FILE, None,
                                fence))


@dataclass(frozen=True)
class _Call:
    """How :func:`load_table` / :func:`load_claimed` were called."""

    source_name: str
    table_name: str
    store: Store
    run_id: str | None
    cancel: threading.Event | None
    rows_per_file: int
    replay: Replay | None
    fence: Fence | None = None


def _load(project: Project, call: _Call) -> LoadResult:
    source_name, table_name, store, run_id, replay = call.source_name, call.table_name, call.store, call.run_id, \
        call.replay
    source = project.sources[source_name]
    table = source.tables[table_name]
    asset = asset_key(source_name, table_name)
    started = utcnow()
    load_id = new_load_id(started)
    lock = f"collect:{project.name}:{asset}"
    holder = run_id or load_id  # a run's heartbeat keeps the locks it holds fresh
    try:
        store.acquire_lock(lock, holder, steal=call.fence.steals if call.fence else None)
    except RunLockedError:
        raise SourceError(source_name, table_name, "another load of this table is running",
                          "wait for it to finish (kiban runs shows what is running)") from None
    record = LoadRecord(load_id=load_id, project=project.name, asset=asset, source=source_name, table=table_name,
                        started_at=started, run_id=run_id, kind="load" if replay is None else "replay",
                        replays=list(replay.rows) if replay else [])
    fenced = False
    try:
        manifests = Manifests(store)
        state = manifests.state(project.name, asset)
        # shared storage: undo a Delta commit no manifest recorded; this load's commit must follow that version
        base = shared_lake.repair(project, asset, state)
        state = shared_lake.with_local_files(project, state)  # earlier loads collected on another machine
        floor = clock_floor(state.cursor, state.read_at, (project.config.timezone,)) if state else None
        result = LoadResult(record, cursor_before=state.cursor if state else None,
                            since=since_of(state.cursor, table, state.reread_s, floor)
                            if state and replay is None else None,
                            reread_before=state.reread_s if state else None)
        if state and replay is None and table.mode == "incremental" and _ahead(state.cursor, floor):
            result.notes.append(f"{asset}: the last cursor ({state.cursor}) is ahead of the clock when the last load "
                                f"read ({floor}): a row dated in the future, or a wall clock set back — this load "
                                "reads from the clock's time instead, so that no change made since is missed (the "
                                "rows ahead are read again by every load until the clock reaches them)")
        job = LoadJob(project=project, source=source, table=table, record=record, result=result,
                      manifests=manifests, state=state, cancel=call.cancel or threading.Event(),
                      rows_per_file=call.rows_per_file, batches=replay.batches if replay else None, fence=call.fence,
                      lake_base=base)
        return _load_locked(job)
    except Fenced:
        fenced = True  # the lock is the new claim's now: not ours to release
        raise
    finally:
        if not fenced:
            store.release_lock(lock, holder)


def _load_locked(job: LoadJob) -> LoadResult:
    project, record, manifests = job.project, job.record, job.manifests
    source_name, table_name, asset = record.source, record.table, record.asset
    layout.remove_leftovers(job.lake, source_name, table_name, manifests.known_paths(project.name, asset))
    url = resolve_source_url(source_name, table_name, job.source) if job.batches is None else None
    consumed = {(p, s, h) for p, s, h in manifests.consumed(project.name, asset)} if job.batches is None else set()
    landed_by = manifests.consumers(project.name, asset) if job.batches is None else {}
    load_sources: dict[str, set[str]] = {}
    for path, ids in landed_by.items():
        for one in ids:
            load_sources.setdefault(one, set()).add(path)
    ctx = ReadContext(source_name=source_name, table_name=table_name, source=job.source, table=job.table,
                      project_root=project.root, url=url, cursor=job.result.cursor_before, since=job.result.since,
                      batch_rows=job.source.batch_rows, cancel=job.cancel,
                      landed=lambda f: (f.path, f.size, f.sha256) in consumed,
                      landed_paths=frozenset(p for p, _, _ in consumed),
                      landed_contents={(size, sha): path for path, size, sha in sorted(consumed)},
                      landed_by={p: frozenset(ids) for p, ids in landed_by.items()},
                      load_sources={one: frozenset(ps) for one, ps in load_sources.items()})
    staging = layout.staging_folder(job.lake, source_name, table_name, record.load_id)
    try:
        return _land(job, ctx, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def streams(table: TableSpec, state: TableState | None) -> bool:
    """Whether a load can land its batches as they come (one pass): nothing in it needs the whole load at once —
    no de-duplication on a primary key, no comparison with the rows of earlier loads (incremental look-back,
    ``history: scd2``, ``detect_deletes``)."""
    if table.primary_key or table.history == "scd2" or table.detect_deletes:
        return False
    return not (table.mode == "incremental" and state is not None and state.files)


def _land(job: LoadJob, ctx: ReadContext, staging: Path) -> LoadResult:
    project, table, record, result, state, manifests = job.project, job.table, job.record, job.result, job.state, \
        job.manifests
    lake, rows_per_file, batches = job.lake, job.rows_per_file, job.batches
    declared = Declared({c.name: c.type for c in table.columns if c.type}, table.primary_key)
    quarantine = _Quarantine(record.load_id, staging)
    one_pass = streams(table, state)
    # one pass: the typed batches go straight to the lake files (invisible until the manifest names them);
    # otherwise they are staged for DuckDB to de-duplicate and compare with earlier loads first
    writer = layout.RollingWriter(lake, lambda n: layout.data_file(record.source, record.table, record.load_id,
                                                                   record.started_at, n), rows_per_file)
    staged = _Staging(staging)
    typer = _Typer(con=sessions.session(), declared=declared, quarantine=quarantine, load_id=record.load_id,
                   loaded_at=record.started_at, ordinal=not one_pass,
                   sink=layout.Background(writer.write if one_pass else staged.write),
                   infer=table.infer_types and batches is None,
                   landed={n: t for n, t in (state.schema if state else ()) if n not in declared.types})
    # three stages, each on its own thread: the connector reads, the typer casts (DuckDB) and stamps, the writer
    # encodes Parquet — batches go through in order, at most two wait at each step (memory stays bounded)
    typing = layout.Background(typer.take)
    try:
        try:
            source_batches = read_batches(ctx) if batches is None else iter(batches)
            for batch in source_batches:
                if ctx.cancel.is_set():
                    raise LoadCancelled(f"{record.asset}: the load was stopped; nothing was committed")
                refused = list(ctx.bad_rows)
                ctx.bad_rows.clear()
                if batch.num_rows:
                    missing = declared.missing(batch.schema.names)
                    if missing:
                        raise ctx.error(f"column {missing[0]} is declared under `columns:` but the source has no "
                                        f"such column", did_you_mean(missing[0], batch.schema.names)
                                        or f"the source's columns: {', '.join(batch.schema.names)[:300]}")
                typing.put((refused, batch))
            typing.put((list(ctx.bad_rows), None))
            ctx.bad_rows.clear()
            if ctx.cancel.is_set():
                raise LoadCancelled(f"{record.asset}: the load was stopped; nothing was committed")
        finally:
            try:
                typing.close()
            finally:
                typer.close()
                staged.close()
        good = typer.good
        result.notes.extend(f"{record.asset}: {n}" for n in typer.notes)
        if ctx.superseded:
            _replays_follow(manifests, ctx)
        result.notes.extend(f"{record.asset}: {n}" for n in ctx.notes)
        if ctx.superseded and shared_lake.from_snapshot(state):
            raise SourceError(record.source, record.table, "this load supersedes earlier loads whose files are "
                              "not on this machine (they were collected on another one)",
                              "collect this table on the machine that collected it before")
        if ctx.superseded and state is not None:  # compared with the loads that stay, not those it replaces
            state = _without(manifests, project.name, state, set(ctx.superseded))
            job = replace(job, state=state)
        record.rows_read = good + quarantine.count  # rows the connector refused were read too
        record.rows_quarantined = quarantine.count
        quarantine_path = layout.quarantine_file(record.source, record.table, record.load_id)
        limit = table.quarantine_limit(record.rows_read)
        if quarantine.count and limit is not None and quarantine.count > limit:
            writer.discard()
            nbytes = quarantine.finish(lake / quarantine_path)
            record.files = [(quarantine_path, "quarantine", quarantine.count, nbytes)]
            return refuse(manifests, record, f"{quarantine.count} of {record.rows_read} rows were quarantined, "
                           f"more than max_quarantined ({table.max_quarantined}): {quarantine.summary()}",
                           f"nothing was landed; see `kiban quarantine show {record.asset}`, fix the source or "
                           "the declared types, then collect again")
        first = not (state and state.files)
        if not good and not quarantine.count and typer.empty is not None and first:
            # the table's first load read a header and no rows: its lake table still gets its columns
            if one_pass:
                writer.write_empty(typer.empty.schema)
            else:
                staged.write(typer.empty)
                staged.close()
        if record.rows_read and not good:
            writer.discard()
            nbytes = quarantine.finish(lake / quarantine_path)
            record.files = [(quarantine_path, "quarantine", quarantine.count, nbytes)]
            return refuse(manifests, record, f"all {record.rows_read} rows were quarantined: "
                           f"{quarantine.summary()}", f"nothing was landed; see `kiban quarantine show "
                           f"{record.asset}`, fix the source or the declared types, then collect again")
        if one_pass:
            written = writer.close()
            work = sessions.session(spill=staging / "tmp", bounded=True)
            try:
                finalize_streamed(work, job, written, good)
            finally:
                work.close()
        else:
            # a big load works in a scratch database file next to its staging, so what it holds never needs the
            # memory; sorts spill to the staging folder too
            work = sessions.session(staging / "work.duckdb" if good > SCRATCH_FILE_ROWS else None,
                                    spill=staging / "tmp", bounded=True)
            try:
                finalize(work, job, staged.parts, good, quarantine.count, writer)
            finally:
                work.close()
    except BaseException:
        quarantine.close()
        writer.discard()  # a failed or refused load leaves no data file behind (a killed one: the next load's job)
        raise
    if quarantine.count:
        nbytes = quarantine.finish(lake / quarantine_path)
        record.files.append((quarantine_path, "quarantine", quarantine.count, nbytes))
        result.notes.append(f"{record.asset}: {quarantine.count} row(s) quarantined ({quarantine.summary()}); "
                            f"see `kiban quarantine show {record.asset}`")
    if record.kind == "load":
        result.notes.extend(f"{record.asset}: {n}" for n in late_commits(table, ctx, record))
    else:
        record.reread_s = result.reread_before  # a replay read no source: the next load reads as far back
    record.status = LoadStatus.COMMITTED
    record.ended_at = utcnow()
    assert record.reconciles, f"counts do not reconcile: {record}"
    if job.fence is not None:  # a worker whose claim was taken over writes no Delta version
        job.fence.verify(manifests.store)
    # shared storage: one Delta commit, following exactly the version this load started from; not yet read
    shared_lake.commit(project, record, state, ctx.superseded, job.lake_base)
    manifests.commit(record, [(f.path, f.size, f.sha256) for f in ctx.files], ctx.superseded, job.fence)
    for load_id, why in sorted(ctx.superseded.items()):
        result.notes.append(f"{record.asset}: load {load_id} retracted, superseded by this load ({why})")
    return result


def _replays_follow(manifests: Manifests, ctx: ReadContext) -> None:
    """A replay load that landed quarantined rows of the loads being superseded holds rows of the old version:
    superseded with them when all its rows came from them; otherwise (it mixes in rows of loads that stay) it is
    kept, with a note."""
    for replay, origins in sorted(manifests.replays_of(sorted(ctx.superseded)).items()):
        if origins <= set(ctx.superseded):
            ctx.supersede(replay, "it replayed quarantined rows of the superseded load(s)")
        else:
            ctx.note(f"replay load {replay} landed quarantined rows of superseded loads and of others: it stays — "
                     f"`kiban loads retract {replay}` if the new version makes its rows wrong")


def _without(manifests: Manifests, project: str, state: TableState, loads: set[str]) -> TableState:
    """The table's state without the data files of ``loads`` (those this load supersedes)."""
    gone = {path for record in manifests.loads(project, load_ids=sorted(loads), limit=len(loads))
            for path, kind, _, _ in record.files if kind == "data"}
    return replace(state, files=tuple(f for f in state.files if f not in gone))


@dataclass
class _Typer:
    """The typing stage of a load: rows the connector refused and each batch, in the order read — declared
    columns cast (failures quarantined, numbered in reading order), ``_load_id``/``_loaded_at`` added, passed on
    to ``sink``."""

    con: duckdb.DuckDBPyConnection
    declared: Declared
    quarantine: _Quarantine
    load_id: str
    loaded_at: datetime
    ordinal: bool
    sink: layout.Background
    good: int = 0
    empty: pa.Table | None = None  # the typed columns of an empty file (a header only), without rows
    infer: bool = False  # infer_types: undeclared text columns get the types their values have
    landed: dict[str, str] = field(default_factory=dict)  # the types the table's undeclared columns have so far
    numbers_typed: bool = False  # the source's exact numbers (text) have their types (exact_types)
    notes: list[str] = field(default_factory=list)  # for the run's output

    def take(self, item: tuple[list[BadRow], pa.RecordBatch | None]) -> None:
        refused, batch = item
        self.quarantine.add(refused)
        if batch is not None and not self.numbers_typed:
            self.numbers_typed = True  # once per load: the first batch (or header) says which columns they are
            self.declared, notes = exact_types(batch.schema, self.declared, self.landed)
            self.notes.extend(notes)
        if self.infer and batch is not None and batch.num_rows:
            self.infer = False  # once per load: every batch of it is cast alike
            self.declared = Declared({**infer_types(self.con, batch, self.declared, self.landed),
                                      **self.declared.types}, self.declared.key)
        header_only = batch is not None and batch.num_rows == 0 and self.empty is None
        if header_only and batch is not None and not self.declared.missing(batch.schema.names):
            typed, _ = cast_batch(self.con, batch, self.declared, 1)
            self.empty = _with_metadata(typed, self.load_id, self.loaded_at, 0, ordinal=self.ordinal)
        if batch is None or batch.num_rows == 0:
            return
        typed, bad = cast_batch(self.con, batch, self.declared, self.good + self.quarantine.count + 1)
        self.quarantine.add(bad)
        typed = _with_metadata(typed, self.load_id, self.loaded_at, self.good, ordinal=self.ordinal)
        self.good += typed.num_rows
        if typed.num_rows:
            self.sink.put(typed)

    def close(self) -> None:
        try:
            self.sink.close()
        finally:
            self.con.close()


def exact_types(schema: pa.Schema, declared: Declared, landed: dict[str, str]) -> tuple[Declared, list[str]]:
    """``declared`` with a type for each column the connector sent as an exact number's text (see
    :func:`kiban.collect.connector.exact_number`) that is not declared: the type the lake table has already
    (``landed``: a table that landed it as DOUBLE before this release keeps loading as DOUBLE — declare
    ``decimal(38,9)`` to switch), else :data:`EXACT_DECIMAL`. A value that does not fit exactly is quarantined,
    its reason saying how to land it. Also a note for each such column kept as a type that is not exact."""
    numbers = {n: kind for n, kind in exact_numbers(schema).items() if n not in declared.types}
    if not numbers:
        return declared, []
    types = {n: landed.get(n, EXACT_DECIMAL) for n in numbers}
    notes = [f"column {n} ({numbers[n]}) lands as {types[n]}, the type the lake table has: declare "
             f"{{name: {n}, type: 'decimal(38,9)'}} under `columns:` to land it exactly (docs/connectors/"
             f"databases.md#types)" for n in numbers if types[n].upper() in ("DOUBLE", "FLOAT", "REAL")]
    hints = {n: f"{kind} lands as {types[n]} unless declared: declare the column's type under `columns:` "
                f"(a wider decimal(p,s), double or varchar) to land such values, then `kiban quarantine replay`"
             for n, kind in numbers.items()}
    return Declared({**types, **declared.types}, declared.key, {**hints, **declared.hints}), notes


INFERRED = ("BOOLEAN", "BIGINT", "DOUBLE", "DATE", "TIMESTAMP")  # tried in this order, as DuckDB's sniffer does
# what a value must look like besides casting (DuckDB casts '1.5' to a bigint 2, and a timestamp to its date)
_SHAPE = {"BOOLEAN": r"(?i)true|false", "BIGINT": r"[+-]?[0-9]+", "DATE": r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}"}


def infer_types(con: duckdb.DuckDBPyConnection, batch: pa.RecordBatch, declared: Declared,
                landed: dict[str, str]) -> dict[str, str]:
    """Types for the undeclared text columns of ``batch``: what the table has already (``landed``: earlier loads
    fixed it), else the first of :data:`INFERRED` that every non-empty value casts to (none: it stays text)."""
    out: dict[str, str] = {}
    names = [n for n in batch.schema.names if n not in declared.types and not n.startswith("_")
             and pa.types.is_string(batch.schema.field(n).type)]
    if not names:
        return out
    con.register("__kiban_infer", batch)
    try:
        for name in names:
            if name in landed:
                if landed[name].upper() != "VARCHAR":
                    out[name] = landed[name]
                continue
            column = quote(name)
            for kind in INFERRED:
                shape = f" or not regexp_full_match(trim({column}), '{_SHAPE[kind]}')" if kind in _SHAPE else ""
                row = con.execute(f"select count(*) filter (where {column} is not null and trim({column}) <> '' "
                                  f"and (try_cast(trim({column}) as {kind}) is null{shape})), "
                                  f"count(*) filter (where {column} is not null and trim({column}) <> '') "
                                  "from __kiban_infer").fetchone()
                if row and row[0] == 0 and row[1] > 0:
                    out[name] = kind
                    break
    finally:
        con.unregister("__kiban_infer")
    return out


def _with_metadata(table: pa.Table, load_id: str, loaded_at: datetime, first: int, *, ordinal: bool) -> pa.Table:
    """``_load_id``, ``_loaded_at`` and (for de-duplication) the row ordinal, built from NumPy buffers: no Python
    object per row, and no ``pa.array(ndarray)`` (which imports pandas, a third of a second at start-up)."""
    import numpy as np

    n = table.num_rows
    text = load_id.encode()
    offsets = np.arange(0, (n + 1) * len(text), len(text), dtype=np.int32)
    load = pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(text * n)])
    micros = np.datetime64(loaded_at.replace(tzinfo=None), "us").astype(np.int64)
    at = pa.Array.from_buffers(pa.timestamp("us"), n, [None, pa.py_buffer(np.full(n, micros, dtype=np.int64))])
    table = table.append_column(LOAD_ID, load).append_column(LOADED_AT, at)
    if ordinal:
        order = np.arange(first, first + n, dtype=np.int64)
        table = table.append_column(ORDINAL, pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(order)]))
    return table
