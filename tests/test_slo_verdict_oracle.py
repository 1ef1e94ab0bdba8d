"""Verdicts of random histories against a plain oracle written from docs/service-levels.md ("Verdicts").

A use case on ``mart.daily_sales`` (timed, built from ``warehouse.orders``), due every day at a random local time
— midnight, just after, inside a DST gap or overlap, 23:59 — in a random timezone, needing data through today,
yesterday, the previous business day or nothing. The history is random: builds reaching random dates, runs that
found the mart current (``fresh``), failures with the skip they cause, check evaluations (every check of the
table at one moment) failing then passing; and many events land *exactly* on a deadline, a day's end or a window's
opening. Every due day judged at a random moment (or exactly at a deadline) must get the oracle's verdict,
delivery time, lateness and failed checks.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from kiban.graph import build_graph
from kiban.project import load_project
from kiban.slo.service import assess
from kiban.store import Store
from kiban.store.schema import check_results
from tests.conftest import write_files, write_parquet
from tests.helpers.oracle import oracle_deadline
from tests.helpers.slo import LAKE, MODELS
from tests.slo_history import add_run

ZONES = ("Asia/Tokyo", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "America/Santiago", "UTC")
TIMES = ("00:00", "00:30", "01:00", "02:30", "06:00", "08:30", "23:59")
DAY0 = date(2026, 3, 25)  # the history spans both DST switches of the southern and northern zones around it


@dataclass
class Attempt:
    asset: str
    status: str
    started: datetime
    ended: datetime
    watermark: date | None


def _moment(rng: random.Random, marks: list[datetime], lo: datetime, hi: datetime) -> datetime:
    if marks and rng.random() < 0.35:  # exactly on a deadline or a day's end, or a second either side
        return rng.choice(marks) + timedelta(seconds=rng.choice((-1, 0, 0, 0, 1)))
    return lo + timedelta(seconds=rng.randrange(int((hi - lo).total_seconds())))


def scenario(root: Path, seed: int) -> tuple[bool, int]:
    rng = random.Random(seed)
    zone_name, by = rng.choice(ZONES), rng.choice(TIMES)
    through_word = rng.choice(("today", "yesterday", "previous_business_day", "none"))
    checks = rng.choice(("all", "none", "[a]"))
    zone = ZoneInfo(zone_name)
    files = dict(MODELS)
    files["models/mart/daily_sales.yml"] = ("time_column: order_date\nchecks:\n"
                                           "  - {name: a, not_null: order_date}\n  - {name: b, not_null: n}\n")
    files["usecases/morning.yml"] = (f"assets: [daily_sales]\nneed: {{by: '{by}', on: every_day, calendar: none, "
                                     f"data_through: {through_word}, checks: {checks}}}\n"
                                     "target: {attainment: 0.9, window_days: 12}\n")
    write_files(root, {"kiban.yml": f"name: test\ntimezone: {zone_name}\n", **files})
    for table, sql in LAKE.items():
        write_parquet(root / "lake" / table / "part-0.parquet", sql)
    project = load_project(root)
    graph = build_graph(project)
    store = Store(project.state_url)
    try:
        return _play(rng, project, graph, store, zone, by, through_word, checks)
    finally:
        store.close()


def _play(rng, project, graph, store, zone, by, through_word, checks) -> tuple[bool, int]:
    days = [DAY0 + timedelta(days=i) for i in range(10)]
    deadlines = {d: oracle_deadline(d, by, zone) for d in [days[0] - timedelta(days=1), *days]}
    ends = [oracle_deadline(d + timedelta(days=1), "00:00", zone) for d in days]
    marks = [*deadlines.values(), *ends]
    lo, hi = deadlines[days[0]] - timedelta(hours=30), deadlines[days[-1]] + timedelta(hours=2)
    first_run = lo - timedelta(hours=rng.choice((0, 0, 40)))
    add_run(store, "test", "first", first_run, [("warehouse.orders", "success", 1, None, None)])
    history: list[Attempt] = [Attempt("warehouse.orders", "success", first_run, first_run + timedelta(seconds=1),
                                      None)]
    evaluations: list[tuple[datetime, dict[str, str]]] = []
    for i in range(rng.randint(3, 14)):
        start = _moment(rng, marks, lo, hi)
        took = timedelta(seconds=rng.choice((0, 1, 60, 1800, 4 * 3600)))
        kind = rng.choice(("build", "build", "build", "fresh", "failed", "checks"))
        if kind == "checks":
            statuses = {"a": rng.choice(("pass", "fail")), "b": rng.choice(("pass", "fail"))}
            with store.engine.begin() as conn:
                for name, status in statuses.items():
                    conn.execute(check_results.insert().values(
                        run_id=None, project="test", asset="mart.daily_sales", check_name=name, severity="error",
                        kind="not_null", status=status, failures=1 if status == "fail" else 0, checked_at=start))
            evaluations.append((start, statuses))
            continue
        if kind == "build":
            watermark = days[0] + timedelta(days=rng.randrange(-2, 11))
            steps = [("warehouse.orders", "success", 1, None, None),
                     ("mart.daily_sales", "success", max(took.total_seconds(), 1), watermark, None)]
        elif kind == "fresh":
            watermark = None
            steps = [("mart.daily_sales", "fresh", 0, None, None)]
        else:
            watermark = None
            steps = [("warehouse.orders", "failed", 1, None, "boom"),
                     ("mart.daily_sales", "skipped", 1, None, "upstream warehouse.orders failed")]
        add_run(store, "test", f"r{i}", start, steps)
        for asset, status, offset, mark, _ in steps:
            history.append(Attempt(asset, status, start, start + timedelta(seconds=offset), mark))
    now = _moment(rng, marks, lo, hi + timedelta(hours=30))
    result = assess(project, graph, store, now)
    got = {v.due_date: v for v in result.verdicts if v.usecase == "morning"}
    compared = 0
    for day in days:
        deadline = deadlines[day]
        if deadline < first_run or day > result.today:
            assert day not in got, (day, got.get(day))
            continue
        want = oracle(day, deadline, deadlines[day - timedelta(days=1)], now, history, evaluations, zone,
                      through_word, checks)
        v = got.get(day)
        assert v is not None, day
        assert (v.verdict, v.satisfied_at, v.lateness_s, sorted(v.evidence.get("failed_checks", []))) == want, (
            day, deadline, now, v.evidence)
        compared += 1
    return True, compared


def oracle(day, deadline, previous_deadline, now, history, evaluations, zone, through_word, checks):
    through = {"today": day, "yesterday": day - timedelta(days=1), "previous_business_day": day - timedelta(days=1),
               "none": None}[through_word]
    window_start = previous_deadline
    publishes = sorted((a for a in history if a.asset == "mart.daily_sales" and a.status in ("success", "fresh")),
                       key=lambda a: a.ended)
    ready = None
    if through is None:
        ready = next((a.ended for a in publishes if a.ended > window_start), None)
    else:
        day_end = oracle_deadline(through + timedelta(days=1), "00:00", zone)
        whole = day_end <= deadline
        reach, read = None, None
        for a in publishes:  # the running maxima of how far the data reached and when it was read
            if a.watermark is not None and (reach is None or a.watermark > reach):
                reach = a.watermark
            read = a.started if read is None else max(read, a.started)
            if reach is not None and reach >= through and (not whole or read >= day_end):
                ready = a.ended
                break
    if ready is not None and ready > now:
        ready = None

    def failing(end: datetime) -> list[str]:
        if checks == "none":
            return []
        wanted = ("a", "b") if checks == "all" else ("a",)
        bad = []
        for name in wanted:  # failed in the window, and no later run of that check passed by ``end``
            fails = [at for at, s in evaluations if window_start < at <= end and s[name] == "fail"]
            if fails and not any(max(fails) < at <= end and s[name] == "pass" for at, s in evaluations):
                bad.append(f"mart.daily_sales: {name}")
        return bad

    if ready is not None:
        bad = failing(min(now, ready))
        if bad:
            return "bad_data", ready, None, bad
        if ready <= deadline:
            return "met", ready, None, []
        return "late", ready, (ready - deadline).total_seconds(), []
    if now < deadline:
        risky = False
        for asset in ("warehouse.orders", "mart.daily_sales"):
            fails = [a.ended for a in history if a.asset == asset and a.status in ("failed", "skipped")
                     and window_start < a.ended <= now]
            goods = [a.ended for a in history if a.asset == asset and a.status in ("success", "fresh")
                     and a.ended <= now]
            if fails and not (goods and max(goods) > max(fails)):
                risky = True
        return ("at_risk" if risky else "pending"), None, None, []
    bad = failing(min(now, deadline))
    if bad:
        return "bad_data", None, None, bad
    until = min(now, deadline)
    recent = [a for a in publishes if a.ended <= until]
    if through is not None and recent and recent[-1].ended > deadline - timedelta(hours=24):
        return "incomplete", None, None, []
    return "failed", None, None, []


@pytest.mark.parametrize("seed", range(25))
def test_verdicts_match_the_oracle(tmp_path, seed):
    scenario(tmp_path / "p", seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(1000, 1300))
def test_verdicts_match_the_oracle_long(tmp_path, seed):
    scenario(tmp_path / "p", seed)
