"""The graph as text: an indented tree, Graphviz dot, JSON or Mermaid."""

from __future__ import annotations

import json

from kiban.graph.dag import Graph

FORMATS = ("tree", "dot", "json", "mermaid")


def render(graph: Graph, keys: list[str], fmt: str) -> str:
    """Render the subgraph of ``keys`` (edges between selected assets only)."""
    chosen = set(keys)
    edges = [(up, key) for key in keys for up in graph.deps[key] if up in chosen]
    if fmt == "json":
        nodes = [{"key": k, "layer": graph.assets[k].layer, "name": graph.assets[k].name,
                  "tags": list(graph.assets[k].tags), "materialized": graph.assets[k].config.materialized,
                  "depends_on": [d for d in graph.deps[k] if d in chosen]} for k in keys]
        return json.dumps({"assets": nodes, "edges": [list(e) for e in edges]}, indent=2)
    if fmt == "dot":
        lines = ["digraph kiban {", "  rankdir=LR;", '  node [shape=box, style="rounded,filled"];']
        colours = {"lake": "#dbeafe", "warehouse": "#dcfce7", "mart": "#fef3c7"}
        lines += [f'  "{k}" [fillcolor="{colours[graph.assets[k].layer]}"];' for k in keys]
        lines += [f'  "{a}" -> "{b}";' for a, b in edges]
        return "\n".join([*lines, "}"])
    if fmt == "mermaid":
        ids = {k: k.replace(".", "_") for k in keys}
        lines = ["graph LR"] + [f'  {ids[k]}["{k}"]' for k in keys]
        lines += [f"  {ids[a]} --> {ids[b]}" for a, b in edges]
        return "\n".join(lines)
    return _tree(graph, keys, chosen)


def _tree(graph: Graph, keys: list[str], chosen: set[str]) -> str:
    """Roots first; each asset lists what reads it. An asset shown before is marked, not repeated."""
    roots = [k for k in keys if not any(d in chosen for d in graph.deps[k])]
    shown: set[str] = set()
    lines: list[str] = []

    def walk(key: str, prefix: str, last: bool, top: bool) -> None:
        children = [c for c in graph.children[key] if c in chosen]
        branch = "" if top else ("└── " if last else "├── ")
        if key in shown and children:
            lines.append(f"{prefix}{branch}{key} (…see above)")
            return
        shown.add(key)
        lines.append(f"{prefix}{branch}{key}")
        inner = prefix + ("" if top else ("    " if last else "│   "))
        for i, child in enumerate(sorted(children)):
            walk(child, inner, i == len(children) - 1, False)

    for root in roots:
        walk(root, "", True, True)
    return "\n".join(lines) if lines else "(no assets selected)"
