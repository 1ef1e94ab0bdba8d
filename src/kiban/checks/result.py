"""What judging a check produces (:class:`CheckResult`) and what judging needs besides the data (:class:`CheckContext`).

A leaf of ``kiban.checks``: ``kiban.checks.evaluate`` runs the suites and ``kiban.ml.checks`` judges the model check
kinds, and both build these, so neither has to import the other for them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import duckdb

from kiban.checks.quoting import relation_name
from kiban.status import CheckStatus, Severity

if TYPE_CHECKING:
    from kiban.slo.calendar import BusinessCalendar

# DuckDB errors that mean "this SQL does not fit", as opposed to interruptions, I/O or memory
NOT_FITTING = (duckdb.BinderException, duckdb.CatalogException, duckdb.ParserException, duckdb.ConversionException,
               duckdb.InvalidInputException, duckdb.NotImplementedException, duckdb.OutOfRangeException)


@dataclass
class CheckResult:
    asset: str
    name: str
    kind: str
    severity: str  # error, warn
    status: str  # pass, fail
    failures: int | None = None  # failing rows (row-level checks), None for table checks
    rows: int | None = None  # rows in the relation judged
    detail: str = ""
    samples: list[dict[str, Any]] = field(default_factory=list)
    observed: dict[str, Any] | None = None  # what was measured (volume history, freshness, row count)

    @property
    def blocks(self) -> bool:
        """A failed check of severity error: the version it judged must not be published."""
        return self.status == CheckStatus.FAIL and self.severity == Severity.ERROR


History = Callable[[str, str], list[tuple[date, dict[str, Any]]]]  # (asset, check) → earlier days' observations


@dataclass
class CheckContext:
    """What checks need besides the data: the time, the calendar, the history of earlier results."""

    now: datetime  # aware
    timezone: ZoneInfo
    calendar: Callable[[str | None], BusinessCalendar]
    history: History = field(default=lambda asset, check: [])
    relation_of: Callable[[str], str] = relation_name

    @property
    def today(self) -> date:
        return self.now.astimezone(self.timezone).date()

