"""The scheduler's tick ledger (``job_ticks``) as the rest of kiban may read it.

The scheduler writes ticks (``kiban.schedule.ledger``); the run layer sits below the scheduler and may not import
it, yet a backfill must know when scheduled deadline work waits so it can step aside (``run.backfill``). It asks
here, in the store that owns the table, instead of querying the scheduler's table itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from kiban.status import TickStatus
from kiban.store.schema import job_ticks
from kiban.store.store import Store

WAITING = (TickStatus.QUEUED, TickStatus.RUNNING)


def work_waiting(store: Store, project: str, jobs: Sequence[str]) -> bool:
    """Whether a tick of one of ``jobs`` is queued or running now (one small indexed query)."""
    if not jobs:
        return False
    with store.engine.connect() as conn:
        found = conn.execute(sa.select(job_ticks.c.id).where(
            job_ticks.c.project == project, job_ticks.c.job.in_(list(jobs)),
            job_ticks.c.status.in_(WAITING)).limit(1)).first()
    return found is not None


__all__ = ["WAITING", "work_waiting"]
