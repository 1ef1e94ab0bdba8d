"""Intervals by permutation over time (conformal inference for a single treated series).

Chernozhukov, Wüthrich and Zhu (2021, "An exact and robust conformal inference method for counterfactual and
synthetic controls", JASA) test a hypothesised effect θ like this: take θ off the days after the start, fit the
counterfactual model on *all* days (so the after-start days are fitted as well as the others when θ is right),
and compare the after-start days' average residual with the average residual of every other stretch of the same
length (the series taken as a circle, moved one day at a time). If θ is right, the after-start stretch is just
one stretch among all, and it looks extreme in 5% of cases at most; the 95% interval is every θ not rejected.

This holds when the residuals are stationary and only weakly dependent over time — a few days of memory, not a
structural break — which the pre-period fit lets one judge. It does not rely on a standard error formula, so the
week-to-week correlation that made the regression intervals of one treated unit too narrow does not fool it.

The residual model is the caller's (a regression, a synthetic control); this module only permutes and inverts.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

MIN_POSITIONS = 40  # stretches compared: fewer whole weeks than this, and the stretches move a day at a time
MAX_STEPS = 80  # half-widths searched outwards from the estimate before giving up (an unbounded interval)
BISECTIONS = 12


def window_means(u: np.ndarray, length: int) -> np.ndarray:
    """The mean of ``length`` consecutive values starting at every position, the series read as a circle."""
    extended = np.concatenate([u, u[:length]])
    sums = np.concatenate([[0.0], np.cumsum(extended)])
    return (sums[length:length + len(u)] - sums[:len(u)]) / length


def p_value(u: np.ndarray, first: int, period: int = 7) -> float:
    """How unusual the stretch from ``first`` to the end is among all stretches of its length (|mean|), the
    stretches moved by whole ``period``s (weeks: each stretch holds the same weekdays, so a weekday pattern left
    in the residuals cannot make a stretch look unusual). The first ``len(u) % period`` values are left out so
    that the circle is whole periods too."""
    skip = len(u) % period
    u = u[skip:]
    stats = np.abs(window_means(u, len(u) - (first - skip)))
    starts = (first - skip + np.arange(0, len(u), period)) % len(u)
    chosen = stats[starts]
    return float(np.mean(chosen >= chosen[0] * (1 - 1e-12)))


def period_for(days: int) -> int:
    """7 (move stretches by whole weeks) when a series holds at least ``MIN_POSITIONS`` weeks, else 1: with fewer
    positions the smallest possible p-value (1 / positions) comes too close to the 5% level to reject at all."""
    return 7 if days // 7 >= MIN_POSITIONS else 1


def interval(residuals: Callable[[float], np.ndarray], first: int, estimate: float, scale: float,
             level: float, period: int = 7) -> tuple[float, float]:
    """The θ whose residuals are not rejected at ``1 − level``: searched outwards from the estimate in steps of
    ``scale / 2``, then bisected. ±inf where nothing within ``MAX_STEPS`` steps is rejected."""
    alpha = 1.0 - level

    def accepted(theta: float) -> bool:
        return p_value(residuals(theta), first, period) > alpha

    ends: list[float] = []
    step = max(scale, 1e-9) / 2
    for sign in (-1.0, 1.0):
        inside, outside = estimate, None
        for k in range(1, MAX_STEPS + 1):
            theta = estimate + sign * k * step
            if accepted(theta):
                inside = theta
            else:
                outside = theta
                break
        if outside is None:
            ends.append(sign * np.inf)
            continue
        for _ in range(BISECTIONS):
            middle = (inside + outside) / 2
            if accepted(middle):
                inside = middle
            else:
                outside = middle
        ends.append(inside)
    return ends[0], ends[1]
