"""Security of the console: every route (enumerated from the app, so a new one cannot slip through) refuses
strangers, state changes need CSRF and the right role, secrets never come back, sign-in is throttled."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.routing import APIRoute
from starlette.routing import Mount

from tests.helpers.console import PASSWORD, ROLES, bearer, build_project, csrf_of, sign_in, sign_in_with_form

PUBLIC = {"/login", "/health"}
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def _routes(app: Any) -> list[tuple[str, str, APIRoute | None]]:
    """(method, path, route) of every route the app answers, with path parameters filled in."""
    out = []
    for route in _flatten(app.routes, ""):
        if isinstance(route, Mount):
            out.append(("GET", route.path + "/kiban.css", None))
            continue
        for method in sorted(getattr(route, "methods", None) or ()):
            if method == "HEAD":
                continue
            out.append((method, route.path, route if isinstance(route, APIRoute) else None))
    assert len(out) > 30, "the route listing found too little: the test would prove nothing"
    return out


def _flatten(routes: Any, prefix: str) -> list[Any]:
    """Routes, with included routers opened (newer FastAPI keeps them as one lazy entry)."""
    found = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            assert not prefix, "prefixes: extend _flatten"
            assert not route.include_context.prefix, "prefixes: extend _flatten"
            found += _flatten(inner.routes, prefix)
        else:
            found.append(route)
    return found


def _fill(path: str, incident: int, run_id: str) -> str:
    return (path.replace("{key}", "warehouse.orders").replace("{name}", "morning_sales")
            .replace("{incident_id}", str(incident)).replace("{run_id}", run_id).replace("{job_id}", "nojob"))


def _run_id(client: Any, token: str) -> str:
    return client.get("/api/v1/runs", headers=bearer(token)).json()["runs"][0]["run_id"]


def _role_of(route: APIRoute | None) -> str | None:
    """The role the route's ``need(...)`` dependency demands (None: it has none)."""
    if route is None:
        return None
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        role = getattr(dep.call, "kiban_role", None)
        if role:
            return str(role)
        stack.extend(dep.dependencies)
    return None


def test_no_route_answers_a_stranger_except_sign_in_health_and_static(console):
    client, _root, tokens, incident = console
    run_id = _run_id(client, tokens["viewer"])
    client.cookies.clear()
    checked = 0
    for method, path, _route in _routes(client.app):
        url = _fill(path, incident, run_id)
        for headers in ({}, bearer("kbn_not-a-real-token"), {"Cookie": "kiban_session=forged"}):
            answer = client.request(method, url, headers=headers, follow_redirects=False)
            if path in PUBLIC or path.startswith("/static"):
                assert answer.status_code < 400 or (path == "/login" and method == "POST"), (method, url)
                continue
            checked += 1
            if method == "GET" and not url.startswith(("/api/", "/openapi", "/events")):  # a script reads those
                assert answer.status_code == 303, (method, url)
                assert answer.headers["location"].startswith("/login"), (method, url)
            else:
                assert answer.status_code == 401, (method, url, answer.status_code)
            assert "morning_sales" not in answer.text
            assert "warehouse.orders" not in answer.text
    assert checked > 60


def test_every_state_changing_route_names_a_role_and_refuses_lower_roles(console):
    client, _root, tokens, incident = console
    run_id = _run_id(client, tokens["viewer"])
    unsafe = [(m, p, r) for m, p, r in _routes(client.app) if m in UNSAFE and p not in PUBLIC]
    assert len(unsafe) >= 10
    for method, path, route in unsafe:
        role = _role_of(route)
        assert role in ROLES, f"{method} {path} changes state but declares no role with need(...)"
        for lower in ROLES[:ROLES.index(role)]:
            answer = client.request(method, _fill(path, incident, run_id), headers=bearer(tokens[lower]),
                                    json={"selection": ["warehouse.orders"], "start": "2026-11-01",
                                          "end": "2026-11-02"},
                                    follow_redirects=False)
            assert answer.status_code == 403, (method, path, lower, answer.status_code)
    audit = client.get("/api/v1/audit", headers=bearer(tokens["admin"]), params={"limit": 1000}).json()["entries"]
    assert any(e["outcome"] == "denied" and e["actor"] == "viewer" and "/actions/resume" in e["action"]
               for e in audit)
    assert client.get("/api/v1/audit", headers=bearer(tokens["operator"])).status_code == 403


