"""Planning a run: which selected assets must be built and which are fresh.

An asset's fingerprint covers its normalised SQL, its materialisation, its blocking checks (what a version
must pass to be published: adding or changing one re-judges the model) and the data versions of its inputs
(a lake table's files; a model's published version). An asset whose published fingerprint equals the planned
one is fresh and is not rebuilt.

A published version is ``<fingerprint>`` or ``<fingerprint>+<data token>``: a change of the data that is not
a rebuild (a backfill replacing partitions) adds a new token, so the table itself stays fresh (its code and
inputs did not change) while everything reading it sees a new input version and is rebuilt.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from kiban.engines.base import DATA_TOKEN
from kiban.graph import Graph


@runtime_checkable
class Judge(Protocol):
    """What decides whether a new version may be published (``checks.gate.Gate``): its rules are an input."""

    def judgement(self, key: str) -> str:
        """A digest of what a new version of ``key`` must pass ('' when nothing blocks it)."""
        ...


@dataclass
class Plan:
    order: list[str]  # selected assets in dependency order
    fingerprints: dict[str, str]
    build: list[str] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)
    lake: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)  # why each asset in ``build`` is built
    # incremental models in ``build`` that must be built whole: data an input held before this run changed
    # outside their recent partitions (a backfill upstream), so recomputing the recent ones would leave old rows
    whole: set[str] = field(default_factory=set)


def code_of(published: str) -> str:
    """The fingerprint part of a published version (without a data token)."""
    return published.split(DATA_TOKEN, 1)[0]


def _digest(graph: Graph, key: str, judgement: str, inputs: Mapping[str, str]) -> str:
    asset = graph.assets[key]
    digest = hashlib.sha256(graph.sql_hashes[key].encode())
    if asset.config.incremental:  # how the rows are cut into partitions is part of what they are
        digest.update(f"\0partitions={asset.config.time_column}/{asset.config.partition_grain}".encode())
    if judgement:  # without checks the fingerprint stays what it always was: no rebuild on upgrade
        digest.update(f"\0checks={judgement}".encode())
    for dep in sorted(graph.deps[key]):
        digest.update(f"\0{dep}={inputs.get(dep, '')}".encode())
    return digest.hexdigest()


def fingerprints(graph: Graph, lake_versions: dict[str, str], published: dict[str, str],
                 selected: set[str], judge: Judge | None = None, full_refresh: bool = False) -> dict[str, str]:
    """Expected fingerprint of every model after this run.

    An input outside the selection contributes what is published now (with its data token); inside it, what
    it will be: its published version when it stays fresh, its new fingerprint when it is rebuilt.
    """
    prints: dict[str, str] = {}
    data: dict[str, str] = {}  # the data version each asset will have after this run
    for key in graph.order:
        asset = graph.assets[key]
        if asset.layer == "lake":
            prints[key] = data[key] = lake_versions.get(key, "")
            continue
        prints[key] = _digest(graph, key, judge.judgement(key) if judge else "", data)
        now = published.get(key, "")
        if key not in selected:
            data[key] = now
        elif not full_refresh and code_of(now) == prints[key]:
            data[key] = now  # fresh: its data (and any token a backfill gave it) stays
        else:
            data[key] = prints[key]
    return prints


def make_plan(graph: Graph, selection: list[str], lake_versions: dict[str, str],
              published: dict[str, str], full_refresh: bool = False, judge: Judge | None = None) -> Plan:
    prints = fingerprints(graph, lake_versions, published, set(selection), judge, full_refresh)
    plan = Plan(order=selection, fingerprints=prints)
    for key in selection:
        if graph.assets[key].layer == "lake":
            plan.lake.append(key)
        elif not full_refresh and code_of(published.get(key, "")) == prints[key]:
            plan.fresh.append(key)
        else:
            plan.build.append(key)
            plan.reasons[key] = _reason(graph, key, plan.build, published, full_refresh)
    _whole(graph, plan, published)
    return plan


def _whole(graph: Graph, plan: Plan, published: dict[str, str]) -> None:
    """Mark the incremental models that a change of *older* data upstream reaches (see ``Plan.whole``).

    Older data changed where a published version carries a data token (partitions a backfill replaced), and
    from there on in everything rebuilt that reads it: a table is recomputed whole, an incremental model built
    whole recomputes its old partitions too."""
    older = {key for key, version in published.items() if DATA_TOKEN in version}
    building = set(plan.build)
    for key in graph.order:
        if key not in building or not older.intersection(graph.deps[key]):
            continue
        older.add(key)
        if graph.assets[key].config.incremental:
            plan.whole.add(key)
            plan.reasons[key] += "; built whole: older data of an input changed (a backfill upstream)"


def _reason(graph: Graph, key: str, building: list[str], published: dict[str, str], full_refresh: bool) -> str:
    """Why ``key`` is built, as far as one fingerprint can tell (it is one hash, not a list of parts)."""
    if full_refresh:
        return "full refresh"
    if key not in published:
        return "not built yet"
    rebuilt = [d for d in graph.deps[key] if d in building]
    if rebuilt:
        return "upstream rebuilt: " + ", ".join(rebuilt)
    return "its SQL, settings, blocking checks or inputs' data changed since it was published"
