"""The weekly operations review: how the week went for the team that runs the platform.

One ISO week (Monday to Sunday, local time): the incidents opened, their causes and which causes came back
(seen in the four weeks before too), time to detect and to repair, the error budgets of the use cases, data
requests and their lead times, and toil — hours spent repairing (incidents open until resolved) and working on
requests (from "in progress" to "delivered") — with the four weeks before for the trend. The same review is a
page (/team/review), a report (``kiban review --week``) and a message to the ``review_notify:`` channels.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from kiban.catalog.requests import events as request_events
from kiban.catalog.requests import lead_times, list_requests
from kiban.errors import UsageError
from kiban.graph import Graph
from kiban.incidents import IncidentLog
from kiban.project import Project
from kiban.status import DeliveryStatus, Verdict
from kiban.store import Store
from kiban.store.schema import notifications
from kiban.team.oncall import on_duty
from kiban.team.postmortem import detection, saved_ids

TREND_WEEKS = 4
_ISO_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")


def week_of(text: str | None, today: date) -> date:
    """The Monday of the week ``text`` names (``2026-W49``, a date in it, ``last`` or ``this``); default: last week."""
    if text in (None, "", "last"):
        return today - timedelta(days=today.weekday() + 7)
    if text == "this":
        return today - timedelta(days=today.weekday())
    assert text is not None
    match = _ISO_WEEK.match(text)
    if match:
        return date.fromisocalendar(int(match[1]), int(match[2]), 1)
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"'{text}' is not a week", "write 2026-W49, a date in the week, last or this") from None
    return day - timedelta(days=day.weekday())


@dataclass
class WeekFigures:
    monday: date
    incidents: int = 0
    missed: int = 0
    at_risk: int = 0
    ttd_median_s: float | None = None
    ttr_median_s: float | None = None
    repair_hours: float = 0.0
    request_hours: float = 0.0
    requests_opened: int = 0
    requests_delivered: int = 0
    lead_time_median_days: float | None = None

    @property
    def toil_hours(self) -> float:
        return self.repair_hours + self.request_hours


@dataclass
class Review:
    week: WeekFigures
    previous: list[WeekFigures]
    incidents: list[dict[str, Any]]
    causes: list[dict[str, Any]]  # cause, this week, in the weeks before (a repeat when both > 0)
    budgets: list[dict[str, Any]]
    open_requests: int
    overdue_requests: int
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        year, week, _ = self.week.monday.isocalendar()
        return f"{year}-W{week:02d}"

    def as_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {"week": self.label, "from": self.week.monday, "to": self.week.monday + timedelta(days=6),
                "figures": {**asdict(self.week), "toil_hours": self.week.toil_hours},
                "previous": [{**asdict(w), "toil_hours": w.toil_hours} for w in self.previous],
                "incidents": self.incidents, "causes": self.causes, "budgets": self.budgets,
                "open_requests": self.open_requests, "overdue_requests": self.overdue_requests, "notes": self.notes}

    def markdown(self) -> str:
        w = self.week
        span = _hours
        lines = [f"# Operations review {self.label} ({w.monday} – {w.monday + timedelta(days=6)})", "",
                 "## The week in numbers", "",
                 "| | this week | 4 weeks before (avg) |", "|---|---:|---:|"]

        def avg(get: Any) -> str:
            values = [get(p) for p in self.previous if get(p) is not None]
            return f"{statistics.mean(values):.1f}" if values else "-"

        rows = [("incidents", w.incidents, lambda p: p.incidents),
                ("missed (of them)", w.missed, lambda p: p.missed),
                ("time to detect, median (h)", span(w.ttd_median_s), lambda p: _h(p.ttd_median_s)),
                ("time to repair, median (h)", span(w.ttr_median_s), lambda p: _h(p.ttr_median_s)),
                ("toil: repairs (h)", f"{w.repair_hours:.1f}", lambda p: p.repair_hours),
                ("toil: requests (h)", f"{w.request_hours:.1f}", lambda p: p.request_hours),
                ("requests opened / delivered", f"{w.requests_opened} / {w.requests_delivered}",
                 lambda p: p.requests_delivered),
                ("request lead time, median (days)",
                 f"{w.lead_time_median_days:.1f}" if w.lead_time_median_days is not None else "-",
                 lambda p: p.lead_time_median_days)]
        lines += [f"| {name} | {value} | {avg(get)} |" for name, value, get in rows]
        lines += ["", f"Open requests: {self.open_requests} ({self.overdue_requests} past their date).", "",
                  "## Incidents", ""]
        if self.incidents:
            lines += ["| # | use case | due | verdict | cause | detect (h) | repair (h) | on call | postmortem |",
                      "|---|---|---|---|---|---|---|---|---|"]
            lines += [f"| {i['id']} | {i['usecase']} | {i['due_date']} | {i['verdict']} | {i['cause']} | "
                      f"{span(i['ttd_s'])} | {span(i['ttr_s'])} | {i['on_call'] or '-'} | {i['postmortem']} |"
                      for i in self.incidents]
        else:
            lines.append("No incidents this week.")
        repeats = [c for c in self.causes if c["this_week"] and c["before"]]
        lines += ["", "## Repeat causes", ""]
        lines += [f"- {c['cause']}: {c['this_week']} this week, {c['before']} in the {TREND_WEEKS} weeks before"
                  for c in repeats] or ["None: no cause of this week was seen in the weeks before."]
        lines += ["", "## Error budgets", "", "| use case | attainment | target | budget left | burn rate |",
                  "|---|---:|---:|---:|---:|"]
        lines += [f"| {b['usecase']} | {_pct(b['attainment'])} | {_pct(b['target'])} | {b['left']} | "
                  f"{b['burn_rate'] if b['burn_rate'] is not None else '-'} |" for b in self.budgets]
        if self.notes:
            lines += ["", "## To discuss", ""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"

    def message_text(self) -> str:
        w = self.week
        repeats = [c["cause"] for c in self.causes if c["this_week"] and c["before"]]
        return (f"{w.incidents} incidents ({w.missed} missed), time to repair median {_hours(w.ttr_median_s)} h; "
                f"toil {w.toil_hours:.1f} h (repairs {w.repair_hours:.1f}, requests {w.request_hours:.1f}); "
                f"{w.requests_delivered} requests delivered, {self.open_requests} open."
                + (f"\nRepeat causes: {', '.join(repeats)}" if repeats else "")
                + ("\n" + "\n".join(self.notes) if self.notes else ""))


def _h(seconds: float | None) -> float | None:
    return seconds / 3600 if seconds is not None else None


def _hours(seconds: float | None) -> str:
    return f"{seconds / 3600:.1f}" if seconds is not None else "-"


def _pct(value: float | None) -> str:
    return f"{value:.0%}" if value is not None else "-"


def _utc(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, datetime.min.time(), tz).astimezone(UTC).replace(tzinfo=None)


def review(project: Project, graph: Graph, store: Store, monday: date, *, with_budgets: bool = True) -> Review:
    """The review of the week starting ``monday`` (local dates), with the four weeks before it."""

    tz = ZoneInfo(project.config.timezone)
    first = monday - timedelta(days=7 * TREND_WEEKS)
    log = IncidentLog(store, project.name)
    incidents = [i for i in log.recent(include_resolved=True, limit=100_000)
                 if _utc(first, tz) <= i.opened_at < _utc(monday + timedelta(days=7), tz)]
    requests = list_requests(store, project.name)
    postmortems = saved_ids(store, project.name)
    weeks = [WeekFigures(first + timedelta(days=7 * k)) for k in range(TREND_WEEKS + 1)]
    listed: list[dict[str, Any]] = []
    causes: dict[str, list[int]] = {}
    for figures in weeks:
        start, end = _utc(figures.monday, tz), _utc(figures.monday + timedelta(days=7), tz)
        this_week = figures.monday == monday
        ttd: list[float] = []
        ttr: list[float] = []
        for i in (x for x in incidents if start <= x.opened_at < end):
            figures.incidents += 1
            figures.missed += i.kind == "missed"
            figures.at_risk += i.kind == "at_risk"
            d, r, _ = detection(project, i)
            if d is not None:
                ttd.append(d)
            if r is not None:
                ttr.append(r)
                figures.repair_hours += r / 3600
            cause = i.root_cause or {}
            key = f"{cause.get('asset', 'unknown')} ({cause.get('kind') or cause.get('status') or '-'})"
            causes.setdefault(key, [0, 0])[0 if this_week else 1] += 1
            if this_week:
                duty = on_duty(project, i.opened_at)
                listed.append({"id": i.id, "usecase": i.usecase, "due_date": i.due_date,
                               "verdict": i.verdict or i.kind, "status": i.status, "cause": key, "ttd_s": d,
                               "ttr_s": r, "on_call": duty.name if duty else None,
                               "postmortem": postmortems.get(i.id, "none")})
        figures.ttd_median_s = statistics.median(ttd) if ttd else None
        figures.ttr_median_s = statistics.median(ttr) if ttr else None
        opened = [q for q in requests if start <= q.created_at < end]
        delivered = [q for q in requests if q.delivered_at is not None and start <= q.delivered_at < end]
        figures.requests_opened, figures.requests_delivered = len(opened), len(delivered)
        figures.lead_time_median_days = lead_times(delivered).median_days
        for q in delivered:
            began = next((e.at for e in request_events(store, q.id) if e.to_status == "in_progress"), q.created_at)
            assert q.delivered_at is not None
            figures.request_hours += (q.delivered_at - began).total_seconds() / 3600
    week = weeks[-1]
    budgets: list[dict[str, Any]] = []
    notes: list[str] = []
    if with_budgets and project.usecases:
        from kiban.slo.service import assess

        end_of_week = min(_utc(monday + timedelta(days=7), tz) - timedelta(seconds=1),
                          datetime.now(UTC).replace(tzinfo=None))
        result = assess(project, graph, store, now=end_of_week)
        for name, b in sorted(result.budgets.items()):
            budgets.append({"usecase": name, "attainment": b.attainment, "target": b.target, "left": b.left,
                            "burn_rate": round(b.burn_rate, 2) if b.burn_rate is not None else None})
            if b.exhausted:
                notes.append(f"{name}: the error budget is spent ({b.missed} misses of {b.allowed} allowed) — "
                             "reliability work before new features")
    for key, (now_count, before) in sorted(causes.items()):
        if now_count and before:
            notes.append(f"{key} caused incidents this week and in the weeks before: a fix, not another repair")
    missing = [i["id"] for i in listed if i["postmortem"] == "none" and i["verdict"] != Verdict.AT_RISK]
    if missing:
        notes.append("no postmortem yet for incident " + ", ".join(f"#{n}" for n in missing))
    pending = lead_times([q for q in requests if q.status in ("new", "in_progress")])
    cause_rows = [{"cause": k, "this_week": v[0], "before": v[1]} for k, v in sorted(causes.items(),
                                                                                       key=lambda kv: -kv[1][0])]
    return Review(week, weeks[:-1], listed, cause_rows, budgets, pending.open, pending.overdue, notes)


def send(project: Project, store: Store, result: Review, *, again: bool = False) -> list[Any]:
    """Post the review to the ``review_notify:`` channels: once per week and channel (a channel that already got
    this week's review is skipped, so a cron entry may run twice), unless ``again``."""
    from kiban.notify import DeliveryResult, Message, Notifier

    channels = list(project.config.review_notify)
    if not channels:
        raise UsageError("no channel to send the review to", "list channels under `review_notify:` in kiban.yml")
    key = f"review:{project.name}:{result.label}"
    with store.engine.connect() as conn:
        done = {c for (c,) in conn.execute(sa.select(notifications.c.channel).where(
            notifications.c.dedupe_key == key, notifications.c.status == DeliveryStatus.SENT,
            sa.or_(notifications.c.project == project.name, notifications.c.project.is_(None))))} \
            if not again else set()
    skipped = [DeliveryResult(c, "suppressed", 0, f"this week's review was sent to {c} already")
               for c in channels if c in done]
    todo = [c for c in channels if c not in done]
    if not todo:
        return skipped
    return skipped + Notifier.of(project, store).send(todo, Message(
        subject=f"[kiban] operations review {result.label}", text=result.message_text(), severity="info",
        dedupe_key=key,
        fields={"incidents": str(result.week.incidents), "toil (h)": f"{result.week.toil_hours:.1f}",
                "requests open": str(result.open_requests)},
        link=f"{project.config.console_url.rstrip('/')}/team/review?week={result.label}"
        if project.config.console_url else None))
