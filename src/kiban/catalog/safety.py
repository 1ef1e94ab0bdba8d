"""Whether a console query may run: exactly one SELECT that reads the project's assets and nothing else.

Two parsers judge every query. DuckDB's own parser counts the statements and names their type (so a
comment cannot hide a second statement from it); SQLGlot's tree is then walked for what a SELECT may
still do: read files or URLs (``read_csv``, ``'x.parquet'``, ``glob``), call table functions, reach into
attached databases or the system catalog. Every table must be a known asset; that list is also the
usage record of the query.

Then DuckDB, the engine that will run it, has the last word (:func:`prove_reads`): its own parse tree
(``json_serialize_sql``) is walked, every table reference at any depth (subqueries, CTEs, UNPIVOT,
SUMMARIZE, set operations, lateral joins) must name one of the relations the masked session exposes, every
table function must be one that only computes, no name may carry a catalog. What the engine cannot
serialise is refused: whatever cannot be proven to read only masked views does not run.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kiban.assetkey import KeyResolver
from kiban.errors import KibanError, did_you_mean

if TYPE_CHECKING:
    from sqlglot import exp

SCHEMAS = ("lake", "warehouse", "mart")
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
    keys = KeyResolver(assets)
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    read: set[str] = set()
    for node in tree.walk():
        if isinstance(node, exp.Into | exp.Command | exp.Pragma | exp.Set | exp.Copy | exp.DDL | exp.DML):
            raise QueryRefused(f"the query contains {node.key.upper()}; the console only reads")
        if isinstance(node, exp.Table):
            read.update(_table(node, ctes, keys))
        elif isinstance(node, exp.Func):
            name = _function_name(node)
            if name in BLOCKED_FUNCTIONS or name.startswith(BLOCKED_PREFIXES) or name.endswith(BLOCKED_SUFFIXES):
                raise QueryRefused(f"{name}() reads files, other databases or settings",
                                   "the console reads the project's assets only; ask for a lake table instead")
    return CheckedQuery(sql, tree, tuple(sorted(read)))


# table references DuckDB's parser produces that read nothing but their children (checked on their own)
_PLAIN_REFS = frozenset({"JOIN", "SUBQUERY", "EXPRESSION_LIST", "EMPTY", "PIVOT", "SHOW_REF"})
_QUERY_NODES = frozenset({"SELECT_NODE", "SET_OPERATION_NODE", "RECURSIVE_CTE_NODE", "CTE_NODE"})


@dataclass(frozen=True)
class Exposed:
    """What a masked session offers: relation keys (``layer.name``), and names a CTE may not shadow."""

    relations: Mapping[str, object]
    reserved: frozenset[str] = frozenset()  # DuckDB's own catalog relations (duckdb_views, pg_class …)
    hidden_functions: frozenset[str] = frozenset()  # the session's internal functions (the masking hash)


def prove_reads(sql: str, exposed: Exposed) -> tuple[str, ...]:
    """The relations ``sql`` reads, by DuckDB's own parse tree; :class:`QueryRefused` unless every table
    reference provably resolves to an exposed relation and nothing else reads data, files or settings."""
    import json

    import duckdb

    with _parser_lock:
        global _parser
        if _parser is None:
            _parser = duckdb.connect(":memory:")
        try:
            raw = _parser.execute("select json_serialize_sql(?)", [sql]).fetchone()[0]
        except duckdb.Error as exc:
            raise QueryRefused(f"not valid SQL: {str(exc).splitlines()[0]}") from None
    tree = json.loads(raw)
    if tree.get("error"):
        message = str(tree.get("error_message") or "DuckDB cannot analyse it")
        raise QueryRefused(f"the query cannot be proven to read only masked data ({message.splitlines()[0]})",
                           "PIVOT statements and other constructs DuckDB cannot analyse are refused; "
                           "write it as a plain SELECT (conditional aggregates instead of PIVOT)")
    statements = tree.get("statements") or []
    if len(statements) != 1:
        raise QueryRefused(f"{len(statements)} statements; the console runs exactly one")
    keys = KeyResolver(exposed.relations)
    ctes: set[str] = set()
    _collect_ctes(statements, ctes)
    shadowing = ctes & exposed.reserved
    if shadowing:
        raise QueryRefused(f"the CTE name {sorted(shadowing)[0]} is a name of DuckDB's own catalog",
                           "name the CTE differently")
    read: set[str] = set()
    _walk(statements, exposed, keys, ctes, read)
    return tuple(sorted(read))


def _collect_ctes(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        cte_map = node.get("cte_map")
        if isinstance(cte_map, dict):
            for entry in cte_map.get("map") or []:
                found.add(str(entry.get("key", "")).lower())
        for value in node.values():
            _collect_ctes(value, found)
    elif isinstance(node, list):
        for value in node:
            _collect_ctes(value, found)


def _walk(node: Any, exposed: Exposed, keys: KeyResolver, ctes: set[str], read: set[str]) -> None:
    if isinstance(node, list):
        for value in node:
            _walk(value, exposed, keys, ctes, read)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if "class" in node:  # an expression
        if node.get("class") == "FUNCTION" or kind == "FUNCTION":
            _check_function(node, exposed)
    elif "modifiers" in node:  # a query node
        if kind not in _QUERY_NODES:
            raise QueryRefused(f"a {str(kind).lower()} query cannot be proven to read only masked data")
    elif "sample" in node and isinstance(kind, str):  # a table reference
        if kind == "BASE_TABLE":
            read.update(_base_table(node, keys, ctes))
        elif kind == "TABLE_FUNCTION":
            function = node.get("function") or {}
            name = str(function.get("function_name", "")).lower()
            if name not in SAFE_TABLE_FUNCTIONS or function.get("catalog") or function.get("schema"):
                raise QueryRefused(f"the table function {name}() is not allowed: it may read files, URLs or "
                                   "settings", "the console reads the project's assets only")
        elif kind == "SHOW_REF":
            if node.get("table_name"):
                raise QueryRefused("SUMMARIZE/DESCRIBE of a table name is not allowed",
                                   "write `summarize select * from warehouse.x` instead")
        elif kind not in _PLAIN_REFS:
            raise QueryRefused(f"a {kind.lower()} table reference cannot be proven to read only masked data")
    for value in node.values():
        _walk(value, exposed, keys, ctes, read)


def _check_function(node: Mapping[str, Any], exposed: Exposed) -> None:
    name = str(node.get("function_name", "")).lower()
    catalog, schema = str(node.get("catalog") or ""), str(node.get("schema") or "").lower()
    if catalog or schema not in ("", "main"):
        raise QueryRefused(f"{'.'.join(p for p in (catalog, schema, name) if p)}() names another database or "
                           "schema", "the console calls DuckDB's built-in functions only")
    if (name in BLOCKED_FUNCTIONS or name.startswith(BLOCKED_PREFIXES) or name.endswith(BLOCKED_SUFFIXES)
            or name in exposed.hidden_functions or name.startswith("__kiban") or name in _SESSION_FUNCTIONS):
        raise QueryRefused(f"{name}() reads files, other databases or settings",
                           "the console reads the project's assets only; ask for a lake table instead")


# functions that read the session, its variables or its catalog rather than data the query was given
_SESSION_FUNCTIONS = frozenset({"getvariable", "current_database", "current_catalog", "current_schema",
                                "current_schemas", "current_query", "sql_auto_complete", "which_secret",
                                "json_serialize_sql", "json_deserialize_sql", "json_execute_serialized_sql",
                                "json_serialize_plan"})


def _base_table(node: Mapping[str, Any], keys: KeyResolver, ctes: set[str]) -> list[str]:
    catalog = str(node.get("catalog_name") or "")
    schema = str(node.get("schema_name") or "").lower()
    name = str(node.get("table_name") or "").lower()
    shown = ".".join(p for p in (catalog, schema, name) if p)
    if catalog:
        raise QueryRefused(f"{shown} names another database ({catalog}); the console reads the project's assets "
                           "only")
    if schema and schema not in SCHEMAS:
        raise QueryRefused(f"unknown table {shown}", "the console reads the lake, warehouse and mart layers")
    key = keys.resolve(schema, name)
    if not schema and name in ctes:
        return [key] if key else []
    if key is None:
        raise QueryRefused(f"unknown table {shown}", "the console reads the project's assets only")
    return [key]


def _function_name(node: exp.Func) -> str:
    from sqlglot import exp

    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    return node.sql_name().lower()


def _table(node: exp.Table, ctes: set[str], keys: KeyResolver) -> list[str]:
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
    key = keys.resolve(node.db, name)
    if key is None:
        shown = f"{node.db}.{name}" if node.db else name
        matches = keys.candidates(name)
        hint = (f"'{name}' is ambiguous: qualify it ({', '.join(matches)})" if len(matches) > 1 else
                did_you_mean(shown.lower(), [*keys.keys, *keys.views, *keys.by_name])
                or "the console reads the project's assets only")
        raise QueryRefused(f"unknown table {shown}", hint)
    return [key]
