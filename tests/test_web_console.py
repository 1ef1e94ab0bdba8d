"""The web console's pages and API over a real project, store and run (helpers shared by the other web tests)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import write_files, write_parquet

PASSWORD = "correct horse battery"
ROLES = ("viewer", "analyst", "operator", "admin")
BROKEN_SQL = "select day, store, sum(amount_typo) as sales from warehouse.orders group by all\n"
FIXED_SQL = "select day, store, sum(amount) as sales from warehouse.orders group by all\n"


def build_project(root: Path, broken: bool = True) -> Path:
    """lake.orders → warehouse.orders → mart.daily_sales (broken: a typo fails it), one use case."""
    write_files(root, {
        "kiban.yml": "name: webshop\ntimezone: Asia/Tokyo\n",
        "models/warehouse/orders.sql": "select id, store, amount, day from lake.orders\n",
        "models/warehouse/orders.yml": (
            "description: Every POS order, cleaned\nowner: data-team@shop.example\ntags: [pos, finance]\n"
            "columns:\n  - name: id\n    description: order number\n    checks: [not_null, unique]\n"
            "  - name: amount\n    description: total in yen, tax included\n    tags: [money]\n"),
        "models/mart/daily_sales.sql": BROKEN_SQL if broken else FIXED_SQL,
        "models/mart/daily_sales.yml": "description: Sales per store and day for the morning meeting\n"
                                       "owner: stores@shop.example\ntags: [finance]\n",
        "usecases/morning_sales.yml": (
            "description: Store managers read yesterday's sales before the 09:00 meeting.\n"
            "owner: data-team@shop.example\nconsumers:\n  - name: Store managers\n    team: stores\n"
            "assets: [mart.daily_sales]\nneed:\n  by: \"08:30\"\n  on: every_day\n"
            "target:\n  attainment: 0.9\n  window_days: 7\n"),
    })
    write_parquet(root / "lake" / "orders" / "part-0.parquet",
                  "select i as id, 1 + i % 3 as store, (i * 37) % 1000 as amount, "
                  "date '2026-11-01' + (i % 5)::int as day from range(200) t(i)")
    return root


def run(root: Path, **options: Any) -> Any:
    from kiban.project import load_project
    from kiban.run import RunOptions, run_project

    return run_project(load_project(root), RunOptions(**options))


def add_users(root: Path) -> dict[str, str]:
    """One user per role, named after it; returns role → API token."""
    from kiban.project import load_project
    from kiban.store import Store
    from kiban.web.accounts import Accounts

    store = Store(load_project(root).state_url)
    try:
        accounts = Accounts(store)
        tokens = {}
        for role in ROLES:
            if accounts.user(role) is None:
                accounts.add_user(role, PASSWORD, role)
            tokens[role] = accounts.create_token(role, "tests")
        return tokens
    finally:
        store.close()


def open_incident(root: Path) -> int:
    from datetime import date

    from kiban.incidents import IncidentDraft, IncidentLog
    from kiban.project import load_project
    from kiban.store import Store

    store = Store(load_project(root).state_url)
    try:
        incident, _ = IncidentLog(store, "webshop").record(IncidentDraft(
            "morning_sales", date(2026, 11, 30), "missed", "failed", "not delivered by the deadline",
            root_cause={"asset": "mart.daily_sales", "status": "failed", "error": "Binder Error"},
            workaround="kiban run --resume", impact={"consumers": [{"name": "Store managers", "team": "stores"}]}))
        return incident.id
    finally:
        store.close()


def sign_in(client: Any, name: str) -> str:
    """A signed-in session for ``name`` (made directly: the form itself, with its argon2 check, is tested by
    sign_in_with_form and the browser tests); returns the session's CSRF token, read from a page's form."""
    accounts = client.app.state.accounts
    token, _csrf = accounts.start_session(accounts.require(name), "testclient")
    client.cookies.set("kiban_session", token)
    return csrf_of(client.get("/runs").text)


def sign_in_with_form(client: Any, name: str, password: str = PASSWORD) -> str:
    """Sign in through the form like a browser; returns the session's CSRF token (from a page's form)."""
    page = client.get("/login")
    token = re.search(r'name="login_token" value="([^"]+)"', page.text).group(1)
    answer = client.post("/login", data={"username": name, "password": password, "login_token": token,
                                         "next": "/"}, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    return csrf_of(client.get("/runs").text)


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], int]:
    """Built once per module (a run, four users, an incident); each test gets its own copy."""
    root = build_project(tmp_path_factory.mktemp("web") / "shop")
    result = run(root)
    assert result.status == "failed" and result.failed == ["mart.daily_sales"]
    return root, add_users(root), open_incident(root)


@pytest.fixture
def console(template: tuple[Path, dict[str, str], int], tmp_path: Path) -> Any:
    """(client, root, tokens, incident id): a served project whose last run failed on mart.daily_sales."""
    import shutil

    from fastapi.testclient import TestClient

    from kiban.web import create_app

    root = tmp_path / "shop"
    shutil.copytree(template[0], root)
    with TestClient(create_app(root), base_url="http://127.0.0.1") as client:
        yield client, root, template[1], template[2]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- pages ---------------------------------------------------------------------------------------------------------

def test_the_board_shows_each_use_case_with_its_verdict_deadline_and_budget(console):
    client, _root, _tokens, _incident = console
    sign_in_with_form(client, "viewer")
    page = client.get("/")
    assert page.status_code == 200
    assert "morning_sales" in page.text and "Store managers read yesterday" in page.text
    assert re.search(r'class="pill s-(pending|failed|at_risk|met|late|not_due)"', page.text)
    assert "budget left" in page.text and "1 open incident" in page.text


def test_asset_page_has_description_columns_lineage_runs_checks_and_charts(console):
    client, root, _tokens, _incident = console
    run(root, select=["warehouse.orders"], full_refresh=True)  # a second build: the charts have two points
    sign_in(client, "analyst")
    page = client.get("/assets/warehouse.orders")
    assert page.status_code == 200
    text = page.text
    assert "Every POS order, cleaned" in text and "data-team@shop.example" in text
    assert "total in yen, tax included" in text and "pos, finance" in text
    assert 'href="/assets/lake.orders"' in text and 'href="/assets/mart.daily_sales"' in text
    assert "select id, store, amount, day from lake.orders" in text  # analysts see the SQL
    assert text.count("<circle") >= 4  # two builds in each of the two charts
    assert 'aria-label="build time"' in text and 'aria-label="rows"' in text
    sign_in(client, "viewer")
    assert "from lake.orders" not in client.get("/assets/orders").text  # viewers do not


def test_runs_list_and_one_runs_gantt_timeline(console):
    client, _root, _tokens, _incident = console
    sign_in(client, "viewer")
    runs = client.get("/runs").text
    run_id = re.search(r'href="/runs/([0-9T]+-[0-9a-f]+)"', runs).group(1)
    page = client.get(f"/runs/{run_id}").text
    assert 'class="gantt"' in page and "warehouse.orders" in page and "mart.daily_sales" in page
    assert "amount_typo" in page  # the failure's error


def test_incident_page_shows_root_cause_and_offers_operators_the_workarounds(console):
    client, _root, _tokens, incident = console
    sign_in(client, "operator")
    page = client.get(f"/incidents/{incident}").text
    assert "mart.daily_sales" in page and "kiban run --resume" in page and "Store managers" in page
    assert 'action="/actions/resume"' in page and 'action="/actions/backfill"' in page
    sign_in(client, "viewer")
    assert 'action="/actions/resume"' not in client.get(f"/incidents/{incident}").text


def test_search_finds_assets_and_columns(console):
    client, _root, _tokens, _incident = console
    sign_in(client, "viewer")
    page = client.get("/search", params={"q": "yen"}).text
    assert 'href="/assets/warehouse.orders"' in page and "<code>amount</code>" in page
    assert "0 found" in client.get("/search", params={"q": "nothing-like-this"}).text
    assert 'href="/assets/warehouse.orders"' in client.get("/search", params={"q": "ordr"}).text  # a typo


def test_graph_page_draws_every_asset_coloured_by_state(console):
    client, _root, _tokens, _incident = console
    sign_in(client, "viewer")
    page = client.get("/graph").text
    assert page.count('class="node st-') == 3 and page.count("l-7,-3.5v7z") == 2  # two arrowheads
    assert "mart.daily_sales: failed" in page and 'class="node st-failed"' in page and "✕ mart.daily_sales" in page
    filtered = client.get("/graph", params={"layer": "mart"}).text
    assert filtered.count('class="node st-') == 1
    owned = client.get("/graph", params={"owner": "stores@shop.example"}).text
    assert owned.count('class="node st-') == 1
    near = client.get("/graph", params={"focus": "+warehouse.orders", "depth": "1"}).text
    assert near.count('class="node st-') == 2 and 'data-centre="warehouse.orders"' in near
    wrong = client.get("/graph", params={"focus": "+ordrs"})
    assert wrong.status_code == 400 and "no asset matches" in wrong.text


def test_an_operator_resumes_the_failed_run_after_the_fix(console):
    client, root, tokens, _incident = console
    (root / "models/mart/daily_sales.sql").write_text(FIXED_SQL)
    csrf = sign_in(client, "operator")
    answer = client.post("/actions/resume", data={"csrf": csrf}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/jobs/")
    job_id = answer.headers["location"].rsplit("/", 1)[1]
    client.app.state.jobs.wait(job_id, 60)
    job = client.get(f"/api/v1/jobs/{job_id}", headers=bearer(tokens["viewer"])).json()
    assert job["status"] == "success" and job["user"] == "operator"
    detail = client.get(f"/api/v1/runs/{job['run_id']}", headers=bearer(tokens["viewer"])).json()
    assert [a["asset"] for a in detail["attempts"]] == ["mart.daily_sales"]  # only what the failed run left
    audit = client.get("/api/v1/audit", headers=bearer(tokens["admin"])).json()["entries"]
    assert any(e["action"] == "run.resume" and e["actor"] == "operator" and e["ip"] for e in audit)
    assert any(e["action"] == "resume.finished" and e["outcome"] == "ok" for e in audit)


# -- API -------------------------------------------------------------------------------------------------------------

def test_api_mirrors_the_pages(console):
    client, _root, tokens, incident = console
    head = bearer(tokens["viewer"])
    today = client.get("/api/v1/today", headers=head).json()
    assert [u["name"] for u in today["usecases"]] == ["morning_sales"]
    assert {"verdict", "deadline", "estimated_finish", "budget_left", "attainment"} <= set(today["usecases"][0])
    asset = client.get("/api/v1/assets/warehouse.orders", headers=head).json()
    assert asset["downstream"] == ["mart.daily_sales"] and asset["sql"] is None  # viewer: no SQL
    analyst = bearer(tokens["analyst"])
    assert client.get("/api/v1/assets/daily_sales", headers=analyst).json()["sql"].startswith("select")
    missing = client.get("/api/v1/assets/daily_sale", headers=head)  # the pages' resolver: a 404 that helps
    assert missing.status_code == 404 and "did you mean 'daily_sales'" in missing.json()["detail"]
    graph = client.get("/api/v1/assets", headers=head).json()
    assert {n["key"]: n["state"] for n in graph["nodes"]}["mart.daily_sales"] == "failed"
    runs = client.get("/api/v1/runs", headers=head).json()
    assert runs["runs"][0]["status"] == "failed" and runs["runs"][0]["counts"] == {"failed": 1, "success": 1}
    found = client.get(f"/api/v1/incidents/{incident}", headers=head).json()
    assert found["workaround"] == "kiban run --resume" and found["events"]
    hits = client.get("/api/v1/search", params={"q": "order number"}, headers=head).json()["hits"]
    assert {"kind": "column", "asset": "warehouse.orders", "column": "id", "text": "order number"} in hits
    assert client.get("/api/v1/usecases/morning_sales", headers=head).json()["assets"] == ["mart.daily_sales"]
    assert client.get("/api/v1/usecases/nope", headers=head).status_code == 404
    assert client.get("/api/v1/me", headers=head).json() == {"name": "viewer", "role": "viewer"}


def test_api_actions_validate_the_selection_and_acknowledge_incidents(console):
    client, _root, tokens, incident = console
    head = bearer(tokens["operator"])
    wrong = client.post("/api/v1/actions/run", json={"selection": ["mart.daily_sale"]}, headers=head)
    assert wrong.status_code == 400 and "daily_sales" in wrong.json()["detail"]  # did you mean
    acked = client.post(f"/api/v1/incidents/{incident}/ack", json={"note": "looking"}, headers=head).json()
    assert acked["status"] == "acknowledged" and acked["events"][-1]["actor"] == "operator"
    resolved = client.post(f"/api/v1/incidents/{incident}/resolve", json={"note": "fixed"}, headers=head).json()
    assert resolved["status"] == "resolved"
    assert client.post("/api/v1/incidents/999/ack", json={}, headers=head).status_code == 400


def test_a_model_added_on_disk_while_serving_can_be_run_at_once(console):
    client, root, tokens, _incident = console
    head = bearer(tokens["operator"])
    (root / "models/mart/order_count.sql").write_text("select count(*) as n from warehouse.orders\n")
    job = client.post("/api/v1/actions/run", json={"selection": ["mart.order_count"]}, headers=head)
    assert job.status_code == 202, job.text  # found in the project on disk, not refused by the served one
    client.app.state.jobs.wait(job.json()["id"], 60)
    done = client.get(f"/api/v1/jobs/{job.json()['id']}", headers=head).json()
    assert done["status"] == "success", done
    (root / "models/mart/order_count.sql").unlink()


def test_api_workarounds_rebuild_a_selection_and_report_a_backfill_that_cannot_run(console):
    client, _root, tokens, _incident = console
    head = bearer(tokens["operator"])
    job = client.post("/api/v1/actions/run", json={"selection": ["warehouse.orders"]}, headers=head)
    assert job.status_code == 202 and job.json()["status"] == "running"
    client.app.state.jobs.wait(job.json()["id"], 60)
    done = client.get(f"/api/v1/jobs/{job.json()['id']}", headers=head).json()
    assert done["status"] in ("success", "nothing") and done["detail"] == "kiban run warehouse.orders"
    built = client.get(f"/api/v1/runs/{done['run_id']}", headers=head).json()
    assert built["run"]["selection"] == ["warehouse.orders"]
    backfill = client.post("/api/v1/actions/backfill", headers=head,
                           json={"selection": ["warehouse.orders"], "start": "2026-11-01", "end": "2026-11-02"})
    assert backfill.status_code == 202
    client.app.state.jobs.wait(backfill.json()["id"], 60)
    failed = client.get(f"/api/v1/jobs/{backfill.json()['id']}", headers=head).json()
    assert failed["status"] == "failed" and "incremental" in failed["error"]  # the core's own explanation
