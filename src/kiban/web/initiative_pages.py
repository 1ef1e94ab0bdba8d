"""Initiatives edited in the console, and their JSON API.

Pages: ``/initiatives/new`` and ``/initiatives/NAME/edit`` (analysts and above; CSRF like every form; audited)
write ``initiatives/NAME.yml`` through :mod:`kiban.value.edit` (validated, atomic, refused when the file changed
since the page was opened), then reload the served project. The initiative page's value-over-time chart is
drawn here (``value_chart``).

API under ``/api/v1``: ``GET /initiatives`` (each with its newest ledger entry), ``GET /initiatives/{name}`` (its
file's fields and its ledger) and ``GET /initiatives/{name}/effect`` (measured now, not recorded).
"""

from __future__ import annotations

import math
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Path, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from kiban.errors import KibanError
from kiban.project.initiative import STATUSES
from kiban.status import InitiativeStatus
from kiban.value.edit import EDITABLE, EditError, digest, initiative_path, save_initiative
from kiban.web import i18n
from kiban.web.accounts import User
from kiban.web.api import ERRORS
from kiban.web.auth import client_ip, current_user, need
from kiban.web.svg import line_chart
from kiban.web.templating import render
from kiban.web.views import Site

pages = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api/v1", responses={401: ERRORS[401]}, tags=["initiatives"])
Viewer = Annotated[User, Depends(current_user)]
Analyst = Annotated[User, Depends(need("analyst"))]
Name = Annotated[str, Path(max_length=63, pattern=r"^[a-z][a-z0-9_]*$")]
Text = Annotated[str, Form(max_length=5_000)]
Day = Annotated[str, Form(max_length=10)]


def install(app: FastAPI) -> None:
    """Before the initiative pages of kiban.web.team_pages (``/initiatives/new`` is not an initiative's name)."""
    app.include_router(pages)
    app.include_router(api)
    site: Site = app.state.site
    app.state.templates.env.globals["value_chart"] = lambda entries, currency="", lang="en": value_chart(
        entries, currency, lang, site.tz)


def _site(request: Request) -> Site:
    site: Site = request.app.state.site
    return site


def value_chart(entries: list[Any], currency: str = "", lang: str = "en", tz: ZoneInfo | None = None) -> str:
    """The value per month of each ledger entry, in the order measured (the initiative page), times in the
    project's zone and the reader's language."""
    points = sorted((e.measured_at, e.per_month[0]) for e in entries)
    return line_chart(points, i18n.gettext(lang)("Measured value per month over time"),
                      f" {currency}" if currency else "", tz=tz, lang=lang)


def _form_values(found: Any) -> dict[str, str]:
    if found is None:
        return dict.fromkeys(EDITABLE, "")
    cfg = found.config
    iv = cfg.intervention
    return {"question": cfg.question, "hypothesis": cfg.hypothesis, "owner": cfg.owner or "",
            "sponsor": cfg.sponsor or "", "decision": cfg.decision, "status": str(cfg.status),
            "start": iv.start.isoformat() if iv else "", "end": iv.end.isoformat() if iv and iv.end else ""}


def _edit_page(request: Request, name: str | None, values: dict[str, str], seen: str, error: str | None,
               status_code: int = 200) -> Response:
    return render(request, "initiative_edit.html", status_code=status_code, initiative=name, v=values, seen=seen,
                  statuses=STATUSES, error=error, title=f"Edit initiative {name}" if name else "New initiative")


@pages.get("/initiatives/new")
def initiative_new(request: Request, user: Viewer) -> Response:
    if not user.can("analyst"):
        raise HTTPException(403, f"this needs the analyst role; you are signed in as {user.name} ({user.role})")
    return _edit_page(request, None, _form_values(None), "", None)


@pages.get("/initiatives/{name}/edit")
def initiative_edit(request: Request, name: Name, user: Viewer) -> Response:
    site = _site(request)
    found = site.project.initiatives.get(name)
    if found is None:
        raise HTTPException(404, f"no initiative '{name}'")
    if not user.can("analyst"):
        raise HTTPException(403, f"this needs the analyst role; you are signed in as {user.name} ({user.role})")
    return _edit_page(request, name, _form_values(found), digest(found.path), None)


async def _save(request: Request, user: User, name: str, values: dict[str, str], seen: str | None) -> Response:
    site = _site(request)
    accounts = request.app.state.accounts
    try:
        await run_in_threadpool(save_initiative, site.root, name, values, seen)
    except EditError as exc:
        await run_in_threadpool(accounts.audit, user.name, "initiative.edit", name, client_ip(request), "failed",
                                exc.message)
        conflict = "changed since you opened it" in exc.message or "exists already" in exc.message
        shown = values if seen is not None else {**values, "name": name}
        return _edit_page(request, name if seen is not None else None, shown, seen or "",
                          exc.message, 409 if conflict else 400)
    await run_in_threadpool(accounts.audit, user.name, "initiative.edit", name, client_ip(request))
    try:
        await run_in_threadpool(site.reload)
    except KibanError as exc:  # another file of the project is broken: the edit is saved, the page says so
        return _edit_page(request, name, values, digest(initiative_path(site.root, name)),
                          f"saved, but the project does not load: {exc}", 200)
    return RedirectResponse(f"/initiatives/{name}", status_code=303)


