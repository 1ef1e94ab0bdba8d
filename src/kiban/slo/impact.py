"""Impact and root cause: who is hurt by a broken asset, and what broke a missed use case."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kiban.graph import Graph
from kiban.project import Project


@dataclass(frozen=True)
class Impact:
    asset: str
    usecases: list[str]
    consumers: list[dict[str, Any]] = field(default_factory=list)  # name, team, contact, use case
    owners: list[str] = field(default_factory=list)
    downstream: list[str] = field(default_factory=list)


def blast_radius(project: Project, graph: Graph, asset: str) -> Impact:
    """Every use case (and its consumers) that reads ``asset`` or anything built from it."""
    reach = graph.downstream(asset) | {asset}
    usecases = sorted(name for name, u in project.usecases.items() if reach & set(u.assets))
    consumers = [{"name": c.name, "team": c.team, "contact": list(c.contact), "usecase": name}
                 for name in usecases for c in project.usecases[name].config.consumers]
    owners = sorted({o for name in usecases if (o := project.usecases[name].config.owner)})
    return Impact(asset, usecases, consumers, owners, graph.sorted(reach - {asset}))


def root_cause(graph: Graph, failures: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The failure that explains the others: the upstream-most *failed* asset (skips follow from it)."""
    failed = [f for f in failures if f["status"] == "failed"]
    pool = failed or failures
    if not pool:
        return None
    keys = {f["asset"] for f in pool}
    roots = [f for f in pool if not (graph.upstream(f["asset"]) & keys)]
    order = {k: i for i, k in enumerate(graph.order)}
    return min(roots or pool, key=lambda f: order.get(f["asset"], 0))


def workaround(root: dict[str, Any] | None, usecase_assets: tuple[str, ...], last_run_failed: bool) -> str:
    """The one command that most likely repairs it."""
    if root is not None and last_run_failed:
        return "kiban run --resume"
    if root is not None:
        return f"kiban run {root['asset']}+"
    return "kiban run " + " ".join(f"+{a}" for a in usecase_assets)
