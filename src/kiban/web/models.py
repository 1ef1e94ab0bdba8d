"""What the pages show and the API returns: one Pydantic model per view, so the OpenAPI description is exact.

Times are timezone-aware UTC; pages show them in the project's timezone.

Where a view is a stored record (an attempt, an incident, an audit entry …), its type *extends the record's
dataclass* (a frozen Pydantic dataclass, ``extends``), so a field added to the record is in the API at once and
cannot drift from it; a field the API must not show is re-declared with ``Hidden``. ``from_record`` fills one from
the record (stored naive-UTC times made aware) plus the fields the view adds.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, Field
from pydantic.dataclasses import dataclass

from kiban.incidents.log import Incident
from kiban.store import AttemptRecord
from kiban.web.accounts import AuditEntry

V = TypeVar("V")
#: Re-declares a record's field the API does not show (kept in the value, left out of JSON and the schema).
Hidden = Field(exclude=True)
#: The decorator of a view that extends a stored record's (frozen) dataclass.
extends = dataclass(frozen=True)


def aware(value: Any) -> Any:
    """A stored naive-UTC time as an aware one; anything else as it is."""
    return value.replace(tzinfo=UTC) if isinstance(value, datetime) and value.tzinfo is None else value


def from_record(view: type[V], record: Any, **added: Any) -> V:
    """``view`` (a type that ``extends`` ``record``'s dataclass) with the record's values, times made aware, and
    ``added``: the fields the view adds to the record."""
    values = {f.name: aware(getattr(record, f.name)) for f in dataclasses.fields(record)}
    return view(**values, **added)


class UseCaseStatus(BaseModel):
    name: str
    description: str
    verdict: str = Field(description="met, late, failed, incomplete, bad_data, pending, at_risk or not_due")
    due_date: date | None
    deadline: datetime | None
    estimated_finish: datetime | None = Field(description="ready at (met), or the p90 forecast of a running run")
    at_risk: bool
    detail: str
    detail_said: list[dict[str, Any]] | None = Field(
        None, description="``detail`` as parts: kind + parameters (kiban.messages), said in the reader's language")
    attainment: float | None
    target: float
    budget_allowed: int
    budget_left: int
    burn_rate: float | None


class RunSummary(BaseModel):
    run_id: str
    status: str
    started_at: datetime
    ended_at: datetime | None
    seconds: float | None
    selection: list[str]
    counts: dict[str, int] = Field(description="assets by their final status in this run")
    error: str | None


class Fix(BaseModel):
    """The one thing to do about a problem: a command, and the button that starts it (when the console can)."""

    label: str = Field(description="what the button says, e.g. 'Rebuild mart.daily_sales and what reads it'")
    command: str = Field(description="the same as a command line")
    action: str | None = Field(description="resume or run: the console can start it; null: run it in a terminal")
    selection: str | None = Field(description="for action run: the selection it builds")
    rebuilds: list[str] = Field(description="the assets it will build (those still fresh are skipped)")
    nothing: str | None = Field(default=None, description="why there is nothing to do, when there is not")


class Consumer(BaseModel):
    name: str
    team: str | None


class Risk(BaseModel):
    """A use case that is not ready today, or will not be: who is hurt, since when, why, and what fixes it."""

    usecase: str
    description: str
    state: str = Field(description="late, failed, broken (an upstream build failed today), at_risk, …")
    consumers: list[Consumer]
    since: datetime | None = Field(description="when it went wrong: the failed build, or the missed deadline")
    deadline: datetime | None
    cause: str = Field(description="the cause in one line")
    cause_asset: str | None = Field(None, description="the first bad upstream asset, when the cause is one")
    cause_status: str | None = Field(None, description="its latest build's status (failed, skipped, …)")
    cause_error: str | None = Field(None, description="the first line of its error, as the engine said it")
    cause_said: list[dict[str, Any]] | None = Field(
        None, description="``cause`` as parts: kind + parameters (kiban.messages), said in the reader's language")
    fix: Fix | None
    incident: int | None = Field(description="the open incident about it, if any")


class Today(BaseModel):
    project: str
    generated_at: datetime
    today: date
    timezone: str
    usecases: list[UseCaseStatus]
    running: list[RunSummary]
    open_incidents: int
    headline: str = Field(default="", description="e.g. '2 of 3 use cases ready · 1 at risk'")
    risks: list[Risk] = Field(default_factory=list, description="today's problems, worst first")
    old_incidents: int = Field(default=0, description="open incidents about earlier days")


@extends
class AttemptOut(AttemptRecord):
    """An attempt as stored (kiban.store.AttemptRecord), without its fingerprint and watermark."""

    fingerprint: Annotated[str | None, Hidden]
    watermark: Annotated[date | None, Hidden] = None


class RunDetail(BaseModel):
    run: RunSummary
    attempts: list[AttemptOut]


class RunList(BaseModel):
    runs: list[RunSummary]
    running: bool


class ColumnOut(BaseModel):
    name: str
    description: str
    tags: list[str]


class CheckOut(BaseModel):
    name: str
    kind: str | None
    severity: str
    status: str
    failures: int | None
    checked_at: datetime
    detail: str


class AssetDetail(BaseModel):
    key: str
    layer: str
    name: str
    description: str
    owner: str | None
    tags: list[str]
    materialized: str
    path: str
    columns: list[ColumnOut]
    sql: str | None = Field(description="the model's SQL (analysts and above)")
    upstream: list[str]
    downstream: list[str]
    state: str
    runs: list[AttemptOut]
    checks: list[CheckOut]
    usecases: list[str]
    latest_safe_finish: datetime | None
    safe_finish_for: str | None
    p50_seconds: float | None
    p90_seconds: float | None


class IncidentEventOut(BaseModel):
    at: datetime
    kind: str
    message: str = Field(description="what happened, in English as written")
    actor: str | None
    said: list[dict[str, Any]] | None = Field(
        None, description="``message`` as parts: kind + parameters (kiban.messages), said in the reader's language")


@extends
class IncidentOut(Incident):
    """An incident as stored (kiban.incidents.Incident), with its timeline and the fix it offers."""

    events: list[IncidentEventOut]
    fix: Annotated[Fix | None, Field(description="the workaround as an action, with what it will rebuild")] = None


class IncidentList(BaseModel):
    incidents: list[IncidentOut]


class VerdictOut(BaseModel):
    due_date: date
    deadline: datetime
    verdict: str
    lateness_s: float | None
    satisfied_at: datetime | None


class UseCaseDetail(BaseModel):
    status: UseCaseStatus
    owner: str | None
    consumers: list[dict[str, Any]]
    assets: list[str]
    need: dict[str, Any]
    window_days: int
    history: list[VerdictOut]


class GraphNode(BaseModel):
    key: str
    layer: str
    state: str
    tags: list[str]
    x: float
    y: float


class GraphOut(BaseModel):
    nodes: list[GraphNode]
    edges: list[tuple[str, str]]
    width: float
    height: float


class SearchHit(BaseModel):
    kind: str = Field(description="asset or column")
    asset: str
    column: str | None
    text: str


class SearchResults(BaseModel):
    query: str
    hits: list[SearchHit]


class JobOut(BaseModel):
    id: str
    action: str
    status: str = Field(description="running, success, failed, cancelled, nothing")
    user: str
    detail: str
    run_id: str | None = Field(description="the run's id (named when a run or resume job starts; a backfill's id "
                                           "once it has one)")
    error: str | None
    started_at: datetime
    ended_at: datetime | None


class JobList(BaseModel):
    jobs: list[JobOut]


class RunRequest(BaseModel):
    selection: list[str] = Field(min_length=1, description="assets to rebuild, e.g. ['warehouse.orders+']")


class BackfillRequest(BaseModel):
    selection: list[str] = Field(min_length=1)
    start: str = Field(description="first day, month or hour (YYYY-MM-DD)")
    end: str = Field(description="last day, month or hour (included)")


class IncidentNote(BaseModel):
    note: str = ""


@extends
class AuditOut(AuditEntry):
    """An audit entry as stored (kiban.web.accounts.AuditEntry)."""


class AuditList(BaseModel):
    entries: list[AuditOut]


class Me(BaseModel):
    name: str
    role: str


class Health(BaseModel):
    status: str
