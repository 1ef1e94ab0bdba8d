"""A day delivered whole: data that reaches a day counts for it only when it was read after the day ended.

The use case (tests/helpers/slo.py) needs yesterday's sales by 08:30 JST; lake.pos_orders (a source table) is
timed. Day D is 2026-11-09; it ends at 2026-11-09 15:00 UTC (midnight JST); the deadline is 2026-11-09 23:30 UTC.
"""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta

import pytest

from kiban.slo.cause import explain
from kiban.slo.completeness import delivered_at
from kiban.slo.facts import load_facts
from kiban.slo.impact import repair
from kiban.slo.service import assess
from kiban.store.schema import attempts, runs
from tests.helpers.slo import MODELS, opened

DUE = date(2026, 11, 10)
DAY = date(2026, 11, 9)
DEADLINE = datetime(2026, 11, 9, 23, 30)
AFTER = DEADLINE + timedelta(hours=3)


def jst(day: date, hour: int, minute: int = 0) -> datetime:
    """Naive UTC of ``day`` ``hour``:``minute`` in Tokyo."""
    return datetime(day.year, day.month, day.day, hour, minute) - timedelta(hours=9)


SOURCE = """\
type: files
tables:
  orders: {path: landing/orders/*.csv, optional: true, time_column: order_date, expected_by: "03:00"}
  plans: {path: landing/plans/*.csv, optional: true, time_column: plan_date}
"""


@pytest.fixture
def shop(project_dir):
    files = {**MODELS, "sources/pos.yml": SOURCE, "models/warehouse/orders.sql": "select * from lake.pos_orders",
             "models/mart/targets.sql": "select p.plan_date, p.target, count(*) as n from lake.pos_plans p "
                                        "join warehouse.orders o on o.order_date = p.plan_date group by all",
             "models/mart/targets.yml": "time_column: plan_date\n",
             "usecases/targets.yml": "owner: data-team\nassets: [targets]\n"
                                     "need: {by: '08:30', on: every_day, calendar: none, data_through: yesterday}\n",
             "usecases/today.yml": "owner: data-team\nassets: [daily_sales]\n"
                                   "need: {by: '18:00', on: every_day, calendar: none, data_through: today}\n"}
    with opened(project_dir(files)) as shop:
        yield shop


def run(store, name: str, start: datetime, steps: list[tuple[str, str, date | None]]) -> datetime:
    """A run from ``start`` whose steps (asset, status, watermark) take a minute each, one after the other (a
    fresh step: confirmed in an instant, after the collection); returns when it ended."""
    rows, at = [], start
    for asset, status, mark in steps:
        took = timedelta(0) if status == "fresh" else timedelta(minutes=1)
        rows.append({"run_id": name, "asset": asset, "attempt": 1, "status": status, "started_at": at,
                     "ended_at": at + took, "seconds": took.total_seconds(), "watermark": mark,
                     "error": "IO Error: connection reset" if status == "failed" else None})
        at += took
    with store.engine.begin() as conn:
        conn.execute(runs.insert().values(run_id=name, project="test", status="success", selection="[]",
                                          options="{}", started_at=start, ended_at=at, heartbeat_at=at))
        conn.execute(attempts.insert(), rows)
    return at


def intraday(store, day: date = DAY) -> None:
    """An hourly collection at 15:00 on ``day``: the rows reach ``day``, but only its first fifteen hours."""
    run(store, f"intraday-{day}", jst(day, 15), [("lake.pos_orders", "success", day),
                                                 ("warehouse.orders", "success", None),
                                                 ("mart.daily_sales", "success", day)])


def verdict(project, graph, store, usecase: str = "morning", due: date = DUE, now: datetime = AFTER):
    result = assess(project, graph, store, now)
    return next(v for v in [*result.verdicts, *result.ahead] if v.usecase == usecase and v.due_date == due), result


def test_half_a_day_read_in_the_afternoon_is_not_yesterday_delivered(shop):
    project, graph, store = shop
    intraday(store)
    found, result = verdict(project, graph, store)
    assert found.verdict == "incomplete"  # before: "met" on fifteen hours of the day
    assert found.evidence["assets"]["mart.daily_sales"]["partial"] == {"source": "lake.pos_orders",
                                                                       "read_at": "2026-11-09T06:00:00"}
    window = DEADLINE - timedelta(days=1)
    cause = explain(result.context, result.facts, found.verdict, found.evidence, window, DEADLINE,
                    usecase="morning")
    assert cause is not None
    assert cause["kind"] == "partial_day"
    assert cause["reason"] == ("lake.pos_orders was last read at 2026-11-09 15:00, before 2026-11-09 was over: "
                               "the data holds only part of that day")
    command, words = repair(cause, ("mart.daily_sales",))
    assert command == "kiban run +mart.daily_sales"
    assert "collects lake.pos_orders again" in words


def test_before_the_deadline_a_source_read_only_in_the_afternoon_is_overdue(shop):
    project, graph, store = shop
    intraday(store)  # nothing since: at 04:00 the 03:00 load of the whole day has not come
    found, _ = verdict(project, graph, store, now=jst(DUE, 4))
    assert found.verdict == "at_risk"
    assert [s["asset"] for s in found.evidence["late_sources"]] == ["lake.pos_orders"]


def test_the_nightly_collection_failing_after_an_intraday_load_is_a_miss_caused_by_the_failure(shop):
    project, graph, store = shop
    intraday(store)
    run(store, "nightly", jst(DUE, 2), [("lake.pos_orders", "failed", None), ("warehouse.orders", "skipped", None),
                                        ("mart.daily_sales", "skipped", None)])
    found, result = verdict(project, graph, store)
    assert found.verdict == "incomplete"
    window = DEADLINE - timedelta(days=1)
    cause = explain(result.context, result.facts, found.verdict, found.evidence, window, DEADLINE,
                    usecase="morning")
    assert (cause or {}).get("asset") == "lake.pos_orders"
    assert (cause or {}).get("kind") == "failed"


