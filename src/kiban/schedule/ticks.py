"""Cron ticks of a job: when it is due, in its timezone, on its calendar's business days; catch-up after downtime.

A tick is a naive-UTC moment. Cron fields are read in the job's timezone (default: the project's), so
``0 2 * * *`` in Asia/Tokyo is 17:00 UTC the day before. Across a daylight-saving change (croniter's
rules): a tick inside the spring-forward gap fires when the gap ends (02:30 → 03:00), and a tick in the
fall-back hour fires once.

With a ``calendar``, a tick counts only when its *local* date is a business day of that calendar: a
``0 2 * * *`` job on calendar ``jp`` does not fire on 2026-11-23 (Labor Thanksgiving Day).

Catch-up, when the scheduler looks after downtime and finds several ticks passed since the last one it
handled:

``skip``    run only a tick that is on time (at most :data:`ON_TIME` late); every missed tick is skipped
``latest``  run the newest tick, skip the older ones (the default: one run brings everything up to date)
``all``     run every missed tick, oldest first (for jobs whose runs differ by tick)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from kiban.project.config import ProjectConfig
from kiban.project.jobs import JobConfig
from kiban.slo.calendar import BusinessCalendar, calendar_for

ON_TIME = timedelta(seconds=60)  # a tick later than this is "missed" (the scheduler was down or busy)
FIRST_LOOKBACK = timedelta(seconds=60)  # a job never seen before considers ticks this far back
MAX_TICKS = 10_000  # in one window: a guard against "* * * * *" after a year of downtime
_SEARCH_DAYS = 800  # how far next_tick looks (a calendar may close many days in a row)


class JobSchedule:
    """The cron schedule of one job, ready to enumerate ticks."""

    def __init__(self, name: str, job: JobConfig, config: ProjectConfig) -> None:
        self.name = name
        self.job = job
        self.tz = ZoneInfo(job.timezone or config.timezone)
        self.calendar: BusinessCalendar | None = calendar_for(job.calendar, config) if job.calendar else None

    def ticks(self, after: datetime, until: datetime) -> list[datetime]:
        """Ticks in (after, until], oldest first (at most MAX_TICKS: the newest ones)."""
        if self.job.cron is None or until <= after:
            return []
        from croniter import croniter

        start = after.replace(tzinfo=UTC).astimezone(self.tz)
        it = croniter(self.job.cron, start)
        found: list[datetime] = []
        while True:
            local: datetime = it.get_next(datetime)
            moment = local.astimezone(UTC).replace(tzinfo=None)
            if moment > until:
                break
            if moment <= after:  # croniter may repeat a fall-back hour's tick
                continue
            if self.calendar is None or self.calendar.is_business_day(local.date()):
                found.append(moment)
                if len(found) > MAX_TICKS:
                    del found[0]
        return found

    def next_tick(self, after: datetime) -> datetime | None:
        """The first tick strictly after ``after``; None without a cron or within _SEARCH_DAYS.

        Walks the cron one tick at a time (the same croniter rules as :meth:`ticks`), so a cron with a seconds
        field costs microseconds, not the enumeration of days of ticks."""
        if self.job.cron is None:
            return None
        from croniter import croniter

        it = croniter(self.job.cron, after.replace(tzinfo=UTC).astimezone(self.tz))
        limit = after + timedelta(days=_SEARCH_DAYS)
        while True:
            local: datetime = it.get_next(datetime)
            moment = local.astimezone(UTC).replace(tzinfo=None)
            if moment > limit:
                return None
            if moment <= after:  # croniter may repeat a fall-back hour's tick
                continue
            if self.calendar is None or self.calendar.is_business_day(local.date()):
                return moment

    def local(self, moment: datetime) -> datetime:
        return moment.replace(tzinfo=UTC).astimezone(self.tz)


def catch_up(policy: str, ticks: list[datetime], now: datetime) -> tuple[list[datetime], list[datetime]]:
    """Split the ticks that passed since the last handled one into (to run, to skip) per ``policy``."""
    if not ticks:
        return [], []
    if policy == "all":
        return list(ticks), []
    if policy == "latest":
        return [ticks[-1]], list(ticks[:-1])
    if policy == "skip":
        on_time = [t for t in ticks if now - t <= ON_TIME]
        return on_time, [t for t in ticks if now - t > ON_TIME]
    raise ValueError(f"unknown catch-up policy '{policy}'")
