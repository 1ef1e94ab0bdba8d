"""One run of a selection: lock → prepare → plan → execute → record.

This is the only entry point front ends use to run assets.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from statistics import median
from typing import Any
from zoneinfo import ZoneInfo

from kiban.diskfull import disk_full, is_disk_full
from kiban.engines import Engine, open_engine
from kiban.engines.base import EMPTY_LAKE, UNREADABLE_LAKE
from kiban.engines.dialect import refuse_unportable
from kiban.errors import KibanError
from kiban.graph import Graph, build_graph, select
from kiban.graph.code import planned_codes
from kiban.project import Asset, Project
from kiban.python.models import PythonModelRunner
from kiban.run import handoff, intents
from kiban.run.attempt_log import AttemptLog
from kiban.run.events import Event, Listener
from kiban.run.executor import AuditFor, Executor, Outcome, Policy
from kiban.run.inputs import plan_extra
from kiban.run.plan import Judge, Plan, make_plan
from kiban.run.sizing import LastBuild, sizing
from kiban.status import ATTEMPT_UNFINISHED, RUN_SUCCEEDED, AttemptStatus, RunStatus
from kiban.store import AttemptRecord, Store, utcnow
from kiban.store.asset_locks import AssetLocks, Holder
from kiban.store.store import LockRelease

log = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 5.0
RERUN_STATUSES = tuple(sorted(ATTEMPT_UNFINISHED))  # failed, skipped, cancelled; retrying: killed between attempts


@dataclass
class RunOptions:
    select: Sequence[str] = ()
    exclude: Sequence[str] = ()
    full_refresh: bool = False
    resume: bool = False
    threads: int | None = None
    wait: float = 0.0  # seconds to wait for another run's lock
    run_id: str | None = None  # the caller names the run (the console links to it before it is planned)


@dataclass
class RunResult:
    run_id: str
    status: RunStatus  # success, nothing (all fresh), failed, cancelled
    plan: Plan
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    started_at: datetime | None = None
    ended_at: datetime | None = None

    @property
    def failed(self) -> list[str]:
        return [k for k, o in self.outcomes.items() if o.status == AttemptStatus.FAILED]

    @property
    def skipped(self) -> list[str]:
        return [k for k, o in self.outcomes.items() if o.status == AttemptStatus.SKIPPED]

    @property
    def ok(self) -> bool:
        return self.status in RUN_SUCCEEDED


def new_run_id() -> str:
    return utcnow().strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


def resume_selection(store: Store, project: Project, graph: Graph) -> list[str]:
    """What a resume runs (see :func:`resume_with_intents`)."""
    return resume_with_intents(store, project, graph)[0]


def resume_with_intents(store: Store, project: Project, graph: Graph) -> tuple[list[str], list[Any]]:
    """What runs left undone: every asset whose latest attempt failed, was skipped, cancelled or cut off
    between retries — and what a killed or cancelled last run never reached, its collections included (a table
    whose load was killed has no attempt: it is collected again before anything downstream is built). A run
    killed before the store recorded it left an intent (``kiban.run.intents``): its whole selection is run.
    Returns the assets and the intents this resume consumes."""

    last = store.last_run(project.name)
    pending = intents.interrupted(project, {r.run_id for r in store.runs(project.name, 50)})
    pending = [i for i in pending if last is None or i.at >= last.started_at]
    if last is None and not pending:  # the first run was killed before it could say anything: run it all
        return select(graph, [], []), []
    wanted = {k for k, a in store.latest_attempts(project.name).items() if a.status in RERUN_STATUSES}
    collected = set(project.source_tables()) if project.sources else set()
    if last is not None and last.status in (RunStatus.ABANDONED, RunStatus.CANCELLED, RunStatus.FAILED):
        reached = {a.asset for a in store.attempts(last.run_id)}
        planned = set(select(graph, last.selection, last.options.get("exclude", [])))
        wanted |= {k for k in planned if k not in reached and (graph.assets[k].layer != "lake" or k in collected)}
    for intent in pending:
        wanted |= set(select(graph, intent.select, intent.exclude))
    return graph.sorted(k for k in wanted if k in graph.assets), pending


class Heartbeat(threading.Thread):
    def __init__(self, store: Store, run_id: str) -> None:
        super().__init__(daemon=True, name="kiban-heartbeat")
        self.store, self.run_id = store, run_id
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(HEARTBEAT_SECONDS):
            try:
                self.store.heartbeat(self.run_id)
            except Exception:  # a missed heartbeat is retried on the next tick
                log.warning("run %s: missed a heartbeat", self.run_id, exc_info=True)


@contextmanager
def _listening(listeners: Sequence[Listener]) -> Iterator[Listener]:
    lock = threading.Lock()

    def emit(event: Event) -> None:
        with lock:
            for listener in listeners:
                listener(event)

    yield emit


def run_project(project: Project, options: RunOptions, listeners: Sequence[Listener] = (),
                audit: AuditFor | None = None, executor_hook: list[Executor] | None = None,
                after: Mapping[str, tuple[str, ...]] | None = None) -> RunResult:
    """Run the selected assets of ``project``. Never raises for an asset failure: see the result.

    ``audit`` gives each build its audit hook (the data-quality gate: ``kiban.checks.gate.Gate``); ``after``
    orders builds without making them inputs (a relationships check waits for the table it refers to).
    """

    run_id = options.run_id or new_run_id()
    # first of all: a kill from here until the store records the run is found by the next `--resume`
    intent = intents.write(project, run_id, list(options.select), list(options.exclude), options.full_refresh) \
        if not options.resume else None
    try:
        graph = build_graph(project)
        refuse_unportable(project)  # PostgreSQL/Spark: all it cannot run as DuckDB does, before anything runs
        store = Store(project.state_url)
    except BaseException:  # a project or store error before anything ran: not an interruption to resume
        intents.clear(intent)
        raise
    locks = AssetLocks(store, project.name)
    try:
        store.reap_abandoned(project.name)
        consumed: list[Any] = []
        if options.resume:
            selection, consumed = resume_with_intents(store, project, graph)
            selectors: list[str] = list(selection)
            intent = intents.write(project, run_id, selectors, [], options.full_refresh)
        else:
            selection = select(graph, options.select, options.exclude)
            selectors = list(options.select)
        # locks per asset: a run waits only for the selected assets another run has still to build
        locks.acquire(run_id, selection, wait=options.wait, eta=lambda held: _free_at(project, graph, store, held))
        try:
            def recorded() -> None:
                for done in [*(i.path for i in consumed), intent]:
                    intents.clear(done)

            freeing = Freeing(locks, run_id)

            def release(event: Event) -> None:  # an asset finished is free for other runs (with the next commit)
                # (fresh ones are freed together, in one store transaction, before their events go out)
                if event.kind == "asset_finished" and event.asset and event.run_id == run_id and \
                        event.status != AttemptStatus.FRESH:
                    freeing([event.asset])

            return _run_locked(RunContext(project, graph, store, run_id, selection, selectors, options,
                                          [*listeners, release], audit, after, executor_hook, recorded=recorded,
                                          free=freeing))
        finally:
            locks.release(run_id)
    finally:
        intents.clear(intent)  # an error before the record (a bad selection, a held lock): not an interruption
        store.close()


@dataclass
class Freeing:
    """Hands the assets a run is done with back to other runs: at once until the run's attempt log exists, then
    with its next commit (the attempts and the locks in one store transaction, not one commit per asset)."""

    locks: AssetLocks | None
    run_id: str
    log: AttemptLog | None = None

    def __call__(self, keys: list[str]) -> None:
        if self.locks is None or not keys:
            return
        if self.log is not None:
            try:
                self.log.free(self.locks.names(keys))
                return
            except RuntimeError:  # the log is closed (the run is ending): hand them back directly
                pass
        self.locks.release(self.run_id, keys)

    def release(self, keys: list[str]) -> LockRelease | None:
        """These assets' locks, to hand back with a store write of the caller's."""
        return LockRelease(self.run_id, self.locks.names(keys)) if self.locks is not None and keys else None


@dataclass
class RunContext:
    """What a run holding the project's lock is handed (passed down instead of a long parameter list)."""

    project: Project
    graph: Graph
    store: Store
    run_id: str
    selection: list[str]  # the asset keys selected, in dependency order
    selectors: list[str]  # as the user wrote them (recorded with the run)
    options: RunOptions
    listeners: Sequence[Listener] = ()
    audit: AuditFor | None = None
    after: Mapping[str, tuple[str, ...]] | None = None
    executor_hook: list[Executor] | None = None
    recorded: Callable[[], object] = lambda: None  # called once the store knows the run
    free: Freeing = field(default_factory=lambda: Freeing(None, ""))  # hands assets this run is done with back


