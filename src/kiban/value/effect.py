"""The effect of an intervention on a KPI, with an honest interval: three designs, one result.

The input is a :class:`Panel`: one KPI value per unit (store, region, customer) and day. What was changed
started on ``start`` for the ``treated`` units; ``control`` units (if any) were left alone.

* ``ab`` — the groups were assigned at random. The effect is the difference of the groups' average KPI after
  the start, adjusted for each unit's own average before (ANCOVA: same expected answer as the plain difference,
  narrower interval). Errors robust to unequal variances (HC1); a power note says which effect the test could
  have detected.
* ``did`` — difference-in-differences: the treated units' change from before to after, minus the control units'
  change. Anything that hits both groups on the same days (weekdays, holidays, weather, a trend) cancels. Each
  unit's before/after change is one observation (which makes the interval robust to any correlation over time
  within a unit, Bertrand–Duflo–Mullainathan 2004; HC3 errors, t with n − 2 degrees of freedom); with a single
  unit in a group, the weekly gap between the groups is regressed on an after-start indicator, a drift and
  holidays instead (see ``_ts_interval``).
* ``synth`` — synthetic control (:mod:`kiban.value.synth`): the treated units' daily average rebuilt as a
  weighted blend of control units (weights ≥ 0 and an intercept, fitted on the pre-period by SciPy), the effect
  the after-start average of actual − synthetic. The interval comes from permutations over time
  (:mod:`kiban.value.conformal`), and placebos in space (each control treated as if it had got the change) give
  a second p-value. The design for a single treated unit among untouched ones.
* ``before_after`` — no control group: the treated units' daily average is modelled over the whole period as
  trend + weekday + holiday of the project's calendar + a level shift from the start date (an interrupted time
  series on weekly means, see ``_ts_interval``). The counterfactual is the same model on days, without the shift.

Time-series intervals take the widest of the plain, the Newey–West (HAC) and an autocorrelation-inflated standard
error: measured on planted data (bench/initiatives.py), HAC alone is too narrow in series of a year of weeks.

The statistics are statsmodels' and SciPy's; this module only arranges the data and says what it assumed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np

from kiban.value import conformal, synth

LEVEL = 0.95
MIN_UNITS_PER_GROUP = 2  # fewer (a single treated unit): DiD over the groups' weekly gap instead of per-unit changes
HOLDOUT_DAYS = 28  # the pre-period's last days, predicted from the rest to show how well the model fits


class EffectError(ValueError):
    """The data cannot answer the question (no pre-period, no treated unit, …): the message says why."""


@dataclass(frozen=True)
class Panel:
    """A KPI as a units × days matrix (NaN where a unit has no value that day)."""

    days: tuple[date, ...]
    units: tuple[str, ...]
    values: np.ndarray  # shape (len(units), len(days))

    @classmethod
    def from_rows(cls, days: Sequence[Any] | np.ndarray, units: Sequence[Any] | np.ndarray,
                  values: Sequence[float] | np.ndarray) -> Panel:
        """Rows (day, unit, value) in any order; values of one unit and day are summed."""
        day_arr = np.asarray(days, dtype="datetime64[D]")
        unit_arr = np.asarray([str(u) for u in units]) if not isinstance(units, np.ndarray) else units.astype(str)
        unit_names, unit_idx = np.unique(unit_arr, return_inverse=True)
        return cls.from_codes(day_arr.astype(np.int64), unit_idx, [str(u) for u in unit_names], values)

    @classmethod
    def from_codes(cls, day_numbers: np.ndarray, unit_codes: np.ndarray, unit_names: Sequence[str],
                   values: Sequence[float] | np.ndarray) -> Panel:
        """Rows as numbers: days since 1970-01-01, each unit's index into ``unit_names``, the value (summed per
        unit and day). The fast path from Arrow (a date32 column and a dictionary-encoded one)."""
        day_num = np.asarray(day_numbers, dtype=np.int64)
        vals = np.asarray(values, dtype=float)
        if len(day_num) == 0:
            raise EffectError("the KPI returned no rows")
        first, last = int(day_num.min()), int(day_num.max())
        n_days, n_units = last - first + 1, len(unit_names)
        cell = np.asarray(unit_codes, dtype=np.int64) * n_days + (day_num - first)
        size = n_units * n_days
        matrix = np.bincount(cell, weights=np.nan_to_num(vals), minlength=size).reshape(n_units, n_days)
        seen = np.bincount(cell, minlength=size).reshape(n_units, n_days) > 0
        matrix[~seen] = np.nan
        start = date(1970, 1, 1) + timedelta(days=first)
        return cls(tuple(start + timedelta(days=i) for i in range(n_days)), tuple(unit_names), matrix)


@dataclass(frozen=True)
class SeriesPoint:
    day: date
    actual: float  # the treated units' average KPI that day
    counterfactual: float | None  # what it would have been without the change (None where not modelled)


@dataclass(frozen=True)
class Effect:
    """An estimated effect, per treated unit and day, in the KPI's units; totals over the treated unit-days."""

    method: str
    estimate: float
    low: float
    high: float
    p_value: float
    level: float
    treated_units: int
    control_units: int
    pre_days: int
    post_days: int
    baseline: float  # the treated units' average KPI per unit and day before the start
    pre_fit: dict[str, float | str] = field(default_factory=dict)
    assumptions: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    series: tuple[SeriesPoint, ...] = ()

    @property
    def unit_days(self) -> int:
        return self.treated_units * self.post_days

    @property
    def total(self) -> tuple[float, float, float]:
        """(estimate, low, high) summed over the treated units' days after the start."""
        n = self.unit_days
        return self.estimate * n, self.low * n, self.high * n

    @property
    def relative(self) -> float | None:
        return self.estimate / self.baseline if self.baseline else None

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def as_dict(self) -> dict[str, Any]:
        total = self.total
        return {"method": self.method, "estimate": self.estimate, "low": self.low, "high": self.high,
                "p_value": self.p_value, "level": self.level, "treated_units": self.treated_units,
                "control_units": self.control_units, "pre_days": self.pre_days, "post_days": self.post_days,
                "baseline": self.baseline, "relative": self.relative,
                "total": {"estimate": total[0], "low": total[1], "high": total[2]},
                "pre_fit": self.pre_fit, "assumptions": list(self.assumptions), "notes": list(self.notes)}


