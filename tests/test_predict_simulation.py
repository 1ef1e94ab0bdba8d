"""The forecast's list scheduling, event-driven, against the plain version it replaced (every waiting step looked
at after every finish: the same answer, quadratic in the plan — 10 s a forecast at 2,500 steps).

Random plans: graphs of 5-120 steps, runs caught midway (some steps done, some running, some broken), threads
unlimited or 1-4, per-tag limits, heavy steps that run alone, lake steps that take no time."""

from __future__ import annotations

import heapq
import random
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from kiban.graph.dag import Graph
from kiban.project import Asset
from kiban.project.config import ModelConfig
from kiban.slo.predict import Concurrency, Durations, Forecast, Predictor, RunState

NOW = datetime(2026, 11, 30, 3, 0)


def reference(predictor: Predictor, state: RunState, now: datetime, share: float,
              blocker: dict[str, str | None]) -> tuple[dict[str, datetime], dict[str, float]]:
    """The simulation as it was: scan every waiting step, in plan order, until none can start; then the next
    finish."""
    graph = predictor.graph
    plan = [k for k in graph.sorted(state.planned) if k in graph.assets and not blocker.get(k)]
    finish: dict[str, datetime] = dict(state.finished)
    waited: dict[str, float] = {}
    events: list[tuple[datetime, str]] = []
    for key in plan:
        if key in state.started and key not in state.finished:
            elapsed = (now - state.started[key]).total_seconds()
            heapq.heappush(events, (now + timedelta(seconds=predictor.remaining(key, elapsed, share)), key))
    running = {k for _, k in events}
    todo = [k for k in plan if k not in finish and k not in running]
    clock = now
    while todo or events:
        started_any = True
        while started_any:
            started_any = False
            for key in list(todo):
                if any(d in state.planned and d not in finish for d in graph.deps[key]
                       if d in graph.assets and not blocker.get(d)):
                    continue
                if not slot_free(predictor, key, running):
                    continue
                ready = max([now, *(finish[d] for d in graph.deps[key] if d in finish)])
                waited[key] = max(0.0, (clock - ready).total_seconds())
                seconds = 0.0 if graph.assets[key].layer == "lake" else \
                    (predictor.p50 if share <= 0.5 else predictor.p90).get(key, 0.0)
                heapq.heappush(events, (clock + timedelta(seconds=seconds), key))
                running.add(key)
                todo.remove(key)
                started_any = True
        if not events:
            break
        clock, key = heapq.heappop(events)
        running.discard(key)
        finish[key] = clock
    return finish, waited


def slot_free(predictor: Predictor, key: str, running: set[str]) -> bool:
    """Whether ``key`` may start beside ``running``, asked of the running steps each time (as it was)."""
    assets = predictor.graph.assets
    if predictor.threads is not None and len(running) >= predictor.threads:
        return False
    if any(predictor.heavy(k) for k in running) or (predictor.heavy(key) and running):
        return False
    return all(sum(1 for k in running if tag in assets[k].config.tags) < limit
               for tag in assets[key].config.tags if (limit := predictor.limits.get(tag)) is not None)


