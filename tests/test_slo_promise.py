"""Hold-out attacks on the service-level promise: verdicts that must not depend on how they are asked."""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from kiban.incidents import IncidentLog
from kiban.project.usecase import Need
from kiban.slo.arrival import GRACE, expectation
from kiban.slo.calendar import deadline_utc
from kiban.slo.evaluate import Context
from kiban.slo.facts import load_facts
from kiban.slo.service import assess, check
from tests.helpers.oracle import oracle_deadline
from tests.helpers.slo import LAKE, MODELS, nightly, opened
from tests.slo_history import add_check, add_run


def _quarterly(project_dir, data_through: str = "none"):
    files = dict(MODELS)
    files["usecases/morning.yml"] = (
        "assets: [daily_sales]\n"
        f"need: {{by: '08:30', on: 'cron: 0 10 1 1,4,7,10 *', calendar: none, data_through: {data_through}}}\n"
        "target: {attainment: 0.9, window_days: 10}\n")
    return opened(project_dir(files, LAKE))


def test_a_quarterly_delivery_days_before_its_deadline_is_met(project_dir):
    """The window of a due day opens at the previous due day's deadline, however far back that is: a quarterly
    report built three days early is delivered (it used to get a one-day window, and fail, because the previous
    due day lay more than a month back)."""
    with _quarterly(project_dir) as (project, graph, store):
        add_run(store, project.name, "early", datetime(2026, 3, 28, 17, 0),
                [("warehouse.orders", "success", 30, None, None),
                 ("mart.daily_sales", "success", 60, date(2026, 3, 28), None)])
        now = datetime(2026, 4, 1, 3, 0)  # 12:00 JST, after the 08:30 deadline
        result = assess(project, graph, store, now)
        verdict = next(v for v in result.verdicts if v.due_date == date(2026, 4, 1))
        assert verdict.evidence["window_start"] == datetime(2025, 12, 31, 23, 30).isoformat()  # 2026-01-01 08:30 JST
        assert verdict.verdict == "met"
        assert verdict.satisfied_at == datetime(2026, 3, 28, 17, 1)


def test_a_pass_of_one_check_does_not_clear_or_keep_another(project_dir):
    """"bad_data: … and no later run of *that* check passed." The night's build is refused by check ``a``; the
    re-run after a fix passes ``a`` and is refused by ``b``. A use case that needs only ``a`` is not ``bad_data``
    naming ``a`` (it was: any later failure kept ``a``'s cleared failure alive) — its data simply did not come;
    one that needs every check is ``bad_data`` by ``b`` alone."""
    files = dict(MODELS)
    files["models/mart/daily_sales.yml"] = ("time_column: order_date\nchecks:\n"
                                           "  - {name: a, not_null: order_date}\n  - {name: b, not_null: n}\n")
    need = "need: {by: '08:30', on: every_day, calendar: none, data_through: yesterday, checks: CHECKS}\n"
    files["usecases/morning.yml"] = "assets: [daily_sales]\n" + need.replace("CHECKS", "[a]")
    files["usecases/audit.yml"] = "assets: [daily_sales]\n" + need.replace("CHECKS", "all")
    day = date(2026, 11, 10)
    with opened(project_dir(files, LAKE)) as (project, graph, store):
        for run, start, statuses in (("night", datetime(2026, 11, 9, 17, 0), {"a": "fail", "b": "pass"}),
                                     ("rerun", datetime(2026, 11, 9, 18, 0), {"a": "pass", "b": "fail"})):
            refused = next(name for name, status in statuses.items() if status == "fail")
            ended = add_run(store, project.name, run, start,
                            [("warehouse.orders", "success", 30, None, None),
                             ("mart.daily_sales", "failed", 60, None, f"check {refused} failed")])
            for name, status in statuses.items():  # one evaluation: every check of the table at one moment
                add_check(store, "mart.daily_sales", name, status, ended - timedelta(seconds=1))
        result = assess(project, graph, store, datetime(2026, 11, 10, 3, 0))  # 12:00 JST, after the deadline
        verdicts = {v.usecase: v for v in result.verdicts if v.due_date == day}
        assert verdicts["morning"].verdict == "failed", verdicts["morning"].evidence
        assert "failed_checks" not in verdicts["morning"].evidence
        assert verdicts["audit"].verdict == "bad_data"
        assert verdicts["audit"].evidence["failed_checks"] == ["mart.daily_sales: b"]


