"""What the catalog's pages show and its API returns: column docs and lineage, console results, recipes, data
requests and usage — one Pydantic model per view, so the OpenAPI description is exact."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, computed_field

from kiban.catalog.requests import DataRequest
from kiban.catalog.usage import QueryRecord
from kiban.web.models import extends


class ProfileOut(BaseModel):
    rows: int
    null_share: float | None
    approx_distinct: int | None
    min_value: str | None = Field(description="masked when the column is PII")
    max_value: str | None
    examples: list[Any] = Field(description="frequent values (masked when the column is PII)")
    profiled_at: datetime | None


class CatalogColumn(BaseModel):
    name: str
    type: str | None
    description: str
    tags: list[str]
    pii: bool = Field(description="tagged pii, or computed from a pii column (column lineage)")
    pii_from: str | None = Field(description="asset.column the pii tag came down from (None: declared here)")
    anonymised: bool
    upstream: list[str] = Field(description="the columns it is computed from, asset.column")
    downstream: list[str] = Field(description="the columns computed from it, asset.column")
    profile: ProfileOut | None


class AssetColumns(BaseModel):
    asset: str
    rows: int | None = Field(description="rows at the last profile")
    columns: list[CatalogColumn]


class LineageTree(BaseModel):
    asset: str
    column: str
    children: list[LineageTree]


class ColumnLineage(BaseModel):
    asset: str
    column: str
    upstream: LineageTree
    downstream: LineageTree


class QueryRequest(BaseModel):
    sql: str = Field(min_length=1, max_length=100_000, description="one SELECT over the project's assets")
    limit: int = Field(1000, ge=1, le=10_000, description="at most this many rows")
    timeout: float = Field(30.0, gt=0, le=120, description="stop the query after this many seconds")
    team: str | None = Field(None, max_length=100, description="the team it counts for in the usage report")


class QueryOut(BaseModel):
    query_id: int | None
    columns: list[str]
    types: list[str]
    rows: list[list[Any]]
    truncated: bool = Field(description="more rows than the limit existed")
    seconds: float
    assets: list[str] = Field(description="what the query read")
    masked: list[str] = Field(description="columns whose values were masked (PII, no clearance)")
    pii_shown: bool
    notes: list[str] = Field(default_factory=list, description="tables read that are masked whole (or read one) "
                             "because their code changed since they were built: why, and the run that rebuilds them")


@extends
class HistoryEntry(QueryRecord):
    """A query as the console recorded it (kiban.catalog.usage.QueryRecord)."""

    status: Annotated[str, Field(description="ok, refused, failed or timeout")]


class History(BaseModel):
    entries: list[HistoryEntry]


class ParamOut(BaseModel):
    name: str
    type: str = Field(description="int, float, date, text or choice")
    description: str
    default: Any
    choices: list[str]
    values_from: str | None = Field(default=None, description="asset.column whose distinct values are offered")


class RecipeOut(BaseModel):
    name: str
    description: str
    owner: str | None
    tags: list[str]
    sql: str
    params: list[ParamOut]


class RecipeList(BaseModel):
    recipes: list[RecipeOut]


class RecipeRun(BaseModel):
    params: dict[str, str] = Field(default_factory=dict, description="parameter values as text; defaults fill in")
    limit: int = Field(1000, ge=1, le=10_000)
    team: str | None = Field(None, max_length=100)


class PromoteRequest(BaseModel):
    params: dict[str, str] = Field(default_factory=dict)
    name: str | None = Field(None, max_length=100, description="the model's name (default: the recipe's)")


class Promoted(BaseModel):
    files: list[str]


class RequestIn(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    team: str | None = Field(None, max_length=100)
    purpose: str = Field("", max_length=5000)
    hypothesis: str = Field("", max_length=5000)
    data_needed: str = Field("", max_length=5000)
    needed_by: date | None = None


class RequestMove(BaseModel):
    to: str = Field(max_length=20, description="in_progress, delivered or closed")
    deliverable: str | None = Field(None, max_length=1000, description="recipe:NAME, an asset key or file:PATH")
    note: str | None = Field(None, max_length=5000)


class RequestEventOut(BaseModel):
    at: datetime
    actor: str | None
    from_status: str | None
    to_status: str
    note: str | None


@extends
class RequestOut(DataRequest):
    """A data request as stored (kiban.catalog.requests.DataRequest), with its lead time, moves and events."""

    status: Annotated[str, Field(description="new, in_progress, delivered or closed")]
    moves: Annotated[list[str], Field(description="the states it may move to now")]
    events: list[RequestEventOut]

    lead_time_days = computed_field(DataRequest.lead_time_days)  # the record's property, in the JSON


class LeadTimesOut(BaseModel):
    delivered: int
    median_days: float | None
    p90_days: float | None
    open: int
    overdue: int


class RequestList(BaseModel):
    requests: list[RequestOut]
    lead_times: LeadTimesOut


class TeamWeekOut(BaseModel):
    week: str
    team: str
    users: int
    queries: int
    recipes: int
    assets: int
    requests: int


class UnusedOut(BaseModel):
    asset: str
    last_read: datetime | None


class AssetUse(BaseModel):
    asset: str
    last_read: datetime


class Usage(BaseModel):
    weeks: int
    days: int = Field(description="an asset unread for this many days counts as unused")
    teams: list[TeamWeekOut]
    self_served: int = Field(description="console queries, exports and recipe runs in the period")
    requested: int = Field(description="data requests opened in the period")
    self_served_share: float | None
    assets_read: list[AssetUse]
    unused: list[UnusedOut]
    lead_times: LeadTimesOut