def test_cookie_requests_that_change_state_need_the_csrf_token(console):
    client, _root, tokens, incident = console
    run_id = _run_id(client, tokens["viewer"])
    csrf = sign_in_with_form(client, "admin")
    unsafe = [(m, p) for m, p, _ in _routes(client.app) if m in UNSAFE and p not in PUBLIC]
    for method, path in unsafe:
        url = _fill(path, incident, run_id)
        missing = client.request(method, url, data={"selection": "warehouse.orders"}, follow_redirects=False)
        assert missing.status_code == 403, (method, path)
        assert "CSRF" in missing.text, (method, path)
        wrong = client.request(method, url, headers={"X-CSRF-Token": "x" + csrf}, follow_redirects=False)
        assert wrong.status_code == 403, (method, path)
    # with it, the same cookie session may act
    answer = client.post(f"/incidents/{incident}/ack", data={"csrf": csrf}, follow_redirects=False)
    assert answer.status_code == 303
    assert client.get(f"/api/v1/incidents/{incident}", headers=bearer(tokens["viewer"])).json()["status"] \
        == "acknowledged"
    api = client.post(f"/api/v1/incidents/{incident}/resolve", json={"note": "done"}, headers={"X-CSRF-Token": csrf})
    assert api.status_code == 200
    assert api.json()["status"] == "resolved"


def test_no_hash_or_secret_ever_comes_back(console):
    from kiban.project import load_project
    from kiban.store import Store
    from kiban.store.schema import api_tokens, sessions, users

    client, root, tokens, incident = console
    sign_in(client, "admin")
    store = Store(load_project(root).state_url)
    with store.engine.connect() as conn:
        secrets = [*conn.execute(sa.select(users.c.password_hash)).scalars(),
                   *conn.execute(sa.select(api_tokens.c.token_hash)).scalars(),
                   *conn.execute(sa.select(sessions.c.token_hash)).scalars()]
    store.close()
    assert len(secrets) >= 9
    run_id = _run_id(client, tokens["viewer"])
    bodies = []
    for method, path, _route in _routes(client.app):
        if method == "GET" and not path.startswith("/events"):  # streams: versions only (test_web_live)
            url = _fill(path, incident, run_id)
            bodies.append(client.get(url).text)
            bodies.append(client.get(url, headers=bearer(tokens["admin"])).text)
    text = "\n".join(bodies)
    assert "$argon2" not in text
    assert PASSWORD not in text
    for secret in secrets:
        assert secret[:24] not in text
    for token in tokens.values():
        assert token not in text


def test_session_cookie_flags_and_no_open_redirect(console_template, tmp_path):
    import shutil

    from fastapi.testclient import TestClient

    from kiban.web import create_app

    root = tmp_path / "shop"
    shutil.copytree(console_template[0], root)
    for base, secure in (("http://127.0.0.1", False), ("https://console.example", True)):
        with TestClient(create_app(root), base_url=base) as client:
            page = client.get("/login")
            token = re.search(r'name="login_token" value="([^"]+)"', page.text).group(1)
            answer = client.post("/login", data={"username": "viewer", "password": PASSWORD, "login_token": token,
                                                 "next": "//evil.example/x"}, follow_redirects=False)
            assert answer.status_code == 303
            assert answer.headers["location"] == "/"
            cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("kiban_session="))
            assert "HttpOnly" in cookie
            assert "SameSite=lax" in cookie.replace("Lax", "lax")
            assert ("Secure" in cookie) is secure
            # signing out ends the session on the server, not only in the browser
            session = cookie.split(";")[0].split("=", 1)[1]
            csrf = csrf_of(client.get("/runs").text)
            client.post("/logout", data={"csrf": csrf}, follow_redirects=False)
            client.cookies.set("kiban_session", session)
            assert client.get("/api/v1/me").status_code == 401


def test_the_sign_in_form_needs_its_own_token(console):
    client, *_ = console
    answer = client.post("/login", data={"username": "viewer", "password": PASSWORD, "login_token": "forged"})
    assert answer.status_code == 403
    assert "kiban_session" not in answer.headers.get("set-cookie", "")


