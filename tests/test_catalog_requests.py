"""Data requests: new → in_progress → delivered → closed, deliverables linked, lead times, the usage report."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from kiban.catalog.requests import (
    RequestDraft,
    RequestError,
    check_deliverable,
    events,
    get_request,
    lead_times,
    list_requests,
    move,
    new_request,
)
from kiban.catalog.usage import weekly
from kiban.store import Store
from kiban.store.schema import data_requests


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path}/state.db")
    yield s
    s.close()


def test_a_request_moves_through_its_states_with_a_timeline(store):
    rid = new_request(store, "shop", RequestDraft("Weekly churn by store", "hana", team="stores",
                                                  purpose="Plan visits", hypothesis="Stores near stations churn less",
                                                  data_needed="orders per customer, 2 years",
                                                  needed_by=date(2026, 12, 20)))
    assert get_request(store, "shop", rid).status == "new"
    with pytest.raises(RequestError, match="it can move to in_progress, closed, not delivered"):
        move(store, "shop", rid, "delivered", "ken", deliverable="recipe:churn")
    move(store, "shop", rid, "in_progress", "ken")
    with pytest.raises(RequestError, match="needs its deliverable"):
        move(store, "shop", rid, "delivered", "ken")
    delivered = move(store, "shop", rid, "delivered", "ken", deliverable="recipe:churn", note="see the recipe")
    assert delivered.assignee == "ken"
    assert delivered.deliverable == "recipe:churn"
    assert delivered.lead_time_days is not None
    assert delivered.lead_time_days >= 0
    closed = move(store, "shop", rid, "closed", "hana")
    assert closed.closed_at is not None
    with pytest.raises(RequestError, match="nothing"):
        move(store, "shop", rid, "in_progress", "ken")
    assert [(e.from_status, e.to_status, e.actor) for e in events(store, rid)] == [
        (None, "new", "hana"), ("new", "in_progress", "ken"), ("in_progress", "delivered", "ken"),
        ("delivered", "closed", "hana")]


def test_deliverables_are_recipes_assets_or_files():
    assets = {"mart.daily_sales": None}
    assert check_deliverable("recipe:x", assets) == "recipe:x"
    assert check_deliverable("file:/share/x.xlsx", assets) == "file:/share/x.xlsx"
    assert check_deliverable("mart.daily_sales", assets) == "mart.daily_sales"
    with pytest.raises(RequestError, match=r"did you mean 'mart\.daily_sales'"):
        check_deliverable("mart.daily_sale", assets)
    with pytest.raises(RequestError, match="not a deliverable"):
        check_deliverable("whatever", assets)


def test_lead_times_and_overdue_requests(store):
    ids = [new_request(store, "shop", RequestDraft(f"r{i}", "u", needed_by=date(2026, 1, 1))) for i in range(4)]
    for i, rid in enumerate(ids[:3]):
        move(store, "shop", rid, "in_progress", "ken")
        move(store, "shop", rid, "delivered", "ken", deliverable="file:x")
        created = get_request(store, "shop", rid).created_at
        with store._tx() as conn:  # pretend they took 1, 2 and 6 days
            conn.execute(data_requests.update().where(data_requests.c.id == rid)
                         .values(delivered_at=created + timedelta(days=[1, 2, 6][i])))
    times = lead_times(list_requests(store, "shop"), today=date(2026, 6, 1))
    assert (times.delivered, times.median_days, times.p90_days) == (3, 2.0, 6.0)
    assert (times.open, times.overdue) == (1, 1)
    assert [r.id for r in list_requests(store, "shop", open_only=True)] == ids
    assert [r.id for r in list_requests(store, "shop", status="new")] == [ids[3]]
    rows = weekly(store, "shop")
    assert sum(r.requests for r in rows) == 4
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(data_requests)).scalar() == 4


def test_cli_requests_new_move_show_list(make_project, cli):
    root = make_project({"models/mart/daily_sales.sql": "select 1 as x"})
    out = cli("--project", root, "requests", "new", "Sales by hour", "--purpose", "staffing",
              "--needed-by", "2026-12-24", "--user", "hana", "--team", "stores")
    assert out.returncode == 0, out.stderr
    assert "#1" in out.stdout, out.stderr
    assert cli("--project", root, "requests", "move", "1", "in_progress", "--user", "ken").returncode == 0
    out = cli("--project", root, "requests", "move", "1", "delivered", "--deliverable", "mart.daily_sales",
              "--user", "ken")
    assert out.returncode == 0, out.stderr
    out = cli("--project", root, "requests", "show", "1")
    assert "staffing" in out.stdout
    assert "in_progress → delivered" in out.stdout
    out = cli("--project", root, "requests", "list")
    assert "Sales by hour" in out.stdout
    assert "mart.daily_sales" in out.stdout
    assert "1 delivered" in out.stdout
    out = cli("--project", root, "usage", "--json")
    report = json.loads(out.stdout)
    assert out.returncode == 0
    assert report["requests"]["delivered"] == 1
    assert [(w["team"], w["requests"]) for w in report["weeks"]] == [("stores", 1)]
