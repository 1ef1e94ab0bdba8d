"""Volume anomalies: is today's row count (or sum) far from what this table usually holds on this weekday?

The history is the table's own earlier observations, one per local day (the latest of the day). The
method is a seasonal-naive forecast with a robust, self-calibrated spread:

1. **Baseline.** A day's expected value is the median of the same weekday's values in the previous
   ``BASELINE_WEEKS`` weeks of history (a shop sells more on Saturdays; an office system records little on
   Sundays). The median shrugs off one bad week.
2. **Ratios.** Each earlier day of the last ``window`` days is divided by *its* baseline (computed only from
   days before it). These ratios are what "normal" looked like, week-on-week growth included.
3. **Score.** Today's ratio minus the median ratio, in robust standard deviations of the ratios
   (1.4826 × MAD, at least 1%, so a perfectly flat history does not turn a one-row change into an
   anomaly). Beyond ``threshold`` (default 3.5, the usual cut-off of this "modified z-score") the value is
   an anomaly. Because the spread is measured on the same kind of forecast as today's, it is calibrated:
   noisy tables get wide bands, steady ones narrow bands.

Until ``min_history`` days are known (and today's weekday has been seen) the check passes and says it is
still learning.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

MAD_TO_SIGMA = 1.4826  # MAD x this = standard deviation, for normally distributed data
MIN_SPREAD = 0.01  # the spread of the ratios is at least 1%
BASELINE_WEEKS = 4
MIN_RATIOS = 7


@dataclass(frozen=True)
class VolumeVerdict:
    anomaly: bool
    learning: bool
    score: float | None = None
    expected: float | None = None  # the usual value for today's weekday
    history: int = 0  # days of history used


def judge(history: Sequence[tuple[date, float]], today: date, value: float, *, window: int = 56,
          min_history: int = 21, threshold: float = 3.5, direction: str = "both") -> VolumeVerdict:
    """Judge ``value`` observed on ``today`` against ``history`` (earlier days, one value per day)."""
    days = sorted((d, v) for d, v in history if d < today)
    baseline_today = _baseline(days, today)
    if len(days) < min_history or baseline_today is None:
        return VolumeVerdict(False, True, history=len(days))
    ratios = []
    for i, (day, observed) in enumerate(days):
        if (today - day).days > window:
            continue
        base = _baseline(days[:i], day)
        if base is not None and base > 0:
            ratios.append(observed / base)
    if len(ratios) < MIN_RATIOS or baseline_today <= 0:
        return VolumeVerdict(False, True, history=len(days))
    usual = statistics.median(ratios)
    mad = statistics.median(abs(r - usual) for r in ratios)
    spread = max(MAD_TO_SIGMA * mad * (1 + 1 / math.sqrt(len(ratios))), MIN_SPREAD)
    score = (value / baseline_today - usual) / spread
    anomaly = (direction in ("both", "drop") and score < -threshold) or \
              (direction in ("both", "rise") and score > threshold)
    return VolumeVerdict(anomaly, False, score, baseline_today * usual, len(days))


def _baseline(days: Sequence[tuple[date, float]], day: date) -> float | None:
    """The median of ``day``'s weekday in the ``BASELINE_WEEKS`` weeks of ``days`` before it."""
    same = [v for d, v in days if d < day and d.weekday() == day.weekday() and (day - d).days <= 7 * BASELINE_WEEKS]
    return statistics.median(same) if same else None
