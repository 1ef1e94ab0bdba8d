"""Business calendars and the arithmetic of due days and deadlines.

A use case is *due* on some local dates (``need.on``), must be served *by* a local time of day
(``need.by``) in the project's timezone, and needs data *through* some date (``need.data_through``).
This module turns those words into dates and naive-UTC datetimes.

Service-level evaluation calls these functions for hundreds of use cases over months of days, so
lookups are cheap: a calendar is built once per (name, definition) and shared, the closed days of a
year are computed once per calendar and year, a cron expression's firing days once per expression and
year, and a calendar remembers the due days it has computed for a schedule and date range.

Decisions worth knowing:

* A **list of weekdays** (``on: [mon, thu]``) is due on those weekdays only when they are business days
  of the use case's calendar: a Monday report is not due on a Monday public holiday (it does not move to
  another day). With calendar ``none`` every listed weekday is due.
* ``on: weekdays`` is Monday to Friday regardless of holidays and of the calendar.
* ``on: "cron: EXPR"`` is due on the local dates on which the cron fires at least once, filtered by the
  calendar like a weekday list (no filtering with calendar ``none``). The time fields of the cron only
  decide *whether* it fires on a date; the deadline always comes from ``by``.
* **Daylight saving**: a local deadline is read with ``fold=0`` (PEP 495). For a time that does not exist
  (inside the spring-forward gap) this uses the UTC offset in force *before* the gap, so the deadline lands
  after the gap, shifted forward by the gap's length (New York 02:30 on 2026-03-08 → 03:30 EDT = 07:30 UTC).
  For an ambiguous time (the fall-back hour, which happens twice) it is the *first* occurrence.
* A calendar defined in ``kiban.yml`` under ``calendars:`` wins over a built-in of the same name, so
  ``calendars: {jp: {closed: [...]}}`` is "Japanese holidays plus our own closed days".
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from kiban.errors import ConfigError, did_you_mean
from kiban.project.config import WEEKDAYS, CalendarConfig, ProjectConfig
from kiban.project.loader import BUILTIN_CALENDARS
from kiban.project.usecase import Need

_JP = CalendarConfig(country="JP", weekend=("sat", "sun"))
_NONE = CalendarConfig(country=None, weekend=())
_SEARCH_LIMIT = 3660  # days: how far previous/next_business_day look before giving up (a calendar with no open day)
_ONE_DAY = timedelta(days=1)


@lru_cache(maxsize=1024)
def _public_holidays(country: str, year: int) -> Mapping[date, str]:
    """The public holidays of ``country`` (a ``holidays`` country code) in ``year``: date → name."""
    import holidays

    try:
        table = holidays.country_holidays(country.upper(), years=year)
    except NotImplementedError:
        raise ConfigError(f"unknown holiday country '{country}'",
                          "use a country code of the `holidays` package such as JP, US or DE, "
                          "or `country: null` for no public holidays") from None
    return dict(table.items())


class BusinessCalendar:
    """Which local dates are business days: not a weekend day, not a public holiday, not a company closed day.

    Dates listed as ``open`` are business days whatever the other rules say. Build one with
    :func:`calendar_for`; instances are shared and must be treated as immutable.
    """

    def __init__(self, name: str, spec: CalendarConfig) -> None:
        self.name = name
        self.country = spec.country
        self.weekend = frozenset(WEEKDAYS.index(day) for day in spec.weekend)
        self.closed = frozenset(spec.closed)
        self.open = frozenset(spec.open)
        self._closed_by_year: dict[int, frozenset[date]] = {}
        self._due_cache: dict[tuple[str | tuple[str, ...], date, date], tuple[date, ...]] = {}
        if self.country is not None:
            _public_holidays(self.country, date.today().year)  # an unknown country fails here, not mid-evaluation

    def __repr__(self) -> str:
        return f"BusinessCalendar({self.name!r})"

    @property
    def every_day_open(self) -> bool:
        """True when every date is a business day (the ``none`` calendar, or one defined like it)."""
        return self.country is None and not self.weekend and not self.closed

    def _closed_in(self, year: int) -> frozenset[date]:
        found = self._closed_by_year.get(year)
        if found is None:
            holidays = _public_holidays(self.country, year) if self.country is not None else {}
            found = frozenset(d for d in (*holidays, *self.closed) if d.year == year)
            self._closed_by_year[year] = found
        return found

    def is_business_day(self, d: date) -> bool:
        """Whether ``d`` is a business day of this calendar."""
        if d in self.open:
            return True
        return d.weekday() not in self.weekend and d not in self._closed_in(d.year)

    def previous_business_day(self, d: date) -> date:
        """The last business day strictly before ``d``."""
        return self._step(d, -_ONE_DAY)

    def next_business_day(self, d: date) -> date:
        """The first business day strictly after ``d``."""
        return self._step(d, _ONE_DAY)

    def _step(self, d: date, step: timedelta) -> date:
        for _ in range(_SEARCH_LIMIT):
            d += step
            if self.is_business_day(d):
                return d
        raise ConfigError(f"calendar '{self.name}' has no business day within {_SEARCH_LIMIT} days of {d}",
                          "check its weekend and closed days")

    def holiday_name(self, d: date) -> str | None:
        """Why ``d`` is closed besides the weekend: a public holiday's name, ``"company holiday"`` for a
        ``closed`` date, or None (not a holiday, or a date forced ``open``)."""
        if d in self.open:
            return None
        if self.country is not None:
            name = _public_holidays(self.country, d.year).get(d)
            if name is not None:
                return name
        return "company holiday" if d in self.closed else None

    def business_days(self, start: date, end: date) -> list[date]:
        """The business days in [start, end]."""
        return [d for d in _dates(start, end) if self.is_business_day(d)]


@lru_cache(maxsize=256)
def _build(name: str, spec: CalendarConfig) -> BusinessCalendar:
    return BusinessCalendar(name, spec)


def calendar_for(name: str, config: ProjectConfig) -> BusinessCalendar:
    """The calendar called ``name``: one from ``config.calendars``, else a built-in.

    Built-ins: ``jp`` (Japanese public holidays, including substitute holidays and 国民の休日, plus
    Saturday and Sunday) and ``none`` (every day is a business day).
    """
    spec = config.calendars.get(name)
    if spec is None:
        if name == "jp":
            spec = _JP
        elif name == "none":
            spec = _NONE
        else:
            known = (*BUILTIN_CALENDARS, *config.calendars)
            raise ConfigError(f"unknown calendar '{name}'", did_you_mean(name, known)
                              or f"built-in calendars: {', '.join(BUILTIN_CALENDARS)}; "
                                 "define others under `calendars:` in kiban.yml")
    return _build(name, spec)


def _dates(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


@lru_cache(maxsize=512)
def _cron_days(expr: str, year: int) -> frozenset[date]:
    """The dates of ``year`` on which cron ``expr`` fires at least once (naive local time)."""
    from croniter import CroniterError, croniter

    end = datetime(year + 1, 1, 1)
    cursor = datetime(year, 1, 1) - timedelta(seconds=1)
    it = croniter(expr, cursor, max_years_between_matches=2)
    found: set[date] = set()
    while True:
        try:
            fired: datetime = it.get_next(datetime)
        except CroniterError:  # never fires (e.g. 30 February) or not again in range
            break
        if fired >= end:
            break
        day = fired.date()
        found.add(day)
        it.set_current(datetime.combine(day + _ONE_DAY, time()) - timedelta(seconds=1), force=True)
    return frozenset(found)


def due_days(need: Need, calendar: BusinessCalendar, start: date, end: date) -> list[date]:
    """The local dates in [start, end] on which the use case is due (see the module docstring for the rules)."""
    if end < start:
        return []
    key = (need.on, start, end)
    cached = calendar._due_cache.get(key)
    if cached is None:
        cached = tuple(_due(need.on, calendar, start, end))
        if len(calendar._due_cache) > 4096:
            calendar._due_cache.clear()
        calendar._due_cache[key] = cached
    return list(cached)


def _due(on: str | tuple[str, ...], calendar: BusinessCalendar, start: date, end: date) -> list[date]:
    days = _dates(start, end)
    if on == "every_day":
        return days
    if on == "business_days":
        return [d for d in days if calendar.is_business_day(d)]
    if on == "weekdays":
        return [d for d in days if d.weekday() < 5]
    if isinstance(on, tuple):
        wanted = {WEEKDAYS.index(day) for day in on}
        return [d for d in days if d.weekday() in wanted and calendar.is_business_day(d)]
    if on.startswith("cron:"):
        expr = on[5:].strip()
        fires: set[date] = set()
        for year in range(start.year, end.year + 1):
            fires |= _cron_days(expr, year)
        return [d for d in days if d in fires and calendar.is_business_day(d)]
    raise ValueError(f"'{on}' is not a schedule")


def deadline_utc(due: date, by: time, tz: ZoneInfo) -> datetime:
    """The naive-UTC moment of local ``due`` at ``by`` in ``tz``.

    Read with ``fold=0``: a time inside a spring-forward gap uses the offset before the gap (it lands after
    the gap, later by the gap's length); an ambiguous fall-back time is its first occurrence.
    """
    if by.tzinfo is not None or by.fold:
        by = by.replace(fold=0, tzinfo=None)
    wall = datetime.combine(due, by)
    offset = tz.utcoffset(wall)  # ZoneInfo reads a naive datetime as wall time, honouring its fold
    return wall if offset is None else wall - offset


def required_through(due: date, data_through: str, calendar: BusinessCalendar) -> date | None:
    """The date the data must reach for a use case due on ``due``: ``today`` → ``due``,
    ``yesterday`` → the day before, ``previous_business_day`` → the calendar's, ``none`` → None."""
    if data_through == "today":
        return due
    if data_through == "yesterday":
        return due - _ONE_DAY
    if data_through == "previous_business_day":
        return calendar.previous_business_day(due)
    if data_through == "none":
        return None
    raise ValueError(f"unknown data_through '{data_through}'; use today, yesterday, previous_business_day or none")


def wall_seconds(start: datetime, end: datetime, tz: ZoneInfo) -> float:
    """Seconds from naive-UTC ``start`` to ``end`` on the local wall clock of ``tz``: how far apart the clocks
    people read show them. A nightly 01:00 run is 7 h 30 min before an 08:30 deadline on the nights the clocks
    change too (elapsed, that night is an hour shorter or longer) — "usual" times learned from history are
    wall-clock times."""
    def wall(moment: datetime) -> datetime:
        return moment.replace(tzinfo=UTC).astimezone(tz).replace(tzinfo=None)

    return (wall(end) - wall(start)).total_seconds()


def wall_before(moment: datetime, seconds: float, tz: ZoneInfo) -> datetime:
    """The naive-UTC moment whose local wall-clock time is ``seconds`` before ``moment``'s (read like a deadline:
    a time in a spring-forward gap lands after it, an ambiguous one is its first occurrence)."""
    wall = moment.replace(tzinfo=UTC).astimezone(tz).replace(tzinfo=None) - timedelta(seconds=seconds)
    return deadline_utc(wall.date(), wall.time(), tz)


def local_date(utc_naive: datetime, tz: ZoneInfo) -> date:
    """The local date in ``tz`` of a naive-UTC moment."""
    return utc_naive.replace(tzinfo=UTC).astimezone(tz).date()


__all__ = ["BUILTIN_CALENDARS", "BusinessCalendar", "calendar_for", "deadline_utc", "due_days", "local_date",
           "required_through", "wall_before", "wall_seconds"]
