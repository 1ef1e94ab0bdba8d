"""What a model's SQL reads, as DuckDB's own parser sees it: the authority for a model's dependencies.

SQLGlot is a translator; DuckDB is the engine that runs the model. A dependency SQLGlot misses (PIVOT,
``FROM``-first, ``query_table('…')``) builds models out of order and lets stale ones pass as fresh, so the
tables a model reads are read off DuckDB's parse tree (``json_serialize_sql``: parser only, no catalog,
no files touched), with DuckDB's scoping of CTEs, subqueries in every clause, lateral joins and set
operations. ``graph.sqlrefs`` compares the result with SQLGlot's and refuses what the two cannot agree on.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiban.errors import Location, ProjectError
from kiban.quoting import literal

log = logging.getLogger(__name__)

NO_LOCATION = 2**64 - 1  # DuckDB's "no position" (an optional_idx that is unset)
# Table functions whose argument names a table or a query: what they read is a dependency like any other.
TABLE_BY_NAME = {"query_table"}
QUERY_BY_TEXT = {"query"}
# Table functions whose first argument names files: what they read is part of the model's fingerprint.
FILE_READERS = {"read_parquet", "parquet_scan", "read_csv", "read_csv_auto", "sniff_csv", "read_json",
                "read_json_auto", "read_ndjson", "read_ndjson_auto", "read_json_objects", "read_text", "read_blob",
                "read_xlsx", "st_read"}
_MAY_READ_FILES = re.compile(r"\b(read_\w+|parquet_scan|sniff_csv|st_read)\s*\(", re.IGNORECASE)

_lock = threading.Lock()
_con: Any = None
_serialized: dict[str, str] = {}  # SQL text → DuckDB's parse tree as JSON, while a Serialized batch is open
_rendered: dict[str, str] = {}  # SQL text → DuckDB's canonical rendering of it, while a Serialized batch is open
# DuckDB's parse tree → its own SQL rendering (no comments, one layout, keywords in one case); none for an error
RENDER = "case when (j::json->>'error')::boolean then null else json_deserialize_sql(j) end"
# the parse tree's nodes that are no expression: the query, table and modifier nodes the walk knows. Any other
# (DESCRIBE's SHOW_REF, …) may name a table in its own way: the walk's reading is then not the whole story.
KNOWN_NODES = frozenset({"SELECT_NODE", "SET_OPERATION_NODE", "RECURSIVE_CTE_NODE", "CTE_NODE", "BASE_TABLE",
                         "JOIN", "SUBQUERY", "EMPTY", "EXPRESSION_LIST", "PIVOT", "TABLE_FUNCTION",
                         "ORDER_DEFAULT", "ASCENDING", "DESCENDING"})


@dataclass(frozen=True)
class DuckRef:
    """One table DuckDB's parser sees read: catalog and schema ('' when not written), name, byte offset."""

    catalog: str
    schema: str
    name: str
    offset: int | None


@dataclass
class Reading:
    """What the walk over one parse tree found: the tables read, the names it took for CTEs rather than tables
    (the one decision the walk makes itself), and node kinds it does not know."""

    refs: list[DuckRef] = field(default_factory=list)
    shadowed: set[str] = field(default_factory=set)
    unknown: set[str] = field(default_factory=set)


class Unserializable(Exception):
    """DuckDB parses the SQL into more than one statement (a PIVOT without an ``IN`` list)."""


def _connection() -> Any:
    global _con
    if _con is None:
        import duckdb

        _con = duckdb.connect(":memory:")
    return _con


def serialize(sql: str) -> dict[str, Any]:
    """DuckDB's parse tree of ``sql`` (parser only) or the parser's error."""
    with _lock:
        text = _serialized.get(sql)
        if text is None:
            row = _connection().execute(f"select json_serialize_sql({literal(sql)})").fetchone()
            text = row[0] if row else None
    return dict(json.loads(text)) if text is not None else {"error": True, "error_message": "no result"}


