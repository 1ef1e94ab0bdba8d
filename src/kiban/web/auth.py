"""Who is asking, and may they: the sign-in middleware, CSRF, and the role every state-changing route names.

* The middleware answers nothing but sign-in, static files and ``/health`` without a valid session cookie or
  Bearer token. Pages send the browser to ``/login``; the API answers 401.
* Every state-changing route depends on ``need(role)``. It refuses a user below ``role`` and, for a request
  authenticated by cookie, one without the session's CSRF token (form field ``csrf`` or header
  ``X-CSRF-Token``). Bearer requests carry no cookie, so they cannot be forged cross-site.
* Refusals are written to the audit log: every request refused for its role (pages included), every
  state-changing request refused for want of sign-in or CSRF, every wrong API token.
* Every answer carries the security headers, the middleware's own 401 and 303 included.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import HTTPException, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, RedirectResponse, Response

from kiban.web.accounts import Accounts, User

SESSION_COOKIE = "kiban_session"
LOGIN_COOKIE = "kiban_login"  # the sign-in form's own CSRF token (double-submit), before any session exists
PUBLIC = ("/login", "/health")
PUBLIC_PREFIXES = ("/static/",)
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "?"


def is_public(path: str) -> bool:
    return path in PUBLIC or path.startswith(PUBLIC_PREFIXES)


def wants_json(request: Request) -> bool:
    """API calls and the pages' event streams (a script reads them, not a person) are answered in JSON."""
    path = request.url.path
    return path.startswith(("/api/", "/events")) or path == "/openapi.json"


async def authenticate(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """HTTP middleware: attach ``request.state.user`` (and how it was proven), or refuse."""
    started = time.perf_counter()
    accounts: Accounts = request.app.state.accounts
    request.state.user, request.state.via, request.state.csrf = None, None, ""
    header = request.headers.get("authorization", "")
    found: Any = None
    if header.lower().startswith("bearer "):
        user = await run_in_threadpool(accounts.token_user, header[7:].strip())
        if user is not None:
            found = (user, "token", "")
    elif (cookie := request.cookies.get(SESSION_COOKIE)) is not None:
        session = await run_in_threadpool(accounts.session, cookie)
        if session is not None:
            found = (session[0], "session", session[1])
    if found is not None:
        request.state.user, request.state.via, request.state.csrf = found
    elif not is_public(request.url.path):
        if wants_json(request) or request.method not in SAFE_METHODS:
            if request.method not in SAFE_METHODS or header:  # a refused action, or a wrong token: audited
                await run_in_threadpool(accounts.audit, None, f"{request.method} {request.url.path}", None,
                                        client_ip(request), "denied", "not signed in")
            refused: Response = JSONResponse(
                {"detail": "not signed in: sign in, or send an API token as 'Authorization: Bearer'"},
                status_code=401, headers={"WWW-Authenticate": "Bearer"})
            return secured(refused, started, signed_in=False)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return secured(RedirectResponse(f"/login?next={_quote(target)}", status_code=303), started, signed_in=False)
    response = await call_next(request)
    return secured(response, started, signed_in=found is not None)


def secured(response: Response, started: float, *, signed_in: bool) -> Response:
    """Every answer, the middleware's own refusals included, carries the security headers."""
    # the server's own time for this answer (sign-in check included), for browsers' dev tools and bench/web.py
    response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Content-Security-Policy",
                                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                                "frame-ancestors 'none'; form-action 'self'")
    if signed_in:
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def _quote(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="/")


def need(role: str) -> Callable[[Request], Awaitable[User]]:
    """Dependency of every state-changing route: the signed-in user, if they hold ``role`` (and sent CSRF)."""

    async def dependency(request: Request) -> User:
        user: User | None = request.state.user
        accounts: Accounts = request.app.state.accounts
        action = f"{request.method} {request.url.path}"
        if user is None:
            raise HTTPException(401, "not signed in")
        if request.state.via == "session" and request.method not in SAFE_METHODS:
            sent = request.headers.get("x-csrf-token")
            if sent is None and "form" in request.headers.get("content-type", ""):
                form = await request.form()
                value = form.get("csrf")
                sent = value if isinstance(value, str) else None
            if not sent or not hmac.compare_digest(sent, request.state.csrf):
                await run_in_threadpool(accounts.audit, user.name, action, None, client_ip(request), "denied",
                                        "CSRF token missing or wrong")
                raise HTTPException(403, "the form's CSRF token is missing or wrong: reload the page and try again")
        if not user.can(role):  # a refused action or a refused page view: both audited
            await run_in_threadpool(accounts.audit, user.name, action, None, client_ip(request), "denied",
                                    f"needs role {role}, has {user.role}")
            raise HTTPException(403, f"this needs the {role} role; you are signed in as {user.name} ({user.role})")
        return user

    dependency.kiban_role = role  # type: ignore[attr-defined]  # read by the security tests
    return dependency


def current_user(request: Request) -> User:
    """Dependency of read-only routes: the signed-in user (the middleware has already refused everyone else)."""
    user: User | None = request.state.user
    if user is None:
        raise HTTPException(401, "not signed in")
    return user
