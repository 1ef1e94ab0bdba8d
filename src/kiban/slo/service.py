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
from kiban.incidents import Incident, IncidentDraft, IncidentLog
from kiban.messages import Part, part, say
from kiban.notify import Message, Notifier
from kiban.notify.wording import ConsumerNotice, consumer_message
from kiban.project import Project
from kiban.slo.budget import Budget, budget
from kiban.slo.calendar import local_date
from kiban.slo.cause import explain, first_build_start, said_of, span
from kiban.slo.completeness import day_end, must_be_whole
from kiban.slo.deadlines import SafeFinish, next_deadlines, upstream_deadlines
from kiban.slo.durations import expected
from kiban.slo.evaluate import MISSES, Context, Verdict, evaluate
from kiban.slo.facts import Facts, load_facts
from kiban.slo.impact import blast_radius, repair
from kiban.slo.retire import STANDING, promise_of, withdraw_stale
from kiban.status import INCIDENT_WITHDRAWN, IncidentStatus
from kiban.status import Verdict as VerdictStatus
from kiban.store import Store, utcnow
from kiban.store.schema import attempts, runs, slo_evaluations
from kiban.team.oncall import channels as oncall_channels

log = logging.getLogger("kiban.slo")
INCIDENT_DAYS = 7  # misses older than this are history, not incidents to open now
LOOKAHEAD = timedelta(hours=18)  # a next due day on a later date is watched for risk this long before its deadline


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
    ahead: list[Verdict] = field(default_factory=list)  # next due days on a later date, within LOOKAHEAD
    known_since: dict[str, datetime] | None = None  # when each use case was first judged
    store: Store | None = None  # set by ``check``

    def misses(self, days: int = INCIDENT_DAYS) -> list[Verdict]:
        start = self.today - timedelta(days=days - 1)
        return [v for v in self.verdicts if v.verdict in MISSES and v.due_date >= start]


def assess(project: Project, graph: Graph, store: Store, now: datetime | None = None, days: int = 1) -> Assessment:
    """Verdicts over each use case's budget window (at least the last ``days`` days: ``kiban slo history --days``),
    budgets, upstream deadlines. Reads only."""
    now = now or utcnow()
    ctx = Context.build(project, graph)
    today = local_date(now, ctx.tz)
    window = max([days, *(u.config.target.window_days for u in project.usecases.values())])
    start = today - timedelta(days=window - 1)
    facts = load_facts(store, project.name, datetime.combine(start - timedelta(days=35), datetime.min.time()))
    known = _known_since(store, project.name)
    upcoming = next_deadlines(ctx, now)
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
    safe = upstream_deadlines(ctx, p90, upcoming)
    result = Assessment(now, today, verdicts, current, budgets, safe, p50, p90, facts, ctx)
    result.upcoming, result.known_since = upcoming, known
    result.ahead = _ahead(ctx, facts, upcoming, today, now, known)
    return result


