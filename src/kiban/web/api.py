"""The JSON API under ``/api/v1``: the same views as the pages, as Pydantic models (so the OpenAPI is exact).

Reads need any signed-in user or API token; the operators' actions need the operator role and answer 202 with
the background job they started (poll ``/api/v1/jobs/{id}``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from starlette.concurrency import run_in_threadpool

from kiban.errors import SelectionError
from kiban.incidents import IncidentLog
from kiban.web import catalog_views as cv
from kiban.web import models as m
from kiban.web import svg, views
from kiban.web.accounts import Accounts, User
from kiban.web.auth import client_ip, current_user, need
from kiban.web.jobs import Job, Jobs
from kiban.web.views import Site, utc

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "a mistake in the request, explained in `detail`"},
    401: {"description": "not signed in and no valid API token"},
    403: {"description": "the user's role does not allow it, or the CSRF token is missing"},
    404: {"description": "no such thing"},
}
router = APIRouter(prefix="/api/v1", responses={401: ERRORS[401]})
Viewer = Annotated[User, Depends(current_user)]
IncidentId = Annotated[int, Path(ge=1, le=2**31 - 1)]
Operator = Annotated[User, Depends(need("operator"))]


def _site(request: Request) -> Site:
    site: Site = request.app.state.site
    return site


def _job(job: Job) -> m.JobOut:
    return m.JobOut(id=job.id, action=job.action, status=job.status, user=job.user, detail=job.detail,
                    run_id=job.run_id, error=job.error, started_at=utc(job.started_at), ended_at=utc(job.ended_at))


@router.get("/me", response_model=m.Me)
def me(user: Viewer) -> m.Me:
    return m.Me(name=user.name, role=user.role)


@router.get("/today", response_model=m.Today)
def today(request: Request, user: Viewer) -> m.Today:
    """Every use case: verdict or risk, estimated finish, deadline, error budget left."""
    return views.today(_site(request))


@router.get("/usecases/{name}", response_model=m.UseCaseDetail, responses={404: ERRORS[404]})
def usecase(request: Request, name: str, user: Viewer) -> m.UseCaseDetail:
    found = views.usecase_detail(_site(request), name)
    if found is None:
        raise HTTPException(404, f"no use case named '{name}'")
    return found


@router.get("/assets", response_model=m.GraphOut)
def assets(request: Request, user: Viewer) -> m.GraphOut:
    """Every asset with its state, its position in the lineage layout, and the edges between them."""
    site = _site(request)
    keys = list(site.graph.order)
    at, width, height = site.cached("layout::", 300.0, lambda: svg.layout(site.graph, keys))
    states = views.asset_state(site)
    nodes = [m.GraphNode(key=k, layer=site.graph.assets[k].layer, state=states.get(k, "never run"),
                         tags=list(site.graph.assets[k].tags), x=at[k][0], y=at[k][1]) for k in keys]
    edges = [(up, k) for k in keys for up in site.graph.deps[k]]
    return m.GraphOut(nodes=nodes, edges=edges, width=width, height=height)


@router.get("/assets/{key}", response_model=m.AssetDetail, responses={404: ERRORS[404]})
def asset(request: Request, key: str, user: Viewer) -> m.AssetDetail:
    site = _site(request)
    try:
        found = site.resolve(key)
    except SelectionError as exc:
        raise HTTPException(404, str(exc)) from None
    return views.asset_detail(site, found, show_sql=user.can("analyst"))


@router.get("/runs", response_model=m.RunList)
def runs(request: Request, user: Viewer, limit: Annotated[int, Query(ge=1, le=200)] = 25) -> m.RunList:
    return views.run_list(_site(request), limit)


@router.get("/runs/{run_id}", response_model=m.RunDetail, responses={404: ERRORS[404]})
def run(request: Request, run_id: str, user: Viewer) -> m.RunDetail:
    found = views.run_detail(_site(request), run_id)
    if found is None:
        raise HTTPException(404, f"no run with id '{run_id}'")
    return found


@router.get("/incidents", response_model=m.IncidentList)
def incidents(request: Request, user: Viewer, limit: Annotated[int, Query(ge=1, le=500)] = 50,
              resolved: bool = True) -> m.IncidentList:
    return views.incidents(_site(request), limit, resolved)


@router.get("/incidents/{incident_id}", response_model=m.IncidentOut, responses={404: ERRORS[404]})
def incident(request: Request, incident_id: IncidentId, user: Viewer) -> m.IncidentOut:
    found = views.incident(_site(request), incident_id)
    if found is None:
        raise HTTPException(404, f"no incident #{incident_id}")
    return found


@router.get("/search", response_model=m.SearchResults)
def search(request: Request, user: Viewer, q: Annotated[str, Query(max_length=200)] = "") -> m.SearchResults:
    """Assets and columns whose names, descriptions, tags or owners match every word of ``q`` (the last as a
    prefix), best first: the catalog's search index, as ``kiban search``."""
    return cv.search(_site(request), q)


