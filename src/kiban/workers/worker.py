"""A worker: claims ready assets of its project from the run queue, builds them, records the outcome.

Run as many as you like, on one machine or many (``kiban worker``): each one holds at most one asset at a
time, renews its heartbeat every few seconds, and takes over assets whose worker stopped heartbeating.
A build is the same as in ``kiban run``: the engine's one-transaction publish, with the run's retries,
timeouts and audit hooks (the executor's, for exactly one asset).

Correct under pauses, kills, clock skew and rolling deploys (issue 18):

- **Fencing.** Each claim carries a new token; before building, the worker raises the asset's fence in the
  warehouse to it, and the publish checks the fence inside its transaction (PostgreSQL: a locked row; Spark: a
  locked fence file around the pointer swap). A worker paused past its lease finds a newer token and publishes
  nothing. A paused worker's open transaction is ended by the server (``idle_in_transaction_session_timeout``),
  and every wait on a lock is bounded (``lock_timeout``; the store's statements also by ``statement_timeout``).
- **Server time.** Leases expire by the store server's clock (``kiban.workers.queue``).
- **Same project.** A worker claims only rows queued for its own project version (every model's SQL); while
  runs of another version wait, it says so (``worker_refused``) instead of failing their assets.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa

from kiban.collect.collector import CollectRun, collect_assets
from kiban.collect.manifest import Fence
from kiban.engines import Engine, open_engine
from kiban.engines.base import FENCED
from kiban.graph import Graph, build_graph
from kiban.project import Project
from kiban.python.models import PythonModelRunner
from kiban.run.events import Event, Listener
from kiban.run.executor import AuditFor, Executor, Outcome
from kiban.run.plan import built_whole
from kiban.run.runner import _collected_tables, _policy
from kiban.status import AttemptStatus
from kiban.store import Store, utcnow
from kiban.workers.queue import (
    COLLECT,
    REFUSING,
    Claim,
    RunQueue,
    collect_code,
    project_version,
    worker_timeouts,
)

log = logging.getLogger(__name__)
FINISH_ATTEMPTS = 5  # a deadlocked or cut finish is tried again this many times
LEASE_SECONDS = 15.0  # a row whose holder has not heartbeated for this long is given to another worker
POLL_SECONDS = 0.2


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


@dataclass
class WorkerOptions:
    worker_id: str = field(default_factory=new_worker_id)
    lease: float = LEASE_SECONDS
    poll: float = POLL_SECONDS
    idle_exit: float | None = None  # stop after this many seconds without work (None: run until stopped)
    max_assets: int | None = None  # stop after building this many (None: no limit)


class Worker:
    """One worker process's loop. ``stop()`` (from a signal handler or another thread) ends it between assets."""

    def __init__(self, project: Project, options: WorkerOptions, listeners: list[Listener] | None = None,
                 audit: AuditFor | None = None) -> None:
        self.project = project
        self.options = options
        self.listeners = listeners or []
        self.audit = audit
        self.halt = threading.Event()
        self.built = 0
        self._executor: Executor | None = None
        self._collecting: CollectRun | None = None
        self._prepared_for: str | None = None  # the run whose lake this worker's engine last prepared

    def stop(self) -> None:
        self.halt.set()
        if self._executor is not None:
            self._executor.stop()
        collecting = self._collecting
        if collecting is not None:  # the load stops between two batches; nothing of it commits
            collecting.cancel.set()
            for switch in list(collecting.stops.values()):
                switch.set()

    def emit(self, event: Event) -> None:
        for listener in self.listeners:
            listener(event)

    def serve(self) -> int:
        """Work until stopped, idle for ``idle_exit`` seconds or ``max_assets`` built. Returns assets built."""
        store = Store(self.project.state_url)
        queue = RunQueue(store)
        worker_timeouts(store, self.options.lease)
        engine: Engine | None = None  # opened at the first model: a worker that only collects needs no warehouse
        graph = build_graph(self.project)
        version = project_version(graph)
        refused: set[str] = set()
        worker_id = self.options.worker_id
        queue.register(worker_id, self.project.name, os.getpid())
        beat = threading.Thread(target=self._heartbeat, args=(queue,), daemon=True, name="kiban-worker-heartbeat")
        beat.start()
        idle_since = time.monotonic()
        try:
            while not self.halt.is_set():
                try:
                    queue.requeue_expired(self.project.name, self.options.lease)
                except Exception:  # a lost connection: try again on the next turn
                    log.warning("worker %s: requeueing expired claims failed", worker_id, exc_info=True)
                try:
                    claim = queue.claim(self.project.name, worker_id, version)
                except sa.exc.OperationalError:  # the store is unreachable for a moment: wait and try again
                    self.halt.wait(max(self.options.poll, 1.0))
                    continue
                if claim is None:
                    self._refuse_foreign(queue, version, refused)
                    if self.options.idle_exit is not None and time.monotonic() - idle_since > self.options.idle_exit:
                        break
                    self.halt.wait(self.options.poll)
                    continue
                try:
                    if claim.fingerprint.startswith(COLLECT):
                        self._collect(claim, queue, store)
                    else:
                        engine = engine or self._open_engine()
                        self._build(claim, queue, store, engine, graph)
                except Exception as exc:  # e.g. woken from a pause to connections the server closed, a deadlock
                    log.warning("worker %s: building %s failed outside the build: %s", self.options.worker_id,
                                claim.asset, exc, exc_info=True)
                    engine = self._recover(claim, queue, engine)
                idle_since = time.monotonic()
                if self.options.max_assets is not None and self.built >= self.options.max_assets:
                    break
        finally:
            self.halt.set()
            try:
                queue.unregister(worker_id)
            except Exception:  # its heartbeat stops: the others see it gone when its lease expires
                log.warning("worker %s: could not unregister", worker_id, exc_info=True)
            if engine is not None:
                engine.close()
            store.close()
        return self.built

    def _open_engine(self) -> Engine:
        engine = open_engine(self.project.warehouse_url, self.project.config.timezone)
        configure = getattr(engine, "configure", None)
        if configure is not None:  # PostgreSQL: bounded waits; a paused worker's transaction ends on the server
            configure({"lock_timeout": f"{max(1000, int(self.options.lease * 1000))}ms",
                       "idle_in_transaction_session_timeout": f"{max(1000, int(self.options.lease * 500))}ms"})
        return engine

    def _recover(self, claim: Claim, queue: RunQueue, engine: Engine | None) -> Engine | None:
        """A build or its bookkeeping failed outside the asset's own outcome: the worker lives on (issue 18 soak).

        Its claim goes back to the queue (if it still holds it: a fenced or expired claim is someone else's),
        and the engine is opened anew — its connections may be the ones the server closed."""
        worker_id = self.options.worker_id
        try:
            queue.release(claim, worker_id, f"worker {worker_id} lost its connections while building {claim.asset}")
        except Exception:  # its lease runs out instead: the claim is someone else's after that
            log.debug("worker %s: could not give back its claim on %s", worker_id, claim.asset, exc_info=True)
        if engine is None:  # a collection: nothing of the warehouse to reopen
            return None
        try:
            engine.close()
        except Exception:  # connections the server already closed
            log.debug("worker %s: closing the old engine failed", worker_id, exc_info=True)
        self._prepared_for = None
        while not self.halt.is_set():
            try:
                return self._open_engine()
            except Exception:  # the warehouse is unreachable for a moment
                log.warning("worker %s: could not reopen the warehouse", worker_id, exc_info=True)
                self.halt.wait(max(self.options.poll, 1.0))
        return engine

    def _heartbeat(self, queue: RunQueue) -> None:
        while not self.halt.wait(min(2.0, self.options.lease / 4)):
            try:
                queue.heartbeat(self.options.worker_id)
            except Exception:  # missed beats are retried; the lease allows several
                log.warning("worker %s: missed a heartbeat", self.options.worker_id, exc_info=True)

    def _refuse_foreign(self, queue: RunQueue, version: str, refused: set[str]) -> None:
        """Say once per run that its assets wait for workers with the run's project, and show it in the
        workers table (the coordinator reports it)."""
        try:
            foreign = queue.foreign_runs(self.project.name, version)
            if foreign:
                queue.set_status(self.options.worker_id, REFUSING)
            for run_id in foreign:
                if run_id not in refused:
                    refused.add(run_id)
                    self.emit(Event("worker_refused", run_id, error=(
                        f"worker {self.options.worker_id} has another version of project {self.project.name} "
                        f"({version[:12]}) than run {run_id}: it claims none of its assets; deploy the same "
                        "project to every worker")))
            if not foreign and refused:
                queue.set_status(self.options.worker_id, "idle")
                refused.clear()
        except Exception:  # the store is unreachable for a moment: said at the next poll
            log.warning("worker %s: could not check the queue for other project versions", self.options.worker_id,
                        exc_info=True)

    def _build(self, claim: Claim, queue: RunQueue, store: Store, engine: Engine, graph: Graph) -> None:
        worker_id = self.options.worker_id
        key = claim.asset
        record = _recorder(store, claim.run_id)
        claim_fence = getattr(engine, "claim_fence", None)
        if claim_fence is not None:  # raise the asset's fence to this claim's token before anything is built
            try:
                if not claim_fence(key, claim.token, claim.run_id):
                    return  # a newer claim holds it: this one is stale, its row is someone else's
            except Exception as exc:  # a publish holds the fence longer than a lock wait: give the row back
                log.warning("worker %s: could not take the fence of %s", worker_id, key, exc_info=True)
                queue.release(claim, worker_id, f"worker {worker_id} could not take the fence of {key}: "
                              f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}")
                return
        if key not in graph.assets or graph.sql_hashes.get(key) != claim.code:
            outcome = Outcome(key, "failed", error=f"worker {worker_id} has a different version of the project "
                              f"than the run's coordinator ({key}): deploy the same project to every worker")
            outcome.started_at = outcome.ended_at = utcnow()
            record(outcome, claim.claims, claim.fingerprint)
            self._finish(claim, queue, store, outcome)
            return
        if claim.run_id != self._prepared_for:  # the lake as this run sees it (a no-op when unchanged)
            lake = [graph.assets[k] for k in graph.order if graph.assets[k].layer == "lake"]
            engine.prepare(lake, _collected_tables(self.project, store))
            engine.define_macros(list(self.project.macros.values()))
            self._prepared_for = claim.run_id
        published_by = getattr(engine, "published_by", None)
        if engine.published().get(key) == claim.fingerprint and (
                published_by is None or published_by(key) == claim.run_id):
            # A worker of this run that died between its publish and its record already built exactly this
            # version (a publish of an earlier run does not count: --full-refresh rebuilds it).
            outcome = Outcome(key, "success", attempts=0, started_at=utcnow(), ended_at=utcnow(),
                              error=None)
            record(outcome, claim.claims, claim.fingerprint)
            self.emit(Event("asset_finished", claim.run_id, asset=key, status=AttemptStatus.SUCCESS,
                            detail={"worker": worker_id, "already_published": True}))
            self._finish(claim, queue, store, outcome)
            return
        # the coordinator's plan built it whole when older data of an input changed: the same test, here
        if graph.assets[key].config.incremental and built_whole(engine.published().get(key, ""), claim.fingerprint):
            engine.rebuild_whole.add(key)
        else:
            engine.rebuild_whole.discard(key)
        executor = Executor(engine=engine, graph=graph, run_id=claim.run_id, fingerprints={key: claim.fingerprint},
                            threads=1, policy_for=lambda a: _policy(self.project, a), emit=self.emit, record=record,
                            audit=self.audit, python_models=PythonModelRunner(self.project.root, graph.python_inputs))
        self._executor = executor
        try:
            outcome = executor.execute([key])[key]
        finally:
            self._executor = None
            getattr(engine, "fences", {}).pop(key, None)
        self._finish(claim, queue, store, outcome)

    def _collect(self, claim: Claim, queue: RunQueue, store: Store) -> None:
        """Load the source table a collection row names, as ``kiban collect`` does (its retries and timeout),
        fenced: the load's Delta commit and manifest happen only while this worker still holds the claim."""
        worker_id, key = self.options.worker_id, claim.asset
        if key not in self.project.source_tables() or collect_code(self.project, key) != claim.code:
            outcome = Outcome(key, AttemptStatus.FAILED, error=f"worker {worker_id} has a different version of "
                              f"the project than the run's coordinator ({key}'s source): deploy the same project "
                              "to every worker")
            outcome.started_at = outcome.ended_at = utcnow()
            _recorder(store, claim.run_id)(outcome, claim.claims, claim.fingerprint)
            self._finish(claim, queue, store, outcome)
            return
        fence = Fence(run_id=claim.run_id, check=lambda conn: queue.check_fence(conn, claim, worker_id),
                      steals=lambda holder: holder == claim.run_id)
        run = CollectRun(self.project, store, claim.run_id, self.emit,
                         lambda a: _collect_policy(self.project, a), fence=fence)
        self._collecting = run
        try:
            done = collect_assets(run, [key], threads=1)[key]
        finally:
            self._collecting = None
        outcome = Outcome(key, done.status, attempts=done.attempts, rows=done.rows, error=done.error,
                          started_at=done.started_at, ended_at=done.ended_at)
        # A fenced load's claim is someone else's: finishing it records nothing on that row (the claim's token no
        # longer matches) but says this worker is idle again, as a fenced build does. Returning without it left a
        # woken worker listed as busy with a table it no longer held, until its next claim.
        self._finish(claim, queue, store, outcome)

    def _finish(self, claim: Claim, queue: RunQueue, store: Store, outcome: Outcome) -> None:
        for attempt in range(FINISH_ATTEMPTS):  # one transaction, guarded by the claim's token: safe to repeat
            try:
                held, skipped = queue.finish(claim, self.options.worker_id, outcome.status, outcome.rows,
                                             outcome.error)
                break
            except sa.exc.OperationalError:  # a deadlock with another worker's finish, a lost connection
                if attempt == FINISH_ATTEMPTS - 1:
                    raise
                log.warning("worker %s: recording %s failed, trying again", self.options.worker_id, claim.asset,
                            exc_info=True)
                self.halt.wait(0.1 * (attempt + 1))
        if held:
            self.built += 1
        now = utcnow()
        status = AttemptStatus.CANCELLED if outcome.status == AttemptStatus.CANCELLED else AttemptStatus.SKIPPED
        store.record_attempts([dict(run_id=claim.run_id, asset=k, status=status, attempt=0, started_at=now,
                                    ended_at=now, fingerprint=None,
                                    error=f"upstream {claim.asset} {outcome.status}") for k in skipped])


def _collect_policy(project: Project, key: str) -> tuple[int, float, float | None]:
    """A table's retries, retry delay and timeout: what ``kiban run`` gives it (``kiban.run.runner``)."""
    policy = _policy(project, project.assets[key])
    return policy.retries, policy.retry_delay, policy.timeout


def _recorder(store: Store, run_id: str) -> Callable[[Outcome, int, str], None]:
    def record(outcome: Outcome, attempt: int, fingerprint: str) -> None:
        if outcome.error and FENCED in outcome.error:
            return  # a stale claim's attempt: the asset belongs to its new holder, whose outcome counts
        store.record_attempt(run_id, outcome.asset, outcome.status, attempt=attempt, started_at=outcome.started_at,
                             ended_at=outcome.ended_at, rows=outcome.rows, nbytes=outcome.nbytes,
                             fingerprint=fingerprint, error=outcome.error, watermark=outcome.watermark)

    return record
