"""Service levels end to end: judge every use case, keep incidents, tell the people concerned.

``assess`` only reads; ``check`` also stores verdicts, opens/updates/closes incidents and notifies. The
CLI calls ``check`` after every run and ``kiban slo check`` does it from cron — a deadline passes
whether or not anything ran, and a batch that never started must be noticed too.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from kiban.graph import Graph
from kiban.incidents import Incident, IncidentLog
from kiban.project import Project
from kiban.slo.budget import Budget, budget
from kiban.slo.calendar import local_date
from kiban.slo.deadlines import SafeFinish, next_deadlines, upstream_deadlines
from kiban.slo.durations import expected
from kiban.slo.evaluate import MISSES, Context, Verdict, evaluate
from kiban.slo.facts import Facts, load_facts
from kiban.slo.impact import blast_radius, root_cause, workaround
from kiban.store import Store, utcnow
from kiban.store.schema import slo_evaluations

log = logging.getLogger("kiban.slo")
INCIDENT_DAYS = 7  # misses older than this are history, not incidents to open now


@dataclass
class Assessment:
    now: datetime
    today: date
    verdicts: list[Verdict]
    current: dict[str, Verdict]  # per use case: today's due day, or the most recent one
    budgets: dict[str, Budget]
    safe_finish: dict[str, SafeFinish]
    p50: dict[str, float]
    p90: dict[str, float]
    facts: Facts
    context: Context
    incidents: list[Incident] = field(default_factory=list)  # opened or changed by ``check``
    known: dict[tuple[str, date], Incident] = field(default_factory=dict)  # every recent incident (``check``)
    upcoming: dict[str, tuple[date, datetime]] = field(default_factory=dict)  # next due day and deadline
    known_since: dict[str, datetime] | None = None  # when each use case was first judged

    def misses(self, days: int = INCIDENT_DAYS) -> list[Verdict]:
        start = self.today - timedelta(days=days - 1)
        return [v for v in self.verdicts if v.verdict in MISSES and v.due_date >= start]


def assess(project: Project, graph: Graph, store: Store, now: datetime | None = None) -> Assessment:
    """Verdicts over each use case's budget window, budgets, upstream deadlines. Reads only."""
    now = now or utcnow()
    ctx = Context.build(project, graph)
    today = local_date(now, ctx.tz)
    window = max((u.config.target.window_days for u in project.usecases.values()), default=1)
    start = today - timedelta(days=window - 1)
    facts = load_facts(store, project.name, datetime.combine(start - timedelta(days=35), datetime.min.time()))
    known = _known_since(store, project.name)
    verdicts = evaluate(ctx, facts, start, today, now, known_since=known)
    current: dict[str, Verdict] = {}
    for verdict in verdicts:  # in due-day order per use case: the last one wins
        current[verdict.usecase] = verdict
    by_usecase: dict[str, list[Verdict]] = {}
    for verdict in verdicts:
        by_usecase.setdefault(verdict.usecase, []).append(verdict)
    budgets = {name: budget(name, u.config.target.attainment, u.config.target.window_days,
                            by_usecase.get(name, []), today) for name, u in project.usecases.items()}
    p50, p90 = expected(graph, facts, 0.5), expected(graph, facts, 0.9)
    upcoming = next_deadlines(ctx, now)
    safe = upstream_deadlines(ctx, p90, upcoming)
    result = Assessment(now, today, verdicts, current, budgets, safe, p50, p90, facts, ctx)
    result.upcoming, result.known_since = upcoming, known
    return result


def _known_since(store: Store, project: str) -> dict[str, datetime] | None:
    """When each use case was first judged; None when none ever was (a new project judges from its first run)."""
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(slo_evaluations.c.usecase, sa.func.min(slo_evaluations.c.deadline))
                            .where(slo_evaluations.c.project == project).group_by(slo_evaluations.c.usecase)).all()
    return {name: first for name, first in rows} if rows else None


