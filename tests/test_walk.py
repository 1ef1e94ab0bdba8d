"""The one reachability walk (kiban.walk) that the graph, lineage, the gate and the worker queue share."""

from __future__ import annotations

from kiban.walk import reach, reverse

EDGES = {"mart.x": ["warehouse.a", "warehouse.b"], "warehouse.a": ["lake.o"], "warehouse.b": ["lake.o"]}


def test_reach_follows_every_path_once_and_leaves_the_start_out() -> None:
    assert reach("mart.x", EDGES) == {"warehouse.a", "warehouse.b", "lake.o"}
    assert reach("lake.o", EDGES) == set()


def test_reversed_edges_walk_downstream() -> None:
    assert reach("lake.o", reverse(EDGES)) == {"warehouse.a", "warehouse.b", "mart.x"}


def test_a_cycle_reaches_its_start_and_ends() -> None:
    assert reach("a", {"a": ["b"], "b": ["a"]}) == {"a", "b"}


def test_a_long_chain_does_not_overflow() -> None:
    chain = {i: [i + 1] for i in range(100_000)}
    assert len(reach(0, chain)) == 100_000
