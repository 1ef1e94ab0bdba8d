"""The console's value and team pages: initiatives with their chart, the ledger, on call, the weekly review, and
postmortems completed in the browser — with each write guarded by its role and CSRF token."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import write_files, write_parquet
from tests.test_initiatives import BASE, LAKE, _write_planted
from tests.test_web_console import add_users, sign_in

ONCALL = """\
oncall:
  start: 2026-01-05
  people: [{name: Aiko}, {name: Ben}]
"""


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kiban.incidents import IncidentDraft, IncidentLog
    from kiban.project import load_project
    from kiban.run import RunOptions, run_project
    from kiban.store import Store

    root = tmp_path_factory.mktemp("webteam") / "shop"
    write_files(root, {"kiban.yml": f"name: test\ntimezone: Asia/Tokyo\n{ONCALL}", **BASE})
    for table, sql in LAKE.items():
        write_parquet(root / "lake" / table / "part-0.parquet", sql)
    _write_planted(root)
    project = load_project(root)
    assert run_project(project, RunOptions()).status == "success"
    add_users(root)
    store = Store(project.state_url)
    IncidentLog(store, "test").record(IncidentDraft(
        "stocking", date(2026, 11, 30), "missed", "failed", "not ready by 06:00",
        root_cause={"asset": "mart.daily_sales", "kind": "failed", "reason": "Binder Error"},
        impact={"consumers": [{"name": "Stocking team", "team": "supply"}]}))
    store.close()
    return root


@pytest.fixture
def client(template: Path, tmp_path: Path) -> Any:
    import shutil

    from fastapi.testclient import TestClient

    from kiban.web import create_app

    root = tmp_path / "shop"
    shutil.copytree(template, root)
    with TestClient(create_app(root), base_url="http://127.0.0.1") as c:
        yield c


def test_an_initiative_page_shows_its_effect_chart_and_assumptions_and_analysts_record_it(client):
    csrf = sign_in(client, "viewer")
    page = client.get("/initiatives/replenish")
    assert page.status_code == 200
    assert "<svg" in page.text and "counterfactual" in page.text and "Parallel trends" in page.text
    assert "Record this measurement" not in page.text  # a viewer only reads
    refused = client.post("/initiatives/replenish/measure", data={"csrf": csrf}, follow_redirects=False)
    assert refused.status_code == 403
    csrf = sign_in(client, "analyst")
    assert client.post("/initiatives/replenish/measure", data={"csrf": "wrong"},
                       follow_redirects=False).status_code == 403
    done = client.post("/initiatives/replenish/measure", data={"csrf": csrf}, follow_redirects=False)
    assert done.status_code == 303
    listing = client.get("/initiatives").text
    assert "replenish" in listing and "never" not in listing.split("Value by use case")[0]
    assert "mart.daily_sales" in listing.split("Value by asset")[1]
    assert client.get("/initiatives/nope").status_code == 404
    usecase = client.get("/usecases/stocking").text
    assert 'href="/initiatives/replenish"' in usecase and "/ month" in usecase


def test_team_pages_show_on_call_and_the_review(client):
    sign_in(client, "viewer")
    team = client.get("/team")
    assert team.status_code == 200 and ("Aiko" in team.text or "Ben" in team.text)
    review = client.get("/team/review?week=2026-W49")
    assert review.status_code == 200 and "Operations review 2026-W49" in review.text
    assert "stocking" in review.text  # the incident of 30 Nov, opened now or then, or the budget row
    assert client.get("/team/review?week=someday").status_code == 400


def test_people_complete_a_postmortem_in_the_console(client):
    csrf = sign_in(client, "viewer")
    draft = client.get("/incidents/1/postmortem")
    assert draft.status_code == 200 and "Binder Error" in draft.text and "not saved yet" in draft.text
    assert client.post("/incidents/1/postmortem", data={"csrf": csrf, "lessons": "x"},
                       follow_redirects=False).status_code == 403
    csrf = sign_in(client, "operator")
    saved = client.post("/incidents/1/postmortem", data={"csrf": csrf, "lessons": "check the binder in CI",
                                                          "root_cause": "a renamed column", "status": "final"},
                        follow_redirects=False)
    assert saved.status_code == 303
    page = client.get("/incidents/1/postmortem").text
    assert "check the binder in CI" in page and "a renamed column" in page and "final" in page
    assert client.get("/incidents/999/postmortem").status_code == 404
