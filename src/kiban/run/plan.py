"""Planning a run: which selected assets must be built and which are fresh.

An asset's fingerprint covers its normalised SQL, its materialisation, its blocking checks (what a version
must pass to be published: adding or changing one re-judges the model) and the data versions of its inputs
(a lake table's files; a model's published version). An asset whose published fingerprint equals the planned
one is fresh and is not rebuilt.

A published version is ``<fingerprint>`` or ``<fingerprint>+<data token>``: a change of the data that is not
a rebuild (a backfill replacing partitions) adds a new token, so the table itself stays fresh (its code and
inputs did not change) while everything reading it sees a new input version and is rebuilt.

Beyond the tables it reads, a fingerprint covers the files a model reads directly (``read_parquet('…')``:
their paths, sizes and modification times) and, for each blocking ``relationships`` check, the data version of
the table it refers to (a change there must judge the model again).

**History.** An incremental model recomputes only its recent partitions, which is right only while its inputs
change by appending. Every asset therefore has a *history*: a digest that stays the same while the asset only
grows and changes when older data may have changed — a retracted load, a replayed quarantine, a backfilled
partition, a model's SQL, a file read directly, a replaced or deleted file of a plain lake folder, and for a
reader of ``lake.x_latest``/``lake.x_history`` a load giving an old key a new version (or deleting it). An
incremental model's fingerprint ends in ``@<digest of its inputs' histories>``; when the run's digest differs
from the published one, the model is built whole.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from typing import Protocol, runtime_checkable

from kiban.engines.base import DATA_TOKEN
from kiban.graph import Graph


@runtime_checkable
class Judge(Protocol):
    """What decides whether a new version may be published (``checks.gate.Gate``): its rules are an input."""

    def judgement(self, key: str) -> str:
        """A digest of what a new version of ``key`` must pass ('' when nothing blocks it)."""
        ...

    def references(self, key: str) -> Sequence[str]:
        """Other assets a blocking check of ``key`` reads (the target of a ``relationships`` check)."""
        ...


HISTORY = "@"  # an incremental model's fingerprint: <digest>@<its inputs' histories>


@dataclass(frozen=True)
class Extra:
    """What a fingerprint covers besides the graph and the published versions (``run.inputs`` finds it)."""

    # asset → a digest of its own changes that are not appends: a lake table's retracted and replayed loads,
    # a model's backfilled partitions ('' or absent: none)
    histories: Mapping[str, str] = field(default_factory=dict)
    files: Mapping[str, str] = field(default_factory=dict)  # model → identity of the files it reads directly
    # collected table → a digest of its loads that gave old keys new versions or deleted them: the history of
    # its per-key views (lake.x_latest, lake.x_history; ``Graph.versioned`` says who reads them)
    versioned: Mapping[str, str] = field(default_factory=dict)


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


def history_of(published: str) -> str:
    """The inputs' history an incremental model was published with ('' when none was recorded)."""
    return code_of(published).partition(HISTORY)[2]


def built_whole(published: str, planned: str) -> bool:
    """Whether an incremental model planned as ``planned`` must be built whole over its ``published`` version:
    its inputs' histories differ (older data of an input changed). The plan decides it, and a worker of a
    ``--workers`` run decides the same from its queued fingerprint (the queue carries no other flag)."""
    return bool(published) and HISTORY in code_of(planned) and history_of(published) != history_of(planned)


def same_print(published: str, planned: str) -> bool:
    """Whether the published version was built as ``planned`` says. A version published before histories were
    recorded (no ``@``) counts as its digest: an upgrade alone rebuilds nothing."""
    code = code_of(published)
    return code == planned or (HISTORY not in code and bool(code) and planned.partition(HISTORY)[0] == code)


