"""Whether a console query may run: exactly one SELECT that reads the project's assets and nothing else.

Two parsers judge every query. DuckDB's own parser counts the statements and names their type (so a
comment cannot hide a second statement from it); SQLGlot's tree is then walked for what a SELECT may
still do: read files or URLs (``read_csv``, ``'x.parquet'``, ``glob``), call table functions, reach into
attached databases or the system catalog. Every table must be a known asset; that list is also the
usage record of the query. The console runs what passes on a read-only, sandboxed connection as well,
so a gap here is not a hole.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kiban.errors import KibanError, did_you_mean

if TYPE_CHECKING:
    from sqlglot import exp

# Table functions that only compute (no I/O): everything else in FROM is refused.
SAFE_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest"})
# Scalar functions that read files, the environment or the engine's settings.
BLOCKED_FUNCTIONS = frozenset({
    "read_text", "read_blob", "read_csv", "read_csv_auto", "read_json", "read_json_auto", "read_ndjson",
    "read_json_objects", "read_parquet", "parquet_scan", "parquet_metadata", "parquet_schema", "glob",
    "sniff_csv", "query", "query_table", "getenv", "current_setting", "iceberg_scan", "delta_scan",
    "sqlite_scan", "postgres_scan", "postgres_query", "mysql_scan", "mysql_query", "read_xlsx", "load_aws_credentials",
    "pg_read_file", "pg_read_binary_file", "pg_ls_dir", "lo_import", "lo_export", "dblink", "set_config",
})
BLOCKED_PREFIXES = ("read_", "duckdb_", "pragma_", "pg_", "st_read")
BLOCKED_SUFFIXES = ("_scan", "_query", "_attach")
_FILE_LIKE = re.compile(r"[/\\:*?]|\.(csv|tsv|txt|parquet|json|jsonl|ndjson|xlsx|gz|zst|db|duckdb|sqlite)$", re.I)
STATEMENT_WORDS = {  # DuckDB's statement types, in words a person reads
    "INSERT": "writes rows (INSERT)", "UPDATE": "changes rows (UPDATE)", "DELETE": "deletes rows (DELETE)",
    "CREATE": "creates an object (CREATE)", "DROP": "drops an object (DROP)", "ALTER": "alters an object (ALTER)",
    "COPY": "copies data to or from files (COPY)", "ATTACH": "attaches a database (ATTACH)",
    "DETACH": "detaches a database (DETACH)", "LOAD": "installs or loads an extension (INSTALL/LOAD)",
    "SET": "changes a setting (SET/RESET/USE)", "PRAGMA": "runs a PRAGMA", "EXPORT": "exports the database",
    "CALL": "calls a procedure (CALL/CHECKPOINT)", "TRANSACTION": "controls transactions",
    "VACUUM": "vacuums the database", "PREPARE": "prepares a statement", "EXECUTE": "executes a prepared statement",
    "EXPLAIN": "is an EXPLAIN", "UPDATE_EXTENSIONS": "updates extensions",
}


class QueryRefused(KibanError):
    """A console query that is not a single read of the project's assets."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(f"query refused: {message}",
                         hint or "the console runs one SELECT over the project's assets (lake, warehouse, mart)")


@dataclass(frozen=True)
class CheckedQuery:
    """A query that passed: its text, its SQLGlot tree, and the assets it reads (sorted keys)."""

    sql: str
    tree: exp.Query
    assets: tuple[str, ...]


_parser_lock = threading.Lock()
_parser: Any = None


def _duckdb_statement_types(sql: str) -> list[str]:
    global _parser
    import duckdb

    with _parser_lock:
        if _parser is None:
            _parser = duckdb.connect(":memory:")
        try:
            return [str(s.type).rsplit(".", 1)[-1] for s in _parser.extract_statements(sql)]
        except duckdb.Error as exc:
            raise QueryRefused(f"not valid SQL: {str(exc).splitlines()[0]}",
                               "check the SQL; one SELECT statement is expected") from None


