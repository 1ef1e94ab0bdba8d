"""Data arrival as part of the promise: when each source table is expected, and whether it is overdue.

A use case can only be delivered after the sources it is built from have delivered what it needs: the
day's rows (a watermark reaching ``data_through``) or, for an untimed table, a load since the window
opened. Each lake table upstream of a use case gets an **expected arrival** for a due day:

- declared: ``expected_by: "HH:MM"`` (local time) in the table's ``sources/*.yml`` entry or lake sidecar —
  the last such moment before the deadline;
- learned: from the table's own loads over the last due days — the median of when it delivered (on the wall
  clock: how long before the deadline's local time, so a nightly 01:00 load is expected at 01:00 on the nights the
  clocks change too), plus three
  times the spread of the earlier half (so late nights in the history do not move it), at least
  :data:`GRACE`. Learned only from :data:`MIN_DAYS` due days on which it
  delivered in the window (a table loaded weekly has no daily expectation).

A table that has not delivered by then is **overdue**: the use case is ``at_risk`` with the source as the
cause, whether or not a run is going — the scheduler's per-minute check sees it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from kiban.project import UseCase
from kiban.slo.calendar import deadline_utc, required_through, wall_before, wall_seconds
from kiban.slo.completeness import delivered_at, must_be_whole
from kiban.slo.durations import percentile
from kiban.slo.facts import Facts

if TYPE_CHECKING:
    from kiban.slo.evaluate import Context

GRACE = timedelta(minutes=30)  # a learned expectation is not overdue the minute after its p90
MIN_DAYS = 5  # due days with an arrival before an expectation is learned
LOOKBACK_DAYS = 28


@dataclass(frozen=True)
class Expectation:
    asset: str
    expected_at: datetime  # naive UTC: overdue after this
    how: str  # "declared HH:MM" or "learned from N loads"


@dataclass(frozen=True)
class LateSource:
    asset: str
    expected_at: datetime
    overdue_s: float
    how: str
    reach: date | None  # how far its data reaches now (stale: short of what is needed)
    needed: date | None
    arrived_at: datetime | None = None  # when it finally arrived (for a delivery judged late)

    def as_dict(self) -> dict[str, Any]:
        return {"asset": self.asset, "expected_at": self.expected_at.isoformat(), "overdue_s": self.overdue_s,
                "how": self.how, "reach": self.reach.isoformat() if self.reach else None,
                "needed": self.needed.isoformat() if self.needed else None,
                "arrived_at": self.arrived_at.isoformat() if self.arrived_at else None}


def sources_of(ctx: Context, usecase: str) -> list[str]:
    """The lake tables the use case is built from, in dependency order."""
    return ctx.upstream_in(usecase, lake=True)


def arrived(ctx: Context, facts: Facts, key: str, through: date | None, window_start: datetime, deadline: datetime
            ) -> datetime | None:
    """When the table delivered what the due day needs: reached ``through`` (the whole day, when it has ended by
    the deadline: :mod:`kiban.slo.completeness`), else a load in the window."""
    if through is not None and ctx.graph.assets[key].config.time_column:
        # a table that reached the date long before the window still counts: nothing newer is needed
        if must_be_whole(through, deadline, ctx):
            return delivered_at(ctx, facts, key, through)
        return facts.of(key).first_reaching(through)
    return facts.of(key).first_publish_after(window_start)


def expectation(ctx: Context, facts: Facts, usecase: UseCase, key: str, due: date, deadline: datetime
                ) -> Expectation | None:
    """When ``key`` is expected for ``usecase``'s due day ``due`` (None: no declared or learned expectation)."""
    declared = ctx.graph.assets[key].config.expected_by
    if declared:
        hour, minute = (int(p) for p in declared.split(":"))
        at = deadline_utc(due, time(hour, minute), ctx.tz)
        if at > deadline:  # e.g. 23:00 for an 08:30 deadline: the evening before
            at = deadline_utc(due - timedelta(days=1), time(hour, minute), ctx.tz)
        return Expectation(key, at, f"declared expected_by {declared}")
    return _learned(ctx, facts, usecase, key, due, deadline)


def _learned(ctx: Context, facts: Facts, usecase: UseCase, key: str, due: date, deadline: datetime
             ) -> Expectation | None:
    cache_key = (usecase.name, key, due)
    if cache_key in ctx.arrival_cache:
        return ctx.arrival_cache[cache_key]
    leads: list[float] = []  # seconds before the deadline the table delivered, per past due day
    days = [d for d in ctx.schedule(usecase, due - timedelta(days=LOOKBACK_DAYS), due - timedelta(days=1))
            if facts.first_run is not None and d[1] >= facts.first_run]  # days kiban could know about
    for day, window_start, day_deadline in days:
        through = required_through(day, usecase.config.need.data_through, ctx.calendar(usecase))
        at = arrived(ctx, facts, key, through, window_start, day_deadline)
        if at is not None and window_start < at <= day_deadline + timedelta(hours=12):
            # on the wall clock: a load at 01:00 is at 01:00 on the night the clocks change too
            leads.append(wall_seconds(at, day_deadline, ctx.tz))
    found: Expectation | None = None
    if len(leads) >= MIN_DAYS and len(leads) >= 0.8 * len(days):
        # robust to the late nights in the history: the median arrival plus three times the spread of the
        # earlier half (late outliers do not widen it), at least GRACE
        usual = percentile(leads, 0.5)
        spread = percentile(leads, 0.75) - usual
        grace = max(GRACE, timedelta(seconds=3 * spread))
        found = Expectation(key, wall_before(deadline, usual, ctx.tz) + grace, f"learned from {len(leads)} loads")
    ctx.arrival_cache[cache_key] = found
    return found


def late_sources(ctx: Context, facts: Facts, usecase: UseCase, due: date, window_start: datetime,
                 deadline: datetime, now: datetime) -> list[LateSource]:
    """Sources of ``usecase`` that had not delivered what due day ``due`` needs by their expected arrival
    (judged at ``now``; a source that arrived late is listed with ``arrived_at``)."""
    through = required_through(due, usecase.config.need.data_through, ctx.calendar(usecase))
    out: list[LateSource] = []
    for key in sources_of(ctx, usecase.name):
        if key not in facts.assets:
            continue  # never loaded by kiban (a plain lake folder): nothing says when it arrives
        expect = expectation(ctx, facts, usecase, key, due, deadline)
        if expect is None or now <= expect.expected_at:
            continue
        item = facts.of(key)
        at = arrived(ctx, facts, key, through, window_start, deadline)
        if at is not None and at > now:
            at = None
        if at is not None and at <= expect.expected_at:
            continue  # on time
        end = at or now
        out.append(LateSource(key, expect.expected_at, (end - expect.expected_at).total_seconds(), expect.how,
                              item.reach_at(now), through if ctx.graph.assets[key].config.time_column else None,
                              at))
    return out