def measure(panel: Panel, start: date, *, method: str, treated: Sequence[str] = (), control: Sequence[str] = (),
            end: date | None = None, is_holiday: Callable[[date], bool] | None = None, level: float = LEVEL
            ) -> Effect:
    """Estimate the effect of a change that started on ``start`` (see the module's docstring for ``method``).

    ``treated`` defaults to every unit; ``control`` to the units not treated (when ``treated`` is given).
    Days after ``end`` are left out. ``is_holiday`` marks the calendar's holidays for ``before_after``.
    """
    if end is not None:
        keep = [i for i, d in enumerate(panel.days) if d <= end]
        panel = Panel(tuple(panel.days[i] for i in keep), panel.units, panel.values[:, keep])
    index = {u: i for i, u in enumerate(panel.units)}
    missing = [u for u in (*treated, *control) if u not in index]
    if missing:
        raise EffectError(f"unit {missing[0]!r} of the intervention has no KPI values "
                          f"({len(missing)} such unit{'s' if len(missing) > 1 else ''})")
    t_rows = [index[u] for u in treated] if treated else list(range(len(panel.units)))
    if control:
        c_rows = [index[u] for u in control]
    elif treated:
        chosen = set(t_rows)
        c_rows = [i for i in range(len(panel.units)) if i not in chosen]
    else:
        c_rows = []
    post = np.array([d >= start for d in panel.days])
    if not post.any():
        raise EffectError(f"no KPI values on or after the start date {start}")
    if method in ("did", "synth", "before_after") and post.all():
        raise EffectError(f"no KPI values before the start date {start}: nothing to compare with")
    if method in ("ab", "did", "synth") and not c_rows:
        raise EffectError(f"{method} needs a control group: units that did not get the change")
    if method == "ab":
        return _ab(panel, post, t_rows, c_rows, level)
    if method == "did":
        return _did(panel, post, t_rows, c_rows, level, is_holiday)
    if method == "before_after":
        return _before_after(panel, post, t_rows, level, is_holiday)
    if method == "synth":
        return _synth(panel, post, t_rows, c_rows, level)
    raise EffectError(f"unknown method '{method}' (ab, did, synth, before_after)")


