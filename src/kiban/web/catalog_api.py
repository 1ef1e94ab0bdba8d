"""The catalog's JSON API under ``/api/v1``: columns and their lineage, the SQL console, recipes, data requests
and usage. Thin over ``kiban.web.catalog_views``; roles and CSRF as everywhere (``need``), every state change
(a query is one: it is recorded) written to the audit log.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from kiban.catalog.console import QueryFailed
from kiban.catalog.recipes import get_recipe
from kiban.catalog.requests import RequestError
from kiban.errors import KibanError
from kiban.web import catalog_models as cm
from kiban.web import catalog_views as cv
from kiban.web.accounts import Accounts, User
from kiban.web.api import ERRORS
from kiban.web.auth import client_ip, current_user, need
from kiban.web.views import Site

router = APIRouter(prefix="/api/v1", responses={401: ERRORS[401]}, tags=["catalog"])
Viewer = Annotated[User, Depends(current_user)]
Analyst = Annotated[User, Depends(need("analyst"))]
Operator = Annotated[User, Depends(need("operator"))]
Asker = Annotated[User, Depends(need("viewer"))]
RequestId = Annotated[int, Path(ge=1, le=2**31 - 1)]
RecipeName = Annotated[str, Path(max_length=200)]
Format = Annotated[Literal["csv", "xlsx"], Query(description="csv or xlsx")]
ACTION_ERRORS: dict[int | str, dict[str, Any]] = {400: ERRORS[400], 403: ERRORS[403]}
FILE = {200: {"description": "the rows as a file (PII masked unless the user has clearance)",
              "content": {"text/csv": {"schema": {"type": "string"}},
                          cv.EXPORTS["xlsx"]: {"schema": {"type": "string", "format": "binary"}}}},
        **ACTION_ERRORS}


def _site(request: Request) -> Site:
    site: Site = request.app.state.site
    return site


def audit(request: Request, user: User, action: str, target: str | None, outcome: str = "ok",
          detail: str | None = None) -> None:
    accounts: Accounts = request.app.state.accounts
    accounts.audit(user.name, action, target, client_ip(request), outcome, detail)


async def run_audited(request: Request, user: User, action: str, target: str, call: Any, *args: Any) -> Any:
    """``call(*args)`` in a worker thread; its outcome, failures included, goes to the audit log."""
    try:
        result = await run_in_threadpool(call, *args)
    except KibanError as exc:
        # an engine's message may quote a data value: the audit log keeps the SQL and the outcome only
        reason = "the engine refused the query (its message is in the query history)" \
            if isinstance(exc, QueryFailed) else exc.message
        await run_in_threadpool(audit, request, user, action, target[:500], "failed", reason)
        raise
    detail = f"query #{result.query_id}" if getattr(result, "query_id", None) else None
    await run_in_threadpool(audit, request, user, action, target[:500], "ok", detail)
    return result


def download(data: bytes, fmt: str, stem: str) -> Response:
    return Response(data, media_type=cv.EXPORTS[fmt],
                    headers={"Content-Disposition": f'attachment; filename="{stem}.{fmt}"'})


# -- columns and search ------------------------------------------------------------------------------------------

@router.get("/assets/{key}/columns", response_model=cm.AssetColumns, responses={404: ERRORS[404]})
def asset_columns(request: Request, key: str, user: Viewer) -> cm.AssetColumns:
    """Every column with its type, docs, PII tag (and where it came from), lineage neighbours and profile."""
    site = _site(request)
    return cv.asset_columns(site, _asset(site, key))


@router.get("/assets/{key}/columns/{column}", response_model=cm.ColumnLineage, responses={404: ERRORS[404]})
def column_lineage(request: Request, key: str, column: str, user: Viewer) -> cm.ColumnLineage:
    """The column's lineage: the tree of columns it is computed from, and the tree of columns computed from it."""
    site = _site(request)
    key = _asset(site, key)
    found = cv.column_lineage(site, key, column)
    if found is None:
        raise HTTPException(404, f"{key} has no column '{column}'")
    return found


def _asset(site: Site, key: str) -> str:
    matches = [k for k, a in site.graph.assets.items() if key in (k, a.name)]
    if len(matches) != 1:
        raise HTTPException(404, f"no asset named '{key}'" if not matches else f"'{key}' is ambiguous")
    return matches[0]


# -- the SQL console ---------------------------------------------------------------------------------------------

@router.post("/query", response_model=cm.QueryOut, responses=ACTION_ERRORS)
async def query(request: Request, body: cm.QueryRequest, user: Analyst) -> cm.QueryOut:
    """Run one read-only SELECT (checked, time- and row-limited, PII masked without clearance, recorded)."""
    result = await run_audited(request, user, "console.query", body.sql, cv.run_query, _site(request), user,
                               body.sql, body.team, body.limit, body.timeout)
    return cv.query_out(result)


