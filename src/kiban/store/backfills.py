"""Backfills in the state store: each backfill, its partitions' outcomes, and what is left to do."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from kiban.status import BackfillStatus
from kiban.store.lite import digest_by_asset
from kiban.store.schema import backfill_partitions, backfills
from kiban.store.store import HOST, Store, utcnow


@dataclass(frozen=True)
class NewBackfill:
    """A backfill as it starts: what it rebuilds (its selection, the assets chosen) over which range of
    partitions, how many, and how many at a time. ``key`` names the same work, so a second start resumes it."""

    id: str
    project: str
    key: str
    selection: list[str]
    assets: list[str]
    range_from: datetime
    range_to: datetime
    total: int  # partitions to build, summed over the assets
    concurrency: int | None


@dataclass(frozen=True)
class BackfillRecord(NewBackfill):
    """A backfill as the ledger has it: as it started, and how it went."""

    status: str
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    error: str | None
    counts: dict[str, int]  # partition status → how many


@dataclass(frozen=True)
class PartitionRecord:
    asset: str
    start: datetime
    status: str
    attempts: int
    rows: int | None
    seconds: float | None
    error: str | None


class BackfillLedger:
    """Reads and writes the backfill tables through a :class:`Store` (its engine and write lock)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def create(self, new: NewBackfill) -> None:
        now = utcnow()
        with self.store._tx() as conn:
            conn.execute(backfills.insert().values(
                id=new.id, project=new.project, key=new.key, selection=json.dumps(new.selection),
                assets=json.dumps(new.assets), range_from=new.range_from, range_to=new.range_to,
                status=BackfillStatus.RUNNING, total=new.total, concurrency=new.concurrency,
                created_at=now, started_at=now, heartbeat_at=now, pid=os.getpid(), host=HOST))

    def restart(self, backfill_id: str, concurrency: int) -> None:
        """A resumed backfill: running again, in this process."""
        now = utcnow()
        with self.store._tx() as conn:
            conn.execute(backfills.update().where(backfills.c.id == backfill_id).values(
                status=BackfillStatus.RUNNING, started_at=now, ended_at=None, heartbeat_at=now, pid=os.getpid(),
                host=HOST,
                error=None, concurrency=concurrency))

    def heartbeat(self, backfill_id: str) -> None:
        with self.store._tx() as conn:
            conn.execute(backfills.update().where(backfills.c.id == backfill_id).values(heartbeat_at=utcnow()))

    def finish(self, backfill_id: str, status: str, error: str | None = None) -> None:
        with self.store._tx() as conn:
            conn.execute(backfills.update().where(backfills.c.id == backfill_id)
                         .values(status=status, ended_at=utcnow(), error=error))

    def record(self, backfill_id: str, asset: str, start: datetime, status: str, *, attempts: int = 1,
               rows: int | None = None, seconds: float | None = None, error: str | None = None) -> None:
        """A partition's outcome, replacing an earlier one of the same backfill (a retry after a resume)."""
        key = (backfill_partitions.c.backfill_id == backfill_id) & (backfill_partitions.c.asset == asset) \
            & (backfill_partitions.c.partition_start == start)
        with self.store._tx() as conn:
            conn.execute(backfill_partitions.delete().where(key))
            conn.execute(backfill_partitions.insert().values(
                backfill_id=backfill_id, asset=asset, partition_start=start, status=status, attempts=attempts,
                rows=rows, seconds=seconds, error=error, ended_at=utcnow()))

    def unfinished(self, project: str, key: str) -> BackfillRecord | None:
        """The newest backfill of the same models and range that did not finish successfully."""
        with self.store.engine.connect() as conn:
            row = conn.execute(backfills.select().where(backfills.c.project == project, backfills.c.key == key)
                               .order_by(backfills.c.created_at.desc()).limit(1)).first()
        if row is None or row.status == BackfillStatus.SUCCESS:
            return None
        return self._record(row)

    def done(self, backfill_id: str) -> set[tuple[str, datetime]]:
        with self.store.engine.connect() as conn:
            rows = conn.execute(sa.select(backfill_partitions.c.asset, backfill_partitions.c.partition_start)
                                .where(backfill_partitions.c.backfill_id == backfill_id,
                                       backfill_partitions.c.status == BackfillStatus.SUCCESS)).all()
        return {(r.asset, r.partition_start) for r in rows}

    def replaced(self, project: str) -> dict[str, str]:
        """asset → a digest of every partition a backfill of ``project`` replaced in it (assets never
        backfilled are absent). It only grows, so readers of the asset can tell that its older rows changed."""
        query = (sa.select(backfill_partitions.c.asset, backfill_partitions.c.backfill_id,
                           backfill_partitions.c.partition_start)
                 .select_from(backfill_partitions.join(backfills, backfills.c.id == backfill_partitions.c.backfill_id))
                 .where(backfills.c.project == project, backfill_partitions.c.status == BackfillStatus.SUCCESS))
        with self.store.engine.connect() as conn:
            rows = conn.execute(query).all()
        return digest_by_asset([(r.asset, r.backfill_id, r.partition_start) for r in rows])

    def partitions(self, backfill_id: str, status: str | None = None) -> list[PartitionRecord]:
        query = backfill_partitions.select().where(backfill_partitions.c.backfill_id == backfill_id)
        if status:
            query = query.where(backfill_partitions.c.status == status)
        with self.store.engine.connect() as conn:
            rows = conn.execute(query.order_by(backfill_partitions.c.asset,
                                               backfill_partitions.c.partition_start)).all()
        return [PartitionRecord(r.asset, r.partition_start, r.status, r.attempts, r.rows, r.seconds, r.error)
                for r in rows]

    def recent(self, project: str, limit: int = 10) -> list[BackfillRecord]:
        with self.store.engine.connect() as conn:
            rows = conn.execute(backfills.select().where(backfills.c.project == project)
                                .order_by(backfills.c.created_at.desc()).limit(limit)).all()
        return [self._record(r) for r in rows]

    def get(self, prefix: str) -> BackfillRecord | None:
        with self.store.engine.connect() as conn:
            rows = conn.execute(backfills.select().where(backfills.c.id.startswith(prefix)).limit(2)).all()
        return self._record(rows[0]) if len(rows) == 1 else None

    def reap(self, project: str) -> list[str]:
        """Backfills still marked running whose process is gone become abandoned (and can be resumed)."""
        return self.store.abandon_dead(backfills, backfills.c.id, project)

    def _record(self, row: Any) -> BackfillRecord:
        with self.store.engine.connect() as conn:
            counts: dict[Any, Any] = dict(conn.execute(
                sa.select(backfill_partitions.c.status, sa.func.count())
                .where(backfill_partitions.c.backfill_id == row.id).group_by(backfill_partitions.c.status)).all())
        return BackfillRecord(row.id, row.project, row.key, json.loads(row.selection), json.loads(row.assets),
                              row.range_from, row.range_to, row.total, row.concurrency, row.status, row.created_at,
                              row.started_at, row.ended_at, row.error, {str(k): int(v) for k, v in counts.items()})