def _mean_rows(values: np.ndarray, rows: Sequence[int]) -> np.ndarray:
    """The daily average over some units (NaN on a day none of them has a value)."""
    block = values[list(rows)]
    with np.errstate(invalid="ignore"):
        counts = np.sum(~np.isnan(block), axis=0)
        return np.where(counts > 0, np.nansum(block, axis=0) / np.maximum(counts, 1), np.nan)


def _unit_means(values: np.ndarray, columns: np.ndarray) -> np.ndarray:
    block = values[:, columns]
    counts = np.sum(~np.isnan(block), axis=1)
    return np.where(counts > 0, np.nansum(block, axis=1) / np.maximum(counts, 1), np.nan)


def _ols(y: np.ndarray, x: np.ndarray, cov: str, **kwds: Any) -> Any:
    from statsmodels.regression.linear_model import OLS

    return OLS(y, x).fit(cov_type=cov, cov_kwds=kwds or None, use_t=True)


def _ts_interval(y: np.ndarray, x: np.ndarray, column: int, level: float) -> tuple[float, float, float, float]:
    """A coefficient of a time-series regression with the *widest* of three standard errors: the plain one (right
    when weeks are independent), Newey–West's (HAC: allows for correlation from week to week, but too narrow in
    short series) and the plain one inflated for the residuals' first-order autocorrelation. Measured on planted
    data (bench/initiatives.py), any one alone gave intervals that were too narrow."""
    from scipy import stats

    plain = _ols(y, x, "nonrobust")
    hac = _ols(y, x, "HAC", maxlags=_hac_lags(len(y)))
    # a step (after the start) is the most persistent regressor there is: week-to-week correlation ρ of the errors
    # inflates its variance by about (1 + ρ) / (1 − ρ), which short-series HAC underestimates
    resid = np.asarray(plain.resid)
    rho = float(np.clip(np.corrcoef(resid[1:], resid[:-1])[0, 1], 0.0, 0.9)) if len(resid) > 3 else 0.0
    se = max(float(plain.bse[column]), float(hac.bse[column]),
             float(plain.bse[column]) * math.sqrt((1 + rho) / (1 - rho)))
    est = float(plain.params[column])
    q = float(stats.t.ppf(0.5 + level / 2, plain.df_resid))
    p = float(2 * stats.t.sf(abs(est / se), plain.df_resid)) if se > 0 else 0.0
    return est, est - q * se, est + q * se, p


def _hac_lags(n: int) -> int:
    """Newey–West's rule of thumb (on weekly data; daily errors' correlation is mostly inside a week)."""
    return max(2, math.floor(4 * (n / 100) ** (2 / 9)))


@dataclass(frozen=True)
class _Weeks:
    """Whole weeks aligned on the start date: which days each holds, and whether it is after the start."""

    members: list[np.ndarray]
    post: np.ndarray

    def holidays(self, days: Sequence[date], is_holiday: Callable[[date], bool] | None) -> np.ndarray:
        """Holidays per week (a week with a holiday sells differently); zeros without a calendar."""
        if is_holiday is None:
            return np.zeros(len(self.members))
        flags = np.array([is_holiday(d) for d in days], dtype=float)
        return np.array([flags[m].sum() for m in self.members])


def _weekly(daily: np.ndarray, post: np.ndarray) -> tuple[np.ndarray, _Weeks]:
    """Weekly means of a daily series, weeks aligned so that one starts on the start date; partial weeks and
    weeks with a missing day are left out. Weeks hold each weekday once, so the weekly pattern cancels, and
    daily noise that lingers a few days stays inside a week rather than fooling the interval."""
    first = int(np.argmax(post))
    offset = first % 7
    members, means, after = [], [], []
    for begin in range(offset, len(daily) - 6, 7):
        days = np.arange(begin, begin + 7)
        block = daily[days]
        if np.isnan(block).any():
            continue
        members.append(days)
        means.append(float(block.mean()))
        after.append(float(post[begin]))
    if sum(after) < 1 or len(after) - sum(after) < 2:
        raise EffectError("too few whole weeks before and after the start to compare (at least 2 before and 1 after)")
    return np.array(means), _Weeks(members, np.array(after))


