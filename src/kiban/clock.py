"""The clock, injectable so tests of schedules, calendars, catch-up, backoffs and rate windows run in no time.

One ``Clock`` for all of kiban: the scheduler takes one; a component that only needs the time or a wait
(``Notifier(now=, sleep=)``, ``Gate(now=)``, ``BreachWatcher(clock=)``) takes its bound ``clock.now`` /
``clock.sleep``, so one ``FakeClock`` drives them all. A core leaf: imports nothing of kiban.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Now as naive UTC (the store keeps naive UTC everywhere)."""
        ...

    def sleep(self, seconds: float, stop: threading.Event | None = None) -> None:
        """Wait ``seconds``, or less when ``stop`` is set."""
        ...


class RealClock:
    """The wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC).replace(tzinfo=None)

    def sleep(self, seconds: float, stop: threading.Event | None = None) -> None:
        (stop or threading.Event()).wait(max(0.0, seconds))


class FakeClock:
    """A clock that moves only when told: ``advance()``, or ``sleep()`` which advances instead of waiting."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is not None:
            start = start.astimezone(UTC).replace(tzinfo=None)
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float = 0, **delta: float) -> datetime:
        self._now += timedelta(seconds=seconds, **delta)
        return self._now

    def set(self, moment: datetime) -> None:
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
        self._now = moment

    def sleep(self, seconds: float, stop: threading.Event | None = None) -> None:
        self.advance(max(0.0, seconds))
