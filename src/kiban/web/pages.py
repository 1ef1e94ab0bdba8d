"""The console's pages: Today, use cases, assets, runs, incidents, the lineage graph, search, sign-in.

Each page reads one view of ``kiban.web.views`` (the same data the API returns) and renders a template.
State-changing forms post here with their CSRF token and redirect (303) to what they started.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Form, HTTPException, Path, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse, RedirectResponse, Response

from kiban.deliveries.links import find
from kiban.deliveries.send import history as delivery_history
from kiban.incidents import IncidentLog
from kiban.slo.evaluate import MISSES
from kiban.status import AttemptStatus, RunStatus
from kiban.web import catalog_views as cv
from kiban.web import i18n, index_pages, live, run_page, svg, views
from kiban.web.accounts import Accounts, ThrottledError, User
from kiban.web.auth import LOGIN_COOKIE, SESSION_COOKIE, client_ip, current_user, need
from kiban.web.fixes import fix_for
from kiban.web.jobs import Jobs
from kiban.web.models import AttemptOut, UseCaseDetail
from kiban.web.templating import render
from kiban.web.views import Site

router = APIRouter(include_in_schema=False)
Viewer = Annotated[User, Depends(current_user)]
IncidentId = Annotated[int, Path(ge=1, le=2**31 - 1)]


def _site(request: Request) -> Site:
    site: Site = request.app.state.site
    return site


def _safe_next(target: str | None) -> str:
    """Only a path on this site (no scheme, no host, no //): never an open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else "/"


# -- signing in --------------------------------------------------------------------------------------------------

@router.get("/login")
def login_page(request: Request, next: str = "/") -> Response:
    # the same token while the cookie lives: a second tab (or a stray request) must not void the first form
    token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(16)
    response = render(request, "login.html", next=_safe_next(next), login_token=token, error=None, title="Sign in")
    response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="lax", secure=request.url.scheme == "https",
                        max_age=3600)
    return response


@router.post("/login")
def login(request: Request, username: Annotated[str, Form()], password: Annotated[str, Form()],
          login_token: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "/") -> Response:
    accounts: Accounts = request.app.state.accounts
    ip = client_ip(request)
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    if not cookie or not secrets.compare_digest(cookie, login_token):
        accounts.audit(username[:100], "login", None, ip, "denied", "sign-in form token missing or wrong")
        return render(request, "login.html", 403, title="Sign in", next=_safe_next(next), login_token=cookie or "",
                      error="The sign-in form expired. Please try again.")
    try:
        user = accounts.authenticate(username, password, ip)
    except ThrottledError as exc:
        accounts.audit(username[:100], "login", None, ip, "denied", str(exc))
        response = render(request, "login.html", 429, title="Sign in", next=_safe_next(next), login_token=cookie,
                          error=f"Too many failed attempts. Try again in {int(exc.retry_after) + 1} seconds.")
        response.headers["Retry-After"] = str(int(exc.retry_after) + 1)
        return response
    if user is None:
        accounts.audit(username[:100], "login", None, ip, "failed", "wrong user name or password")
        return render(request, "login.html", 401, title="Sign in", next=_safe_next(next), login_token=cookie,
                      error="Wrong user name or password.")
    token, _csrf = accounts.start_session(user, ip)
    accounts.audit(user.name, "login", None, ip, "ok")
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="lax", secure=request.url.scheme == "https",
                        max_age=12 * 3600)
    response.delete_cookie(LOGIN_COOKIE)
    return response


@router.post("/logout")
def logout(request: Request, user: Annotated[User, Depends(need("viewer"))]) -> Response:
    accounts: Accounts = request.app.state.accounts
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        accounts.end_session(cookie)
    accounts.audit(user.name, "logout", None, client_ip(request))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


# -- reading -----------------------------------------------------------------------------------------------------

@router.get("/")
def today(request: Request, user: Viewer) -> Response:
    site = _site(request)
    data = views.today(site)
    return render(request, "today.html", data=data, live=bool(data.running), events=live.events_url(site),
                  title="Today")


@router.get("/deliveries/files/{token}/{name}")
def delivery_file(request: Request, user: Viewer, token: str, name: str) -> Response:
    """A delivery's file sent to a chat as a link (``chat_file: link``): served until it expires (410 then)."""
    found = find(_site(request).project, token, name, datetime.now(UTC).replace(tzinfo=None))
    if found is False:
        raise HTTPException(410, "this download link has expired: deliver it again (`kiban deliver`)")
    if found is None or found is True:
        raise HTTPException(404, "no such download")
    return FileResponse(found, filename=name)