class Serialized:
    """DuckDB's parse trees of many texts, asked for in ONE statement per batch (a statement of its own costs
    ≈ 0.25 ms of planning per model on a cold load, several times the parse itself). While the ``with`` block
    runs, :func:`serialize` answers these texts from the batch; after it, nothing is kept."""

    BATCH = 500

    def __init__(self, texts: list[str]) -> None:
        self.texts = list(dict.fromkeys(t for t in texts if t not in _serialized))

    def __enter__(self) -> Serialized:
        if len(self.texts) < 2:
            return self
        found: dict[str, str] = {}
        rendered: dict[str, str] = {}
        for start in range(0, len(self.texts), self.BATCH):
            chunk = self.texts[start:start + self.BATCH]
            values = ", ".join(f"({i}, {literal(t)})" for i, t in enumerate(chunk))
            try:
                with _lock:
                    rows = _connection().execute(
                        f"select i, j, {RENDER} from (select i, json_serialize_sql(s) as j from (values {values}) "
                        "as t(i, s))").fetchall()
            except Exception:  # one text the batch cannot take: each is parsed alone, as without a batch
                log.debug("parse trees in one batch failed; parsing one by one", exc_info=True)
                continue
            for i, tree, text in rows:
                if tree is not None:
                    found[chunk[int(i)]] = str(tree)
                    if text is not None:
                        rendered[chunk[int(i)]] = str(text)
        with _lock:
            _serialized.update(found)
            _rendered.update(rendered)
        self.texts = list(found)
        return self

    def __exit__(self, *exc: object) -> None:
        with _lock:
            for text in self.texts:
                _serialized.pop(text, None)
                _rendered.pop(text, None)


def rendered(sql: str) -> str | None:
    """DuckDB's own rendering of ``sql`` (``json_deserialize_sql`` of its parse tree): the same for texts that
    differ only in comments, layout and the case of keywords. None when DuckDB cannot parse or render it."""
    with _lock:
        text = _rendered.get(sql)
        if text is not None:
            return text
        try:
            row = _connection().execute(f"select {RENDER} from (select json_serialize_sql({literal(sql)}) as j)"
                                        ).fetchone()
        except Exception:  # a tree DuckDB serializes but cannot render back
            log.debug("DuckDB cannot render its parse tree of a model back", exc_info=True)
            return None
    return str(row[0]) if row and row[0] is not None else None


def normalized(sql: str) -> str:
    """DuckDB's parse tree of ``sql`` without positions: equal for texts that differ only in comments and layout."""
    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k != "query_location"}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return json.dumps(strip(serialize(sql)), sort_keys=True)


def line_col(sql: str, offset: int) -> tuple[int, int]:
    """1-based line and column of a BYTE offset (DuckDB counts UTF-8 bytes)."""
    text = sql.encode()[:offset].decode(errors="ignore")
    line = text.count("\n") + 1
    return line, len(text) - (text.rfind("\n") + 1) + 1


def duckdb_refs(sql: str, path: Path) -> list[DuckRef]:
    """Every table ``sql`` reads, by DuckDB's parser. Raises :class:`Unserializable` for statements DuckDB
    splits in several (dynamic PIVOT), and :class:`ProjectError` for what DuckDB refuses to parse."""
    return duckdb_reading(sql, path).refs


def duckdb_reading(sql: str, path: Path) -> Reading:
    """:func:`duckdb_refs` with what the walk decided on its own (:class:`Reading`)."""
    tree = serialize(sql)
    if tree.get("error"):
        message = str(tree.get("error_message", "cannot parse"))
        if tree.get("error_type") == "not implemented" or "Only SELECT" in message:
            raise Unserializable(message)
        position = str(tree.get("position") or "")
        where = Location(path, *line_col(sql, int(position))) if position.isdigit() else Location(path)
        raise ProjectError(f"DuckDB cannot parse this model: {message}", where)
    statements = tree.get("statements") or []
    if len(statements) != 1:
        raise ProjectError(f"a model is exactly one SELECT statement; DuckDB reads {len(statements)} here",
                           Location(path, 1))
    reading = Reading()
    _collect(statements[0], frozenset(), sql, path, 0, reading)
    return reading


def _offset(node: dict[str, Any], base: int) -> int | None:
    loc = node.get("query_location")
    return base + int(loc) if isinstance(loc, int) and loc != NO_LOCATION else (base or None)


