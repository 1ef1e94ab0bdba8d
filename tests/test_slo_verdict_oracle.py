"""Verdicts of random histories against a plain oracle written from docs/service-levels.md ("Verdicts").

One to three use cases on ``mart.daily_sales`` (timed, built from ``warehouse.orders``), each with its own deadline
(midnight, just after, inside a DST gap or overlap, 23:59), schedule (every day, business days, weekdays, a weekday
list, a cron) and calendar (jp or none), needing data through today, yesterday, the previous business day or
nothing, and all, none or one of the checks — in a random timezone, over twelve days that hold a clock change,
Golden Week or the year-end. The history is random: builds reaching random dates, runs that found the mart current
(``fresh``), failures with the skip they cause, check evaluations (every check of the table at one moment) failing
then passing; and many events land *exactly* on a deadline or a day's end, or a second either side. Every due day
judged at a random moment must get the oracle's verdict, delivery time, lateness and failed checks."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from kiban.graph import build_graph
from kiban.incidents import IncidentLog
from kiban.project import load_project
from kiban.slo.service import INCIDENT_DAYS, assess, check
from kiban.store import Store
from kiban.store.schema import check_results, slo_evaluations
from tests.conftest import write_files, write_parquet
from tests.helpers.oracle import is_due, oracle_deadline, previous_open
from tests.helpers.slo import LAKE, MODELS
from tests.slo_history import add_run

ZONES = ("Asia/Tokyo", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "America/Santiago", "UTC")
TIMES = ("00:00", "00:30", "01:00", "02:30", "06:00", "08:30", "23:59")
SCHEDULES = ("every_day", "every_day", "business_days", "weekdays", "[mon, thu]", "'cron: 0 10 * * 1-5'")
# spans with a clock change (New York, Berlin; Santiago and Lord Howe in April), Golden Week, the year-end
STARTS = (date(2026, 3, 4), date(2026, 3, 25), date(2026, 4, 1), date(2026, 4, 27), date(2026, 10, 22),
          date(2026, 12, 26))


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


def scenario(root: Path, seed: int, replay: bool = False) -> int:
    rng = random.Random(seed)
    zone_name = rng.choice(ZONES)
    zone = ZoneInfo(zone_name)
    files = dict(MODELS)
    files["models/mart/daily_sales.yml"] = ("time_column: order_date\nchecks:\n"
                                           "  - {name: a, not_null: order_date}\n  - {name: b, not_null: n}\n")
    del files["usecases/morning.yml"]
    needs = {}
    for i in range(rng.randint(1, 3)):  # use cases on the same asset with their own deadlines and schedules
        need = {"by": rng.choice(TIMES), "on": rng.choice(SCHEDULES), "calendar": rng.choice(("jp", "none")),
                "data_through": rng.choice(("today", "yesterday", "previous_business_day", "none")),
                "checks": rng.choice(("all", "none", "[a]"))}
        needs[f"u{i}"] = need
        files[f"usecases/u{i}.yml"] = ("assets: [daily_sales]\nneed: {" + ", ".join(
            f"{k}: '{v}'" if k == "by" else f"{k}: {v}" for k, v in need.items()) + "}\n"
            "target: {attainment: 0.9, window_days: 20}\n")
    write_files(root, {"kiban.yml": f"name: test\ntimezone: {zone_name}\n", **files})
    for table, sql in LAKE.items():
        write_parquet(root / "lake" / table / "part-0.parquet", sql)
    project = load_project(root)
    graph = build_graph(project)
    store = Store(project.state_url)
    try:
        return _play(rng, project, graph, store, zone, needs, replay)
    finally:
        store.close()


def _on(need: dict) -> object:
    """The schedule as the oracle reads it (a weekday list as a list, a cron as ``cron: …``)."""
    on = need["on"]
    if on.startswith("["):
        return [d.strip() for d in on[1:-1].split(",")]
    return on.strip("'")


def _due(need: dict, day: date) -> bool:
    return is_due({**need, "on": _on(need)}, None, day)


def _previous_due(need: dict, day: date) -> date | None:
    return next((day - timedelta(days=n) for n in range(1, 60) if _due(need, day - timedelta(days=n))), None)


def _play(rng, project, graph, store, zone, needs, replay: bool) -> int:
    day0 = rng.choice(STARTS)
    days = [day0 + timedelta(days=i) for i in range(12)]
    marks = [oracle_deadline(d, need["by"], zone) for d in days for need in needs.values()]
    marks += [oracle_deadline(d + timedelta(days=1), "00:00", zone) for d in days]
    lo = oracle_deadline(days[0], "00:00", zone) - timedelta(hours=30)
    hi = oracle_deadline(days[-1], "23:59", zone)
    first_run = lo - timedelta(hours=rng.choice((0, 0, 40)))
    add_run(store, "test", "first", first_run, [("warehouse.orders", "success", 1, None, None)])
    history: list[Attempt] = [Attempt("warehouse.orders", "success", first_run, first_run + timedelta(seconds=1),
                                      None)]
    evaluations: list[tuple[datetime, dict[str, str]]] = []
    for i in range(rng.randint(3, 16)):
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
            watermark = days[0] + timedelta(days=rng.randrange(-4, 13))
            steps = [("warehouse.orders", "success", 1, None, None),
                     ("mart.daily_sales", "success", max(took.total_seconds(), 1), watermark, None)]
        elif kind == "fresh":
            steps = [("mart.daily_sales", "fresh", 0, None, None)]
        else:
            steps = [("warehouse.orders", "failed", 1, None, "boom"),
                     ("mart.daily_sales", "skipped", 1, None, "upstream warehouse.orders failed")]
        add_run(store, "test", f"r{i}", start, steps)
        for asset, status, offset, mark, _ in steps:
            history.append(Attempt(asset, status, start, start + timedelta(seconds=offset), mark))
    moments = sorted(_moment(rng, marks, lo, hi + timedelta(hours=30)) for _ in range(6 if replay else 1))
    compared = 0
    for now in moments:  # a replay: the scheduler's check at increasing times over the same history
        known = _known_since(store) if replay else {}
        result = check(project, graph, store, now, notify=False) if replay else assess(project, graph, store, now)
        compared += _compare(result, needs, days, zone, first_run, now, history, evaluations, known)
        if replay:
            _stored_and_incidents_agree(store, result)
    return compared


def _known_since(store) -> dict[str, datetime]:
    with store.engine.connect() as conn:
        return dict(conn.execute(sa.select(slo_evaluations.c.usecase, sa.func.min(slo_evaluations.c.deadline))
                                 .group_by(slo_evaluations.c.usecase)).all())


def _stored_and_incidents_agree(store, result) -> None:
    """What ``check`` stored is what it judged; every miss of the last week has its incident, with that verdict;
    a delivered day's incident is closed."""
    with store.engine.connect() as conn:
        stored = {(r.usecase, r.due_date): r for r in conn.execute(slo_evaluations.select()).all()}
    log = IncidentLog(store, "test")
    start = result.today - timedelta(days=INCIDENT_DAYS - 1)
    for v in result.verdicts:
        row = stored[(v.usecase, v.due_date)]
        assert (row.verdict, row.satisfied_at, row.lateness_s, row.deadline) == (
            v.verdict, v.satisfied_at, v.lateness_s, v.deadline), (v.usecase, v.due_date)
        if v.due_date < start:
            continue
        incident = log.open_for(v.usecase, v.due_date)
        if v.verdict in ("failed", "incomplete", "bad_data"):
            assert incident is not None, (v.usecase, v.due_date, v.verdict)
            assert (incident.verdict, incident.status) == (v.verdict, "open"), (v.usecase, v.due_date)
        elif v.verdict in ("met", "late") and incident is not None:
            assert incident.status == "resolved", (v.usecase, v.due_date, v.verdict, incident)


