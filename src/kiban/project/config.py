"""The shapes of a project's YAML files, validated with Pydantic."""

from __future__ import annotations

import os
import re
import zoneinfo
from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kiban.checks.spec import ColumnCheck, TableCheck, check_type, columns_of
from kiban.errors import closest
from kiban.project.jobs import JobConfig, SchedulerConfig
from kiban.project.team import OncallConfig
from kiban.storage.spec import StorageConfig

LAYERS = ("lake", "warehouse", "mart")
Layer = Literal["lake", "warehouse", "mart"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True, frozen=True)


class ProjectConfig(_Strict):
    """``kiban.yml``."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_\-]*$")
    timezone: str = "UTC"
    warehouse: str = "duckdb:///kiban.duckdb"
    lake: str = "lake"
    state: str = "sqlite:///.kiban/state.db"
    threads: int | None = Field(default=None, ge=1, le=64)
    retries: int = Field(default=0, ge=0, le=20)
    retry_delay: float = Field(default=1.0, ge=0)
    timeout: float | None = Field(default=None, gt=0, description="seconds per asset attempt")
    calendar: str = "jp"
    calendars: dict[str, CalendarConfig] = Field(default_factory=dict)
    channels: dict[str, ChannelConfig] = Field(default_factory=dict)
    jobs: dict[str, JobConfig] = Field(default_factory=dict)  # the scheduler's: kiban.project.jobs
    scheduler: SchedulerConfig = SchedulerConfig()
    # at most N assets with this tag build at the same time within a run, e.g. {pos_extract: 1}
    limits: dict[str, int] = Field(default_factory=dict)
    openlineage: OpenLineageConfig | None = None  # where runs send OpenLineage events (kiban.catalog.openlineage)
    console_url: str | None = None  # the web console's address, linked from notifications (kiban.notify)
    deliveries: dict[str, DeliveryConfig] = Field(default_factory=dict)  # files people get (kiban.deliver)
    oncall: OncallConfig | None = None  # the team's rotation (kiban.project.team, kiban.team.oncall)
    review_notify: tuple[str, ...] = ()  # channels the weekly operations review goes to (kiban review --send)
    metrics: dict[str, MetricConfig] = Field(default_factory=dict)  # named KPIs initiatives refer to (`kpi: NAME`)
    storage: StorageConfig | None = None  # the lake and published tables on shared storage (kiban.storage)

    @field_validator("limits")
    @classmethod
    def _positive_limits(cls, value: dict[str, int]) -> dict[str, int]:
        for tag, limit in value.items():
            if limit < 1:
                raise ValueError(f"limits.{tag}: {limit} would never let an asset tagged {tag} run; use 1 or more")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            near = closest(value, zoneinfo.available_timezones())
            advice = f"did you mean '{near}'?" if near else "use an IANA name such as Asia/Tokyo"
            raise ValueError(f"unknown timezone '{value}' ({advice})") from None
        return value

    @property
    def effective_threads(self) -> int:
        return self.threads or os.cpu_count() or 1


class MetricConfig(_Strict):
    """A named business metric (``metrics:`` in kiban.yml): one value per unit and day, read from a published
    table (``asset:`` with its ``date:``, ``unit:`` and ``value:`` columns) or a SELECT (``sql:`` returning the
    columns day, unit, value). Initiatives name it as their KPI (``kpi: sales``)."""

    description: str = ""
    sql: str | None = None
    asset: str | None = None
    date: str = "day"
    unit: str | None = None  # None: the whole business is one unit
    value: str = "value"
    measure: str = ""  # its unit of measure, shown next to numbers ("yen", "orders")
    higher_is_better: bool = True

    @model_validator(mode="after")
    def _one_source(self) -> MetricConfig:
        if (self.sql is None) == (self.asset is None):
            raise ValueError("a metric is either `sql:` (returning day, unit, value) or `asset:` with its `date:`, "
                             "`unit:` and `value:` columns")
        return self


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h)?\s*$")


def parse_duration(value: str | float | int) -> float:
    """Seconds from ``90``, ``"90s"``, ``"15m"``, ``"1.5h"``."""
    if isinstance(value, int | float):
        return float(value)
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"'{value}' is not a duration (examples: 90s, 15m, 1.5h)")
    number, unit = float(match.group(1)), match.group(2) or "s"
    return number * {"ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600}[unit]


class CalendarConfig(_Strict):
    """A business calendar: a country's public holidays, weekend days, and the company's own closed days."""

    country: str | None = "JP"
    weekend: tuple[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], ...] = ("sat", "sun")
    closed: tuple[date, ...] = ()
    open: tuple[date, ...] = ()  # days that are business days even though the rules above say closed

    @field_validator("country")
    @classmethod
    def _known_country(cls, value: str | None) -> str | None:
        if value is None:
            return None
        import holidays

        if value.upper() not in holidays.list_supported_countries():
            raise ValueError(f"'{value}' is not a country the holidays package knows (ISO code such as JP, US, DE)")
        return value.upper()


class OpenLineageConfig(_Strict):
    """Where runs send OpenLineage events: an HTTP endpoint (``url``, may be ``env:NAME``) or a JSON-lines ``file``."""

    url: str | None = None
    file: str | None = None
    namespace: str | None = None  # default: kiban://<project name>
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _one_target(self) -> OpenLineageConfig:
        if bool(self.url) == bool(self.file):
            raise ValueError("openlineage takes either a url (an HTTP endpoint) or a file (JSON lines)")
        return self


class DeliveryConfig(_Strict):
    """One delivery of ``deliveries:``: a mart (or a recipe) as a file, to a folder, an e-mail or a chat."""

    mart: str | None = None  # an asset key, e.g. mart.weekly_marketing
    recipe: str | None = None  # or a recipe of recipes/NAME.yml (its default parameters)
    params: dict[str, str] = Field(default_factory=dict)  # a recipe's parameters
    format: Literal["xlsx", "csv"] = "xlsx"
    encoding: Literal["utf-8-sig", "cp932", "utf-8"] = "utf-8-sig"  # csv: with a BOM (Excel), or Shift_JIS
    file: str | None = None  # the file's name; {date} is the local date, {name} the delivery's name
    folder: str | None = None  # a destination folder (relative to the project)
    channel: str | None = None  # or a channel of `channels:`: email → attachment, webhook/slack → a message
    usecase: str | None = None  # the use case it serves: shown with it
    # `kiban deliver --due` delivers it once its use case's data is there (verdict met or late), once per due day
    after: Literal["usecase_met"] | None = None
    # or on a cron schedule ("0 8 * * 1": Mondays 08:00 in the project's timezone), honoured by `kiban schedule`;
    # with `calendar`, only on that calendar's business days
    schedule: str | None = None
    calendar: str | None = None
    # to a webhook or slack channel: `upload` posts the file with the message (multipart/form-data), `link` puts
    # a link to a served download that expires after `link_hours` in the message (needs `console_url`), `none`
    # only names it (the default).
    chat_file: Literal["upload", "link", "none"] = "none"
    link_hours: float = Field(default=72, gt=0, le=24 * 90)
    retries: int = Field(default=3, ge=0, le=10)

    @field_validator("schedule")
    @classmethod
    def _valid_schedule(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from croniter import croniter

        if len(value.split()) not in (5, 6) or not croniter.is_valid(value):
            raise ValueError(f"'{value}' is not a valid cron expression: five fields, minute hour day month weekday "
                             "(e.g. \"0 8 * * 1\" for Mondays at 08:00)")
        return value

    @model_validator(mode="after")
    def _complete(self) -> DeliveryConfig:
        if self.calendar is not None and self.schedule is None:
            raise ValueError("`calendar:` applies to a `schedule:`; add one")
        if (self.mart is None) == (self.recipe is None):
            raise ValueError("a delivery names either a mart or a recipe")
        if (self.folder is None) == (self.channel is None):
            raise ValueError("a delivery goes to either a folder or a channel")
        if self.after == "usecase_met" and self.usecase is None:
            raise ValueError("after: usecase_met needs `usecase:` (the use case whose verdict it waits for)")
        return self


class ChannelConfig(_Strict):
    """A notification channel. URLs and SMTP credentials may be ``env:NAME``."""

    model_config = ConfigDict(extra="forbid", defer_build=True, frozen=True, populate_by_name=True)

    type: Literal["slack", "webhook", "email"]
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    smtp: str | None = None  # smtp://user:password@host:port (smtps:// for TLS, ?starttls=1)
    sender: str | None = Field(default=None, alias="from")
    to: tuple[str, ...] = ()
    min_interval: float = Field(default=300, ge=0, description="seconds before the same message is sent again")
    retries: int = Field(default=3, ge=0, le=10)

    @model_validator(mode="after")
    def _complete(self) -> ChannelConfig:
        if self.type in ("slack", "webhook") and not self.url:
            raise ValueError(f"a {self.type} channel needs a url")
        if self.type == "email" and not (self.smtp and self.sender and self.to):
            raise ValueError("an email channel needs smtp, from and to")
        return self


class PiiConfig(_Strict):
    """How the console masks a personal column for people without clearance: ``redact`` (one constant for
    every value: nothing, not even equality, is learnt) or ``hash`` (a keyed hash: equal values stay equal,
    so joins and counts of distinct people work; declare it only where that is intended)."""

    mask: Literal["redact", "hash"] = "redact"


class ColumnConfig(_Strict):
    """One documented column of a model: what it means, its type for a contract, the checks on it."""

    name: str
    description: str = ""
    tags: tuple[str, ...] = ()
    pii: PiiConfig | None = None  # `pii: {mask: hash}`; implies the tag pii
    type: str | None = None  # the declared type, enforced by a `contract` check
    checks: tuple[ColumnCheck, ...] = ()

    @field_validator("type")
    @classmethod
    def _type(cls, value: str | None) -> str | None:
        return check_type(value)

    @field_validator("pii", mode="before")
    @classmethod
    def _pii(cls, value: Any) -> Any:
        return {} if value is True else None if value is False else value

    @model_validator(mode="after")
    def _pii_tag(self) -> ColumnConfig:
        if self.pii is not None and "pii" not in self.tags:
            object.__setattr__(self, "tags", (*self.tags, "pii"))  # frozen: set once, while validating
        return self

    @model_validator(mode="after")
    def _own_column(self) -> ColumnConfig:
        """A check listed under a column is about that column."""
        resolved = []
        for check in self.checks:
            named = columns_of(check)
            if check.kind == "unique":
                if named and named != (self.name,):
                    raise ValueError(f"a unique check under column {self.name} is about {self.name}; "
                                     "list a composite key under the model's `checks:` as unique: [a, b]")
                check = check.model_copy(update={"columns": (self.name,)})
            elif hasattr(check, "column"):
                if named and named != (self.name,):
                    raise ValueError(f"a check under column {self.name} names another column ({named[0]})")
                check = check.model_copy(update={"column": self.name})
            resolved.append(check)
        object.__setattr__(self, "checks", tuple(resolved))  # frozen: set once, while validating
        return self


class ModelConfig(_Strict):
    """The optional sidecar ``NAME.yml`` next to a model's SQL."""

    description: str = ""
    owner: str | None = None
    tags: tuple[str, ...] = ()
    materialized: Literal["table", "view", "incremental"] = "table"
    columns: tuple[ColumnConfig, ...] = ()
    retries: int | None = Field(default=None, ge=0, le=20)
    timeout: float | None = Field(default=None, gt=0)
    time_column: str | None = None  # the column that says how far the data reaches (max → watermark)
    # incremental models: partitions of time_column by grain; `lookback` partitions before the newest
    # processed one are processed again on every run, for rows that arrive late
    grain: Literal["day", "hour", "month"] | None = None
    lookback: int | None = Field(default=None, ge=0, le=10_000)
    expected_duration: float | None = None  # seconds; used for deadlines until there is history
    # lake tables: the local time ("HH:MM") by which each day's data normally has arrived; a source still
    # missing then puts the use cases that need it at risk (kiban.slo.arrival). Without it, learned from loads.
    expected_by: str | None = None
    checks: tuple[TableCheck, ...] = ()  # table checks; column checks sit under `columns:`

    @field_validator("expected_duration", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        return parse_duration(value) if isinstance(value, str) else value

    @field_validator("expected_by", mode="before")
    @classmethod
    def _clock_time(cls, value: object) -> object:
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
            raise ValueError(f"YAML read the unquoted time as the number {value}; "
                             f"write it in quotes: \"{value // 60:02d}:{value % 60:02d}\"")
        if value is not None and (not isinstance(value, str) or not re.match(r"^([01]?\d|2[0-3]):[0-5]\d$", value)):
            raise ValueError(f"{value!r} is not a time of day; write it as HH:MM in quotes, e.g. \"01:30\"")
        return value

    @property
    def has_checks(self) -> bool:
        return bool(self.checks) or any(c.checks for c in self.columns)

    @property
    def incremental(self) -> bool:
        return self.materialized == "incremental"

    @property
    def partition_grain(self) -> str:
        return self.grain or "day"

    @property
    def partition_lookback(self) -> int:
        return self.lookback if self.lookback is not None else 1


# Keys of a model's sidecar that are about building it, and so mean nothing for a lake table's sidecar.
BUILD_KEYS = ("materialized", "retries", "timeout", "time_column", "expected_duration", "grain", "lookback")
