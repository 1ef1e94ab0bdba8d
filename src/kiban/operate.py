"""A run as the front ends start it: gated by the checks, watched against the deadlines, judged afterwards.

``run/`` knows nothing of checks' policies or service levels; this is the one place that composes them around
``run_project()`` and ``run_backfill()``, so ``kiban run``, ``kiban backfill`` and the web console's workarounds
do exactly the same thing:

1. the data-quality gate (``checks.gate``): a blocking check fails inside the publish, and the old version stays;
2. the breach watcher (``slo.watch``), while a run goes: at-risk incidents are raised before the deadline;
3. the catalog's listeners (OpenLineage events, fresh profiles of what was published), and shared storage's
   (``storage.publish``: each published table as one Delta commit, with ``storage: warehouse:``);
4. afterwards the service-level check (``slo.service.check``): verdicts stored, incidents kept in step,
   consumers told. It never changes the run's outcome: a failure to judge is reported, not raised.

The front ends add only what is theirs: a live display or a job's bookkeeping, signals, and printing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kiban.catalog.hooks import catalog_listeners
from kiban.storage.publish import listeners as shared_storage
from kiban.store.store import Store

if TYPE_CHECKING:
    from kiban.graph import Graph
    from kiban.project import Project
    from kiban.run import RunOptions, RunResult
    from kiban.run.backfill import BackfillOptions, BackfillResult, OnPartition, OnStart
    from kiban.slo.service import Assessment


log = logging.getLogger(__name__)


@dataclass
class Operated:
    """What a run or backfill did, and how the use cases stand after it."""

    result: Any  # RunResult or BackfillResult
    gated: bool  # data-quality checks judged what was published
    levels: Assessment | None = None  # the service-level check after it (None: no use cases, or it failed)
    levels_error: str | None = None  # why the service levels could not be checked


def run(project: Project, options: RunOptions, listeners: Sequence[Callable[[Any], None]] = (), *,
        graph: Graph | None = None, store: Store | None = None, workers: bool = False,
        min_workers: int = 0) -> Operated:
    """``run_project()`` (or, with ``workers``, the work queue) with the gate, the watcher, the catalog's listeners,
    and the service-level check afterwards. ``store`` (optional) is used for the check; else one is opened."""
    graph = _graph(project, graph)
    watcher = _watcher(project, graph, options.threads)
    everyone: list[Any] = [*listeners, *([watcher] if watcher is not None else []), *catalog_listeners(project),
                           *shared_storage(project)]
    gate = _gate_for(project)  # checks judge every new version before it is published
    after = gate.after if gate else None
    try:
        if workers:  # the workers build (and check) the assets; this process plans and follows the queue
            from kiban.workers import run_distributed

            result: RunResult = run_distributed(project, options, everyone, after=after, min_workers=min_workers)
        else:
            from kiban.run import run_project

            result = run_project(project, options, everyone, audit=gate, after=after)
    finally:
        if watcher is not None:
            watcher.close()
            watcher.store.close()
        if gate is not None:
            gate.close()
    return _judged(Operated(result, gated=gate is not None), project, graph, store)


def backfill(project: Project, options: BackfillOptions, on_start: OnStart | None = None,
             on_partition: OnPartition | None = None, *, graph: Graph | None = None,
             store: Store | None = None) -> Operated:
    """``run_backfill()`` with the gate on every partition, and the service-level check afterwards."""
    from kiban.checks.gate import gate_for
    from kiban.run.backfill import run_backfill

    gate = gate_for(project)  # blocking checks judge the table with each new partition before it commits
    try:
        result: BackfillResult = run_backfill(project, options, on_start, on_partition, audit=gate)
    finally:
        if gate is not None:
            gate.close()
    return _judged(Operated(result, gated=gate is not None), project, graph, store)


def explain(project: Project, options: RunOptions) -> Any:
    """The plan ``run()`` would follow now, judged by the same checks (``run.explain``); nothing is built."""
    from kiban.checks.gate import gate_for
    from kiban.run.explain import explain as plan_only

    gate = gate_for(project)
    try:
        return plan_only(project, list(options.select), list(options.exclude), options.full_refresh, gate)
    finally:
        if gate is not None:
            gate.close()


def _gate_for(project: Project) -> Any:
    """``checks.gate.gate_for``; a project whose models declare no checks does not import the checks at all."""
    if not any(a.config.has_checks for a in project.assets.values() if a.layer != "lake"):
        return None  # what gate_for answers too
    from kiban.checks.gate import gate_for

    return gate_for(project)


def _graph(project: Project, graph: Graph | None) -> Graph | None:
    if graph is not None or not project.usecases:
        return graph
    from kiban.graph import build_graph

    return build_graph(project)


def _watcher(project: Project, graph: Graph | None, threads: int | None = None) -> Any:
    """Forecasts the use cases while the run goes (with the run's own thread count); None without use cases."""
    if not project.usecases or graph is None:
        return None
    from kiban.slo.watch import BreachWatcher

    return BreachWatcher(project, graph, Store(project.state_url), threads=threads)


def _judged(done: Operated, project: Project, graph: Graph | None, store: Store | None) -> Operated:
    """After a run: judge the use cases, keep incidents in step and notify. Never changes the run's outcome."""
    if not project.usecases:
        return done
    from kiban.slo.service import check

    graph = _graph(project, graph)
    own = store is None
    used = Store(project.state_url) if store is None else store
    try:
        assert graph is not None
        done.levels = check(project, graph, used)
    except Exception as exc:  # a broken channel or store must not turn a good run into a failed command
        done.levels_error = f"{type(exc).__name__}: {exc}" if not str(exc) else str(exc)
        log.warning("the service-level check after the run failed: %s", done.levels_error, exc_info=True)
    finally:
        if own:
            used.close()
    return done