@pages.post("/initiatives/new")
async def initiative_create(request: Request, user: Analyst, name: Annotated[str, Form(max_length=63)],
                            question: Text = "", hypothesis: Text = "", owner: Text = "", sponsor: Text = "",
                            status: Annotated[str, Form(max_length=20)] = InitiativeStatus.IDEA, decision: Text = "",
                            start: Day = "", end: Day = "") -> Response:
    values = {"question": question, "hypothesis": hypothesis, "owner": owner, "sponsor": sponsor,
              "status": status, "decision": decision, "start": start, "end": end}
    return await _save(request, user, name, values, None)


@pages.post("/initiatives/{name}/edit")
async def initiative_update(request: Request, name: Name, user: Analyst,
                            seen: Annotated[str, Form(max_length=64)] = "", question: Text = "",
                            hypothesis: Text = "", owner: Text = "", sponsor: Text = "",
                            status: Annotated[str, Form(max_length=20)] = InitiativeStatus.IDEA, decision: Text = "",
                            start: Day = "", end: Day = "") -> Response:
    if name not in _site(request).project.initiatives:
        raise HTTPException(404, f"no initiative '{name}'")
    values = {"question": question, "hypothesis": hypothesis, "owner": owner, "sponsor": sponsor,
              "status": status, "decision": decision, "start": start, "end": end}
    return await _save(request, user, name, values, seen)


# -- the JSON API --------------------------------------------------------------------------------------------------

def _finite(value: Any) -> Any:
    """JSON has no infinity: an unbounded interval end is null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _entry(e: Any) -> dict[str, Any]:
    month = e.per_month
    return _finite({"measured_at": e.measured_at.isoformat(), "method": e.method,
                    "data_from": e.data_from.isoformat(), "data_through": e.data_through.isoformat(),
                    "estimate": e.estimate, "low": e.low, "high": e.high, "p_value": e.p_value,
                    "value": e.value, "value_low": e.value_low, "value_high": e.value_high,
                    "value_per_month": {"estimate": month[0], "low": month[1], "high": month[2]}})


def _summary(name: str, found: Any) -> dict[str, Any]:
    cfg = found.config
    iv = cfg.intervention
    return {"name": name, "status": str(cfg.status), "question": cfg.question, "hypothesis": cfg.hypothesis,
            "owner": cfg.owner, "sponsor": cfg.sponsor, "decision": cfg.decision, "usecases": list(cfg.usecases),
            "assets": list(cfg.assets), "unit": cfg.unit, "value_per_unit": cfg.value_per_unit,
            "currency": cfg.currency, "kpi": cfg.kpi.name if cfg.kpi else None,
            "intervention": None if iv is None else {
                "start": iv.start.isoformat(), "end": iv.end.isoformat() if iv.end else None,
                "treated": list(iv.treated), "control": list(iv.control), "design": iv.design}}


@api.get("/initiatives", summary="Initiatives, each with its newest measured value")
def api_initiatives(request: Request, user: Viewer) -> list[dict[str, Any]]:
    from kiban.value.ledger import latest

    site = _site(request)
    newest = latest(site.reader, site.project.name)
    return [{**_summary(n, i), "latest": _entry(newest[n]) if n in newest else None}
            for n, i in sorted(site.project.initiatives.items())]


@api.get("/initiatives/{name}", summary="An initiative's fields and its value ledger",
         responses={404: ERRORS[404]})
def api_initiative(request: Request, name: Annotated[str, Path(max_length=200)], user: Viewer) -> dict[str, Any]:
    from kiban.value.ledger import history

    site = _site(request)
    found = site.project.initiatives.get(name)
    if found is None:
        raise HTTPException(404, f"no initiative '{name}'")
    return {**_summary(name, found), "ledger": [_entry(e) for e in history(site.reader, site.project.name, name)]}


@api.get("/initiatives/{name}/effect", summary="An initiative's effect, measured now (not recorded)",
         responses={404: ERRORS[404], 400: ERRORS[400]})
async def api_initiative_effect(request: Request, name: Annotated[str, Path(max_length=200)],
                                user: Viewer) -> dict[str, Any]:
    from kiban.value.measure import measure_initiative

    site = _site(request)
    found = site.project.initiatives.get(name)
    if found is None:
        raise HTTPException(404, f"no initiative '{name}'")
    try:
        result = await run_in_threadpool(measure_initiative, site.project, found, None, site.graph.readable)
    except KibanError as exc:
        raise HTTPException(400, exc.message) from None
    out = result.as_dict()
    out["data_from"], out["data_through"] = result.data_from.isoformat(), result.data_through.isoformat()
    out["series"] = [{"day": s.day.isoformat(), "actual": s.actual, "counterfactual": s.counterfactual}
                     for s in result.effect.series]
    return dict(_finite(out))
