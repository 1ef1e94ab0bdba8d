"""Expected durations of assets: percentiles of history, or the declared estimate."""

from __future__ import annotations

from collections.abc import Sequence

from kiban.graph import Graph
from kiban.slo.facts import Facts

DEFAULT_SECONDS = 60.0  # an asset with neither history nor an estimate
HISTORY = 30  # most recent successful builds considered


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (``share`` in 0..1) of a non-empty sequence."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


def expected(graph: Graph, facts: Facts, share: float) -> dict[str, float]:
    """Seconds each model is expected to take at the ``share`` percentile; lake assets take no time."""
    out: dict[str, float] = {}
    for key, asset in graph.assets.items():
        if asset.layer == "lake":
            out[key] = 0.0
            continue
        history = facts.of(key).durations[-HISTORY:]
        if history:
            out[key] = percentile(history, share)
        elif asset.config.expected_duration is not None:
            out[key] = asset.config.expected_duration
        else:
            out[key] = DEFAULT_SECONDS
    return out
