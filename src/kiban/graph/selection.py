"""Selecting assets: ``name``, ``+name``, ``name+``, ``layer:mart``, ``tag:x``, several at once."""

from __future__ import annotations

from collections.abc import Iterable

from kiban.assetkey import KeyResolver
from kiban.errors import SelectionError, did_you_mean
from kiban.graph.dag import Graph
from kiban.project.config import LAYERS


def _split(selectors: Iterable[str]) -> list[str]:
    out: list[str] = []
    for item in selectors:
        out.extend(part for part in item.replace(",", " ").split() if part)
    return out


def _match(term: str, graph: Graph) -> set[str]:
    if term.startswith("layer:"):
        layer = term[6:]
        if layer not in LAYERS:
            raise SelectionError(f"unknown layer '{layer}' in selector '{term}'",
                                 did_you_mean(layer, LAYERS) or f"layers are {', '.join(LAYERS)}")
        return {k for k, a in graph.assets.items() if a.layer == layer}
    if term.startswith("tag:"):
        tag = term[4:]
        found = {k for k, a in graph.assets.items() if tag in a.tags}
        if not found:
            tags = {t for a in graph.assets.values() for t in a.tags}
            raise SelectionError(f"no asset has tag '{tag}'", did_you_mean(tag, tags))
        return found
    keys = KeyResolver.of_graph(graph)
    key = keys.key(term)
    if key is not None:
        return {key}
    problem, hint = keys.explain(term)
    raise SelectionError(problem if "ambiguous" in problem else f"no asset matches '{term}'", hint)


def _expand(term: str, graph: Graph) -> set[str]:
    up = term.startswith("+")
    down = term.endswith("+") and len(term) > 1
    core = term[1 if up else 0: len(term) - 1 if down else len(term)]
    if not core:
        raise SelectionError(f"empty selector '{term}'")
    base = _match(core, graph)
    result = set(base)
    for key in base:
        if up:
            result |= graph.upstream(key)
        if down:
            result |= graph.downstream(key)
    return result


def select(graph: Graph, include: Iterable[str] = (), exclude: Iterable[str] = ()) -> list[str]:
    """Asset keys chosen by the selectors, in dependency order. No selector means everything."""
    terms = _split(include)
    chosen: set[str] = set(graph.assets) if not terms else set()
    for term in terms:
        chosen |= _expand(term, graph)
    for term in _split(exclude):
        chosen -= _expand(term, graph)
    return graph.sorted(chosen)
