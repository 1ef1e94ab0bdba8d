"""Service levels: verdicts from constructed histories, budgets, upstream deadlines, impact, incidents."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from kiban.graph import build_graph
from kiban.incidents import IncidentLog
from kiban.project import load_project
from kiban.slo.budget import budget
from kiban.slo.evaluate import Context, Verdict
from kiban.slo.impact import blast_radius, root_cause
from kiban.slo.service import assess, check
from kiban.store import Store
from tests.helpers.slo import FIRST, LAKE, MODELS, nightly, opened, utc_deadline
from tests.slo_history import add_check, add_run


# Tokyo is UTC+9 without DST: 08:30 JST on day D is 23:30 UTC on D-1.
@pytest.fixture
def shop(project_dir):
    with opened(project_dir(MODELS, LAKE)) as shop:
        yield shop


def verdict_of(project, graph, store, day: date, now: datetime) -> Verdict:
    result = assess(project, graph, store, now)
    return next(v for v in [*result.verdicts, *result.ahead] if v.due_date == day)


def test_met_when_published_before_the_deadline(shop):
    project, graph, store = shop
    day = date(2026, 11, 10)
    ready = nightly(store, day, 600)
    verdict = verdict_of(project, graph, store, day, utc_deadline(day) + timedelta(hours=5))
    assert verdict.verdict == "met"
    assert verdict.satisfied_at == ready
    assert verdict.deadline == datetime(2026, 11, 9, 23, 30)


def test_late_with_exact_lateness(shop):
    project, graph, store = shop
    day = date(2026, 11, 10)
    nightly(store, day, 6.5 * 3600 + 1234)  # 02:00 + 6h30m + 1234 s = 08:30 + 1234 s
    verdict = verdict_of(project, graph, store, day, utc_deadline(day) + timedelta(hours=5))
    assert verdict.verdict == "late"
    assert verdict.lateness_s == 1234


def test_failed_when_nothing_was_published_and_the_evidence_names_the_failure(shop):
    project, graph, store = shop
    day = date(2026, 11, 10)
    nightly(store, day, 60, fail=True)
    verdict = verdict_of(project, graph, store, day, utc_deadline(day) + timedelta(minutes=1))
    assert verdict.verdict == "failed"
    failures = {f["asset"]: f for f in verdict.evidence["failures"]}
    assert failures["warehouse.orders"]["error"] == "IO Error: No space left on device"
    assert root_cause(graph, verdict.evidence["failures"])["asset"] == "warehouse.orders"


def test_a_failed_day_turns_late_when_repaired_after_the_deadline(shop):
    project, graph, store = shop
    day = date(2026, 11, 10)
    nightly(store, day, 60, fail=True)
    repair = utc_deadline(day) + timedelta(hours=2, minutes=10)
    add_run(store, "test", "repair", repair - timedelta(minutes=3),
            [("warehouse.orders", "success", 60, None, None),
             ("mart.daily_sales", "success", 180, day - timedelta(days=1), None)])
    verdict = verdict_of(project, graph, store, day, utc_deadline(day) + timedelta(hours=5))
    assert verdict.verdict == "late"
    assert verdict.lateness_s == 2 * 3600 + 600


def test_incomplete_when_the_data_does_not_reach_yesterday(shop):
    project, graph, store = shop
    day = date(2026, 11, 10)
    nightly(store, day, 600, watermark=day - timedelta(days=3))
    verdict = verdict_of(project, graph, store, day, utc_deadline(day) + timedelta(minutes=5))
    assert verdict.verdict == "incomplete"
    assert verdict.evidence["data_through"] == "2026-11-09"
    assert verdict.evidence["assets"]["mart.daily_sales"]["reach"] == "2026-11-07"


def test_bad_data_when_a_blocking_check_failed(shop):
    project, graph, store = shop
    day = date(2026, 11, 10)
    ready = nightly(store, day, 600)
    add_check(store, "mart.daily_sales", "not_null(n)", "fail", ready - timedelta(seconds=1))
    verdict = verdict_of(project, graph, store, day, utc_deadline(day) + timedelta(minutes=5))
    assert verdict.verdict == "bad_data"
    assert verdict.evidence["failed_checks"] == ["mart.daily_sales: not_null(n)"]


def test_a_later_passing_check_clears_bad_data(shop):
    project, graph, store = shop
    day = date(2026, 11, 10)
    ready = nightly(store, day, 600)
    add_check(store, "mart.daily_sales", "not_null(n)", "fail", ready - timedelta(seconds=30))
    add_check(store, "mart.daily_sales", "not_null(n)", "pass", ready - timedelta(seconds=1))
    assert verdict_of(project, graph, store, day, utc_deadline(day)).verdict == "met"


def test_pending_before_the_deadline_and_at_risk_after_a_failure(shop):
    project, graph, store = shop
    day = date(2026, 11, 10)
    before = utc_deadline(day) - timedelta(hours=1)
    assert verdict_of(project, graph, store, day, before).verdict == "pending"
    nightly(store, day, 60, fail=True)
    assert verdict_of(project, graph, store, day, before).verdict == "at_risk"


def test_days_before_the_first_run_are_not_judged(shop):
    project, graph, store = shop
    result = assess(project, graph, store, datetime(2026, 11, 3, 12))
    assert sorted(v.due_date for v in result.verdicts) == [date(2026, 11, 2), date(2026, 11, 3)]
    # the next delivery, on a later date but due within LOOKAHEAD, is watched for risk apart (not the day's verdict)
    assert [(v.due_date, v.verdict) for v in result.ahead] == [(date(2026, 11, 4), "pending")]


def test_error_budget_attainment_and_burn_rate(shop):
    _project, _graph, _store = shop
    today = date(2026, 11, 20)
    verdicts = [Verdict("morning", today - timedelta(days=i), datetime(2026, 1, 1),
                        "late" if i in (0, 1) else "met") for i in range(10)]
    spent = budget("morning", 0.9, 10, verdicts, today)
    assert (spent.due, spent.met, spent.missed, spent.allowed, spent.left) == (10, 8, 2, 1, -1)
    assert spent.attainment == pytest.approx(0.8)
    assert spent.burn_rate == pytest.approx((2 / 7) / 0.1)
    assert spent.fast_burn
    assert spent.exhausted


def test_upstream_deadlines_subtract_p90_of_everything_below(shop):
    project, graph, store = shop
    day = date(2026, 11, 10)
    for n in range(5):  # history: orders takes 100 s, daily_sales 200 s (its run's offsets)
        add_run(store, "test", f"h{n}", FIRST + timedelta(hours=n + 1),
                [("warehouse.orders", "success", 100, None, None), ("mart.daily_sales", "success", 200, None, None)])
    result = assess(project, graph, store, utc_deadline(day) - timedelta(hours=3))
    deadline = utc_deadline(day)
    assert result.safe_finish["mart.daily_sales"].latest_finish == deadline
    assert result.safe_finish["warehouse.orders"].latest_finish == deadline - timedelta(seconds=200)
    assert result.safe_finish["lake.orders"].latest_finish == deadline - timedelta(seconds=300)
    assert "mart.other" not in result.safe_finish  # no use case reads it


def test_blast_radius_names_use_cases_and_consumers(shop):
    project, graph, _ = shop
    found = blast_radius(project, graph, "warehouse.orders")
    assert found.usecases == ["morning"]
    assert found.consumers[0]["name"] == "Store managers"
    assert found.downstream == ["mart.daily_sales", "mart.other"]
    assert blast_radius(project, graph, "mart.other").usecases == []


def test_check_opens_one_incident_per_day_with_root_cause_and_workaround(shop):
    project, graph, store = shop
    day = date(2026, 11, 10)
    nightly(store, day, 60, fail=True)
    now = utc_deadline(day) + timedelta(minutes=30)
    first = check(project, graph, store, now, notify=False)
    mine = [i for i in first.incidents if i.due_date == day]
    assert [i.verdict for i in mine] == ["failed"]
    assert len({i.due_date for i in first.incidents}) == len(first.incidents)  # one per use case and day
    incident = mine[0]
    assert incident.root_cause["asset"] == "warehouse.orders"
    # rebuilds what the use case misses from the failed step on (``--resume`` would also re-run unrelated work)
    assert incident.workaround == "kiban run +mart.daily_sales"
    assert incident.root_cause["kind"] == "failed"
    assert incident.impact["consumers"][0]["name"] == "Store managers"
    again = check(project, graph, store, now + timedelta(minutes=5), notify=False)
    assert again.incidents == []  # deduplicated: nothing new to say
    log = IncidentLog(store, "test")
    assert len([i for i in log.recent() if i.due_date == day]) == 1
    # repaired late: the same incident gets a 'met_late' event instead of a new incident, and is closed
    add_run(store, "test", "repair", now, [("warehouse.orders", "success", 30, None, None),
                                            ("mart.daily_sales", "success", 60, day - timedelta(days=1), None)])
    later = check(project, graph, store, now + timedelta(hours=1), notify=False)
    assert [i.verdict for i in later.incidents if i.due_date == day] == ["late"]
    assert [e.kind for e in log.events(incident.id)] == ["failed", "met_late", "repaired"]
    closed = log.require(incident.id)
    assert closed.status == "resolved"
    assert "fixed by run repair" in (closed.note or "")


def test_an_at_risk_incident_closes_itself_when_the_data_arrives_in_time(shop):
    project, graph, store = shop
    day = date(2026, 11, 10)
    nightly(store, day, 60, fail=True)
    early = utc_deadline(day) - timedelta(hours=2)
    opened = [i for i in check(project, graph, store, early, notify=False).incidents if i.due_date == day]
    assert [(i.kind, i.status) for i in opened] == [("at_risk", "open")]
    add_run(store, "test", "fixed", early, [("warehouse.orders", "success", 30, None, None),
                                             ("mart.daily_sales", "success", 60, day - timedelta(days=1), None)])
    closed = [i for i in check(project, graph, store, early + timedelta(minutes=10), notify=False).incidents
              if i.due_date == day]
    assert [(i.kind, i.status) for i in closed] == [("at_risk", "resolved")]
    assert [e.kind for e in IncidentLog(store, "test").events(opened[0].id)] == ["at_risk", "recovered"]


def test_context_lists_everything_upstream_of_a_use_case(shop):
    project, graph, _ = shop
    ctx = Context.build(project, graph)
    assert ctx.upstream("morning") == ["lake.orders", "warehouse.orders", "mart.daily_sales"]


def test_consumers_and_owners_are_told_and_a_dead_channel_breaks_nothing(project_dir, http_hook, dead_port):
    port, received = http_hook
    usecase = MODELS["usecases/morning.yml"].replace(
        "consumers:\n  - name: Store managers\n",
        "owner_notify: [ops, dead]\nconsumers:\n  - name: Store managers\n    notify: [stores]\n")
    channels = (f"channels:\n  stores: {{type: webhook, url: 'http://127.0.0.1:{port}/stores'}}\n"
                f"  ops: {{type: slack, url: 'http://127.0.0.1:{port}/ops'}}\n"
                f"  dead: {{type: webhook, url: 'http://127.0.0.1:{dead_port}/x', retries: 1}}\n")
    root = project_dir({**MODELS, "usecases/morning.yml": usecase}, LAKE, config=channels)
    project = load_project(root)
    graph = build_graph(project)
    store = Store(project.state_url)
    try:
        add_run(store, "test", "first", FIRST, [("warehouse.orders", "success", 5, None, None)])
        day = date(2026, 11, 10)
        for previous in range(2, 10):  # earlier days went fine
            nightly(store, date(2026, 11, previous), 600)
        nightly(store, day, 60, fail=True)
        result = check(project, graph, store, utc_deadline(day) + timedelta(minutes=5))
        assert [i.due_date for i in result.incidents] == [day]
        consumer = next(m for m in received if "subject" in m)
        # in the consumers' words: the description, no internal ids, no doubled punctuation
        assert consumer["subject"] == "[kiban] Store managers read yesterday's sales before the meeting: not ready"
        assert "morning" not in consumer["text"]
        assert "warehouse" not in consumer["text"]
        assert "a processing step failed" in consumer["text"]
        owner = next(m for m in received if "blocks" in m)
        assert "warehouse.orders" in owner["text"]
        assert "kiban run +mart.daily_sales" in owner["text"]
        with store.engine.connect() as conn:
            from kiban.store.schema import notifications

            rows = {r.channel: r for r in conn.execute(notifications.select()).all()}
        assert rows["dead"].status == "failed"
        assert rows["dead"].attempts == 2
        assert rows["stores"].status == rows["ops"].status == "sent"
    finally:
        store.close()


def test_a_use_case_added_later_is_not_held_to_the_past(shop):
    project, graph, store = shop
    day = date(2026, 11, 10)
    nightly(store, day, 60, fail=True)
    now = utc_deadline(day) + timedelta(hours=1)
    assert any(v.usecase == "morning" for v in check(project, graph, store, now, notify=False).verdicts)
    (project.root / "usecases/second.yml").write_text(MODELS["usecases/morning.yml"])
    later = load_project(project.root)
    result = check(later, build_graph(later), store, now, notify=False)
    assert [v for v in result.verdicts if v.usecase == "second"] == []
    assert all(i.usecase == "morning" for i in IncidentLog(store, "test").recent())
    next_day = check(later, build_graph(later), store, utc_deadline(day + timedelta(days=1)) + timedelta(hours=1),
                     notify=False)
    assert [v.due_date for v in next_day.verdicts if v.usecase == "second"] == [day + timedelta(days=1)]


def test_the_timeline_is_stored_as_parts_that_say_the_same_english(shop):
    """Each event kiban writes carries its sentence as parts (kind + parameters, kiban.messages): the console
    says them in the reader's language; in English they are the stored message, word for word."""
    from kiban.messages import say

    project, graph, store = shop
    day = date(2026, 11, 10)
    nightly(store, day, 60, fail=True)
    now = utc_deadline(day) + timedelta(minutes=30)
    incident = next(i for i in check(project, graph, store, now, notify=False).incidents if i.due_date == day)
    add_run(store, "test", "repair", now, [("warehouse.orders", "success", 30, None, None),
                                            ("mart.daily_sales", "success", 60, day - timedelta(days=1), None)])
    check(project, graph, store, now + timedelta(hours=1), notify=False)
    events = IncidentLog(store, "test").events(incident.id)
    assert [say(e.said) for e in events] == [e.message for e in events]
    assert [e.said[0]["kind"] for e in events if e.said] == ["event.failed", "event.late", "event.repaired"]
    assert say(incident.root_cause["said"]) == incident.root_cause["reason"]


