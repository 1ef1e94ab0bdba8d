"""The statuses kiban records and reports: one ``StrEnum`` per thing that has a status, every value explained, and
the groups that readers ask about ("did it finish?", "must a resume redo it?").

A ``StrEnum`` member *is* its string (``RunStatus.SUCCESS == "success"``, ``f"{s}"`` is ``"success"``), so the
store, the JSON of events and the API keep exactly the words they always had: adopting a type changes no byte
written. Compare with the members (or the groups), never with a bare literal, so a typo is a type error and a
new status is found by its readers. A core leaf: imports nothing of kiban.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """One run (table ``runs``), as ``kiban runs`` lists it."""

    RUNNING = "running"  # started; its heartbeat is refreshed every 5 s while the process lives
    SUCCESS = "success"  # everything it set out to build or collect was published
    NOTHING = "nothing"  # nothing to do: every selected asset was already fresh (nothing built, nothing collected)
    FAILED = "failed"  # at least one asset failed or was skipped, or the run itself raised
    CANCELLED = "cancelled"  # stopped by Ctrl-C / SIGTERM (exit 130); what was running rolled back
    ABANDONED = "abandoned"  # its process died without finishing it (reaped: pid gone, or heartbeat older than 60 s)


RUN_FINISHED = frozenset(RunStatus) - {RunStatus.RUNNING}
RUN_SUCCEEDED = frozenset({RunStatus.SUCCESS, RunStatus.NOTHING})  # exit 0: the published data is current
RUN_UNSUCCESSFUL = frozenset({RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.ABANDONED})  # a resume has work


class AttemptStatus(StrEnum):
    """One attempt at one asset in one run (table ``attempts``; ``Event.status`` of ``asset_finished``)."""

    SUCCESS = "success"  # built and published (or collected and committed)
    FRESH = "fresh"  # not built: its published fingerprint already matched (attempt 0)
    RETRYING = "retrying"  # this attempt failed and another one follows (retries left, the error may pass)
    FAILED = "failed"  # the last attempt failed: the previous version stays published
    SKIPPED = "skipped"  # not started: something upstream failed or was skipped (attempt 0, error names it)
    CANCELLED = "cancelled"  # the run was cancelled before or while it ran; a running build rolled back


ATTEMPT_CURRENT = frozenset({AttemptStatus.SUCCESS, AttemptStatus.FRESH})  # what is published is this run's truth
ATTEMPT_UNFINISHED = frozenset({AttemptStatus.FAILED, AttemptStatus.SKIPPED, AttemptStatus.CANCELLED,
                                AttemptStatus.RETRYING})  # a resume redoes these (retrying: killed between attempts)
ATTEMPT_FINAL = frozenset(AttemptStatus) - {AttemptStatus.RETRYING}  # an asset's last word in a run


class LoadStatus(StrEnum):
    """One load of one collected table (table ``loads``)."""

    COMMITTED = "committed"  # its files and cursor committed in one transaction: the lake view reads them
    FAILED = "failed"  # refused or interrupted: none of its files is read, its cursor did not move


class CheckStatus(StrEnum):
    """One check's judgement of one version of a table (table ``check_results``)."""

    PASS = "pass"  # the table satisfies it
    FAIL = "fail"  # it does not; with severity ``error`` the version is not published (see ``Severity``)


class Severity(StrEnum):
    """What a failing check does."""

    ERROR = "error"  # blocks the publish: the previous version stays
    WARN = "warn"  # recorded and shown; the publish goes on


class Verdict(StrEnum):
    """A use case's service level on one due day (table ``slo_evaluations``)."""

    PENDING = "pending"  # not yet delivered, the deadline not yet passed, nothing known to endanger it
    AT_RISK = "at_risk"  # not yet delivered, and a failure or the forecast says it will probably be late
    MET = "met"  # every asset it reads was current, checked and complete before the deadline
    LATE = "late"  # delivered, but after the deadline
    FAILED = "failed"  # the deadline passed and the data was not delivered (failures upstream are its evidence)
    INCOMPLETE = "incomplete"  # the deadline passed; it was published, but its data does not reach the due day
    BAD_DATA = "bad_data"  # delivered (or due) with a failed check on what it reads


