"""The checks of one asset: named, placed in their sidecar, their SQL parsed and validated.

Building a suite is where user SQL (``expression`` and ``sql`` checks) is parsed with SQLGlot, so a
syntax error, a statement where a condition belongs, or an aggregate in a per-row condition is reported
with the sidecar's file:line before anything runs. What was validated once is cached (``.kiban/cache/
checks.json``), so SQLGlot is imported only when such SQL is new or changed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kiban.assetkey import KeyResolver
from kiban.cachefile import read_entries, write_entries
from kiban.checks.quoting import relation_name, split_relation
from kiban.checks.spec import CheckSpec, Expression, Relationships, Sql, columns_of, declared
from kiban.errors import Location, ProjectError, ProjectErrors
from kiban.project import Asset, Project
from kiban.project.yamlfile import load_yaml

THIS = "this"  # in a `sql` check, the table being checked (also reachable by its own name)
CACHE_VERSION = 1


@dataclass(frozen=True)
class Check:
    """One check of one asset, ready to compile."""

    asset: str
    name: str
    spec: CheckSpec
    path: tuple[str | int, ...]  # YAML path of its list item in the sidecar
    source: Path | None  # the sidecar
    target: str | None = None  # relationships: the referenced asset's key
    sql: str | None = None  # expression: the condition; sql: the query, `this` being the asset's own relation
    sql_columns: tuple[str, ...] = ()  # expression: the (unqualified) columns it names

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def severity(self) -> str:
        return self.spec.severity

    @property
    def columns(self) -> tuple[str, ...]:
        return columns_of(self.spec)

    def location(self) -> Location | None:
        """Where the check is declared (the sidecar is read again: this is only for error messages)."""
        if self.source is None:
            return None
        try:
            return load_yaml(self.source).location(self.path)
        except ProjectError:
            return Location(self.source)

    def error(self, message: str, hint: str | None = None) -> ProjectError:
        """A problem with this check's declaration, naming its file:line."""
        return ProjectError(f"check {self.name} of {self.asset}: {message}", self.location(), hint)


@dataclass
class Suite:
    asset: Asset
    checks: list[Check] = field(default_factory=list)
    pii: frozenset[str] = frozenset()  # columns tagged pii: masked in stored samples

    def __bool__(self) -> bool:
        return bool(self.checks)


def suite_of(asset: Asset, assets: Iterable[str] = (), cache: ParseCache | None = None) -> Suite:
    """The checks declared for ``asset``; ``assets`` (all keys of the project) resolve relationships."""
    cfg = asset.config
    suite = Suite(asset, pii=frozenset(c.name.lower() for c in cfg.columns if "pii" in c.tags))
    if not cfg.has_checks:
        return suite
    keys = KeyResolver(assets)
    items, _ = declared(cfg.columns, cfg.checks)  # naming problems were reported when the project loaded
    errors: list[ProjectError] = []
    for item in items:
        check = Check(asset.key, item.name, item.spec, (*asset.config_at, *item.path), asset.config_path)
        try:
            if isinstance(item.spec, Relationships):
                target = item.spec.target
                check = replace(check, target=keys.key(target) or target)
            elif isinstance(item.spec, Expression | Sql):
                text, columns = (cache or ParseCache(None)).parse(check, relation_name(asset.key))
                check = replace(check, sql=text, sql_columns=columns)
        except ProjectError as exc:
            errors.append(exc)
            continue
        suite.checks.append(check)
    if errors:
        raise errors[0] if len(errors) == 1 else ProjectErrors(errors)
    return suite


def suites_of(project: Project, keys: Iterable[str] | None = None) -> dict[str, Suite]:
    """Suites of the chosen assets (default: all) that have checks; every declaration problem at once."""
    found: dict[str, Suite] = {}
    errors: list[ProjectError] = []
    cache = ParseCache(project.state_dir / "cache" / "checks.json")
    for key in keys if keys is not None else project.assets:
        asset = project.assets[key]
        if not asset.config.has_checks:
            continue
        try:
            found[key] = suite_of(asset, project.assets, cache)
        except (ProjectError, ProjectErrors) as exc:
            errors.extend(exc.errors)
    cache.save()
    if errors:
        raise errors[0] if len(errors) == 1 else ProjectErrors(errors)
    return found


