"""Executing a plan: assets in dependency order on a pool of worker threads.

Each asset is retried with exponential backoff and jitter; a timeout interrupts the running
statement for real. When an asset fails, everything downstream of it is skipped with the reason
while independent branches go on. Cancelling (Ctrl-C, SIGTERM) interrupts running statements;
nothing half-built is ever published because publishing is one transaction.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import date, datetime

from kiban.engines import AuditHook, BuildResult, Engine, Session
from kiban.engines.base import PythonModels
from kiban.errors import KibanError, without_values
from kiban.graph import Graph
from kiban.project import Asset
from kiban.run.events import Event, Listener
from kiban.run.sizing import LIGHT_SECONDS, Sizing
from kiban.status import AttemptStatus
from kiban.store import utcnow

log = logging.getLogger("kiban.run")

# The audit hook for one build: (asset, run id, fingerprint of the new version) → a hook, or None (nothing
# to check). Data-quality checks (kiban.checks.gate.Gate) are one; the hook runs inside the publish.
AuditFor = Callable[[Asset, str, str], AuditHook | None]


log = logging.getLogger(__name__)


def _until_heavier(light: dict[Future[Outcome], float]) -> float:
    """How long to wait for a build to end: at most half a second, and no longer than the first light build running
    has left before it counts as light no more (its threads are shared out again then)."""
    now = time.monotonic()
    left = [start + LIGHT_SECONDS - now for start in light.values() if start + LIGHT_SECONDS > now]
    return min(0.5, max(0.01, min(left))) if left else 0.5


class Cancelled(Exception):
    """The run was asked to stop."""


class TimedOut(Exception):
    """An attempt ran past its timeout and was interrupted."""


@dataclass
class Outcome:
    asset: str
    status: str  # an AttemptStatus: success, retrying (another attempt follows), failed, skipped, cancelled
    attempts: int = 0
    rows: int | None = None
    nbytes: int | None = None
    watermark: date | None = None
    error: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None


@dataclass
class Policy:
    retries: int = 0
    retry_delay: float = 1.0
    timeout: float | None = None


@dataclass
class Executor:
    engine: Engine
    graph: Graph
    run_id: str
    fingerprints: dict[str, str]
    threads: int
    policy_for: Callable[[Asset], Policy]
    emit: Listener
    record: Callable[[Outcome, int, str], None]  # outcome, attempt number, fingerprint
    audit: AuditFor | None = None
    after: dict[str, tuple[str, ...]] = field(default_factory=dict)  # ordering only: not inputs, never skipped
    unavailable: dict[str, str] = field(default_factory=dict)  # input → why it cannot be read
    # How big each build is (kiban.run.sizing): a heavy one runs alone; light ones running by themselves get one
    # of the engine's threads each. None: every build is neither.
    sizing: Sizing | None = None
    # Per-tag concurrency limits (kiban.yml `limits: {tag: N}`), e.g. one extraction from the POS database at a time.
    limits: dict[str, int] = field(default_factory=dict)
    cancel: threading.Event = field(default_factory=threading.Event)
    # Work handed over while the run goes (``kiban.run.handoff``): called between scheduling steps with what the
    # run already has; returns new assets to build (in dependency order), which go ahead of the queue.
    intake: Callable[[set[str]], list[str]] | None = None
    # what runs Python models for the engine (kiban.python.models.PythonModelRunner); None: a Python model fails
    python_models: PythonModels | None = None
    _active: dict[str, Session] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # sessions a build finished cleanly with, for the next build (engines whose sessions say ``reusable``): a
    # cursor and its settings made once per worker, not once per model
    _idle: list[Session] = field(default_factory=list)

    def stop(self) -> None:
        """Cancel the run: interrupt every running statement."""
        self.cancel.set()
        with self._lock:
            for session in self._active.values():
                session.interrupt()

    def execute(self, build: list[str]) -> dict[str, Outcome]:
        todo = set(build)
        outcomes: dict[str, Outcome] = {}
        waiting = {k: {d for d in (*self.graph.deps[k], *self.after.get(k, ())) if d in todo and d != k}
                   for k in build}
        later: dict[str, list[str]] = {}  # the reverse of `after`
        for key, firsts in self.after.items():
            for first in firsts:
                later.setdefault(first, []).append(key)
        ready = [k for k in build if not waiting[k]]
        running: dict[Future[Outcome], str] = {}
        light: dict[Future[Outcome], float] = {}  # light builds running, and when each started (monotonic)
        with ThreadPoolExecutor(max_workers=max(1, self.threads), thread_name_prefix="kiban") as pool:
            alone: str | None = None  # a heavy asset running with the machine to itself
            while ready or running:
                if self.intake is not None and not self.cancel.is_set():
                    self._take_in(todo, waiting, ready, outcomes)
                while ready and len(running) < self.threads and alone is None and not self.cancel.is_set():
                    # -- per-tag limits: the first ready asset whose tags all have a free slot ----------------
                    pick = self._within_limits(ready, running.values())
                    if pick is None:
                        break  # every ready asset waits for one of its tags' running assets to finish
                    # -- end of per-tag limits -------------------------------------------------------------
                    if self.sizing is not None and self.sizing.heavy(ready[pick], outcomes):
                        if running:
                            break  # let the others finish; then it runs alone
                        alone = ready[pick]
                    key = ready.pop(pick)
                    future = pool.submit(self._run_asset, key)
                    running[future] = key
                    if self.sizing is not None and self.sizing.light(key, outcomes):
                        light[future] = time.monotonic()
                self._share(running, light)
                if self.cancel.is_set():
                    for key in ready:
                        outcomes[key] = self._finish_unstarted(key, "cancelled", "the run was cancelled")
                    ready.clear()
                if not running:
                    break
                try:
                    done, _ = wait(running, timeout=_until_heavier(light), return_when=FIRST_COMPLETED)
                except KeyboardInterrupt:  # Ctrl-C or SIGTERM: stop, then collect what was running
                    self.stop()
                    continue
                for future in done:
                    key = running.pop(future)
                    light.pop(future, None)
                    if key == alone:
                        alone = None
                    outcome = future.result()
                    outcomes[key] = outcome
                    children = self.graph.children[key]
                    for child in [*children, *(k for k in later.get(key, ()) if k not in children)]:
                        if child not in waiting or child in outcomes:
                            continue
                        if outcome.status != AttemptStatus.SUCCESS and child in children:
                            self._skip_downstream(child, key, outcome, outcomes, waiting)
                            continue
                        waiting[child].discard(key)
                        if not waiting[child]:
                            ready.append(child)
        self.engine.share(1)  # what follows the builds (checks, the snapshot) has every thread again
        with self._lock:
            idle, self._idle = self._idle, []
        for session in idle:
            session.close()
        for key in [*build, *(k for k in todo if k not in build)]:  # never reached (cancelled before its inputs)
            if key not in outcomes:
                outcomes[key] = self._finish_unstarted(key, "cancelled", "the run was cancelled")
        return outcomes

    def _share(self, running: dict[Future[Outcome], str], light: dict[Future[Outcome], float]) -> None:
        """The builds running now share the engine's threads; only light ones (none running past LIGHT_SECONDS):
        one thread each."""
        now = time.monotonic()
        only_light = bool(running) and all(f in light and now - light[f] < LIGHT_SECONDS for f in running)
        self.engine.share(len(running), light=only_light)

    def _take_in(self, todo: set[str], waiting: dict[str, set[str]], ready: list[str],
                 outcomes: dict[str, Outcome]) -> None:
        """Add the assets handed over since the last look; what is ready goes first (someone waits for it)."""
        assert self.intake is not None
        first: list[str] = []
        for key in self.intake(set(todo)):
            if key in todo and key not in outcomes:
                continue  # still to come in this run
            outcomes.pop(key, None)  # built earlier in this run: built again, on the newer data
            todo.add(key)
            deps = {d for d in (*self.graph.deps[key], *self.after.get(key, ())) if d in todo and d != key}
            broken = next((d for d in deps if d in outcomes and outcomes[d].status != AttemptStatus.SUCCESS), None)
            if broken is not None:
                outcomes[key] = self._finish_unstarted(key, "skipped", f"upstream {broken} failed")
                continue
            waiting[key] = {d for d in deps if d not in outcomes}
            if not waiting[key]:
                first.append(key)
        ready[:0] = first

    def _within_limits(self, ready: list[str], running: Iterable[str]) -> int | None:
        """Per-tag limits: the index of the first ready asset that may start now — for each of its tags with a
        limit, fewer assets with that tag are running than the limit — or None when all must wait."""
        if not self.limits:
            return 0
        busy: dict[str, int] = {}
        for key in running:
            for tag in self.graph.assets[key].config.tags:
                busy[tag] = busy.get(tag, 0) + 1
        for index, key in enumerate(ready):
            if all(busy.get(tag, 0) < self.limits[tag] for tag in self.graph.assets[key].config.tags
                   if tag in self.limits):
                return index
        return None

    def _skip_downstream(self, key: str, cause: str, cause_outcome: Outcome,
                         outcomes: dict[str, Outcome], waiting: dict[str, set[str]]) -> None:
        status = AttemptStatus.CANCELLED if cause_outcome.status == AttemptStatus.CANCELLED else AttemptStatus.SKIPPED
        verb = {"failed": "failed", "skipped": "was skipped"}.get(cause_outcome.status, cause_outcome.status)
        reason = f"upstream {cause} {verb}" if status == AttemptStatus.SKIPPED else "the run was cancelled"
        stack = [key]
        while stack:
            node = stack.pop()
            if node in outcomes or node not in waiting:
                continue
            outcomes[node] = self._finish_unstarted(node, status, reason)
            stack.extend(self.graph.children[node])

    def _finish_unstarted(self, key: str, status: str, reason: str) -> Outcome:
        outcome = Outcome(key, status, error=reason)
        self.record(outcome, 0, self.fingerprints[key])
        self.emit(Event("asset_finished", self.run_id, asset=key, status=status, error=reason))
        return outcome

    def _run_asset(self, key: str) -> Outcome:
        asset = self.graph.assets[key]
        policy = self.policy_for(asset)
        fingerprint = self.fingerprints[key]
        attempt = 0
        while True:
            attempt += 1
            started = utcnow()
            self.emit(Event("asset_started", self.run_id, asset=key, attempt=attempt))
            outcome = Outcome(key, "success", attempts=attempt, started_at=started)
            permanent = False
            try:
                result = self._attempt(asset, fingerprint, attempt, policy.timeout)
                outcome.rows, outcome.nbytes, outcome.watermark = result.rows, result.nbytes, result.watermark
            except Cancelled:
                outcome.status, outcome.error = AttemptStatus.CANCELLED, "the run was cancelled"
            except TimedOut as exc:
                outcome.status, outcome.error = AttemptStatus.FAILED, str(exc)
            except Exception as exc:  # recorded as the attempt's error; the traceback goes to the log
                outcome.status, outcome.error = AttemptStatus.FAILED, _clean_error(exc, asset.sql or "")
                # an error may say itself whether another attempt can help (a Python model's function raised)
                said = getattr(exc, "retryable", None)
                permanent = not said if isinstance(said, bool) else not self.engine.retryable(exc)
                log.info("run %s: %s attempt %d failed: %s", self.run_id, key, attempt, outcome.error, exc_info=True)
                if permanent and attempt <= policy.retries:
                    log.info("%s: not retried (%s): the same input fails the same way", key, type(exc).__name__)
            outcome.ended_at = utcnow()
            seconds = (outcome.ended_at - started).total_seconds()
            if outcome.status == AttemptStatus.FAILED and attempt <= policy.retries and not permanent \
                    and not self.cancel.is_set():
                delay = policy.retry_delay * (2 ** (attempt - 1)) * random.uniform(0.5, 1.5)
                retry = Outcome(key, AttemptStatus.RETRYING, attempt, error=outcome.error, started_at=started,
                                ended_at=outcome.ended_at)
                self.record(retry, attempt, fingerprint)
                self.emit(Event("asset_retry", self.run_id, asset=key, attempt=attempt, error=outcome.error,
                                seconds=seconds, detail={"delay": round(delay, 2)}))
                if self.cancel.wait(delay):
                    outcome.status, outcome.error = AttemptStatus.CANCELLED, "the run was cancelled"
                else:
                    continue
            self.record(outcome, attempt, fingerprint)
            self.emit(Event("asset_finished", self.run_id, asset=key, status=outcome.status, attempt=attempt,
                            rows=outcome.rows, seconds=seconds, error=outcome.error))
            return outcome

    def _attempt(self, asset: Asset, fingerprint: str, attempt: int, timeout: float | None) -> BuildResult:
        if self.cancel.is_set():
            raise Cancelled()
        missing = [d for d in self.graph.deps[asset.key] if d in self.unavailable]
        if missing:
            raise KibanError("; ".join(self.unavailable[d] for d in missing))
        with self._lock:
            session = self._idle.pop() if self._idle else None
        if session is None:
            session = self.engine.session()
        timed_out = threading.Event()
        clean = False  # a session is kept for the next build only after a plain, successful build

        def on_timeout() -> None:
            timed_out.set()
            session.interrupt()

        timer = threading.Timer(timeout, on_timeout) if timeout else None
        with self._lock:
            self._active[asset.key] = session
        try:
            if timer:
                timer.daemon = True
                timer.start()
            tag = f"{self.run_id[-6:]}_{attempt}"
            hook = self.audit(asset, self.run_id, fingerprint) if self.audit else None
            result = self.engine.build(session, asset, fingerprint, tag, hook, self.python_models)
            # (not after an audit: what the checks left on the session is theirs to know)
            clean = timer is None and hook is None and asset.python is None and getattr(session, "reusable", False)
            return result
        except Exception:
            if self.cancel.is_set():
                raise Cancelled() from None
            if timed_out.is_set():
                raise TimedOut(f"timed out after {timeout:g} s (the query was interrupted)") from None
            raise
        finally:
            if timer:
                timer.cancel()
            with self._lock:
                self._active.pop(asset.key, None)
                keep = clean and not self.cancel.is_set()  # (under the lock: stop() interrupts what is active)
                if keep:
                    self._idle.append(session)
            if not keep:
                session.close()


def _clean_error(exc: BaseException, code: str = "") -> str:
    """What an attempt's error says, as kept in the state store and shown on every run page: an engine error that
    quotes a data value (a failed cast of an e-mail) says it without the value (``kiban.errors.without_values``) —
    run pages are read by people without PII clearance; someone cleared reproduces it in the console."""
    return without_values(str(exc).strip() or type(exc).__name__, code)