VERDICT_FINAL = frozenset({Verdict.MET, Verdict.LATE, Verdict.FAILED, Verdict.INCOMPLETE, Verdict.BAD_DATA})
VERDICT_MISSED = VERDICT_FINAL - {Verdict.MET}  # a final verdict that opens a `missed` incident


class IncidentStatus(StrEnum):
    """An incident's place in its life (table ``incidents``)."""

    OPEN = "open"  # nobody has taken it yet
    ACKNOWLEDGED = "acknowledged"  # someone said they are on it (`kiban incidents ack`)
    RESOLVED = "resolved"  # closed: by a person, by the data arriving, or withdrawn (``IncidentResolution`` says how)


class IncidentResolution(StrEnum):
    """How a resolved incident was closed: the kind of the timeline entry that closed it (``Incident.resolution``).

    Every one leaves the status ``resolved``, so every reader that asks "is it open?" keeps its answer; the
    resolution tells a recovery from a withdrawal, which no notification may present as "service restored"."""

    RESOLVED = "resolved"  # by a person (`kiban incidents resolve`, the console), with their note
    RECOVERED = "recovered"  # the data was delivered before the deadline after all
    REPAIRED = "repaired"  # the data was delivered after the deadline (the miss stays on the record)
    RETIRED = "retired"  # its use case is no longer defined in the project (removed, or renamed): nobody to serve
    REDEFINED = "redefined"  # its use case's definition changed (deadline, days, assets): the breach no longer applies


# closed by kiban without any delivery: reopened, not left closed, if the use case is defined and in breach again
INCIDENT_WITHDRAWN = frozenset({IncidentResolution.RETIRED, IncidentResolution.REDEFINED})


class IncidentKind(StrEnum):
    """Why an incident exists."""

    AT_RISK = "at_risk"  # raised before the deadline: the forecast or a failure endangers the use case
    MISSED = "missed"  # the deadline passed with a final verdict other than met


class QueueStatus(StrEnum):
    """One asset of a run handed to workers (table ``run_queue``; a fresh asset is never queued)."""

    WAITING = "waiting"  # queued; an upstream asset of the same run has not finished yet
    READY = "ready"  # queued; every upstream asset finished, a worker may claim it
    RUNNING = "running"  # claimed by a worker (its token fences a second claimer)
    SUCCESS = "success"  # built and published by its worker
    FAILED = "failed"  # its worker's last attempt failed
    SKIPPED = "skipped"  # not started: something upstream failed or was skipped
    CANCELLED = "cancelled"  # the run was cancelled before a worker finished it


QUEUE_OPEN = frozenset({QueueStatus.WAITING, QueueStatus.READY})  # not claimed yet: a cancel closes these
QUEUE_FINISHED = frozenset(QueueStatus) - QUEUE_OPEN - {QueueStatus.RUNNING}  # its run reads an outcome from these


class WorkerStatus(StrEnum):
    """One worker process (table ``workers``)."""

    IDLE = "idle"  # alive, polling the queue
    BUSY = "busy"  # alive, building the asset it claimed
    REFUSING = "refusing"  # alive, but its project version differs from the queued runs': it claims nothing
    STOPPED = "stopped"  # it said goodbye (a worker that dies is found by its heartbeat instead)


class TickStatus(StrEnum):
    """One cron tick or sensor firing the scheduler claimed (table ``job_ticks``)."""

    QUEUED = "queued"  # claimed; waiting for a free run slot
    RUNNING = "running"  # its `kiban run` process was started
    SUCCESS = "success"  # its run succeeded (or had nothing to do)
    FAILED = "failed"  # its run failed
    SKIPPED = "skipped"  # not run: a missed tick beyond the catch-up policy, or the job was already running
    LOST = "lost"  # its run's process (or its scheduler) died before finishing it
    CANCELLED = "cancelled"  # its run was stopped (the scheduler shutting down, Ctrl-C)


