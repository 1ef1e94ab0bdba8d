"""The asset graph: assets and the edges inferred from their SQL."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

from kiban.assetkey import KeyResolver
from kiban.errors import Location, ProjectError, ProjectErrors
from kiban.graph.duckrefs import (
    Serialized,
    Unserializable,
    called_functions,
    clock_reads,
    duckdb_refs,
    may_read_files,
    read_files,
)
from kiban.graph.sqlrefs import SqlCache, TableRef, cache_key
from kiban.project import Asset, Project
from kiban.walk import reach

CLOCK_DAY_FILE = "clock:today:"  # + the project's time zone: a "file" whose version is the local date (run.inputs)
_CLOCK = ("", "day", "always")

# which layers each layer may read, and why
ALLOWED_READS: dict[str, tuple[str, ...]] = {
    "lake": (),
    "warehouse": ("lake", "warehouse"),
    "mart": ("lake", "warehouse"),
}
LAYER_REASON = {
    "warehouse": "the warehouse holds shared domain knowledge built from the lake and the warehouse",
    "mart": "a mart is one purpose's interface and reads only the layers below it (lake, warehouse); "
    "move logic shared by several marts into a warehouse model",
}


@dataclass
class Graph:
    """Assets, their direct upstream dependencies, and a topological order."""

    assets: dict[str, Asset]
    deps: dict[str, tuple[str, ...]]
    sql_hashes: dict[str, str] = field(default_factory=dict)  # normalized SQL hash per model
    order: list[str] = field(default_factory=list)
    children: dict[str, list[str]] = field(default_factory=dict)
    views: dict[str, str] = field(default_factory=dict)  # lake.x_latest, lake.x_history → the asset lake.x
    files: dict[str, tuple[str, ...]] = field(default_factory=dict)  # model → files it reads directly (globs)
    # model → the collected tables it reads through a per-key view (lake.x_latest, lake.x_history): a new
    # version of an old key changes rows those views already showed, which the table itself only appends
    versioned: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Python model → parameter → the relation it reads (an asset key, or a derived view read as itself): what
    # its decorator's inputs resolve to. The graph's own: the loaded Project is never written to.
    python_inputs: dict[str, dict[str, str]] = field(default_factory=dict)
    # model → the project's macros its SQL calls (directly or through other macros): their bodies are opaque to
    # column lineage, which must not trust what it cannot see through
    macros: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def readable(self) -> dict[str, Asset]:
        """Every name SQL may read: the assets, and the derived lake views as the asset they are made from
        (a resolver returns ``readable[name].key``, so a view is read, tagged and traced as its table)."""
        return {**self.assets, **{view: self.assets[base] for view, base in self.views.items()
                                  if base in self.assets}}

    def __post_init__(self) -> None:
        self.children = {key: [] for key in self.assets}
        for key, ups in self.deps.items():
            for up in ups:
                self.children[up].append(key)
        if not self.order:
            self.order = list(TopologicalSorter(self.deps).static_order())

    def upstream(self, key: str) -> set[str]:
        """All ancestors of ``key`` (not including it)."""
        return self._reach(key, self.deps)

    def downstream(self, key: str) -> set[str]:
        """All descendants of ``key`` (not including it)."""
        return self._reach(key, self.children)

    @staticmethod
    def _reach(key: str, edges: Mapping[str, Iterable[str]]) -> set[str]:
        return reach(key, edges)

    def sorted(self, keys: Iterable[str]) -> list[str]:
        wanted = set(keys)
        return [k for k in self.order if k in wanted]


def _resolve(ref: TableRef, asset: Asset, keys: KeyResolver) -> str:
    """The asset ``ref`` names (a derived lake view: its table), or the ProjectError saying why none."""
    key = keys.resolve(ref.schema, ref.name)
    if key is not None:
        return key
    where = Location(asset.path, ref.line, ref.column)
    hint = keys.hint(ref.schema, ref.name)
    if ref.schema:
        raise ProjectError(f"unknown table {ref.schema}.{ref.name}", where, hint)
    candidates = keys.candidates(ref.name)
    if len(candidates) > 1:
        raise ProjectError(f"table {ref.name} is ambiguous: it could be {' or '.join(candidates)}", where, hint)
    raise ProjectError(f"unknown table {ref.name}", where, hint)


def _model_ref(model: str, line: int) -> TableRef:
    """The training asset a scoring asset names (``warehouse.demand_model`` or a bare name)."""
    schema, _, name = model.rpartition(".")
    return TableRef(schema, name, line, 1)


def _macro_uses(project: Project, errors: list[ProjectError]) -> tuple[dict[str, set[str]], dict[str, list[TableRef]]]:
    """For every macro: the macros it uses (itself and through others), and the tables its body reads."""
    calls: dict[str, set[str]] = {}
    reads: dict[str, list[TableRef]] = {}
    for name, macro in project.macros.items():
        try:
            found = duckdb_refs(macro.query, macro.path)
        except (ProjectError, Unserializable) as exc:  # reported at the macro's place
            message = exc.message if isinstance(exc, ProjectError) else str(exc)
            errors.append(ProjectError(f"macro {name}: {message}", Location(macro.path, macro.line, 1)))
            found = []
        reads[name] = [TableRef(r.schema, r.name, macro.line, 1) for r in found]
        calls[name] = called_functions(macro.query) & set(project.macros)
    closure: dict[str, set[str]] = {}
    for name in project.macros:
        seen, stack = {name}, [name]
        while stack:
            for other in calls[stack.pop()]:
                if other not in seen:
                    seen.add(other)
                    stack.append(other)
        closure[name] = seen
    return closure, reads


def macro_uses(project: Project) -> tuple[dict[str, set[str]], dict[str, list[TableRef]]]:
    """For every macro of ``project``: the macros it uses (itself and through others), and the tables its body
    reads (a macro whose body cannot be read reads nothing here: loading the graph reports it)."""
    return _macro_uses(project, [])


def build_graph(project: Project, cache: SqlCache | None = None) -> Graph:
    """Parse every model, resolve what it reads, and check layers and cycles."""
    cache = cache or SqlCache(project.state_dir / "cache" / "sql.json")
    # the texts DuckDB's parser will read (not cached, or reading files, or calling macros): asked in one batch
    texts = [a.sql for a in project.assets.values() if a.sql is not None and a.python is None
             and (project.macros or cache_key(a.sql) not in cache.entries or may_read_files(a.sql))]
    with Serialized(texts):
        return _build_graph(project, cache)


def _build_graph(project: Project, cache: SqlCache) -> Graph:
    errors: list[ProjectError] = []
    deps: dict[str, tuple[str, ...]] = {}
    hashes: dict[str, str] = {}
    files: dict[str, tuple[str, ...]] = {}
    macros: dict[str, tuple[str, ...]] = {}  # model → the project macros it calls
    versioned: dict[str, tuple[str, ...]] = {}
    python_inputs: dict[str, dict[str, str]] = {}
    helper_files: dict[str, Path] = {}  # helper module name → the file Python models import under it
    aliases = project.lake_views()  # derived views of collected tables resolve to the table's asset
    keys = KeyResolver(project.assets, aliases)
    edge_at: dict[tuple[str, str], TableRef] = {}  # (reader, upstream) → where the SQL names it
    closure, macro_reads = _macro_uses(project, errors) if project.macros else ({}, {})
    zone = project.config.timezone  # UTC (the default) adds nothing: the fingerprints stay what they were
    # a CTE named like one of these may hide a table from DuckDB's walk: SQLGlot is asked there too
    tables = {a.name.lower() for a in project.assets.values()} | {v.rsplit(".", 1)[-1].lower() for v in aliases}
    for key, asset in project.assets.items():
        if asset.python is not None:  # a Python model: its inputs are its parameters; its code is its module
            for name, path, _ in asset.python.helpers:  # Python imports a name once per process
                other = helper_files.setdefault(name, path)
                if other != path:
                    errors.append(ProjectError(
                        f"{key} imports {name} from {path.parent}, and another model imports {name} from "
                        f"{other.parent}: a process imports a module name once, so one of them would run the "
                        "other's code", Location(asset.path), f"rename one of them (e.g. {name}_{asset.layer})"))
            refs: list[TableRef] = [TableRef(i.schema, i.name, i.line, i.column) for i in asset.python.inputs]
            if asset.python.model:
                refs.append(_model_ref(asset.python.model, asset.python.line))
            hashes[key] = asset.python.code_hash
        elif asset.sql is None:
            deps[key] = ()
            continue
        else:
            try:
                parsed = cache.parse(asset.sql, asset.path, tables)
            except ProjectError as exc:
                errors.append(exc)
                deps[key] = ()
                continue
            hashes[key] = hashlib.sha256((parsed.normalized_hash + asset.config.materialized).encode()).hexdigest()
            refs = list(parsed.refs)
            used: list[str] = []
            if closure:  # the project's macros it calls: their text is part of it, their tables its inputs
                used = sorted({m for f in called_functions(asset.sql) & set(closure) for m in closure[f]})
                if used:
                    macros[key] = tuple(used)
                    texts = "\0".join(project.macros[m].text for m in used)
                    hashes[key] = hashlib.sha256(f"{hashes[key]}\0macros\0{texts}".encode()).hexdigest()
                    refs += [ref for m in used for ref in macro_reads[m]]
            read = read_files(asset.sql)
            clock = max([clock_reads(asset.sql), *(clock_reads(project.macros[m].query) for m in used)],
                        key=_CLOCK.index)
            if clock:  # today's date, or a value of its own at every run: an input no table or file has
                read = (*read, CLOCK_DAY_FILE + zone if clock == "day" else "?")
            if read:
                files[key] = read
        if zone != "UTC":  # the session's time zone is part of what the code means (casts, hour(), date_trunc)
            hashes[key] = hashlib.sha256(f"{hashes[key]}\0timezone={zone}".encode()).hexdigest()
        found: list[str] = []
        through: list[str] = []  # tables read through their _latest/_history view
        for i, ref in enumerate(refs):
            try:
                up = _resolve(ref, asset, keys)
            except ProjectError as exc:
                errors.append(exc)
                continue
            if aliases.get(f"{ref.schema or 'lake'}.{ref.name}".lower()) == up and up not in through:
                through.append(up)
            if asset.python is not None:
                parameter = asset.python.inputs[i].parameter if i < len(asset.python.inputs) else "model"
                view = f"{ref.schema or 'lake'}.{ref.name}".lower()  # a derived view is read as itself
                python_inputs.setdefault(key, {})[parameter] = view if aliases.get(view) == up else up
            upstream_layer = project.assets[up].layer
            if upstream_layer not in ALLOWED_READS[asset.layer]:
                errors.append(ProjectError(
                    f"{asset.layer} model {key} reads {up}, but the {asset.layer} layer may only read "
                    f"{' and '.join(ALLOWED_READS[asset.layer])}",
                    Location(asset.path, ref.line, ref.column), LAYER_REASON.get(asset.layer)))
                continue
            if up == key:
                errors.append(ProjectError(f"{key} reads itself", Location(asset.path, ref.line, ref.column)))
                continue
            if up not in found:
                found.append(up)
                edge_at[(key, up)] = ref
        deps[key] = tuple(found)
        if through:
            versioned[key] = tuple(through)
    if errors:
        raise errors[0] if len(errors) == 1 else ProjectErrors(errors)
    try:
        order = list(TopologicalSorter(deps).static_order())
    except CycleError as exc:
        cycle = list(reversed(exc.args[1]))
        first = project.assets[cycle[0]]
        closing = edge_at.get((cycle[0], cycle[1]))
        where = Location(first.path, closing.line, closing.column) if closing else Location(first.path)
        raise ProjectError("dependency cycle: " + " → ".join(cycle), where,
                           "a model cannot depend on itself through others; break one of these edges") from None
    cache.save(live_keys={cache_key(a.sql or '') for a in project.assets.values() if a.sql is not None})
    return Graph(assets=dict(project.assets), deps=deps, sql_hashes=hashes, order=order, views=aliases,
                 files=files, versioned=versioned, python_inputs=python_inputs, macros=macros)
