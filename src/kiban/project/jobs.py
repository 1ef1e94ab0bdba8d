"""Jobs: a selection of assets the scheduler starts on a cron schedule or when a sensor fires.

In ``kiban.yml``::

    scheduler:
      max_runs: 1               # runs started by the scheduler at the same time (the run lock serialises
                                # runs of one project anyway; more only queue behind it)
    jobs:
      nightly_stores:
        select: [+mart.daily_sales]
        cron: "0 2 * * *"       # in `timezone` (default: the project's)
        calendar: jp            # fire only on business days of this calendar (default: every day)
        catch_up: latest        # after downtime: skip | latest | all missed ticks
        on_crash: resume        # a run whose process died is resumed once (`kiban run --resume`); or none
        for: store_managers     # a use case: deadline-aware order and a warning when it cannot be met
      partner_files:
        select: [+mart.partner_sales]
        sensors:
          - landing: landing/partners   # a new or changed file in this folder (path, size, mtime)
            pattern: "*.csv"
            min_interval: 5m
          - asset: lake.pos_orders      # the asset was updated since the job last ran
            min_interval: 15m

This module is imported by :mod:`kiban.project.config`, so it imports nothing from it.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from kiban.errors import ProjectError, closest, did_you_mean

if TYPE_CHECKING:
    from kiban.project.asset import Asset
    from kiban.project.usecase import UseCase
    from kiban.project.yamlfile import YamlDoc

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h)?\s*$")
LAYER_NAMES = ("lake", "warehouse", "mart")


def _invalid(message: str) -> PydanticCustomError:
    return PydanticCustomError("invalid_value", "{message}", {"message": message})


def _seconds(value: object) -> object:
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise _invalid(f"'{value}' is not a duration (examples: 90s, 15m, 1.5h)")
        return float(match.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600}[match.group(2) or "s"]
    return value


def _as_tuple(value: object) -> object:
    """``select: mart.x`` and ``select: "a b"`` mean the same as a list."""
    if isinstance(value, str):
        return tuple(part for part in value.replace(",", " ").split() if part)
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True, frozen=True)


class SensorConfig(_Strict):
    """One trigger of a job besides its cron: a landing folder that changed, or an asset that was updated."""

    landing: str | None = None  # a folder, relative to the project
    pattern: str = "*"  # which files of the folder count (glob, recursive with **)
    asset: str | None = None  # an asset key or name: run the job when it was updated since the job last ran
    min_interval: float = Field(default=60.0, ge=0, description="seconds between two firings of this sensor")

    @field_validator("min_interval", mode="before")
    @classmethod
    def _interval(cls, value: object) -> object:
        return _seconds(value)

    @model_validator(mode="after")
    def _one_kind(self) -> SensorConfig:
        if (self.landing is None) == (self.asset is None):
            raise _invalid("a sensor watches either a folder (landing: PATH) or an asset (asset: NAME)")
        if self.landing is not None and any(ch in self.landing for ch in "*?["):
            folder, _, name = self.landing.rpartition("/")
            raise _invalid(f"landing: is a folder, not a pattern ('{self.landing}' would watch nothing); "
                           f"write landing: {folder or '.'} and pattern: \"{name}\"")
        return self

    @property
    def key(self) -> str:
        """Names this sensor's state in the store."""
        return f"landing:{self.landing}:{self.pattern}" if self.landing is not None else f"asset:{self.asset}"


class JobConfig(_Strict):
    """A selection the scheduler runs on a cron schedule and/or when one of its sensors fires."""

    model_config = ConfigDict(extra="forbid", defer_build=True, frozen=True, populate_by_name=True)

    select: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    cron: str | None = None
    timezone: str | None = None  # default: the project's
    calendar: str | None = None  # fire only on this calendar's business days; default: every day
    catch_up: Literal["skip", "latest", "all"] = "latest"
    for_: str | None = Field(default=None, alias="for")  # a use case this job feeds
    sensors: tuple[SensorConfig, ...] = ()
    wait: float = Field(default=6 * 3600.0, ge=0, description="seconds a run waits for the run lock")
    # When the job's run crashes (its process vanished, the run was reaped as abandoned): `resume` queues
    # `kiban run --resume` once (a resumed run that crashes again is not resumed a second time); `none` leaves
    # it to a person (the runbook in docs/operations.md).
    on_crash: Literal["resume", "none"] = "resume"

    @field_validator("select", "exclude", mode="before")
    @classmethod
    def _selectors(cls, value: object) -> object:
        return _as_tuple(value)

    @field_validator("wait", mode="before")
    @classmethod
    def _wait(cls, value: object) -> object:
        return _seconds(value)

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from croniter import croniter

        # five fields: minute hour day month weekday; a sixth, seconds, may follow (croniter's convention)
        if len(value.split()) not in (5, 6) or not croniter.is_valid(value):
            raise _invalid(f"'{value}' is not a valid cron expression: five fields, minute hour day month weekday "
                           "(e.g. \"0 2 * * *\" for 02:00 every day)")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            near = closest(value, zoneinfo.available_timezones())
            raise _invalid(f"unknown timezone '{value}' ("
                           + (f"did you mean '{near}'?" if near else "use an IANA name such as Asia/Tokyo") + ")"
                           ) from None
        return value

    @model_validator(mode="after")
    def _has_trigger(self) -> JobConfig:
        if self.cron is None and not self.sensors:
            raise _invalid("a job needs a `cron:` schedule, `sensors:`, or both")
        return self