class ParseCache:
    """Validated check SQL, keyed by the SHA-256 of (kind, relation, text): a project whose check SQL did not
    change is loaded without importing SQLGlot (as models are, see ``graph.sqlrefs``). Only a cache."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, Any] = read_entries(path, CACHE_VERSION)
        self.used: set[str] = set()
        self.dirty = False

    def parse(self, check: Check, relation: str) -> tuple[str, tuple[str, ...]]:
        spec = check.spec
        assert isinstance(spec, Expression | Sql)
        key = hashlib.sha256(f"{spec.kind}\0{relation}\0{spec.sql}".encode()).hexdigest()
        self.used.add(key)
        hit = self.entries.get(key)
        if hit is not None:
            return hit["sql"], tuple(hit["columns"])
        text, columns = render(check, relation)
        self.entries[key] = {"sql": text, "columns": list(columns)}
        self.dirty = True
        return text, columns

    def save(self) -> None:
        stale = set(self.entries) - self.used
        if self.path is None or not (self.dirty or stale):
            return
        self.entries = {k: v for k, v in self.entries.items() if k in self.used}
        write_entries(self.path, CACHE_VERSION, self.entries)


def render(check: Check, relation: str) -> tuple[str, tuple[str, ...]]:
    """Parse a check's SQL and render it back: the condition of an ``expression`` (and the columns it names),
    or the query of a ``sql`` check with the table ``this`` standing for ``relation``."""
    from sqlglot import exp

    spec = check.spec
    assert isinstance(spec, Expression | Sql)
    tree = _parse(check, spec)
    if isinstance(spec, Expression):
        columns = tuple(dict.fromkeys(c.name for c in tree.find_all(exp.Column) if not c.table))
        return tree.sql(dialect="duckdb"), columns
    schema, name = split_relation(relation)
    target = exp.Table(this=exp.to_identifier(name, quoted=True),
                       db=exp.to_identifier(schema, quoted=True) if schema else None)

    def swap(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Table) and not node.db and node.name.lower() == THIS:
            replaced = target.copy()
            replaced.set("alias", node.args.get("alias") or exp.TableAlias(this=exp.to_identifier(THIS)))
            return replaced
        return node

    return tree.transform(swap).sql(dialect="duckdb"), ()


def _parse(check: Check, spec: Expression | Sql) -> Any:
    """Parse a check's SQL: a condition for ``expression``, one query for ``sql``."""
    import sqlglot
    from sqlglot import exp

    text = spec.sql.strip().rstrip(";").strip()
    try:
        statements = [s for s in sqlglot.parse(text, read="duckdb") if s is not None]
    except (sqlglot.ParseError, sqlglot.errors.TokenError) as exc:
        raise check.error(f"invalid SQL in {spec.kind}: {_first_error(exc)}") from None
    if len(statements) != 1:
        raise check.error(f"{spec.kind} holds {len(statements)} statements; it takes one "
                          + ("condition" if isinstance(spec, Expression) else "query"))
    tree = statements[0]
    if isinstance(spec, Expression):
        if isinstance(tree, exp.Query) or not isinstance(tree, exp.Condition):
            raise check.error("an expression is a condition such as `quantity > 0`, not a statement",
                              "a query that returns the failing rows is a `sql` check")
        if tree.find(exp.AggFunc, exp.Window):
            raise check.error("an expression is tested on every row, so it cannot use aggregates or window "
                              "functions", "use a `sql` check that returns the failing rows")
        if tree.find(exp.Query):
            raise check.error("an expression cannot hold a query", "use a `sql` check that returns the failing rows")
    elif not isinstance(tree, exp.Query):
        raise check.error(f"a sql check is a query that returns the failing rows, not {tree.key.upper()}")
    return tree


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    first = errors[0] if errors else {}
    description = str(first.get("description") or exc).split("\n")[0].split(". Line ")[0]
    description = re.sub(r"<class '[\w.]+\.(\w+)'>", r"\1", description)
    near = first.get("highlight")
    return description + (f" near '{near}'" if near else "")
