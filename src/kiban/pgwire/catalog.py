"""Which statement goes where, and the catalog a BI tool sees.

A statement from a client is one of:

- a **data query** (a SELECT that reads any relation outside ``pg_catalog``/``information_schema``): it goes the
  console's way (:class:`kiban.catalog.reading.Reader`: checked, proven, masked, recorded);
- a **catalog question** (what BI tools and ``psql`` ask on connect and to list tables: ``pg_class``,
  ``information_schema.columns``, ``version()``, ``current_schema()``): answered by DuckDB's own PostgreSQL
  catalog emulation in a *catalog session* — an in-memory DuckDB holding *empty* tables with the published
  relations' names and types, so whatever it is asked, it can only say names and types, never a value;
- ``SET``/``RESET``/``SHOW`` and transaction control: kept per connection, answered without an engine;
- anything else (a write, DDL, COPY…): refused, the endpoint only reads (SQLSTATE 25006).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from kiban.catalog.safety import SAFE_TABLE_FUNCTIONS
from kiban.catalog.warehouse import SCHEMAS, new_session
from kiban.quoting import literal, quote

SERVER_VERSION = "15.0"
VERSION_TEXT = f"PostgreSQL {SERVER_VERSION} (kiban, read-only; DuckDB underneath)"
CATALOG_SCHEMAS = ("pg_catalog", "information_schema", "kiban_pg")
_COMMENTS = re.compile(r"^(\s+|--[^\n]*(\n|$)|/\*.*?\*/)*", re.S)
_SET = re.compile(r"^set\s+(?:session\s+|local\s+)?([\w.]+)\s*(?:=|\bto\b)\s*(.*?)\s*;?\s*$", re.I | re.S)
_SET_OTHER = re.compile(r"^(set|reset)\b", re.I)
_SHOW = re.compile(r"^show\s+([\w.]+)\s*;?\s*$", re.I)
_TRANSACTION = {"begin": "BEGIN", "start": "BEGIN", "commit": "COMMIT", "end": "COMMIT", "rollback": "ROLLBACK",
                "abort": "ROLLBACK"}
_HARMLESS = {"discard": "DISCARD ALL", "deallocate": "DEALLOCATE", "close": "CLOSE CURSOR", "listen": "LISTEN",
             "unlisten": "UNLISTEN"}
_READS = ("select", "with", "values", "table", "(", "from")


@dataclass(frozen=True)
class Route:
    kind: str  # data, catalog, set, show, transaction, harmless, empty, refused
    sql: str = ""
    name: str = ""
    value: str = ""


def strip_comments(sql: str) -> str:
    return sql[_COMMENTS.match(sql).end():]  # type: ignore[union-attr]


def route(sql: str) -> Route:
    """Where one statement goes (see the module's docstring)."""
    text = strip_comments(sql).strip()
    if not text.rstrip(";").strip():
        return Route("empty")
    word = re.split(r"[\s;(]", text.lower(), maxsplit=1)[0] or text[0]
    if word in _TRANSACTION:
        return Route("transaction", name=_TRANSACTION[word])
    if word in _HARMLESS:
        return Route("harmless", name=_HARMLESS[word])
    found = _SET.match(text)
    if found:
        return Route("set", name=found.group(1).lower(), value=found.group(2).strip("'\""))
    if _SET_OTHER.match(text):
        return Route("set", name="")
    found = _SHOW.match(text)
    if found:
        return Route("show", name=found.group(1).lower())
    if word not in _READS and not text.startswith("("):
        return Route("refused", sql=sql, name=word.upper())
    tables = _tables(sql)
    if tables is None:
        tables = _tables(catalog_sql(sql))  # PostgreSQL's spellings of catalog questions (psql's \d)
    if tables is not None and all(_is_catalog(schema, name) for schema, name in tables):
        return Route("catalog", sql=sql)
    return Route("data", sql=sql)


def _is_catalog(schema: str, name: str) -> bool:
    schema, name = schema.lower(), name.lower()
    return schema in CATALOG_SCHEMAS or (not schema and name.startswith("pg_"))


_parser_lock = threading.Lock()
_parser: Any = None


def _tables(sql: str) -> list[tuple[str, str]] | None:
    """The (schema, name) of every base table ``sql`` names, by DuckDB's parser; None when it cannot tell."""
    global _parser
    import duckdb

    with _parser_lock:
        if _parser is None:
            _parser = duckdb.connect(":memory:")
        try:
            raw = _parser.execute("select json_serialize_sql(?)", [sql]).fetchone()[0]
        except duckdb.Error:
            return None
    tree = json.loads(raw)
    if tree.get("error"):
        return None
    found: list[tuple[str, str]] = []
    for node in _nodes(tree.get("statements") or []):
        if node.get("type") == "BASE_TABLE":
            found.append((str(node.get("schema_name") or ""), str(node.get("table_name") or "")))
        elif node.get("type") == "TABLE_FUNCTION":
            function = node.get("function") or {}
            if str(function.get("function_name", "")).lower() not in SAFE_TABLE_FUNCTIONS:
                found.append(("", "__table_function__"))  # read_csv(…) and friends: the data path refuses them
    return found


def _nodes(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        yield value
        for child in value.values():
            yield from _nodes(child)
    elif isinstance(value, list):
        for child in value:
            yield from _nodes(child)


_QUALIFIED_FUNCTION = re.compile(r"\bpg_catalog\s*\.\s*(\w+)\s*\(", re.I)
_OPERATOR = re.compile(r"OPERATOR\s*\(\s*pg_catalog\s*\.\s*([^)\s]+)\s*\)", re.I)
_COLLATE = re.compile(r"\s+COLLATE\s+(pg_catalog\s*\.\s*)?\"?(default|C)\"?", re.I)
_CASTS = re.compile(r"::\s*(pg_catalog\s*\.\s*)?(regclass|regtype|regproc|regnamespace|oid|name)\b", re.I)
_TYPE_PREFIX = re.compile(r"::\s*pg_catalog\s*\.\s*", re.I)


_OVERRIDES = {  # pg_catalog relations DuckDB's emulation lacks columns of, completed in the schema kiban_pg
    "pg_class": "select *, false as relforcerowsecurity from pg_catalog.pg_class",
}
_OVERRIDDEN = re.compile(r"\b(?:pg_catalog\s*\.\s*)?(" + "|".join(_OVERRIDES) + r")\b(?!\s*\()", re.I)


def catalog_sql(sql: str) -> str:
    """PostgreSQL's spellings DuckDB's catalog emulation does not take, rewritten for the catalog session only
    (it holds no values, so a rewrite can make an answer wrong but never leak): ``pg_catalog.f(`` → ``f(``,
    ``OPERATOR(pg_catalog.~)`` → ``~``, ``COLLATE pg_catalog.default`` dropped, ``::regclass`` and friends
    dropped."""
    sql = _QUALIFIED_FUNCTION.sub(lambda m: f"{m.group(1)}(", sql)
    sql = _OPERATOR.sub(lambda m: f" {m.group(1)} ", sql)
    sql = _COLLATE.sub("", sql)
    sql = _OVERRIDDEN.sub(lambda m: f"kiban_pg.{m.group(1).lower()}", sql)
    return _TYPE_PREFIX.sub("::", _CASTS.sub("", sql))


_MACROS = {
    "version()": literal(VERSION_TEXT),
    "pg_get_userbyid(x)": literal("kiban"),
    "pg_encoding_to_char(x)": literal("UTF8"),
    "pg_backend_pid()": "0",
    "pg_table_is_visible(x)": "true",
    "pg_get_expr(a, b)": "null::varchar, (a, b, c) as null::varchar",  # kiban's tables have no defaults
}


def catalog_session(columns: Mapping[str, list[tuple[str, str]]], settings: Mapping[str, str]) -> Any:
    """An in-memory DuckDB with an empty table per published relation (its columns and types): DuckDB's own
    pg_catalog and information_schema answer about it. Locked like every reader's session."""
    con = new_session()
    try:
        ddl = [f"create schema {quote(s)}" for s in SCHEMAS]
        for key, cols in sorted(columns.items()):
            schema, _, name = key.partition(".")
            if schema not in SCHEMAS or not cols or name.startswith("__kiban"):
                continue
            body = ", ".join(f"{quote(c)} {kind}" for c, kind in cols)
            ddl.append(f"create table {quote(schema)}.{quote(name)} ({body})")
        ddl += [f"create macro {signature} as {body}" for signature, body in _MACROS.items()]
        ddl.append("create schema kiban_pg")
        ddl += [f"create view kiban_pg.{name} as {body}" for name, body in _OVERRIDES.items()]
        # current_setting() answers what SHOW answers
        cases = " ".join(f"when {literal(k)} then {literal(v)}" for k, v in sorted(settings.items()))
        ddl.append(f"create macro current_setting(x) as (case lower(x) {cases} else null end)")
        con.execute("; ".join(ddl))
        con.execute("set search_path = 'mart,warehouse,lake,main'; set enable_external_access = false; "
                     "set lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con
