"""Business calendars, due days, deadlines across daylight saving, and the date data must reach."""

from __future__ import annotations

import time as clock
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from kiban.errors import ConfigError
from kiban.project.config import CalendarConfig, ProjectConfig
from kiban.project.usecase import Need
from kiban.slo.calendar import (
    BusinessCalendar,
    calendar_for,
    deadline_utc,
    due_days,
    local_date,
    required_through,
)

TOKYO = ZoneInfo("Asia/Tokyo")
NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")


def config(**calendars: CalendarConfig) -> ProjectConfig:
    return ProjectConfig(name="shop", timezone="Asia/Tokyo", calendars=calendars)


@pytest.fixture
def jp() -> BusinessCalendar:
    return calendar_for("jp", config())


def need(on: str | tuple[str, ...] = "business_days", **kw: object) -> Need:
    return Need(by="08:30", on=on, **kw)  # type: ignore[arg-type]


def days(*pairs: tuple[int, int], year: int = 2026) -> list[date]:
    return [date(year, m, d) for m, d in pairs]


# --- the jp calendar -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("day", "why"), [
    (date(2026, 1, 1), "New Year's Day"),
    (date(2026, 1, 12), "Coming of Age Day (second Monday of January)"),
    (date(2026, 2, 23), "Emperor's Birthday"),
    (date(2026, 5, 6), "substitute holiday (振替休日) for Constitution Day on a Sunday"),
    (date(2026, 9, 21), "Respect for the Aged Day"),
    (date(2026, 9, 22), "国民の休日: a weekday between two holidays"),
    (date(2026, 9, 23), "Autumnal Equinox Day"),
    (date(2026, 11, 23), "Labor Thanksgiving Day"),
])
def test_jp_public_holidays_are_not_business_days(jp, day, why):
    assert not jp.is_business_day(day), why
    assert jp.holiday_name(day), why


@pytest.mark.parametrize("day", [date(2026, 1, 13), date(2026, 5, 7), date(2026, 6, 16), date(2026, 9, 24)])
def test_ordinary_weekdays_are_business_days(jp, day):
    assert day.weekday() < 5
    assert jp.is_business_day(day)
    assert jp.holiday_name(day) is None


def test_jp_weekends_are_closed_but_have_no_holiday_name(jp):
    assert not jp.is_business_day(date(2026, 6, 13))  # Saturday
    assert not jp.is_business_day(date(2026, 6, 14))  # Sunday
    assert jp.holiday_name(date(2026, 6, 13)) is None


def test_previous_business_day_skips_a_long_weekend(jp):
    # Silver Week 2026: Sat 19, Sun 20, Mon 21 (holiday), Tue 22 (国民の休日), Wed 23 (holiday)
    assert jp.previous_business_day(date(2026, 9, 24)) == date(2026, 9, 18)
    assert jp.next_business_day(date(2026, 9, 18)) == date(2026, 9, 24)
    # Golden Week: Wed 29 Apr holiday, Sun 3 – Wed 6 May closed
    assert jp.previous_business_day(date(2026, 5, 7)) == date(2026, 5, 1)
    assert jp.previous_business_day(date(2026, 4, 30)) == date(2026, 4, 28)


def test_previous_and_next_are_strict(jp):
    tuesday = date(2026, 6, 16)
    assert jp.previous_business_day(tuesday) == date(2026, 6, 15)
    assert jp.next_business_day(tuesday) == date(2026, 6, 17)
    assert jp.previous_business_day(date(2026, 6, 15)) == date(2026, 6, 12)  # Monday → Friday


def test_holidays_across_a_year_boundary(jp):
    assert jp.previous_business_day(date(2026, 1, 2)) == date(2025, 12, 31)
    assert jp.next_business_day(date(2025, 12, 31)) == date(2026, 1, 2)


def test_calendars_are_shared_between_calls(jp):
    assert calendar_for("jp", config()) is jp


# --- other calendars -----------------------------------------------------------------------------------


def test_the_none_calendar_opens_every_day():
    none = calendar_for("none", config())
    for day in (date(2026, 1, 1), date(2026, 5, 6), date(2026, 6, 13), date(2026, 6, 14)):
        assert none.is_business_day(day)
        assert none.holiday_name(day) is None
    assert none.previous_business_day(date(2026, 1, 1)) == date(2025, 12, 31)
    assert none.next_business_day(date(2026, 6, 13)) == date(2026, 6, 14)