class SchedulerConfig(_Strict):
    """``scheduler:`` in kiban.yml: how the daemon behaves."""

    max_runs: int = Field(default=1, ge=1, le=64)
    lease: float = Field(default=30.0, ge=1, description="seconds a leader's lease lasts without renewal")
    renew: float = Field(default=5.0, gt=0, description="seconds between lease renewals")
    poll: float = Field(default=1.0, gt=0, le=60, description="seconds between two looks at the schedule")

    @field_validator("lease", "renew", "poll", mode="before")
    @classmethod
    def _durations(cls, value: object) -> object:
        return _seconds(value)

    @model_validator(mode="after")
    def _renew_within_lease(self) -> SchedulerConfig:
        if self.renew * 2 > self.lease:
            raise _invalid(f"renew ({self.renew:g} s) must be at most half the lease ({self.lease:g} s), "
                           "or a busy leader loses its lease")
        return self


def selector_problem(term: str, assets: Mapping[str, Asset]) -> tuple[str, str | None] | None:
    """Why the selector ``term`` selects nothing, with a hint; None when it is fine.

    The same rules as :func:`kiban.graph.selection.select`, checked against the project's assets so a
    project can be validated without building its graph.
    """
    core = term[1:] if term.startswith("+") else term
    core = core[:-1] if core.endswith("+") and len(core) > 1 else core
    if not core or core == "+":
        return f"empty selector '{term}'", None
    if core.startswith("layer:"):
        layer = core[6:]
        if layer not in LAYER_NAMES:
            return f"unknown layer '{layer}' in selector '{term}'", (
                did_you_mean(layer, LAYER_NAMES) or f"layers are {', '.join(LAYER_NAMES)}")
        return None
    if core.startswith("tag:"):
        tag = core[4:]
        tags = {t for a in assets.values() for t in a.tags}
        return None if tag in tags else (f"no asset has tag '{tag}'", did_you_mean(tag, tags))
    if core in assets:
        return None
    named = [k for k, a in assets.items() if a.name == core]
    if len(named) == 1:
        return None
    if len(named) > 1:
        return f"'{core}' is ambiguous: {', '.join(named)}", "qualify it with its layer"
    return f"no asset matches '{core}'", did_you_mean(core, [*assets, *(a.name for a in assets.values())])


def check_jobs(doc: YamlDoc, jobs: Mapping[str, JobConfig], assets: Mapping[str, Asset],
               usecases: Mapping[str, UseCase], calendars: tuple[str, ...], errors: list[ProjectError]) -> None:
    """What jobs name must exist: assets (selectors, asset sensors), calendars and use cases.

    Problems are appended to ``errors``, each naming ``kiban.yml:line:col``.
    """
    for name, job in jobs.items():
        here: tuple[Any, ...] = ("jobs", name)
        for field in ("select", "exclude"):
            for i, term in enumerate(getattr(job, field)):
                problem = selector_problem(term, assets)
                if problem:
                    where = (*here, field, i) if isinstance(_at(doc, (*here, field)), list) else (*here, field)
                    errors.append(ProjectError(f"job {name}: {problem[0]}", doc.location(where), problem[1]))
        if job.calendar is not None and job.calendar not in calendars:
            errors.append(ProjectError(f"job {name}: unknown calendar '{job.calendar}'",
                                       doc.location((*here, "calendar")),
                                       did_you_mean(job.calendar, calendars)
                                       or f"calendars: {', '.join(calendars)}; define others under `calendars:`"))
        if job.for_ is not None and job.for_ not in usecases:
            errors.append(ProjectError(f"job {name}: unknown use case '{job.for_}'", doc.location((*here, "for")),
                                       did_you_mean(job.for_, usecases)
                                       or ("use cases are the files in usecases/: " + ", ".join(usecases)
                                           if usecases else "there are no use cases (usecases/*.yml)")))
        for i, sensor in enumerate(job.sensors):
            if sensor.asset is not None:
                problem = selector_problem(sensor.asset, assets)
                if problem or sensor.asset.startswith(("+", "layer:", "tag:")) or sensor.asset.endswith("+"):
                    message = problem[0] if problem else "a sensor watches one asset (NAME or layer.NAME)"
                    errors.append(ProjectError(f"job {name}: sensor {i + 1}: {message}",
                                               doc.location((*here, "sensors", i, "asset")),
                                               problem[1] if problem else None))
            elif sensor.landing is not None and Path(sensor.landing).is_absolute() is False \
                    and ".." in Path(sensor.landing).parts:
                errors.append(ProjectError(f"job {name}: sensor {i + 1}: a landing folder inside the project, "
                                           "or an absolute path", doc.location((*here, "sensors", i, "landing"))))


def check_limits(doc: YamlDoc, limits: Mapping[str, int], assets: Mapping[str, Asset],
                 errors: list[ProjectError]) -> None:
    """Per-tag limits (``limits:``) must name a tag some asset has: a misspelt one would limit nothing."""
    tags = {t for a in assets.values() for t in a.tags}
    for tag in limits:
        if tag not in tags:
            errors.append(ProjectError(f"limits: no asset has tag '{tag}'", doc.location(("limits", tag)),
                                       did_you_mean(tag, tags) or "tags are set in models' sidecars (tags: [...])"))


def _at(doc: YamlDoc, path: tuple[Any, ...]) -> Any:
    node = doc.data
    for part in path:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def resolve_asset(term: str, assets: Mapping[str, Asset]) -> str:
    """The key of the asset ``term`` names (checked by :func:`check_jobs`)."""
    if term in assets:
        return term
    return next(k for k, a in assets.items() if a.name == term)