NEW_YORK_SOURCE = ("type: files\ntables:\n"
                   "  orders: {path: landing/orders/*.csv, optional: true, time_column: order_date}\n")


def _nightly_new_york(project_dir):
    files = {**MODELS, "sources/pos.yml": NEW_YORK_SOURCE,
             "models/warehouse/orders.sql": "select * from lake.pos_orders"}
    files["usecases/morning.yml"] = ("owner: data-team\nassets: [daily_sales]\n"
                                     "need: {by: '08:30', on: every_day, calendar: none, data_through: yesterday}\n")
    root = project_dir(files, config="")
    (root / "kiban.yml").write_text("name: test\ntimezone: America/New_York\n")
    return opened(root)


def _night(store, project, day: date) -> None:
    """The source lands at 01:00 New York time on ``day``, the marts follow within ten minutes."""
    start = datetime(day.year, day.month, day.day, 1, 0, tzinfo=ZoneInfo("America/New_York")
                     ).astimezone(UTC).replace(tzinfo=None)
    add_run(store, project.name, f"night-{day}", start,
            [("lake.pos_orders", "success", 60, day - timedelta(days=1), None),
             ("warehouse.orders", "success", 300, None, None),
             ("mart.daily_sales", "success", 600, day - timedelta(days=1), None)])


@pytest.mark.parametrize(("switch", "calm", "alarm"), [
    (date(2026, 3, 8), datetime(2026, 3, 8, 5, 45), datetime(2026, 3, 8, 6, 45)),  # 00:45 and 01:45 EST
    (date(2026, 11, 1), datetime(2026, 11, 1, 5, 15), datetime(2026, 11, 1, 5, 45)),  # 01:15 and 01:45 EDT
])
def test_a_learned_arrival_follows_the_wall_clock_across_daylight_saving(project_dir, switch, calm, alarm):
    """A source that lands at 01:00 every night is expected at 01:00 (+ the grace) on the nights the clocks change
    too. An expectation learned as "7 h 30 min before the 08:30 deadline" put it at 00:30 on the spring-forward night
    (an hour shorter) — the use case at risk at 00:45, before the usual load — and at 01:30 *EST* on the fall-back
    night, an hour after 01:30 EDT, so a missing load was noticed an hour late."""
    with _nightly_new_york(project_dir) as (project, graph, store):
        for back in range(14, 0, -1):
            _night(store, project, switch - timedelta(days=back))
        verdict = next(v for v in assess(project, graph, store, calm).verdicts if v.due_date == switch)
        assert verdict.verdict == "pending", verdict.evidence
        verdict = next(v for v in assess(project, graph, store, alarm).verdicts if v.due_date == switch)
        assert verdict.verdict == "at_risk", verdict.evidence
        assert verdict.evidence["late_sources"][0]["asset"] == "lake.pos_orders"


def test_a_late_start_is_measured_on_the_wall_clock_across_daylight_saving(project_dir):
    """The nightly run starts at 01:00 New York time for a 03:05 delivery. On the spring-forward night it started
    at 01:50 EST — 50 minutes late — and a slow step made the delivery late: the cause is the late start, by
    50 minutes on the clock everyone reads (it was said to be 1 h 50 min: the lead measured in elapsed time, on
    a night an hour shorter)."""
    files = dict(MODELS)
    files["usecases/morning.yml"] = ("owner: data-team\nassets: [daily_sales]\n"
                                     "need: {by: '03:05', on: every_day, calendar: none}\n")
    root = project_dir(files, LAKE)
    (root / "kiban.yml").write_text("name: test\ntimezone: America/New_York\n")
    switch = date(2026, 3, 8)
    with opened(root) as (project, graph, store):
        for back in range(14, 0, -1):
            day = switch - timedelta(days=back)
            add_run(store, project.name, f"night-{day}", datetime(day.year, day.month, day.day, 6, 0),  # 01:00 EST
                    [("warehouse.orders", "success", 60, None, None),
                     ("mart.daily_sales", "success", 600, day, None)])
        add_run(store, project.name, "late", datetime(2026, 3, 8, 6, 50),  # 01:50 EST
                [("warehouse.orders", "success", 60, None, None),
                 ("mart.daily_sales", "success", 42 * 60, switch, None)])
        verdict = next(v for v in assess(project, graph, store, datetime(2026, 3, 8, 9, 0)).verdicts
                       if v.due_date == switch)
        assert verdict.verdict == "late"
        assert verdict.lateness_s == 27 * 60  # 07:32 UTC against 03:05 EDT = 07:05 UTC
        assert verdict.evidence["cause"]["kind"] == "late_start"
        assert verdict.evidence["cause"]["amount_s"] == 50 * 60


