"""The console's index pages: the asset catalog (filters, sorting), collected tables and their loads (drift,
quarantine, a per-load rows chart), jobs and their next ticks, the checks overview with trends, the model
registry, and users and API tokens (admins only).

Thin: each page reads one function of ``kiban.web.indexes`` (the CLI's services) and renders a template.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from starlette.responses import Response

from kiban.web import i18n, indexes, svg
from kiban.web.accounts import Accounts, User
from kiban.web.auth import current_user, need
from kiban.web.templating import render
from kiban.web.views import Site

router = APIRouter(include_in_schema=False)
Viewer = Annotated[User, Depends(current_user)]
Filter = Annotated[str, Query(max_length=300)]


def install(app: FastAPI) -> None:
    """Add the pages, and ``collected(key)`` for the asset and catalog pages: whether a loads page exists."""
    site: Site = app.state.site
    app.include_router(router)
    app.state.templates.env.globals["collected"] = lambda key: key in site.project.source_tables()


def _site(request: Request) -> Site:
    site: Site = request.app.state.site
    return site


@router.get("/catalog")
def catalog(request: Request, user: Viewer, layer: Filter = "", owner: Filter = "", tag: Filter = "",
            status: Filter = "", q: Filter = "", sort: Filter = "name",
            page: Annotated[int, Query(ge=1, le=100_000)] = 1) -> Response:
    descending = sort.startswith("-")
    column = sort.lstrip("-")
    if column not in indexes.CATALOG_SORTS:
        raise HTTPException(404, f"no sort by '{column}' (one of {', '.join(indexes.CATALOG_SORTS)})")
    filters = {"layer": layer, "owner": owner, "tag": tag, "status": status, "q": q}
    site = _site(request)
    data = indexes.catalog(site, filters, column, descending, page)
    kept = {k: v for k, v in filters.items() if v}
    links = {c: "/catalog?" + urlencode({**kept, "sort": ("-" if c == column and not descending else "") + c})
             for c in indexes.CATALOG_SORTS}  # a column's header sorts by it; again, the other way round
    at = data.first // indexes.CATALOG_PAGE + 1
    here = {**kept, "sort": sort}
    pages = {"previous": "/catalog?" + urlencode({**here, "page": at - 1}) if at > 1 else None,
             "next": ("/catalog?" + urlencode({**here, "page": at + 1})
                      if data.first + len(data.rows) < data.matched else None)}
    return render(request, "catalog.html", data=data, filters=filters, sort=column, descending=descending,
                  links=links, pages=pages, collected_keys=set(site.project.source_tables()), title="Catalog")


@router.get("/loads")
def loads(request: Request, user: Viewer) -> Response:
    return render(request, "loads.html", tables=indexes.collected_tables(_site(request)), title="Loads")


@router.get("/loads/{key}")
def table_loads(request: Request, key: str, user: Viewer) -> Response:
    site = _site(request)
    data = indexes.table_loads(site, key if key.startswith("lake.") else f"lake.{key}")
    if data is None:
        raise HTTPException(404, f"no collected table named '{key}'")
    chart = _bars(site, data, i18n.choose(request))
    return render(request, "table_loads.html", data=data, chart=chart, kinds=svg.LOAD_KINDS,
                  title=f"Loads of {data.key}")


def _bars(site: Site, data: indexes.TableLoads, lang: str = "en") -> str:
    return svg.load_bars([(r.load.started_at, r.load.rows_landed, r.kind) for r in reversed(data.loads)],
                         i18n.gettext(lang)("rows landed per load"), tz=site.tz, lang=lang)


def load_chart(site: Site, key: str, limit: int = 30, lang: str = "en") -> str | None:
    """A collected table's rows per load (its asset page shows it instead of rows per build)."""
    data = indexes.table_loads(site, key, limit)
    return _bars(site, data, lang) if data is not None and data.loads else None


@router.get("/schedule")
def schedule(request: Request, user: Viewer) -> Response:
    return render(request, "schedule.html", jobs=indexes.jobs(_site(request)), describe=indexes.describe_cron,
                  title="Jobs")


@router.get("/checks")
def checks(request: Request, user: Viewer, failing: Annotated[bool, Query()] = False) -> Response:
    data = indexes.check_trends(_site(request), failing_only=failing)
    return render(request, "checks.html", trends=data, failing=failing, title="Checks")


@router.get("/models")
def models(request: Request, user: Viewer) -> Response:
    return render(request, "models.html", models=indexes.models(_site(request)), title="Models")


@router.get("/users")
def users(request: Request, user: Annotated[User, Depends(need("admin"))]) -> Response:
    accounts: Accounts = request.app.state.accounts
    return render(request, "users.html", users=accounts.list_users(), tokens=accounts.tokens(),
                  title="Users and tokens")