def store_verdicts(store: Store, project: str, verdicts: list[Verdict], now: datetime) -> None:
    if not verdicts:
        return
    keys = {(v.usecase, v.due_date) for v in verdicts}
    with store.engine.begin() as conn:
        for usecase in {k[0] for k in keys}:
            days = [d for u, d in keys if u == usecase]
            conn.execute(slo_evaluations.delete().where(slo_evaluations.c.usecase == usecase,
                                                        slo_evaluations.c.due_date.in_(days)))
        conn.execute(slo_evaluations.insert(), [
            {"usecase": v.usecase, "due_date": v.due_date, "project": project, "deadline": v.deadline,
             "verdict": v.verdict, "lateness_s": v.lateness_s, "satisfied_at": v.satisfied_at,
             "evidence": json.dumps(v.evidence, default=str), "evaluated_at": now} for v in verdicts])


def stored_verdicts(store: Store, project: str, usecase: str, since: date) -> list[tuple[date, str, float | None]]:
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(slo_evaluations.c.due_date, slo_evaluations.c.verdict,
                                      slo_evaluations.c.lateness_s)
                            .where(slo_evaluations.c.project == project, slo_evaluations.c.usecase == usecase,
                                   slo_evaluations.c.due_date >= since)
                            .order_by(slo_evaluations.c.due_date)).all()
    return [(r[0], r[1], r[2]) for r in rows]


def check(project: Project, graph: Graph, store: Store, now: datetime | None = None,
          notify: bool = True) -> Assessment:
    """Assess, store the verdicts, keep incidents in step and notify. Never raises for a channel."""
    result = assess(project, graph, store, now)
    judged = {v.usecase for v in result.verdicts}
    # a use case judged for the first time is recorded from its next due day on: it is not held to the past
    first = [Verdict(name, due, deadline, "pending") for name, (due, deadline) in result.upcoming.items()
             if name not in judged and name not in (result.known_since or {})]
    store_verdicts(store, project.name, [*result.verdicts, *first], result.now)
    incidents = IncidentLog(store, project.name)
    last_run = next((r for r in store.runs(project.name, 50) if r.started_at <= result.now and r.status != "running"),
                    None)
    last_failed = last_run is not None and last_run.status in ("failed", "abandoned", "cancelled")
    start = result.today - timedelta(days=INCIDENT_DAYS - 1)
    for verdict in result.verdicts:
        if verdict.due_date < start:
            continue
        changed = _track(result, incidents, verdict, last_failed)
        if changed is not None:
            result.incidents.append(changed[0])
            if notify and changed[1]:
                _notify(project, store, changed[0], verdict, result)
    result.known = {(i.usecase, i.due_date): i for i in incidents.recent(include_resolved=True, limit=500)
                    if i.due_date >= start}
    return result


def _track(result: Assessment, incidents: IncidentLog, verdict: Verdict, last_failed: bool
           ) -> tuple[Incident, bool] | None:
    """Bring the incident of this use case and day in line with its verdict: (incident, worth telling?)."""
    existing = incidents.open_for(verdict.usecase, verdict.due_date)
    ctx = result.context
    usecase = ctx.project.usecases[verdict.usecase]
    if verdict.verdict == "met":
        if existing and existing.status != "resolved" and existing.kind == "at_risk":
            return incidents.resolve(existing.id, "recovered before the deadline; the data was on time",
                                     kind="recovered"), False
        return None
    if verdict.verdict not in (*MISSES, "at_risk"):
        return None
    if existing and existing.verdict == verdict.verdict:
        return None  # nothing new to say
    if existing and existing.status == "resolved" and verdict.verdict != "late":
        return None  # someone closed it; a miss that stays the same is not reopened
    failures = verdict.evidence.get("failures", [])
    cause = root_cause(ctx.graph, failures) or verdict.evidence.get("slow")
    impact = blast_radius(ctx.project, ctx.graph, cause["asset"]) if cause else None
    consumers = [{"name": c.name, "team": c.team, "contact": list(c.contact)} for c in usecase.config.consumers]
    others = [u for u in (impact.usecases if impact else []) if u != verdict.usecase
              and ctx.schedule(ctx.project.usecases[u], verdict.due_date, verdict.due_date)]  # due that day too
    impact_doc: dict[str, Any] = {"usecase": verdict.usecase, "consumers": consumers, "other_usecases": others}
    fix = None if verdict.verdict == "late" else workaround(cause if cause and cause["status"] != "slow" else None,
                                                           usecase.assets, last_failed)
    message = _describe(verdict, cause, ctx)
    kind = "at_risk" if verdict.verdict == "at_risk" else "missed"
    event = {"late": "met_late" if existing else "late"}.get(verdict.verdict, verdict.verdict)
    # what was learnt earlier (the root cause, the workaround given) is kept unless there is something newer
    incident, _created = incidents.record(verdict.usecase, verdict.due_date, kind, verdict.verdict, message,
                                         impact=impact_doc, root_cause=cause, workaround=fix, event=event,
                                         at=result.now)
    return incident, True


