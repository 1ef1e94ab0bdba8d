"""Postmortems: a draft written from an incident's timeline, completed by people (console or ``kiban postmortem``).

The draft fills what kiban knows — what happened (the timeline), the impact (use cases and their consumers),
the root cause, the workaround, who was on call, the time to detect and to repair — and leaves what only people
know (why it really happened, what to change) as sections to complete. Saving keeps the draft's facts and the
people's words; ``final`` marks it reviewed.

Time to detect: from the first sign of trouble kiban has a time for (the failure or lateness the root cause
names, else the deadline) to the incident's opening; an incident opened *before* the deadline (an at-risk
warning) was detected early, and its lead is shown. Time to acknowledge: from the opening to the first
acknowledgement (someone said "I am on it"). Time to repair: from the opening to the resolution.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from kiban.errors import KibanError
from kiban.incidents import Incident, IncidentLog
from kiban.project import Project
from kiban.slo.calendar import deadline_utc
from kiban.store import Store, utcnow
from kiban.store.schema import postmortems
from kiban.team.oncall import on_duty

EDITABLE = ("summary", "impact", "root_cause", "workaround", "action_items", "lessons")
STATUSES = ("draft", "final")


@dataclass(frozen=True)
class Postmortem:
    incident_id: int
    status: str
    body: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    updated_by: str | None
    saved: bool  # False: a fresh draft, not stored yet

    def markdown(self) -> str:
        b = self.body
        lines = [f"# Postmortem: incident #{self.incident_id} — {b.get('title', '')}", "",
                 f"Status: {self.status}" + (f" (last edited by {self.updated_by})" if self.updated_by else ""), ""]
        lines += ["## What happened", b.get("summary") or "", "", "### Timeline"]
        lines += [f"- {t}" for t in b.get("timeline", [])]
        lines += ["", "## Impact", b.get("impact") or "", "", "## Root cause", b.get("root_cause") or "", "",
                  "## Workaround", b.get("workaround") or "", "", "## Detection and repair"]
        lines += [f"- time to detect: {b.get('time_to_detect') or 'unknown'}",
                  f"- time to acknowledge: {b.get('time_to_acknowledge') or 'not acknowledged'}",
                  f"- time to repair: {b.get('time_to_repair') or 'not repaired yet'}",
                  f"- on call: {b.get('on_call') or 'no rotation'}", "", "## Action items",
                  b.get("action_items") or "(to complete)", "", "## Lessons", b.get("lessons") or "(to complete)", ""]
        return "\n".join(lines)


def _span(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    seconds = max(seconds, 0.0)
    hours, rest = divmod(round(seconds), 3600)
    return f"{hours}h {rest // 60:02d}m" if hours else f"{rest // 60}m {rest % 60:02d}s"


def detection(project: Project, incident: Incident) -> tuple[float | None, float | None, datetime]:
    """(seconds to detect, seconds to repair, the deadline in naive UTC) of an incident."""

    usecase = project.usecases.get(incident.usecase)
    tz = ZoneInfo(project.config.timezone)
    deadline = deadline_utc(incident.due_date, usecase.config.need.deadline, tz) if usecase else incident.opened_at
    signs = [incident.root_cause.get(k) for k in ("at", "failed_at", "since")]
    first = next((datetime.fromisoformat(str(s)).replace(tzinfo=None) for s in signs if s), None)
    if first is None:
        first = deadline if incident.kind == "missed" else incident.opened_at
    ttd = (incident.opened_at - first).total_seconds()
    ttr = (incident.resolved_at - incident.opened_at).total_seconds() if incident.resolved_at else None
    return max(ttd, 0.0), ttr, deadline


def draft(project: Project, store: Store, incident_id: int) -> dict[str, Any]:
    """The facts of the incident, written as a postmortem's sections."""

    log = IncidentLog(store, project.name)
    incident = log.require(incident_id)
    tz = ZoneInfo(project.config.timezone)

    def local(at: datetime) -> str:
        return at.replace(tzinfo=ZoneInfo("UTC")).astimezone(tz).strftime("%Y-%m-%d %H:%M")

    timeline = [f"{local(e.at)} {e.kind}: {e.message}" + (f" ({e.actor})" if e.actor else "")
                for e in log.events(incident_id)]
    ttd, ttr, deadline = detection(project, incident)
    impact = incident.impact or {}
    consumers = ", ".join(c.get("name", "?") + (f" ({c['team']})" if c.get("team") else "")
                          for c in impact.get("consumers", [])) or "no consumers listed"
    others = impact.get("other_usecases") or []
    cause = incident.root_cause or {}
    duty = on_duty(project, incident.opened_at)
    lead = (deadline - incident.opened_at).total_seconds()
    detected = (f"{_span(lead)} before the deadline (kiban warned that it was at risk)" if lead > 0
                else f"{_span(ttd)} after the first sign")
    events = log.events(incident_id)
    acked = next((e.at for e in events if e.kind == "ack"), None)
    tta = (acked - incident.opened_at).total_seconds() if acked else None
    return {
        "title": f"{incident.usecase} {incident.due_date}: {incident.verdict or incident.kind}",
        "summary": (f"The use case {incident.usecase} (due {incident.due_date}, deadline {local(deadline)}) was "
                    f"{(incident.verdict or incident.kind).replace('_', ' ')}. kiban opened incident #{incident.id} "
                    f"at {local(incident.opened_at)}"
                    + (f" and it was resolved at {local(incident.resolved_at)}." if incident.resolved_at
                       else "; it is still open.")),
        "timeline": timeline,
        # the same entries with their parts (kiban.messages), for a reader in another language
        "timeline_said": [{"at": local(e.at), "kind": e.kind, "said": e.said or [{"kind": "text", "text": e.message}],
                           "actor": e.actor} for e in log.events(incident_id)],
        "impact": f"Consumers of {incident.usecase}: {consumers}."
                  + (f" Other use cases due that day and fed by the same cause: {', '.join(others)}." if others
                     else ""),
        "root_cause": _cause(cause),
        "workaround": incident.workaround or "no workaround was computed",
        "time_to_detect": detected,
        "time_to_detect_s": ttd,
        "time_to_acknowledge": _span(tta) if tta is not None else None,
        "time_to_acknowledge_s": tta,
        "time_to_repair": _span(ttr),
        "time_to_repair_s": ttr,
        "on_call": duty.name if duty else None,
        "cause_key": f"{cause.get('asset', '?')}:{cause.get('kind') or cause.get('status') or '?'}",
        "action_items": "",
        "lessons": "",
    }