def test_a_timeline_entry_written_before_parts_reads_as_it_was_written(shop):
    _project, _graph, store = shop
    from kiban.incidents import IncidentDraft

    log = IncidentLog(store, "test")
    incident, _ = log.record(IncidentDraft("morning", date(2026, 11, 10), "missed", "failed", "an old sentence"))
    assert [(e.message, e.said) for e in log.events(incident.id)] == [("an old sentence", None)]


@pytest.mark.parametrize("hours_before", [1, 3, 6, 9, 10, 12, 15, 17])
def test_a_failure_the_evening_before_puts_the_next_morning_at_risk_at_once(shop, hours_before):
    """Whatever the time of day of the failure — the same local day as the 08:30 deadline or the evening before
    (08:30 JST minus 9 h and more is the previous local date) — the next delivery is at risk from the moment its
    build failed, not from local midnight."""
    project, graph, store = shop
    day = date(2026, 11, 10)
    failed_at = utc_deadline(day) - timedelta(hours=hours_before)
    add_run(store, project.name, f"evening-{hours_before}", failed_at,
            [("warehouse.orders", "failed", 60, None, "IO Error: No space left on device")])
    verdict = verdict_of(project, graph, store, day, failed_at + timedelta(minutes=2))
    assert verdict.verdict == "at_risk"
