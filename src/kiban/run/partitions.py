"""Time partitions of incremental models: a grain (hour, day, month) cuts time into [start, end) ranges."""

from __future__ import annotations

from datetime import datetime, timedelta

from kiban.errors import UsageError

GRAINS = ("hour", "day", "month")


def truncate(moment: datetime, grain: str) -> datetime:
    """The start of the partition that holds ``moment``."""
    if grain == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    if grain == "day":
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if grain == "month":
        return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    raise ValueError(f"unknown grain '{grain}' (use one of {', '.join(GRAINS)})")


def following(start: datetime, grain: str) -> datetime:
    """The start of the next partition."""
    if grain == "hour":
        return start + timedelta(hours=1)
    if grain == "day":
        return start + timedelta(days=1)
    if grain == "month":
        return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    raise ValueError(f"unknown grain '{grain}' (use one of {', '.join(GRAINS)})")


def parse_bound(text: str, option: str) -> tuple[datetime, bool]:
    """A date (``2024-03-01``), a month (``2024-03``) or a time (``2024-03-01T05:00``); and whether it has a time."""
    value = text.strip()
    try:
        if len(value) == 7:  # YYYY-MM
            return datetime.strptime(value, "%Y-%m"), False
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{option} {text!r} is not a date",
                         "use YYYY-MM-DD, YYYY-MM, or YYYY-MM-DDTHH:MM for hourly models") from None
    if moment.tzinfo is not None:  # partitions are cut in the time column's own (naive) time
        moment = moment.replace(tzinfo=None)
    return moment, len(value) > 10


def partition_range(start_text: str, end_text: str, grain: str) -> list[datetime]:
    """Starts of every partition from ``--from`` to ``--to``, both included.

    ``--to 2024-03-31`` includes the whole day (all its hours for an hourly model); ``--to 2024-03``
    includes the whole month.
    """
    start, _ = parse_bound(start_text, "--from")
    end, timed = parse_bound(end_text, "--to")
    if len(end_text.strip()) == 7:
        stop = following(truncate(end, "month"), "month")
    elif timed:
        stop = end + timedelta(microseconds=1)
    else:
        stop = end + timedelta(days=1)
    if stop <= start:
        raise UsageError(f"--from {start_text} is after --to {end_text}", "give the earlier date first")
    starts = []
    here = truncate(start, grain)
    while here < stop:
        starts.append(here)
        here = following(here, grain)
    return starts
