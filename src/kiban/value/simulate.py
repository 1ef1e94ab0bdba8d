"""Synthetic KPI panels with a planted effect: the ground truth that tests, bench/ and the docs measure against.

A unit's daily KPI = its own level × (weekly pattern + holiday dip) × a slow trend, plus a shock shared by all
units that day (autocorrelated: a warm week is warm for everyone), plus the unit's own autocorrelated noise,
plus ``effect`` per day for the treated units from ``start`` on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from kiban.value.effect import Panel

WEEKLY = np.array([0.95, 0.9, 0.92, 0.97, 1.05, 1.2, 1.15])  # Monday … Sunday


@dataclass(frozen=True)
class Planted:
    panel: Panel
    start: date
    treated: tuple[str, ...]
    control: tuple[str, ...]
    effect: float  # per treated unit and day, in KPI units
    holidays: frozenset[date]


def _ar1(rng: np.random.Generator, shape: tuple[int, ...], rho: float, sd: float) -> np.ndarray:
    noise = rng.normal(0.0, sd * np.sqrt(1 - rho**2), size=shape)
    out = np.empty(shape)
    out[..., 0] = rng.normal(0.0, sd, size=shape[:-1])
    for t in range(1, shape[-1]):
        out[..., t] = rho * out[..., t - 1] + noise[..., t]
    return out


@dataclass(frozen=True)
class Scenario:
    """The world a panel is drawn from: ``units`` over ``days`` from ``first``, ``effect`` per treated unit and day
    from day ``start_day`` on, for ``treated_share`` of the units. ``level`` is a unit's typical KPI, ``common_sd``
    and ``unit_sd`` the shared and own noise (AR(1) with ``rho``), ``trend`` the growth per year. ``effect=0`` gives
    a placebo. Groups are drawn at random unless ``random_groups=False`` (then the larger units are treated: groups
    differ in level, not in trend). ``holidays``: None, a fixed set of Japanese holidays."""

    units: int = 40
    days: int = 365
    start_day: int = 245
    effect: float = 30.0
    treated_share: float = 0.5
    first: date = date(2025, 1, 1)
    level: float = 1000.0
    common_sd: float = 40.0
    unit_sd: float = 60.0
    rho: float = 0.5
    trend: float = 0.05
    random_groups: bool = True
    holidays: frozenset[date] | None = None


def panel(seed: int, scenario: Scenario = Scenario()) -> Planted:
    """A panel drawn from ``scenario`` with ``seed``, with its planted effect (the ground truth)."""
    units, days, start_day, effect = scenario.units, scenario.days, scenario.start_day, scenario.effect
    level, trend, rho, holidays = scenario.level, scenario.trend, scenario.rho, scenario.holidays
    rng = np.random.default_rng(seed)
    day_list = [scenario.first + timedelta(days=i) for i in range(days)]
    if holidays is None:
        holidays = frozenset(d for d in day_list if (d.month, d.day) in ((1, 1), (1, 2), (5, 3), (5, 4), (5, 5),
                                                                           (8, 13), (8, 14), (12, 31)))
    levels = level * rng.lognormal(0.0, 0.3, size=units)
    weekday = WEEKLY[[d.weekday() for d in day_list]]
    holiday = np.array([0.8 if d in holidays else 1.0 for d in day_list])
    growth = 1.0 + trend * np.arange(days) / 365.0
    base = levels[:, None] * (weekday * holiday * growth)[None, :]
    shared, own = _ar1(rng, (days,), rho, scenario.common_sd), _ar1(rng, (units, days), rho, scenario.unit_sd)
    values = base + shared[None, :] + own
    names = [f"U{i:04d}" for i in range(units)]
    n_t = max(1, round(units * scenario.treated_share))
    order = rng.permutation(units) if scenario.random_groups else np.argsort(-levels)
    treated_idx = sorted(order[:n_t].tolist())
    is_t = np.zeros(units, dtype=bool)
    is_t[treated_idx] = True
    values[is_t, start_day:] += effect
    treated = tuple(names[i] for i in treated_idx)
    control = tuple(n for i, n in enumerate(names) if not is_t[i])
    return Planted(Panel(tuple(day_list), tuple(names), values), day_list[start_day], treated, control, effect,
                   holidays)
