"""Breach prediction: when will each use case's data be ready, given what is running now?

The remaining plan is *simulated* the way the executor runs it: at most ``threads`` steps at a time, per-tag
limits (``limits:`` in kiban.yml), a heavy step alone, and a step waiting in the queue until its inputs are
done and a slot is free. Each step's duration comes from its own history:

- a waiting step takes its p50 (or p90) build time;
- a running step that has run ``e`` seconds needs what its past builds that ran longer than ``e`` still
  needed (the conditional distribution) — not "half the elapsed time again" once it passes its p90;
- only a step running past *every* build in its history (or past its declared ``expected_duration``) is
  abnormal: it is assumed to need a fifth (p50) to a half (p90) of its elapsed time again, so a stuck
  step keeps pushing the forecast out.

The simulation runs three times: with p50 and p90 durations, the expected time and the top of its range, and
with each running step at the 10th percentile of what it still needs (``p10``, the *optimistic* end: late even
then means late for sure — a warning that will not be taken back). A
forecast is **confident** only when every step still to come has history (:data:`MIN_BUILDS` builds) or a
declared ``expected_duration``; otherwise it says so and raises no alarm (the 60 s default for an unknown
step is a placeholder, not a prediction).
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from kiban.graph import Graph
from kiban.slo.durations import percentile

MIN_BUILDS = 5  # builds of a step before its history is a forecast
ABNORMAL = (0.05, 0.2, 0.5)  # share of the elapsed time a step past all its history is assumed to need (p10, p50, p90)
SLOW_MARGIN = 60.0  # a step overruns only beyond max(this, a quarter of its median, 4× the spread of its faster half)


@dataclass(frozen=True)
class Forecast:
    usecase: str
    p50: datetime | None  # None: it cannot finish in this run (an input failed)
    p90: datetime | None
    deadline: datetime
    slowest: str | None  # the asset on the critical path that takes longest (or the failed one)
    blocked_by: str | None = None  # a failed or skipped asset it needs
    confident: bool = True  # every step still to come has history or a declared duration
    unknown: tuple[str, ...] = ()  # the steps without (enough) history
    queued_s: float = 0.0  # seconds the use case's steps wait for a free slot in the p50 simulation
    cause: str = "slow"  # slow, queued or failed: what pushes it past the deadline
    p10: datetime | None = None  # the optimistic end: running steps at the 10th percentile of what they still need

    @property
    def at_risk(self) -> bool:
        if self.blocked_by is not None:
            return True
        return self.confident and self.p90 is not None and self.p90 > self.deadline

    @property
    def expected_late(self) -> bool:
        """The expected (p50) time is past the deadline: more likely late than not."""
        return self.blocked_by is not None or (self.confident and self.p50 is not None and self.p50 > self.deadline)


@dataclass
class RunState:
    """What a run has done so far, fed from its events."""

    planned: set[str] = field(default_factory=set)
    started: dict[str, datetime] = field(default_factory=dict)
    finished: dict[str, datetime] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)  # failed, skipped or cancelled


@dataclass(frozen=True)
class Durations:
    """How long each step takes, as a forecast knows it.

    ``p50``/``p90`` are each asset's planned durations (history or declared); ``history`` its recent build
    times (for the conditional remaining time of a running step); ``declared`` the steps whose duration is known
    well enough without history (None: no history was given at all, every duration is taken as it is)."""

    p50: dict[str, float]
    p90: dict[str, float]
    history: Mapping[str, Sequence[float]] | None = None
    declared: set[str] | None = None


@dataclass(frozen=True)
class Concurrency:
    """How many steps of the run go at once: ``threads`` (None: unlimited), ``limits`` per tag, and ``heavy``,
    which says whether a step runs alone."""

    threads: int | None = None
    limits: Mapping[str, int] | None = None
    heavy: Callable[[str], bool] | None = None


class Predictor:
    """Forecasts for the use cases that read what a run builds: each use case's assets, its deadline, the steps'
    :class:`Durations` and the run's :class:`Concurrency`."""

    def __init__(self, graph: Graph, usecase_assets: dict[str, tuple[str, ...]],
                 deadlines: dict[str, datetime], durations: Durations,
                 concurrency: Concurrency = Concurrency()) -> None:
        self.graph = graph
        self.deadlines = deadlines
        self.p50, self.p90 = durations.p50, durations.p90
        self.history = {k: sorted(v) for k, v in (durations.history or {}).items()}
        self.declared = durations.declared
        self.threads = concurrency.threads
        self.limits = dict(concurrency.limits or {})
        self.heavy = concurrency.heavy or (lambda _key: False)
        self._unlimited = concurrency.threads is None and not concurrency.limits and concurrency.heavy is None
        self.usecase_assets = usecase_assets
        self._known: dict[str, bool] = {}
        self._order = {k: i for i, k in enumerate(graph.order)}
        self.paths: dict[str, list[str]] = {}
        self._path_sets: dict[str, set[str]] = {}
        for name, keys in usecase_assets.items():
            path: set[str] = set(keys)
            for key in keys:
                path |= graph.upstream(key)
            self._path_sets[name] = path
            self.paths[name] = sorted(path, key=self._order.__getitem__)  # the graph's order, without a pass over it
        self._wanted = graph.sorted(set().union(*self._path_sets.values()))

    def known(self, key: str) -> bool:
        """Whether the step's duration is known well enough to forecast with."""
        found = self._known.get(key)
        if found is None:
            found = self._known[key] = self._is_known(key)
        return found

    def _is_known(self, key: str) -> bool:
        if self.graph.assets[key].layer == "lake":
            return True
        if len(self.history.get(key, ())) >= MIN_BUILDS:
            return True
        if self.declared is None:  # no history given at all: take the durations as they are
            return True
        return key in self.declared

    def remaining(self, key: str, elapsed: float, share: float) -> float:
        """Seconds a step that has run ``elapsed`` seconds still needs, at the ``share`` percentile."""
        past = self.history.get(key, ())
        longer = [d - elapsed for d in past if d > elapsed]
        # the optimistic end is a claim of certainty: it needs ten builds that ran this long (two quick-ish slow
        # builds in a history are no evidence that this one will be as quick)
        if len(past) >= MIN_BUILDS and len(longer) >= (10 if share <= 0.1 else 2):
            return percentile(longer, share)
        planned = (self.p50 if share <= 0.5 else self.p90).get(key, 0.0)
        if len(past) < MIN_BUILDS and elapsed < planned:  # no history worth the name: the plan it was given
            return planned - elapsed
        return elapsed * (ABNORMAL[0] if share <= 0.1 else ABNORMAL[1] if share <= 0.5 else ABNORMAL[2])

    def overrun(self, key: str, took: float) -> float | None:
        """Seconds a step that has run (or took) ``took`` is past its usual time (p50), if beyond its normal
        variation — the judgement of :func:`kiban.slo.cause.slow_by`: past the median by more than 4× the spread
        of the faster half of its history (which slow nights do not inflate), a quarter of the median and a
        minute. Without enough history: past its planned p90."""
        past = self.history.get(key, ())
        if len(past) < MIN_BUILDS:
            planned = self.p90.get(key, 0.0)
            return took - planned if took > planned else None
        p50, p25 = percentile(past, 0.5), percentile(past, 0.25)
        if took - p50 <= max(SLOW_MARGIN, 0.25 * p50, 4 * (p50 - p25)):
            return None
        return took - p50

    def forecast(self, state: RunState, now: datetime) -> list[Forecast]:
        blocker: dict[str, str | None] = {}
        for key in self._wanted:
            upstream = next((blocker[d] for d in self.graph.deps[key] if blocker.get(d)), None)
            # a skipped step names what broke above it, not itself
            blocker[key] = upstream or (key if key in state.broken else None)
        finish50, queued50 = self._simulate(state, now, 0.5, blocker)
        finish90, _ = self._simulate(state, now, 0.9, blocker)
        # the optimistic end differs from p50 only in what the running steps still need (both plan the rest at p50)
        running = any(k not in state.finished for k in state.started)
        finish10 = self._simulate(state, now, 0.1, blocker)[0] if running else finish50
        # what every use case asks of its path, answered once for the run: the steps still to come, those without
        # history, those that queued, those past their normal time, the longest still to come (sets intersect
        # with each path at C speed; walking every path cost 0.2 s a forecast at 5,000 assets)
        order = self._order
        open_steps = {k for k in state.planned if k not in state.finished and k in order}
        unknown_open = {k for k in open_steps if not self.known(k)}
        queued_keys = {k for k, waited in queued50.items() if waited}
        overruns = {k: extra for k in state.started if k in state.planned and k in order
                    if (extra := self.overrun(k, ((state.finished.get(k) or now) - state.started[k]).total_seconds()))
                    is not None}
        longest = sorted(open_steps, key=lambda k: (-self.p90.get(k, 0.0), order[k]))
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
            p10 = None if blocked_by else max((t for k in keys if (t := finish10.get(k)) is not None), default=None)
            path = self._path_sets[name]
            unknown = tuple(sorted(path & unknown_open, key=order.__getitem__))
            queued = sum(queued50[k] for k in sorted(path & queued_keys, key=order.__getitem__))
            slowest = None if blocked_by else self._slowest(path, overruns, longest)
            late_by = (p90 - self.deadlines[name]).total_seconds() if p90 else 0.0
            cause = "failed" if blocked_by else "queued" if queued > max(60.0, 0.5 * late_by) else "slow"
            out.append(Forecast(name, p50, p90, self.deadlines[name], blocked_by or slowest, blocked_by,
                                not unknown, unknown, queued, cause, p10))
        return out

    def finish_times(self, state: RunState, now: datetime, share: float) -> dict[str, datetime]:
        """When each planned step should finish at the ``share`` percentile (a run's ETA); a step that cannot run
        (something above it failed) is left out."""
        blocker: dict[str, str | None] = {}
        for key in self.graph.sorted(state.planned):
            upstream = next((blocker[d] for d in self.graph.deps[key] if blocker.get(d)), None)
            blocker[key] = upstream or (key if key in state.broken else None)
        return self._simulate(state, now, share, blocker)[0]

    def _simulate(self, state: RunState, now: datetime, share: float, blocker: dict[str, str | None]
                  ) -> tuple[dict[str, datetime], dict[str, float]]:
        """Finish time of every planned step, and how long each waited for a slot (list scheduling: at each
        moment, the ready steps in plan order take the free slots).

        Event-driven: a step becomes ready when its last planned input finishes (a count per step), so the
        whole plan costs O((steps + edges) log steps), not a scan of every waiting step at every finish."""
        plan = [k for k in self.graph.sorted(state.planned) if k in self.graph.assets and not blocker.get(k)]
        position = {k: i for i, k in enumerate(plan)}
        finish: dict[str, datetime] = {k: t for k, t in state.finished.items()}
        waited: dict[str, float] = {}
        events: list[tuple[datetime, str]] = []  # (end, key) of steps in flight
        for key in plan:
            if key in state.started and key not in state.finished:
                elapsed = (now - state.started[key]).total_seconds()
                heapq.heappush(events, (now + timedelta(seconds=self.remaining(key, elapsed, share)), key))
        running = {k for _, k in events}
        durations = self.p50 if share <= 0.5 else self.p90
        if self._unlimited:  # every step starts when its inputs are done: one pass in plan order
            finish.update((k, t) for t, k in events)
            for key in plan:
                if key in finish:
                    continue
                start = max([now, *(finish[d] for d in self.graph.deps[key] if d in position)])
                waited[key] = 0.0
                seconds = 0.0 if self.graph.assets[key].layer == "lake" else durations.get(key, 0.0)
                finish[key] = start + timedelta(seconds=seconds)
            return finish, waited
        todo = {k for k in plan if k not in finish and k not in running}
        pending = {k: sum(1 for d in set(self.graph.deps[k]) if d in position and d not in finish) for k in todo}
        ready = sorted(position[k] for k, n in pending.items() if n == 0)  # plan positions, ascending
        # what a free slot needs to know of the running steps (the threads in use, a heavy step running alone,
        # each tag's count against its limit), counted as steps start and finish
        heavy_running = sum(1 for k in running if self.heavy(k))
        tagged: dict[str, int] = {}
        for k in running:
            for tag in self.graph.assets[k].config.tags:
                tagged[tag] = tagged.get(tag, 0) + 1
        clock = now
        while True:
            kept: list[int] = []
            for index, at in enumerate(ready):
                if (self.threads is not None and len(running) >= self.threads) or heavy_running:
                    kept.extend(ready[index:])  # no slot can free up before the next finish
                    break
                key = plan[at]
                tags = self.graph.assets[key].config.tags
                if (self.heavy(key) and running) or any(
                        tagged.get(tag, 0) >= limit for tag in tags if (limit := self.limits.get(tag)) is not None):
                    kept.append(at)
                    continue
                inputs = max([now, *(finish[d] for d in self.graph.deps[key] if d in finish)])
                waited[key] = max(0.0, (clock - inputs).total_seconds())
                seconds = 0.0 if self.graph.assets[key].layer == "lake" else durations.get(key, 0.0)
                heapq.heappush(events, (clock + timedelta(seconds=seconds), key))
                running.add(key)
                heavy_running += self.heavy(key)
                for tag in tags:
                    tagged[tag] = tagged.get(tag, 0) + 1
            ready = kept
            if not events:
                break  # what is left waits for something outside the plan
            clock, key = heapq.heappop(events)
            running.discard(key)
            heavy_running -= self.heavy(key)
            for tag in self.graph.assets[key].config.tags:
                tagged[tag] -= 1
            finish[key] = clock
            for child in set(self.graph.children.get(key, ())):
                if child in pending and pending[child] > 0:
                    pending[child] -= 1
                    if pending[child] == 0:
                        bisect.insort(ready, position[child])
        return finish, waited

    def _slowest(self, path: set[str], overruns: dict[str, float], longest: list[str]) -> str | None:
        """The step to blame: the step of this run furthest past its normal variation — running *or finished*
        (a step that overran and then finished late is still why the rest comes late; the step running after
        it is not slow) — else the longest one still to come; of equals, the first in the graph's order.
        ``overruns``: the run's started steps past their normal variation, by how much; ``longest``: the steps
        still to come, longest first."""
        over = path & overruns.keys()
        if over:
            return max(over, key=lambda k: (overruns[k], -self._order[k]))
        return next((k for k in longest if k in path), None)