def _short(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _digest(graph: Graph, key: str, judgement: str, inputs: Mapping[str, str], files: str,
            references: Mapping[str, str]) -> str:
    asset = graph.assets[key]
    digest = hashlib.sha256(graph.sql_hashes[key].encode())
    if asset.config.incremental:  # how the rows are cut into partitions is part of what they are
        digest.update(f"\0partitions={asset.config.time_column}/{asset.config.partition_grain}".encode())
    if judgement:  # without checks the fingerprint stays what it always was: no rebuild on upgrade
        digest.update(f"\0checks={judgement}".encode())
    for dep in sorted(graph.deps[key]):
        digest.update(f"\0{dep}={inputs.get(dep, '')}".encode())
    if files:  # files read directly (read_parquet('…')): their identity is an input like a table's version
        digest.update(f"\0files={files}".encode())
    for target, version in sorted(references.items()):  # what a relationships check compares with
        digest.update(f"\0checked against {target}={version}".encode())
    return digest.hexdigest()


def _order(graph: Graph, judge: Judge | None) -> list[str]:
    """The graph's order, with each relationships check's target before the model it checks."""
    if judge is None:
        return graph.order
    edges = {k: {*graph.deps[k], *(t for t in judge.references(k) if t in graph.assets and t != k)}
             for k in graph.order}
    try:
        return list(TopologicalSorter(edges).static_order())
    except CycleError:  # the gate refuses such checks; should one slip through, its target counts as published
        return graph.order


@dataclass
class _Versions:
    prints: dict[str, str]
    histories: dict[str, str]  # each asset's history after this run
    inputs: dict[str, str]  # incremental model → its inputs' histories ('' when all are pristine)


def _versions(graph: Graph, lake_versions: Mapping[str, str], published: Mapping[str, str], selected: set[str],
              judge: Judge | None, full_refresh: bool, extra: Extra) -> _Versions:
    out = _Versions({}, {}, {})
    data: dict[str, str] = {}  # the data version each asset will have after this run
    for key in _order(graph, judge):
        asset = graph.assets[key]
        own = extra.histories.get(key, "")
        if asset.layer == "lake":
            out.prints[key] = data[key] = lake_versions.get(key, "")
            out.histories[key] = own
            continue
        files = extra.files.get(key, "")
        refs = {t: data.get(t, published.get(t, lake_versions.get(t, "")))
                for t in (judge.references(key) if judge else ()) if t in graph.assets}
        fingerprint = _digest(graph, key, judge.judgement(key) if judge else "", data, files, refs)
        upstream = [f"{d}={out.histories.get(d, '')}" for d in sorted(graph.deps[key])]
        upstream += [f"{d}:keys={extra.versioned[d]}" for d in graph.versioned.get(key, ()) if extra.versioned.get(d)]
        if asset.config.incremental:  # its own code too: a macro it calls is not in what its partitions record
            out.inputs[key] = _short(graph.sql_hashes[key], *upstream, f"files={files}")
            fingerprint += HISTORY + out.inputs[key]
        out.prints[key] = fingerprint
        now = published.get(key, "")
        if key not in selected:
            data[key] = now
        elif not full_refresh and same_print(now, fingerprint):
            data[key] = now  # fresh: its data (and any token a backfill gave it) stays
        else:
            data[key] = fingerprint
        token = data[key].partition(DATA_TOKEN)[2]  # partitions a backfill replaced, while it is not rebuilt
        # a model's rows change other than by growing when its SQL does, when an input's did, when it reads
        # files directly (any change counts), or when partitions were backfilled (the ledger remembers them)
        out.histories[key] = _short(graph.sql_hashes[key], own, token, f"files={files}", *upstream)
    return out


def fingerprints(graph: Graph, lake_versions: dict[str, str], published: dict[str, str],
                 selected: set[str], judge: Judge | None = None, full_refresh: bool = False,
                 extra: Extra | None = None) -> dict[str, str]:
    """Expected fingerprint of every model after this run.

    An input outside the selection contributes what is published now (with its data token); inside it, what
    it will be: its published version when it stays fresh, its new fingerprint when it is rebuilt.
    """
    return _versions(graph, lake_versions, published, selected, judge, full_refresh, extra or Extra()).prints


def make_plan(graph: Graph, selection: list[str], lake_versions: dict[str, str],
              published: dict[str, str], full_refresh: bool = False, judge: Judge | None = None,
              extra: Extra | None = None) -> Plan:
    versions = _versions(graph, lake_versions, published, set(selection), judge, full_refresh, extra or Extra())
    prints = versions.prints
    plan = Plan(order=selection, fingerprints=prints)
    for key in selection:
        if graph.assets[key].layer == "lake":
            plan.lake.append(key)
        elif not full_refresh and same_print(published.get(key, ""), prints[key]):
            plan.fresh.append(key)
        else:
            plan.build.append(key)
            plan.reasons[key] = _reason(graph, key, plan.build, published, full_refresh)
    _whole(graph, plan, published)
    for key in plan.build:  # an input changed other than by growing since the model was published
        if (not full_refresh and key not in plan.whole and graph.assets[key].config.incremental
                and built_whole(published.get(key, ""), prints[key])):
            plan.whole.add(key)
            plan.reasons[key] += ("; built whole: older data of an input changed (a retracted or replayed load, "
                                  "a backfill, a changed model or file upstream, a replaced or deleted lake file, "
                                  "an old key updated or deleted in a _latest/_history view)")
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
    return ("its SQL, settings, blocking checks, inputs' data, the files it reads or the tables its checks "
            "refer to changed since it was published")
