"""Due days, windows, deadlines and required dates of random use cases, against a plain day-by-day oracle.

Random projects (a timezone with or without daylight saving, including a 30-minute DST and one that skips
midnight), random calendars (a country or none, any weekend, closed and open dates) and random schedules
(``business_days``, ``every_day``, ``weekdays``, weekday lists, cron expressions — monthly and quarterly ones
too) and deadlines (midnight, just after, inside a DST gap or overlap, 23:59). The oracle walks the days one by
one and reads the wall clock with :mod:`zoneinfo` directly; it shares nothing with :mod:`kiban.slo.calendar`
but the ``holidays`` table and croniter's ``match``.
"""

from __future__ import annotations

import random
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from kiban.graph import build_graph
from kiban.project import load_project
from kiban.slo.calendar import required_through
from kiban.slo.deadlines import next_deadlines
from kiban.slo.evaluate import Context
from tests.conftest import write_files
from tests.helpers.oracle import DAYS, is_due, oracle_deadline, previous_open

ZONES = ("Asia/Tokyo", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "America/Santiago",
         "Asia/Kolkata", "Pacific/Chatham", "America/St_Johns", "UTC", "Pacific/Kiritimati", "Pacific/Pago_Pago")
TIMES = ("00:00", "00:30", "01:00", "01:59", "02:00", "02:30", "03:00", "06:00", "08:30", "12:00", "23:00", "23:59")
CRONS = ("0 10 * * 1", "0 10 1 * *", "0 10 1 1,4,7,10 *", "*/30 9-17 * * 1-5", "0 0 15 * *", "0 10 * * 0",
         "0 10 * * 7", "59 23 28-31 * *", "0 9 1-7 * 1", "0 10 29 2 *")


def _calendar(rng: random.Random) -> dict[str, object]:
    weekend = sorted(rng.sample(DAYS, rng.choice((0, 1, 2, 2, 2, 3))), key=DAYS.index)
    start = date(2025, 10, 1)
    closed = sorted({start + timedelta(days=rng.randrange(500)) for _ in range(rng.randrange(12))})
    opened = sorted({start + timedelta(days=rng.randrange(500)) for _ in range(rng.randrange(4))})
    if rng.random() < 0.3:  # a long closure: a year-end break of two weeks
        first = date(2025 + rng.randrange(2), 12, 20)
        closed = sorted({*closed, *(first + timedelta(days=i) for i in range(16))})
    return {"country": rng.choice(("JP", "JP", "US", "DE", None)), "weekend": weekend, "closed": closed,
            "open": opened}


def _need(rng: random.Random, calendars: list[str]) -> dict[str, object]:
    kind = rng.choice(("business_days", "every_day", "weekdays", "list", "cron", "cron"))
    on: object = kind
    if kind == "list":
        on = sorted(rng.sample(DAYS, rng.randint(1, 3)), key=DAYS.index)
    elif kind == "cron":
        on = f"cron: {rng.choice(CRONS)}"
    return {"by": rng.choice(TIMES), "on": on, "calendar": rng.choice(calendars),
            "data_through": rng.choice(("today", "yesterday", "previous_business_day", "none"))}


def _yaml(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, date):
        return value.isoformat()
    return f'"{value}"'


def make_project(root: Path, rng: random.Random, usecases: int) -> tuple[dict, dict, str]:
    zone = rng.choice(ZONES)
    calendars = {f"c{i}": _calendar(rng) for i in range(3)}
    lines = [f"name: oracle\ntimezone: {zone}\ncalendar: c0\ncalendars:"]
    for name, spec in calendars.items():
        lines.append(f"  {name}: {{" + ", ".join(f"{k}: {_yaml(v)}" for k, v in spec.items()) + "}")
    needs = {f"u{i}": _need(rng, [*calendars, "jp", "none"]) for i in range(usecases)}
    files = {"kiban.yml": "\n".join(lines) + "\n", "models/mart/a.sql": "select 1 as x"}
    for name, need in needs.items():
        body = ", ".join(f"{k}: {_yaml(v)}" for k, v in need.items())
        files[f"usecases/{name}.yml"] = f"assets: [mart.a]\nneed: {{{body}}}\n"
    write_files(root, files)
    return calendars, needs, zone


# --- the oracle ---------------------------------------------------------------------------------------------


def oracle_through(need: dict, spec: dict | None, day: date) -> date | None:
    return {"today": day, "yesterday": day - timedelta(days=1), "none": None}.get(
        need["data_through"], previous_open(spec, need["calendar"], day) if need["data_through"] ==
        "previous_business_day" else None)


def oracle_previous_due(need: dict, spec: dict | None, day: date, limit: int) -> date | None:
    for back in range(1, limit + 1):
        if is_due(need, spec, day - timedelta(days=back)):
            return day - timedelta(days=back)
    return None


# --- the comparison ------------------------------------------------------------------------------------------


def compare(root: Path, seed: int, usecases: int, days: int) -> int:
    rng = random.Random(seed)
    calendars, needs, zone_name = make_project(root, rng, usecases)
    zone = ZoneInfo(zone_name)
    project = load_project(root)
    ctx = Context.build(project, build_graph(project))
    compared = 0
    for name, need in needs.items():
        spec = calendars.get(need["calendar"])
        usecase = project.usecases[name]
        start = date(2026, 1, 1) + timedelta(days=rng.randrange(330))
        end = start + timedelta(days=days)
        got = {due: (opens, deadline) for due, opens, deadline in ctx.schedule(usecase, start, end)}
        want = [d for d in (start + timedelta(days=i) for i in range(days + 1)) if is_due(need, spec, d)]
        assert sorted(got) == want, (seed, name, need, zone_name)
        for due in want:
            opens, deadline = got[due]
            assert deadline == oracle_deadline(due, need["by"], zone), (seed, name, need, zone_name, due)
            before = oracle_previous_due(need, spec, due, 31 + 10 * 366)
            expected_open = oracle_deadline(before, need["by"], zone) if before else deadline - timedelta(days=1)
            assert opens == expected_open, (seed, name, need, zone_name, due, before)
            # a due day's window is the same whatever range it is asked in
            assert ctx.schedule(usecase, due, due) == [(due, opens, deadline)], (seed, name, need, due)
            through = ctx_through(ctx, usecase, due)
            assert through == oracle_through(need, spec, due), (seed, name, need, due)
            compared += 1
        # the next deadline at a random moment is the first due day's deadline at or after it (looking 40 days on)
        now = datetime.combine(start, time()) + timedelta(minutes=rng.randrange(days * 24 * 60))
        nxt = next_deadlines(ctx, now).get(name)
        walk = [d for d in (now.date() - timedelta(days=1) + timedelta(days=i) for i in range(42))
                if is_due(need, spec, d) and oracle_deadline(d, need["by"], zone) >= now]
        assert nxt == ((walk[0], oracle_deadline(walk[0], need["by"], zone)) if walk else None), (seed, name, need)
    return compared


def ctx_through(ctx: Context, usecase, due: date) -> date | None:
    return required_through(due, usecase.config.need.data_through, ctx.calendar(usecase))


@pytest.mark.parametrize("seed", range(6))
def test_schedules_match_a_day_by_day_oracle(tmp_path, seed):
    assert compare(tmp_path / "p", seed, usecases=8, days=40) > 0


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 115))
def test_schedules_match_a_day_by_day_oracle_long(tmp_path, seed):
    compare(tmp_path / "p", seed, usecases=20, days=120)
