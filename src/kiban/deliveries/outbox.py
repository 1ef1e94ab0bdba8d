"""Deliveries the scheduler makes: claimed once, attempted, and tried again later when they fail (the outbox).

The scheduler (:mod:`kiban.schedule.deliveries`) *claims* a delivery for a cron tick of its ``schedule:`` or
for the due day its use case was met: a ``queued`` row of ``deliveries`` whose (project, name, scheduled_for)
is unique, so a tick or a due day is claimed once, whichever scheduler leads. :func:`attempt_due` then makes
one attempt of each queued row and of each failed row whose ``retry_at`` has come: a failure a retry can cure
(a timeout, a 5xx, an unreachable host) is tried again after a growing wait — 1, 2, 4… minutes, at most an
hour — until the delivery's ``retries`` are spent; then it is ``failed`` for good, with the reason kept. A row
left ``running`` by a scheduler that died mid-attempt is attempted again after :data:`STUCK`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from kiban.catalog.reading import Reader
from kiban.deliveries.send import DeliveryRecord, DeliveryTrigger, Outcome, Tries, attempt, record, settle
from kiban.project import Project
from kiban.status import DataDeliveryStatus
from kiban.store import Store
from kiban.store.schema import deliveries

FIRST_WAIT = timedelta(minutes=1)  # before the first retry; doubled each time
MAX_WAIT = timedelta(hours=1)
STUCK = timedelta(minutes=30)  # a row `running` this long lost its scheduler: attempt it again


def claim(store: Store, project: Project, name: str, trigger: str, scheduled_for: datetime) -> int | None:
    """Queue ``name`` for ``scheduled_for`` (a naive-UTC tick, or a due day's midnight); its row id, or None
    when that tick or day was claimed already (by this or another scheduler)."""
    config = project.config.deliveries[name]
    values = dict(project=project.name, name=name, usecase=config.usecase, started_at=scheduled_for,
                  status=DataDeliveryStatus.QUEUED, attempts=0, trigger=trigger, scheduled_for=scheduled_for)
    d = deliveries.c
    try:
        with store._tx() as conn:
            if conn.execute(sa.select(d.id).where(d.project == project.name, d.name == name,
                                                  d.scheduled_for == scheduled_for)).first() is not None:
                return None
            key = conn.execute(deliveries.insert().values(**values)).inserted_primary_key
    except sa.exc.IntegrityError:  # another scheduler claimed it at the same moment
        return None
    return int(key[0]) if key else None


def waiting(store: Store, project: str, now: datetime) -> list[DeliveryRecord]:
    """Rows to attempt now: queued, failed with their retry due, or stuck running."""
    d = deliveries.c
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(deliveries).where(d.project == project, sa.or_(
            d.status == DataDeliveryStatus.QUEUED,
            sa.and_(d.status == DataDeliveryStatus.FAILED, d.retry_at.is_not(None), d.retry_at <= now),
            sa.and_(d.status == DataDeliveryStatus.RUNNING, d.trigger.is_not(None), d.scheduled_for.is_not(None),
                    d.started_at <= now - STUCK))).order_by(d.id)).all()
    return [record(r) for r in rows]


def _take(store: Store, row: DeliveryRecord, now: datetime) -> bool:
    """Mark the row running unless someone else did first."""
    d = deliveries.c
    with store._tx() as conn:
        return conn.execute(deliveries.update().where(d.id == row.id, d.status == row.status,
                                                      d.attempts == row.attempts)
                            .values(status=DataDeliveryStatus.RUNNING, started_at=now, retry_at=None)).rowcount == 1


def attempt_due(project: Project, store: Store, now: datetime, reader: Reader | None = None) -> list[DeliveryRecord]:
    """One attempt of every delivery waiting (see :func:`waiting`); the rows as they were settled."""
    out = []
    for row in waiting(store, project.name, now):
        if not _take(store, row, now):
            continue
        config = project.config.deliveries.get(row.name)
        if config is None:
            outcome = Outcome(DataDeliveryStatus.FAILED, None, None, row.destination or "", row.attempts,
                              f"the delivery {row.name} is no longer declared in kiban.yml")
        else:
            moment = row.scheduled_for if row.trigger == DeliveryTrigger.SCHEDULE and row.scheduled_for else now
            outcome = attempt(project, store, row.name, config, Tries(reader=reader, before=row.attempts),
                              moment.replace(tzinfo=UTC))
            if outcome.status != DataDeliveryStatus.DELIVERED and outcome.retryable \
                    and outcome.attempts <= config.retries:
                outcome.retry_at = now + min(MAX_WAIT, FIRST_WAIT * 2 ** (outcome.attempts - 1))
        settle(store, row.id, outcome)
        out.append(DeliveryRecord(row.id, row.name, row.usecase, now, None, outcome.status, outcome.rows,
                                  outcome.target, outcome.destination, outcome.attempts, outcome.error, row.trigger,
                                  row.scheduled_for, outcome.retry_at))
    return out