def _drop_constant(x: np.ndarray) -> np.ndarray:
    """Columns that never vary (a holiday count that is always zero) are dropped, except the intercept."""
    keep = np.ptp(x, axis=0) > 0
    keep[0] = True
    return x[:, keep]


def _interval(fit: Any, column: int, level: float) -> tuple[float, float, float, float]:
    low, high = fit.conf_int(alpha=1 - level)[column]
    return float(fit.params[column]), float(low), float(high), float(fit.pvalues[column])


def _ab(panel: Panel, post: np.ndarray, t_rows: list[int], c_rows: list[int], level: float) -> Effect:
    from statsmodels.stats.power import TTestIndPower

    after = _unit_means(panel.values, post)
    before = _unit_means(panel.values, ~post) if (~post).any() else None
    rows = np.array([*t_rows, *c_rows])
    is_t = np.r_[np.ones(len(t_rows)), np.zeros(len(c_rows))]
    y = after[rows]
    ok = ~np.isnan(y)
    columns = [np.ones(len(rows)), is_t]
    adjusted = before is not None and not np.isnan(before[rows][ok]).any()
    if adjusted:
        assert before is not None
        pre = before[rows]
        columns.append(pre - np.nanmean(pre[ok]))
    x = np.column_stack(columns)[ok]
    n_t, n_c = int(is_t[ok].sum()), int((1 - is_t[ok]).sum())
    if n_t < 2 or n_c < 2:
        raise EffectError("an A/B comparison needs at least two units with values in each group")
    fit = _ols(y[ok], x, "HC1")
    est, low, high, p = _interval(fit, 1, level)
    sd = float(np.sqrt(fit.scale))  # the residual spread of a unit's average (after the pre-period adjustment)
    d = TTestIndPower().solve_power(effect_size=None, nobs1=n_t, ratio=n_c / n_t, alpha=1 - level, power=0.8)
    mde = float(d) * sd
    base = float(np.nanmean(before[t_rows])) if before is not None else float(np.nanmean(after[t_rows]))
    share = f" ({mde / base:.1%} of the baseline)" if base else ""
    notes = [f"Power: with {n_t} treated and {n_c} control units, an effect of ±{mde:,.4g} per unit and day{share} "
             f"would be detected 80% of the time at the {1 - level:.0%} level; a smaller true effect may well "
             "show as 'not significant'."]
    if adjusted:
        notes.append("Each unit's own average before the start was used to sharpen the comparison (ANCOVA).")
    t_mean, c_mean = _mean_rows(panel.values, t_rows), _mean_rows(panel.values, c_rows)
    shift = float(np.nanmean(t_mean[~post] - c_mean[~post])) if (~post).any() else 0.0
    series = tuple(SeriesPoint(d, float(a), float(c + shift) if not math.isnan(c) else None)
                   for d, a, c in zip(panel.days, t_mean, c_mean, strict=True))
    return Effect("ab", est, low, high, p, level, n_t, n_c, int((~post).sum()), int(post.sum()), base,
                  pre_fit=_gap_fit(panel, post, t_mean, c_mean),
                  assumptions=(
                      "Units were assigned to the groups at random, so the groups differ only by chance and by "
                      "the change.",
                      "One unit's treatment does not change another unit's KPI (no spill-over, e.g. customers "
                      "moving between stores).",
                      "Units are independent of each other; the interval allows different spreads in the groups."),
                  notes=tuple(notes), series=series)


