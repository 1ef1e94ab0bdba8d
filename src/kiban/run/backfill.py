"""Backfills: every partition of a date range of the selected incremental models, resumably.

Each partition is replaced in its own warehouse transaction (delete its rows, insert the new ones, note the
partition), then its outcome is written to the store. A backfill that is interrupted — Ctrl-C, SIGKILL,
a crash — is picked up by the next ``kiban backfill`` with the same models and range: partitions already
recorded as done are skipped. A partition redone because the process died between its commit and its
record is harmless: replacing a partition is idempotent.

Backfills take the project's run lock, so a backfill and ``kiban run`` never write at the same time.
Only incremental models can be backfilled; anything else in the selection is refused before any work.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime

from kiban.engines import AuditHook, Engine, Session, open_engine
from kiban.engines.base import CollectedTable
from kiban.errors import KibanError, UsageError
from kiban.graph import Graph, build_graph, select
from kiban.project import Asset, Project
from kiban.run.executor import AuditFor
from kiban.run.partitions import following, partition_range
from kiban.status import BackfillStatus
from kiban.store import Store, utcnow
from kiban.store.backfills import BackfillLedger, NewBackfill
from kiban.store.ticks import work_waiting

log = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 5.0
CONFLICT_RETRIES = 5  # two partitions of one table committing at once may conflict in DuckDB; try again


@dataclass
class BackfillOptions:
    select: Sequence[str] = ()
    exclude: Sequence[str] = ()
    start: str = ""  # --from
    end: str = ""  # --to (included)
    concurrency: int = 4
    wait: float = 0.0
    restart: bool = False  # ignore an unfinished backfill of the same models and range


@dataclass(frozen=True)
class PartitionOutcome:
    asset: str
    start: datetime
    status: str  # success, failed, skipped
    rows: int | None = None
    seconds: float = 0.0
    error: str | None = None
    attempts: int = 1


@dataclass
class BackfillResult:
    backfill_id: str
    status: str  # success, failed, cancelled
    total: int
    done_before: int  # partitions a resumed backfill found already done
    resumed: bool
    outcomes: list[PartitionOutcome] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> list[PartitionOutcome]:
        return [o for o in self.outcomes if o.status == BackfillStatus.FAILED]

    @property
    def processed(self) -> int:
        return sum(1 for o in self.outcomes if o.status == BackfillStatus.SUCCESS)


# Called once before work starts (total partitions, already done), then after each partition.
OnStart = Callable[[str, int, int], None]
OnPartition = Callable[[PartitionOutcome], None]


def backfill_key(project: Project, assets: list[Asset], start: datetime, stop: datetime) -> str:
    """The identity of a backfill: the same models with the same code over the same range resume."""
    from kiban.engines.duckdb_partitions import code_of

    text = json.dumps([project.name, [(a.key, code_of(a)) for a in assets], start.isoformat(), stop.isoformat()])
    return hashlib.sha256(text.encode()).hexdigest()


def _selected_models(project: Project, options: BackfillOptions) -> tuple[Graph, list[Asset]]:
    graph = build_graph(project)
    if not options.select:
        raise UsageError("say which incremental models to backfill", "e.g. kiban backfill warehouse.order_lines "
                         "--from 2024-01-01 --to 2024-12-31")
    keys = [k for k in select(graph, options.select, options.exclude) if graph.assets[k].layer != "lake"]
    if not keys:
        raise UsageError("the selection holds no models to backfill")
    others = [k for k in keys if not graph.assets[k].config.incremental]
    if others:
        names = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise UsageError(f"only incremental models can be backfilled; {names} "
                         f"{'is' if len(others) == 1 else 'are'} rebuilt whole by `kiban run`",
                         "select only incremental models (materialized: incremental), e.g. by name or tag:")
    return graph, [graph.assets[k] for k in keys]  # dependency order: upstream partitions come first


def run_backfill(project: Project, options: BackfillOptions, on_start: OnStart | None = None,
                 on_partition: OnPartition | None = None, audit: AuditFor | None = None,
                 cancel: threading.Event | None = None) -> BackfillResult:
    """Backfill the selected incremental models from ``options.start`` to ``options.end`` (both included)."""
    if options.concurrency < 1:
        raise UsageError("--concurrency must be 1 or more")
    graph, assets = _selected_models(project, options)
    work = {a.key: partition_range(options.start, options.end, a.config.partition_grain) for a in assets}
    first = min(s[0] for s in work.values())
    stop = max(following(s[-1], a.config.partition_grain) for a, s in zip(assets, work.values(), strict=True))
    total = sum(len(s) for s in work.values())
    store = Store(project.state_url)
    ledger = BackfillLedger(store)
    backfill_id = "bf-" + utcnow().strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
    lock_name = f"run:{project.name}"
    cancel = cancel or threading.Event()
    try:
        store.reap_abandoned(project.name)
        ledger.reap(project.name)
        key = backfill_key(project, assets, first, stop)
        earlier = None if options.restart else ledger.unfinished(project.name, key)
        if earlier is not None:
            backfill_id = earlier.id  # resume it: the lock is held under the backfill's id
        store.acquire_lock(lock_name, backfill_id, wait=options.wait)
        holder: list[Engine] = []
        try:
            engine = open_engine(project.warehouse_url, project.config.timezone)
            holder.append(engine)
            try:
                engine.prepare([a for a in project.assets.values() if a.layer == "lake"],
                               _collected(project, store))  # the lake as committed loads left it
                engine.define_macros(list(project.macros.values()))
                for asset in assets:
                    blocker = engine.partition_blocker(asset)
                    if blocker:
                        raise UsageError(f"cannot backfill: {blocker}",
                                         f"run `kiban run {asset.key}` first (it builds the whole table), "
                                         "then backfill")
                if earlier is not None:
                    ledger.restart(backfill_id, options.concurrency)
                    done = ledger.done(backfill_id)
                else:
                    ledger.create(NewBackfill(backfill_id, project.name, key, list(options.select),
                                              [a.key for a in assets], first, stop, total, options.concurrency))
                    done = set()
                give_way = GiveWay(project, store, lock_name, backfill_id, cancel, holder)
                job = BackfillJob(graph, store, ledger, backfill_id, assets, work, done, options,
                                  resumed=earlier is not None, on_start=on_start, on_partition=on_partition,
                                  audit=audit, cancel=cancel, give_way=give_way)
                return _execute(job, engine)
            finally:
                holder[-1].close()
        finally:
            store.release_lock(lock_name, backfill_id)
    finally:
        store.close()


@dataclass
class BackfillJob:
    """What one backfill's execution is handed (its context, passed down instead of a long parameter list)."""

    graph: Graph
    store: Store
    ledger: BackfillLedger
    backfill_id: str
    assets: list[Asset]  # dependency order: upstream partitions come first
    work: dict[str, list[datetime]]  # asset key → every partition start in the range
    done: set[tuple[str, datetime]]  # (asset key, partition start) finished by an earlier attempt of this backfill
    options: BackfillOptions
    resumed: bool = False
    on_start: OnStart | None = None
    on_partition: OnPartition | None = None
    audit: AuditFor | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    give_way: GiveWay | None = None