def _collect(node: Any, ctes: frozenset[str], sql: str, path: Path, base: int, found: Reading) -> None:
    """Depth-first over the parse tree, adding to ``found`` (no generator per node: a parse tree has thousands
    of them); ``ctes``: the CTE names visible here (they shadow tables)."""
    if isinstance(node, list):
        for item in node:
            if isinstance(item, (dict, list)):
                _collect(item, ctes, sql, path, base, found)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if kind == "BASE_TABLE":
        catalog, schema, name = node.get("catalog_name") or "", node.get("schema_name") or "", node["table_name"]
        if not catalog and not schema and name.lower() in ctes:
            found.shadowed.add(name.lower())
            return
        found.refs.append(DuckRef(catalog, schema, name, _offset(node, base)))
        return
    if kind == "TABLE_FUNCTION":
        _table_function(node, ctes, sql, path, base, found)
        return
    if isinstance(kind, str) and "class" not in node and kind not in KNOWN_NODES and \
            not kind.endswith(("_MODIFIER", "_TYPE_INFO")):  # result modifiers and types name no table
        found.unknown.add(kind)
    if kind == "RECURSIVE_CTE_NODE" and node.get("cte_name"):
        ctes = ctes | {str(node["cte_name"]).lower()}
    cte_map = (node.get("cte_map") or {}).get("map") or []
    if cte_map:
        visible = set(ctes)
        for entry in cte_map:  # a CTE's body sees the CTEs written before it (and itself when recursive)
            _collect(entry.get("value", {}).get("query"), frozenset(visible), sql, path, base, found)
            visible.add(str(entry.get("key", "")).lower())
        ctes = frozenset(visible)
    for key, value in node.items():
        if key != "cte_map" and isinstance(value, (dict, list)):
            _collect(value, ctes, sql, path, base, found)


def _constant_text(node: Any) -> str | None:
    if isinstance(node, dict) and node.get("class") == "CONSTANT":
        value = node.get("value") or {}
        if (value.get("type") or {}).get("id") == "VARCHAR" and not value.get("is_null"):
            return str(value.get("value"))
    return None


def _table_function(node: dict[str, Any], ctes: frozenset[str], sql: str, path: Path,
                    base: int, found: Reading) -> None:
    function = node.get("function") or {}
    name = str(function.get("function_name", "")).lower()
    args = function.get("children") or []
    offset = _offset(node, base)
    if name in TABLE_BY_NAME or name in QUERY_BY_TEXT:
        texts = [_constant_text(a) for a in args[:1]]
        if not texts or texts[0] is None:
            where = Location(path, *line_col(sql, offset)) if offset is not None else Location(path)
            raise ProjectError(f"{name}() with a computed argument: kiban cannot know which table it reads",
                               where, "write the table's name in the FROM clause")
        text = texts[0]
        if name in QUERY_BY_TEXT:  # the inner query's own references, placed at the function call
            inner = duckdb_reading(text, path)
            found.refs.extend(DuckRef(ref.catalog, ref.schema, ref.name, offset) for ref in inner.refs)
            found.shadowed |= inner.shadowed
            found.unknown |= inner.unknown
            return
        catalog, schema, table = ["", "", *_split_name(text)][-3:]
        found.refs.append(DuckRef(catalog, schema, table, offset))
        return
    _collect(args, ctes, sql, path, base, found)  # e.g. a subquery passed to a table function


def _split_name(text: str) -> list[str]:
    """``schema.table`` / ``"My Schema"."T"`` split as DuckDB splits a qualified name (dots outside quotes)."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    i = 0
    while i < len(text):
        char = text[i]
        if char == '"':
            if quoted and text[i + 1:i + 2] == '"':
                current.append('"')
                i += 1
            else:
                quoted = not quoted
        elif char == "." and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    parts.append("".join(current))
    return parts[-3:]


def may_read_files(sql: str) -> bool:
    """Whether ``sql`` may call one of DuckDB's file readers (a cheap look at the text; ``read_files`` decides)."""
    return _MAY_READ_FILES.search(sql) is not None