def random_case(rng: random.Random, usecases: int = 1, history: bool = False, unlimited: bool = False
                ) -> tuple[Predictor, RunState, dict[str, str | None]]:
    n = rng.randint(5, 120)
    assets: dict[str, Asset] = {}
    deps: dict[str, tuple[str, ...]] = {}
    keys: list[str] = []
    for i in range(n):
        layer = "lake" if i < max(1, n // 8) else "warehouse"
        key = f"{layer}.a{i:03d}"
        tags = tuple(rng.sample(["pg", "api", "big"], rng.randint(0, 2)))
        assets[key] = Asset(layer=layer, name=f"a{i:03d}", path=Path(f"a{i}.sql"),
                            sql=None if layer == "lake" else "x", config=ModelConfig(tags=tags))
        deps[key] = () if layer == "lake" else tuple(rng.sample(keys, min(len(keys), rng.randint(1, 3))))
        keys.append(key)
    graph = Graph(assets=assets, deps=deps, sql_hashes=dict.fromkeys(assets, "h"))
    p50 = {k: float(rng.choice([0, 1, 5, 30, 30, 120, 600])) for k in keys}
    p90 = {k: v * rng.uniform(1, 3) for k, v in p50.items()}
    heavy = set(rng.sample(keys, rng.randint(0, 3)))
    concurrency = Concurrency() if unlimited else \
        Concurrency(threads=rng.choice([None, 1, 2, 4]), limits=rng.choice([None, {"pg": 1}, {"pg": 2, "api": 1}]),
                    heavy=(lambda k: k in heavy) if heavy else None)
    # some steps with a history of builds (an overrun is judged against it), some with too few, some declared
    builds = {k: [p50[k] * rng.uniform(0.5, 1.5) for _ in range(rng.choice([0, 3, 12]))] for k in keys} \
        if history else None
    declared = set(rng.sample(keys, len(keys) // 4)) if history else None
    wanted = {f"u{u}": tuple(rng.sample(keys, rng.randint(1, 3))) for u in range(usecases)}
    deadlines = {name: NOW + timedelta(minutes=rng.randint(-30, 300)) for name in wanted if rng.random() < 0.9}
    predictor = Predictor(graph, wanted, deadlines, Durations(p50, p90, history=builds, declared=declared),
                          concurrency)
    state = RunState(planned=set(rng.sample(keys, rng.randint(1, n))))
    for key in graph.sorted(state.planned):
        roll = rng.random()
        if roll < 0.3:
            state.started[key] = NOW - timedelta(seconds=rng.randint(10, 900))
            state.finished[key] = NOW - timedelta(seconds=rng.randint(0, 9))
        elif roll < 0.4:
            state.started[key] = NOW - timedelta(seconds=rng.randint(0, 900))
        elif roll < 0.45:
            state.broken.add(key)
    blocker: dict[str, str | None] = {}
    for key in graph.sorted(state.planned):
        upstream = next((blocker[d] for d in graph.deps[key] if blocker.get(d)), None)
        blocker[key] = upstream or (key if key in state.broken else None)
    return predictor, state, blocker


@pytest.mark.parametrize("seed", range(80))
def test_event_driven_scheduling_gives_the_plain_scans_answer(seed: int) -> None:
    rng = random.Random(seed)
    predictor, state, blocker = random_case(rng, unlimited=seed % 4 == 0)  # a quarter: no limit at all (one pass)
    for share in (0.1, 0.5, 0.9):
        assert predictor._simulate(state, NOW, share, blocker) == reference(predictor, state, NOW, share, blocker)


def reference_forecast(predictor: Predictor, state: RunState, now: datetime) -> list[Forecast]:
    """The forecast as it was: each use case's path walked for its open, unknown, queued and slowest steps."""
    graph = predictor.graph
    wanted = graph.sorted({k for p in predictor.paths.values() for k in p})
    blocker: dict[str, str | None] = {}
    for key in wanted:
        upstream = next((blocker[d] for d in graph.deps[key] if blocker.get(d)), None)
        blocker[key] = upstream or (key if key in state.broken else None)
    finish50, queued50 = predictor._simulate(state, now, 0.5, blocker)
    finish90, _ = predictor._simulate(state, now, 0.9, blocker)
    finish10, _ = predictor._simulate(state, now, 0.1, blocker)
    out = []
    for name, keys in predictor.usecase_assets.items():
        if name not in predictor.deadlines:
            continue
        pending = [k for k in keys if k in state.planned and k not in state.finished]
        blocked_by = next((blocker[k] for k in keys if blocker.get(k)), None)
        if not pending and not blocked_by:
            continue
        p50 = None if blocked_by else max((t for k in keys if (t := finish50.get(k)) is not None), default=None)
        p90 = None if blocked_by else max((t for k in keys if (t := finish90.get(k)) is not None), default=None)
        p10 = None if blocked_by else max((t for k in keys if (t := finish10.get(k)) is not None), default=None)
        todo = [k for k in predictor.paths[name] if k in state.planned and k not in state.finished]
        unknown = tuple(k for k in todo if not predictor.known(k))
        queued = sum(queued50.get(k, 0.0) for k in todo)
        slowest = None if blocked_by else reference_slowest(predictor, name, state, now)
        late_by = (p90 - predictor.deadlines[name]).total_seconds() if p90 else 0.0
        cause = "failed" if blocked_by else "queued" if queued > max(60.0, 0.5 * late_by) else "slow"
        out.append(Forecast(name, p50, p90, predictor.deadlines[name], blocked_by or slowest, blocked_by,
                            not unknown, unknown, queued, cause, p10))
    return out


def reference_slowest(predictor: Predictor, usecase: str, state: RunState, now: datetime) -> str | None:
    path = [k for k in predictor.paths[usecase] if k in state.planned and k in state.started]
    overruns = {}
    for key in path:
        took = ((state.finished.get(key) or now) - state.started[key]).total_seconds()
        if (extra := predictor.overrun(key, took)) is not None:
            overruns[key] = extra
    if overruns:
        return max(overruns, key=lambda k: overruns[k])
    open_steps = [k for k in predictor.paths[usecase] if k in state.planned and k not in state.finished]
    return max(open_steps, key=lambda k: predictor.p90.get(k, 0.0), default=None)


@pytest.mark.parametrize("seed", range(60))
def test_the_forecast_answers_per_use_case_as_the_path_walks_did(seed: int) -> None:
    rng = random.Random(1000 + seed)
    predictor, state, _ = random_case(rng, usecases=rng.randint(1, 8), history=True, unlimited=seed % 3 == 0)
    assert predictor.forecast(state, NOW) == reference_forecast(predictor, state, NOW)