def _run_locked(ctx: RunContext) -> RunResult:
    project, graph, store, run_id, options = ctx.project, ctx.graph, ctx.store, ctx.run_id, ctx.options
    selection, selectors, listeners, audit, after = ctx.selection, ctx.selectors, ctx.listeners, ctx.audit, ctx.after
    executor_hook, recorded, free = ctx.executor_hook, ctx.recorded, ctx.free
    started = utcnow()
    store.start_run(run_id, project.name, selectors, {
        "exclude": list(options.exclude), "full_refresh": options.full_refresh, "resume": options.resume,
        "pid": os.getpid()})
    recorded()  # the store knows the run now: its intent (and those this resume finishes) can go
    heartbeat = Heartbeat(store, run_id)
    heartbeat.start()
    status = RunStatus.FAILED
    error: str | None = None
    engine = None
    plan = Plan(order=selection, fingerprints={})
    outcomes: dict[str, Outcome] = {}
    attempts: AttemptLog | None = None
    with _listening(listeners) as emit:
        try:
            holder = handoff.writer(store, project, run_id)
            handed: dict[str, Outcome] | None = None
            if holder is not None:  # another process writes the DuckDB file: collect here, build there
                collected = _collect(project, store, run_id, selection, options, emit)
                handed = handoff.hand_over(project, graph, store, handoff.HandOver(
                    run_id, holder, selection, collected, options.full_refresh, wait=options.wait), emit)
            if handed is not None:
                outcomes = handed
                statuses = {o.status for o in outcomes.values()}
                status = RunStatus.FAILED if statuses & {AttemptStatus.FAILED, AttemptStatus.SKIPPED} else \
                    RunStatus.CANCELLED if AttemptStatus.CANCELLED in statuses else RunStatus.SUCCESS
                return RunResult(run_id, status, plan, outcomes, started, utcnow())
            engine = open_engine(project.warehouse_url, project.config.timezone)
            engine.full_refresh = options.full_refresh  # incremental models: the whole table, not recent partitions
            lake_assets = [graph.assets[k] for k in graph.order if graph.assets[k].layer == "lake"]
            if holder is None:
                collected = _collect(project, store, run_id, selection, options, emit)  # sources → lake, first
            tables = _collected_tables(project, store)
            lake_versions = engine.prepare(lake_assets, tables)
            engine.define_macros(list(project.macros.values()))  # macros/*.sql, as the project has them now
            plan = make_plan(graph, selection, lake_versions, engine.published(), options.full_refresh,
                             audit if isinstance(audit, Judge) else None,
                             plan_extra(graph, project.root, store, project.name, tables))
            engine.rebuild_whole = set(plan.whole)
            # what each planned fingerprint is made from, by content (the console's "code changed since built")
            store.record_codes(project.name,
                               planned_codes(project, graph, plan.fingerprints, [*plan.build, *plan.fresh]))
            # lake tables this run only reads (not collected) are free for other runs at once
            free([k for k in selection if graph.assets[k].layer == "lake" and k not in collected])
            collected.update(_skip_after_failed_collection(graph, plan, collected, store, run_id, emit))
            emit(Event("run_started", run_id, detail={
                "build": len(plan.build) + len(collected), "fresh": len(plan.fresh), "lake": len(plan.lake),
                "selected": len(selection), "assets": [*collected, *plan.build], "reasons": plan.reasons}))
            built = store.last_built(project.name)  # last successful build of every asset
            confirmed = utcnow()  # after the collection: what it confirms is as of the sources read now
            store.record_attempts([  # fresh: confirmed current now, reaching as far as its last build
                dict(run_id=run_id, asset=k, status=AttemptStatus.FRESH, attempt=0, started_at=confirmed,
                     ended_at=confirmed,
                     fingerprint=plan.fingerprints[k], watermark=_fresh_watermark(engine, built, graph, k))
                for k in plan.fresh], free.release(plan.fresh))  # one transaction for every fresh asset
            for key in plan.fresh:
                emit(Event("asset_finished", run_id, asset=key, status=AttemptStatus.FRESH))

            # committed in groups, flushed before the run's end is recorded; finished assets' locks go with them
            attempts = AttemptLog(store, run_id=run_id)
            free.log = attempts

            intake = handoff.Intake(project, graph, store, engine, run_id, lake_assets,
                                    lambda: _collected_tables(project, store),
                                    audit if isinstance(audit, Judge) else None) \
                if handoff.file_warehouse(project) else None
            if intake is not None:
                intake.fingerprints = plan.fingerprints

            def record(outcome: Outcome, attempt: int, fingerprint: str) -> None:
                owner = intake.owner.get(outcome.asset, run_id) if intake is not None else run_id
                attempts.add(dict(run_id=owner, asset=outcome.asset, status=outcome.status, attempt=attempt,
                                  started_at=outcome.started_at, ended_at=outcome.ended_at, rows=outcome.rows,
                                  bytes=outcome.nbytes, fingerprint=fingerprint, error=outcome.error,
                                  watermark=outcome.watermark))

            executor = Executor(engine=engine, graph=graph, run_id=run_id, fingerprints=plan.fingerprints,
                                threads=options.threads or project.config.effective_threads,
                                policy_for=lambda a: _policy(project, a), emit=emit, record=record, audit=audit,
                                after=dict(after or {}),
                                unavailable=_unavailable(graph, lake_versions),
                                sizing=sizing(graph, {k: LastBuild(a.rows, a.seconds) for k, a in built.items()}),
                                limits=dict(project.config.limits),
                                intake=intake, python_models=PythonModelRunner(project.root, graph.python_inputs))
            if intake is not None:
                intake.watch(emit)
                emit = intake.hear  # the answers to hand-overs follow the outcomes
                executor.emit = emit
            if executor_hook is not None:
                executor_hook.append(executor)
            outcomes = {**collected, **executor.execute(plan.build)}
            statuses = {o.status for o in outcomes.values()}
            if AttemptStatus.CANCELLED in statuses or executor.cancel.is_set():
                status = RunStatus.CANCELLED
            elif statuses & {AttemptStatus.FAILED, AttemptStatus.SKIPPED}:
                status = RunStatus.FAILED
            else:
                status = RunStatus.SUCCESS if plan.build or collected else RunStatus.NOTHING
        except KeyboardInterrupt:
            status, error = RunStatus.CANCELLED, "interrupted"
            raise
        except KibanError as exc:
            error = str(exc)
            raise
        except Exception as exc:
            if not is_disk_full(exc):
                error = f"{type(exc).__name__}: {exc}"
                raise
            full = disk_full(_project_disks(project), "running")
            error = str(full)
            raise full from None  # one message, not the chain of every layer that noticed
        finally:
            heartbeat.halt.set()
            if engine is not None:
                try:  # closing on a full disk must not hide why the run ended
                    engine.close()
                except Exception:
                    log.warning("run %s: closing the engine failed", run_id, exc_info=True)
            unrecorded: Exception | None = None
            try:
                if attempts is not None:
                    attempts.close()
                store.finish_run(run_id, status, error)
            except Exception as exc:  # the store's disk is full too: the event still goes out (below)
                unrecorded = exc
            emit(Event("run_finished", run_id, status=status, error=error,
                       seconds=(utcnow() - started).total_seconds()))
            if unrecorded is not None:  # the run stays `running` until the next run reaps it
                _raise_unrecorded(project, unrecorded)
    return RunResult(run_id, status, plan, outcomes, started, utcnow())