def _switch_days(zone: ZoneInfo, year: int) -> list[date]:
    """The local dates on which the clocks change in ``zone`` (the offset at noon differs from the day before's)."""
    days = [date(year, 1, 1) + timedelta(days=i) for i in range(366)]
    noon = [datetime(d.year, d.month, d.day, 12, tzinfo=zone).utcoffset() for d in days]
    return [d for d, before, after in zip(days[1:], noon, noon[1:], strict=False) if before != after]


SWITCHES = [(name, day) for name in ("America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "America/Santiago",
                                     "Australia/Sydney") for day in _switch_days(ZoneInfo(name), 2026)]


@pytest.mark.parametrize(("zone", "switch"), SWITCHES)
def test_learned_arrivals_on_every_switch_night_are_the_usual_wall_clock_time(project_dir, zone, switch):
    """On each night the clocks change (30-minute DST and a switch at midnight included), a source that lands at the
    same local time every night is expected at that local time plus the grace, read from the wall clock."""
    rng = random.Random(f"{zone}{switch}")
    land = time(rng.randrange(0, 4), rng.choice((0, 15, 30, 45)))
    by = f"{rng.randrange(land.hour + 2, 12):02d}:{rng.choice((0, 30)):02d}"
    files = {**MODELS, "sources/pos.yml": NEW_YORK_SOURCE,
             "models/warehouse/orders.sql": "select * from lake.pos_orders"}
    files["usecases/morning.yml"] = ("owner: data-team\nassets: [daily_sales]\n"
                                     f"need: {{by: '{by}', on: every_day, calendar: none, data_through: yesterday}}\n")
    root = project_dir(files)
    (root / "kiban.yml").write_text(f"name: test\ntimezone: {zone}\n")
    tz = ZoneInfo(zone)
    with opened(root) as (project, graph, store):
        for back in range(14, 0, -1):
            day = switch - timedelta(days=back)
            start = oracle_deadline(day, land.strftime("%H:%M"), tz)
            add_run(store, project.name, f"night-{day}", start,
                    [("lake.pos_orders", "success", 60, day - timedelta(days=1), None),
                     ("warehouse.orders", "success", 120, None, None),
                     ("mart.daily_sales", "success", 180, day - timedelta(days=1), None)])
        ctx = Context.build(project, graph)
        facts = load_facts(store, project.name, datetime(2026, 1, 1) if switch.month > 2 else datetime(2025, 12, 1))
        deadline = oracle_deadline(switch, by, tz)
        found = expectation(ctx, facts, project.usecases["morning"], "lake.pos_orders", switch, deadline)
        assert found is not None
        landed = oracle_deadline(switch, land.strftime("%H:%M"), tz) + timedelta(minutes=1)  # the load took a minute
        assert found.expected_at == landed + GRACE, (land, by)


def test_history_shows_every_day_asked_for_beyond_the_budget_window(project_dir, cli):
    """`kiban slo history --days 30` of a use case with a 10-day budget window lists 30 days, as its "from" says
    (it listed the 10 of the window)."""
    with opened(project_dir(MODELS, LAKE)) as (project, _graph, store):
        today = datetime.now(UTC).astimezone(ZoneInfo("Asia/Tokyo")).date()
        for back in range(40, 0, -1):
            day = today - timedelta(days=back)
            add_run(store, project.name, f"night-{day}",  # 02:00 JST
                    datetime(day.year, day.month, day.day, 17, 0),
                    [("warehouse.orders", "success", 30, None, None),
                     ("mart.daily_sales", "success", 60, day, None)])
        root = project.root
    out = cli("--project", root, "slo", "history", "morning", "--days", "30", "--json")
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert shown["from"] == str(today - timedelta(days=29))
    assert [d["due_date"] for d in shown["days"]][:2] == [str(today - timedelta(days=n)) for n in (29, 28)]
    assert {d["verdict"] for d in shown["days"] if d["due_date"] < str(today)} == {"met"}