@router.get("/usecases/{name}")
def usecase(request: Request, name: str, user: Viewer) -> Response:
    data = views.usecase_detail(_site(request), name)
    if data is None:
        raise HTTPException(404, f"no use case named '{name}'")
    site = _site(request)
    lang = i18n.choose(request)
    _ = i18n.gettext(lang)
    bars = svg.verdict_bars([(str(v.due_date), v.verdict, v.lateness_s) for v in data.history],
                            _("due days of the last {n} days").format(n=data.window_days), lang=lang)
    burn = svg.line_chart(_budget_line(data, site.tz), _("misses so far in the window (budget: {n})").format(
        n=data.status.budget_allowed), tz=site.tz, lang=lang)
    sent = delivery_history(site.reader, site.project.name, limit=20, usecase=name) \
        if any(c.usecase == name for c in site.project.config.deliveries.values()) else []
    return render(request, "usecase.html", data=data, bars=bars, burn=burn, title=name, deliveries=sent)


def _budget_line(data: UseCaseDetail, tz: ZoneInfo) -> list[tuple[datetime, float]]:
    """Misses counted up over the window: the error budget burning (each due day at midnight in the project's
    zone, so the axis shows the due days themselves)."""
    out: list[tuple[datetime, float]] = []
    missed = 0
    for v in data.history:
        if v.verdict in MISSES:
            missed += 1
        out.append((datetime.combine(v.due_date, datetime.min.time(), tzinfo=tz), float(missed)))
    return out


@router.get("/assets/{key}")
def asset(request: Request, key: str, user: Viewer) -> Response:
    site = _site(request)
    key = site.resolve(key)
    data = views.asset_detail(site, key, show_sql=user.can("analyst"))
    lang = i18n.choose(request)
    newest = data.runs[0] if data.runs else None  # the charts are drawn again only after its next build
    duration, rows = site.keep(f"charts:{key}:{lang}", newest and (newest.run_id, newest.attempt, newest.status),
                               lambda: _charts(data.runs, site.tz, lang))
    if key in site.project.source_tables():  # a collected table: rows per load, "nothing new" apart from "empty"
        rows = index_pages.load_chart(site, key, lang=lang) or rows
    return render(request, "asset.html", data=data, duration_chart=duration, rows_chart=rows, title=key)


def _charts(runs: list[AttemptOut], tz: ZoneInfo | None = None, lang: str = "en") -> tuple[str, str]:
    """An asset's build time and rows over its recent successful builds, as SVG (times in the project's zone, in
    the reader's language)."""
    _ = i18n.gettext(lang)
    built = [a for a in reversed(runs) if a.status == AttemptStatus.SUCCESS and a.ended_at]
    duration = svg.line_chart([(a.ended_at, a.seconds or 0.0) for a in built if a.ended_at], _("build time"),
                              " " + _("s"), tz=tz, lang=lang)
    return duration, svg.line_chart([(a.ended_at, float(a.rows or 0)) for a in built if a.ended_at], _("rows"),
                                    tz=tz, lang=lang)


@router.get("/runs")
def runs(request: Request, user: Viewer) -> Response:
    site = _site(request)
    data = views.run_list(site)
    jobs: Jobs = request.app.state.jobs
    return render(request, "runs.html", data=data, jobs=jobs.all()[:10], live=data.running,
                  events=live.events_url(site), title="Runs")


@router.get("/runs/{run_id}")
def run(request: Request, run_id: str, user: Viewer) -> Response:
    site = _site(request)
    jobs: Jobs = request.app.state.jobs
    everything = request.query_params.get("attempts") == "all"
    # a finished run never changes: its page's parts are kept (a few runs at a time); a running one is read afresh
    lang = i18n.choose(request)
    slot, version = f"run-page:{sum(run_id.encode()) % 4}", (run_id, everything, lang)
    kept = site.peek(slot, version)
    going = None
    if kept is None:
        data = views.run_detail(site, run_id)
        if data is None:
            raise HTTPException(404, f"no run with id '{run_id}'")
        going = run_page.progress(site, data, jobs.building(data.run.run_id))
        kept = (data, run_page.timeline(data.attempts, going.building if going else [], lang=lang),
                run_page.attempt_tables(data.attempts, 10**9 if everything else 50))
        if data.run.status != RunStatus.RUNNING:
            site.keep(slot, version, lambda: kept)
    data, chart, tables = kept
    running = data.run.status == RunStatus.RUNNING
    return render(request, "run.html", data=data, gantt=chart, live=running, progress=going, tables=tables,
                  eta=run_page.eta_words(going, lang=lang) if going else None,
                  events=live.events_url(site, data.run.run_id) if running else None, title=run_id)


