"""The scheduler's side of deliveries: claim what falls due, attempt it off the loop.

Each look of the scheduler: a delivery with ``schedule:`` is claimed for its newest cron tick since the last
one handled (a weekly report missed while the scheduler was down goes out once, late — not once per missed
week); one with ``after: usecase_met`` is claimed for the due day whose data became ready (use cases are judged
at most every :data:`USECASE_SECONDS`). Claims are rows of ``deliveries`` unique per (delivery, tick), so
failover never sends one twice. The attempts (reading the mart, writing the file, the hand-over, retries from
the outbox) run on one worker thread: a slow mail server never delays a cron tick.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, time
from typing import Any

from kiban.deliveries.due import due_days
from kiban.deliveries.links import sweep
from kiban.deliveries.outbox import attempt_due, claim
from kiban.deliveries.send import DeliveryTrigger
from kiban.graph import Graph
from kiban.project import Project
from kiban.project.jobs import JobConfig
from kiban.schedule.ledger import Ledger
from kiban.schedule.ticks import FIRST_LOOKBACK, JobSchedule
from kiban.store import Store

log = logging.getLogger(__name__)
USECASE_SECONDS = 60.0


def cursor_name(name: str) -> str:
    """The name a delivery's cron cursor is kept under in ``trigger_states`` (apart from jobs)."""
    return f"delivery:{name}"


def claim_deliveries(project: Project, store: Store, graph: Callable[[], Graph] | None,
                     now: datetime) -> list[int]:
    """Claim every delivery due at ``now`` (those waiting for a use case only when ``graph`` is given); the new
    rows' ids."""
    claimed: list[int] = []
    ledger = Ledger(store, project.name)
    for name, config in sorted(project.config.deliveries.items()):
        if config.schedule is None:
            continue
        schedule = JobSchedule(cursor_name(name), JobConfig(cron=config.schedule, calendar=config.calendar),
                               project.config)
        last = ledger.cron_cursor(cursor_name(name))
        ticks = schedule.ticks(last or now - FIRST_LOOKBACK, now)
        if ticks:
            row = claim(store, project, name, DeliveryTrigger.SCHEDULE, ticks[-1])
            if row is not None:
                claimed.append(row)
        ledger.advance_cron_cursor(cursor_name(name), now)
    if graph is not None and any(c.after == "usecase_met" for c in project.config.deliveries.values()):
        for name, day, _ in due_days(project, graph(), store, now):
            row = claim(store, project, name, DeliveryTrigger.USECASE, datetime.combine(day, time()))
            if row is not None:
                claimed.append(row)
    return claimed


class DeliveryWorker:
    """Claims on the scheduler's thread (fast: cron arithmetic and inserts), attempts on its own thread."""

    def __init__(self, project: Project, store: Store, graph: Callable[[], Graph],
                 log_event: Callable[[str, dict[str, Any]], None]) -> None:
        self.project, self.store, self.graph, self.log = project, store, graph, log_event
        self.thread: threading.Thread | None = None
        self.judged: datetime | None = None  # when the use cases were last judged for `after: usecase_met`

    def look(self, now: datetime) -> None:
        if not self.project.config.deliveries:
            return
        try:
            judge = self.judged is None or (now - self.judged).total_seconds() >= USECASE_SECONDS
            if judge:
                self.judged = now
            for row in claim_deliveries(self.project, self.store, self.graph if judge else None, now):
                self.log("delivery claimed", {"id": row})
        except Exception as exc:  # the scheduler keeps scheduling whatever happens here
            self.log("delivery claims failed", {"error": str(exc)})
            log.warning("scheduler: claiming deliveries failed", exc_info=True)
        if self.thread is None or not self.thread.is_alive():
            self.thread = threading.Thread(target=self._attempt, args=(now,), name="kiban-deliveries", daemon=True)
            self.thread.start()

    def _attempt(self, now: datetime) -> None:
        try:
            if sweep(self.project, now):
                self.log("expired download links removed", {})
            for done in attempt_due(self.project, self.store, now):
                self.log("delivery", {"name": done.name, "status": done.status, "attempts": done.attempts,
                                      "retry_at": done.retry_at.isoformat() + "Z" if done.retry_at else None,
                                      "error": done.error})
        except Exception as exc:
            self.log("delivery attempts failed", {"error": str(exc)})
            log.warning("scheduler: delivery attempts failed", exc_info=True)

    def wait(self, seconds: float) -> None:
        if self.thread is not None:
            self.thread.join(seconds)