def _gap_fit(panel: Panel, post: np.ndarray, t_mean: np.ndarray, c_mean: np.ndarray) -> dict[str, float | str]:
    """How parallel the groups ran before the start: the gap's trend (and its p-value) and day-to-day spread."""
    gap = (t_mean - c_mean)[~post]
    ok = ~np.isnan(gap)
    if ok.sum() < 14:
        return {"note": "fewer than 14 days before the start: the groups' parallel run cannot be checked"}
    t = np.arange(len(gap))[ok] / 365.0
    fit = _ols(gap[ok], np.column_stack([np.ones(ok.sum()), t]), "HAC", maxlags=_hac_lags(int(ok.sum())))
    return {"gap_mean": float(np.mean(gap[ok])), "gap_sd": float(np.std(gap[ok], ddof=1)),
            "gap_trend_per_year": float(fit.params[1]), "gap_trend_p": float(fit.pvalues[1])}


def _did(panel: Panel, post: np.ndarray, t_rows: list[int], c_rows: list[int], level: float,
         is_holiday: Callable[[date], bool] | None) -> Effect:
    t_mean, c_mean = _mean_rows(panel.values, t_rows), _mean_rows(panel.values, c_rows)
    n_t, n_c = len(t_rows), len(c_rows)
    notes: list[str] = []
    if min(n_t, n_c) >= MIN_UNITS_PER_GROUP:
        change = _unit_means(panel.values, post) - _unit_means(panel.values, ~post)
        rows = np.array([*t_rows, *c_rows])
        y = change[rows]
        is_t = np.r_[np.ones(n_t), np.zeros(n_c)]
        ok = ~np.isnan(y)
        # HC3: robust to groups of unequal spread, and not too narrow with few units (HC1 is, below ~20)
        fit = _ols(y[ok], np.column_stack([np.ones(ok.sum()), is_t[ok]]), "HC3")
        est, low, high, p = _interval(fit, 1, level)
        notes.append(f"Each unit's change from before to after is one observation ({int(ok.sum())} units); the "
                     "interval is robust to any correlation over time within a unit.")
    else:
        gap, weeks = _weekly(t_mean - c_mean, post)
        drift = np.array([m.mean() / 365.0 for m in weeks.members])
        x = np.column_stack([np.ones(len(gap)), weeks.post, drift, weeks.holidays(panel.days, is_holiday)])
        est, low, high, p = _ts_interval(gap, _drop_constant(x), 1, level)
        notes.append(f"A single unit in a group ({n_t} treated, {n_c} control): the weekly gap between the groups is "
                     "compared before and after (allowing the gap a linear drift), with errors robust to "
                     "autocorrelation.")
    shift = float(np.nanmean((t_mean - c_mean)[~post]))
    series = tuple(SeriesPoint(d, float(a), float(c + shift) if not math.isnan(c) else None)
                   for d, a, c in zip(panel.days, t_mean, c_mean, strict=True))
    fit_info = _gap_fit(panel, post, t_mean, c_mean)
    p_trend = fit_info.get("gap_trend_p")
    if isinstance(p_trend, float) and p_trend < 0.05:
        notes.append(f"Warning: before the start the gap between the groups drifted (trend p = {p_trend:.3f}); "
                     "the parallel-trends assumption is doubtful and the estimate may be biased.")
    return Effect("did", est, low, high, p, level, n_t, n_c, int((~post).sum()), int(post.sum()),
                  float(np.nanmean(t_mean[~post])), pre_fit=fit_info,
                  assumptions=(
                      "Parallel trends: without the change, the treated units' KPI would have moved like the "
                      "control units' (the same ups and downs, from their own level). The pre-period gap is "
                      "shown to judge it.",
                      "The change did not affect the control units (no spill-over), and nothing else started on "
                      "the same day for the treated units only.",
                      "The effect is a constant shift per unit and day after the start (an average if it varies)."),
                  notes=tuple(notes), series=series)


def _calendar_columns(days: Sequence[date], is_holiday: Callable[[date], bool] | None) -> list[np.ndarray]:
    """Weekday dummies (Monday is the base) and, with a calendar, a holiday dummy."""
    weekday = np.array([d.weekday() for d in days])
    columns = [(weekday == k).astype(float) for k in range(1, 7)]
    if is_holiday is not None:
        holiday = np.array([is_holiday(d) for d in days], dtype=float)
        if holiday.any():
            columns.append(holiday)
    return columns


