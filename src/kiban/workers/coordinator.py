"""``kiban run --workers``: plan here, build on the workers, follow the queue until the run is done.

The coordinator does what ``run_project`` does up to the plan (lock, record the run, prepare the lake,
fingerprints, fresh assets), then puts every asset to build into the run queue instead of its own
thread pool. Workers (``kiban worker``, any number, any machine) claim ready assets; the coordinator
turns the queue's changes into the same events a local run emits, gives rows of dead workers to others,
and records the run's end. Killing a worker loses nothing: its asset is built again by another one.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from kiban.checks.gate import gate_for
from kiban.engines import open_engine
from kiban.engines.dialect import refuse_unportable
from kiban.errors import ConfigError, KibanError
from kiban.graph import Graph, build_graph, select
from kiban.graph.code import planned_codes
from kiban.project import Project
from kiban.run.events import Event, Listener
from kiban.run.executor import Outcome
from kiban.run.inputs import plan_extra
from kiban.run.plan import Judge, Plan, make_plan
from kiban.run.runner import (
    Heartbeat,
    RunOptions,
    RunResult,
    _collected_tables,
    _skip_after_failed_collection,
    new_run_id,
    resume_selection,
)
from kiban.status import AttemptStatus, QueueStatus, RunStatus
from kiban.store import Store, utcnow
from kiban.store.asset_locks import AssetLocks
from kiban.workers.queue import COLLECT, TERMINAL, QueueRow, RunQueue, collect_code, project_version
from kiban.workers.worker import LEASE_SECONDS

POLL_SECONDS = 0.2
DUCKDB_REFUSED = ("several workers need a warehouse that every worker can write, and a DuckDB file belongs to one "
                  "process")
DUCKDB_HINT = "use `warehouse: postgresql://…` or Spark (docs/scale-out.md), or run without --workers"
NO_WORKER_LEASES = 4  # a run without any live worker for this many leases gives up


def run_distributed(project: Project, options: RunOptions, listeners: Sequence[Listener] = (),
                    after: Mapping[str, tuple[str, ...]] | None = None, lease: float = LEASE_SECONDS,
                    poll: float = POLL_SECONDS, min_workers: int = 0) -> RunResult:
    """Run the selection on the project's workers. Like ``run_project``, never raises for an asset failure.

    Audit hooks (checks) run on the workers, which build them from their own copy of the project. The queue
    carries this project's version: workers with another one claim nothing. ``min_workers``: wait (up to
    NO_WORKER_LEASES leases) until that many workers are alive before queueing.
    """
    graph = build_graph(project)
    refuse_unportable(project)  # what PostgreSQL/Spark cannot run as DuckDB does: refused before anything is queued
    store = Store(project.state_url)
    queue = RunQueue(store)
    run_id = options.run_id or new_run_id()
    locks = AssetLocks(store, project.name)  # like a run: only the selected assets, not the project

    def emit(event: Event) -> None:
        for listener in listeners:
            listener(event)

    try:
        store.reap_abandoned(project.name)
        selection = resume_selection(store, project, graph) if options.resume else \
            select(graph, options.select, options.exclude)
        locks.acquire(run_id, selection, wait=options.wait)
        started = utcnow()
        store.start_run(run_id, project.name, list(selection) if options.resume else list(options.select), {
            "exclude": list(options.exclude), "full_refresh": options.full_refresh, "resume": options.resume,
            "workers": True})
        heartbeat = Heartbeat(store, run_id)
        heartbeat.start()
        status, error = RunStatus.FAILED, None
        plan = Plan(order=selection, fingerprints={})
        outcomes: dict[str, Outcome] = {}
        try:
            builds = any(graph.assets[k].layer != "lake" for k in selection)
            if builds and project.warehouse_url.startswith("duckdb:///"):  # said before anything is collected
                raise ConfigError(DUCKDB_REFUSED, DUCKDB_HINT)
            # the source tables first, on the workers too: one queue row per table, fenced like a build
            outcomes = _collect_on_workers(queue, project, graph, run_id, selection, emit,
                                           (min_workers, lease, poll))
            if not builds:  # `kiban collect --workers`, or only lake tables selected: no warehouse needed
                statuses = {o.status for o in outcomes.values()}
                status = RunStatus.CANCELLED if AttemptStatus.CANCELLED in statuses else \
                    RunStatus.FAILED if statuses - {AttemptStatus.SUCCESS} else \
                    RunStatus.SUCCESS if outcomes else RunStatus.NOTHING
                return RunResult(run_id, RunStatus(status), plan, outcomes, started, utcnow())
            engine = open_engine(project.warehouse_url, project.config.timezone)
            try:
                if engine.name == "duckdb":
                    raise ConfigError(DUCKDB_REFUSED, DUCKDB_HINT)
                lake_assets = [graph.assets[k] for k in graph.order if graph.assets[k].layer == "lake"]
                tables = _collected_tables(project, store)
                versions = engine.prepare(lake_assets, tables)  # committed loads only
                plan = make_plan(graph, selection, versions, engine.published(), options.full_refresh,
                                 _judge(project), plan_extra(graph, project.root, store, project.name, tables))
            finally:
                engine.close()
            store.record_codes(project.name,
                               planned_codes(project, graph, plan.fingerprints, [*plan.build, *plan.fresh]))
            skipped = _skip_after_failed_collection(graph, plan, outcomes, store, run_id, emit)
            emit(Event("run_started", run_id, detail={
                "build": len(plan.build), "fresh": len(plan.fresh), "lake": len(plan.lake),
                "selected": len(selection), "assets": plan.build, "workers": queue.live_workers(project.name, lease)}))
            store.record_attempts([dict(run_id=run_id, asset=k, status=AttemptStatus.FRESH, attempt=0,
                                        started_at=started, ended_at=started, fingerprint=plan.fingerprints[k])
                                   for k in plan.fresh])
            for key in plan.fresh:
                emit(Event("asset_finished", run_id, asset=key, status=AttemptStatus.FRESH))
            building = set(plan.build)
            _await_workers(queue, project.name, min_workers, lease, poll)
            queue.enqueue(run_id, project.name, {
                key: ([d for d in (*graph.deps[key], *(after or {}).get(key, ())) if d in building and d != key],
                      plan.fingerprints[key], graph.sql_hashes[key]) for key in plan.build},
                version=project_version(graph))
            outcomes = {**_follow(queue, project.name, run_id, emit, lease, poll, set(outcomes)), **skipped}
            statuses = {o.status for o in outcomes.values()}
            if AttemptStatus.CANCELLED in statuses:
                status = RunStatus.CANCELLED
            elif statuses & {AttemptStatus.FAILED, AttemptStatus.SKIPPED}:
                status = RunStatus.FAILED
            else:
                status = RunStatus.SUCCESS if plan.build or outcomes else RunStatus.NOTHING
        except KeyboardInterrupt:
            queue.cancel(run_id)
            status, error = RunStatus.CANCELLED, "interrupted"
            outcomes = {k: _outcome(r) for k, r in queue.rows(run_id).items()}
        except KibanError as exc:
            queue.cancel(run_id)
            error = str(exc)
            raise
        finally:
            heartbeat.halt.set()
            store.finish_run(run_id, RunStatus(status), error)  # nothing to do: `nothing`, as run_project
            locks.release(run_id)
            emit(Event("run_finished", run_id, status=status, error=error,
                       seconds=(utcnow() - started).total_seconds()))
        return RunResult(run_id, RunStatus(status), plan, outcomes, started, utcnow())
    finally:
        store.close()


def _collect_on_workers(queue: RunQueue, project: Project, graph: Graph, run_id: str, selection: list[str],
                        emit: Listener, timing: tuple[int, float, float]) -> dict[str, Outcome]:
    """Queue one row per selected source table (no inputs: all ready at once) and follow them until each is
    loaded or failed — the workers load several tables at a time. ``timing``: (workers to wait for, lease, poll).
    The models are planned after this, from the versions these loads committed."""
    tables = project.source_tables() if project.sources else {}
    keys = [k for k in selection if k in tables]
    if not keys:
        return {}
    wanted, lease, poll = timing
    emit(Event("collect_started", run_id, detail={"tables": len(keys), "assets": keys}))
    _await_workers(queue, project.name, wanted, lease, poll)
    codes = {k: collect_code(project, k) for k in keys}
    queue.enqueue(run_id, project.name, {k: ([], COLLECT + codes[k], codes[k]) for k in keys},
                  version=project_version(graph))
    return _follow(queue, project.name, run_id, emit, lease, poll)


def _follow(queue: RunQueue, project: str, run_id: str, emit: Listener, lease: float,
            poll: float, done: set[str] | None = None) -> dict[str, Outcome]:
    """Poll the queue until every row is finished, emitting what changed (``done``: rows already reported, of an
    earlier step of this run); requeue rows of dead workers.

    With no live worker for NO_WORKER_LEASES leases, the run stops with an error instead of waiting forever."""
    seen: dict[str, tuple[str, int]] = {}
    for key in done or ():
        seen[key] = ("", -1)
    last_worker = time.monotonic()
    while True:
        if queue.live_workers(project, lease):
            last_worker = time.monotonic()
        elif time.monotonic() - last_worker > NO_WORKER_LEASES * lease:
            refusing = queue.live_workers(project, lease, refusing=True)
            if refusing:
                raise KibanError(f"{refusing} `kiban worker` process{'es' if refusing != 1 else ''} of project "
                                 f"{project} refuse this run: their copy of the project differs from this one",
                                 "deploy the same project version to every worker (and to this machine)")
            raise KibanError(f"no `kiban worker` of project {project} has been alive for "
                             f"{NO_WORKER_LEASES * lease:g} s, so nothing can build the queued assets",
                             "start workers (`kiban worker`) against the same state store, or run without --workers")
        for _run, asset, worker in queue.requeue_expired(project, lease):
            emit(Event("asset_retry", run_id, asset=asset, error=f"worker {worker} stopped; queued again"))
        rows = queue.rows(run_id)
        for key, row in rows.items():
            state = (row.status, row.claims)
            if seen.get(key) == state or (key in seen and seen[key][1] == -1):
                continue
            seen[key] = state
            if row.status == QueueStatus.RUNNING:
                emit(Event("asset_started", run_id, asset=key, attempt=row.claims, detail={"worker": row.worker}))
            elif row.status in TERMINAL:
                seconds = (row.finished_at - row.claimed_at).total_seconds() \
                    if row.finished_at and row.claimed_at else None
                emit(Event("asset_finished", run_id, asset=key, status=row.status, rows=row.rows, seconds=seconds,
                           error=row.error, detail={"worker": row.worker}))
        if all(r.status in TERMINAL for r in rows.values()):
            return {k: _outcome(r) for k, r in rows.items()}
        time.sleep(poll)


def _await_workers(queue: RunQueue, project: str, wanted: int, lease: float, poll: float) -> None:
    """Wait until ``wanted`` workers are alive (``kiban run --workers N``); an error after NO_WORKER_LEASES leases."""
    deadline = time.monotonic() + NO_WORKER_LEASES * lease
    while wanted and queue.live_workers(project, lease) < wanted:
        if time.monotonic() > deadline:
            alive = queue.live_workers(project, lease)
            raise KibanError(f"--workers {wanted}: only {alive} `kiban worker` process{'es' if alive != 1 else ''} "
                             f"of project {project} alive after {NO_WORKER_LEASES * lease:g} s",
                             "start more workers, or lower the number")
        time.sleep(poll)


def _outcome(row: QueueRow) -> Outcome:
    status = row.status if row.status in TERMINAL else QueueStatus.CANCELLED
    return Outcome(row.asset, status, attempts=row.claims, rows=row.rows, error=row.error,
                   started_at=row.claimed_at, ended_at=row.finished_at)


def _judge(project: Project) -> Judge | None:
    """The blocking checks are part of every fingerprint: the workers judge by the same rules."""
    return gate_for(project)
