"""A day delivered whole: data reaching a day counts for it only if it was read after the day had ended.

An asset's watermark says how far its rows reach: the newest date in its ``time_column``. Rows of a day read
while the day was still going are only part of it: an hourly load at 15:00 reaches today, and if the nightly
load then fails, the morning's "data through yesterday" would be met on half a day. So when a use case needs a
day that has ended by its deadline (``yesterday``, ``previous_business_day``; not ``today``, whose data is
partial by nature), an asset delivers it only at the first publish where

- its data reaches the day (the watermark), and
- the data was read after the day's end (midnight after it, in the project's timezone):

  - a lake table: a load of it started after the day's end (a load that lands nothing is a look at the
    source that found nothing newer: it confirms what is there);
  - a model: it was built, or found current (its inputs unchanged), after each timed lake table it is built
    from had been loaded after the day's end, so it holds those reads. Lake tables whose rows run ahead of the
    day they are read (plans, budgets, calendars) say nothing about a day being over and are not waited for;
  - a model with no timed lake table upstream: it was built, or found current, after the day's end.

The repair a miss offers, ``kiban run +ASSET``, collects the sources again and rebuilds (or confirms) the path,
which is what delivers the whole day.

Everything here is derived from one :class:`~kiban.slo.facts.Facts` and kept in its ``memo``.
"""

from __future__ import annotations

import bisect
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING

from kiban.slo.calendar import deadline_utc, local_date
from kiban.slo.facts import Facts

if TYPE_CHECKING:
    from kiban.slo.evaluate import Context

MIDNIGHT = time(0, 0)


def day_end(day: date, ctx: Context) -> datetime:
    """The naive-UTC moment ``day`` ends in the project's timezone."""
    found = ctx.day_ends.get(day)
    if found is None:
        found = ctx.day_ends[day] = deadline_utc(day + timedelta(days=1), MIDNIGHT, ctx.tz)
    return found


def must_be_whole(through: date | None, deadline: datetime, ctx: Context) -> bool:
    """Whether the required day has ended by the deadline (then a part of it is not a delivery)."""
    return through is not None and day_end(through, ctx) <= deadline


def delivered_at(ctx: Context, facts: Facts, key: str, through: date) -> datetime | None:
    """When ``key`` first held the whole of day ``through`` (None: not yet)."""
    memo = ("delivered", key, through)
    if memo in facts.memo:
        return facts.memo[memo]
    item = facts.of(key)
    first = item.first_reaching_index(through)
    found: datetime | None = None
    if first < len(item.published_at):
        end = day_end(through, ctx)
        sources = [] if key.startswith("lake.") else _timed_sources(ctx, facts, key)
        read_after: datetime | None = end
        if sources:  # built after each source had been read after the day's end and published
            published = [_read_after(facts, source, end) for source in sources]
            read_after = None if any(at is None for at in published) else max(at for at in published if at)
        if read_after is not None:
            index = max(first, bisect.bisect_left(item.read_at, read_after))
            found = item.published_at[index] if index < len(item.published_at) else None
    facts.memo[memo] = found
    return found


def partial_read(ctx: Context, facts: Facts, key: str, through: date, moment: datetime
                 ) -> tuple[str, datetime] | None:
    """Why ``key`` does not hold the whole of ``through`` at ``moment`` although its data reaches it: the table
    (``key`` itself, or a timed lake table it is built from) whose data was read before the day was over, and
    when. None: it does not reach the day, or nothing was read early."""
    item = facts.of(key)
    i = item.last_publish_before(moment)
    reach = item.reach[i] if i is not None else None
    if i is None or reach is None or reach < through:
        return None
    end = day_end(through, ctx)
    sources = [] if key.startswith("lake.") else _timed_sources(ctx, facts, key)
    for source in sources or [key]:
        held = facts.of(source)
        j = held.last_publish_before(item.read_at[i] if sources else moment)
        if j is None or held.read_at[j] < end:
            return source, held.read_at[j] if j is not None else item.read_at[i]
    return None


def _read_after(facts: Facts, source: str, end: datetime) -> datetime | None:
    """When ``source`` was first published from a read after ``end``: what a model must be built after."""
    item = facts.of(source)
    index = bisect.bisect_left(item.read_at, end)
    return item.published_at[index] if index < len(item.published_at) else None


def _timed_sources(ctx: Context, facts: Facts, key: str) -> list[str]:
    """The timed lake tables ``key`` is built from whose rows do not run ahead of when they are read."""
    memo = ("sources", key)
    if memo in facts.memo:
        return facts.memo[memo]
    timed = ("timed lake",)
    if timed not in facts.memo:  # the lake tables that can say a day is over: timed, loaded, not running ahead
        facts.memo[timed] = [k for k in sorted(facts.assets) if k.startswith("lake.") and k in ctx.graph.assets
                             and ctx.graph.assets[k].config.time_column and not _ahead(ctx, facts, k)]
    found = [k for k in facts.memo[timed] if ctx.reads(key, k)]
    facts.memo[memo] = found
    return found


def _ahead(ctx: Context, facts: Facts, key: str) -> bool:
    """Whether the lake table's rows ever reached past the (local) day they were read: plans, not events."""
    memo = ("ahead", key)
    if memo not in facts.memo:
        item = facts.of(key)
        facts.memo[memo] = any(reach is not None and reach > local_date(read, ctx.tz)
                               for reach, read in zip(item.reach, item.read_at, strict=True))
    return bool(facts.memo[memo])


__all__ = ["day_end", "delivered_at", "must_be_whole", "partial_read"]