def test_company_closed_days_and_open_overrides():
    year_end = CalendarConfig(closed=(date(2026, 12, 31), date(2027, 1, 2), date(2027, 1, 3)),
                              open=(date(2026, 11, 23), date(2026, 6, 13)))
    cal = calendar_for("company", config(company=year_end))
    assert not cal.is_business_day(date(2026, 12, 31))  # Thursday, but the company is closed
    assert cal.holiday_name(date(2026, 12, 31)) == "company holiday"
    assert not cal.is_business_day(date(2027, 1, 1))  # public holiday
    assert cal.next_business_day(date(2026, 12, 30)) == date(2027, 1, 4)
    assert cal.previous_business_day(date(2027, 1, 4)) == date(2026, 12, 30)
    # forced open: a public holiday and a Saturday
    assert cal.is_business_day(date(2026, 11, 23))
    assert cal.holiday_name(date(2026, 11, 23)) is None
    assert cal.is_business_day(date(2026, 6, 13))
    assert cal.previous_business_day(date(2026, 6, 15)) == date(2026, 6, 13)


def test_a_project_calendar_named_jp_extends_the_builtin():
    cal = calendar_for("jp", config(jp=CalendarConfig(closed=(date(2026, 12, 30),))))
    assert not cal.is_business_day(date(2026, 12, 30))
    assert not cal.is_business_day(date(2026, 5, 6))


def test_a_friday_saturday_weekend():
    gulf = calendar_for("gulf", config(gulf=CalendarConfig(country=None, weekend=("fri", "sat"))))
    assert not gulf.is_business_day(date(2026, 6, 12))  # Friday
    assert not gulf.is_business_day(date(2026, 6, 13))  # Saturday
    assert gulf.is_business_day(date(2026, 6, 14))  # Sunday
    assert gulf.is_business_day(date(2026, 5, 6))  # a Japanese holiday means nothing here
    assert gulf.previous_business_day(date(2026, 6, 14)) == date(2026, 6, 11)


def test_another_country():
    us = calendar_for("us", config(us=CalendarConfig(country="US")))
    assert not us.is_business_day(date(2026, 7, 3))  # Independence Day (observed), a Friday
    assert not us.is_business_day(date(2026, 11, 26))  # Thanksgiving
    assert us.is_business_day(date(2026, 5, 6))


def test_unknown_calendar_and_unknown_country_are_clear_errors():
    with pytest.raises(ConfigError, match="unknown calendar 'jpp'") as exc:
        calendar_for("jpp", config())
    assert "did you mean 'jp'?" in str(exc.value)
    with pytest.raises(ConfigError, match="unknown holiday country 'XX'"):
        mars = CalendarConfig.model_construct(country="XX", weekend=("sat", "sun"), closed=(), open=())
        calendar_for("mars", config(mars=mars))


def test_a_calendar_with_no_business_day_does_not_loop_forever():
    closed = calendar_for("closed", config(closed=CalendarConfig(country=None, weekend=(
        "mon", "tue", "wed", "thu", "fri", "sat", "sun"))))
    with pytest.raises(ConfigError, match="no business day"):
        closed.previous_business_day(date(2026, 6, 1))


# --- due days ------------------------------------------------------------------------------------------


MAY_START, MAY_END = date(2026, 5, 1), date(2026, 5, 10)  # Fri 1 … Sun 10; 3–6 closed in Japan


def test_due_on_business_days(jp):
    assert due_days(need("business_days"), jp, MAY_START, MAY_END) == days((5, 1), (5, 7), (5, 8))


def test_due_every_day(jp):
    assert due_days(need("every_day"), jp, MAY_START, MAY_END) == [
        MAY_START + timedelta(days=i) for i in range(10)]


def test_due_on_weekdays_ignores_holidays(jp):
    assert due_days(need("weekdays"), jp, MAY_START, MAY_END) == days((5, 1), (5, 4), (5, 5), (5, 6), (5, 7),
                                                                      (5, 8))


def test_a_listed_weekday_on_a_holiday_is_not_due(jp):
    # Mondays and Thursdays of January 2026: Monday 12 is Coming of Age Day
    got = due_days(need(("mon", "thu")), jp, date(2026, 1, 1), date(2026, 1, 31))
    assert got == days((1, 5), (1, 8), (1, 15), (1, 19), (1, 22), (1, 26), (1, 29))
    # Thursday 1 January is New Year's Day: not due either
    assert date(2026, 1, 1) not in got


