"""Which deliveries are due: those with ``after: usecase_met`` whose use case's data is there now (its current due
day's verdict is ``met`` or ``late``: every asset it reads was published current and checked) and that have not
been delivered since. ``kiban schedule`` claims each of them once per due day and delivers it (see
:mod:`kiban.deliveries.outbox`); ``kiban deliver --due`` (from cron, as often as wanted) delivers exactly those
by hand, so each due day's file goes out once, as soon as its data is ready.
"""

from __future__ import annotations

from datetime import date, datetime

from kiban.deliveries.send import history
from kiban.graph import Graph
from kiban.project import Project
from kiban.slo.service import assess
from kiban.status import DataDeliveryStatus, Verdict
from kiban.store import Store

READY = frozenset({Verdict.MET, Verdict.LATE})


def due(project: Project, graph: Graph, store: Store, now: datetime | None = None) -> list[tuple[str, str]]:
    """(delivery, why) for every delivery that should go out now."""
    return [(name, why) for name, _, why in due_days(project, graph, store, now)]


def due_days(project: Project, graph: Graph, store: Store,
             now: datetime | None = None) -> list[tuple[str, date, str]]:
    """(delivery, the use case's due day it serves, why) for every delivery that should go out now."""
    waiting = {n: c for n, c in project.config.deliveries.items() if c.after == "usecase_met"}
    if not waiting:
        return []
    current = assess(project, graph, store, now).current
    found = []
    for name, config in sorted(waiting.items()):
        assert config.usecase is not None
        verdict = current.get(config.usecase)
        if verdict is None or verdict.verdict not in READY or verdict.satisfied_at is None:
            continue
        delivered = [r for r in history(store, project.name, name, 20) if r.status == DataDeliveryStatus.DELIVERED]
        if any(r.started_at >= verdict.satisfied_at for r in delivered):
            continue
        found.append((name, verdict.due_date, f"{config.usecase} is {verdict.verdict} for {verdict.due_date}"))
    return found