def _execute(job: BackfillJob, engine: Engine) -> BackfillResult:
    graph, store, ledger, backfill_id, assets = job.graph, job.store, job.ledger, job.backfill_id, job.assets
    work, done, options, cancel, give_way = job.work, job.done, job.options, job.cancel, job.give_way
    resumed, on_start, on_partition, audit = job.resumed, job.on_start, job.on_partition, job.audit
    total = sum(len(s) for s in work.values())
    done_before = sum(1 for a in assets for s in work[a.key] if (a.key, s) in done)
    result = BackfillResult(backfill_id, "success", total, done_before, resumed)
    if on_start:
        on_start(backfill_id, total, done_before)
    started = time.monotonic()
    halt = threading.Event()

    def beat() -> None:
        while not halt.wait(HEARTBEAT_SECONDS):
            try:
                ledger.heartbeat(backfill_id)
                store.heartbeat(backfill_id)  # keeps the run lock ours
            except Exception:  # a missed heartbeat is retried on the next tick
                log.warning("backfill %s: missed a heartbeat", backfill_id, exc_info=True)

    threading.Thread(target=beat, daemon=True, name="kiban-backfill-heartbeat").start()
    failed_assets: set[str] = set()
    published = engine.published()
    error: str | None = None
    try:
        for asset in assets:
            todo = [s for s in work[asset.key] if (asset.key, s) not in done]
            upstream = sorted(d for d in failed_assets if d in graph.upstream(asset.key))
            hook = audit(asset, backfill_id, published.get(asset.key, "")) if audit else None
            step = max(16, options.concurrency * 8)
            for first in range(0, len(todo), step):
                if give_way is not None:
                    engine = give_way(engine)  # deadline work waiting? let it go first
                for outcome in _partitions(engine, asset, todo[first:first + step], options.concurrency, hook,
                                           cancel, upstream):
                    ledger.record(backfill_id, asset.key, outcome.start, outcome.status, attempts=outcome.attempts,
                                  rows=outcome.rows, seconds=outcome.seconds, error=outcome.error)
                    result.outcomes.append(outcome)
                    if outcome.status != BackfillStatus.SUCCESS:
                        failed_assets.add(asset.key)
                    if on_partition:
                        on_partition(outcome)
                if cancel.is_set():
                    break
            if cancel.is_set():
                break
    except KeyboardInterrupt:
        cancel.set()
        error = "interrupted"
    finally:
        halt.set()
        if cancel.is_set():
            result.status = BackfillStatus.CANCELLED
        elif result.failed or any(o.status == BackfillStatus.SKIPPED for o in result.outcomes):
            result.status = BackfillStatus.FAILED
        result.seconds = time.monotonic() - started
        ledger.finish(backfill_id, result.status, error)
    return result


