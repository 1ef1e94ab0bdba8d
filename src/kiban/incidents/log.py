"""The incident log in the state store: open, update, acknowledge, resolve — deduplicated per use case and day."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from kiban.errors import KibanError
from kiban.messages import Part, part, say
from kiban.status import INCIDENT_WITHDRAWN, IncidentResolution, IncidentStatus
from kiban.store import Store, utcnow
from kiban.store.schema import incident_events, incidents


@dataclass(frozen=True)
class IncidentEvent:
    """One entry of an incident's timeline: ``message`` in English as written; ``said`` the same sentence as parts
    (:mod:`kiban.messages`) for readers in other languages — None on entries written before there were parts."""

    at: datetime
    kind: str
    message: str
    actor: str | None
    said: list[Part] | None = None


@dataclass(frozen=True)
class Incident:
    id: int
    usecase: str
    due_date: date
    status: str  # open, acknowledged, resolved
    kind: str  # at_risk, missed
    verdict: str | None
    opened_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    impact: dict[str, Any]
    root_cause: dict[str, Any]
    workaround: str | None
    note: str | None
    resolution: str | None  # how a resolved one was closed (kiban.status.IncidentResolution); None while open


@dataclass(frozen=True)
class IncidentDraft:
    """What is said about a use case's day: opens its incident or goes on its timeline (``IncidentLog.record``).

    ``kind`` is at_risk or missed; ``event`` names the timeline entry (``kind`` when not given). ``impact``,
    ``root_cause`` and ``workaround`` replace what the incident held only when given: what was learnt earlier stays.
    """

    usecase: str
    due: date
    kind: str
    verdict: str
    message: str
    impact: dict[str, Any] | None = None
    root_cause: dict[str, Any] | None = None
    workaround: str | None = None
    event: str | None = None
    said: list[Part] | None = None  # ``message`` as parts (kiban.messages)


def _incident(row: Any) -> Incident:
    resolution = row.resolution if row.status == IncidentStatus.RESOLVED else None
    return Incident(row.id, row.usecase, row.due_date, row.status, row.kind, row.verdict, row.opened_at,
                    row.updated_at, row.resolved_at, json.loads(row.impact or "{}"),
                    json.loads(row.root_cause or "{}"), row.workaround, row.note, resolution)


def _select() -> sa.Select[Any]:
    """The incidents, each with its resolution: the kind of its latest closing timeline entry (one correlated
    look-up on the events' incident index, no column of its own)."""
    closing = (sa.select(incident_events.c.kind)
               .where(incident_events.c.incident_id == incidents.c.id,
                      incident_events.c.kind.in_([str(r) for r in IncidentResolution]))
               .order_by(incident_events.c.at.desc(), incident_events.c.id.desc()).limit(1)
               .correlate(incidents).scalar_subquery())
    return sa.select(incidents, closing.label("resolution"))


class IncidentLog:
    def __init__(self, store: Store, project: str) -> None:
        self.store, self.project = store, project

    def record(self, draft: IncidentDraft, *, at: datetime | None = None) -> tuple[Incident, bool]:
        """Open the incident of (use case, day) or add to its timeline. Returns it and whether it is new.

        An at-risk incident that becomes a miss is escalated; a resolved one that misses again reopens — and so
        does one kiban withdrew (its use case removed or redefined) when its use case is defined and in breach
        again: the day's one incident (one per use case and day) tells the whole story on its timeline.
        """
        now = at or utcnow()
        usecase, due, kind, verdict = draft.usecase, draft.due, draft.kind, draft.verdict
        impact, root_cause, workaround = draft.impact, draft.root_cause, draft.workaround
        with self.store.engine.begin() as conn:
            row = conn.execute(_select().where(
                incidents.c.project == self.project, incidents.c.usecase == usecase,
                incidents.c.due_date == due)).first()
            values: dict[str, Any] = {"verdict": verdict, "updated_at": now}
            if impact is not None:
                values["impact"] = json.dumps(impact, default=str)
            if root_cause is not None:
                values["root_cause"] = json.dumps(root_cause, default=str)
            if workaround is not None:
                values["workaround"] = workaround
            if row is None:
                result = conn.execute(incidents.insert().values(
                    project=self.project, usecase=usecase, due_date=due, status=IncidentStatus.OPEN, kind=kind,
                    opened_at=now,
                    **{"impact": "{}", "root_cause": "{}", **values}))
                key = result.inserted_primary_key
                assert key is not None
                incident_id = int(key[0])
            else:
                incident_id = int(row.id)
                if kind == "missed" and row.kind != "missed":
                    values["kind"] = "missed"
                if row.status == IncidentStatus.RESOLVED and row.resolution in INCIDENT_WITHDRAWN:
                    values.update(status=IncidentStatus.OPEN, resolved_at=None, kind=kind)
                    said = [part("event.reopened", usecase=usecase)]
                    conn.execute(incident_events.insert().values(incident_id=incident_id, at=now, kind="reopened",
                                                                 message=say(said), said=_dump(said)))
                elif row.status == IncidentStatus.RESOLVED and kind == "missed" and row.kind != "missed":
                    values.update(status=IncidentStatus.OPEN, resolved_at=None)
                conn.execute(incidents.update().where(incidents.c.id == incident_id).values(**values))
            conn.execute(incident_events.insert().values(incident_id=incident_id, at=now, kind=draft.event or kind,
                                                         message=draft.message, said=_dump(draft.said)))
        found = self.get(incident_id)
        assert found is not None
        return found, row is None

    def open_for(self, usecase: str, due: date) -> Incident | None:
        with self.store.engine.connect() as conn:
            row = conn.execute(_select().where(
                incidents.c.project == self.project, incidents.c.usecase == usecase,
                incidents.c.due_date == due)).first()
        return _incident(row) if row else None

    def get(self, incident_id: int) -> Incident | None:
        with self.store.engine.connect() as conn:
            row = conn.execute(_select().where(incidents.c.id == incident_id,
                                                        incidents.c.project == self.project)).first()
        return _incident(row) if row else None

    def require(self, incident_id: int) -> Incident:
        found = self.get(incident_id)
        if found is None:
            raise KibanError(f"no incident #{incident_id}", "list incidents with `kiban incidents`")
        return found

    def recent(self, include_resolved: bool = False, limit: int = 50) -> list[Incident]:
        query = _select().where(incidents.c.project == self.project)
        if not include_resolved:
            query = query.where(incidents.c.status != IncidentStatus.RESOLVED)
        with self.store.engine.connect() as conn:
            rows = conn.execute(query.order_by(incidents.c.due_date.desc(), incidents.c.id.desc()).limit(limit)).all()
        return [_incident(r) for r in rows]

    def unresolved(self) -> list[Incident]:
        """Every incident of this project that is not resolved, of any day (the ones a check must keep true)."""
        with self.store.engine.connect() as conn:
            rows = conn.execute(_select().where(incidents.c.project == self.project,
                                                incidents.c.status != IncidentStatus.RESOLVED)
                                .order_by(incidents.c.id)).all()
        return [_incident(r) for r in rows]

    def events(self, incident_id: int) -> list[IncidentEvent]:
        with self.store.engine.connect() as conn:
            rows = conn.execute(incident_events.select().where(incident_events.c.incident_id == incident_id)
                                .order_by(incident_events.c.at, incident_events.c.id)).all()
        return [IncidentEvent(r.at, r.kind, r.message, r.actor, _load(r.said)) for r in rows]

    def _transition(self, incident_id: int, status: str, kind: str, message: str, actor: str | None,
                    note: str | None = None, at: datetime | None = None, said: list[Part] | None = None
                    ) -> Incident:
        current = self.require(incident_id)
        if current.status == IncidentStatus.RESOLVED and status != IncidentStatus.OPEN:
            raise KibanError(f"incident #{incident_id} is already resolved")
        now = at or utcnow()
        values: dict[str, Any] = {"status": status, "updated_at": now}
        if status == IncidentStatus.RESOLVED:
            values["resolved_at"] = now
        if note:
            values["note"] = note
        with self.store.engine.begin() as conn:
            conn.execute(incidents.update().where(incidents.c.id == incident_id).values(**values))
            conn.execute(incident_events.insert().values(incident_id=incident_id, at=now, kind=kind,
                                                         message=message, actor=actor, said=_dump(said)))
        return self.require(incident_id)

    def acknowledge(self, incident_id: int, actor: str | None = None, note: str | None = None) -> Incident:
        return self._transition(incident_id, "acknowledged", "ack", note or "acknowledged", actor, note,
                                said=None if note else [part("event.acknowledged")])

    def resolve(self, incident_id: int, note: str, actor: str | None = None, kind: str = "resolved",
                at: datetime | None = None, said: list[Part] | None = None) -> Incident:
        """Close the incident; ``note`` is a person's words (kept as written) or, with ``said``, kiban's."""
        return self._transition(incident_id, "resolved", kind, note, actor, note, at, said)

    def withdraw(self, incident_id: int, resolution: IncidentResolution, said: list[Part],
                 at: datetime | None = None) -> Incident:
        """Close the incident without a delivery (``resolution`` one of kiban.status.INCIDENT_WITHDRAWN): its use
        case is gone or no longer promises what was breached. Recorded on the timeline as kiban's, not a person's."""
        if resolution not in INCIDENT_WITHDRAWN:
            raise ValueError(f"{resolution!r} is not a withdrawal")
        return self._transition(incident_id, IncidentStatus.RESOLVED, resolution, say(said), None, say(said), at,
                                said)

    def set_promise(self, incident_id: int, promise: dict[str, Any]) -> None:
        """Keep ``promise`` (what the use case now promises, kiban.slo.retire) in the incident's impact, silently:
        its definition changed and the day is still in breach by the new one."""
        found = self.require(incident_id)
        with self.store.engine.begin() as conn:
            conn.execute(incidents.update().where(incidents.c.id == incident_id).values(
                impact=json.dumps({**found.impact, "promise": promise}, default=str)))

    def note_event(self, incident_id: int, kind: str, message: str, at: datetime | None = None,
                   said: list[Part] | None = None) -> None:
        """Add an event to the timeline without changing the incident (e.g. ``warned``: consumers were told)."""
        with self.store.engine.begin() as conn:
            conn.execute(incident_events.insert().values(incident_id=incident_id, at=at or utcnow(), kind=kind,
                                                         message=message, said=_dump(said)))

    def count_open(self) -> int:
        with self.store.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(incidents).where(
                incidents.c.project == self.project, incidents.c.status != IncidentStatus.RESOLVED)).scalar() or 0)


def _dump(said: list[Part] | None) -> str | None:
    return json.dumps(said, default=str) if said else None


def _load(text: str | None) -> list[Part] | None:
    if not text:
        return None
    found = json.loads(text)
    return found if isinstance(found, list) else None
