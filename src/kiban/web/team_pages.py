"""The console's pages for value and the team: initiatives (with the chart of their effect), the value ledger,
on call, the weekly operations review, and incidents' postmortems (people complete them here).

Reads go through the same services as the CLI (kiban.value, kiban.team); writes (a measurement added to the
ledger, a postmortem saved) need their role and the form's CSRF token, and are audited.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Path, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from kiban.errors import KibanError
from kiban.team.oncall import on_duty, rota
from kiban.team.postmortem import get, save
from kiban.team.review import review, week_of
from kiban.web import i18n
from kiban.web.accounts import User
from kiban.web.auth import client_ip, current_user, need
from kiban.web.svg import measurement_chart  # the same chart as `kiban initiatives measure --svg`
from kiban.web.templating import render
from kiban.web.views import ASSESS_TTL, Site

router = APIRouter(include_in_schema=False)
Viewer = Annotated[User, Depends(current_user)]
Analyst = Annotated[User, Depends(need("analyst"))]
Operator = Annotated[User, Depends(need("operator"))]
IncidentId = Annotated[int, Path(ge=1, le=2**31 - 1)]
Section = Annotated[str, Form(max_length=20_000)]


def install(app: FastAPI) -> None:
    """Add the pages, and ``initiatives_of(usecase)`` for the use case page: (initiative, value per month)."""
    site: Site = app.state.site
    app.include_router(router)
    app.state.templates.env.globals["initiatives_of"] = lambda usecase: _initiatives_of(site, usecase)


def _initiatives_of(site: Site, usecase: str) -> list[tuple[str, float | None]]:
    from kiban.value.ledger import latest

    names = [n for n, i in sorted(site.project.initiatives.items()) if usecase in i.config.usecases]
    if not names:
        return []
    newest = latest(site.reader, site.project.name)
    return [(n, newest[n].per_month[0] if n in newest else None) for n in names]


def _site(request: Request) -> Site:
    site: Site = request.app.state.site
    return site


def _audit(request: Request, user: User, action: str, target: str) -> None:
    request.app.state.accounts.audit(user.name, action, target, client_ip(request))


# -- initiatives and the value ledger ----------------------------------------------------------------------------

@router.get("/initiatives")
def initiatives(request: Request, user: Viewer) -> Response:
    from kiban.value.ledger import holdings, latest

    site = _site(request)
    newest = latest(site.reader, site.project.name)
    error: str | None = None
    try:  # shared until the store's pulse moves (a run, a check, an incident), like Today's assessment
        by_usecase, by_asset = site.following("value:holdings", ASSESS_TTL, lambda: holdings(
            site.project, site.graph, site.reader, assessment=site.assessment() if site.project.usecases else None))
    except KibanError as exc:
        by_usecase, by_asset, error = [], [], exc.message
    currency = next((i.config.currency for i in site.project.initiatives.values() if i.config.currency), "")
    return render(request, "initiatives.html", initiatives=sorted(site.project.initiatives.items()), latest=newest,
                  usecases=by_usecase, assets=[a for a in by_asset if a.initiatives], currency=currency, error=error,
                  title="Initiatives")


def _measure(site: Site, name: str, record: bool, actor: str | None = None) -> Any:
    from kiban.value.ledger import record as add
    from kiban.value.measure import measure_initiative

    result = measure_initiative(site.project, site.project.initiatives[name], readable=site.graph.readable)
    if record:
        add(site.store, site.project.name, result)
    return result


@router.get("/initiatives/{name}")
def initiative(request: Request, name: str, user: Viewer) -> Response:
    from kiban.value.ledger import history

    site = _site(request)
    found = site.project.initiatives.get(name)
    if found is None:
        raise HTTPException(404, f"no initiative '{name}'")
    result, error, svg = None, None, None
    if found.config.kpi is not None and found.config.intervention is not None:
        try:
            result = _measure(site, name, record=False)
            svg = measurement_chart(result, i18n.choose(request))
        except KibanError as exc:
            error = str(exc)
    return render(request, "initiative.html", initiative=name, i=found.config, result=result, svg=svg, error=error,
                  entries=history(site.reader, site.project.name, name), title=f"Initiative {name}")


@router.post("/initiatives/{name}/measure")
async def initiative_measure(request: Request, name: str, user: Analyst) -> Response:
    site = _site(request)
    if name not in site.project.initiatives:
        raise HTTPException(404, f"no initiative '{name}'")
    try:
        await run_in_threadpool(_measure, site, name, True)
    except KibanError as exc:
        _audit(request, user, "initiative.measure", name)
        raise HTTPException(400, exc.message) from None
    _audit(request, user, "initiative.measure", name)
    return RedirectResponse(f"/initiatives/{name}", status_code=303)


# -- the team ----------------------------------------------------------------------------------------------------

@router.get("/team")
def team(request: Request, user: Viewer) -> Response:

    site = _site(request)
    today = datetime.now(UTC).astimezone(site.tz).date()
    return render(request, "team.html", oncall=site.project.config.oncall, now=on_duty(site.project),
                  rota=rota(site.project, today, 14) if site.project.config.oncall else [], title="Team")


@router.get("/team/review")
def team_review(request: Request, user: Viewer, week: Annotated[str, Query(max_length=20)] = "") -> Response:

    site = _site(request)
    today = datetime.now(UTC).astimezone(site.tz).date()
    try:
        monday = week_of(week or None, today)
    except KibanError as exc:
        raise HTTPException(400, exc.message) from None
    result = review(site.project, site.graph, site.reader, monday)
    return render(request, "team_review.html", r=result, title=f"Operations review {result.label}")


@router.get("/incidents/{incident_id}/postmortem")
def postmortem(request: Request, incident_id: IncidentId, user: Viewer) -> Response:

    site = _site(request)
    try:
        found = get(site.project, site.reader, incident_id)
    except KibanError as exc:
        raise HTTPException(404, exc.message) from None
    return render(request, "postmortem.html", p=found, error=None, title=f"Postmortem #{incident_id}")


@router.post("/incidents/{incident_id}/postmortem")
async def postmortem_save(request: Request, incident_id: IncidentId, user: Operator, summary: Section = "",
                          impact: Section = "", root_cause: Section = "", workaround: Section = "",
                          action_items: Section = "", lessons: Section = "",
                          status: Annotated[str, Form(pattern="^(draft|final)$")] = "draft") -> Response:

    site = _site(request)
    edits = {"summary": summary, "impact": impact, "root_cause": root_cause, "workaround": workaround,
             "action_items": action_items, "lessons": lessons}
    try:
        await run_in_threadpool(save, site.project, site.store, incident_id, edits, user.name, status)
    except KibanError as exc:
        raise HTTPException(404, exc.message) from None
    _audit(request, user, "postmortem.save", f"#{incident_id} {status}")
    return RedirectResponse(f"/incidents/{incident_id}/postmortem", status_code=303)
