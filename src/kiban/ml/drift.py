"""Feature distributions kept at training time, and how far later data has drifted from them.

For every numeric feature kiban keeps the decile edges (for the population stability index, PSI) and 101
quantiles (for the two-sample Kolmogorov–Smirnov statistic, approximated on those quantiles). Both are small
enough to live in the registry row as JSON, and are computed once per training.

Rules of thumb for PSI: below 0.1 no shift, 0.1–0.25 a moderate shift, above 0.25 a significant one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

BINS = 10
QUANTILES = 101
EPSILON = 1e-4  # an empty bin would make PSI infinite


def baseline(columns: Mapping[str, Sequence[Any]]) -> dict[str, dict[str, Any]]:
    """Distributions of the numeric columns: ``{column: {edges, shares, quantiles, rows}}``."""
    out: dict[str, dict[str, Any]] = {}
    for name, values in columns.items():
        data = _numeric(values)
        if data is None or data.size == 0:
            continue
        edges = np.unique(np.quantile(data, np.linspace(0, 1, BINS + 1)))
        shares = _shares(data, edges)
        out[name] = {"edges": edges.tolist(), "shares": shares.tolist(),
                     "quantiles": np.quantile(data, np.linspace(0, 1, QUANTILES)).tolist(), "rows": int(data.size)}
    return out


def psi(base: Mapping[str, Any], values: Sequence[Any]) -> float:
    """Population stability index of ``values`` against the training bins."""
    data = _numeric(values)
    if data is None or data.size == 0:
        return math.nan
    edges = np.asarray(base["edges"], dtype=float)
    expected = np.clip(np.asarray(base["shares"], dtype=float), EPSILON, None)
    actual = np.clip(_shares(data, edges), EPSILON, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def ks(base: Mapping[str, Any], values: Sequence[Any]) -> float:
    """Kolmogorov–Smirnov distance between the training distribution (its quantiles) and ``values``.

    Both CDFs are compared at the training quantiles. Where values repeat (a discrete feature), each CDF is an
    jump at that point: both its left and its right limits are compared.
    """
    data = _numeric(values)
    if data is None or data.size == 0:
        return math.nan
    quantiles = np.asarray(base["quantiles"], dtype=float)
    levels = np.linspace(0, 1, quantiles.size)
    data.sort()
    new_low = np.searchsorted(data, quantiles, side="left") / data.size
    new_high = np.searchsorted(data, quantiles, side="right") / data.size
    old_low = levels[np.searchsorted(quantiles, quantiles, side="left")]
    old_high = levels[np.searchsorted(quantiles, quantiles, side="right") - 1]
    return float(max(np.max(np.abs(new_high - old_high)), np.max(np.abs(new_low - old_low))))


def _shares(data: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of ``data`` in each bin; values beyond the outer edges count in the outer bins."""
    if edges.size < 2:
        return np.array([1.0])
    inner = edges[1:-1]
    index = np.searchsorted(inner, data, side="right")
    counts = np.bincount(index, minlength=edges.size - 1).astype(float)
    return counts / max(data.size, 1)


def _numeric(values: Sequence[Any] | np.ndarray) -> np.ndarray | None:
    """The non-null, finite values as floats; None when they are not numbers (text: no distribution kept)."""
    try:
        if isinstance(values, np.ma.MaskedArray):
            data = values.compressed().astype(float)
        elif isinstance(values, np.ndarray) and values.dtype.kind in "biuf":
            data = values.astype(float)
        else:
            data = np.asarray([v for v in values if v is not None], dtype=float)
    except (TypeError, ValueError):
        return None
    return data[np.isfinite(data)]


__all__ = ["baseline", "ks", "psi"]
