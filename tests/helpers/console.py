"""The web console's shop: a project whose last run failed on mart.daily_sales, one user per role, an incident;
signed-in test clients and their headers (shared by the web tests)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
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
def console_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], int]:
    """Built once per module (a run, four users, an incident); each test gets its own copy."""
    root = build_project(tmp_path_factory.mktemp("web") / "shop")
    result = run(root)
    assert result.status == "failed"
    assert result.failed == ["mart.daily_sales"]
    return root, add_users(root), open_incident(root)


@pytest.fixture
def console(console_template: tuple[Path, dict[str, str], int], tmp_path: Path) -> Iterator[Any]:
    """(client, root, tokens, incident id): a served project whose last run failed on mart.daily_sales."""
    with served_copy(console_template[0], tmp_path) as client:
        yield client, tmp_path / "shop", console_template[1], console_template[2]


@contextmanager
def served_copy(template: Path, tmp_path: Path) -> Iterator[Any]:
    """A test client of the console over a fresh copy of ``template`` at ``tmp_path/shop`` (a module's fixture
    builds the project once; each test changes its own copy)."""
    import shutil

    from fastapi.testclient import TestClient

    from kiban.web import create_app

    root = tmp_path / "shop"
    shutil.copytree(template, root)
    with TestClient(create_app(root), base_url="http://127.0.0.1") as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