def test_wrong_passwords_back_off_per_user_and_address(console):
    from datetime import timedelta

    from kiban.project import load_project
    from kiban.store import Store, utcnow
    from kiban.web.accounts import Accounts, ThrottledError

    client, root, tokens, _incident = console
    page = client.get("/login")
    token = re.search(r'name="login_token" value="([^"]+)"', page.text).group(1)
    wrong = client.post("/login", data={"username": "operator", "password": "nope-nope", "login_token": token})
    assert wrong.status_code == 401
    assert "Wrong user name or password" in wrong.text
    store = Store(load_project(root).state_url)
    try:
        accounts = Accounts(store)
        t0 = utcnow()
        assert accounts.authenticate("operator", "nope-nope", "testclient", t0) is None  # 2nd
        assert accounts.authenticate("operator", "nope-nope", "testclient", t0) is None  # 3rd: last free; 1 s
        with pytest.raises(ThrottledError):
            accounts.authenticate("operator", "nope-nope", "testclient", t0)  # not even evaluated
        with pytest.raises(ThrottledError):
            accounts.authenticate("operator", PASSWORD, "testclient", t0 + timedelta(seconds=0.5))
        assert accounts.authenticate("operator", PASSWORD, "10.0.0.9", t0) is not None  # another address
        for n in range(5):  # the 4th to 8th wrong password: then 2, 4, 8, 16, 32 s
            later = t0 + timedelta(seconds=1 + 2 ** (n + 1))
            assert accounts.authenticate("operator", "nope-nope", "testclient", later) is None
        with pytest.raises(ThrottledError) as held:
            accounts.authenticate("operator", PASSWORD, "testclient", later + timedelta(seconds=31))
        assert 0 < held.value.retry_after <= 1
    finally:
        store.close()
    # the server says so, even to the right password, and for a while
    blocked = client.post("/login", data={"username": "operator", "password": PASSWORD, "login_token": token})
    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) > 30
    assert "kiban_session" not in blocked.headers.get("set-cookie", "")
    sign_in(client, "viewer")  # another user from the same address is not held up
    audit = client.get("/api/v1/audit", headers=bearer(tokens["admin"])).json()["entries"]
    operator = [e["outcome"] for e in audit if e["action"] == "login" and e["actor"] == "operator"]
    assert operator[:2] == ["denied", "failed"]


def test_parallel_wrong_passwords_are_evaluated_at_most_the_free_number_of_times(console):
    """The attempt is counted before the password is checked, atomically: a burst gets no more tries."""
    from concurrent.futures import ThreadPoolExecutor

    from kiban.project import load_project
    from kiban.store import Store
    from kiban.web.accounts import FREE_FAILURES, Accounts, ThrottledError

    _client, root, _tokens, _incident = console
    store = Store(load_project(root).state_url)
    accounts = Accounts(store)
    evaluated = []
    original = accounts._verify

    def counting(stored, password):
        evaluated.append(1)
        return original(stored, password)

    accounts._verify = counting  # type: ignore[method-assign]

    def attempt(_n: int) -> str:
        try:
            return "evaluated" if accounts.authenticate("admin", "wrong-wrong", "10.9.9.9") is None else "in"
        except ThrottledError:
            return "throttled"

    try:
        with ThreadPoolExecutor(30) as pool:
            outcomes = list(pool.map(attempt, range(30)))
    finally:
        store.close()
    assert outcomes.count("evaluated") == len(evaluated) <= FREE_FAILURES
    assert outcomes.count("throttled") >= 30 - FREE_FAILURES
    assert "in" not in outcomes


def _kiban(root: Any, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    import os

    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "kiban", "--project", str(root), *args], input=stdin, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_users_command_and_serving_refused_on_the_network_without_users(tmp_path):
    from typer.testing import CliRunner

    from kiban.cli import State, app
    from kiban.cli import web as _web  # noqa: F401 - registers serve and users
    from kiban.errors import UsageError

    root = build_project(tmp_path / "shop")
    refused = _kiban(root, "serve", "--host", "0.0.0.0", "--port", "1")  # the real command, end to end
    assert refused.returncode == 2
    assert "no user is configured" in refused.stderr
    assert "kiban users add" in refused.stderr
    added = _kiban(root, "users", "add", "alice", "--role", "operator", "--password-stdin", stdin="s3cret-enough\n")
    assert added.returncode == 0, added.stderr
    runner = CliRunner()
    State.project_dir = root

    def kiban(*args: str, stdin: str = "") -> Any:
        return runner.invoke(app, ["--project", str(root), *args], input=stdin)

    assert "alice" in kiban("users", "list").output
    assert "operator" in kiban("users", "list").output
    short = kiban("users", "passwd", "alice", "--password-stdin", stdin="short\n")
    assert isinstance(short.exception, UsageError)
    assert "too short" in str(short.exception)
    bad_role = kiban("users", "add", "bob", "--role", "operater", "--password-stdin", stdin="s3cret-enough\n")
    assert isinstance(bad_role.exception, UsageError)
    assert "operator" in str(bad_role.exception)  # did you mean
    printed = kiban("users", "token", "alice", "--label", "ci").output.split()
    token = next(word for word in printed if word.startswith("kbn_") and not word.endswith("…';"))
    from fastapi.testclient import TestClient

    from kiban.web import create_app

    with TestClient(create_app(root)) as client:
        assert client.get("/api/v1/me", headers=bearer(token)).json() == {"name": "alice", "role": "operator"}
        assert kiban("users", "remove", "alice").exit_code == 0
        assert client.get("/api/v1/me", headers=bearer(token)).status_code == 401  # its tokens went with it
        audit = [(e.actor, e.action, e.target) for e in client.app.state.accounts.audit_entries()]
    assert ("cli:" + __import__("getpass").getuser(), "user.add", "alice") in audit
    assert any(a[1] == "token.create" for a in audit)
    assert any(a[1] == "user.remove" for a in audit)


