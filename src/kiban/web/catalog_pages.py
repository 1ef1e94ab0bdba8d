"""The catalog's pages: column lineage, the SQL console, recipes, data requests and usage.

Each page reads one view of ``kiban.web.catalog_views`` (the same data ``kiban.web.catalog_api`` returns).
Forms post with their CSRF token; a user's mistake (a refused query, a wrong parameter, a move a request
cannot make) comes back on the same page with the catalog's message, never as a traceback.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Path, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from kiban.catalog.requests import STATES, RequestError
from kiban.errors import KibanError
from kiban.web import catalog_api, i18n, pickers, sql_editor
from kiban.web import catalog_models as cm
from kiban.web import catalog_views as cv
from kiban.web.accounts import User
from kiban.web.auth import current_user, need
from kiban.web.catalog_api import download, result_sql, run_audited
from kiban.web.templating import render
from kiban.web.views import Site

router = APIRouter(include_in_schema=False)
Viewer = Annotated[User, Depends(current_user)]
Asker = Annotated[User, Depends(need("viewer"))]
Analyst = Annotated[User, Depends(need("analyst"))]
Operator = Annotated[User, Depends(need("operator"))]
RequestId = Annotated[int, Path(ge=1, le=2**31 - 1)]
Sql = Annotated[str, Form(max_length=100_000)]
Team = Annotated[str, Form(max_length=100)]
Limit = Annotated[int, Form(ge=1, le=10_000)]
Timeout = Annotated[float, Form(gt=0, le=120)]
Format = Annotated[str, Form(pattern="^(csv|xlsx)$")]
PARAM = "p_"  # recipe form fields: p_<parameter>


def install(app: FastAPI) -> None:
    """Add the catalog's pages and API to the console (and the asset page's column section)."""
    site: Site = app.state.site
    app.include_router(router)
    app.include_router(catalog_api.router)
    app.state.templates.env.globals["catalog_columns"] = lambda key: cv.asset_columns(site, key)


def _site(request: Request) -> Site:
    site: Site = request.app.state.site
    return site


# -- column lineage ----------------------------------------------------------------------------------------------

@router.get("/assets/{key}/columns/{column}")
def column(request: Request, key: str, column: str, user: Viewer) -> Response:
    site = _site(request)
    key = site.resolve(key)
    found = cv.column_lineage(site, key, column)
    if found is None:
        raise HTTPException(404, f"{key} has no column '{column}'")
    doc = next((c for c in cv.asset_columns(site, key).columns if c.name.lower() == found.column), None)
    return render(request, "catalog_column.html", data=found, doc=doc, title=f"{key}.{found.column}")


# -- the SQL console ---------------------------------------------------------------------------------------------

def _console(request: Request, user: User, status: int = 200, **context: Any) -> Response:
    site = _site(request)
    context.setdefault("sql", "")
    context.setdefault("team", cv.last_team(site, user.name) or "")
    context.setdefault("limit", 1000)
    context.setdefault("timeout", 30.0)
    cleared = user.can(cv.PII_ROLE)
    return render(request, "catalog_console.html", status, history=cv.history(site, user.name, 30).entries,
                  clearance=cleared, title="SQL console",
                  sidebar=sql_editor.sidebar(site, cleared, i18n.choose(request)),
                  completion=sql_editor.completion_json(site), **context)


@router.get("/console")
def console_page(request: Request, user: Analyst,
                 again: Annotated[int | None, Query(alias="from", ge=1, le=2**31 - 1)] = None) -> Response:
    sql = ""
    if again is not None:  # "edit again" from the history: only the user's own queries
        sql = next((e.sql for e in cv.history(_site(request), user.name, 500).entries if e.id == again), "")
    return _console(request, user, sql=sql)


@router.post("/console")
async def console_run(request: Request, user: Analyst, sql: Sql, team: Team = "", limit: Limit = 1000,
                      timeout: Timeout = 30.0) -> Response:
    options: dict[str, Any] = {"sql": sql, "team": team, "limit": limit, "timeout": timeout}
    try:
        result = await run_audited(request, user, "console.query", sql, cv.run_query, _site(request), user, sql,
                                   team, limit, timeout)
    except KibanError as exc:
        return _console(request, user, 400, error=str(exc), **options)
    return _console(request, user, result=cv.query_out(result), **options)


@router.post("/console/export")
async def console_export(request: Request, user: Analyst, sql: Sql, format: Format, team: Team = "",
                         limit: Limit = 1000, timeout: Timeout = 30.0) -> Response:
    site = _site(request)
    try:
        result = await run_audited(request, user, "console.export", sql, cv.run_query, site, user, sql, team,
                                   limit, timeout)
    except KibanError as exc:
        return _console(request, user, 400, error=str(exc), sql=sql, team=team, limit=limit, timeout=timeout)
    data = await run_in_threadpool(cv.export, site, user, result, sql, format, "query", None)
    return download(data, format, "query")


# -- recipes -----------------------------------------------------------------------------------------------------

@router.get("/recipes")
def recipes(request: Request, user: Viewer) -> Response:
    return render(request, "catalog_recipes.html", data=cv.recipes(_site(request)), title="Recipes")


def _recipe(request: Request, name: str) -> cm.RecipeOut:
    found = {r.name: r for r in cv.recipes(_site(request)).recipes}.get(name)
    if found is None:
        raise HTTPException(404, f"no recipe named '{name}'")
    return found


def _recipe_page(request: Request, user: User, recipe: cm.RecipeOut, values: dict[str, str], status: int = 200,
                 **context: Any) -> Response:
    context.setdefault("team", cv.last_team(_site(request), user.name) or "")
    offered = pickers.for_recipe(_site(request), recipe.params)  # values_from: the column's distinct values
    result = context.get("result")
    if result is not None and not result.rows:
        context.setdefault("hint", pickers.empty_hint(recipe.params, values, offered))
    return render(request, "catalog_recipe.html", status, recipe=recipe, values=values, offered=offered,
                  clearance=user.can(cv.PII_ROLE), title=f"Recipe {recipe.name}", **context)


@router.get("/recipes/{name}")
def recipe(request: Request, name: str, user: Viewer) -> Response:
    found = _recipe(request, name)
    defaults = {p.name: "" if p.default is None else str(p.default) for p in found.params}
    return _recipe_page(request, user, found, defaults)


async def _values(request: Request) -> tuple[dict[str, str], str, int]:
    form = await request.form()
    values = {k[len(PARAM):]: str(v) for k, v in form.items() if k.startswith(PARAM) and isinstance(v, str)}
    team = str(form.get("team") or "")[:100]
    try:
        limit = max(1, min(10_000, int(str(form.get("limit") or 1000))))
    except ValueError:
        limit = 1000
    return values, team, limit


@router.post("/recipes/{name}")
async def recipe_run(request: Request, name: str, user: Asker) -> Response:
    found = _recipe(request, name)
    values, team, limit = await _values(request)
    try:
        result = await run_audited(request, user, "recipe.run", name, cv.run_recipe, _site(request), user, name,
                                   values, team, limit)
    except KibanError as exc:
        return _recipe_page(request, user, found, values, 400, error=str(exc), team=team)
    return _recipe_page(request, user, found, values, result=cv.query_out(result), team=team)


@router.post("/recipes/{name}/export")
async def recipe_export(request: Request, name: str, user: Asker) -> Response:
    found = _recipe(request, name)
    values, team, limit = await _values(request)
    form = await request.form()
    fmt = "xlsx" if form.get("format") == "xlsx" else "csv"
    site = _site(request)
    try:
        result = await run_audited(request, user, "recipe.export", name, cv.run_recipe, site, user, name, values,
                                   team, limit)
    except KibanError as exc:
        return _recipe_page(request, user, found, values, 400, error=str(exc), team=team)
    data = await run_in_threadpool(cv.export, site, user, result, result_sql(site, name), fmt, "recipe", name)
    return download(data, fmt, name)


@router.post("/recipes/{name}/promote")
async def recipe_promote(request: Request, name: str, user: Operator) -> Response:
    found = _recipe(request, name)
    values, _team, _limit = await _values(request)
    form = await request.form()
    model = str(form.get("model") or "").strip()[:100] or None
    try:
        files = await run_audited(request, user, "recipe.promote", name, cv.promote, _site(request), name, values,
                                  model)
    except KibanError as exc:
        return _recipe_page(request, user, found, values, 400, error=str(exc))
    return RedirectResponse(f"/assets/mart.{files[0].rsplit('/', 1)[-1].removesuffix('.sql')}", status_code=303)


# -- data requests -----------------------------------------------------------------------------------------------

@router.get("/requests")
def requests(request: Request, user: Viewer, status: Annotated[str, Query(max_length=20)] = "") -> Response:
    data = cv.request_list(_site(request), status if status in STATES else None)
    return render(request, "catalog_requests.html", data=data, status=status, states=STATES,
                  title="Data requests")


@router.get("/requests/new")
def request_form(request: Request, user: Viewer) -> Response:
    return render(request, "catalog_request_new.html", values={}, error=None,
                  team=cv.last_team(_site(request), user.name) or "", title="Ask for data")


@router.post("/requests")
async def request_new(request: Request, user: Asker, title: Annotated[str, Form(max_length=200)],
                      team: Team = "", purpose: Annotated[str, Form(max_length=5000)] = "",
                      hypothesis: Annotated[str, Form(max_length=5000)] = "",
                      data_needed: Annotated[str, Form(max_length=5000)] = "",
                      needed_by: Annotated[str, Form(max_length=20)] = "") -> Response:
    from datetime import date

    values = {"title": title, "purpose": purpose, "hypothesis": hypothesis, "data_needed": data_needed,
              "needed_by": needed_by}
    try:
        due = date.fromisoformat(needed_by) if needed_by.strip() else None
    except ValueError:
        return render(request, "catalog_request_new.html", 400, values=values, team=team, title="Ask for data",
                      error=f"needed by: '{needed_by}' is not a date (for example 2026-12-24)")
    if not title.strip():
        return render(request, "catalog_request_new.html", 400, values=values, team=team, title="Ask for data",
                      error="a request needs a title")
    body = cm.RequestIn(title=title, team=team or None, purpose=purpose, hypothesis=hypothesis,
                        data_needed=data_needed, needed_by=due)
    found = await run_audited(request, user, "request.new", title, cv.new_request, _site(request), user, body)
    return RedirectResponse(f"/requests/{found.id}", status_code=303)


@router.get("/requests/{request_id}")
def data_request(request: Request, request_id: RequestId, user: Viewer) -> Response:
    try:
        found = cv.request_detail(_site(request), request_id)
    except RequestError as exc:
        raise HTTPException(404, exc.message) from None
    return render(request, "catalog_request.html", data=found, error=None, title=f"Request #{request_id}")


@router.post("/requests/{request_id}/move")
async def request_move(request: Request, request_id: RequestId, user: Analyst,
                       to: Annotated[str, Form(max_length=20)],
                       deliverable: Annotated[str, Form(max_length=1000)] = "",
                       note: Annotated[str, Form(max_length=5000)] = "") -> Response:
    body = cm.RequestMove(to=to, deliverable=deliverable.strip() or None, note=note.strip() or None)
    try:
        await run_audited(request, user, f"request.{to}"[:60], f"#{request_id}", cv.move_request, _site(request),
                          user, request_id, body)
    except KibanError as exc:
        found = cv.request_detail(_site(request), request_id)
        return render(request, "catalog_request.html", 400, data=found, error=str(exc),
                      title=f"Request #{request_id}")
    return RedirectResponse(f"/requests/{request_id}", status_code=303)


# -- usage -------------------------------------------------------------------------------------------------------

@router.get("/usage")
def usage(request: Request, user: Viewer, weeks: Annotated[int, Query(ge=1, le=104)] = 8,
          days: Annotated[int, Query(ge=1, le=3650)] = 90) -> Response:
    return render(request, "catalog_usage.html", data=cv.usage(_site(request), weeks, days), title="Usage")
