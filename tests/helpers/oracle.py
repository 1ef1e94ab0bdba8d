"""Plain oracles for service-level tests: what the docs say, computed the long way with :mod:`zoneinfo`."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays
from croniter import croniter

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def oracle_deadline(day: date, by: str, zone: ZoneInfo) -> datetime:
    """The first UTC moment the wall clock shows ``by`` on ``day``; inside a gap, the wall time read with the
    offset in force before the gap (it lands after the gap, later by the gap's length)."""
    hour, minute = map(int, by.split(":"))
    wall = datetime.combine(day, time(hour, minute))
    found = []
    for fold in (0, 1):
        moment = wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)
        if moment.astimezone(zone).replace(tzinfo=None) == wall:
            found.append(moment)
    if found:
        return min(found).replace(tzinfo=None)
    before = (wall - timedelta(hours=6)).replace(tzinfo=zone).utcoffset()
    assert before is not None
    return wall - before


def is_open(spec: dict | None, name: str, day: date) -> bool:
    if name == "none":
        return True
    if spec is None:  # the built-in jp
        spec = {"country": "JP", "weekend": ["sat", "sun"], "closed": [], "open": []}
    if day in spec["open"]:
        return True
    if DAYS[day.weekday()] in spec["weekend"] or day in spec["closed"]:
        return False
    return not (spec["country"] and day in holidays.country_holidays(spec["country"], years=day.year))


def is_due(need: dict, spec: dict | None, day: date) -> bool:
    on, cal = need["on"], need["calendar"]
    if on == "every_day":
        return True
    if on == "weekdays":
        return day.weekday() < 5
    if on == "business_days":
        return is_open(spec, cal, day)
    if isinstance(on, list):
        return DAYS[day.weekday()] in on and is_open(spec, cal, day)
    expr = on[5:].strip()
    minute, hour = (int(field.split("/")[0].split("-")[0].replace("*", "0")) for field in expr.split()[:2])
    fires = croniter.match(expr, datetime.combine(day, time(hour, minute)))  # the list's times all fire
    return fires and is_open(spec, cal, day)


def previous_open(spec: dict | None, name: str, day: date) -> date:
    day -= timedelta(days=1)
    while not is_open(spec, name, day):
        day -= timedelta(days=1)
    return day