def _free_at(project: Project, graph: Graph, store: Store, held: list[Holder]) -> str | None:
    """When the shared assets should be free, from their usual build times (local HH:MM), or None."""
    keys = {k for h in held for k in h.assets if k in graph.assets}
    if not keys:
        return None
    usual: dict[str, float] = {}
    for key in keys:
        took = [a.seconds for a in store.asset_history(project.name, key, 20)
                if a.status == AttemptStatus.SUCCESS and a.seconds is not None]
        if not took:
            return None
        usual[key] = median(took)
    done: dict[str, float] = {}
    for key in graph.sorted(keys):  # the chain of held assets: each after its held inputs
        done[key] = usual[key] + max((done[d] for d in graph.deps[key] if d in done), default=0.0)
    since = min((h.since for h in held if h.since is not None), default=utcnow())
    free = max(utcnow(), since + timedelta(seconds=max(done.values())))
    return free.replace(tzinfo=UTC).astimezone(ZoneInfo(project.config.timezone)).strftime("%H:%M")


def _raise_unrecorded(project: Project, exc: Exception) -> None:
    """The run's end could not be recorded: on a full disk, say so plainly; otherwise the store's error."""

    if is_disk_full(exc):
        raise disk_full(_project_disks(project), "recording the run's end") from None
    raise exc