def test_listed_weekdays_with_the_none_calendar_are_all_due():
    none = calendar_for("none", config())
    got = due_days(need(("mon", "thu"), calendar="none"), none, date(2026, 1, 1), date(2026, 1, 15))
    assert got == days((1, 1), (1, 5), (1, 8), (1, 12), (1, 15))


def test_listed_weekend_days(jp):
    none = calendar_for("none", config())
    assert due_days(need(("sat",)), none, MAY_START, MAY_END) == days((5, 2), (5, 9))
    assert due_days(need(("sat",)), jp, MAY_START, MAY_END) == []  # a jp Saturday is never a business day


def test_cron_mondays_skip_a_holiday_monday(jp):
    # Mondays at 10:00 in July 2026: Monday 20 is Marine Day
    got = due_days(need("cron: 0 10 * * 1"), jp, date(2026, 7, 1), date(2026, 7, 31))
    assert got == days((7, 6), (7, 13), (7, 27))


def test_cron_with_the_none_calendar_keeps_holidays():
    none = calendar_for("none", config())
    got = due_days(need("cron: 0 10 * * 1", calendar="none"), none, date(2026, 7, 1), date(2026, 7, 31))
    assert got == days((7, 6), (7, 13), (7, 20), (7, 27))


def test_cron_by_day_of_month_and_across_a_year_boundary():
    none = calendar_for("none", config())
    got = due_days(need("cron: 30 6 1,15 * *"), none, date(2025, 12, 1), date(2026, 2, 1))
    assert got == [date(2025, 12, 1), date(2025, 12, 15), *days((1, 1), (1, 15), (2, 1))]


def test_cron_that_fires_every_minute_is_due_every_day():
    none = calendar_for("none", config())
    got = due_days(need("cron: * * * * *"), none, date(2026, 3, 1), date(2026, 3, 31))
    assert len(got) == 31


def test_cron_that_never_fires_is_never_due():
    none = calendar_for("none", config())
    assert due_days(need("cron: 0 0 30 2 *"), none, date(2026, 1, 1), date(2026, 12, 31)) == []


def test_due_days_of_an_empty_range(jp):
    assert due_days(need(), jp, date(2026, 5, 2), date(2026, 5, 1)) == []
    assert due_days(need(), jp, date(2026, 5, 1), date(2026, 5, 1)) == [date(2026, 5, 1)]


def test_due_days_results_are_not_shared_lists(jp):
    first = due_days(need(), jp, MAY_START, MAY_END)
    first.clear()
    assert due_days(need(), jp, MAY_START, MAY_END) == days((5, 1), (5, 7), (5, 8))


def test_due_days_are_cheap_for_hundreds_of_use_cases():
    """Service-level evaluation: 500 use cases × 90 days must take well under half a second of CPU in total
    (CPU time, not wall time: a busy CI machine must not make it fail)."""
    project = config(company=CalendarConfig(closed=(date(2026, 12, 31),)))
    kinds: list[str | tuple[str, ...]] = ["business_days", "every_day", "weekdays", ("mon", "thu"),
                                          "cron: 0 10 * * 1", "cron: 0 7 1 * *"]
    start, end = date(2026, 4, 1), date(2026, 6, 29)
    calendar_for("jp", project).is_business_day(start)  # importing `holidays` is a one-time cost per process
    began = clock.process_time()
    total = 0
    for i in range(500):
        n = need(kinds[i % len(kinds)])
        cal = calendar_for(("jp", "none", "company")[i % 3], project)
        for day in due_days(n, cal, start, end):
            deadline_utc(day, n.deadline, TOKYO)
            required_through(day, "previous_business_day", cal)
            total += 1
    elapsed = clock.process_time() - began
    assert total > 10_000
    assert elapsed < 0.5, f"{elapsed:.3f}s"


# --- deadlines -----------------------------------------------------------------------------------------


def test_tokyo_deadline_is_the_previous_utc_day():
    assert deadline_utc(date(2026, 6, 16), time(8, 30), TOKYO) == datetime(2026, 6, 15, 23, 30)
    assert deadline_utc(date(2026, 6, 16), time(9, 0), TOKYO) == datetime(2026, 6, 16, 0, 0)


@pytest.mark.parametrize(("due", "utc"), [
    (date(2026, 3, 6), datetime(2026, 3, 6, 13, 30)),  # Friday before: EST, UTC−5
    (date(2026, 3, 8), datetime(2026, 3, 8, 12, 30)),  # spring forward at 02:00: EDT, UTC−4
    (date(2026, 3, 9), datetime(2026, 3, 9, 12, 30)),
    (date(2026, 10, 31), datetime(2026, 10, 31, 12, 30)),  # still EDT
    (date(2026, 11, 1), datetime(2026, 11, 1, 13, 30)),  # fall back at 02:00: EST again
    (date(2026, 11, 2), datetime(2026, 11, 2, 13, 30)),
])
def test_new_york_deadline_across_both_dst_switches(due, utc):
    assert deadline_utc(due, time(8, 30), NEW_YORK) == utc