def _before_after(panel: Panel, post: np.ndarray, t_rows: list[int], level: float,
                  is_holiday: Callable[[date], bool] | None) -> Effect:
    y = _mean_rows(panel.values, t_rows)
    n = len(y)
    pre_ok = ~np.isnan(y) & ~post
    if pre_ok.sum() < 28:
        raise EffectError(f"only {int(pre_ok.sum())} days before the start: a counterfactual needs at least 28 "
                          "(better a year, to see holidays)")
    # the estimate: weekly means ~ trend + holidays + shift (HAC); the chart's counterfactual: the same model daily
    weekly, weeks = _weekly(y, post)
    centre = n / 2
    week_trend = np.array([(m.mean() - centre) / 365.0 for m in weeks.members])
    xw = _drop_constant(np.column_stack([np.ones(len(weekly)), weeks.post, week_trend,
                                         weeks.holidays(panel.days, is_holiday)]))
    est, low, high, p = _ts_interval(weekly, xw, 1, level)
    trend = (np.arange(n) - centre) / 365.0
    x = np.column_stack([np.ones(n), trend, *_calendar_columns(panel.days, is_holiday), post.astype(float)])
    ok = ~np.isnan(y)
    from statsmodels.regression.linear_model import OLS

    daily = OLS(y[ok], _drop_constant(x[ok])).fit()
    keep = np.ptp(x[ok], axis=0) > 0
    keep[0] = True
    without = x[:, keep].copy()
    without[:, -1] = 0.0
    counterfactual = without @ daily.params
    series = tuple(SeriesPoint(d, float(a), float(c)) for d, a, c in zip(panel.days, y, counterfactual, strict=True))
    base = float(np.nanmean(y[~post]))
    return Effect("before_after", est, low, high, p, level, len(t_rows), 0, int((~post).sum()), int(post.sum()),
                  base, pre_fit=_holdout_fit(y, x[:, :-1], pre_ok),

                  assumptions=(
                      "Without the change, the KPI would have continued its trend, weekly pattern and holiday "
                      "effects of the pre-period (a counterfactual extrapolated from the past).",
                      "Nothing else changed on the start date (prices, competitors, weather regime, a campaign): "
                      "with no control group such a change cannot be told apart from the effect.",
                      "The effect is a constant shift per unit and day after the start; the interval allows for "
                      "correlation of the errors from week to week."),
                  notes=("No control group: this is the weakest design. Prefer untouched units as a control.",),
                  series=series)


def _holdout_fit(y: np.ndarray, x: np.ndarray, pre_ok: np.ndarray) -> dict[str, float | str]:
    """The pre-period model's accuracy on its own last weeks, predicted from the weeks before (MAPE, R²)."""
    index = np.flatnonzero(pre_ok)
    if len(index) < HOLDOUT_DAYS * 3:
        return {"note": "the pre-period is too short to hold out weeks and check the model's fit"}
    train, test = index[:-HOLDOUT_DAYS], index[-HOLDOUT_DAYS:]
    from statsmodels.regression.linear_model import OLS

    keep = np.ptp(x[train], axis=0) > 0
    keep[0] = True
    fit = OLS(y[train], x[train][:, keep]).fit()
    predicted = x[test][:, keep] @ fit.params
    with np.errstate(divide="ignore", invalid="ignore"):
        mape = float(np.nanmean(np.abs((y[test] - predicted) / y[test])))
    return {"r2_pre": float(fit.rsquared), "holdout_days": HOLDOUT_DAYS, "holdout_mape": mape}


