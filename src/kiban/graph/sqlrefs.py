"""What a model's SQL reads, found by parsing it with SQLGlot (never by pattern matching).

Parsing is the costly part of loading a project, so results are cached on disk keyed by the
hash of the SQL text: a second load of an unchanged project does not import SQLGlot at all.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiban.cachefile import library_version, read_entries, write_entries
from kiban.errors import Location, ProjectError

CACHE_VERSION = f"1+sqlglot-{library_version('sqlglot')}"  # its parse feeds fingerprints: another release parses again


@dataclass(frozen=True)
class TableRef:
    """A table the SQL reads: schema ('' when unqualified), name, and where it is written."""

    schema: str
    name: str
    line: int
    column: int


@dataclass(frozen=True)
class ParsedSql:
    refs: tuple[TableRef, ...]
    normalized_hash: str  # hash of the SQL with comments and layout removed


def _line_col(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, column


def parse_sql(sql: str, path: Path) -> ParsedSql:
    """Parse one model's SQL; a syntax error or a non-query becomes a :class:`ProjectError`."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.optimizer.scope import traverse_scope

    try:
        statements = [s for s in sqlglot.parse(sql, read="duckdb") if s is not None]
    except sqlglot.ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        message = str(first.get("description") or exc).split(". Line")[0]
        message = message.replace("<Token token_type: TokenType.", "<").split(", line:")[0]
        raise ProjectError(f"SQL syntax error: {message}",
                           Location(path, first.get("line"), first.get("col"))) from None
    except sqlglot.errors.TokenError as exc:
        raise ProjectError(f"SQL syntax error: {exc}", Location(path)) from None
    if len(statements) != 1:
        raise ProjectError(f"a model is exactly one SELECT statement; this file has {len(statements)}",
                           Location(path, 1))
    tree = statements[0]
    if not isinstance(tree, exp.Query):
        raise ProjectError(
            f"a model is one SELECT statement, not {tree.key.upper()}; kiban creates the table itself",
            Location(path, 1),
        )
    refs: dict[tuple[str, str], TableRef] = {}
    try:
        tables = [src for scope in traverse_scope(tree) for src in scope.sources.values()
                  if isinstance(src, exp.Table)]
    except Exception:
        ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
        tables = [t for t in tree.find_all(exp.Table) if t.db or t.name not in ctes]
    for table in tables:
        ident = table.this
        if not isinstance(ident, exp.Identifier):
            continue  # table functions such as read_parquet(...)
        start = ident.meta.get("start")
        line, column = _line_col(sql, start) if isinstance(start, int) else (1, 1)
        ref = TableRef(table.db, table.name, line, column)
        refs.setdefault((ref.schema.lower(), ref.name.lower()), ref)
    normalized = tree.sql(dialect="duckdb", comments=False)
    return ParsedSql(tuple(refs.values()), hashlib.sha256(normalized.encode()).hexdigest())


class SqlCache:
    """Parse results keyed by the SHA-256 of the SQL text, persisted as one JSON file."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, Any] = read_entries(path, CACHE_VERSION)
        self.dirty = False

    def parse(self, sql: str, path: Path) -> ParsedSql:
        key = hashlib.sha256(sql.encode()).hexdigest()
        hit = self.entries.get(key)
        if hit is not None:
            return ParsedSql(tuple(TableRef(*r) for r in hit["refs"]), hit["norm"])
        parsed = parse_sql(sql, path)
        self.entries[key] = {"refs": [[r.schema, r.name, r.line, r.column] for r in parsed.refs],
                             "norm": parsed.normalized_hash}
        self.dirty = True
        return parsed

    def save(self, live_keys: set[str] | None = None) -> None:
        if not (self.path and self.dirty):
            return
        if live_keys is not None:
            self.entries = {k: v for k, v in self.entries.items() if k in live_keys}
        write_entries(self.path, CACHE_VERSION, self.entries)
        self.dirty = False