@router.get("/incidents")
def incidents(request: Request, user: Viewer) -> Response:
    return render(request, "incidents.html", data=views.incidents(_site(request)), title="Incidents")


@router.get("/incidents/{incident_id}")
def incident(request: Request, incident_id: IncidentId, user: Viewer) -> Response:
    data = views.incident(_site(request), incident_id)
    if data is None:
        raise HTTPException(404, f"no incident #{incident_id}")
    return render(request, "incident.html", data=data, title=f"Incident #{incident_id}")


@router.get("/search")
def search(request: Request, user: Viewer, q: Annotated[str, Query(max_length=200)] = "") -> Response:
    return render(request, "search.html", data=cv.search(_site(request), q), title="Search")


@router.get("/jobs/{job_id}")
def job(request: Request, job_id: str, user: Viewer) -> Response:
    jobs: Jobs = request.app.state.jobs
    found = jobs.get(job_id)
    if found is None:
        raise HTTPException(404, f"no job {job_id}")
    return render(request, "job.html", job=found, live=found.ended_at is None, title=f"{found.action} {job_id}")


@router.get("/audit")
def audit(request: Request, user: Annotated[User, Depends(need("admin"))]) -> Response:
    accounts: Accounts = request.app.state.accounts
    return render(request, "audit.html", entries=accounts.audit_entries(300), title="Audit log")


# -- operators' actions ------------------------------------------------------------------------------------------

Operator = Annotated[User, Depends(need("operator"))]


def _started(request: Request, user: User, action: str, target: str, start: object) -> Response:
    accounts: Accounts = request.app.state.accounts
    job = start
    accounts.audit(user.name, action, target, client_ip(request), "ok", f"job {getattr(job, 'id', '')}")
    return RedirectResponse(f"/jobs/{getattr(job, 'id', '')}", status_code=303)


@router.post("/actions/resume")
async def resume(request: Request, user: Operator) -> Response:
    site = _site(request)
    planned = await run_in_threadpool(fix_for, site, "kiban run --resume", None)
    if planned is not None and planned.nothing:  # say why, instead of a job that does nothing
        return render(request, "error.html", 200, title="Nothing to resume", message=planned.nothing)
    jobs: Jobs = request.app.state.jobs
    job = await run_in_threadpool(jobs.resume, user.name)
    return _started(request, user, "run.resume", "kiban run --resume", job)


@router.post("/actions/run")
async def run_assets(request: Request, user: Operator, selection: Annotated[str, Form(max_length=2000)]) -> Response:
    site = _site(request)
    terms = selection.split()
    await run_in_threadpool(site.check_selection, terms)  # a wrong name is a clear error now, not in the background
    jobs: Jobs = request.app.state.jobs
    job = await run_in_threadpool(jobs.run, user.name, terms)
    return _started(request, user, "run.assets", selection, job)


@router.post("/actions/backfill")
async def backfill(request: Request, user: Operator, selection: Annotated[str, Form(max_length=2000)],
                   start: Annotated[str, Form(max_length=40)], end: Annotated[str, Form(max_length=40)]) -> Response:
    site = _site(request)
    terms = selection.split()
    await run_in_threadpool(site.check_selection, terms)
    jobs: Jobs = request.app.state.jobs
    job = await run_in_threadpool(jobs.backfill, user.name, terms, start, end)
    return _started(request, user, "backfill", f"{selection} {start}..{end}", job)


@router.post("/incidents/{incident_id}/ack")
async def acknowledge(request: Request, incident_id: IncidentId, user: Operator,
                      note: Annotated[str, Form(max_length=2000)] = "") -> Response:
    log = IncidentLog(_site(request).store, _site(request).project.name)
    await run_in_threadpool(log.acknowledge, incident_id, user.name, note or None)
    request.app.state.accounts.audit(user.name, "incident.ack", f"#{incident_id}", client_ip(request))
    return RedirectResponse(f"/incidents/{incident_id}", status_code=303)


@router.post("/incidents/{incident_id}/resolve")
async def resolve(request: Request, incident_id: IncidentId, user: Operator,
                  note: Annotated[str, Form(max_length=2000)] = "resolved from the web console") -> Response:
    log = IncidentLog(_site(request).store, _site(request).project.name)
    await run_in_threadpool(log.resolve, incident_id, note or "resolved", user.name)
    request.app.state.accounts.audit(user.name, "incident.resolve", f"#{incident_id}", client_ip(request))
    return RedirectResponse(f"/incidents/{incident_id}", status_code=303)