def _project_disks(project: Project) -> list[Path]:
    """Where a run writes: the lake, the state folder, the warehouse file (when it is one)."""
    paths = [project.lake_dir, project.state_dir]
    url = project.warehouse_url
    if url.startswith("duckdb:///"):
        paths.append(Path(url[len("duckdb:///"):]))
    return paths


def _collect(project: Project, store: Store, run_id: str, selection: list[str], options: RunOptions,
             emit: Listener) -> dict[str, Outcome]:
    """Collect the selected source tables (always: sources change outside kiban), in parallel, each with its
    retry and timeout policy; each table's attempts are recorded like a build's (rows = rows landed)."""
    tables = project.source_tables() if project.sources else {}
    keys = [k for k in selection if k in tables]
    if not keys:
        return {}
    from kiban.collect.collector import CollectRun, collect_assets

    def policy(key: str) -> tuple[int, float, float | None]:
        chosen = _policy(project, project.assets[key])
        return chosen.retries, chosen.retry_delay, chosen.timeout

    emit(Event("collect_started", run_id, detail={"tables": len(keys), "assets": keys}))
    done = collect_assets(CollectRun(project, store, run_id, emit, policy), keys,
                          threads=options.threads or project.config.effective_threads,
                          limits=dict(project.config.limits))
    if any(c.status == AttemptStatus.CANCELLED for c in done.values()):
        raise KeyboardInterrupt  # Ctrl-C or SIGTERM during the collection: the run is cancelled
    return {k: Outcome(k, c.status, attempts=c.attempts, rows=c.rows, watermark=c.watermark, error=c.error,
                       started_at=c.started_at, ended_at=c.ended_at) for k, c in done.items()}


