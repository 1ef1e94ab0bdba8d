"""Data requests: someone needs data they cannot serve themselves yet.

A request says who asks, for what purpose, with which hypothesis, which data, by when. It moves
``new → in_progress → delivered → closed`` (a request may also be closed from any state, e.g. when it
is withdrawn); each move is an event with its time and actor. A delivered request links its
deliverable: a recipe (``recipe:NAME``), an asset (``mart.NAME``) or a file (``file:PATH``). Lead times
(created → delivered) are what the usage report shows next to self-served queries.
"""

from __future__ import annotations

import statistics
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa

from kiban.errors import KibanError, UsageError, did_you_mean
from kiban.store import Store, utcnow
from kiban.store.schema import data_request_events, data_requests

STATES = ("new", "in_progress", "delivered", "closed")
MOVES = {"new": ("in_progress", "closed"), "in_progress": ("delivered", "closed"), "delivered": ("closed",
                                                                                                  "in_progress"),
         "closed": ()}


class RequestError(KibanError):
    exit_code = 2


@dataclass(frozen=True)
class DataRequest:
    id: int
    title: str
    requester: str
    team: str | None
    purpose: str
    hypothesis: str
    data_needed: str
    needed_by: date | None
    status: str
    assignee: str | None
    deliverable: str | None
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None
    closed_at: datetime | None

    @property
    def lead_time_days(self) -> float | None:
        if self.delivered_at is None:
            return None
        return (self.delivered_at - self.created_at).total_seconds() / 86400


@dataclass(frozen=True)
class RequestEvent:
    at: datetime
    actor: str | None
    from_status: str | None
    to_status: str
    note: str | None


def _record(row: sa.Row[tuple[object, ...]]) -> DataRequest:
    r = row._mapping
    return DataRequest(r["id"], r["title"], r["requester"], r["team"], r["purpose"], r["hypothesis"],
                       r["data_needed"], r["needed_by"], r["status"], r["assignee"], r["deliverable"],
                       r["created_at"], r["updated_at"], r["delivered_at"], r["closed_at"])


def check_deliverable(value: str, assets: Collection[str] | None = None) -> str:
    """``recipe:NAME``, ``file:PATH`` or an asset key such as ``mart.daily_sales``."""
    kind, sep, rest = value.partition(":")
    if sep and kind in ("recipe", "file") and rest.strip():
        return value
    if "." in value and value.split(".", 1)[0] in ("lake", "warehouse", "mart"):
        if assets is not None and value not in assets:
            raise RequestError(f"unknown asset '{value}'", did_you_mean(value, assets))
        return value
    raise RequestError(f"'{value}' is not a deliverable", "use recipe:NAME, mart.NAME (an asset) or file:PATH")


@dataclass(frozen=True)
class RequestDraft:
    """A data request as its requester words it (``new_request``): who asks, for what, with which data, by when."""

    title: str
    requester: str
    team: str | None = None
    purpose: str = ""
    hypothesis: str = ""
    data_needed: str = ""
    needed_by: date | None = None


def new_request(store: Store, project: str, draft: RequestDraft) -> int:
    """Open ``draft`` as a new request (with its first event); returns its id."""
    title, requester = draft.title, draft.requester
    if not title.strip():
        raise RequestError("a request needs a title")
    now = utcnow()
    with store._tx() as conn:
        result = conn.execute(data_requests.insert().values(
            project=project, title=title.strip(), requester=requester, team=draft.team, purpose=draft.purpose,
            hypothesis=draft.hypothesis, data_needed=draft.data_needed, needed_by=draft.needed_by, status="new",
            created_at=now, updated_at=now))
        request_id = int(result.inserted_primary_key[0])  # type: ignore[index]
        conn.execute(data_request_events.insert().values(request_id=request_id, at=now, actor=requester,
                                                         from_status=None, to_status="new", note=None))
    return request_id


def get_request(store: Store, project: str, request_id: int) -> DataRequest:
    with store.engine.connect() as conn:
        row = conn.execute(data_requests.select().where(data_requests.c.project == project,
                                                        data_requests.c.id == request_id)).first()
    if row is None:
        raise RequestError(f"no data request #{request_id}", "see them with `kiban requests list`")
    return _record(row)


def list_requests(store: Store, project: str, status: str | None = None, open_only: bool = False) -> list[DataRequest]:
    query = data_requests.select().where(data_requests.c.project == project)
    if status:
        query = query.where(data_requests.c.status == status)
    elif open_only:
        query = query.where(data_requests.c.status != "closed")
    with store.engine.connect() as conn:
        return [_record(r) for r in conn.execute(query.order_by(data_requests.c.id))]


def events(store: Store, request_id: int) -> list[RequestEvent]:
    with store.engine.connect() as conn:
        rows = conn.execute(data_request_events.select().where(data_request_events.c.request_id == request_id)
                            .order_by(data_request_events.c.id)).fetchall()
    return [RequestEvent(r.at, r.actor, r.from_status, r.to_status, r.note) for r in rows]


def move(store: Store, project: str, request_id: int, to: str, actor: str, *, deliverable: str | None = None,
         assignee: str | None = None, note: str | None = None) -> DataRequest:
    """Move a request to ``to``; delivering needs a deliverable (given now or before)."""
    if to not in STATES:
        raise UsageError(f"unknown state '{to}'", did_you_mean(to, STATES) or f"states: {', '.join(STATES)}")
    current = get_request(store, project, request_id)
    if to not in MOVES[current.status]:
        allowed = ", ".join(MOVES[current.status]) or "nothing (it is closed)"
        raise RequestError(f"request #{request_id} is {current.status}; it can move to {allowed}, not {to}")
    deliverable = deliverable or current.deliverable
    if to == "delivered" and not deliverable:
        raise RequestError(f"delivering request #{request_id} needs its deliverable",
                           "pass --deliverable recipe:NAME, mart.NAME or file:PATH")
    now = utcnow()
    values: dict[str, object] = {"status": to, "updated_at": now, "deliverable": deliverable}
    if assignee or (to == "in_progress" and not current.assignee):
        values["assignee"] = assignee or actor
    if to == "delivered":
        values["delivered_at"] = now
    if to == "closed":
        values["closed_at"] = now
    with store._tx() as conn:
        conn.execute(data_requests.update().where(data_requests.c.id == request_id).values(**values))
        conn.execute(data_request_events.insert().values(request_id=request_id, at=now, actor=actor,
                                                         from_status=current.status, to_status=to, note=note))
    return get_request(store, project, request_id)


@dataclass(frozen=True)
class LeadTimes:
    delivered: int
    median_days: float | None
    p90_days: float | None
    open: int
    overdue: int  # open requests past their needed_by date


def lead_times(requests: list[DataRequest], today: date | None = None) -> LeadTimes:
    today = today or utcnow().date()
    days = sorted(r.lead_time_days for r in requests if r.lead_time_days is not None)
    open_ = [r for r in requests if r.status in ("new", "in_progress")]
    p90 = days[min(len(days) - 1, round(0.9 * (len(days) - 1)))] if days else None
    return LeadTimes(len(days), statistics.median(days) if days else None, p90, len(open_),
                     sum(1 for r in open_ if r.needed_by is not None and r.needed_by < today))
