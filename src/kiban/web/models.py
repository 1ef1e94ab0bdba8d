"""What the pages show and the API returns: one Pydantic model per view, so the OpenAPI description is exact.

Times are timezone-aware UTC; pages show them in the project's timezone.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, Field


class UseCaseStatus(BaseModel):
    name: str
    description: str
    verdict: str = Field(description="met, late, failed, incomplete, bad_data, pending, at_risk or not_due")
    due_date: date | None
    deadline: datetime | None
    estimated_finish: datetime | None = Field(description="ready at (met), or the p90 forecast of a running run")
    at_risk: bool
    detail: str
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


class Today(BaseModel):
    project: str
    generated_at: datetime
    today: date
    timezone: str
    usecases: list[UseCaseStatus]
    running: list[RunSummary]
    open_incidents: int


class AttemptOut(BaseModel):
    run_id: str
    asset: str
    attempt: int
    status: str
    started_at: datetime | None
    ended_at: datetime | None
    seconds: float | None
    rows: int | None
    bytes: int | None
    error: str | None


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
    message: str
    actor: str | None


class IncidentOut(BaseModel):
    id: int
    usecase: str
    due_date: date
    status: str
    kind: str
    verdict: str | None
    opened_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    impact: dict[str, Any]
    root_cause: dict[str, Any]
    workaround: str | None
    note: str | None
    events: list[IncidentEventOut]


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
    run_id: str | None
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


class AuditOut(BaseModel):
    at: datetime
    actor: str | None
    action: str
    target: str | None
    ip: str | None
    outcome: str
    detail: str | None


class AuditList(BaseModel):
    entries: list[AuditOut]


class Me(BaseModel):
    name: str
    role: str


class Health(BaseModel):
    status: str
