"""Crash recovery: a job's run whose process died is found, marked abandoned and, per the job's ``on_crash``
policy, resumed once.

A run *crashed* when its process ended without recording an outcome: killed by a signal the scheduler did
not send (the OOM killer, ``kill -9``, a segfault), or any exit after which the store still says
``running`` (such a run is reaped as ``abandoned`` here, as ``kiban run`` would). A run that failed or was
cancelled is not a crash: it recorded why, and the runbook (or the next tick) deals with it.

With ``on_crash: resume`` (the default) the scheduler queues one more tick for the job: kind ``resume``
runs ``kiban run --resume`` (what the crashed run left undone); kind ``retry`` re-runs the job's selection
when the process died before it even recorded a run. The tick's scheduled time is the crashed tick's plus
one microsecond, so the ledger's unique key turns a second claim — by this scheduler or another one — into
a no-op; and a ``resume`` or ``retry`` tick that crashes in turn is not resumed again. A run crashing
twice in a row needs a person.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from kiban.project.jobs import JobConfig
from kiban.schedule.ledger import Ledger
from kiban.status import RunStatus, TickStatus
from kiban.store import Store

EXIT_STATUS = {0: TickStatus.SUCCESS, 130: TickStatus.CANCELLED, 3: TickStatus.FAILED}
RECOVERY_KINDS = ("resume", "retry")  # ticks that recover a crashed one: never recovered themselves
RESUME_OFFSET = timedelta(microseconds=1)


def run_outcome(store: Store, project: str, run_id: str | None, code: int, stopped: bool) -> str:
    """The tick status of a run whose process ended with ``code``: success, failed, cancelled, or lost (crashed).

    ``stopped``: the scheduler itself sent the SIGTERM (shutting down), so a death by signal is a cancel.
    """
    recorded = _status(store, run_id)
    if recorded == RunStatus.RUNNING:  # the process is gone but the run never finished: reap it (→ abandoned)
        store.reap_abandoned(project)
        recorded = _status(store, run_id)
    if recorded == RunStatus.ABANDONED:
        return TickStatus.LOST
    if code < 0:
        return TickStatus.CANCELLED if stopped else TickStatus.LOST
    return EXIT_STATUS.get(code, TickStatus.FAILED)


def _status(store: Store, run_id: str | None) -> str | None:
    if run_id is None:
        return None
    record = store.run(run_id)
    return record.status if record else None


@dataclass(frozen=True)
class CrashedTick:
    """A tick whose run crashed, as its recovery needs it."""

    job: str
    id: int
    kind: str  # cron, sensor, … — a recovery's own kinds (RECOVERY_KINDS) are never recovered again
    scheduled_at: datetime
    run_id: str | None  # None: its run never started


def queue_recovery(ledger: Ledger, job: JobConfig, crashed: CrashedTick, holder: str, now: datetime) -> int | None:
    """Queue the one recovery tick of a crashed tick, per ``job.on_crash``; its id, or None when none is due
    (policy ``none``, the crashed tick was itself a recovery, or the recovery was already claimed)."""
    if job.on_crash != "resume" or crashed.kind in RECOVERY_KINDS:
        return None
    run_id = crashed.run_id
    kind = "resume" if run_id is not None else "retry"
    what = f"run {run_id}" if run_id is not None else "its run (which never started)"
    return ledger.claim(crashed.job, crashed.scheduled_at + RESUME_OFFSET, kind, holder, now,
                        reason=f"{kind} after tick {crashed.id} crashed: {what} was abandoned (on_crash: resume)")