@router.get("/jobs", response_model=m.JobList)
def jobs(request: Request, user: Viewer) -> m.JobList:
    registry: Jobs = request.app.state.jobs
    return m.JobList(jobs=[_job(j) for j in registry.all()])


@router.get("/jobs/{job_id}", response_model=m.JobOut, responses={404: ERRORS[404]})
def job(request: Request, job_id: str, user: Viewer) -> m.JobOut:
    registry: Jobs = request.app.state.jobs
    found = registry.get(job_id)
    if found is None:
        raise HTTPException(404, f"no job {job_id}")
    return _job(found)


@router.get("/audit", response_model=m.AuditList, responses={403: ERRORS[403]})
def audit(request: Request, user: Annotated[User, Depends(need("admin"))],
          limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> m.AuditList:
    accounts: Accounts = request.app.state.accounts
    return m.AuditList(entries=[m.from_record(m.AuditOut, e) for e in accounts.audit_entries(limit)])


# -- actions -----------------------------------------------------------------------------------------------------

ACTION_ERRORS: dict[int | str, dict[str, Any]] = {400: ERRORS[400], 403: ERRORS[403]}


def _audit(request: Request, user: User, action: str, target: str, job: Job | None = None) -> None:
    accounts: Accounts = request.app.state.accounts
    accounts.audit(user.name, action, target, client_ip(request), "ok", f"job {job.id}" if job else None)


@router.post("/actions/resume", response_model=m.JobOut, status_code=202, responses=ACTION_ERRORS)
def resume(request: Request, user: Operator) -> m.JobOut:
    """Re-run what the last run left undone (``kiban run --resume``) in the background."""
    registry: Jobs = request.app.state.jobs
    job = registry.resume(user.name)
    _audit(request, user, "run.resume", "kiban run --resume", job)
    return _job(job)


@router.post("/actions/run", response_model=m.JobOut, status_code=202, responses=ACTION_ERRORS)
def run_assets(request: Request, body: m.RunRequest, user: Operator) -> m.JobOut:
    """Rebuild a selection (e.g. ``["warehouse.orders+"]``) in the background."""
    _site(request).check_selection(body.selection)  # a wrong name is a 400 now, not a failed job later
    registry: Jobs = request.app.state.jobs
    job = registry.run(user.name, body.selection)
    _audit(request, user, "run.assets", " ".join(body.selection), job)
    return _job(job)


@router.post("/actions/backfill", response_model=m.JobOut, status_code=202, responses=ACTION_ERRORS)
def backfill(request: Request, body: m.BackfillRequest, user: Operator) -> m.JobOut:
    """Backfill incremental models over a range of partitions in the background."""
    _site(request).check_selection(body.selection)
    registry: Jobs = request.app.state.jobs
    job = registry.backfill(user.name, body.selection, body.start, body.end)
    _audit(request, user, "backfill", f"{' '.join(body.selection)} {body.start}..{body.end}", job)
    return _job(job)


@router.post("/incidents/{incident_id}/ack", response_model=m.IncidentOut, responses=ACTION_ERRORS)
async def acknowledge(request: Request, incident_id: IncidentId, body: m.IncidentNote, user: Operator) -> m.IncidentOut:
    site = _site(request)
    await run_in_threadpool(IncidentLog(site.store, site.project.name).acknowledge, incident_id, user.name,
                            body.note or None)
    await run_in_threadpool(_audit, request, user, "incident.ack", f"#{incident_id}")
    found = views.incident(site, incident_id)
    assert found is not None
    return found


@router.post("/incidents/{incident_id}/resolve", response_model=m.IncidentOut, responses=ACTION_ERRORS)
async def resolve(request: Request, incident_id: IncidentId, body: m.IncidentNote, user: Operator) -> m.IncidentOut:
    site = _site(request)
    await run_in_threadpool(IncidentLog(site.store, site.project.name).resolve, incident_id,
                            body.note or "resolved through the API", user.name)
    await run_in_threadpool(_audit, request, user, "incident.resolve", f"#{incident_id}")
    found = views.incident(site, incident_id)
    assert found is not None
    return found
