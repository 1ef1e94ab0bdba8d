"""Walking a graph given as edges (node → the nodes it points to): the one reachability walk behind
``Graph.upstream``/``downstream``, column lineage, the gate's ordering check and the worker queue's skips.
A core leaf: imports nothing of kiban.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import TypeVar

N = TypeVar("N", bound=Hashable)


def reach(start: N, edges: Mapping[N, Iterable[N]]) -> set[N]:
    """Every node reachable from ``start`` by one or more edges (``start`` itself only through a cycle).
    Iterative, so a long chain cannot overflow the stack; each node is expanded once."""
    seen: set[N] = set()
    stack = list(edges.get(start, ()))
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(edges.get(node, ()))
    return seen


def reverse(edges: Mapping[N, Iterable[N]]) -> dict[N, list[N]]:
    """The same edges pointing the other way (upstream ↔ downstream)."""
    out: dict[N, list[N]] = {}
    for node, targets in edges.items():
        for target in targets:
            out.setdefault(target, []).append(node)
    return out


__all__ = ["reach", "reverse"]