@pytest.mark.parametrize("nightly, expected", [
    # the nightly run collects the whole day and rebuilds: delivered when the mart is published
    ([("lake.pos_orders", "success", DAY), ("warehouse.orders", "success", None), ("mart.daily_sales", "success", DAY)],
     "met"),
    # the source had nothing newer: the look at 02:00 confirms the data, and the mart is found current
    ([("lake.pos_orders", "success", None), ("warehouse.orders", "fresh", None), ("mart.daily_sales", "fresh", None)],
     "met"),
    # the mart rebuilt after midnight on the afternoon's read (the source was not collected again)
    ([("warehouse.orders", "success", None), ("mart.daily_sales", "success", DAY)], "incomplete"),
])
def test_what_the_night_does_after_an_intraday_load(shop, nightly, expected):
    project, graph, store = shop
    intraday(store)
    run(store, "nightly", jst(DUE, 2), nightly)
    found, _ = verdict(project, graph, store)
    assert found.verdict == expected, found.evidence


def test_the_repair_delivers_the_whole_day_late(shop):
    project, graph, store = shop
    intraday(store)
    assert verdict(project, graph, store, now=DEADLINE + timedelta(minutes=5))[0].verdict == "incomplete"
    run(store, "repair", jst(DUE, 9), [("lake.pos_orders", "success", DAY), ("warehouse.orders", "success", None),
                                       ("mart.daily_sales", "success", DAY)])
    found, _ = verdict(project, graph, store)
    assert found.verdict == "late"
    assert found.lateness_s == 30 * 60 + 3 * 60  # 09:00 + three one-minute steps, against 08:30


def test_data_needed_through_today_is_partial_by_nature(shop):
    project, graph, store = shop
    intraday(store, DUE)  # 15:00 on the due day, deadline 18:00 the same day
    found, _ = verdict(project, graph, store, usecase="today", now=jst(DUE, 19))
    assert found.verdict == "met"


def test_a_plan_table_whose_rows_run_ahead_is_not_waited_for(shop):
    project, graph, store = shop
    # plans loaded a week before, reaching the end of the year: they say nothing about a day being over
    run(store, "plans", jst(DAY - timedelta(days=7), 12), [("lake.pos_plans", "success", date(2026, 12, 30))])
    run(store, "nightly", jst(DUE, 2), [("lake.pos_orders", "success", DAY), ("warehouse.orders", "success", None),
                                        ("mart.daily_sales", "success", DAY), ("mart.targets", "success", DAY)])
    found, _ = verdict(project, graph, store, usecase="targets")
    assert found.verdict == "met", found.evidence


# -- a generator: random nights against a simulation of what the mart holds --------------------------------------


def _simulate(rng: random.Random, store) -> dict[date, datetime | None]:
    """Random days of loads and builds; returns, per day D, when the mart first held the whole of D (the truth,
    followed event by event: what the lake holds and when it was read, what the mart was built on)."""
    lake_read: datetime | None = None  # when the lake's current data was read (a look with nothing new counts)
    lake_reach: date | None = None
    mart_read: datetime | None = None  # the read of the lake data the mart holds
    mart_reach: date | None = None
    start = date(2026, 11, 2)
    whole: dict[date, datetime | None] = {start + timedelta(days=offset): None for offset in range(8)}
    events: list[tuple[datetime, str]] = []
    for offset in range(8):
        day = start + timedelta(days=offset)
        for hour in sorted(rng.sample(range(24), rng.randint(0, 3))):
            events.append((jst(day, hour, rng.randint(0, 59)), rng.choice(
                ["collect", "collect+build", "collect-empty+fresh", "build", "collect-failed"])))
    for n, (at, kind) in enumerate(sorted(events)):
        steps: list[tuple[str, str, date | None]] = []
        today = (at + timedelta(hours=9)).date()
        if kind.startswith("collect"):
            if kind == "collect-failed":
                steps.append(("lake.pos_orders", "failed", None))
            elif kind.startswith("collect-empty"):
                steps.append(("lake.pos_orders", "success", None))
                lake_read = at
            else:
                steps.append(("lake.pos_orders", "success", today))
                lake_read, lake_reach = at, max(lake_reach or today, today)
        if kind in ("collect+build", "build") and lake_read is not None:
            steps += [("warehouse.orders", "success", None), ("mart.daily_sales", "success", lake_reach)]
            mart_read, mart_reach = lake_read, lake_reach
        elif kind == "collect-empty+fresh" and mart_read is not None:
            steps += [("warehouse.orders", "fresh", None), ("mart.daily_sales", "fresh", None)]
            mart_read = lake_read
        if not steps:
            continue
        published = run(store, f"r{n}", at, steps)
        for offset in range(8):
            day = start + timedelta(days=offset)
            done = mart_read is not None and mart_reach is not None and mart_reach >= day \
                and mart_read >= jst(day + timedelta(days=1), 0) and any(s[0] == "mart.daily_sales" for s in steps)
            if done and whole.get(day) is None:
                whole[day] = published
    return whole


@pytest.mark.parametrize("seed", range(12))
def test_delivered_whole_matches_a_simulation_of_random_nights(shop, seed):
    project, graph, store = shop
    truth = _simulate(random.Random(seed), store)
    result = assess(project, graph, store, datetime(2026, 11, 12))
    facts = load_facts(store, project.name, datetime(2026, 10, 1))
    found = {day: delivered_at(result.context, facts, "mart.daily_sales", day) for day in truth}
    assert found == truth
