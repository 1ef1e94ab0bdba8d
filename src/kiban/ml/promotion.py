"""The promotion gate: a new version becomes current only if it beats the current one.

Beating means a strictly better hold-out metric in the declared direction (``min``: lower is better). A
``threshold`` must also be met when one is declared — the first version too. Otherwise the new version is
recorded as ``rejected`` with the reason, and the current version stays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def decide(metric: str, direction: str, value: float | None, threshold: float | None,
           current_version: int | None, current_value: float | None) -> Decision:
    """Whether a new version with ``metric`` = ``value`` replaces ``current_version`` (``current_value``)."""
    if value is None or not math.isfinite(value):
        return Decision(False, f"the training function reported no finite hold-out {metric} ({value!r})")
    better = (lambda a, b: a < b) if direction == "min" else (lambda a, b: a > b)
    word = "at most" if direction == "min" else "at least"
    if threshold is not None and not (value == threshold or better(value, threshold)):
        return Decision(False, f"{metric} {value:.4g} does not meet the threshold ({word} {threshold:g})")
    if current_version is None:
        return Decision(True, f"no current version to beat: {metric} {value:.4g}")
    if current_value is None or not better(value, current_value):
        return Decision(False, f"{metric} {value:.4g} is not better than current v{current_version}'s "
                               f"{current_value if current_value is None else format(current_value, '.4g')} "
                               f"({'lower' if direction == 'min' else 'higher'} is better)")
    return Decision(True, f"{metric} {value:.4g} beats v{current_version}'s {current_value:.4g}")


__all__ = ["Decision", "decide"]
