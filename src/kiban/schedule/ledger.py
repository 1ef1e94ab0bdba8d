"""The tick ledger (``job_ticks``): every cron tick and sensor firing, claimed once, with its run and outcome.

Claiming a tick inserts its row; the unique key (project, job, scheduled_at) makes a second claim fail,
whoever tries it — that is what keeps a tick from running twice across a failover.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from kiban.status import TICK_FINISHED, TickStatus
from kiban.store import Store
from kiban.store.schema import job_ticks, runs, trigger_states

DONE = TICK_FINISHED


@dataclass(frozen=True)
class TickRecord:
    id: int
    job: str
    scheduled_at: datetime
    kind: str
    status: str
    holder: str | None
    run_id: str | None
    pid: int | None
    host: str | None
    reason: str | None
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    exit_code: int | None


def _tick(row: Any) -> TickRecord:
    return TickRecord(row.id, row.job, row.scheduled_at, row.kind, row.status, row.holder, row.run_id, row.pid,
                      row.host, row.reason, row.created_at, row.started_at, row.ended_at, row.exit_code)


class Ledger:
    def __init__(self, store: Store, project: str) -> None:
        self.store = store
        self.project = project

    def claim(self, job: str, scheduled_at: datetime, kind: str, holder: str, now: datetime,
              status: str = "queued", reason: str | None = None, conn: sa.Connection | None = None) -> int | None:
        """Insert the tick; its id, or None when it was already claimed (by this or another scheduler)."""
        values = dict(project=self.project, job=job, scheduled_at=scheduled_at, kind=kind, status=status,
                      holder=holder, reason=reason, created_at=now,
                      ended_at=now if status in DONE else None)
        if conn is not None:
            return self._insert(conn, values)
        try:
            with self.store.engine.begin() as own:
                return self._insert(own, values)
        except sa.exc.IntegrityError:
            return None

    def _insert(self, conn: sa.Connection, values: dict[str, Any]) -> int | None:
        exists = conn.execute(sa.select(job_ticks.c.id).where(
            job_ticks.c.project == self.project, job_ticks.c.job == values["job"],
            job_ticks.c.scheduled_at == values["scheduled_at"])).first()
        if exists is not None:
            return None
        result = conn.execute(job_ticks.insert().values(**values))
        key = result.inserted_primary_key
        return int(key[0]) if key else None

    def update(self, tick_id: int, **values: Any) -> None:
        with self.store.engine.begin() as conn:
            conn.execute(job_ticks.update().where(job_ticks.c.id == tick_id).values(**values))

    def last_cron_tick(self, job: str) -> datetime | None:
        """The newest cron tick handled (run or skipped) for ``job``: catch-up starts after it."""
        with self.store.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.max(job_ticks.c.scheduled_at)).where(
                job_ticks.c.project == self.project, job_ticks.c.job == job, job_ticks.c.kind == "cron")).scalar()

    def cron_cursor(self, job: str) -> datetime | None:
        """How far the cron ticks of ``job`` were looked at: catch-up starts after the later of this and its
        last tick. Kept even when no tick fell due, so downtime right after a job was added is caught up too."""
        with self.store.engine.connect() as conn:
            cursor = conn.execute(sa.select(trigger_states.c.observed_at).where(
                trigger_states.c.project == self.project, trigger_states.c.job == job,
                trigger_states.c.trigger == "cron")).scalar()
        last = self.last_cron_tick(job)
        return max((d for d in (cursor, last) if d is not None), default=None)

    def advance_cron_cursor(self, job: str, to: datetime) -> None:
        where = (trigger_states.c.project == self.project, trigger_states.c.job == job,
                 trigger_states.c.trigger == "cron")
        try:
            with self.store.engine.begin() as conn:
                if conn.execute(trigger_states.update().where(*where).values(observed_at=to)).rowcount == 0:
                    conn.execute(trigger_states.insert().values(project=self.project, job=job, trigger="cron",
                                                                fingerprint="", observed_at=to))
        except sa.exc.IntegrityError:  # another scheduler inserted it at the same moment: it moves it on
            pass

    def last_run_start(self, job: str) -> datetime | None:
        """When the newest run of ``job`` started (any trigger)."""
        with self.store.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.max(job_ticks.c.started_at)).where(
                job_ticks.c.project == self.project, job_ticks.c.job == job)).scalar()

    def pending(self) -> list[TickRecord]:
        """Ticks claimed but not finished: queued, or running."""
        with self.store.engine.connect() as conn:
            rows = conn.execute(job_ticks.select().where(
                job_ticks.c.project == self.project, job_ticks.c.status.in_((TickStatus.QUEUED, TickStatus.RUNNING)))
                .order_by(job_ticks.c.scheduled_at, job_ticks.c.id)).all()
        return [_tick(r) for r in rows]

    def recent(self, job: str | None = None, limit: int = 50) -> list[TickRecord]:
        query = job_ticks.select().where(job_ticks.c.project == self.project)
        if job is not None:
            query = query.where(job_ticks.c.job == job)
        with self.store.engine.connect() as conn:
            rows = conn.execute(query.order_by(job_ticks.c.scheduled_at.desc(), job_ticks.c.id.desc())
                                .limit(limit)).all()
        return [_tick(r) for r in rows]

    def latest_by_job(self) -> dict[str, TickRecord]:
        newest = (sa.select(sa.func.max(job_ticks.c.id).label("id")).where(job_ticks.c.project == self.project)
                  .where(job_ticks.c.status != TickStatus.SKIPPED).group_by(job_ticks.c.job).subquery())
        with self.store.engine.connect() as conn:
            rows = conn.execute(job_ticks.select().where(job_ticks.c.id.in_(sa.select(newest.c.id)))).all()
        return {r.job: _tick(r) for r in rows}

    def for_run(self, run_id: str) -> TickRecord | None:
        """The tick that started run ``run_id`` (None for a run started by hand)."""
        with self.store.engine.connect() as conn:
            row = conn.execute(job_ticks.select().where(job_ticks.c.project == self.project,
                                                        job_ticks.c.run_id == run_id)
                               .order_by(job_ticks.c.id.desc()).limit(1)).first()
        return _tick(row) if row else None

    def run_status(self, run_id: str) -> str | None:
        with self.store.engine.connect() as conn:
            return conn.execute(sa.select(runs.c.status).where(runs.c.run_id == run_id)).scalar()
