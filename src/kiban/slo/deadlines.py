"""Upstream deadlines: how late each asset may finish so that every use case below it is still on time.

latest_safe_finish(a) = min( deadline(u) for use cases u reading a,
                             latest_safe_finish(c) − p90(c) for each c that reads a )

One pass over the graph in reverse dependency order: O(assets + edges), whatever the number of use cases.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from kiban.slo.evaluate import Context


@dataclass(frozen=True)
class SafeFinish:
    asset: str
    latest_finish: datetime  # naive UTC
    usecase: str  # the use case that sets the bound
    due_date: date


def next_deadlines(ctx: Context, now: datetime) -> dict[str, tuple[date, datetime]]:
    """The next due day and deadline (at or after ``now``) of every use case."""
    out: dict[str, tuple[date, datetime]] = {}
    today = now.date()
    for name, usecase in ctx.project.usecases.items():
        for due, _, deadline in ctx.schedule(usecase, today - timedelta(days=1), today + timedelta(days=40)):
            if deadline >= now:
                out[name] = (due, deadline)
                break
    return out


def upstream_deadlines(ctx: Context, p90: dict[str, float], deadlines: dict[str, tuple[date, datetime]]
                       ) -> dict[str, SafeFinish]:
    graph = ctx.graph
    bound: dict[str, SafeFinish] = {}
    for name, (due, deadline) in deadlines.items():
        for key in ctx.project.usecases[name].assets:
            current = bound.get(key)
            if current is None or deadline < current.latest_finish:
                bound[key] = SafeFinish(key, deadline, name, due)
    for key in reversed(graph.order):
        best = bound.get(key)
        for child in graph.children[key]:
            below = bound.get(child)
            if below is None:
                continue
            candidate = below.latest_finish - timedelta(seconds=p90.get(child, 0.0))
            if best is None or candidate < best.latest_finish:
                best = SafeFinish(key, candidate, below.usecase, below.due_date)
        if best is not None:
            bound[key] = best
    return bound
