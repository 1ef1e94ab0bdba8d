"""The data dictionary: every asset with its description, owner, tags, columns (documented, typed,
profiled, PII-marked), lineage neighbours and the use cases that read it — one structure that the
static site, the search index, the CLI and the web console all read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kiban.catalog.lineage import STAR, ColumnGraph, build_column_graph
from kiban.catalog.pii import ANONYMISED_TAGS, pii_columns
from kiban.catalog.profile import ColumnProfile, load_profiles
from kiban.catalog.warehouse import published_columns

if TYPE_CHECKING:
    from kiban.graph import Graph
    from kiban.project import Project
    from kiban.store import Store


@dataclass
class ColumnDoc:
    name: str
    type: str | None = None
    description: str = ""
    tags: tuple[str, ...] = ()
    pii: bool = False
    pii_from: str | None = None  # "asset.column" the PII tag came down from; None when declared here
    anonymised: bool = False
    sources: list[str] = field(default_factory=list)  # upstream columns, "asset.column"
    profile: ColumnProfile | None = None


@dataclass
class AssetDoc:
    key: str
    layer: str
    name: str
    description: str = ""
    owner: str | None = None
    tags: tuple[str, ...] = ()
    materialized: str | None = None
    columns: list[ColumnDoc] = field(default_factory=list)
    upstream: list[str] = field(default_factory=list)
    downstream: list[str] = field(default_factory=list)
    usecases: list[str] = field(default_factory=list)
    sql: str | None = None
    path: str = ""
    rows: int | None = None

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


@dataclass
class Dictionary:
    assets: dict[str, AssetDoc]
    columns: ColumnGraph


def build_dictionary(project: Project, graph: Graph, store: Store | None = None,
                     published: dict[str, list[tuple[str, str]]] | None = None) -> Dictionary:
    """The dictionary of ``project``: YAML docs + published types + lineage + PII + stored profiles."""
    published = published if published is not None else published_columns(project)
    cgraph = build_column_graph(graph, {k: [c for c, _ in v] for k, v in published.items()},
                                project.state_dir / "cache" / "lineage.json")
    pii = pii_columns(project, cgraph)
    profiles = load_profiles(store, project.name) if store is not None else {}
    readers: dict[str, list[str]] = {}
    for name, usecase in project.usecases.items():
        for key in usecase.config.assets:
            readers.setdefault(key, []).append(name)
    docs: dict[str, AssetDoc] = {}
    for key in graph.order:
        asset = graph.assets[key]
        cfg = asset.config
        types = {c.lower(): t for c, t in published.get(key, [])}
        profile = {p.column.lower(): p for p in profiles.get(key, [])}
        declared = {c.name.lower(): c for c in cfg.columns}
        names = [c.name.lower() for c in cfg.columns]
        for name in (*cgraph.columns.get(key, ()), *types):
            if name not in names and name != STAR:
                names.append(name)
        columns = []
        for name in names:
            d = declared.get(name)
            is_pii = (key, name) in pii
            origin = pii.get((key, name))
            columns.append(ColumnDoc(
                name=d.name if d else name, type=types.get(name) or (d.type if d else None),
                description=d.description if d else "", tags=d.tags if d else (),
                pii=is_pii, pii_from=f"{origin[0]}.{origin[1]}" if origin else None,
                anonymised=bool(d and ANONYMISED_TAGS & set(d.tags)),
                sources=sorted(f"{a}.{c}" for a, c in cgraph.sources.get((key, name), ())),
                profile=profile.get(name)))
        first = next(iter(profiles.get(key, [])), None)
        docs[key] = AssetDoc(
            key=key, layer=asset.layer, name=asset.name, description=cfg.description, owner=cfg.owner,
            tags=cfg.tags, materialized=cfg.materialized if asset.sql is not None else None, columns=columns,
            upstream=list(graph.deps.get(key, ())), downstream=sorted(graph.children.get(key, [])),
            usecases=sorted(readers.get(key, [])), sql=asset.sql,
            path=str(asset.path.relative_to(project.root)) if asset.path.is_relative_to(project.root)
            else str(asset.path), rows=first.rows if first else None)
    return Dictionary(docs, cgraph)
