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

from kiban.project.config import WEEKDAYS, _Strict

_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


class Consumer(_Strict):
    name: str
    team: str | None = None
    contact: tuple[str, ...] = ()
    notify: tuple[str, ...] = ()  # channel names from kiban.yml `channels:`


class Need(_Strict):
    by: str
    on: str | tuple[str, ...] = "business_days"
    calendar: str | None = None  # default: the project's `calendar`
    data_through: Literal["today", "yesterday", "previous_business_day", "none"] = "none"
    checks: Literal["all", "none"] | tuple[str, ...] = "all"

    @field_validator("by")
    @classmethod
    def _clock(cls, value: str) -> str:
        if not _HHMM.match(str(value)):
            raise ValueError(f"'{value}' is not a time of day; write it as HH:MM, e.g. \"08:30\" (quoted)")
        return value

    @field_validator("on")
    @classmethod
    def _days(cls, value: str | tuple[str, ...]) -> str | tuple[str, ...]:
        if isinstance(value, tuple):
            bad = [d for d in value if d not in WEEKDAYS]
            if bad:
                raise ValueError(f"unknown weekday {bad[0]!r}; use {', '.join(WEEKDAYS)}")
            return value
        if value in ("business_days", "every_day", "weekdays"):
            return value
        if value.startswith("cron:"):
            from croniter import croniter

            if not croniter.is_valid(value[5:].strip()):
                raise ValueError(f"'{value[5:].strip()}' is not a valid cron expression")
            return value
        raise ValueError(f"'{value}' is not a schedule; use business_days, every_day, weekdays, "
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
