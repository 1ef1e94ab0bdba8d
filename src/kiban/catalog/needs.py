"""What a purpose needs: the lake tables (and their columns) a use case's assets are built from, and which of them
are not collected yet — so a team collects only what a purpose needs. The other way round: the sources no use
case needs any more.

The columns listed are those whose values reach the use case's assets, by column lineage; columns a model only
joins or filters on are not listed yet (lineage follows values, not predicates).

"Collected" means, for a source table (``sources/NAME.yml``), a committed load that landed files; for a plain lake
folder (``lake/<t>/``), at least one Parquet file in it. The columns are those the models read, by column lineage
(:mod:`kiban.catalog.lineage`); a ``*`` means a model reads every column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kiban.catalog.lineage import build_column_graph
from kiban.catalog.warehouse import published_columns
from kiban.collect.manifest import Manifests
from kiban.errors import UsageError, did_you_mean

if TYPE_CHECKING:
    from kiban.graph import Graph
    from kiban.project import Project
    from kiban.store import Store


@dataclass
class Need:
    asset: str  # lake.<t>
    source: str | None  # "pos.orders" for a collected table, None for a plain lake folder
    collected: bool
    columns: list[str] = field(default_factory=list)
    detail: str = ""


@dataclass
class UseCaseNeeds:
    usecase: str
    assets: list[str]
    needs: list[Need]

    @property
    def missing(self) -> list[Need]:
        return [n for n in self.needs if not n.collected]


def _lake_inputs(graph: Graph, keys: list[str]) -> set[str]:
    found: set[str] = set()
    for key in keys:
        for up in graph.upstream(key) | {key}:
            if up.startswith("lake."):
                found.add(up)
    return found


def plan(project: Project, graph: Graph, store: Store, usecase: str) -> UseCaseNeeds:
    """What ``usecase`` needs from the lake, and whether each is collected yet."""
    if usecase not in project.usecases:
        raise UsageError(f"no use case named '{usecase}'", did_you_mean(usecase, project.usecases)
                         or "use cases live in usecases/NAME.yml")
    assets = [a.lower() for a in project.usecases[usecase].assets]
    lake = _lake_inputs(graph, assets)
    columns = _columns_read(project, graph, assets)
    collected = project.source_tables()
    states = Manifests(store).states(project.name, sorted(k for k in lake if k in collected))
    needs = []
    for key in sorted(lake):
        if key in collected:
            source, table = collected[key]
            state = states.get(key)
            done = state is not None and bool(state.files)
            detail = f"{len(state.files)} files landed" if done and state else "no committed load yet"
            needs.append(Need(key, f"{source}.{table}", done, sorted(columns.get(key, ())), detail))
        else:
            folder = project.lake_dir / key.split(".", 1)[1]
            files = list(folder.rglob("*.parquet")) if folder.is_dir() else []
            needs.append(Need(key, None, bool(files), sorted(columns.get(key, ())),
                              f"{len(files)} Parquet files in {folder.name}/" if files else
                              f"no Parquet file in lake/{folder.name}/"))
    return UseCaseNeeds(usecase, assets, needs)


def _columns_read(project: Project, graph: Graph, assets: list[str]) -> dict[str, set[str]]:
    """The lake columns the assets' columns are computed from (column lineage, followed to the lake)."""
    known = {k: [c for c, _ in v] for k, v in published_columns(project).items()}
    lineage = build_column_graph(graph, known, project.state_dir / "cache" / "lineage.json")
    seen: set[tuple[str, str]] = set()
    stack = [(a, c) for a in assets for c in lineage.columns.get(a, ())]
    found: dict[str, set[str]] = {}
    while stack:
        ref = stack.pop()
        if ref in seen:
            continue
        seen.add(ref)
        if ref[0].startswith("lake."):
            found.setdefault(ref[0], set()).add(ref[1])
        stack.extend(lineage.sources.get(ref, ()))
    return found


def unneeded(project: Project, graph: Graph) -> list[str]:
    """Collected source tables (``source.table``) that no use case's assets are built from."""
    used = _lake_inputs(graph, [a.lower() for u in project.usecases.values() for a in u.assets])
    collected = project.source_tables()
    return sorted(f"{s}.{t}" for key, (s, t) in collected.items() if key not in used)
