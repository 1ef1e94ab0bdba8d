"""The team's operations: the on-call rotation on the business calendar, incidents routed to whoever is on duty,
postmortem drafts from an incident's timeline, and the weekly operations review."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from kiban.errors import ProjectError, ProjectErrors
from kiban.graph import build_graph
from kiban.incidents import IncidentLog
from kiban.project import load_project
from kiban.slo.service import check
from kiban.store import Store
from kiban.team.oncall import channels, duty_on, on_duty
from kiban.team.postmortem import get, save
from kiban.team.review import review, week_of
from tests.helpers.slo import FIRST, LAKE, MODELS, nightly, utc_deadline
from tests.slo_history import add_run

ROTA = """\
oncall:
  rotation: {rotation}
  handover: "09:00"
  start: 2026-11-02
  people:
    - {{name: Aiko, notify: [aiko]}}
    - {{name: Ben, notify: [ben]}}
    - {{name: Chika}}
  overrides:
    - {{date: 2026-11-26, name: Chika}}
  notify: [team]
"""


def _channels(port: int) -> str:
    return "channels:\n" + "".join(f"  {c}: {{type: webhook, url: 'http://127.0.0.1:{port}/{c}'}}\n"
                                   for c in ("aiko", "ben", "team", "ops"))


def _project(project_dir, rotation: str = "weekly", port: int = 9, extra: str = ""):
    root = project_dir(MODELS, LAKE, config=ROTA.format(rotation=rotation) + _channels(port) + extra)
    return load_project(root)


def jst(day: date, hour: int, minute: int = 0) -> datetime:
    """A Tokyo wall-clock time as naive UTC."""
    return datetime(day.year, day.month, day.day, hour, minute) - timedelta(hours=9)


def test_daily_rotation_skips_weekends_and_holidays(project_dir):
    project = _project(project_dir, "daily")
    # Mon 2 Nov Aiko, Tue 3 Nov is 文化の日 (closed): Aiko keeps it; Wed 4 Ben, Thu 5 Chika, Fri 6 Aiko,
    # the weekend stays with Friday's person, Mon 9 Ben
    expected = {2: "Aiko", 3: "Aiko", 4: "Ben", 5: "Chika", 6: "Aiko", 7: "Aiko", 8: "Aiko", 9: "Ben"}
    assert {d: duty_on(project, date(2026, 11, d)).name for d in expected} == expected
    # before the 09:00 handover, yesterday's person is still on duty
    assert on_duty(project, jst(date(2026, 11, 4), 8, 59)).name == "Aiko"
    assert on_duty(project, jst(date(2026, 11, 4), 9, 0)).name == "Ben"
    assert on_duty(project, jst(date(2026, 11, 1), 12)) is None  # before the rotation starts


def test_weekly_rotation_hands_over_on_the_first_business_day_and_overrides_win(project_dir):
    project = _project(project_dir, "weekly")
    assert duty_on(project, date(2026, 11, 2)).name == "Aiko"
    assert duty_on(project, date(2026, 11, 9)).name == "Ben"
    # Mon 23 Nov is 勤労感謝の日: last week's person keeps the duty until Tuesday's handover
    assert duty_on(project, date(2026, 11, 23)).name == "Chika"
    assert duty_on(project, date(2026, 11, 24)).name == "Aiko"  # the fourth week: back to the first person
    assert duty_on(project, date(2026, 11, 16)).name == "Chika"
    over = duty_on(project, date(2026, 11, 26))
    assert over.name == "Chika"
    assert over.override
    name, where = channels(project, jst(date(2026, 11, 10), 12))
    assert name == "Ben"
    assert where == ["ben", "team"]


@pytest.mark.parametrize(("extra", "message"), [
    ("    - {name: Dan, notify: [pager]}\n", "unknown channel 'pager'"),
    ("", None),
])
def test_a_bad_rotation_names_file_and_line(project_dir, extra, message):
    text = ROTA.format(rotation="weekly").replace("    - {name: Chika}\n", "    - {name: Chika}\n" + extra)
    root = project_dir(MODELS, LAKE, config=text + _channels(9))
    if message is None:
        assert load_project(root).config.oncall is not None
        return
    with pytest.raises((ProjectError, ProjectErrors)) as caught:
        load_project(root)
    assert message in str(caught.value)
    assert "kiban.yml:" in str(caught.value)


def test_an_override_for_someone_not_on_the_rotation_is_refused(project_dir):
    text = ROTA.format(rotation="weekly").replace("name: Chika}\n  notify", "name: Chika}\n  notify").replace(
        "{date: 2026-11-26, name: Chika}", "{date: 2026-11-26, name: Zed}")
    root = project_dir(MODELS, LAKE, config=text + _channels(9))
    with pytest.raises((ProjectError, ProjectErrors), match="'Zed' is not on the rotation"):
        load_project(root)


def test_incidents_go_to_whoever_is_on_call(project_dir, http_hook):
    port, received = http_hook
    project = _project(project_dir, "weekly", port)
    graph = build_graph(project)
    store = Store(project.state_url)
    try:
        add_run(store, "test", "first", FIRST, [("warehouse.orders", "success", 5, None, None)])
        day = date(2026, 11, 10)  # Ben's week
        for previous in range(3, 10):
            nightly(store, date(2026, 11, previous), 600)
        nightly(store, day, 60, fail=True)
        check(project, graph, store, utc_deadline(day) + timedelta(minutes=5))
        paths = {m.get("_path") for m in received}
        with store.engine.connect() as conn:
            from kiban.store.schema import notifications

            sent = {r.channel for r in conn.execute(notifications.select()).all() if r.status == "sent"}
        assert {"ben", "team"} <= sent, (sent, paths)
        assert "aiko" not in sent, (sent, paths)
        ben = next(m for m in received if m.get("fields", {}).get("on call") == "Ben")
        assert "incident" in ben["subject"]
    finally:
        store.close()


def _incident(project, store) -> int:
    graph = build_graph(project)
    add_run(store, "test", "first", FIRST, [("warehouse.orders", "success", 5, None, None)])
    day = date(2026, 11, 10)
    for previous in range(3, 10):
        nightly(store, date(2026, 11, previous), 600)
    nightly(store, day, 60, fail=True)
    check(project, graph, store, utc_deadline(day) + timedelta(minutes=5), notify=False)
    nightly(store, day, 600, run_id="repair")  # the repair: published at 02:10 the next… (after the deadline)
    incident = IncidentLog(store, "test").recent(include_resolved=True)[0]
    IncidentLog(store, "test").resolve(incident.id, "rebuilt after freeing disk space", actor="ben",
                                       at=utc_deadline(day) + timedelta(hours=2))
    return incident.id


def test_a_postmortem_is_drafted_from_the_timeline_and_completed_by_people(project_dir):
    project = _project(project_dir)
    store = Store(project.state_url)
    try:
        incident_id = _incident(project, store)
        first = get(project, store, incident_id)
        assert not first.saved
        assert first.status == "draft"
        body = first.body
        assert "warehouse.orders" in body["root_cause"]
        assert "No space left" in body["root_cause"]
        assert "Store managers (stores)" in body["impact"]
        assert body["on_call"] == "Ben"
        assert body["time_to_repair_s"] == pytest.approx(2 * 3600 - 5 * 60)
        assert body["time_to_detect_s"] is not None
        assert body["time_to_detect_s"] >= 0
        assert any("rebuilt after freeing disk space" in t for t in body["timeline"])
        saved = save(project, store, incident_id, {"lessons": "  alert on disk space at 80%  "}, actor="aiko")
        assert saved.saved
        assert saved.body["lessons"] == "alert on disk space at 80%"
        assert saved.body["root_cause"] == body["root_cause"]  # the drafted facts stay
        final = save(project, store, incident_id, {}, actor="ben", status="final")
        assert final.status == "final"
        assert final.updated_by == "ben"
        assert final.body["lessons"]
        assert "## Lessons\nalert on disk space at 80%" in final.markdown()
        with pytest.raises(Exception, match="not a section people edit"):
            save(project, store, incident_id, {"time_to_repair": "0"}, actor="x")
    finally:
        store.close()


def test_the_weekly_review_counts_incidents_causes_toil_and_budgets(project_dir):
    project = _project(project_dir)
    store = Store(project.state_url)
    try:
        incident_id = _incident(project, store)
        monday = week_of("2026-W46", date(2026, 12, 1))
        assert monday == date(2026, 11, 9)
        assert week_of("2026-11-12", date(2026, 12, 1)) == monday
        assert week_of(None, date(2026, 11, 18)) == monday  # default: last week
        result = review(project, build_graph(project), store, monday)
        assert result.week.incidents == 1
        assert result.week.missed == 1
        assert result.incidents[0]["id"] == incident_id
        assert result.incidents[0]["on_call"] == "Ben"
        assert result.week.repair_hours == pytest.approx((2 * 3600 - 300) / 3600)
        assert result.causes[0]["cause"].startswith("warehouse.orders")
        assert result.budgets
        assert result.budgets[0]["usecase"] == "morning"
        assert any("no postmortem yet for incident" in n for n in result.notes)
        text = result.markdown()
        assert "# Operations review 2026-W46" in text
        assert "| incidents | 1 |" in text
        assert "incidents" in result.message_text()
        assert len(result.previous) == 4
        assert all(w.incidents == 0 for w in result.previous)
    finally:
        store.close()


def test_the_review_is_posted_once_per_week_and_channel(project_dir, http_hook):
    from kiban.team.review import send

    port, received = http_hook
    project = _project(project_dir, port=port, extra="review_notify: [team]\n")
    store = Store(project.state_url)
    try:
        _incident(project, store)
        result = review(project, build_graph(project), store, date(2026, 11, 9), with_budgets=False)
        first = send(project, store, result)
        again = send(project, store, result)
        assert [r.status for r in first] == ["sent"]
        assert [r.status for r in again] == ["suppressed"]
        assert [r.status for r in send(project, store, result, again=True)] in (["sent"], ["suppressed"])
        message = next(m for m in received if "operations review" in m.get("subject", ""))
        assert message["subject"] == "[kiban] operations review 2026-W46"
        assert "1 incidents (1 missed)" in message["text"]
        assert "Repeat causes" not in message["text"]
    finally:
        store.close()


def test_the_review_counts_data_requests_and_their_toil(project_dir):
    from datetime import UTC
    from zoneinfo import ZoneInfo

    from kiban.catalog.requests import RequestDraft, move, new_request

    project = _project(project_dir)
    store = Store(project.state_url)
    try:
        asked = new_request(store, "test", RequestDraft("sales by weather", "mika"))
        move(store, "test", asked, "in_progress", "aiko")
        move(store, "test", asked, "delivered", "aiko", deliverable="mart.daily_sales")
        new_request(store, "test", RequestDraft("still open", "mika"))
        today = datetime.now(UTC).astimezone(ZoneInfo("Asia/Tokyo")).date()  # the project's weeks are local
        result = review(project, build_graph(project), store, week_of("this", today), with_budgets=False)
        week = result.week
        assert (week.requests_opened, week.requests_delivered, result.open_requests) == (2, 1, 1)
        assert week.lead_time_median_days is not None
        assert week.lead_time_median_days < 0.01
        assert 0 <= week.request_hours < 0.01
        assert week.toil_hours == week.request_hours  # no incidents
    finally:
        store.close()
