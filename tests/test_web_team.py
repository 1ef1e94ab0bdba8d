"""The console's value and team pages: initiatives with their chart, the ledger, on call, the weekly review, and
postmortems completed in the browser — with each write guarded by its role and CSRF token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.console import served_copy, sign_in


@pytest.fixture
def client(team_template: Path, tmp_path: Path) -> Iterator[Any]:
    with served_copy(team_template, tmp_path) as c:
        yield c


def test_an_initiative_page_shows_its_effect_chart_and_assumptions_and_analysts_record_it(client):
    csrf = sign_in(client, "viewer")
    page = client.get("/initiatives/replenish")
    assert page.status_code == 200
    assert "<svg" in page.text
    assert "counterfactual" in page.text
    assert "Parallel trends" in page.text
    assert "Record this measurement" not in page.text  # a viewer only reads
    refused = client.post("/initiatives/replenish/measure", data={"csrf": csrf}, follow_redirects=False)
    assert refused.status_code == 403
    csrf = sign_in(client, "analyst")
    assert client.post("/initiatives/replenish/measure", data={"csrf": "wrong"},
                       follow_redirects=False).status_code == 403
    done = client.post("/initiatives/replenish/measure", data={"csrf": csrf}, follow_redirects=False)
    assert done.status_code == 303
    listing = client.get("/initiatives").text
    assert "replenish" in listing
    assert "never" not in listing.split("Value by use case")[0]
    assert "mart.daily_sales" in listing.split("Value by asset")[1]
    assert client.get("/initiatives/nope").status_code == 404
    usecase = client.get("/usecases/stocking").text
    assert 'href="/initiatives/replenish"' in usecase
    assert "/ month" in usecase


def test_team_pages_show_on_call_and_the_review(client):
    sign_in(client, "viewer")
    team = client.get("/team")
    assert team.status_code == 200
    assert "Aiko" in team.text or "Ben" in team.text
    review = client.get("/team/review?week=2026-W49")
    assert review.status_code == 200
    assert "Operations review 2026-W49" in review.text
    assert "stocking" in review.text  # the incident of 30 Nov, opened now or then, or the budget row
    assert client.get("/team/review?week=someday").status_code == 400


def test_people_complete_a_postmortem_in_the_console(client):
    csrf = sign_in(client, "viewer")
    draft = client.get("/incidents/1/postmortem")
    assert draft.status_code == 200
    assert "Binder Error" in draft.text
    assert "not saved yet" in draft.text
    assert client.post("/incidents/1/postmortem", data={"csrf": csrf, "lessons": "x"},
                       follow_redirects=False).status_code == 403
    csrf = sign_in(client, "operator")
    saved = client.post("/incidents/1/postmortem", data={"csrf": csrf, "lessons": "check the binder in CI",
                                                          "root_cause": "a renamed column", "status": "final"},
                        follow_redirects=False)
    assert saved.status_code == 303
    page = client.get("/incidents/1/postmortem").text
    assert "check the binder in CI" in page
    assert "a renamed column" in page
    assert "final" in page
    assert client.get("/incidents/999/postmortem").status_code == 404