def read_files(sql: str) -> tuple[str, ...]:
    """The file names and globs ``sql`` reads through DuckDB's file functions (``read_parquet('x/*.parquet')``,
    ``read_csv(['a.csv', 'b.csv'])``), as written. A computed argument cannot be known: it is returned as ``?``."""
    if not may_read_files(sql):  # most models read no file: no second parse for them
        return ()
    tree = serialize(sql)
    if tree.get("error"):
        return ()
    found: list[str] = []
    _files(tree.get("statements") or [], found)
    return tuple(dict.fromkeys(found))


def _files(node: Any, found: list[str]) -> None:
    if isinstance(node, list):
        for item in node:
            _files(item, found)
        return
    if not isinstance(node, dict):
        return
    function = node.get("function") if node.get("type") == "TABLE_FUNCTION" else None
    if isinstance(function, dict) and str(function.get("function_name", "")).lower() in FILE_READERS:
        args = function.get("children") or []
        first = args[0] if args else None
        if isinstance(first, dict) and first.get("function_name") == "list_value":
            names = [_constant_text(c) for c in first.get("children") or []]
        else:
            names = [_constant_text(first)]
        found.extend(n if n is not None else "?" for n in names)
        _files(args[1:], found)
        return
    for value in node.values():
        _files(value, found)


# what a statement reads from the clock (or from chance) rather than from a table or a file: its result changes
# with the day (``DAY``) or with every run (``ALWAYS``) while its text and inputs stay the same
CLOCK_DAY = frozenset({"current_date", "today"})
CLOCK_ALWAYS = frozenset({"now", "current_timestamp", "get_current_timestamp", "transaction_timestamp",
                          "current_localtimestamp", "localtimestamp", "current_time", "get_current_time", "localtime",
                          "random", "uuid", "gen_random_uuid", "uuidv4", "uuidv7"})
# the ones SQL writes without parentheses: DuckDB's parser reads them as column names (its binder as functions)
_CLOCK_WORDS = frozenset({"current_date", "current_timestamp", "localtimestamp", "current_time", "localtime"})
_MAY_READ_CLOCK = re.compile("|".join(sorted(CLOCK_DAY | CLOCK_ALWAYS)), re.IGNORECASE)


def clock_reads(sql: str) -> str:
    """What ``sql`` reads from the clock: ``"always"`` (the time, a random number: another value at every run),
    ``"day"`` (today's date: another value each day) or ``""``. A column named like one of these words counts too
    (DuckDB's parser cannot tell them apart; a rebuild too many is the safe side)."""
    if not _MAY_READ_CLOCK.search(sql):
        return ""
    tree = serialize(sql)
    if tree.get("error"):
        return ""
    found = called_functions(sql)
    _clock_words(tree.get("statements") or [], found)
    if found & CLOCK_ALWAYS:
        return "always"
    return "day" if found & CLOCK_DAY else ""


def _clock_words(node: Any, found: set[str]) -> None:
    if isinstance(node, list):
        for item in node:
            _clock_words(item, found)
        return
    if not isinstance(node, dict):
        return
    names = node.get("column_names")
    if node.get("class") == "COLUMN_REF" and isinstance(names, list) and len(names) == 1 \
            and str(names[0]).lower() in _CLOCK_WORDS:
        found.add(str(names[0]).lower())
    for value in node.values():
        _clock_words(value, found)


def called_functions(sql: str) -> set[str]:
    """The names of every function and table function ``sql`` calls (lower case), by DuckDB's parser: which
    project macros a model uses. Unparseable SQL calls nothing here (its own parse reports the error)."""
    tree = serialize(sql)
    found: set[str] = set()
    if not tree.get("error"):
        _calls(tree.get("statements") or [], found)
    return found


def _calls(node: Any, found: set[str]) -> None:
    if isinstance(node, list):
        for item in node:
            _calls(item, found)
        return
    if not isinstance(node, dict):
        return
    if node.get("class") == "FUNCTION" and node.get("function_name"):
        found.add(str(node["function_name"]).lower())
    for value in node.values():
        _calls(value, found)