def test_a_deadline_in_the_spring_forward_gap_lands_after_the_gap():
    # 02:30 does not exist on 2026-03-08 in New York (02:00 EST → 03:00 EDT). fold=0: read with the
    # offset before the gap (UTC−5) → 07:30 UTC, which is 03:30 EDT.
    got = deadline_utc(date(2026, 3, 8), time(2, 30), NEW_YORK)
    assert got == datetime(2026, 3, 8, 7, 30)
    assert got > deadline_utc(date(2026, 3, 8), time(1, 59), NEW_YORK)
    assert got >= deadline_utc(date(2026, 3, 8), time(3, 0), NEW_YORK)  # 03:00 EDT = 07:00 UTC


def test_an_ambiguous_fall_back_deadline_is_the_first_occurrence():
    # 01:30 happens twice on 2026-11-01 in New York: first in EDT (05:30 UTC), then in EST (06:30 UTC)
    assert deadline_utc(date(2026, 11, 1), time(1, 30), NEW_YORK) == datetime(2026, 11, 1, 5, 30)
    assert deadline_utc(date(2026, 11, 1), time(1, 30, fold=1), NEW_YORK) == datetime(2026, 11, 1, 5, 30)


@pytest.mark.parametrize(("due", "by", "utc"), [
    (date(2026, 3, 28), time(8, 30), datetime(2026, 3, 28, 7, 30)),  # CET, UTC+1
    (date(2026, 3, 29), time(8, 30), datetime(2026, 3, 29, 6, 30)),  # CEST from 02:00, UTC+2
    (date(2026, 3, 29), time(2, 30), datetime(2026, 3, 29, 1, 30)),  # in the gap: 03:30 CEST
    (date(2026, 10, 25), time(8, 30), datetime(2026, 10, 25, 7, 30)),  # CET again
    (date(2026, 10, 25), time(2, 30), datetime(2026, 10, 25, 0, 30)),  # ambiguous: first (CEST)
    (date(2026, 10, 26), time(0, 0), datetime(2026, 10, 25, 23, 0)),
])
def test_berlin_deadlines(due, by, utc):
    assert deadline_utc(due, by, BERLIN) == utc


def test_local_date():
    assert local_date(datetime(2026, 6, 15, 23, 30), TOKYO) == date(2026, 6, 16)
    assert local_date(datetime(2026, 6, 15, 14, 59), TOKYO) == date(2026, 6, 15)
    assert local_date(datetime(2026, 3, 8, 4, 59), NEW_YORK) == date(2026, 3, 7)
    assert local_date(datetime(2026, 3, 8, 5, 0), NEW_YORK) == date(2026, 3, 8)


def test_a_deadline_round_trips_to_its_local_date():
    for offset in range(366):
        due = date(2026, 1, 1) + timedelta(days=offset)
        for tz in (TOKYO, NEW_YORK, BERLIN):
            assert local_date(deadline_utc(due, time(0, 0), tz), tz) == due
            assert local_date(deadline_utc(due, time(23, 59), tz), tz) == due


# --- the date data must reach --------------------------------------------------------------------------


@pytest.mark.parametrize(("due", "data_through", "expected"), [
    (date(2026, 9, 24), "today", date(2026, 9, 24)),
    (date(2026, 9, 24), "yesterday", date(2026, 9, 23)),
    (date(2026, 9, 24), "previous_business_day", date(2026, 9, 18)),
    (date(2026, 6, 15), "previous_business_day", date(2026, 6, 12)),  # Monday → Friday
    (date(2026, 6, 16), "previous_business_day", date(2026, 6, 15)),
    (date(2026, 9, 24), "none", None),
])
def test_required_through(jp, due, data_through, expected):
    assert required_through(due, data_through, jp) == expected


def test_required_through_with_the_none_calendar_is_the_day_before():
    none = calendar_for("none", config())
    assert required_through(date(2026, 9, 24), "previous_business_day", none) == date(2026, 9, 23)


def test_required_through_rejects_unknown_words(jp):
    with pytest.raises(ValueError, match="unknown data_through"):
        required_through(date(2026, 9, 24), "tomorrow", jp)