def _describe(verdict: Verdict, cause: dict[str, Any] | None, ctx: Context) -> str:
    local = verdict.deadline.replace(tzinfo=UTC).astimezone(ctx.tz).strftime("%Y-%m-%d %H:%M")
    text = {
        "late": f"delivered {round((verdict.lateness_s or 0) / 60)} min after the {local} deadline",
        "failed": f"not delivered by the {local} deadline",
        "incomplete": f"delivered by {local} but the data does not reach {verdict.evidence.get('data_through')}",
        "bad_data": f"delivered, but a blocking check failed: {', '.join(verdict.evidence.get('failed_checks', []))}",
        "at_risk": f"at risk of missing the {local} deadline",
    }.get(verdict.verdict, verdict.verdict)
    if cause:
        text += f" — {cause['asset']} {cause['status']}: {str(cause.get('error', ''))[:300]}"
    return text


def _notify(project: Project, store: Store, incident: Incident, verdict: Verdict, result: Assessment) -> None:
    from kiban.notify import Message, Notifier

    usecase = project.usecases[verdict.usecase]
    consumer_channels = sorted({c for who in usecase.config.consumers for c in who.notify})
    owner_channels = sorted(set(usecase.config.owner_notify))
    if not consumer_channels and not owner_channels:
        return
    notifier = Notifier(store, dict(project.config.channels), project.root)
    severity = "warning" if verdict.verdict in ("at_risk", "late") else "critical"
    key = f"incident:{project.name}:{verdict.usecase}:{verdict.due_date}:{verdict.verdict}"
    facts = {"use case": verdict.usecase, "due": str(verdict.due_date), "verdict": verdict.verdict}
    if consumer_channels:
        notifier.send(consumer_channels, Message(
            subject=f"[kiban] {usecase.config.description or verdict.usecase}: {verdict.verdict.replace('_', ' ')}",
            text=f"{verdict.usecase}: {_describe(verdict, None, result.context)}. "
                 f"The data team ({usecase.config.owner or 'owners'}) has been told.",
            severity=severity, dedupe_key=key + ":consumers", fields=facts))
    if owner_channels:
        owner_facts = {**facts, "root cause": str(incident.root_cause.get("asset", "unknown")),
                       "workaround": incident.workaround or "-", "incident": f"#{incident.id}"}
        notifier.send(owner_channels, Message(
            subject=f"[kiban] incident #{incident.id} {verdict.usecase} {verdict.due_date}: {verdict.verdict}",
            text=f"{_describe(verdict, incident.root_cause or None, result.context)}\n"
                 f"Workaround: {incident.workaround}", severity=severity, dedupe_key=key + ":owners",
            fields=owner_facts))


def log_failure(exc: BaseException) -> None:
    log.warning("service-level check failed: %s", exc)
