"""Every job of a project at a glance: its schedule, next tick, latest safe start and last outcome.

What ``kiban jobs`` prints and the console's jobs page shows (one service, two front ends).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kiban.graph import build_graph
from kiban.project import Project
from kiban.schedule.ledger import Ledger
from kiban.schedule.priority import job_priorities, tick_warning
from kiban.schedule.ticks import JobSchedule
from kiban.store import Store


def next_ticks(schedule: JobSchedule, now: datetime, count: int) -> list[datetime]:
    """The job's next ``count`` ticks after ``now`` (naive UTC; fewer without a cron or within the search)."""
    found: list[datetime] = []
    at = now
    while len(found) < count:
        tick = schedule.next_tick(at)
        if tick is None:
            break
        found.append(tick)
        at = tick
    return found


def job_rows(project: Project, store: Store, now: datetime) -> list[dict[str, Any]]:
    """One row per job (times naive UTC, as stored): job, cron, timezone, calendar, catch_up, sensors, for,
    next_run, latest_start, deadline, critical_path_s, last_status, last_run_id, last_at, warning."""
    latest = Ledger(store, project.name).latest_by_job()
    priorities: dict[str, Any] = {}
    graph = None
    if any(j.for_ for j in project.config.jobs.values()):
        graph = build_graph(project)
        priorities = job_priorities(project, graph, store, now)
    rows: list[dict[str, Any]] = []
    for name, job in project.config.jobs.items():
        schedule = JobSchedule(name, job, project.config)
        nxt = schedule.next_tick(now)
        warning = None
        if job.for_ and nxt is not None and graph is not None:
            warning = tick_warning(project, graph, store, schedule, nxt)
        prio = priorities.get(name)
        last = latest.get(name)
        rows.append({
            "job": name, "cron": job.cron, "timezone": str(schedule.tz), "calendar": job.calendar,
            "catch_up": job.catch_up, "sensors": [s.key for s in job.sensors], "for": job.for_,
            "next_run": nxt, "latest_start": prio.latest_start if prio else None,
            "deadline": prio.deadline if prio else None,
            "critical_path_s": prio.critical_path_s if prio else None,
            "last_status": last.status if last else None, "last_run_id": last.run_id if last else None,
            "last_at": last.scheduled_at if last else None, "warning": warning})
    return rows