def _synth(panel: Panel, post: np.ndarray, t_rows: list[int], c_rows: list[int], level: float) -> Effect:
    """Synthetic control (:mod:`kiban.value.synth`): the treated units' daily average rebuilt from the controls,
    weighted on the pre-period; interval by permutations over time, p-value also by placebos in space."""
    y = _mean_rows(panel.values, t_rows)
    donors = panel.values[c_rows]
    complete = ~np.isnan(donors).any(axis=1)
    if not complete.any():
        raise EffectError("a synthetic control needs control units with a value every day")
    dropped = int((~complete).sum())
    donors = donors[complete]
    names = [panel.units[c_rows[i]] for i in np.flatnonzero(complete)]
    ok = ~np.isnan(y)
    y_ok, d_ok, after = y[ok], donors[:, ok], post[ok]
    pre = ~after
    if pre.sum() < 28 or after.sum() < 7:
        raise EffectError("a synthetic control needs at least 28 days before the start and 7 after")
    first = int(np.argmax(after))
    if not after[first:].all():
        raise EffectError("the days after the start must be the last ones (set `end:` to cut the series)")
    weights = synth.fit(y_ok, d_ok, pre)
    counterfactual = weights.predict(donors)
    gap = y_ok - weights.predict(d_ok)
    est = float(gap[after].mean())
    post_f = after.astype(float)

    def residuals(theta: float) -> np.ndarray:
        target = y_ok - theta * post_f
        return target - synth.fit(target, d_ok).predict(d_ok)

    scale = float(np.std(conformal.window_means(gap - est * post_f, int(after.sum()))))
    period = conformal.period_for(len(y_ok))
    low, high = conformal.interval(residuals, first, est, scale, level, period)
    p = conformal.p_value(residuals(0.0), first, period)
    checks = synth.placebos(y_ok, d_ok, pre)
    pre_gap = gap[pre]
    ss_tot = float(np.sum((y_ok[pre] - y_ok[pre].mean()) ** 2))
    top = sorted(zip(weights.weights, names, strict=True), reverse=True)[:5]
    fit_info: dict[str, float | str] = {
        "rmspe_pre": synth.rmspe(pre_gap), "r2_pre": 1 - float(np.sum(pre_gap**2)) / ss_tot if ss_tot else 0.0,
        "intercept": weights.intercept, "weights": ", ".join(f"{n} {w:.3f}" for w, n in top if w > 1e-6),
        "placebo_p": checks.p_value, "placebo_units": float(len(checks.estimates)),
        "placebo_estimates": ", ".join(f"{e:.4g}" for e in checks.estimates)}
    notes = [f"Synthetic control from {len(names)} control units (weights ≥ 0 and an intercept fitted on the "
             f"{int(pre.sum())} days before the start; SciPy's non-negative least squares); the pre-period fit: "
             f"R² {fit_info['r2_pre']:.3f}, typical miss ±{synth.rmspe(pre_gap):,.4g} per day.",
             "The interval: every effect that, taken off the days after the start, leaves them looking like any "
             "other stretch of days of the same length (permutations over time, conformal inference).",
             f"Placebos in space: each of {len(checks.estimates)} control units rebuilt from the others as if it "
             f"had been treated; {checks.p_value:.0%} of units move at least as much after the start, for their "
             f"pre-period fit, as the treated ones (p = {checks.p_value:.3f}, the smallest possible being "
             f"{1 / (len(checks.estimates) + 1):.3f})."]
    if period == 1:
        notes.append(f"Fewer than {conformal.MIN_POSITIONS} whole weeks of data: the stretches compared move a day "
                     "at a time, so a weekday pattern the blend misses can widen the interval.")
    if not (math.isfinite(low) and math.isfinite(high)):
        notes.append("The interval is unbounded: too few days to tell any effect apart from the day-to-day "
                     "misses (more days before and after the start, or more control units, would help).")
    if dropped:
        notes.append(f"{dropped} control unit(s) with missing days were left out of the synthetic control.")
    series = tuple(SeriesPoint(d, float(a), float(c))
                   for d, a, c in zip(panel.days, y, counterfactual, strict=True))
    return Effect("synth", est, low, high, p, level, len(t_rows), len(names), int((~post).sum()), int(post.sum()),
                  float(np.nanmean(y[~post])), pre_fit=fit_info,
                  assumptions=(
                      "Without the change, the treated units would have gone on moving like the same blend of "
                      "control units that matched them before the start (judge it by the pre-period fit).",
                      "The change did not affect the control units, and nothing else started on the same day for "
                      "the treated units only.",
                      "The day-to-day misses of the synthetic control are alike before and after the start (no "
                      "break other than the change) and have only short memory (days, not months)."),
                  notes=tuple(notes), series=series)
