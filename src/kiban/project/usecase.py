"""Use cases: who uses which assets, how, and by when — the source of every service level.

One file per use case, ``usecases/NAME.yml``::

    description: Store managers read yesterday's sales per store before the 09:00 meeting.
    owner: data-team@shop.example
    owner_notify: [ops-slack]
    consumers:
      - name: Store managers
        team: stores
        contact: [email:store-managers@shop.example]
        notify: [store-mail]
    assets: [mart.daily_sales]
    need:
      by: "08:30"                 # local time in the project's timezone
      on: business_days           # every_day | business_days | [mon, thu] | "cron: 0 10 * * 1"
      calendar: jp                # a built-in (jp, none) or one from kiban.yml `calendars:`
      data_through: yesterday     # today | yesterday | previous_business_day | none
      checks: all                 # all | none | [check names]
    target:
      attainment: 0.95            # share of due days met
      window_days: 28
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from kiban.project.config import WEEKDAYS, _Strict

_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def _invalid(message: str) -> PydanticCustomError:
    """A validation error whose message is shown as is (a ValueError would be prefixed with "Value error, ")."""
    return PydanticCustomError("invalid_value", "{message}", {"message": message})


class Consumer(_Strict):
    name: str
    team: str | None = None
    contact: tuple[str, ...] = ()
    notify: tuple[str, ...] = ()  # channel names from kiban.yml `channels:`
    language: Literal["en", "ja"] = "en"  # the language of the messages they get


class Need(_Strict):
    by: str
    on: str | tuple[str, ...] = "business_days"
    calendar: str | None = None  # default: the project's `calendar`
    data_through: Literal["today", "yesterday", "previous_business_day", "none"] = "none"
    checks: Literal["all", "none"] | tuple[str, ...] = "all"

    @field_validator("by", mode="before")
    @classmethod
    def _clock(cls, value: object) -> str:
        if isinstance(value, int) and not isinstance(value, bool) and 60 <= value < 24 * 60:
            # YAML 1.1 reads an unquoted 8:30 as the base-60 number 510
            raise _invalid(f"YAML read the unquoted time as the number {value}; "
                           f"write it in quotes: \"{value // 60:02d}:{value % 60:02d}\"")
        if isinstance(value, str) and value.strip() in ("24:00", "24:00:00"):
            raise _invalid("24:00 is not a time of day: a deadline is on its due day; write \"23:59\" for the end "
                           "of the due day (\"00:00\" is its start)")
        if not isinstance(value, str) or not _HHMM.match(value):
            raise _invalid(f"{value!r} is not a time of day; write it as HH:MM in quotes, e.g. \"08:30\"")
        return value

    @field_validator("on", mode="before")
    @classmethod
    def _days(cls, value: object) -> str | tuple[str, ...]:
        if isinstance(value, list | tuple):
            bad = [d for d in value if d not in WEEKDAYS]
            if bad:
                raise _invalid(f"unknown weekday {bad[0]!r}; use {', '.join(WEEKDAYS)}")
            return tuple(value)
        if not isinstance(value, str):
            value = repr(value)
        elif value in ("business_days", "every_day", "weekdays"):
            return value
        elif value.startswith("cron:"):
            from croniter import croniter

            if not croniter.is_valid(value[5:].strip()):
                raise _invalid(f"'{value[5:].strip()}' is not a valid cron expression (e.g. \"cron: 0 10 * * 1\")")
            return value
        elif value in WEEKDAYS:
            raise _invalid(f"write a single weekday as a list: on: [{value}]")
        raise _invalid(f"'{value}' is not a schedule; use business_days, every_day, weekdays, "
                       "a list of weekdays such as [mon, thu], or \"cron: 0 10 * * 1\"")

    @property
    def deadline(self) -> time:
        hour, minute = self.by.split(":")
        return time(int(hour), int(minute))


class Target(_Strict):
    attainment: float = Field(default=0.95, gt=0, le=1)
    window_days: int = Field(default=28, ge=1, le=366)


class UseCaseConfig(_Strict):
    description: str = ""
    owner: str | None = None
    owner_notify: tuple[str, ...] = ()
    consumers: tuple[Consumer, ...] = ()
    assets: tuple[str, ...] = Field(min_length=1)
    need: Need
    target: Target = Target()


@dataclass(frozen=True)
class UseCase:
    name: str
    path: Path
    config: UseCaseConfig

    @property
    def assets(self) -> tuple[str, ...]:
        return self.config.assets
