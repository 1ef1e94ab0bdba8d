"""Today, Incidents and the fix, through the app (no browser): the answers are in the page and in the API, a broken
model makes Today not green, a fix says what it will build or why there is nothing to do, times carry UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from tests.helpers.console import FIXED_SQL, bearer, run, sign_in


def test_today_in_the_api_names_who_is_hurt_why_and_the_fix(console: Any) -> None:
    client, _root, tokens, _incident = console
    today = client.get("/api/v1/today", headers=bearer(tokens["viewer"])).json()
    assert today["headline"] == "0 of 1 use case ready · 1 at risk"
    (risk,) = today["risks"]
    assert risk["usecase"] == "morning_sales"
    assert risk["state"] == "broken"
    assert risk["consumers"] == [{"name": "Store managers", "team": "stores"}]
    assert risk["cause"].startswith("mart.daily_sales failed: Binder Error")
    assert risk["since"] is not None
    fix = risk["fix"]
    assert fix["action"] == "run"
    assert fix["selection"] == "mart.daily_sales+"
    assert fix["rebuilds"] == ["mart.daily_sales"]
    assert today["old_incidents"] == 1  # the incident of 2026-11-30 is history, apart from today


def test_a_fixed_model_clears_todays_risk(console: Any) -> None:
    client, root, tokens, _incident = console
    (root / "models/mart/daily_sales.sql").write_text(FIXED_SQL)
    assert run(root, select=["mart.daily_sales"]).status == "success"
    client.app.state.site.forget()
    today = client.get("/api/v1/today", headers=bearer(tokens["viewer"])).json()
    assert today["risks"] == []
    assert "at risk" not in today["headline"].replace("nothing at risk", "")


def test_resume_with_nothing_to_do_says_why_and_starts_nothing(console: Any) -> None:
    client, root, _tokens, incident = console
    (root / "models/mart/daily_sales.sql").write_text(FIXED_SQL)
    assert run(root, select=["mart.daily_sales"]).status == "success"
    csrf = sign_in(client, "operator")
    page = client.get(f"/incidents/{incident}").text
    assert "Nothing to resume" in page
    assert 'action="/actions/resume"' not in page
    answer = client.post("/actions/resume", data={"csrf": csrf}, follow_redirects=False)
    assert answer.status_code == 200
    assert "Nothing to resume" in answer.text
    assert "finished everything" in answer.text
    assert client.app.state.jobs.all() == []  # no job that does nothing
    assert 'href="/"' in answer.text  # and a way back


def test_an_incident_offers_one_fix_with_its_preview_and_none_once_resolved(console: Any) -> None:
    client, _root, _tokens, incident = console
    csrf = sign_in(client, "operator")
    page = client.get(f"/incidents/{incident}").text
    main = page[page.index("<main"):]
    assert main.count('class="primary"') == 1  # one primary action: the workaround
    assert "Resume: build the 1 asset the last run left undone" in main
    assert re.search(r'<ul class="rebuilds"><li><a href="/assets/mart.daily_sales">', main)
    assert client.post(f"/incidents/{incident}/resolve", data={"csrf": csrf, "note": "fixed the typo"},
                       follow_redirects=False).status_code == 303
    resolved = client.get(f"/incidents/{incident}").text
    main = resolved[resolved.index("<main"):resolved.index("</main>")]
    assert "<form" not in main
    assert "fixed the typo" in main
    assert client.get(f"/api/v1/incidents/{incident}", headers=bearer(_tokens["viewer"])).json()["fix"] is None


def test_times_are_in_project_time_labelled_with_utc_on_hover(console: Any) -> None:
    client, _root, _tokens, incident = console
    sign_in(client, "viewer")
    page = client.get(f"/incidents/{incident}").text
    assert "times in Asia/Tokyo" in page
    found = re.findall(r'<time datetime="([^"]+)Z" title="([^"]+) UTC">([^<]+)</time>', page)
    assert found
    for utc, title, shown in found:  # shown in JST in the reader's locale (Dec 7, 4:17 PM), UTC on hover
        moment = datetime.fromisoformat(utc).replace(tzinfo=UTC)
        assert title == moment.strftime("%Y-%m-%d %H:%M:%S")
        jst = moment.astimezone(ZoneInfo("Asia/Tokyo"))
        assert f"{(jst.hour % 12) or 12}:{jst.minute:02d}" in shown, (utc, shown)
        assert ("PM" if jst.hour >= 12 else "AM") in shown, (utc, shown)


def test_lineage_focus_narrows_to_an_asset_and_its_neighbours(console: Any) -> None:
    client, _root, _tokens, _incident = console
    sign_in(client, "viewer")
    page = client.get("/graph", params={"focus": "+mart.daily_sales"}).text
    assert re.search(r"<small>3 assets</small>", page), page[:2000]
    page = client.get("/graph", params={"focus": "mart.daily_sales"}).text
    assert "<small>1 assets</small>" in page
    wrong = client.get("/graph", params={"focus": "dayly_sales"})
    assert wrong.status_code == 400
    assert "daily_sales" in wrong.text


def test_the_current_page_is_marked_and_a_skip_link_leads_to_the_content(console: Any) -> None:
    client, _root, _tokens, _incident = console
    sign_in(client, "viewer")
    page = client.get("/incidents").text
    assert '<a href="/incidents" aria-current="page">' in page
    assert 'href="/" aria-current' not in page
    assert '<a class="skip" href="#live">' in page
