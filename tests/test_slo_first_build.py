"""What explains a late day, found the fast way, against the plain searches they replaced, on random histories:
the first build of the use case's path in a window (from the builds in the order they began, not each asset's
publishes) and the chain that made it late (walked back from the use case, not every asset upstream first)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from kiban.graph.dag import Graph
from kiban.project import Asset, Project, ProjectConfig, UseCase, UseCaseConfig
from kiban.project.config import ModelConfig
from kiban.slo.cause import _critical_path, first_build_start
from kiban.slo.evaluate import Context
from kiban.slo.facts import AssetFacts, Facts

START = datetime(2026, 11, 1)


def reference(facts: Facts, keys: list[str], start: datetime, end: datetime, started_after: datetime
              ) -> datetime | None:
    found = []
    for key in keys:
        item = facts.of(key)
        i = item.last_publish_before(end)
        while i is not None and i >= 0 and item.published_at[i] > start:
            begun = item.publish_started[i]
            run = facts.run_start_before(begun) if begun is not None else None
            if begun is not None and (run is None or run > started_after):
                found.append(begun)
            i -= 1
    return min(found, default=None)


def random_facts(rng: random.Random) -> Facts:
    facts = Facts()
    runs = sorted(START + timedelta(hours=rng.uniform(0, 24 * 10)) for _ in range(rng.randint(0, 25)))
    facts.run_starts = runs
    for a in range(rng.randint(1, 30)):
        item = facts.assets[f"warehouse.a{a}"] = AssetFacts()
        published = []
        for _ in range(rng.randint(0, 12)):
            begun = START + timedelta(hours=rng.uniform(-12, 24 * 10))  # some before the first known run
            ended = begun + timedelta(minutes=rng.uniform(0, 300))
            published.append((ended, None if rng.random() < 0.1 else begun))
        for ended, begun in sorted(published):
            item.published_at.append(ended)
            item.publish_started.append(begun)
    return facts


@pytest.mark.parametrize("seed", range(40))
def test_the_first_build_after_a_runs_start_matches_the_plain_search(seed: int) -> None:
    rng = random.Random(seed)
    facts = random_facts(rng)
    names = list(facts.assets)
    for _ in range(30):
        keys = rng.sample(names, rng.randint(1, len(names)))
        start = START + timedelta(hours=rng.uniform(-12, 24 * 10))
        end = start + timedelta(hours=rng.uniform(0, 48))
        after = start + timedelta(hours=rng.choice([0, 0, -3, 2]))
        assert first_build_start(facts, keys, start, end, after) == reference(facts, keys, start, end, after)


def reference_critical_path(ctx: Context, facts: Facts, usecase: UseCase, window_start: datetime, done: datetime
                            ) -> dict[str, tuple[datetime, datetime, float, float]]:
    """The chain as it was found: every asset upstream of the use case looked up first."""
    builds: dict[str, tuple[datetime, datetime, float]] = {}
    for key in ctx.upstream(usecase.name):
        item = facts.assets.get(key)
        if item is None:
            continue
        i = item.last_publish_before(done)
        if i is None or item.published_at[i] <= window_start or item.publish_seconds[i] is None:
            continue
        ended, took = item.published_at[i], item.publish_seconds[i] or 0.0
        builds[key] = (item.publish_started[i] or ended - timedelta(seconds=took), ended, took)
    chain: dict[str, tuple[datetime, datetime, float, float]] = {}
    current = max((k for k in usecase.assets if k in builds), key=lambda k: builds[k][1], default=None)
    while current is not None:
        started, ended, took = builds[current]
        inputs = [d for d in ctx.graph.deps[current] if d in builds]
        ready = max((builds[d][1] for d in inputs), default=None)
        run_start = facts.run_start_before(started)
        since = max((t for t in (ready, run_start) if t is not None), default=started)
        chain[current] = (started, ended, took, max(0.0, (started - since).total_seconds()))
        current = max(inputs, key=lambda d: builds[d][1], default=None)
    return dict(reversed(list(chain.items())))


@pytest.mark.parametrize("seed", range(40))
def test_the_late_chain_walked_back_from_the_use_case_is_the_one_found_from_every_asset(seed: int) -> None:
    rng = random.Random(seed)
    keys = [f"warehouse.a{i}" for i in range(rng.randint(2, 30))]
    deps = {k: tuple(rng.sample(keys[:i], min(i, rng.randint(0, 3)))) for i, k in enumerate(keys)}
    assets = {k: Asset(layer="warehouse", name=k.split(".")[1], path=Path(f"{k}.sql"), sql="x",
                       config=ModelConfig()) for k in keys}
    graph = Graph(assets=assets, deps=deps, sql_hashes=dict.fromkeys(keys, "h"))
    usecase = UseCase("u", Path("u.yml"), UseCaseConfig.model_validate(
        {"assets": rng.sample(keys, rng.randint(1, 3)), "need": {"by": "08:30"}}))
    project = Project(root=Path("."), config=ProjectConfig(name="t", timezone="Asia/Tokyo"), assets=assets,
                      usecases={"u": usecase})
    ctx = Context.build(project, graph)
    facts = Facts(run_starts=sorted(START + timedelta(hours=rng.uniform(0, 240)) for _ in range(rng.randint(0, 20))))
    for key in keys:
        item = facts.assets[key] = AssetFacts()
        for _ in range(rng.randint(0, 10)):
            begun = START + timedelta(hours=rng.uniform(0, 240))
            item.published_at.append(begun + timedelta(minutes=rng.uniform(0, 300)))
        item.published_at.sort()
        item.publish_started = [None if rng.random() < 0.2 else at - timedelta(minutes=rng.uniform(0, 60))
                                for at in item.published_at]
        item.publish_seconds = [None if rng.random() < 0.1 else rng.uniform(0, 3600) for _ in item.published_at]
    for _ in range(20):
        start = START + timedelta(hours=rng.uniform(0, 240))
        done = start + timedelta(hours=rng.uniform(0, 48))
        assert _critical_path(ctx, facts, usecase, start, done) == \
            reference_critical_path(ctx, facts, usecase, start, done)


@pytest.mark.parametrize("seed", range(30))
def test_a_use_cases_path_from_the_ancestor_bitsets_is_the_walk_over_the_graph(seed: int) -> None:
    """``Context.upstream`` (read from the ancestor bitsets) and the bitset questions cause.py asks are the
    graph's own walks: the same assets, in the graph's order."""
    rng = random.Random(seed)
    keys = [f"{'lake' if i < 3 else 'warehouse'}.a{i}" for i in range(rng.randint(3, 90))]
    deps = {k: tuple(rng.sample(keys[:i], min(i, rng.randint(0, 4)))) if i >= 3 else () for i, k in enumerate(keys)}
    assets = {k: Asset(layer=k.split(".")[0], name=k.split(".")[1], path=Path(f"{k}.sql"),
                       sql=None if k.startswith("lake.") else "x", config=ModelConfig()) for k in keys}
    graph = Graph(assets=assets, deps=deps, sql_hashes=dict.fromkeys(keys, "h"))
    usecases = {f"u{n}": UseCase(f"u{n}", Path(f"u{n}.yml"), UseCaseConfig.model_validate(
        {"assets": rng.sample(keys, rng.randint(1, 4)), "need": {"by": "08:30"}})) for n in range(5)}
    project = Project(root=Path("."), config=ProjectConfig(name="t"), assets=assets, usecases=usecases)
    ctx = Context.build(project, graph)
    for name, usecase in usecases.items():
        wanted = set(usecase.assets).union(*(graph.upstream(k) for k in usecase.assets))
        assert ctx.upstream(name) == graph.sorted(wanted)
        assert ctx.upstream_in(name, lake=True) == [k for k in graph.sorted(wanted) if k.startswith("lake.")]
        assert ctx.upstream_in(name, lake=False) == [k for k in graph.sorted(wanted) if not k.startswith("lake.")]
    failing = set(rng.sample(keys, rng.randint(0, 5)))
    bits = 0
    for key in failing:
        bits |= ctx.bit(key)
    for key in keys:
        assert bool(ctx.upstream_bits(key) & bits) == bool(graph.upstream(key) & failing)


@pytest.mark.parametrize("seed", range(6))
def test_the_builds_loaded_from_the_store_are_the_assets_builds_and_answer_alike(tmp_path: Path, seed: int) -> None:
    """``load_facts`` keeps every timed build in the order it was published (so sorting by start is cheap); that
    list holds exactly the builds the assets' own lists hold, and the first build found through it is the plain
    search's."""
    from kiban.slo.facts import load_facts
    from kiban.store import Store
    from tests.slo_history import add_run

    rng = random.Random(seed)
    store = Store(f"sqlite:///{tmp_path}/state.db")
    try:
        names = [f"warehouse.a{i}" for i in range(rng.randint(2, 12))]
        for n in range(rng.randint(1, 15)):
            started = START + timedelta(hours=rng.uniform(0, 240))
            steps = [(name, rng.choice(["success", "success", "fresh", "failed", "skipped"]), rng.uniform(1, 9000),
                      None, None) for name in rng.sample(names, rng.randint(1, len(names)))]
            add_run(store, "test", f"r{n}", started, steps)
        facts = load_facts(store, "test", START - timedelta(days=1))
        assert facts.builds is not None
        derived = [(begun, published, key) for key, item in facts.assets.items()
                   for begun, published in zip(item.publish_started, item.published_at, strict=True)
                   if begun is not None]
        assert sorted(facts.builds) == sorted(derived)
        assert [b[1] for b in facts.builds] == sorted(b[1] for b in facts.builds)  # in the order published
        for _ in range(30):
            keys = rng.sample(names, rng.randint(1, len(names)))
            start = START + timedelta(hours=rng.uniform(-12, 240))
            end = start + timedelta(hours=rng.uniform(0, 48))
            after = start + timedelta(hours=rng.choice([0, 0, -3, 2]))
            assert first_build_start(facts, keys, start, end, after) == reference(facts, keys, start, end, after)
    finally:
        store.close()
