"""Column-level lineage: which upstream columns each output column of a query is computed from.

SQLGlot qualifies the query against the known schemas (so ``SELECT *`` is expanded and every column
names its source), then a walk over the query's scopes follows each output column through CTEs,
derived tables, scalar subqueries and set operations (UNION: the columns at the same position of
every branch) down to physical tables. A column counts as a source when it appears in the output
expression, including a window function's PARTITION BY and ORDER BY; columns that only filter or
join (WHERE, ON, GROUP BY) do not.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiban.assetkey import KeyResolver
from kiban.catalog.cache import LineageCache
from kiban.walk import reach

if TYPE_CHECKING:
    from sqlglot import exp
    from sqlglot.optimizer.scope import Scope

ColumnRef = tuple[str, str]  # (asset key, column name)
Resolver = Callable[[str, str], str | None]  # (schema, table) → asset key, or None when unknown
STAR = "*"
UNKNOWN: ColumnRef = ("", "?")  # a marker inside the walk: this output depends on something unexplained
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QueryLineage:
    """The output columns of one query, in order, each with the upstream columns it is computed from."""

    columns: tuple[str, ...]
    sources: dict[str, frozenset[ColumnRef]]
    # outputs computed from something the walk could not pin to known columns: a whole-row reference
    # (`select t from t`), COLUMNS(...), `#3`, a star inside an expression, a column of unknown name
    unexplained: frozenset[str] = frozenset()


def query_lineage(query: str | exp.Expression, resolve: Resolver,
                  schema: Mapping[str, Iterable[str]] | None = None, partial: Iterable[str] = (),
                  opaque: Iterable[str] = ()) -> QueryLineage:
    """Lineage of one SELECT. ``schema`` maps asset keys (``layer.name``) to their columns; tables not in
    it keep their ``*`` unexpanded (reported as the column ``*``). ``partial`` names the assets whose
    columns in ``schema`` may be incomplete (declared in YAML, not read from the table). ``opaque`` names
    functions whose bodies the walk cannot see (the project's macros): what they return is unexplained, whether
    called as a scalar (``first_email()``) or read as a table (``from people()``)."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import OptimizeError
    from sqlglot.optimizer.qualify import qualify
    from sqlglot.optimizer.scope import build_scope

    tree = sqlglot.parse_one(query, read="duckdb") if isinstance(query, str) else query.copy()
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    nested: dict[str, Any] = {}
    read: set[str] = set()
    for table in tree.find_all(exp.Table):  # name every table by its asset key, so schemas line up
        if not isinstance(table.this, exp.Identifier) or (not table.db and table.name.lower() in ctes):
            continue
        key = resolve(table.db, table.name)
        if key is None:
            continue
        read.add(key)
        layer, name = key.split(".", 1)
        alias = table.alias_or_name
        table.set("db", exp.to_identifier(layer))
        table.set("this", exp.to_identifier(name))
        if not table.alias:
            table.set("alias", exp.TableAlias(this=exp.to_identifier(alias)))
        if schema is not None and key in schema:
            nested.setdefault(layer, {})[name] = {c.lower(): "unknown" for c in schema[key]}
    # when SQLGlot cannot qualify, the query is walked as written: columns it cannot place are left out
    with contextlib.suppress(OptimizeError, ValueError, KeyError):
        from sqlglot.schema import MappingSchema

        # names are lower-cased already: skipping SQLGlot's normalisation of the schema saves a fifth of the time
        mapping = MappingSchema(nested, dialect="duckdb", normalize=False) if nested else None
        tree = qualify(tree, schema=mapping, dialect="duckdb", validate_qualify_columns=False,
                       quote_identifiers=False, identify=False)
    root = build_scope(tree)
    if root is None:
        return QueryLineage((), {})
    incomplete = set(partial)
    known = {k: {c.lower() for c in v} for k, v in (schema or {}).items() if k not in incomplete}
    walker = _Walker(resolve, known, {o.lower() for o in opaque})
    outputs = walker.outputs(root)
    merged: dict[str, frozenset[ColumnRef]] = {}
    for name, refs in outputs:
        merged[name] = merged.get(name, frozenset()) | refs
    unexplained = {name for name, refs in outputs if UNKNOWN in refs or any(c == STAR for _, c in refs)}
    # an output the walk could not pin down may hold any column of what the query reads: say so (the whole
    # row, `*`), so that tags such as pii travel down to it
    whole = frozenset((k, STAR) for k in read)
    sources = {k: (v - {UNKNOWN}) | (whole if UNKNOWN in v else frozenset()) for k, v in merged.items()}
    return QueryLineage(tuple(merged), sources, frozenset(unexplained))


def _by_name(branches: list[list[tuple[str, frozenset[ColumnRef]]]]) -> list[tuple[str, frozenset[ColumnRef]]]:
    """``UNION [ALL] BY NAME`` (and DuckDB's other set operations BY NAME): the columns of every branch matched by
    name, not by position, in the order the engine gives them (the first branch's, then new names). A branch's
    unexpanded ``*`` (unknown schema) may hold any name: what it carries goes into every column."""
    merged: dict[str, frozenset[ColumnRef]] = {}
    starred: frozenset[ColumnRef] = frozenset()
    for branch in branches:
        for name, refs in branch:
            if name == STAR:
                starred |= refs
            merged[name] = merged.get(name, frozenset()) | refs
    return [(name, refs | starred) for name, refs in merged.items()]


class _Walker:
    def __init__(self, resolve: Resolver, known: Mapping[str, set[str]] | None = None,
                 opaque: frozenset[str] | set[str] = frozenset()) -> None:
        self.resolve = resolve
        self.known = known or {}
        self.opaque = opaque
        self.memo: dict[int, list[tuple[str, frozenset[ColumnRef]]]] = {}

    def outputs(self, scope: Scope) -> list[tuple[str, frozenset[ColumnRef]]]:
        found = self.memo.get(id(scope))
        if found is None:
            self.memo[id(scope)] = []  # a recursive CTE reads itself: stop there
            found = self._outputs(scope)
            self.memo[id(scope)] = found
        return found

    def _outputs(self, scope: Scope) -> list[tuple[str, frozenset[ColumnRef]]]:
        from sqlglot import exp

        if isinstance(scope.expression, exp.SetOperation):
            branches = [self.outputs(s) for s in scope.set_operation_scopes]
            if not branches:
                return []
            if scope.expression.args.get("by_name"):
                return _by_name(branches)
            result = []
            for i, (name, refs) in enumerate(branches[0]):
                for other in branches[1:]:
                    if i < len(other):
                        refs = refs | other[i][1]
                result.append((name, refs))
            return result
        select = scope.expression
        if not isinstance(select, exp.Select):
            return []
        subscopes = {id(s.expression): s for s in scope.subquery_scopes}
        result = []
        for projection in select.selects:
            if isinstance(projection, exp.Star) or (isinstance(projection, exp.Column)
                                                    and isinstance(projection.this, exp.Star)):
                result.extend(self._star(scope, projection))
                continue
            result.append((projection.alias_or_name.lower(), frozenset(self._refs(projection, scope, subscopes))))
        return result

    def _star(self, scope: Scope, star: exp.Expression) -> list[tuple[str, frozenset[ColumnRef]]]:
        """An unexpanded ``*`` (unknown schema): a derived source passes its columns on; a table gives ``*``."""
        from sqlglot import exp

        only = star.table if isinstance(star, exp.Column) else ""
        result: list[tuple[str, frozenset[ColumnRef]]] = []
        for alias, source in scope.sources.items():
            if only and alias != only:
                continue
            if isinstance(source, exp.Table):
                key = self._key(source)
                if key:
                    result.append((STAR, frozenset({(key, STAR)})))
                elif self._opaque_table(source):
                    result.append((STAR, frozenset({UNKNOWN})))
            else:
                result.extend(self.outputs(source))
        return result

    def _key(self, table: exp.Table) -> str | None:
        return self.resolve(table.db, table.name)

    def _opaque_table(self, table: exp.Table) -> bool:
        """A table function in FROM that is one of the opaque functions (a table macro)."""
        from sqlglot import exp

        return not isinstance(table.this, exp.Identifier) and _function_name(table.this) in self.opaque

    def _refs(self, node: Any, scope: Scope, subscopes: dict[int, Scope]) -> set[ColumnRef]:
        from sqlglot import exp

        refs: set[ColumnRef] = set()
        inner: list[exp.Expression] = []

        def prune(n: Any) -> bool:
            if n is not node and isinstance(n, exp.Select | exp.Subquery | exp.SetOperation):
                inner.append(n)
                return True
            return False

        named = {w.alias_or_name: w for w in scope.expression.args.get("windows") or []}
        for n in node.walk(prune=prune):
            if isinstance(n, exp.Column) and not isinstance(n.this, exp.Star):
                refs.update(self._column(n, scope))
            elif isinstance(n, exp.Func) and self.opaque and _function_name(n) in self.opaque:
                refs.add(UNKNOWN)  # a macro: its body may read any table and return any of its values
            elif isinstance(n, exp.Columns | exp.PositionalColumn | exp.TableColumn) or (
                    isinstance(n, exp.Star) and not isinstance(n.parent, exp.Count)) or (
                    isinstance(n, exp.Column) and n is not node):
                refs.add(UNKNOWN)
            elif isinstance(n, exp.Window) and named and isinstance(n.args.get("alias"), exp.Identifier):
                spec = named.get(n.args["alias"].name)  # OVER w: the named window's PARTITION BY / ORDER BY
                if spec is not None:
                    refs.update(self._refs(spec, scope, subscopes))
        for query in inner:  # a scalar subquery: its value comes from its own output columns
            target = query.this if isinstance(query, exp.Subquery) else query
            sub = subscopes.get(id(target)) or subscopes.get(id(query))
            if sub is not None:
                for _name, more in self.outputs(sub):
                    refs.update(more)
        return refs

    def _column(self, column: exp.Column, scope: Scope) -> set[ColumnRef]:
        from sqlglot import exp

        name = column.name.lower()
        source: Any = None
        if column.table:
            owner: Scope | None = scope
            while owner is not None and source is None:  # a correlated or lateral column names an outer source
                source = owner.sources.get(column.table)
                owner = owner.parent
        elif len(scope.sources) == 1:
            source = next(iter(scope.sources.values()))
        if source is None:
            return {UNKNOWN} if scope.sources else set()
        if isinstance(source, exp.Table):
            key = self._key(source)
            if key is None:
                return {UNKNOWN} if self._opaque_table(source) else set()
            if key in self.known and name not in self.known[key]:
                return {(key, name), UNKNOWN}  # not a column of the table: a whole-row reference, or unknown
            return {(key, name)}
        if not hasattr(source, "expression"):
            return set()
        if isinstance(source.expression, exp.Unnest | exp.Lateral):  # unnest(list): from the list's columns
            return {r for c in source.expression.find_all(exp.Column) for r in self._column(c, scope)
                    if c is not column}
        outputs = self.outputs(source)
        for out, refs in outputs:
            if out == name:
                return set(refs)
        starred = {(key, name) for (key, col) in (r for o, rs in outputs if o == STAR for r in rs) if col == STAR}
        return starred or {r for _, rs in outputs for r in rs} | {UNKNOWN}  # e.g. a whole-row reference


def _function_name(node: Any) -> str:
    from sqlglot import exp

    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    if isinstance(node, exp.Func):
        return str(node.sql_name()).lower()
    return ""


# -- the project's column graph ----------------------------------------------------------------------------------


@dataclass
class LineageNode:
    """A column and the columns one step further up (or down), recursively: a lineage tree."""

    asset: str
    column: str
    children: list[LineageNode] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"asset": self.asset, "column": self.column, "children": [c.to_dict() for c in self.children]}


