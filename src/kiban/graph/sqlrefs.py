"""What a model's SQL reads: DuckDB's parser decides (``graph.duckrefs``), SQLGlot is asked where it can differ.

DuckDB runs the model, so the tables its parser sees are the model's dependencies. The walk over DuckDB's
parse tree reports every table node in it; the one decision it takes itself is scoping — a name it reads as a
CTE is no table. Where that decision matters (a CTE named like one of the project's tables), where DuckDB's
tree has a node kind the walk does not know, or where DuckDB cannot read the SQL as one SELECT, SQLGlot parses
it too: when it sees a table DuckDB does not, kiban cannot be sure what the model reads and refuses it with the
place. (A table only DuckDB sees — PIVOT, ``query_table`` — is still a dependency: the engine's reading wins.)
Everything else is DuckDB's alone, so a cold load of a plain project never imports SQLGlot (≈ 0.15 s, and
≈ 0.6 ms a model). SQLGlot still parses every model for column lineage, PII tags and the other engines, where
those are needed.

A model's text is identified by DuckDB's own rendering of its parse tree (``json_deserialize_sql``): comments,
layout and the case of keywords do not change it.

Parsing is the costly part of loading a project, so results are cached on disk keyed by the SQL text AND
the versions of both parsers (a parser upgrade may read the same text differently): a second load of an
unchanged project imports neither parser.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection
from dataclasses import dataclass
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from kiban.cachefile import read_entries, write_entries
from kiban.errors import Location, ProjectError
from kiban.graph.duckrefs import DuckRef, Unserializable, duckdb_reading, duckdb_refs, line_col, normalized, rendered

log = logging.getLogger(__name__)

CACHE_VERSION = 3  # 3: DuckDB's rendering identifies the text; SQLGlot asked only where it can differ


@cache
def parser_versions() -> str:
    """The parsers a cached result depends on (read from the installed packages' metadata, no import)."""
    found = []
    for package in ("duckdb", "sqlglot"):
        try:
            found.append(f"{package}={version(package)}")
        except PackageNotFoundError:  # pragma: no cover - both are dependencies
            found.append(f"{package}=?")
    return ",".join(found)


def cache_key(sql: str) -> str:
    """What a parse result depends on: the SQL text, the way it is read (CACHE_VERSION) and both parsers."""
    return hashlib.sha256(f"{CACHE_VERSION}\0{parser_versions()}\0{sql}".encode()).hexdigest()


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
    shadowed: tuple[str, ...] = ()  # names DuckDB's walk read as CTEs (lower case), where a table could be meant
    agreed: bool = True  # SQLGlot's reading was compared (False: DuckDB's alone, as nothing could differ)


def _line_col(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, column


def parse_sql(sql: str, path: Path, agree: bool = False) -> ParsedSql:
    """Parse one model's SQL; a syntax error or a non-query becomes a :class:`ProjectError`.

    DuckDB's reading alone when it is one SELECT of node kinds the walk knows (``agreed`` False: the caller asks
    again with ``agree`` when a name read as a CTE is also a table's); else, or with ``agree``, SQLGlot's too."""
    if not agree:
        try:
            reading = duckdb_reading(sql, path)
        except (Unserializable, ProjectError):  # SQLGlot's parse decides how to say it (usually more clearly)
            reading = None
        if reading is not None and not reading.unknown:
            return ParsedSql(_placed(sql, reading.refs), _text_hash(sql, None), tuple(sorted(reading.shadowed)),
                             agreed=False)
    return _parse_agreed(sql, path)


def _placed(sql: str, duck: list[DuckRef]) -> tuple[TableRef, ...]:
    """DuckDB's tables, each placed at its own name where the text first names it (the walk goes in tree
    order, not text order)."""
    refs: dict[tuple[str, str], TableRef] = {}
    for ref in sorted(duck, key=lambda r: r.offset if r.offset is not None else 2**63):
        place = line_col(sql, _name_at(sql, ref)) if ref.offset is not None else (1, 1)
        refs.setdefault((ref.schema.lower(), ref.name.lower()), TableRef(ref.schema, ref.name, *place))
    return tuple(refs.values())


def _name_at(sql: str, ref: DuckRef) -> int:
    """The byte offset of the table's own name in a reference DuckDB places at its start (``warehouse.ordrs``
    is placed at ``ordrs``, where the mistake usually is, as SQLGlot places it)."""
    assert ref.offset is not None
    data = sql.encode()
    at = ref.offset
    for _ in range(bool(ref.catalog) + bool(ref.schema)):  # step over each qualifier and its dot
        if data[at:at + 1] == b'"':
            at = data.find(b'"', at + 1)
            while at != -1 and data[at + 1:at + 2] == b'"':  # a doubled quote inside the name
                at = data.find(b'"', at + 2)
            if at == -1:
                return ref.offset
        dot = data.find(b".", at)
        if dot == -1:
            return ref.offset
        at = dot + 1
        while data[at:at + 1].isspace():
            at += 1
    return at


def _text_hash(sql: str, fallback: Any) -> str:
    """The hash identifying the model's text: of DuckDB's rendering; of ``fallback`` (SQLGlot's tree, rendered
    the same way each time) or DuckDB's parse tree when DuckDB cannot render it."""
    text = rendered(sql)
    if text is None:
        # copy=False: the generator may change the tree while it writes it, and nothing reads the tree after this
        # (the default deep-copies it first: a third of a cold parse)
        text = fallback.sql(dialect="duckdb", comments=False, copy=False) if fallback is not None else normalized(sql)
    return hashlib.sha256(text.encode()).hexdigest()


def _parse_agreed(sql: str, path: Path) -> ParsedSql:
    """Both parsers: DuckDB's tables, refused where SQLGlot reads one DuckDB does not."""
    import sqlglot
    from sqlglot import exp

    try:
        statements = [s for s in sqlglot.parse(sql, read="duckdb") if s is not None]
    except sqlglot.ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        message = str(first.get("description") or exc).split(". Line")[0]
        message = message.replace("<Token token_type: TokenType.", "<").split(", line:")[0]
        error = ProjectError(f"SQL syntax error: {message}", Location(path, first.get("line"), first.get("col")))
        return _duckdb_only(sql, path, error)
    except sqlglot.errors.TokenError as exc:
        return _duckdb_only(sql, path, ProjectError(f"SQL syntax error: {exc}", Location(path)))
    if len(statements) != 1:
        raise ProjectError(f"a model is exactly one SELECT statement; this file has {len(statements)}",
                           Location(path, 1))
    tree = statements[0]
    if not isinstance(tree, (exp.Query, exp.Pivot)):  # DuckDB's PIVOT/UNPIVOT statements are queries too
        raise ProjectError(
            f"a model is one SELECT statement, not {tree.key.upper()}; kiban creates the table itself",
            Location(path, 1),
        )
    glot = _sqlglot_refs(tree, sql)
    refs = _agreed_refs(sql, path, tree, glot)
    return ParsedSql(refs, _text_hash(sql, tree))


def _duckdb_only(sql: str, path: Path, error: ProjectError) -> ParsedSql:
    """SQL that DuckDB parses and SQLGlot does not (``pivot … group by … order by …``): DuckDB, which runs
    it, decides what it reads; its parse tree without positions is the normalised text. Raises ``error``
    (SQLGlot's message, usually the clearer) when DuckDB cannot parse it either."""

    try:
        duck = duckdb_refs(sql, path)
    except ProjectError:
        raise error from None
    except Unserializable:  # a PIVOT without IN that SQLGlot cannot read: nobody can say what it reads
        raise ProjectError(f"{error.message}; DuckDB reads this PIVOT (it has no IN list) as several "
                           "statements, so neither parser can tell which tables this model reads",
                           error.location, "give the PIVOT an IN list (on payment_method in ('card', 'cash')) or "
                           "wrap it: select * from (pivot …) order by …") from None
    return ParsedSql(_placed(sql, duck), _text_hash(sql, None))


def _sqlglot_refs(tree: Any, sql: str) -> dict[tuple[str, str], TableRef]:
    """The tables SQLGlot sees read (CTEs resolved by its scope walk), with where they are written."""
    from sqlglot import exp
    from sqlglot.optimizer.scope import traverse_scope

    refs: dict[tuple[str, str], TableRef] = {}
    try:
        if isinstance(tree, exp.Pivot):  # SQLGlot's scopes do not walk a bare PIVOT statement
            raise ValueError("no scope")
        tables = [src for scope in traverse_scope(tree) for src in scope.sources.values()
                  if isinstance(src, exp.Table)]
    except Exception:  # no fallback lost: read table by table instead
        log.debug("SQLGlot could not scope a query; its tables are read one by one", exc_info=True)
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
    return refs


def _with_pivot_lists(tree: Any) -> str:
    """The SQL with every PIVOT's ``ON`` given an ``IN`` list, so DuckDB parses it as ONE statement.

    A PIVOT without ``IN`` makes DuckDB's parser add a statement that lists the values; the tables read do
    not change by naming the values, so the rewritten text has exactly the original's table references."""
    from sqlglot import exp

    copy = tree.copy()
    for pivot in copy.find_all(exp.Pivot):
        if pivot.args.get("unpivot"):
            continue
        pivot.set("expressions", [e if isinstance(e, exp.In) else exp.In(this=e, expressions=[exp.Null()])
                                  for e in pivot.expressions])
    return str(copy.sql(dialect="duckdb"))


def _agreed_refs(sql: str, path: Path, tree: Any, glot: dict[tuple[str, str], TableRef]) -> tuple[TableRef, ...]:
    """DuckDB's references, placed in the file; an error where SQLGlot reads a table DuckDB does not."""
    from sqlglot import exp


    written: dict[tuple[str, str], TableRef] = {}  # where each name is first written, for placing what only DuckDB sees
    for table in tree.find_all(exp.Table):
        start = table.this.meta.get("start") if isinstance(table.this, exp.Identifier) else None
        if isinstance(start, int):
            written.setdefault((table.db.lower(), table.name.lower()),
                               TableRef(table.db, table.name, *_line_col(sql, start)))
    text = sql
    try:
        duck = duckdb_refs(sql, path)
    except Unserializable:
        text = _with_pivot_lists(tree)
        try:
            duck = duckdb_refs(text, path)
        except Unserializable as exc:
            raise ProjectError(f"DuckDB reads this model as several statements ({exc})", Location(path, 1),
                               "a model is one SELECT; give every PIVOT an IN list") from None
    refs: dict[tuple[str, str], TableRef] = {}
    for ref in duck:
        # a catalog (kiban.warehouse.orders) can only be the warehouse itself: nothing else is attached, and
        # DuckDB fails loudly on any other
        key = (ref.schema.lower(), ref.name.lower())
        if key in refs:
            continue
        placed = glot.get(key) or written.get(key)
        if placed is not None:
            refs[key] = placed
        elif ref.offset is not None and text is sql:
            refs[key] = TableRef(ref.schema, ref.name, *line_col(sql, ref.offset))
        else:
            refs[key] = TableRef(ref.schema, ref.name, 1, 1)
    for key, seen in glot.items():
        if key not in refs:
            name = f"{seen.schema}.{seen.name}" if seen.schema else seen.name
            raise ProjectError(
                f"SQLGlot reads the table {name} here but DuckDB's parser does not: kiban cannot be sure "
                "what this model reads", Location(path, seen.line, seen.column),
                "write it more plainly (a CTE with another name than any table, the table in FROM)")
    return tuple(refs.values())


class SqlCache:
    """Parse results keyed by the SQL text and the parsers' versions (``cache_key``), as one JSON file."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, Any] = read_entries(path, CACHE_VERSION)
        self.dirty = False

    def parse(self, sql: str, path: Path, tables: Collection[str] | None = None) -> ParsedSql:
        """The parse of ``sql``; SQLGlot's agreement is asked for when a name DuckDB's walk read as a CTE is one of
        ``tables`` (the project's table names, lower case; None: any name)."""
        key = cache_key(sql)
        hit = self.entries.get(key)
        parsed = ParsedSql(tuple(TableRef(*r) for r in hit["refs"]), hit["norm"], tuple(hit.get("shadowed", ())),
                           bool(hit.get("agreed", True))) if hit is not None else parse_sql(sql, path)
        if not parsed.agreed and parsed.shadowed and (tables is None or set(parsed.shadowed) & set(tables)):
            parsed = parse_sql(sql, path, agree=True)
        elif hit is not None:
            return parsed
        self.entries[key] = {"refs": [[r.schema, r.name, r.line, r.column] for r in parsed.refs],
                             "norm": parsed.normalized_hash, "shadowed": list(parsed.shadowed),
                             "agreed": parsed.agreed}
        self.dirty = True
        return parsed

    def save(self, live_keys: set[str] | None = None) -> None:
        if not (self.path and self.dirty):
            return
        if live_keys is not None:
            self.entries = {k: v for k, v in self.entries.items() if k in live_keys}
        write_entries(self.path, CACHE_VERSION, self.entries)
        self.dirty = False
