"""Freshness: is the newest value of a time column recent enough?

Two ways to say "recent enough":

* a **duration** (``90 minutes``, ``36h``, ``2 days``): ``now - newest <= max_age``. A DATE counts as the
  *end* of that day in the project's timezone (the day's data is complete), so a daily table holding
  yesterday is 0–24 h old all through today.
* **business days** (``1 business_day``): the newest value's local date must be on or after the date that
  lies that many business days before today, on the check's calendar (default: the project's). On a
  Monday, ``1 business_day`` accepts data through Friday; after a Monday holiday, on Tuesday, still Friday.

Timestamps without a time zone are read as UTC (kiban stores times in UTC).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:  # the calendars (and the holidays package) load only when business days are asked for
    from kiban.slo.calendar import BusinessCalendar

UNIT_SECONDS = {"minutes": 60, "hours": 3600, "days": 86400}


@dataclass(frozen=True)
class FreshnessVerdict:
    fresh: bool
    detail: str
    age_s: float | None = None  # seconds since the newest value (None when there is none)


def _local_day(value: date | datetime, tz: ZoneInfo) -> date:
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(tz).date()
    return value


def _as_moment(value: date | datetime, tz: ZoneInfo) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.combine(value + timedelta(days=1), time(), tzinfo=tz)  # a date is complete at its end


def judge(newest: date | datetime | None, amount: float, unit: str, now: datetime, tz: ZoneInfo,
          calendar: BusinessCalendar | None) -> FreshnessVerdict:
    """Whether ``newest`` is recent enough at ``now`` (aware) for ``max_age = amount unit``."""
    if newest is None:
        return FreshnessVerdict(False, "no value at all (the table or the column is empty)")
    age_s = (now - _as_moment(newest, tz)).total_seconds()
    shown = newest.isoformat(sep=" ", timespec="minutes") if isinstance(newest, datetime) else newest.isoformat()
    if unit == "business_days":
        assert calendar is not None, "business days need a calendar"
        limit = now.astimezone(tz).date()
        for _ in range(int(amount)):
            limit = calendar.previous_business_day(limit)
        fresh = _local_day(newest, tz) >= limit
        rule = f"on or after {limit.isoformat()} ({limit.strftime('%a')}, {int(amount)} business day" \
               f"{'s' if amount != 1 else ''} before today on calendar {calendar.name})"
        return FreshnessVerdict(fresh, f"newest {shown}; must be {rule}", age_s)
    limit_s = amount * UNIT_SECONDS[unit]
    fresh = age_s <= limit_s
    return FreshnessVerdict(fresh, f"newest {shown} is {_age(age_s)} old; at most {amount:g} {unit} allowed", age_s)


def _age(seconds: float) -> str:
    if seconds < 0:
        return "in the future, -" + _age(-seconds) + ","
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
