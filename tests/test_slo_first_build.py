"""The first build of a use case's path in a window, found from the builds in the order they began, against
the plain search it replaced (each asset's publishes in the window): the same answer on random histories."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest

from kiban.slo.cause import first_build_start
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
