"""Synthetic control: the treated units' KPI rebuilt from untouched units, weighted to match the pre-period.

The weights come from SciPy's non-negative least squares (``scipy.optimize.nnls``, Lawson–Hanson): the treated series ≈
intercept + Σ wᵢ · control unitᵢ with every wᵢ ≥ 0, fitted on the days before the start. Unlike Abadie's
original, the weights need not sum to one and an intercept is allowed (Doudchenko and Imbens 2016): a treated
store twice as large as any control is then matched by doubling, which the original cannot do. The weights stay
non-negative, which keeps the synthetic store a blend of real ones and stops it fitting noise.

Placebos in space (Abadie, Diamond and Hainmueller 2010): every control unit in turn is treated as if it had
got the change, rebuilt from the other controls, and its after/before fit ratio compared with the treated one's.
The statistic is the after-start average gap over the before-start typical miss (|mean gap after| / RMSPE
before), so a unit that was hard to rebuild does not look extreme by its noise alone. The share of units at
least as extreme is a p-value that assumes nothing about time; with few controls it
cannot be small (1 of 10 is 0.1 at best), which is why the interval comes from permutations over time
(``kiban.value.conformal``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_PLACEBOS = 60  # controls used as placebos (the first ones, in name order), to keep the time bounded


@dataclass(frozen=True)
class Fit:
    intercept: float
    weights: np.ndarray  # one per donor

    def predict(self, donors: np.ndarray) -> np.ndarray:
        """donors: (units, days) → the synthetic series."""
        return self.intercept + self.weights @ donors


def fit(target: np.ndarray, donors: np.ndarray, days: np.ndarray | None = None) -> Fit:
    """Weights (≥ 0) and an intercept so that the donors' blend matches ``target`` on ``days`` (default all)."""
    from scipy.optimize import nnls

    cols = np.ones(donors.shape[1], dtype=bool) if days is None else days
    scale = float(np.nanstd(target[cols])) or 1.0  # the fit is scale-free; well-scaled numbers converge faster
    ones = np.ones(int(cols.sum()))
    # the intercept may have either sign: it is the difference of two non-negative columns (+1 and −1)
    a = np.column_stack([ones, -ones, donors[:, cols].T / scale])
    x, _ = nnls(a, target[cols] / scale, maxiter=50 * a.shape[1])
    return Fit(float(x[0] - x[1]) * scale, np.asarray(x[2:]))


def rmspe(gap: np.ndarray) -> float:
    return float(np.sqrt(np.mean(gap**2))) if len(gap) else 0.0


@dataclass(frozen=True)
class Placebos:
    """The in-space placebo check: each control's after-start gap (as if it had been treated) and the p-value."""

    estimates: tuple[float, ...]
    ratio: float  # the treated series' |average gap after the start| / its RMSPE before
    p_value: float  # share of all units (treated included) whose ratio is at least the treated one's


def placebos(target: np.ndarray, donors: np.ndarray, pre: np.ndarray) -> Placebos:
    post = ~pre
    own = target - fit(target, donors, pre).predict(donors)
    ratio = abs(float(own[post].mean())) / max(rmspe(own[pre]), 1e-12)
    n = min(len(donors), MAX_PLACEBOS)
    estimates, ratios = [], []
    for j in range(n):
        others = np.delete(donors, j, axis=0)
        gap = donors[j] - fit(donors[j], others, pre).predict(others)
        estimates.append(float(gap[post].mean()))
        ratios.append(abs(estimates[-1]) / max(rmspe(gap[pre]), 1e-12))
    extreme = 1 + sum(r >= ratio for r in ratios)
    return Placebos(tuple(estimates), ratio, extreme / (n + 1))