def _ahead(ctx: Context, facts: Facts, upcoming: dict[str, tuple[date, datetime]], today: date, now: datetime,
           known: dict[str, datetime] | None) -> list[Verdict]:
    """The next delivery of each use case that falls on a later local date but is due within :data:`LOOKAHEAD`:
    a nightly run failing at 22:00 puts a 07:00 (or 00:30) deadline at risk now, not at local midnight. Judged for
    incidents only (opened, warned, closed); not stored and not shown as the day's verdict before its date comes."""
    ahead: list[Verdict] = []
    for name, (due, deadline) in upcoming.items():
        if due > today and deadline - now <= LOOKAHEAD:
            ahead += evaluate(ctx, facts, due, due, now, usecases=[name], known_since=known)
    return ahead


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
            conn.execute(slo_evaluations.delete().where(slo_evaluations.c.project == project,
                                                        slo_evaluations.c.usecase == usecase,
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


WARN_LEAD = timedelta(minutes=40)  # the watcher tells consumers of a forecast breach with less than this left
WARN_FLOOR = timedelta(minutes=45)  # ... and the check tells them at the latest this long before the deadline


def last_chance(ctx: Context, p90: dict[str, float], usecase: str, asset: str | None, deadline: datetime,
                rebuild_self: bool) -> datetime:
    """The last moment ``asset`` can be ready (or, with ``rebuild_self``, start again) for ``usecase`` to be on
    time: the deadline minus the longest p90 chain from it to the use case's assets."""
    if asset is None or asset not in ctx.graph.assets:
        return deadline
    path = ctx.upstream(usecase)
    after: dict[str, float] = {}  # seconds from the end of each asset to the use case's delivery
    targets = set(ctx.project.usecases[usecase].assets)
    for key in reversed(path):
        below = [after[c] + p90.get(c, 0.0) for c in ctx.graph.children[key] if c in after]
        if below or key in targets:
            after[key] = max(below, default=0.0)
    need = after.get(asset, 0.0) + (p90.get(asset, 0.0) if rebuild_self else 0.0)
    return deadline - timedelta(seconds=need)


def check(project: Project, graph: Graph, store: Store, now: datetime | None = None,
          notify: bool = True) -> Assessment:
    """Assess, store the verdicts, keep incidents in step and notify. Never raises for a channel."""
    result = assess(project, graph, store, now)
    result.store = store
    judged = {v.usecase for v in result.verdicts}
    # a use case judged for the first time is recorded from its next due day on: it is not held to the past.
    # That day as judged now when it falls on a later date and is already watched (at risk), else pending.
    ahead = {(v.usecase, v.due_date): v for v in result.ahead}
    first = [ahead.get((name, due)) or Verdict(name, due, deadline, "pending")
             for name, (due, deadline) in result.upcoming.items()
             if name not in judged and name not in (result.known_since or {})]
    recent_runs = store.runs(project.name, 50)
    busy = any(r.started_at <= result.now and (r.ended_at is None or r.ended_at > result.now) for r in recent_runs)
    if not busy:
        _not_started(result)
    store_verdicts(store, project.name, [*result.verdicts, *first], result.now)
    incidents = IncidentLog(store, project.name)
    # first the incidents whose promise is gone (use case removed, renamed, redefined): closed as withdrawn, so a
    # verdict on a changed definition never closes them as a recovery
    result.incidents += withdraw_stale(project, result.context, incidents, [*result.verdicts, *result.ahead],
                                       result.now, notify)
    start = result.today - timedelta(days=INCIDENT_DAYS - 1)
    known = {(i.usecase, i.due_date): i for i in incidents.recent(include_resolved=True, limit=1000)
             if i.due_date >= start}  # one read instead of one per verdict
    for verdict in [*result.verdicts, *result.ahead]:
        if verdict.due_date < start:
            continue
        if verdict.verdict not in (*MISSES, VerdictStatus.AT_RISK) and (verdict.usecase, verdict.due_date) not in known:
            continue  # met or pending, and no incident to close
        changed = _track(result, incidents, verdict, busy)
        if changed is not None:
            result.incidents.append(changed[0])
            if notify and changed[1]:
                _notify(project, store, changed[0], verdict, result)
        if verdict.verdict == VerdictStatus.AT_RISK:
            _warn_consumers(project, store, result, incidents, verdict, notify)
    result.known = {(i.usecase, i.due_date): i for i in incidents.recent(include_resolved=True, limit=500)
                    if i.due_date >= start}
    return result


START_MARGIN = timedelta(minutes=15)  # an unstarted build is at risk this long before its last chance


def _not_started(result: Assessment) -> None:
    """Nothing runs and nothing of today's delivery has been built: at risk once the build would have to start
    within :data:`START_MARGIN` to be on time (the p90 chain of the whole path). A build counts only if it could
    deliver the day: published in the window and, when a date is required, after that day began (ended, when it
    is needed whole) — yesterday's late repair in the morning is not tonight's build."""

    ctx = result.context
    # today's delivery, and the next one on a later date already watched (a deadline just after midnight)
    for verdict in [*result.current.values(), *result.ahead]:
        name = verdict.usecase
        if verdict.verdict != VerdictStatus.PENDING or result.now >= verdict.deadline:
            continue
        models = [k for k in ctx.upstream(name) if ctx.graph.assets[k].layer != "lake"]
        since = datetime.fromisoformat(verdict.evidence["window_start"])
        through = verdict.evidence.get("data_through")
        if through is not None:  # a build before the required day began (or, needed whole, ended) cannot deliver it
            day = date.fromisoformat(through)
            since = max(since, day_end(day if must_be_whole(day, verdict.deadline, ctx) else day - timedelta(days=1),
                                       ctx))
        if not models or first_build_start(result.facts, models, since, result.now) is not None:
            continue
        first = models[0]
        latest = min(last_chance(ctx, result.p90, name, k, verdict.deadline, rebuild_self=True) for k in models
                     if not any(d in models for d in ctx.graph.deps[k]))
        if result.now >= latest - START_MARGIN:
            verdict.verdict = VerdictStatus.AT_RISK
            verdict.evidence["not_started"] = {"asset": first, "by": _local(ctx, latest)}


def _track(result: Assessment, incidents: IncidentLog, verdict: Verdict, busy: bool
           ) -> tuple[Incident, bool] | None:
    """Bring the incident of this use case and day in line with its verdict: (incident, worth telling?).

    A delivery closes the incident: before the deadline as ``recovered``, after it as ``repaired`` (what
    delivered it is recorded) — and the people who were told hear that their data is ready.
    """
    existing = incidents.open_for(verdict.usecase, verdict.due_date)
    ctx = result.context
    usecase = ctx.project.usecases[verdict.usecase]
    if existing is not None and existing.resolution in INCIDENT_WITHDRAWN:
        if verdict.verdict not in STANDING:
            return None  # withdrawn, and nothing to reopen it for (a delivery closes nothing that is closed)
        existing = None  # defined and in breach again: recorded as new, which reopens it (IncidentLog.record)
    if verdict.verdict == VerdictStatus.MET:
        if existing and existing.status != IncidentStatus.RESOLVED:
            what = _what_delivered(result, verdict)  # the owners hear what fixed it, in time or not
            said = [part("event.recovered", at=_local(ctx, verdict.satisfied_at))]
            if what["kind"] != "event.delivered":
                said.append(what)
            return incidents.resolve(existing.id, say(said), kind="recovered", at=result.now, said=said), True
        return None
    if verdict.verdict not in (*MISSES, VerdictStatus.AT_RISK):
        return None
    if existing and existing.verdict == verdict.verdict:
        return None  # nothing new to say
    if existing and existing.status == IncidentStatus.RESOLVED and verdict.verdict != VerdictStatus.LATE:
        return None  # someone closed it; a miss that stays the same is not reopened
    if verdict.verdict == VerdictStatus.LATE and existing and existing.status == IncidentStatus.RESOLVED \
            and existing.verdict == VerdictStatus.LATE:
        return None
    window_start = datetime.fromisoformat(verdict.evidence.get("window_start") or verdict.deadline.isoformat())
    found = explain(ctx, result.facts, verdict.verdict, verdict.evidence, window_start,
                    min(result.now, verdict.satisfied_at or result.now), busy=busy, usecase=verdict.usecase)
    impact = blast_radius(ctx.project, ctx.graph, found["asset"]) if found and found["asset"] in ctx.graph.assets \
        else None
    consumers = [{"name": c.name, "team": c.team, "contact": list(c.contact)} for c in usecase.config.consumers]
    others = [u for u in (impact.usecases if impact else []) if u != verdict.usecase
              and ctx.schedule(ctx.project.usecases[u], verdict.due_date, verdict.due_date)]  # due that day too
    impact_doc: dict[str, Any] = {"usecase": verdict.usecase, "consumers": consumers, "other_usecases": others,
                                  "promise": promise_of(ctx.project, usecase)}  # what was breached (kiban.slo.retire)
    fix: str | None = None
    if verdict.verdict != VerdictStatus.LATE:
        fix, action = repair(found, usecase.assets, busy)
        if found is not None:
            found["action"] = action
    said = _describe(verdict, found, ctx)
    kind = "at_risk" if verdict.verdict == VerdictStatus.AT_RISK else "missed"
    event = {"late": "met_late" if existing else "late"}.get(verdict.verdict, verdict.verdict)
    # what was learnt earlier (the root cause, the workaround given) is kept unless there is something newer
    incident, _created = incidents.record(IncidentDraft(verdict.usecase, verdict.due_date, kind, verdict.verdict,
                                                        say(said), impact=impact_doc, root_cause=found,
                                                        workaround=fix, event=event, said=said), at=result.now)
    if verdict.verdict == VerdictStatus.LATE and incident.status != IncidentStatus.RESOLVED:
        repaired = [part("event.repaired", at=_local(ctx, verdict.satisfied_at), late_s=verdict.lateness_s or 0),
                    _what_delivered(result, verdict)]
        incident = incidents.resolve(incident.id, say(repaired), kind="repaired", at=result.now, said=repaired)
    return incident, True


def _what_delivered(result: Assessment, verdict: Verdict) -> Part:
    """Which run delivered the data (its selection), for the owners' "what fixed it"."""

    usecase = result.context.project.usecases[verdict.usecase]
    if verdict.satisfied_at is None or result.store is None:
        return part("event.delivered")
    with result.store.engine.connect() as conn:
        row = conn.execute(sa.select(runs.c.run_id, runs.c.selection, runs.c.options)
                           .select_from(attempts.join(runs, runs.c.run_id == attempts.c.run_id))
                           .where(attempts.c.asset.in_(list(usecase.assets)),
                                  attempts.c.ended_at == verdict.satisfied_at)).first()
    if row is None:
        return part("event.delivered")
    if json.loads(row.options or "{}").get("resume"):  # its selection is what the resume found undone
        return part("event.fixed_by_run", run_id=row.run_id, command="kiban run --resume")
    selection = " ".join(json.loads(row.selection or "[]"))
    return part("event.fixed_by_run", run_id=row.run_id, command=f"kiban run{' ' + selection if selection else ''}")


def _describe(verdict: Verdict, cause: dict[str, Any] | None, ctx: Context) -> list[Part]:
    """What the verdict says of the day, and its cause, as parts (:mod:`kiban.messages`)."""
    local = verdict.deadline.replace(tzinfo=UTC).astimezone(ctx.tz).strftime("%Y-%m-%d %H:%M")
    said = {
        "late": lambda: part("event.late", late_s=verdict.lateness_s or 0, deadline=local),
        "failed": lambda: part("event.failed", deadline=local),
        "incomplete": lambda: part("event.incomplete", deadline=local, through=verdict.evidence.get("data_through")),
        "bad_data": lambda: part("event.bad_data", checks=", ".join(verdict.evidence.get("failed_checks", []))),
        "at_risk": lambda: part("event.at_risk", deadline=local),
    }.get(verdict.verdict, lambda: part("text", text=verdict.verdict))()
    parts = [said]
    if cause:
        reason = said_of(cause)
        parts += [{**reason[0], "sep": " — "}, *reason[1:]]
    return parts


def _local(ctx: Context, moment: datetime | None, fmt: str = "%H:%M") -> str:
    return moment.replace(tzinfo=UTC).astimezone(ctx.tz).strftime(fmt) if moment else "-"


def _warn_consumers(project: Project, store: Store, result: Assessment, incidents: IncidentLog, verdict: Verdict,
                    notify: bool) -> None:
    """Tell the consumers of an at-risk day once the cause leaves too little time for a repair.

    The owners hear of the incident at once; consumers when the last chance has passed (the cause's asset can
    no longer be ready, or rebuilt, in time by the p90 chain after it) or :data:`WARN_FLOOR` before the
    deadline, whichever is first — a failure that is repaired at 02:10 does not wake the store managers."""
    incident = incidents.open_for(verdict.usecase, verdict.due_date)
    if incident is None or incident.status == IncidentStatus.RESOLVED or incident.kind != "at_risk":
        return
    if any(e.kind == "warned" for e in incidents.events(incident.id)):
        return
    found = incident.root_cause or {}
    latest = last_chance(result.context, result.p90, verdict.usecase, found.get("asset"), verdict.deadline,
                         rebuild_self=found.get("kind") in ("failed", "late_start", "bad_data"))
    if result.now < min(latest, verdict.deadline - WARN_FLOOR):
        return
    told = [part("event.consumers_told", reason=said_of(found))] if found.get("reason") else \
        [part("event.consumers_told_at_risk")]
    incidents.note_event(incident.id, "warned", say(told), at=result.now, said=told)
    if notify:
        tell_consumers(project, store, incident, "at_risk", result.context, eta=found.get("eta"))


def tell_consumers(project: Project, store: Store, incident: Incident, event: str, ctx: Context,
                   eta: str | None = None, late_s: float | None = None, through: str | None = None) -> None:
    """Send the consumers of ``incident``'s use case a message in each one's language (never raises)."""

    usecase = project.usecases[incident.usecase]
    by_language: dict[str, set[str]] = {}
    for who in usecase.config.consumers:
        by_language.setdefault(who.language, set()).update(who.notify)
    notice = ConsumerNotice(usecase.config.description, usecase.name, str(incident.due_date),
                            _deadline_of(ctx, incident), usecase.config.owner,
                            cause_kind=(incident.root_cause or {}).get("kind"), eta=eta,
                            late=span(late_s) if late_s else None, through=through)
    for language, channels in sorted(by_language.items()):
        if not channels:
            continue
        subject, text = consumer_message(event, language, notice)
        severity = "info" if event in ("ready", "late") else "warning" if event == "at_risk" else "critical"
        Notifier.of(project, store).send(sorted(channels), Message(
            subject=subject, text=text, severity=severity, link=console_link(project, incident),
            dedupe_key=f"incident:{project.name}:{incident.usecase}:{incident.due_date}:{event}:consumers:{language}"))


def console_link(project: Project, incident: Incident) -> str | None:
    base = project.config.console_url
    return f"{base.rstrip('/')}/incidents/{incident.id}" if base else None


def _deadline_of(ctx: Context, incident: Incident) -> str:
    usecase = ctx.project.usecases[incident.usecase]
    return f"{incident.due_date.strftime('%m-%d')} {usecase.config.need.by}"


def _notify(project: Project, store: Store, incident: Incident, verdict: Verdict, result: Assessment) -> None:
    usecase = project.usecases[verdict.usecase]
    owner_channels = sorted(set(usecase.config.owner_notify))
    delivered = verdict.verdict in (VerdictStatus.MET, VerdictStatus.LATE)
    events = IncidentLog(store, project.name).events(incident.id)
    warned = any(e.kind == "warned" for e in events) or any(e.kind in MISSES for e in events)
    if delivered and warned:  # they heard of trouble: now they hear the data is there
        tell_consumers(project, store, incident, "ready", result.context,
                       late_s=verdict.lateness_s if verdict.verdict == VerdictStatus.LATE else None)
    elif verdict.verdict in MISSES and verdict.verdict != VerdictStatus.LATE:
        tell_consumers(project, store, incident, verdict.verdict, result.context,
                       through=str(verdict.evidence.get("data_through") or ""))
    on_call, paged = oncall_channels(project, result.now)
    owner_channels = sorted(set(owner_channels) | set(paged))
    if not owner_channels:
        return
    severity = ("info" if delivered else "warning" if verdict.verdict in (VerdictStatus.AT_RISK, VerdictStatus.LATE)
                else "critical")
    key = f"incident:{project.name}:{verdict.usecase}:{verdict.due_date}:{verdict.verdict}"
    found = incident.root_cause or {}
    facts = {"use case": verdict.usecase, "due": str(verdict.due_date), "verdict": verdict.verdict,
             "root cause": f"{found.get('asset', 'unknown')} ({found.get('kind') or found.get('status') or '-'})",
             "incident": f"#{incident.id}"}
    if on_call:
        facts["on call"] = on_call
    if delivered:
        closing = next((e.message for e in reversed(events) if e.kind in ("recovered", "repaired")), "delivered")
        subject = f"[kiban] incident #{incident.id} {verdict.usecase} {verdict.due_date}: closed, the data is ready"
        text = f"{closing}\nCause was: {found.get('reason') or found.get('error') or '-'}"
    else:
        subject = f"[kiban] incident #{incident.id} {verdict.usecase} {verdict.due_date}: {verdict.verdict}"
        text = say(_describe(verdict, found or None, result.context))
        text += f"\nWhat to do: {found['action']}" if found.get("action") else ""
        if incident.workaround:
            facts["workaround"] = incident.workaround
    Notifier.of(project, store).send(owner_channels, Message(
        subject=subject, text=text, severity=severity, dedupe_key=key + ":owners", fields=facts,
        link=console_link(project, incident)))


def log_failure(exc: BaseException) -> None:
    log.warning("service-level check failed: %s", exc)
