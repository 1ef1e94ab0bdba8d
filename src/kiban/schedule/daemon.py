"""The scheduler loop: lead, find what is due, start it in deadline order within the limit, record outcomes.

One iteration (:meth:`Scheduler.step`):
1. take or renew the lease (:mod:`kiban.schedule.leader`); a follower stops here and looks again later;
2. settle ticks a previous leader left running (their run's outcome is in the store);
3. claim due cron ticks, applying each job's catch-up policy (skipped ticks are recorded too);
4. look at the sensors; a firing claims a tick;
5. start queued ticks, nearest latest start first, while fewer than ``scheduler.max_runs`` run;
6. record the outcome of runs that ended; a run that crashed is resumed once, per the job's ``on_crash``
   (:mod:`kiban.schedule.recovery`);
7. claim the deliveries due (a ``schedule:`` tick, or a use case met) and attempt them, and the outbox's
   retries, on a worker thread (:mod:`kiban.schedule.deliveries`).

Every tick is a row of ``job_ticks`` whose insert is its claim, and whose ``queued → running`` update is
the claim to start it: neither can happen twice, so no tick runs twice, even when leaders change.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kiban.clock import Clock, RealClock
from kiban.forms.previews import sweep as sweep_previews
from kiban.graph import build_graph
from kiban.notify import Notifier
from kiban.project import Project
from kiban.schedule.deliveries import DeliveryWorker
from kiban.schedule.launcher import Handle, Launcher, cool_down, launch_process, warm_up
from kiban.schedule.leader import Leader
from kiban.schedule.ledger import Ledger
from kiban.schedule.priority import JobPriority, job_priorities, ordered
from kiban.schedule.recovery import RECOVERY_KINDS, CrashedTick, queue_recovery, run_outcome
from kiban.schedule.sensors import fire_sensors
from kiban.schedule.ticks import FIRST_LOOKBACK, JobSchedule, catch_up
from kiban.slo.service import check
from kiban.status import RunStatus, TickStatus
from kiban.store import Store
from kiban.store.schema import job_ticks
from kiban.store.store import HOST, pid_alive

log = logging.getLogger(__name__)
STOP_GRACE = 60.0  # seconds runs get to cancel cleanly when the scheduler stops

SLO_CHECK_SECONDS = 60.0

@dataclass
class Running:
    tick_id: int
    job: str
    handle: Handle
    run_id: str | None = None
    kind: str = "cron"  # cron, sensor, or a recovery (resume, retry)
    scheduled_at: datetime | None = None
    stopping: bool = False  # the scheduler sent it SIGTERM: a death by signal is a cancel, not a crash


@dataclass
class Scheduler:
    project: Project
    store: Store
    clock: Clock = field(default_factory=RealClock)
    launcher: Launcher = launch_process
    jobs: list[str] | None = None  # only these jobs (default: all)
    log: Callable[[str, dict[str, Any]], None] = lambda message, detail: None
    leader: Leader = field(init=False)
    ledger: Ledger = field(init=False)
    deliveries: DeliveryWorker = field(init=False)
    running: dict[int, Running] = field(default_factory=dict)
    is_leader: bool = False
    _graph: Any = None
    _last_renew: datetime | None = None
    _last_slo_check: datetime | None = None
    _last_housekeeping: datetime | None = None
    _next_ticks: dict[str, datetime | None] = field(default_factory=dict)  # per job: its next cron tick

    def __post_init__(self) -> None:
        settings = self.project.config.scheduler
        self.leader = Leader(self.store, self.project.name, self.clock, settings.lease)
        self.ledger = Ledger(self.store, self.project.name)
        self.deliveries = DeliveryWorker(self.project, self.store, self.graph, self.log)
        self.schedules = {name: JobSchedule(name, job, self.project.config)
                          for name, job in self.project.config.jobs.items()
                          if self.jobs is None or name in self.jobs}

    # -- the loop ----------------------------------------------------------------------------
    def serve(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set; then stop the runs cleanly and give the lease up."""
        poll = self.project.config.scheduler.poll
        try:
            while not stop.is_set():
                self.step()
                self.clock.sleep(self._until_next_look(poll), stop)
        finally:
            self.shutdown()

    def _until_next_look(self, poll: float) -> float:
        """Seconds to sleep: ``poll``, or less when a cron tick falls due sooner — the leader wakes at the tick
        instead of noticing it up to a poll later."""
        if not self.is_leader:
            return poll
        now = self.clock.now()
        for name, schedule in self.schedules.items():
            if schedule.job.cron is None:
                continue
            if name not in self._next_ticks or (self._next_ticks[name] or now) <= now:  # unknown, or due
                self._next_ticks[name] = schedule.next_tick(now)
        due = [t for t in self._next_ticks.values() if t is not None and t > now]
        if not due:
            return poll
        return max(0.0, min(poll, (min(due) - now).total_seconds() + 0.001))

    def step(self) -> bool:
        """One look at the schedule; True when this scheduler is the leader."""
        was = self.is_leader
        self.is_leader = self.leader.acquire()
        if self.is_leader != was:
            self.log("leader" if self.is_leader else "follower",
                     {"holder": self.leader.holder, "pid": self.leader.pid})
            if self.launcher is launch_process and self.is_leader:
                warm_up(self.project)  # a process ready for the next tick: see kiban.schedule.warm
            elif self.launcher is launch_process:
                cool_down()
        if not self.is_leader:
            return False
        self._last_renew = self.clock.now()
        self._collect()
        self._settle_orphans()
        now = self.clock.now()
        self.claim_cron_ticks(now)
        for tick in fire_sensors(self.project, self.store, self.ledger, self.leader.holder, now,
                                 list(self.schedules)):
            self.log("sensor fired", {"tick": tick})
        self._start_queued(now)
        self._check_service_levels(now)
        self.deliveries.look(now)
        self._housekeeping(now)
        return True

    def _housekeeping(self, now: datetime) -> None:
        """Every minute: upload previews nobody landed expire (they may hold personal data)."""
        if self._last_housekeeping is not None and (now - self._last_housekeeping).total_seconds() < 60:
            return
        self._last_housekeeping = now
        try:
            removed = sweep_previews(self.project)
            if removed:
                self.log("expired upload previews removed", {"count": removed})
        except OSError as exc:
            self.log("upload previews could not be swept", {"error": str(exc)})

    def graph(self) -> Any:
        if self._graph is None:
            self._graph = build_graph(self.project)
        return self._graph

    def _check_service_levels(self, now: datetime) -> None:
        """Deadlines pass whether or not anything ran: judge the use cases every minute, open incidents,
        notify. A batch that never started is noticed here."""
        if not self.project.usecases:
            return
        if self._last_slo_check is not None and (now - self._last_slo_check).total_seconds() < SLO_CHECK_SECONDS:
            return
        self._last_slo_check = now
        try:
            if self._graph is None:
                self._graph = build_graph(self.project)
            result = check(self.project, self._graph, self.store, now)
            for incident in result.incidents:
                self.log("incident", {"id": incident.id, "usecase": incident.usecase, "verdict": incident.verdict})
            if self.project.config.channels:  # deliveries that failed are tried again, with backoff, for hours

                for sent in Notifier.of(self.project, self.store).retry_due():
                    self.log("notification retried", {"channel": sent.channel, "status": sent.status})
        except Exception as exc:  # the scheduler keeps scheduling whatever happens here
            self.log("service-level check failed", {"error": str(exc)})
            log.warning("scheduler: the service-level check failed", exc_info=True)

    def renew(self) -> None:
        """Keep the lease while waiting for runs (``--once``)."""
        renew_every = self.project.config.scheduler.renew
        if self._last_renew is None or (self.clock.now() - self._last_renew).total_seconds() >= renew_every:
            self.is_leader = self.leader.acquire()
            self._last_renew = self.clock.now()

    def wait_for_runs(self, stop: threading.Event) -> None:
        """Until every run this scheduler started has ended (``--once``)."""
        while self.running and not stop.is_set():
            self.renew()
            self._collect()
            if self.running:
                self.clock.sleep(0.2, stop)

    def shutdown(self) -> None:
        """Stop the runs this scheduler started (they cancel cleanly), record them, and release the lease."""
        for item in self.running.values():
            item.stopping = True
            item.handle.terminate()
        for item in list(self.running.values()):
            item.handle.wait(STOP_GRACE)
        self.deliveries.wait(STOP_GRACE)  # an attempt under way settles its row (else it is retried later)
        self._collect()
        if self.launcher is launch_process:
            cool_down()
        if self.is_leader:
            self.leader.release()
            self.is_leader = False

    # -- cron ticks ----------------------------------------------------------------------------
    def claim_cron_ticks(self, now: datetime) -> list[int]:
        """Claim the cron ticks due since each job's last handled tick, per its catch-up policy."""
        claimed: list[int] = []
        for name, schedule in self.schedules.items():
            if schedule.job.cron is None:
                continue
            last = self.ledger.cron_cursor(name)
            ticks = schedule.ticks(last or now - FIRST_LOOKBACK, now)
            to_run, to_skip = catch_up(schedule.job.catch_up, ticks, now)
            for tick in to_skip:
                self.ledger.claim(name, tick, "cron", self.leader.holder, now, status=TickStatus.SKIPPED,
                                  reason=f"missed (catch_up: {schedule.job.catch_up})")
            for tick in to_run:
                tick_id = self.ledger.claim(name, tick, "cron", self.leader.holder, now)
                if tick_id is not None:
                    claimed.append(tick_id)
                    self.log("tick", {"job": name, "scheduled_at": tick.isoformat() + "Z", "tick": tick_id})
            self.ledger.advance_cron_cursor(name, now)
        return claimed

    # -- starting and watching runs ------------------------------------------------------------
    def _priorities(self, now: datetime) -> dict[str, JobPriority]:
        if not any(job.for_ for job in self.project.config.jobs.values()):
            return {}
        try:
            if self._graph is None:
                self._graph = build_graph(self.project)
            return job_priorities(self.project, self._graph, self.store, now)
        except Exception as exc:  # ordering is an optimisation: never let it stop the schedule
            self.log("priorities unavailable", {"error": str(exc)})
            log.warning("scheduler: priorities unavailable, jobs start in schedule order", exc_info=True)
            return {}

    def _start_queued(self, now: datetime) -> None:
        queued = [t for t in self.ledger.pending() if t.status == TickStatus.QUEUED and t.job in self.schedules]
        slots = self.project.config.scheduler.max_runs - self._busy()
        if not queued or slots <= 0:
            return
        by_id = {t.id: t for t in queued}
        # Recoveries first: they finish work a crash interrupted, and `--resume` reads the last run.
        items = [(t.job, t.scheduled_at, t.id) for t in queued if t.kind in RECOVERY_KINDS]
        rest = [(t.job, t.scheduled_at, t.id) for t in queued if t.kind not in RECOVERY_KINDS]
        if len(rest) > 1 and slots < len(items) + len(rest):
            rest = ordered(rest, self._priorities(now))
        items += rest
        for job, scheduled, tick_id in items[:slots]:
            if not self._mark_running(tick_id, now):
                continue  # another scheduler started it
            kind = by_id[tick_id].kind
            handle = self.launcher(self.project, job, self.project.config.jobs[job], tick_id,
                                   resume=kind == "resume")
            self.ledger.update(tick_id, pid=handle.pid, host=HOST)
            self.running[tick_id] = Running(tick_id, job, handle, kind=kind, scheduled_at=scheduled)
            self.log("run started", {"job": job, "tick": tick_id, "pid": handle.pid, "kind": kind})

    def _mark_running(self, tick_id: int, now: datetime) -> bool:
        with self.store.engine.begin() as conn:
            result = conn.execute(job_ticks.update().where(job_ticks.c.id == tick_id,
                                                           job_ticks.c.status == TickStatus.QUEUED)
                                  .values(status=TickStatus.RUNNING, started_at=now, holder=self.leader.holder))
        return result.rowcount == 1

    def _busy(self) -> int:
        """Runs going on now: this scheduler's, and those a previous leader started that still run."""
        mine = len(self.running)
        others = sum(1 for t in self.ledger.pending() if t.status == TickStatus.RUNNING and t.id not in self.running)
        return mine + others

    def _collect(self) -> None:
        """Record the outcome of the runs that ended."""
        for tick_id, item in list(self.running.items()):
            if item.run_id is None:
                item.run_id = item.handle.run_id()
                if item.run_id is not None:
                    self.ledger.update(tick_id, run_id=item.run_id)
            code = item.handle.poll()
            if code is None:
                continue
            item.run_id = item.run_id or item.handle.run_id()
            status = run_outcome(self.store, self.project.name, item.run_id, code, item.stopping)
            self.ledger.update(tick_id, status=status, exit_code=code, ended_at=self.clock.now(), run_id=item.run_id)
            del self.running[tick_id]
            self.log("run ended", {"job": item.job, "tick": tick_id, "status": status, "exit_code": code,
                                   "run_id": item.run_id})
            if status == TickStatus.LOST and item.scheduled_at is not None:
                self._recover(CrashedTick(item.job, tick_id, item.kind, item.scheduled_at, item.run_id))

    def _settle_orphans(self) -> None:
        """Ticks another (dead) scheduler left running: take their run's outcome from the store."""
        for tick in self.ledger.pending():
            if tick.status != TickStatus.RUNNING or tick.id in self.running:
                continue
            status: str | None = None
            run_status = self.ledger.run_status(tick.run_id) if tick.run_id else None
            if run_status == RunStatus.RUNNING and pid_alive(tick.pid, tick.host) is False:
                self.store.reap_abandoned(self.project.name)  # the process is gone: the run is abandoned
                run_status = self.ledger.run_status(tick.run_id) if tick.run_id else None
            if run_status is not None and run_status != RunStatus.RUNNING:
                status = {RunStatus.SUCCESS: TickStatus.SUCCESS, RunStatus.NOTHING: TickStatus.SUCCESS,
                          RunStatus.CANCELLED: TickStatus.CANCELLED,
                          RunStatus.ABANDONED: TickStatus.LOST}.get(RunStatus(run_status), TickStatus.FAILED)
            elif pid_alive(tick.pid, tick.host) is False:
                status = TickStatus.LOST
            elif tick.pid is None and tick.holder != self.leader.holder and tick.started_at is not None and \
                    (self.clock.now() - tick.started_at).total_seconds() > 2 * self.project.config.scheduler.lease:
                status = TickStatus.LOST  # its scheduler died between marking it and starting its process
            if status is not None:
                self.ledger.update(tick.id, status=status, ended_at=self.clock.now(),
                                   reason=(tick.reason or "") + " (settled by another scheduler)")
                if status == TickStatus.LOST:
                    self._recover(CrashedTick(tick.job, tick.id, tick.kind, tick.scheduled_at, tick.run_id))

    def _recover(self, crashed: CrashedTick) -> None:
        """A tick's run crashed: queue its one resume, if the job's ``on_crash`` says so."""
        job, tick_id, run_id = crashed.job, crashed.id, crashed.run_id
        config = self.project.config.jobs.get(job)
        if config is None:
            return
        queued = queue_recovery(self.ledger, config, crashed, self.leader.holder, self.clock.now())
        if queued is not None:
            self.log("run crashed: resume queued", {"job": job, "tick": tick_id, "run_id": run_id, "resume": queued})
        else:
            self.log("run crashed", {"job": job, "tick": tick_id, "run_id": run_id, "on_crash": config.on_crash})