@pytest.mark.parametrize("host,loopback", [("127.0.0.1", True), ("::1", True), ("localhost", True),
                                           ("0.0.0.0", False), ("192.168.1.5", False)])
def test_loopback_addresses(host, loopback):
    from kiban.cli.web import is_loopback

    assert is_loopback(host) is loopback


def test_the_middlewares_own_refusals_carry_the_security_headers(console):
    client, _root, _tokens, _incident = console
    client.cookies.clear()
    for answer in (client.get("/api/v1/runs"), client.get("/runs", follow_redirects=False),
                   client.post("/api/v1/query", json={"sql": "select 1"})):
        assert answer.status_code in (401, 303)
        for name in ("X-Content-Type-Options", "X-Frame-Options", "Content-Security-Policy", "Referrer-Policy"):
            assert name in answer.headers, (answer.request.url, name)


def test_refused_page_views_and_actions_are_audited(console):
    client, _root, tokens, _incident = console
    assert client.get("/api/v1/audit", headers=bearer(tokens["viewer"])).status_code == 403
    assert client.get("/api/v1/runs", headers=bearer("not-a-token")).status_code == 401
    client.cookies.clear()
    assert client.post("/api/v1/actions/run", json={"select": ["x"]}).status_code == 401
    audit = client.get("/api/v1/audit", headers=bearer(tokens["admin"])).json()["entries"]
    denied = {(e["actor"], e["action"]) for e in audit if e["outcome"] == "denied"}
    assert ("viewer", "GET /api/v1/audit") in denied
    assert (None, "GET /api/v1/runs") in denied
    assert (None, "POST /api/v1/actions/run") in denied


def test_absurd_numbers_are_a_4xx_never_a_500(console):
    client, _root, tokens, _incident = console
    for body in ('{"sql": "select 1", "timeout": 1e309}', '{"sql": "select 1", "limit": 1e309}',
                 '{"sql": "select 1", "timeout": -1e309}', '{"sql": "select 1", "timeout": NaN}'):
        answer = client.post("/api/v1/query", content=body, headers={**bearer(tokens["analyst"]),
                                                                     "content-type": "application/json"})
        assert 400 <= answer.status_code < 500, (body, answer.status_code, answer.text)


def test_a_password_change_revokes_the_users_api_tokens(console):
    from kiban.project import load_project
    from kiban.store import Store
    from kiban.web.accounts import Accounts

    client, root, _tokens, _incident = console
    store = Store(load_project(root).state_url)
    try:
        accounts = Accounts(store)
        token = accounts.create_token("operator", "ci")
        assert client.get("/api/v1/runs", headers=bearer(token)).status_code == 200
        accounts.set_password("operator", PASSWORD)
        assert client.get("/api/v1/runs", headers=bearer(token)).status_code == 401
    finally:
        store.close()


def test_the_state_store_and_the_warehouse_are_private_files(console):
    from kiban.project import load_project

    _client, root, _tokens, _incident = console
    project = load_project(root)
    state = project.state_url.removeprefix("sqlite:///")
    warehouse = project.warehouse_url.removeprefix("duckdb:///")
    for path in (state, warehouse, warehouse + ".snapshot"):
        assert (Path(path).stat().st_mode & 0o777) == 0o600, path


def test_forwarding_headers_are_believed_only_from_named_proxies():
    from kiban.cli.web import proxy_options
    from kiban.errors import UsageError

    assert proxy_options([]) == {"proxy_headers": False, "forwarded_allow_ips": ""}
    assert proxy_options(["10.0.0.5", "10.1.0.0/16"]) == {"proxy_headers": True,
                                                           "forwarded_allow_ips": "10.0.0.5,10.1.0.0/16"}
    with pytest.raises(UsageError, match="not an IP address"):
        proxy_options(["*"])