def resolve_asset(schema: str, name: str, assets: Mapping[str, object],
                  by_name: Mapping[str, list[str]]) -> str | None:
    """An asset key for ``schema.name`` (or a unique unqualified ``name``), else None."""
    schema, name = schema.lower(), name.lower()
    if schema:
        key = f"{schema}.{name}"
        return key if key in assets else None
    keys = by_name.get(name, [])
    return keys[0] if len(keys) == 1 else None


def check_query(sql: str, assets: Mapping[str, object], *, engine: str = "duckdb") -> CheckedQuery:
    """Refuse (:class:`QueryRefused`, with the reason) anything but one SELECT over ``assets``."""
    import sqlglot
    from sqlglot import exp

    if not sql.strip():
        raise QueryRefused("the query is empty")
    if engine == "duckdb":
        kinds = _duckdb_statement_types(sql)
        if len(kinds) != 1:
            raise QueryRefused(f"{len(kinds)} statements; the console runs exactly one" if kinds
                               else "the query has no statement (only comments?)")
        if kinds[0] != "SELECT":
            raise QueryRefused(f"the statement {STATEMENT_WORDS.get(kinds[0], kinds[0])}; "
                               "the console only reads")
    dialect = "postgres" if engine == "postgres" else "duckdb"
    try:
        trees = [t for t in sqlglot.parse(sql, read=dialect) if t is not None]
    except (sqlglot.ParseError, sqlglot.errors.TokenError) as exc:
        raise QueryRefused(f"not valid SQL: {str(exc).splitlines()[0][:200]}") from None
    if len(trees) != 1:
        raise QueryRefused(f"{len(trees)} statements; the console runs exactly one")
    tree = trees[0]
    if not isinstance(tree, exp.Query):
        raise QueryRefused(f"the statement is {tree.key.upper()}, not a SELECT; the console only reads")
    by_name: dict[str, list[str]] = {}
    for key in assets:
        by_name.setdefault(key.split(".", 1)[1], []).append(key)
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    read: set[str] = set()
    for node in tree.walk():
        if isinstance(node, exp.Into | exp.Command | exp.Pragma | exp.Set | exp.Copy | exp.DDL | exp.DML):
            raise QueryRefused(f"the query contains {node.key.upper()}; the console only reads")
        if isinstance(node, exp.Table):
            read.update(_table(node, ctes, assets, by_name))
        elif isinstance(node, exp.Func):
            name = _function_name(node)
            if name in BLOCKED_FUNCTIONS or name.startswith(BLOCKED_PREFIXES) or name.endswith(BLOCKED_SUFFIXES):
                raise QueryRefused(f"{name}() reads files, other databases or settings",
                                   "the console reads the project's assets only; ask for a lake table instead")
    return CheckedQuery(sql, tree, tuple(sorted(read)))


def _function_name(node: exp.Func) -> str:
    from sqlglot import exp

    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    return node.sql_name().lower()


def _table(node: exp.Table, ctes: set[str], assets: Mapping[str, object],
           by_name: Mapping[str, list[str]]) -> list[str]:
    from sqlglot import exp

    target = node.this
    if not isinstance(target, exp.Identifier):  # a table function: FROM read_csv(...), FROM glob(...)
        name = _function_name(target) if isinstance(target, exp.Func) else target.sql()
        if name in SAFE_TABLE_FUNCTIONS:
            return []
        raise QueryRefused(f"the table function {name}() is not allowed: it may read files, URLs or settings",
                           "the console reads the project's assets only")
    name = str(target.this)
    if node.catalog:
        raise QueryRefused(f"{node.sql()} names another database ({node.catalog}); "
                           "the console reads the project's assets only")
    if target.quoted and _FILE_LIKE.search(name):
        raise QueryRefused(f"'{name}' reads a file or URL", "the console reads the project's assets only")
    if not node.db and name.lower() in ctes:
        return []
    key = resolve_asset(node.db, name, assets, by_name)
    if key is None:
        shown = f"{node.db}.{name}" if node.db else name
        matches = by_name.get(name.lower(), [])
        hint = (f"'{name}' is ambiguous: qualify it ({', '.join(matches)})" if len(matches) > 1 else
                did_you_mean(shown.lower(), [*assets, *by_name]) or "the console reads the project's assets only")
        raise QueryRefused(f"unknown table {shown}", hint)
    return [key]
