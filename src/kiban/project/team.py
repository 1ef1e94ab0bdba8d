"""The team's on-call rotation, ``oncall:`` in ``kiban.yml`` (who is on duty; kiban.team.oncall reads it)::

    oncall:
      calendar: jp              # duty hands over on business days of this calendar
      handover: "09:00"         # local time in the project's timezone
      rotation: weekly          # weekly (the first business day of a week) or daily (every business day)
      start: 2026-11-02         # the first handover, to the first person
      people:
        - name: Aiko
          notify: [aiko-slack]  # channels from `channels:`
        - name: Ben
      overrides:
        - {date: 2026-12-24, name: Ben}   # Ben takes that day's duty (from its handover to the next)
"""

from __future__ import annotations

import re
from datetime import date, time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True, frozen=True)


class OncallPerson(_Strict):
    name: str = Field(min_length=1)
    contact: str | None = None
    notify: tuple[str, ...] = ()


class OncallOverride(_Strict):
    date: date
    name: str


class OncallConfig(_Strict):
    calendar: str | None = None  # default: the project's calendar
    handover: str = "09:00"
    rotation: Literal["weekly", "daily"] = "weekly"
    start: date
    people: tuple[OncallPerson, ...] = Field(min_length=1)
    overrides: tuple[OncallOverride, ...] = ()
    notify: tuple[str, ...] = ()  # channels told whoever is on duty (e.g. the team's room)

    @field_validator("handover", mode="before")
    @classmethod
    def _clock(cls, value: object) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            raise ValueError(f"YAML read the unquoted time as the number {value}; write it in quotes, "
                             f"e.g. \"{value // 60:02d}:{value % 60:02d}\"")
        if not isinstance(value, str) or not _HHMM.match(value):
            raise ValueError(f"{value!r} is not a time of day; write it as HH:MM in quotes, e.g. \"09:00\"")
        return value

    @model_validator(mode="after")
    def _known_people(self) -> OncallConfig:
        names = [p.name for p in self.people]
        if len(set(names)) != len(names):
            raise ValueError("two people on the rotation have the same name")
        for override in self.overrides:
            if override.name not in names:
                raise ValueError(f"override on {override.date}: '{override.name}' is not on the rotation "
                                 f"({', '.join(names)})")
        return self

    @property
    def handover_time(self) -> time:
        hour, minute = self.handover.split(":")
        return time(int(hour), int(minute))