@dataclass
class ColumnGraph:
    """Every asset's columns and, for model columns, the upstream columns they are computed from."""

    columns: dict[str, tuple[str, ...]]
    sources: dict[ColumnRef, frozenset[ColumnRef]]
    readers: dict[ColumnRef, set[ColumnRef]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.readers = {}
        for ref, ups in self.sources.items():
            for up in ups:
                self.readers.setdefault(up, set()).add(ref)

    def upstream(self, ref: ColumnRef) -> LineageNode:
        return self._tree(ref, lambda r: self.sources.get(r, frozenset()), set())

    def downstream(self, ref: ColumnRef) -> LineageNode:
        return self._tree(ref, lambda r: self.readers.get(r, set()) | self.readers.get((r[0], STAR), set()), set())

    def _tree(self, ref: ColumnRef, step: Callable[[ColumnRef], Iterable[ColumnRef]],
              path: set[ColumnRef]) -> LineageNode:
        node = LineageNode(ref[0], ref[1])
        if ref in path:
            return node
        for nxt in sorted(step(ref)):
            node.children.append(self._tree(nxt, step, path | {ref}))
        return node

    def reach(self, ref: ColumnRef, down: bool = True) -> set[ColumnRef]:
        """Every column reachable from ``ref`` downstream (or upstream), not including it."""
        return reach(ref, self.readers if down else self.sources)


def asset_resolver(keys: Iterable[str] | Mapping[str, object]) -> Resolver:
    """Resolve ``schema.table`` (or an unambiguous bare ``table``) to an asset key: the graph's own resolver
    (:class:`kiban.assetkey.KeyResolver`). Given
    ``Graph.readable`` (a mapping), a derived lake view resolves to the table it is made from: its columns,
    PII tags and lineage are the table's."""
    return KeyResolver(keys)


def build_column_graph(graph: Any, known: Mapping[str, Iterable[str]] | None = None,
                       cache_path: Path | None = None) -> ColumnGraph:
    """Column lineage of every model of ``graph`` (a :class:`kiban.graph.Graph`), in dependency order.

    ``known`` gives the columns of published tables (from the warehouse); lake tables take those or
    their declared columns. A model's columns are what its SQL computes, so ``SELECT *`` over a model
    that has not been built yet still expands.
    """
    resolve = asset_resolver(getattr(graph, "readable", graph.assets))  # lake.x_latest is read as lake.x
    known = dict(known or {})
    cache = LineageCache(cache_path)
    columns: dict[str, tuple[str, ...]] = {}
    sources: dict[ColumnRef, frozenset[ColumnRef]] = {}
    partial: set[str] = set()  # columns only as declared in YAML: perhaps not all of them
    for key in graph.order:
        asset = graph.assets[key]
        if asset.sql is None:
            declared = tuple(c.name.lower() for c in asset.config.columns)
            columns[key] = tuple(c.lower() for c in known.get(key, ())) or declared
            if key not in known:
                partial.add(key)
            continue
        schema = {up: columns[up] for up in graph.deps.get(key, ()) if columns.get(up)}
        maybe = sorted(partial.intersection(schema))
        opaque = list(getattr(graph, "macros", {}).get(key, ()))
        context = {**schema, "?partial": maybe, **({"?opaque": opaque} if opaque else {})}
        hit = cache.get(asset.sql, context)
        lineage = QueryLineage(*hit) if hit is not None else None
        if lineage is None:
            try:
                lineage = query_lineage(asset.sql, resolve, schema, maybe, opaque)
            except Exception:  # lineage is documentation: a query SQLGlot cannot follow loses its lineage only
                log.warning("lineage: cannot follow the SQL of %s (%s); its columns have no lineage", key,
                            asset.path, exc_info=True)
                lineage = QueryLineage((), {})
            cache.put(asset.sql, context, lineage)
        names = lineage.columns
        if STAR in names and key in known:
            names = tuple(c.lower() for c in known[key])
        columns[key] = names
        # an unexplained column may hold any column of anything the model reads, as DuckDB's parser found it
        # (the graph's edges: the tables a macro's body reads included), not only the tables SQLGlot saw named
        whole = frozenset((d, STAR) for d in graph.deps.get(key, ()))
        for name, refs in lineage.sources.items():
            sources[(key, name)] = refs | whole if name in lineage.unexplained else refs
    cache.save()
    return ColumnGraph(columns, sources)