def test_a_night_that_never_starts_is_seen_after_a_morning_repair(project_dir):
    """Yesterday's nightly build failed and was repaired at 10:00, after yesterday's deadline; tonight nothing
    starts (the scheduler is down). The morning repair is no build of today's delivery — it could not hold a whole
    yesterday — so today turns at risk ("not started") when the path would have to start, not failed at 08:30
    without a warning (the repair, inside today's window, counted as today's build having started)."""
    with opened(project_dir(MODELS, LAKE)) as (project, graph, store):
        for back in range(10, 1, -1):
            day = date(2026, 11, 10) - timedelta(days=back)
            nightly(store, day, 600)
        add_run(store, project.name, "failed", datetime(2026, 11, 8, 17, 0),  # 02:00 JST on the 9th
                [("warehouse.orders", "failed", 60, None, "IO Error: No space left on device")])
        add_run(store, project.name, "repair", datetime(2026, 11, 9, 1, 0),  # 10:00 JST on the 9th
                [("warehouse.orders", "success", 300, None, None),
                 ("mart.daily_sales", "success", 600, date(2026, 11, 8), None)])
        now = datetime(2026, 11, 9, 23, 10)  # 08:10 JST on the 10th: the 10-minute path must start by 08:20
        verdict = next(v for v in check(project, graph, store, now, notify=False).verdicts
                       if v.due_date == date(2026, 11, 10))
        assert verdict.verdict == "at_risk", verdict.evidence
        assert verdict.evidence["not_started"]["asset"] == "warehouse.orders"


def test_a_deadline_is_on_its_due_day_and_24_00_is_refused_with_a_hint(tmp_path):
    """`by: "01:00"` is 01:00 on the due day (the night before it, not the night after); `"24:00"` is no time of
    day, and the message says what to write instead."""
    assert deadline_utc(date(2026, 11, 10), Need(by="01:00").deadline, ZoneInfo("Asia/Tokyo")) == \
        datetime(2026, 11, 9, 16, 0)
    with pytest.raises(ValueError, match='write "23:59" for the end of the due day'):
        Need(by="24:00")


def test_a_night_that_never_starts_is_seen_before_a_deadline_just_after_midnight(project_dir):
    """Due at 00:30; the two-hour build usually runs at 21:00 the evening before. Tonight nothing starts: at 22:20
    the delivery (tomorrow's date, watched within 18 hours) is at risk — the path must start by 22:30 — not only
    once the date has turned, when it is already too late."""
    files = dict(MODELS)
    files["usecases/morning.yml"] = ("owner: data-team\nassets: [daily_sales]\n"
                                     "need: {by: '00:30', on: every_day, calendar: none}\n")
    with opened(project_dir(files, LAKE)) as (project, graph, store):
        for back in range(10, 0, -1):
            day = date(2026, 11, 10) - timedelta(days=back)
            add_run(store, project.name, f"night-{day}", datetime(day.year, day.month, day.day, 12, 0),  # 21:00 JST
                    [("warehouse.orders", "success", 3600, None, None),
                     ("mart.daily_sales", "success", 7200, day, None)])
        now = datetime(2026, 11, 10, 13, 20)  # 22:20 JST on the 10th; due 00:30 on the 11th
        result = check(project, graph, store, now, notify=False)
        ahead = next(v for v in result.ahead if v.due_date == date(2026, 11, 11))
        assert ahead.verdict == "at_risk", ahead.evidence
        assert ahead.evidence["not_started"]["asset"] == "warehouse.orders"
        incident = IncidentLog(store, project.name).open_for("morning", date(2026, 11, 11))
        assert incident is not None
        assert incident.verdict == "at_risk"