class GiveWay:
    """Backfills yield to deadline work. Between batches of partitions, when a scheduled job that feeds a use
    case (``for:``) is queued or waiting, the backfill closes the warehouse (DuckDB lets one process write),
    releases the run lock, waits until that work is done, then takes both back and carries on."""

    CHECK_SECONDS = 2.0  # how often to look: a look costs one small query

    def __init__(self, project: Project, store: Store, lock_name: str, backfill_id: str, cancel: threading.Event,
                 holder: list[Engine]) -> None:
        self.project, self.store, self.lock_name, self.backfill_id = project, store, lock_name, backfill_id
        self.cancel, self.holder = cancel, holder
        self.jobs = sorted(name for name, job in project.config.jobs.items() if job.for_)
        self.last_look = 0.0
        self.yielded = 0

    def waiting(self) -> bool:
        return work_waiting(self.store, self.project.name, self.jobs)

    def __call__(self, engine: Engine) -> Engine:
        if not self.jobs or time.monotonic() - self.last_look < self.CHECK_SECONDS:
            return engine
        self.last_look = time.monotonic()
        if not self.waiting():
            return engine
        self.yielded += 1
        engine.close()
        self.store.release_lock(self.lock_name, self.backfill_id)
        while self.waiting() and not self.cancel.wait(1.0):
            pass
        self.store.acquire_lock(self.lock_name, self.backfill_id, wait=24 * 3600)
        reopened = open_engine(self.project.warehouse_url, self.project.config.timezone)
        self.holder.append(reopened)
        return reopened


def _partitions(engine: Engine, asset: Asset, starts: list[datetime], concurrency: int, hook: AuditHook | None,
                cancel: threading.Event, upstream_failed: list[str]) -> Iterator[PartitionOutcome]:
    """Process ``starts`` on up to ``concurrency`` cursors; yields each outcome as it ends."""
    grain = asset.config.partition_grain
    if upstream_failed:
        reason = f"upstream {', '.join(upstream_failed)} had failed partitions"
        for start in starts:
            yield PartitionOutcome(asset.key, start, "skipped", error=reason, attempts=0)
        return
    sessions: dict[datetime, Session] = {}
    lock = threading.Lock()

    def one(start: datetime) -> PartitionOutcome:
        began = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            if cancel.is_set():
                raise KeyboardInterrupt
            session = engine.session()
            with lock:
                sessions[start] = session
            try:
                built = engine.build_partition(session, asset, start, following(start, grain), hook)
                return PartitionOutcome(asset.key, start, "success", built.rows, time.monotonic() - began,
                                        attempts=attempt)
            except Exception as exc:
                if cancel.is_set():
                    raise KeyboardInterrupt from None
                if _conflict(exc) and attempt <= CONFLICT_RETRIES:
                    time.sleep(0.01 * attempt)
                    continue
                message = str(exc).strip() or type(exc).__name__
                log.info("backfill: %s partition %s failed: %s", asset.key, start, message, exc_info=True)
                if isinstance(exc, KibanError) and exc.hint:
                    message = f"{message} ({exc.hint})"
                return PartitionOutcome(asset.key, start, "failed", None, time.monotonic() - began, message,
                                        attempt)
            finally:
                with lock:
                    sessions.pop(start, None)
                session.close()

    pending = list(starts)
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="kiban-backfill") as pool:
        running: dict[Future[PartitionOutcome], datetime] = {}
        try:
            while pending or running:
                while pending and len(running) < concurrency and not cancel.is_set():
                    start = pending.pop(0)
                    running[pool.submit(one, start)] = start
                if not running:
                    break
                finished, _ = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in finished:
                    running.pop(future)
                    try:
                        yield future.result()
                    except KeyboardInterrupt:
                        cancel.set()
        except KeyboardInterrupt:  # Ctrl-C: stop the statements running now; their transactions roll back
            cancel.set()
            with lock:
                for session in sessions.values():
                    session.interrupt()
            raise


def _conflict(exc: BaseException) -> bool:
    import duckdb

    return isinstance(exc, duckdb.TransactionException) or "conflict" in str(exc).lower()


def _collected(project: Project, store: Store) -> Mapping[str, CollectedTable] | None:
    """The committed files of the project's collected tables, for the lake views (None: nothing collected)."""
    if not project.sources:
        return None
    from kiban.collect.collector import collected_tables

    return collected_tables(project, store)
