"""Breach prediction: when will each use case's data be ready, given what is running now?

Earliest-finish over the remaining plan: an asset that finished is done at its end time; a running
one at start + expected, or — once it runs past that — now + half its elapsed time (a stuck step keeps
pushing the forecast out); a waiting one at max(now, its inputs' finish) + expected. A use
case is ready when the last of its assets is. Done with p50 and p90 durations; p90 past the
deadline means ``at_risk`` — said before the deadline, while there is still time to act.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from kiban.graph import Graph


@dataclass(frozen=True)
class Forecast:
    usecase: str
    p50: datetime | None  # None: it cannot finish in this run (an input failed)
    p90: datetime | None
    deadline: datetime
    slowest: str | None  # the asset on the critical path that takes longest (or the failed one)
    blocked_by: str | None = None  # a failed or skipped asset it needs

    @property
    def at_risk(self) -> bool:
        return self.p90 is None or self.p90 > self.deadline


@dataclass
class RunState:
    """What a run has done so far, fed from its events."""

    planned: set[str] = field(default_factory=set)
    started: dict[str, datetime] = field(default_factory=dict)
    finished: dict[str, datetime] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)  # failed, skipped or cancelled


class Predictor:
    """Forecasts for the use cases that read what a run builds. One update costs O(relevant assets)."""

    def __init__(self, graph: Graph, usecase_assets: dict[str, tuple[str, ...]],
                 deadlines: dict[str, datetime], p50: dict[str, float], p90: dict[str, float]) -> None:
        self.graph = graph
        self.deadlines = deadlines
        self.p50, self.p90 = p50, p90
        self.usecase_assets = usecase_assets
        self.paths: dict[str, list[str]] = {}
        wanted: set[str] = set()
        for name, keys in usecase_assets.items():
            path: set[str] = set(keys)
            for key in keys:
                path |= graph.upstream(key)
            self.paths[name] = graph.sorted(path)
            wanted |= path
        self.order = graph.sorted(wanted)  # only what some use case needs
        self.deps = {k: graph.deps[k] for k in self.order}

    def forecast(self, state: RunState, now: datetime) -> list[Forecast]:
        finish50: dict[str, datetime | None] = {}
        finish90: dict[str, datetime | None] = {}
        blocker: dict[str, str | None] = {}
        for key in self.order:
            if key in state.broken:
                finish50[key] = finish90[key] = None
                blocker[key] = key
                continue
            if key in state.finished or key not in state.planned:
                finish50[key] = finish90[key] = state.finished.get(key, now if key in state.planned else None)
                blocker[key] = None
                continue
            deps = self.deps[key]
            blocked = next((blocker[d] for d in deps if blocker.get(d)), None)
            if blocked:
                finish50[key] = finish90[key] = None
                blocker[key] = blocked
                continue
            blocker[key] = None
            for table, durations in ((finish50, self.p50), (finish90, self.p90)):
                expected = timedelta(seconds=durations.get(key, 0.0))
                if key in state.started:
                    elapsed = now - state.started[key]
                    # past its usual time a step is assumed to need half as long again as it has run: the longer
                    # it overruns, the later the forecast — so a stuck step warns early, not at the deadline
                    table[key] = state.started[key] + expected if elapsed < expected else now + elapsed / 2
                else:
                    ready = max([now, *(t for d in deps if (t := table.get(d)) is not None)])
                    table[key] = ready + expected
        out = []
        for name, keys in self.usecase_assets.items():
            if name not in self.deadlines:
                continue
            pending = [k for k in keys if k in state.planned and k not in state.finished]
            blocked_by = next((blocker[k] for k in keys if blocker.get(k)), None)
            if not pending and not blocked_by:
                continue  # nothing of this use case in flight
            p50 = None if blocked_by else max((t for k in keys if (t := finish50.get(k)) is not None), default=None)
            p90 = None if blocked_by else max((t for k in keys if (t := finish90.get(k)) is not None), default=None)
            at_risk = p90 is None or p90 > self.deadlines[name]
            slowest = self._slowest(name, state, now) if at_risk and not blocked_by else None
            out.append(Forecast(name, p50, p90, self.deadlines[name], blocked_by or slowest, blocked_by))
        return out

    def _slowest(self, usecase: str, state: RunState, now: datetime) -> str | None:
        """The step to blame: the running one furthest past its p90, else the longest one still to come."""
        open_steps = [k for k in self.paths[usecase] if k in state.planned and k not in state.finished]
        overruns = {k: (now - state.started[k]).total_seconds() - self.p90.get(k, 0.0)
                    for k in open_steps if k in state.started}
        if overruns and max(overruns.values()) > 0:
            return max(overruns, key=lambda k: overruns[k])
        return max(open_steps, key=lambda k: self.p90.get(k, 0.0), default=None)
