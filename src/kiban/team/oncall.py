"""Who is on duty: the rotation of ``oncall:`` in kiban.yml, on the project's business calendar.

Duty hands over at ``handover`` (local time) on business days: with ``rotation: daily`` every business day,
with ``weekly`` on the first business day of each week. A weekend or a holiday stays with whoever had the last
business day (Friday's person keeps the weekend; a Monday holiday keeps last week's person until Tuesday's
handover). An override gives one day's duty (from that day's handover to the next day's) to someone else.

Incidents and at-risk warnings go to the person on duty (their ``notify:`` channels) and to the rotation's
``notify:`` channels, besides the use case's owners (kiban.slo.service, kiban.slo.watch).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from kiban.project import Project
from kiban.project.team import OncallConfig, OncallPerson
from kiban.slo.calendar import BusinessCalendar, calendar_for


@dataclass(frozen=True)
class Duty:
    person: OncallPerson
    duty_day: date  # the local date whose handover started this duty
    override: bool

    @property
    def name(self) -> str:
        return self.person.name


def _local(project: Project, at: datetime) -> datetime:
    aware = at if at.tzinfo else at.replace(tzinfo=UTC)
    return aware.astimezone(ZoneInfo(project.config.timezone))


def _calendar(project: Project, oncall: OncallConfig) -> BusinessCalendar:

    return calendar_for(oncall.calendar or project.config.calendar, project.config)


def on_duty(project: Project, at: datetime | None = None) -> Duty | None:
    """The person on duty at ``at`` (UTC; default now), or None without a rotation or before it starts."""
    oncall = project.config.oncall
    if oncall is None:
        return None
    local = _local(project, at or datetime.now(UTC))
    day = local.date() if local.time() >= oncall.handover_time else local.date() - timedelta(days=1)
    return duty_on(project, day)


def duty_on(project: Project, day: date) -> Duty | None:
    """Who holds the duty that starts at ``day``'s handover (or continues through it on a closed day)."""
    oncall = project.config.oncall
    if oncall is None or day < oncall.start:
        return None
    people = {p.name: p for p in oncall.people}
    for override in oncall.overrides:
        if override.date == day:
            return Duty(people[override.name], day, True)
    calendar = _calendar(project, oncall)
    handover = day
    while handover > oncall.start and not calendar.is_business_day(handover):
        handover -= timedelta(days=1)
    if oncall.rotation == "daily":
        turns = max(len(calendar.business_days(oncall.start, handover)) - 1, 0)
    else:
        week = handover - timedelta(days=handover.weekday())
        first_week = oncall.start - timedelta(days=oncall.start.weekday())
        turns = (week - first_week).days // 7
    return Duty(oncall.people[turns % len(oncall.people)], handover, False)


def rota(project: Project, start: date, days: int) -> list[tuple[date, Duty | None]]:
    """The duty of each of ``days`` local dates from ``start`` (for the console and ``kiban oncall``)."""
    return [(start + timedelta(days=i), duty_on(project, start + timedelta(days=i))) for i in range(days)]


def channels(project: Project, at: datetime | None = None) -> tuple[str | None, list[str]]:
    """(the name of whoever is on duty, the channels that reach them and the rotation's own channels)."""
    oncall = project.config.oncall
    if oncall is None:
        return None, []
    duty = on_duty(project, at)
    found = list(oncall.notify) + (list(duty.person.notify) if duty else [])
    return (duty.name if duty else None), sorted(set(found))
