"""Manifests in the state store: which loads committed, their files, cursors, schemas and drift.

A load becomes part of the lake only when :meth:`Manifests.commit` writes its row, its files, the files
it consumed and its drift events in ONE store transaction. The cursor lives in the load's row, so it
advances in that same commit. Files on disk that no committed (or failed, for quarantine) load names
are leftovers of dead loads: nobody reads them, and the next load of the table removes them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from kiban.status import LoadStatus
from kiban.store import Store, utcnow
from kiban.store.schema import consumed_files, drift_events, load_files, loads, quarantine_replays


@dataclass(frozen=True)
class SchemaChange:
    """One schema change between the last committed load and this one."""

    change: str  # added, dropped, retyped
    column: str
    old_type: str | None
    new_type: str | None

    def describe(self) -> str:
        if self.change == "added":
            return f"new column {self.column} ({self.new_type})"
        if self.change == "dropped":
            return f"column {self.column} ({self.old_type}) is gone"
        return f"column {self.column} changed type {self.old_type} → {self.new_type}"


@dataclass(frozen=True)
class Fence:
    """A worker's right to commit a load it claimed from the run queue (``kiban.workers``): ``check`` raises
    (``kiban.engines.base.Fenced``) once the claim was taken over — it runs inside the manifest's transaction, so a
    worker paused past its lease can never commit its load — and ``steals`` names the lock holders (the same
    run's earlier claim) whose collection lock this claim takes over although their process lives."""

    run_id: str
    check: Callable[[sa.Connection], None]
    steals: Callable[[str], bool]

    def verify(self, store: Store) -> None:
        """The check on its own (before a Delta commit: a fenced load writes no version)."""
        with store._tx() as conn:
            self.check(conn)


@dataclass
class LoadRecord:
    """What one load did; counts reconcile: read = landed + quarantined + dropped."""

    load_id: str
    project: str
    asset: str
    source: str
    table: str
    started_at: datetime
    kind: str = "load"
    status: str = LoadStatus.COMMITTED
    run_id: str | None = None
    ended_at: datetime | None = None
    rows_read: int = 0
    rows_landed: int = 0
    rows_quarantined: int = 0
    rows_dropped: int = 0
    rows_deleted: int = 0
    cursor: Any = None
    schema: list[tuple[str, str]] = field(default_factory=list)
    error: str | None = None
    files: list[tuple[str, str, int, int]] = field(default_factory=list)  # (path, kind, rows, bytes)
    drift: list[tuple[SchemaChange, str]] = field(default_factory=list)  # (change, action)
    replays: list[tuple[str, int]] = field(default_factory=list)  # quarantined rows (load id, row) it lands
    reread_s: float | None = None  # time cursors: how far behind its cursor the next load reads again (seconds)
    retracted_at: datetime | None = None  # `kiban loads retract`: in no view any more
    retracted_note: str | None = None
    lake_version: int | None = None  # shared storage: the Delta version this load's commit made
    retracted_version: int | None = None  # … and the one its retraction made

    @property
    def reconciles(self) -> bool:
        return self.rows_read == self.rows_landed + self.rows_quarantined + self.rows_dropped


@dataclass(frozen=True)
class TableState:
    """The committed state of one source table: what its lake views read."""

    asset: str
    latest_load: str  # the newest load that landed files ("" when none did): the lake table's data version
    files: tuple[str, ...]  # data files, relative to the lake folder, oldest load first
    cursor: Any
    schema: tuple[tuple[str, str], ...]
    reread_s: float | None = None  # the last load's: how far behind the cursor the next load reads again
    # a digest of the loads that changed rows the table already had ('' none): retracted loads, and replays of
    # quarantined rows (they land rows of earlier times). Incremental models reading it are built whole on change.
    changes: str = ""
    # shared storage: the Delta version kiban reads the table at (None: not on shared storage yet)
    lake_version: int | None = None
    read_at: datetime | None = None  # when the last committed load that read the source started (naive UTC)


def encode_cursor(value: Any) -> str | None:
    """A cursor value as JSON that keeps its type (timestamps, dates, numbers, text)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return json.dumps({"type": "timestamp", "value": value.isoformat()})
    if isinstance(value, date):
        return json.dumps({"type": "date", "value": value.isoformat()})
    if isinstance(value, bool):
        return json.dumps({"type": "text", "value": str(value)})
    if isinstance(value, int):
        return json.dumps({"type": "int", "value": value})
    if isinstance(value, float | Decimal):
        return json.dumps({"type": "number", "value": str(value)})
    return json.dumps({"type": "text", "value": str(value)})


def decode_cursor(text: str | None) -> Any:
    if not text:
        return None
    data = json.loads(text)
    kind, value = data["type"], data["value"]
    if kind == "timestamp":
        return datetime.fromisoformat(value)
    if kind == "date":
        return date.fromisoformat(value)
    if kind == "int":
        return int(value)
    if kind == "number":
        return Decimal(value)
    return value


class Manifests:
    """Reads and writes the collection tables through a :class:`Store` (its engine and write lock)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- writing ----------------------------------------------------------------------------------------
    def commit(self, record: LoadRecord, consumed: list[tuple[str, int, str]],
               supersedes: dict[str, str] | None = None, fence: Fence | None = None) -> None:
        """The load, its files, the source files it consumed, its drift and the earlier loads it supersedes
        (``on_change: replace``: load id → why; retracted in this same commit): ONE transaction — in which a
        worker's ``fence`` is checked first (a taken-over claim commits nothing)."""
        record.ended_at = record.ended_at or utcnow()
        with self.store._tx() as conn:
            if fence is not None:
                fence.check(conn)
            conn.execute(loads.insert().values(**self._row(record)))
            if supersedes and record.status == LoadStatus.COMMITTED:
                self._supersede(conn, record, supersedes)
            if record.files:
                conn.execute(load_files.insert(), [
                    dict(load_id=record.load_id, path=p, kind=k, rows=r, bytes=b) for p, k, r, b in record.files])
            if consumed:
                conn.execute(consumed_files.insert(), [
                    dict(project=record.project, asset=record.asset, path=p, size=s, sha256=h,
                         load_id=record.load_id) for p, s, h in consumed])
            if record.drift:
                conn.execute(drift_events.insert(), [
                    dict(project=record.project, asset=record.asset, load_id=record.load_id, at=record.ended_at,
                         change=d.change, column_name=d.column, old_type=d.old_type, new_type=d.new_type,
                         action=action) for d, action in record.drift])
            if record.replays and record.status == LoadStatus.COMMITTED:
                conn.execute(quarantine_replays.insert(), [
                    dict(load_id=load, row_number=n, replay_load_id=record.load_id, replayed_at=record.ended_at)
                    for load, n in record.replays])

    @staticmethod
    def _supersede(conn: sa.Connection, record: LoadRecord, supersedes: dict[str, str]) -> None:
        """Retract the loads a new version of their files replaces, inside the new load's commit: the old rows
        leave every view in the same instant the new ones enter it (a load retracted meanwhile stays as it was)."""
        for load_id, why in sorted(supersedes.items()):
            conn.execute(loads.update().where(loads.c.project == record.project, loads.c.load_id == load_id,
                                              loads.c.status == LoadStatus.COMMITTED, loads.c.retracted_at.is_(None))
                         .values(retracted_at=record.ended_at,
                                 retracted_note=f"superseded by load {record.load_id}: {why}"))

    def retract(self, project: str, load_id: str, note: str | None = None,
                lake_version: int | None = None) -> LoadRecord:
        """Take a committed load out of every view: its files stay in the lake (``kiban loads`` lists it as
        retracted), the table's cursor and data version fall back to the loads before it, and the source files
        it consumed can be collected again. Raises LookupError (no such load) or ValueError (not committed, or
        retracted already). ``lake_version``: on shared storage, the Delta version of the snapshot without it."""
        with self.store._tx() as conn:
            row = conn.execute(loads.select().where(loads.c.project == project,
                                                    loads.c.load_id == load_id)).first()
            if row is None:
                raise LookupError(load_id)
            if row.status != LoadStatus.COMMITTED:
                raise ValueError(f"load {load_id} is {row.status}: it landed nothing to retract")
            if row.retracted_at is not None:
                raise ValueError(f"load {load_id} was retracted already ({row.retracted_at:%Y-%m-%d %H:%M} UTC)")
            conn.execute(loads.update().where(loads.c.load_id == load_id).values(
                retracted_at=utcnow(), retracted_note=note, retracted_version=lake_version))
        return self.loads(project, load_ids=[load_id])[0]

    def find_load(self, project: str, prefix: str) -> list[str]:
        """Load ids starting with ``prefix`` (at most 2: enough to tell one from ambiguous)."""
        query = sa.select(loads.c.load_id).where(loads.c.project == project,
                                                 loads.c.load_id.startswith(prefix, autoescape=True)).limit(2)
        with self.store.engine.connect() as conn:
            return [r.load_id for r in conn.execute(query).all()]

    @staticmethod
    def _row(r: LoadRecord) -> dict[str, Any]:
        return dict(load_id=r.load_id, project=r.project, asset=r.asset, source=r.source, table_name=r.table,
                    run_id=r.run_id, kind=r.kind, status=r.status, started_at=r.started_at, ended_at=r.ended_at,
                    rows_read=r.rows_read, rows_landed=r.rows_landed, rows_quarantined=r.rows_quarantined,
                    rows_dropped=r.rows_dropped, rows_deleted=r.rows_deleted, cursor=encode_cursor(r.cursor),
                    schema=json.dumps(r.schema) if r.schema else None, error=r.error, reread_s=r.reread_s,
                    lake_version=r.lake_version)

    # -- reading ----------------------------------------------------------------------------------------
    def states(self, project: str, assets: list[str] | None = None) -> dict[str, TableState]:
        """The committed state of every source table (or of ``assets``) that has a committed load."""
        query = (sa.select(loads.c.asset, loads.c.load_id, loads.c.cursor, loads.c.schema, loads.c.reread_s,
                           loads.c.retracted_at, loads.c.kind, load_files.c.path, loads.c.lake_version,
                           loads.c.retracted_version, loads.c.started_at)
                 .select_from(loads.outerjoin(load_files, sa.and_(load_files.c.load_id == loads.c.load_id,
                                                                  load_files.c.kind == "data")))
                 .where(loads.c.project == project, loads.c.status == LoadStatus.COMMITTED)
                 .order_by(loads.c.asset, loads.c.started_at, loads.c.load_id, load_files.c.path))
        if assets is not None:
            query = query.where(loads.c.asset.in_(assets))
        with self.store.engine.connect() as conn:
            rows = conn.execute(query).all()
        files: dict[str, list[str]] = {}
        last: dict[str, Any] = {}
        landing: dict[str, str] = {}  # the newest load that landed files: the table's data version
        retracted: set[str] = set()
        changes: dict[str, set[str]] = {}
        versions: dict[str, int] = {}  # shared storage: the newest Delta version a load or retraction recorded
        read_at: dict[str, datetime] = {}
        for row in rows:
            for version in (row.lake_version, row.retracted_version):
                if version is not None:
                    versions[row.asset] = max(versions.get(row.asset, version), version)
            if row.retracted_at is not None or row.kind == "replay":
                changes.setdefault(row.asset, set()).add(f"{row.load_id}:{'retracted' if row.retracted_at else 'in'}")
            if row.retracted_at is not None:  # in no view; the table's version says so (below)
                retracted.add(row.asset)
                continue
            files.setdefault(row.asset, [])
            if row.path:
                files[row.asset].append(row.path)
                landing[row.asset] = row.load_id
            last[row.asset] = row
            if row.kind == "load":  # a replay read no source
                read_at[row.asset] = row.started_at
        for asset in retracted & set(landing):  # the newest load may be the same as before a retraction
            digest = hashlib.sha256("\n".join(files[asset]).encode()).hexdigest()[:12]
            landing[asset] = f"{landing[asset]}~{digest}"
        return {asset: TableState(asset, landing.get(asset, ""), tuple(files[asset]), decode_cursor(row.cursor),
                                  tuple(tuple(c) for c in json.loads(row.schema or "[]")), row.reread_s,
                                  _digest(changes.get(asset, set())), versions.get(asset), read_at.get(asset))
                for asset, row in last.items()}

    def state(self, project: str, asset: str) -> TableState | None:
        return self.states(project, [asset]).get(asset)

    def known_paths(self, project: str, asset: str) -> set[str]:
        """Every file path a recorded load of ``asset`` names (data and quarantine): not leftovers."""
        joined = load_files.join(loads, loads.c.load_id == load_files.c.load_id)
        query = (sa.select(load_files.c.path).select_from(joined)
                 .where(loads.c.project == project, loads.c.asset == asset))
        with self.store.engine.connect() as conn:
            return {r.path for r in conn.execute(query).all()}

    def consumed(self, project: str, asset: str) -> set[tuple[str, int, str]]:
        """(path, size, sha256) of every source file a committed load of ``asset`` read (retracted loads'
        files not: they can be collected again)."""
        query = (sa.select(consumed_files.c.path, consumed_files.c.size, consumed_files.c.sha256)
                 .select_from(consumed_files.join(loads, loads.c.load_id == consumed_files.c.load_id))
                 .where(consumed_files.c.project == project, consumed_files.c.asset == asset,
                        loads.c.retracted_at.is_(None)))
        with self.store.engine.connect() as conn:
            return {(r.path, r.size, r.sha256) for r in conn.execute(query).all()}

    def consumers(self, project: str, asset: str) -> dict[str, set[str]]:
        """Source file path → the committed, unretracted loads of ``asset`` that read it (any content)."""
        query = (sa.select(consumed_files.c.path, consumed_files.c.load_id)
                 .select_from(consumed_files.join(loads, loads.c.load_id == consumed_files.c.load_id))
                 .where(consumed_files.c.project == project, consumed_files.c.asset == asset,
                        loads.c.status == LoadStatus.COMMITTED, loads.c.retracted_at.is_(None)))
        found: dict[str, set[str]] = {}
        with self.store.engine.connect() as conn:
            for row in conn.execute(query).all():
                found.setdefault(row.path, set()).add(row.load_id)
        return found

    def loads(self, project: str, asset: str | None = None, limit: int = 20,
              run_id: str | None = None, load_ids: list[str] | None = None) -> list[LoadRecord]:
        query = loads.select().where(loads.c.project == project)
        if load_ids is not None:
            query = query.where(loads.c.load_id.in_(load_ids))
        if asset is not None:
            query = query.where(loads.c.asset == asset)
        if run_id is not None:
            query = query.where(loads.c.run_id == run_id)
        with self.store.engine.connect() as conn:
            rows = conn.execute(query.order_by(loads.c.started_at.desc(), loads.c.load_id.desc()).limit(limit)).all()
            ids = [r.load_id for r in rows]
            found = conn.execute(load_files.select().where(load_files.c.load_id.in_(ids))).all() if ids else []
        by_load: dict[str, list[tuple[str, str, int, int]]] = {}
        for f in found:
            by_load.setdefault(f.load_id, []).append((f.path, f.kind, f.rows, f.bytes))
        return [LoadRecord(load_id=r.load_id, project=r.project, asset=r.asset, source=r.source, table=r.table_name,
                           started_at=r.started_at, kind=r.kind, status=r.status, run_id=r.run_id, ended_at=r.ended_at,
                           rows_read=r.rows_read, rows_landed=r.rows_landed, rows_quarantined=r.rows_quarantined,
                           rows_dropped=r.rows_dropped, rows_deleted=r.rows_deleted, cursor=decode_cursor(r.cursor),
                           schema=[tuple(c) for c in json.loads(r.schema or "[]")], error=r.error,
                           files=sorted(by_load.get(r.load_id, [])), reread_s=r.reread_s,
                           retracted_at=r.retracted_at, retracted_note=r.retracted_note,
                           lake_version=r.lake_version, retracted_version=r.retracted_version)
                for r in rows]

    def drift(self, project: str, asset: str | None, limit: int = 20,
              load_ids: list[str] | None = None) -> list[tuple[datetime, str, SchemaChange, str]]:
        """Recent drift events of ``asset`` (or of the loads ``load_ids``): (when, load id, change, action),
        newest first."""
        query = drift_events.select().where(drift_events.c.project == project)
        if asset is not None:
            query = query.where(drift_events.c.asset == asset)
        if load_ids is not None:
            query = query.where(drift_events.c.load_id.in_(load_ids))
        query = query.order_by(drift_events.c.id.desc()).limit(limit)
        with self.store.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [(r.at, r.load_id, SchemaChange(r.change, r.column_name, r.old_type, r.new_type), r.action)
                for r in rows]

    def replays_of(self, load_ids: list[str]) -> dict[str, set[str]]:
        """The unretracted loads that landed quarantined rows of ``load_ids``: replay load → the loads whose rows
        it replayed (all of them, not only ``load_ids``)."""
        if not load_ids:
            return {}
        replay_load = quarantine_replays.c.replay_load_id
        joined = quarantine_replays.join(loads, loads.c.load_id == replay_load)
        mine = sa.select(replay_load).where(quarantine_replays.c.load_id.in_(load_ids))
        query = (sa.select(replay_load, quarantine_replays.c.load_id).select_from(joined)
                 .where(replay_load.in_(mine), loads.c.retracted_at.is_(None)).distinct())
        found: dict[str, set[str]] = {}
        with self.store.engine.connect() as conn:
            for row in conn.execute(query).all():
                found.setdefault(row.replay_load_id, set()).add(row.load_id)
        return found

    def quarantine_files(self, project: str, asset: str | None = None) -> list[tuple[str, str, str, int]]:
        """(asset, load id, path, rows) of every quarantine file recorded, oldest first — not those of retracted
        loads: their rows belong to a version taken back, and a replay must never land them."""
        query = (sa.select(loads.c.asset, loads.c.load_id, load_files.c.path, load_files.c.rows)
                 .select_from(load_files.join(loads, loads.c.load_id == load_files.c.load_id))
                 .where(loads.c.project == project, load_files.c.kind == "quarantine",
                        loads.c.retracted_at.is_(None))
                 .order_by(loads.c.started_at, loads.c.load_id))
        if asset is not None:
            query = query.where(loads.c.asset == asset)
        with self.store.engine.connect() as conn:
            return [(r.asset, r.load_id, r.path, r.rows) for r in conn.execute(query).all()]

    def replayed(self, load_ids: list[str]) -> set[tuple[str, int]]:
        if not load_ids:
            return set()
        query = sa.select(quarantine_replays.c.load_id, quarantine_replays.c.row_number).where(
            quarantine_replays.c.load_id.in_(load_ids))
        with self.store.engine.connect() as conn:
            return {(r.load_id, r.row_number) for r in conn.execute(query).all()}


def _digest(items: set[str]) -> str:
    return hashlib.sha256("\n".join(sorted(items)).encode()).hexdigest()[:16] if items else ""
