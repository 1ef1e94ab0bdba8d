"""The web console's application: ``create_app(project_dir)`` → a FastAPI app serving pages and ``/api/v1``.

``kiban serve`` runs it with uvicorn. Pages are rendered on the server (Jinja2); the only script is
``static/kiban.js`` (live refresh, graph zoom and pan), shipped in the package.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from kiban import __version__
from kiban.catalog.console import ConsoleBusy
from kiban.errors import KibanError
from kiban.status import RunStatus
from kiban.web import (
    api,
    catalog_pages,
    forms_pages,
    i18n,
    index_pages,
    initiative_pages,
    lineage,
    live,
    pages,
    team_pages,
)
from kiban.web.accounts import Accounts
from kiban.web.auth import authenticate, wants_json
from kiban.web.jobs import Job, Jobs
from kiban.web.models import Health
from kiban.web.templating import render, templates
from kiban.web.views import Site

HERE = Path(__file__).parent


def create_app(project_dir: Path | str = ".") -> FastAPI:
    """The console for the project at (or above) ``project_dir``."""
    site = Site(Path(project_dir))
    accounts = Accounts(site.store, site.reader)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        site.close()

    app = FastAPI(lifespan=lifespan, title="kiban", version=__version__,
                  description="The kiban web console's API: use cases, assets, runs, incidents and the operators' "
                  "workarounds. Send an API token "
                  "(`kiban users token NAME`) as `Authorization: Bearer …`.", docs_url=None,
                  redoc_url=None, openapi_url="/openapi.json")

    def finished(job: Job) -> None:
        accounts.audit(job.user, f"{job.action}.finished", job.run_id or job.detail, None,
                       "ok" if job.status in (RunStatus.SUCCESS, RunStatus.NOTHING) else "failed", job.error)

    app.state.site, app.state.accounts = site, accounts
    app.state.jobs = Jobs(site, on_finish=finished)
    app.state.templates = templates(site)
    app.middleware("http")(authenticate)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(pages.router)
    app.include_router(live.router)
    app.include_router(i18n.router)  # /lang/en, /lang/ja: the reader's language
    app.include_router(lineage.router)  # the lineage graph (search, focus with depth, filters, keyboard zoom)
    index_pages.install(app)  # catalog, loads, jobs, checks, models, users and tokens
    # the event streams' timing, and how many are open now
    app.state.live = {"poll": live.POLL, "heartbeat": live.HEARTBEAT, "lifetime": live.LIFETIME, "clients": 0}

    @app.get("/health", response_model=Health, tags=["health"])
    async def health() -> Health:
        """Whether the server answers (no sign-in needed, tells nothing about the data). On the event loop
        itself: it never queues behind console queries in the thread pool."""
        return Health(status="ok")

    app.include_router(api.router)
    catalog_pages.install(app)  # column lineage, SQL console, recipes, data requests, usage (and their API)
    app.include_router(forms_pages.router)  # forms and uploads (kiban.forms)
    app.include_router(forms_pages.api)
    initiative_pages.install(app)  # editing initiatives (before their pages: /initiatives/new), their API
    team_pages.install(app)  # initiatives and the value ledger, on call, the weekly review, postmortems
    app.add_exception_handler(KibanError, _kiban_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]
    return app


async def _kiban_error(request: Request, exc: Exception) -> Response:
    message = str(exc)
    busy = isinstance(exc, ConsoleBusy)
    status, headers = (429, {"Retry-After": "2"}) if busy else (400, None)
    if wants_json(request):
        return JSONResponse({"detail": message}, status_code=status, headers=headers)
    response = render(request, "error.html", status, title="Busy, try again" if busy else "That did not work",
                      message=message)
    response.headers.update(headers or {})
    return response


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    if wants_json(request) or request.state.user is None:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
    titles = {403: "Not allowed", 404: "Not found", 401: "Sign in"}
    return render(request, "error.html", exc.status_code, title=titles.get(exc.status_code, "Error"),
                  message=str(exc.detail))


async def _invalid(request: Request, exc: RequestValidationError) -> Response:
    from fastapi.encoders import jsonable_encoder

    if wants_json(request) or request.state.user is None:
        # where, what and why — never the value sent back (it may be anything: inf, a huge text, a secret)
        errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
                  for e in exc.errors()]
        return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)
    fields = ", ".join(".".join(str(p) for p in e.get("loc", ())[1:]) or "input" for e in exc.errors())
    return render(request, "error.html", 422, title="Please check the form", message=f"not valid: {fields}")