def _compare(result, needs, days, zone, first_run, now, history, evaluations, known) -> int:
    compared = 0
    for name, need in needs.items():
        got = {v.due_date: v for v in result.verdicts if v.usecase == name}
        for day in days:
            deadline = oracle_deadline(day, need["by"], zone)
            if not _due(need, day) or deadline < max(first_run, known.get(name, first_run)) or day > result.today:
                assert day not in got, (name, need, day, got.get(day))
                continue
            before = _previous_due(need, day)
            opens = oracle_deadline(before, need["by"], zone) if before else deadline - timedelta(days=1)
            through = {"today": day, "yesterday": day - timedelta(days=1), "none": None}.get(
                need["data_through"], previous_open(None, need["calendar"], day))
            want = oracle(deadline, opens, through, now, history, evaluations, zone, need["checks"])
            v = got.get(day)
            assert v is not None, (name, need, day)
            if v.verdict == "at_risk" and want[0] == "pending" and "not_started" in v.evidence:
                continue  # the scheduler's check: nothing runs, and the build would have to start now
            assert (v.verdict, v.satisfied_at, v.lateness_s, sorted(v.evidence.get("failed_checks", []))) == want, (
                name, need, day, deadline, now, v.evidence)
            compared += 1
    return compared


def oracle(deadline, window_start, through, now, history, evaluations, zone, checks):
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


@pytest.mark.parametrize("seed", range(8))
def test_a_replay_of_checks_stores_what_it_judged_and_keeps_incidents_in_step(tmp_path, seed):
    scenario(tmp_path / "p", 500 + seed, replay=True)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(2000, 2040))
def test_a_replay_of_checks_stores_what_it_judged_and_keeps_incidents_in_step_long(tmp_path, seed):
    scenario(tmp_path / "p", seed, replay=True)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(1000, 1200))
def test_verdicts_match_the_oracle_long(tmp_path, seed):
    scenario(tmp_path / "p", seed)
