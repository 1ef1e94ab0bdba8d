"""Error budgets: how many more misses a use case can afford in its rolling window, and how fast it burns."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta

from kiban.slo.evaluate import FINAL, MISSES, Verdict

FAST_BURN = 2.0  # burning twice as fast as the target allows over the last week


@dataclass(frozen=True)
class Budget:
    usecase: str
    target: float
    window_days: int
    due: int  # days with a final verdict in the window
    met: int
    missed: int
    attainment: float | None  # met / due
    allowed: int  # misses the target allows over the window
    left: int  # allowed − missed (negative: the promise is broken)
    burn_rate: float | None  # recent miss rate ÷ allowed miss rate (1.0 = exactly on budget)

    @property
    def fast_burn(self) -> bool:
        return self.burn_rate is not None and self.burn_rate >= FAST_BURN

    @property
    def exhausted(self) -> bool:
        return self.left < 0


def budget(usecase: str, target: float, window_days: int, verdicts: list[Verdict], today: date,
           recent_days: int = 7) -> Budget:
    """Budget from ``verdicts`` (of this use case) whose due day falls in the window ending ``today``."""
    start = today - timedelta(days=window_days - 1)
    final = [v for v in verdicts if v.usecase == usecase and start <= v.due_date <= today and v.verdict in FINAL]
    due = len(final)
    missed = sum(1 for v in final if v.verdict in MISSES)
    allowed = math.floor((1 - target) * due + 1e-9)
    recent_start = today - timedelta(days=recent_days - 1)
    recent = [v for v in final if v.due_date >= recent_start]
    burn = None
    if recent and target < 1:
        rate = sum(1 for v in recent if v.verdict in MISSES) / len(recent)
        burn = rate / (1 - target)
    return Budget(usecase, target, window_days, due, due - missed, missed,
                  (due - missed) / due if due else None, allowed, allowed - missed, burn)


def too_tight(b: Budget) -> str | None:
    """A warning when the target allows no miss at all over the due days of its window, with how to choose a
    window or target that does (the allowance would otherwise flip with the month's holidays)."""
    if b.target >= 1 or b.due == 0 or b.allowed > 0:
        return None
    needed = math.ceil(1 / (1 - b.target) - 1e-9)  # due days for one allowed miss
    window = math.ceil(b.window_days * needed / b.due)
    target = math.floor((1 - 1 / b.due) * 1000) / 10
    return (f"{b.usecase}: {b.target:.0%} over {b.due} judged day(s) allows no miss at all; one miss breaks the "
            f"promise. Choose window_days of at least {window} (about {needed} due days), or a target of at most "
            f"{target:g}%")
