"""Plain oracles for service-level tests: what the docs say, computed the long way with :mod:`zoneinfo`."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo


def oracle_deadline(day: date, by: str, zone: ZoneInfo) -> datetime:
    """The first UTC moment the wall clock shows ``by`` on ``day``; inside a gap, the wall time read with the
    offset in force before the gap (it lands after the gap, later by the gap's length)."""
    hour, minute = map(int, by.split(":"))
    wall = datetime.combine(day, time(hour, minute))
    found = []
    for fold in (0, 1):
        moment = wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)
        if moment.astimezone(zone).replace(tzinfo=None) == wall:
            found.append(moment)
    if found:
        return min(found).replace(tzinfo=None)
    before = (wall - timedelta(hours=6)).replace(tzinfo=zone).utcoffset()
    assert before is not None
    return wall - before