@router.post("/query/export", response_class=Response, responses=FILE)
async def query_export(request: Request, body: cm.QueryRequest, user: Analyst, format: Format = "csv") -> Response:
    """Run a query and answer its rows as a CSV or Excel file (masked like the table)."""
    site = _site(request)
    result = await run_audited(request, user, "console.export", body.sql, cv.run_query, site, user, body.sql,
                               body.team, body.limit, body.timeout)
    data = await run_in_threadpool(cv.export, site, user, result, body.sql, format, "query", None)
    return download(data, format, "query")


@router.get("/query/history", response_model=cm.History, responses={403: ERRORS[403]})
def query_history(request: Request, user: Analyst, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> cm.History:
    """The signed-in user's queries, recipe runs and exports, newest first."""
    return cv.history(_site(request), user.name, limit)


# -- recipes -----------------------------------------------------------------------------------------------------

@router.get("/recipes", response_model=cm.RecipeList)
def recipes(request: Request, user: Viewer) -> cm.RecipeList:
    """Saved, parameterised queries (``recipes/*.yml``)."""
    return cv.recipes(_site(request))


@router.get("/recipes/{name}", response_model=cm.RecipeOut, responses={404: ERRORS[404]})
def recipe(request: Request, name: RecipeName, user: Viewer) -> cm.RecipeOut:
    found = {r.name: r for r in cv.recipes(_site(request)).recipes}.get(name)
    if found is None:
        raise HTTPException(404, f"no recipe named '{name}'")
    return found


@router.post("/recipes/{name}/run", response_model=cm.QueryOut, responses=ACTION_ERRORS)
async def recipe_run(request: Request, name: RecipeName, body: cm.RecipeRun, user: Asker) -> cm.QueryOut:
    """Run a recipe with typed parameters (bound, never pasted into the SQL); recorded like a query."""
    result = await run_audited(request, user, "recipe.run", name, cv.run_recipe, _site(request), user, name,
                               body.params, body.team, body.limit)
    return cv.query_out(result)


@router.post("/recipes/{name}/export", response_class=Response, responses=FILE)
async def recipe_export(request: Request, name: RecipeName, body: cm.RecipeRun, user: Asker,
                        format: Format = "csv") -> Response:
    site = _site(request)
    result = await run_audited(request, user, "recipe.export", name, cv.run_recipe, site, user, name, body.params,
                               body.team, body.limit)
    data = await run_in_threadpool(cv.export, site, user, result, result_sql(site, name), format, "recipe", name)
    return download(data, format, name)


def result_sql(site: Site, name: str) -> str:
    return get_recipe(site.project, name).sql


@router.post("/recipes/{name}/promote", response_model=cm.Promoted, responses=ACTION_ERRORS)
async def recipe_promote(request: Request, name: RecipeName, body: cm.PromoteRequest, user: Operator) -> cm.Promoted:
    """Turn a recipe into a mart model (``models/mart/NAME.sql`` + ``.yml``, parameters fixed to the values)."""
    files = await run_audited(request, user, "recipe.promote", name, cv.promote, _site(request), name, body.params,
                              body.name)
    return cm.Promoted(files=files)



# -- data requests -----------------------------------------------------------------------------------------------

@router.get("/requests", response_model=cm.RequestList)
def requests(request: Request, user: Viewer,
             status: Annotated[Literal["new", "in_progress", "delivered", "closed"] | None, Query()] = None
             ) -> cm.RequestList:
    """Data requests, newest first, with lead times (created → delivered) over all of them."""
    return cv.request_list(_site(request), status)


@router.get("/requests/{request_id}", response_model=cm.RequestOut, responses={404: ERRORS[404]})
def data_request(request: Request, request_id: RequestId, user: Viewer) -> cm.RequestOut:
    try:
        return cv.request_detail(_site(request), request_id)
    except RequestError as exc:
        raise HTTPException(404, exc.message) from None


@router.post("/requests", response_model=cm.RequestOut, status_code=201, responses=ACTION_ERRORS)
async def request_new(request: Request, body: cm.RequestIn, user: Asker) -> cm.RequestOut:
    """Ask for data you cannot serve yourself: who, purpose, hypothesis, the data needed, needed by."""
    found: cm.RequestOut = await run_audited(request, user, "request.new", body.title, cv.new_request,
                                             _site(request), user, body)
    return found


@router.post("/requests/{request_id}/move", response_model=cm.RequestOut, responses=ACTION_ERRORS)
async def request_move(request: Request, request_id: RequestId, body: cm.RequestMove, user: Analyst) -> cm.RequestOut:
    """Move a request: new → in_progress → delivered (with its deliverable) → closed."""
    found: cm.RequestOut = await run_audited(request, user, f"request.{body.to}"[:60], f"#{request_id}",
                                             cv.move_request, _site(request), user, request_id, body)
    return found


# -- usage -------------------------------------------------------------------------------------------------------

@router.get("/usage", response_model=cm.Usage)
def usage(request: Request, user: Viewer, weeks: Annotated[int, Query(ge=1, le=104)] = 8,
          days: Annotated[int, Query(ge=1, le=3650)] = 90) -> cm.Usage:
    """Democratisation: active users, queries and assets read per team and week; self-served queries versus
    data requests; the assets nobody has read in ``days`` days."""
    return cv.usage(_site(request), weeks, days)