def _cause(cause: dict[str, Any]) -> str:
    if not cause:
        return "kiban found no root cause; complete this section."
    asset = str(cause.get("asset", "unknown asset"))
    reason = str(cause.get("reason") or cause.get("error") or "-")
    said = reason if reason.startswith(asset) else f"{asset}: {reason}"
    return f"{said} (kind: {cause.get('kind') or cause.get('status') or '-'})"


def get(project: Project, store: Store, incident_id: int) -> Postmortem:
    """The saved postmortem of the incident, or a fresh draft (not saved)."""
    with store.engine.connect() as conn:
        row = conn.execute(postmortems.select().where(postmortems.c.incident_id == incident_id,
                                                      postmortems.c.project == project.name)).first()
    if row is not None:
        return Postmortem(incident_id, row.status, json.loads(row.body), row.created_at, row.updated_at,
                          row.updated_by, True)
    now = utcnow()
    return Postmortem(incident_id, "draft", draft(project, store, incident_id), now, now, None, False)


def save(project: Project, store: Store, incident_id: int, edits: dict[str, str], actor: str | None,
         status: str = "draft") -> Postmortem:
    """Keep people's words for the editable sections (the rest stays as drafted); ``status`` draft or final."""
    if status not in STATUSES:
        raise KibanError(f"a postmortem is draft or final, not '{status}'")
    unknown = [k for k in edits if k not in EDITABLE]
    if unknown:
        raise KibanError(f"'{unknown[0]}' is not a section people edit", f"sections: {', '.join(EDITABLE)}")
    current = get(project, store, incident_id)
    body = {**current.body, **{k: v.strip() for k, v in edits.items()}}
    now = utcnow()
    values = {"status": status, "body": json.dumps(body, default=str), "updated_at": now, "updated_by": actor}
    with store.engine.begin() as conn:
        if current.saved:
            conn.execute(postmortems.update().where(postmortems.c.incident_id == incident_id,
                                                    postmortems.c.project == project.name).values(**values))
        else:
            conn.execute(postmortems.insert().values(incident_id=incident_id, project=project.name,
                                                     created_at=now, **values))
    return get(project, store, incident_id)


def saved_ids(store: Store, project: str) -> dict[int, str]:
    """The incidents that have a saved postmortem, and its status."""
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(postmortems.c.incident_id, postmortems.c.status)
                            .where(postmortems.c.project == project)).fetchall()
    return {int(i): s for i, s in rows}
