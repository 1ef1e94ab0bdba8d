"""Deadline-aware order: work feeding the nearest deadline goes first.

A job that says ``for: USE_CASE`` has a *latest start*: the use case's next deadline minus the expected
critical path of the job's selection (the longest chain of p90 build times among the selected assets that
the use case reads, directly or upstream). When several ticks wait for a free slot, the one with the
earliest latest start goes first; jobs without ``for:`` follow, oldest tick first.

A job's schedule *cannot meet* its use case when its next tick plus the critical path ends after the
deadline that tick serves: ``kiban jobs`` and the scheduler's log say so.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from kiban.graph import Graph, select
from kiban.project import Project
from kiban.schedule.ticks import JobSchedule
from kiban.slo.deadlines import next_deadlines
from kiban.slo.durations import expected
from kiban.slo.evaluate import Context
from kiban.slo.facts import Facts, load_facts
from kiban.store import Store

SHARE = 0.9  # plan with the p90 of build times, as the upstream deadlines do
HISTORY_DAYS = 60


@dataclass(frozen=True)
class JobPriority:
    job: str
    usecase: str
    deadline: datetime  # naive UTC: the use case's next deadline
    critical_path_s: float
    latest_start: datetime  # naive UTC

    def warning(self, start: datetime) -> str | None:
        """Why starting at ``start`` misses this deadline, or None."""
        finish = start + timedelta(seconds=self.critical_path_s)
        if finish <= self.deadline:
            return None
        late = (finish - self.deadline).total_seconds()
        return (f"job {self.job} cannot meet use case {self.usecase}: starting at {start:%Y-%m-%d %H:%M} UTC it "
                f"needs {self.critical_path_s:.0f} s (p90 critical path) and ends {late:.0f} s after the deadline "
                f"{self.deadline:%Y-%m-%d %H:%M} UTC")


def critical_path(graph: Graph, keys: Iterable[str], targets: Iterable[str], seconds: dict[str, float]) -> float:
    """The longest chain of ``seconds`` through ``keys`` that ends at one of ``targets`` (or their upstream)."""
    chosen = set(keys)
    wanted: set[str] = set()
    for target in targets:
        wanted |= {target, *graph.upstream(target)}
    chosen &= wanted
    finish: dict[str, float] = {}
    for key in graph.sorted(chosen):
        before = max((finish[d] for d in graph.deps.get(key, ()) if d in finish), default=0.0)
        finish[key] = before + seconds.get(key, 0.0)
    return max(finish.values(), default=0.0)


def job_priorities(project: Project, graph: Graph, store: Store, now: datetime,
                   facts: Facts | None = None) -> dict[str, JobPriority]:
    """The latest start of every job with ``for:``, from its use case's next deadline after ``now``."""
    jobs = {name: job for name, job in project.config.jobs.items() if job.for_}
    if not jobs:
        return {}
    facts = facts or load_facts(store, project.name, now - timedelta(days=HISTORY_DAYS))
    seconds = expected(graph, facts, SHARE)
    ctx = Context.build(project, graph)
    deadlines = next_deadlines(ctx, now)
    out: dict[str, JobPriority] = {}
    for name, job in jobs.items():
        assert job.for_ is not None
        if job.for_ not in deadlines:
            continue
        _due, deadline = deadlines[job.for_]
        keys = select(graph, job.select, job.exclude)
        path = critical_path(graph, keys, project.usecases[job.for_].assets, seconds)
        out[name] = JobPriority(name, job.for_, deadline, path, deadline - timedelta(seconds=path))
    return out


def tick_warning(project: Project, graph: Graph, store: Store, schedule: JobSchedule, tick: datetime,
                 facts: Facts | None = None) -> str | None:
    """Whether the run started at ``tick`` can end before the deadline it serves (the next one after it)."""
    if not schedule.job.for_:
        return None
    found = job_priorities(project, graph, store, tick, facts).get(schedule.name)
    return found.warning(tick) if found else None


def ordered(items: Iterable[tuple[str, datetime, int]], priorities: dict[str, JobPriority]
            ) -> list[tuple[str, datetime, int]]:
    """(job, scheduled_at, tick id) in the order to start them: nearest latest start first, then oldest tick."""
    far = datetime.max

    def key(item: tuple[str, datetime, int]) -> tuple[datetime, datetime, int]:
        found = priorities.get(item[0])
        return (found.latest_start if found else far, item[1], item[2])

    return sorted(items, key=key)
