"""Planning a run: which selected assets must be built and which are fresh.

An asset's fingerprint covers its normalised SQL, its materialisation and the data versions of
its inputs (a lake folder's file listing; a model's own fingerprint). An asset whose published
fingerprint equals the planned one is fresh and is not rebuilt.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from kiban.graph import Graph


@dataclass
class Plan:
    order: list[str]  # selected assets in dependency order
    fingerprints: dict[str, str]
    build: list[str] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)
    lake: list[str] = field(default_factory=list)


def fingerprints(graph: Graph, lake_versions: dict[str, str], published: dict[str, str],
                 selected: set[str]) -> dict[str, str]:
    """Expected fingerprint of every model after this run.

    An input outside the selection contributes what is published now; inside it, what it will be.
    """
    prints: dict[str, str] = {}
    for key in graph.order:
        asset = graph.assets[key]
        if asset.layer == "lake":
            prints[key] = lake_versions.get(key, "")
            continue
        digest = hashlib.sha256(graph.sql_hashes[key].encode())
        if asset.config.incremental:  # how the rows are cut into partitions is part of what they are
            digest.update(f"\0partitions={asset.config.time_column}/{asset.config.partition_grain}".encode())
        for dep in sorted(graph.deps[key]):
            version = prints[dep] if dep in selected or graph.assets[dep].layer == "lake" \
                else published.get(dep, "")
            digest.update(f"\0{dep}={version}".encode())
        prints[key] = digest.hexdigest()
    return prints


def make_plan(graph: Graph, selection: list[str], lake_versions: dict[str, str],
              published: dict[str, str], full_refresh: bool = False) -> Plan:
    prints = fingerprints(graph, lake_versions, published, set(selection))
    plan = Plan(order=selection, fingerprints=prints)
    for key in selection:
        if graph.assets[key].layer == "lake":
            plan.lake.append(key)
        elif not full_refresh and published.get(key) == prints[key]:
            plan.fresh.append(key)
        else:
            plan.build.append(key)
    return plan