def _collected_tables(project: Project, store: Store) -> Mapping[str, Any] | None:
    """The committed files of every collected table (from the manifests), for the lake views."""
    if not project.sources:
        return None
    from kiban.collect.collector import collected_tables

    return collected_tables(project, store)


def _skip_after_failed_collection(graph: Graph, plan: Plan, collected: dict[str, Outcome], store: Store,
                                  run_id: str, emit: Listener) -> dict[str, Outcome]:
    """Models downstream of a table whose collection failed are skipped with the reason, not built."""
    failed = [k for k, o in collected.items() if o.status != AttemptStatus.SUCCESS]
    if not failed:
        return {}
    skipped: dict[str, Outcome] = {}
    for key in [*plan.build, *plan.fresh]:  # fresh too: what it holds is no longer the source's latest
        cause = next((f for f in failed if f in graph.upstream(key)), None)
        if cause is None:
            continue
        reason = f"upstream {cause} failed (its collection)"
        skipped[key] = Outcome(key, "skipped", error=reason)
        store.record_attempt(run_id, key, "skipped", attempt=0, fingerprint=plan.fingerprints[key], error=reason)
        emit(Event("asset_finished", run_id, asset=key, status=AttemptStatus.SKIPPED, error=reason))
    plan.build = [k for k in plan.build if k not in skipped]
    plan.fresh = [k for k in plan.fresh if k not in skipped]
    return skipped


def _unavailable(graph: Graph, lake_versions: dict[str, str]) -> dict[str, str]:
    """Lake tables that cannot be read, and why: their readers fail with this reason instead of SQL errors."""
    out = {}
    for key, version in lake_versions.items():
        if version == EMPTY_LAKE:
            out[key] = f"{key} has no Parquet files yet (folder {graph.assets[key].path})"
        elif version.startswith(UNREADABLE_LAKE):
            out[key] = f"{key} cannot be read: {version[len(UNREADABLE_LAKE):]}"
    return out


def _fresh_watermark(engine: Engine, built: dict[str, AttemptRecord], graph: Graph, key: str) -> date | None:
    """A fresh asset reaches as far as its last build did; measure it if that build did not record it."""
    asset = graph.assets[key]
    if not asset.config.time_column:
        return None
    last = built.get(key)
    if last is not None and last.watermark is not None:
        return last.watermark
    try:
        return engine.watermark(asset)
    except KibanError:
        return None


def _policy(project: Project, asset: Asset) -> Policy:
    cfg = project.config
    return Policy(
        retries=asset.config.retries if asset.config.retries is not None else cfg.retries,
        retry_delay=cfg.retry_delay,
        timeout=asset.config.timeout if asset.config.timeout is not None else cfg.timeout,
    )