TICK_PENDING = frozenset({TickStatus.QUEUED, TickStatus.RUNNING})  # not finished: the scheduler still owes it
TICK_FINISHED = frozenset(TickStatus) - TICK_PENDING


class BackfillStatus(StrEnum):
    """One backfill (table ``backfills``) and, but for ``running``, each of its partitions (``backfill_partitions``)."""

    RUNNING = "running"  # started (a backfill only); its heartbeat is refreshed while the process lives
    SUCCESS = "success"  # every partition was built (a partition: built and published)
    FAILED = "failed"  # at least one partition failed or was skipped (a partition: its last attempt failed)
    SKIPPED = "skipped"  # a partition only: not started, an earlier partition of the same asset failed
    CANCELLED = "cancelled"  # stopped by Ctrl-C / SIGTERM; finished partitions stay, a resume does the rest


class DeliveryStatus(StrEnum):
    """One notification to one channel (table ``notifications``)."""

    SENT = "sent"  # the channel accepted it
    FAILED = "failed"  # the channel refused it or could not be reached; retried later while retries remain
    SUPPRESSED = "suppressed"  # not sent on purpose: a duplicate within its window, or over the rate limit


class DataDeliveryStatus(StrEnum):
    """One delivery of a mart or recipe to its destination (table ``deliveries``, ``kiban deliver``)."""

    QUEUED = "queued"  # claimed by the scheduler (its schedule's tick, or its use case met): to be attempted
    RUNNING = "running"  # started: the file is being written or sent
    DELIVERED = "delivered"  # the file reached its destination (folder, e-mail, chat)
    FAILED = "failed"  # the attempt failed: tried again at ``retry_at`` (the outbox), or for good when it is empty


class InitiativeStatus(StrEnum):
    """Where an initiative stands (``initiatives/NAME.yml``, ``status:``)."""

    IDEA = "idea"  # written down; nothing changed yet
    ANALYSING = "analysing"  # its data and KPI are being looked at; no intervention yet
    RUNNING = "running"  # the intervention started on its date; the effect is measured as data comes in
    MEASURED = "measured"  # the effect has been measured; a decision is due
    KEPT = "kept"  # decided: the change stays
    STOPPED = "stopped"  # decided: the change was stopped


class ModelStatus(StrEnum):
    """One trained version of a model (table ``model_versions``)."""

    PENDING = "pending"  # trained and promoted by its gate; becomes current when its publish commits
    CURRENT = "current"  # the version scoring uses (at most one a model)
    REJECTED = "rejected"  # its gate refused it (or its publish never committed): kept for the record
    RETIRED = "retired"  # was current until a newer version replaced it


class VerifyStatus(StrEnum):
    """One table of ``kiban import dbt --verify``: dbt's build against kiban's."""

    IDENTICAL = "identical"  # the same columns, types and rows
    DIFFERENT = "different"  # rows, columns or types differ
    MISSING = "missing"  # one side has no such table
    SKIPPED = "skipped"  # not compared (an ephemeral model: dbt builds no table of it)


__all__ = [
    "ATTEMPT_CURRENT",
    "ATTEMPT_FINAL",
    "ATTEMPT_UNFINISHED",
    "INCIDENT_WITHDRAWN",
    "QUEUE_FINISHED",
    "QUEUE_OPEN",
    "RUN_FINISHED",
    "RUN_SUCCEEDED",
    "RUN_UNSUCCESSFUL",
    "TICK_FINISHED",
    "TICK_PENDING",
    "VERDICT_FINAL",
    "VERDICT_MISSED",
    "AttemptStatus",
    "BackfillStatus",
    "CheckStatus",
    "DeliveryStatus",
    "IncidentKind",
    "IncidentResolution",
    "IncidentStatus",
    "LoadStatus",
    "ModelStatus",
    "QueueStatus",
    "RunStatus",
    "Severity",
    "TickStatus",
    "Verdict",
    "VerifyStatus",
    "WorkerStatus",
]
