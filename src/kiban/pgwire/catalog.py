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
from typing import TYPE_CHECKING, Any

from kiban.catalog.safety import SAFE_TABLE_FUNCTIONS
from kiban.catalog.warehouse import SCHEMAS, new_session
from kiban.quoting import literal, quote

if TYPE_CHECKING:
    import pyarrow as pa

SERVER_VERSION = "15.0"
VERSION_TEXT = f"PostgreSQL {SERVER_VERSION} (kiban, read-only; DuckDB underneath)"
CATALOG_SCHEMAS = ("pg_catalog", "information_schema", "kiban_pg")
_COMMENTS = re.compile(r"^(\s+|--[^\n]*(\n|$)|/\*.*?\*/)*", re.S)
_SET = re.compile(r"^set\s+(?:session\s+|local\s+)?([\w.]+)\s*(?:=|\bto\b)\s*(.*?)\s*;?\s*$", re.I | re.S)
_SET_OTHER = re.compile(r"^(set|reset)\b", re.I)
_SHOW = re.compile(r"^show\s+([\w.]+|transaction\s+isolation\s+level)\s*;?\s*$", re.I)
_TRANSACTION = {"begin": "BEGIN", "start": "BEGIN", "commit": "COMMIT", "end": "COMMIT", "rollback": "ROLLBACK",
                "abort": "ROLLBACK"}
_HARMLESS = {"discard": "DISCARD ALL", "deallocate": "DEALLOCATE", "close": "CLOSE CURSOR", "listen": "LISTEN",
             "unlisten": "UNLISTEN"}
_READS = ("select", "with", "values", "table", "(", "from")


_NAME = r'("(?:[^"]|"")+"|\w+)'
_DECLARE = re.compile(r"^declare\s+" + _NAME + r"\s+(?:binary\s+)?(?:(?:asensitive|insensitive)\s+)?"
                      r"(?:no\s+)?(?:scroll\s+)?cursor\s+(?:with(?:out)?\s+hold\s+)?for\s+(.*?);?\s*$", re.I | re.S)
_FETCH = re.compile(r"^fetch\s+(?:(?:forward|next)\s+)?(?:(\d+|all)\s+|(next)\s+)?(?:(?:from|in)\s+)?" + _NAME
                    + r"\s*;?\s*$", re.I)
_CLOSE = re.compile(r"^close\s+" + _NAME + r"\s*;?\s*$", re.I)


def _cursor_name(text: str) -> str:
    return text[1:-1].replace('""', '"') if text.startswith('"') else text.lower()


@dataclass(frozen=True)
class Route:
    kind: str  # data, catalog, set, show, transaction, harmless, declare, fetch, close, empty, refused
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
    found = _DECLARE.match(text)
    if found:  # a cursor (psqlODBC's "Use Declare/Fetch"): its query is routed like any other
        inner = route(found.group(2))
        if inner.kind not in ("data", "catalog"):
            return Route("refused", sql=sql, name="DECLARE")
        return Route("declare", sql=inner.sql, name=_cursor_name(found.group(1)), value=inner.kind)
    found = _FETCH.match(text)
    if found:
        count = (found.group(1) or found.group(2) or "1").lower()
        return Route("fetch", name=_cursor_name(found.group(3)), value="all" if count == "all" else
                     ("1" if count in ("next", "") else count))
    found = _CLOSE.match(text)
    if found:
        return Route("close", name="" if found.group(1).lower() == "all" else _cursor_name(found.group(1)))
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
        name = found.group(1).lower()
        return Route("show", name="transaction_isolation" if name.startswith("transaction") else name)
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
# CAST(x AS REGCLASS) (SQLAlchemy's spelling): DuckDB has no reg* types; a regclass shows as its text anyway
_CAST_REG = re.compile(r"\bAS\s+(pg_catalog\s*\.\s*)?(regclass|regtype|regproc|regnamespace)\s*\)", re.I)
# pg_catalog.pg_class.relname (SQLAlchemy qualifies every column so): DuckDB binds `pg_catalog.pg_class` in FROM
# as pg_class, so the column is named through that
_QUALIFIED_COLUMN = re.compile(r"\bpg_catalog\s*\.\s*(pg_\w+)\s*\.\s*(?=[\w\"])", re.I)
_TYPE_PREFIX = re.compile(r"::\s*pg_catalog\s*\.\s*", re.I)


# A DuckDB column type as the PostgreSQL type oid the wire shows it as (kiban.pgwire.messages.oid_of; strings are
# varchar here, which DuckDB's pg_type knows), its typmod (numeric: (precision << 16 | scale) + 4) and length.
_TYPE_OID = """case
  when {t} = 'BOOLEAN' then 16
  when {t} in ('TINYINT', 'SMALLINT', 'UTINYINT') then 21
  when {t} in ('INTEGER', 'USMALLINT') then 23
  when {t} in ('BIGINT', 'UINTEGER') then 20
  when {t} like 'DECIMAL%' or {t} in ('HUGEINT', 'UBIGINT', 'UHUGEINT') then 1700
  when {t} = 'FLOAT' then 700
  when {t} = 'DOUBLE' then 701
  when {t} = 'DATE' then 1082
  when {t} = 'TIMESTAMP WITH TIME ZONE' then 1184
  when {t} like 'TIMESTAMP%' then 1114
  when {t} like 'TIME%' then 1083
  when {t} = 'BLOB' then 17
  else 1043 end"""
_TYPE_LEN = "case oid when 16 then 1 when 21 then 2 when 23 then 4 when 20 then 8 when 700 then 4 when 701 then 8 " \
            "when 1082 then 4 when 1114 then 8 when 1184 then 8 when 1083 then 8 else -1 end"

_TYPE_ZEROS = ("coalesce(typrelid, 0) as typrelid, coalesce(typtypmod, -1) as typtypmod, "
               "coalesce(typbasetype, 0) as typbasetype, coalesce(typndims, 0) as typndims, "
               "coalesce(typcollation, 0) as typcollation, coalesce(typelem, 0) as typelem, "
               "coalesce(typarray, 0) as typarray")
_OVERRIDES = {  # pg_catalog relations DuckDB's emulation lacks or gets wrong, completed in the schema kiban_pg
    "pg_class": "select *, false as relforcerowsecurity from pg_catalog.pg_class",
    # the schemas a BI tool should offer; DuckDB's `main` holds only the built-in types (and this session's
    # macros), so it is shown as what PostgreSQL calls that: pg_catalog
    "pg_namespace": "select * replace (case nspname when 'main' then 'pg_catalog' else nspname end as nspname) "
                    "from pg_catalog.pg_namespace where nspname <> 'kiban_pg'",
    # types with an oid, typrelid 0 (not NULL) as PostgreSQL has it, and `text` (what the wire sends strings as)
    # (and the other numbers PostgreSQL never leaves NULL: ODBC's SQLColumns() reads typtypmod into an int)
    "pg_type": f"select * replace ({_TYPE_ZEROS}) from pg_catalog.pg_type where oid is not null "
               f"union all select * replace (25 as oid, 'text' as typname, {_TYPE_ZEROS}) "
               "from pg_catalog.pg_type where oid = 1043",
    # DuckDB's has no namespace column (SQLAlchemy's get_columns() joins it to pg_namespace)
    "pg_collation": "select *, 11::bigint as collnamespace from pg_catalog.pg_collation",
    # PostgreSQL 15's column SQLAlchemy reads with the keys and indexes (kiban's tables have none)
    "pg_index": "select *, false as indnullsnotdistinct from pg_catalog.pg_index",
    # the connection's own settings, what SHOW answers ($settings: see catalog_session) — never DuckDB's: those
    # name the server's folders, its memory and its secrets' storage
    "pg_settings": "select * from (values $settings) s(name, setting, short_desc, vartype) where name is not null",
    # one database: the one the client connected to ($database: see catalog_session)
    "pg_database": "select * replace ($database as datname) from pg_catalog.pg_database where datname = 'memory'",
    # DuckDB's atttypid is its own type id, not PostgreSQL's: a JDBC getColumns() would join no type
    "pg_attribute": f"""select a.* replace (m.oid as atttypid, m.len as attlen, m.typmod as atttypmod,
          not m.is_nullable as attnotnull)
        from pg_catalog.pg_attribute a join (
          select table_oid, column_name, is_nullable, oid, {_TYPE_LEN} as len,
                 case when oid = 1700 and numeric_precision is not null
                      then (numeric_precision << 16 | coalesce(numeric_scale, 0)) + 4 else -1 end as typmod
          from (select *, {_TYPE_OID.format(t="data_type")} as oid
                from duckdb_columns())) m
        on m.table_oid = a.attrelid and m.column_name = a.attname""",
}
_OVERRIDDEN = re.compile(r"\b(?:pg_catalog\s*\.\s*)?(" + "|".join(_OVERRIDES) + r")\b(?!\s*\()", re.I)


# information_schema.columns with PostgreSQL's type names (DuckDB says DOUBLE where PostgreSQL says double precision)
_PG_TYPE_NAME = """case
  when {t} = 'BOOLEAN' then 'boolean'
  when {t} in ('TINYINT', 'SMALLINT', 'UTINYINT') then 'smallint'
  when {t} in ('INTEGER', 'USMALLINT') then 'integer'
  when {t} in ('BIGINT', 'UINTEGER') then 'bigint'
  when {t} like 'DECIMAL%' or {t} in ('HUGEINT', 'UBIGINT', 'UHUGEINT') then 'numeric'
  when {t} = 'FLOAT' then 'real'
  when {t} = 'DOUBLE' then 'double precision'
  when {t} = 'DATE' then 'date'
  when {t} = 'TIMESTAMP WITH TIME ZONE' then 'timestamp with time zone'
  when {t} like 'TIMESTAMP%' then 'timestamp without time zone'
  when {t} like 'TIME%' then 'time without time zone'
  when {t} = 'BLOB' then 'bytea'
  else 'character varying' end"""
_COLUMNS_VIEW = ("select * replace ({name} as data_type) from information_schema.columns"
                 .format(name=_PG_TYPE_NAME.format(t="data_type")))
_INFORMATION_COLUMNS = re.compile(r"\binformation_schema\s*\.\s*columns\b", re.I)
_FORMAT_TYPE = re.compile(r"(?<![\w.])format_type\s*\(", re.I)
# format_type(oid, typmod) as PostgreSQL spells the types the catalog shows (psql's \d prints it)
_FORMAT_TYPE_BODY = """case t
  when 16 then 'boolean' when 21 then 'smallint' when 23 then 'integer' when 20 then 'bigint'
  when 1700 then case when m >= 4 then 'numeric(' || ((m - 4) >> 16) || ',' || ((m - 4) & 65535) || ')'
                      else 'numeric' end
  when 700 then 'real' when 701 then 'double precision' when 1082 then 'date'
  when 1114 then 'timestamp without time zone' when 1184 then 'timestamp with time zone'
  when 1083 then 'time without time zone' when 17 then 'bytea' when 25 then 'text'
  when 1043 then 'character varying' else null end"""
_JSON_BUILD_OBJECT = re.compile(r"(?<![\w.])json_build_object\s*\(", re.I)
_CURRENT_DATABASE = re.compile(r"\bcurrent_database\s*\(\s*\)", re.I)
_EXPANDARRAY = re.compile(r"\binformation_schema\s*\.\s*_pg_expandarray\s*\(", re.I)


def catalog_sql(sql: str) -> str:
    """PostgreSQL's spellings DuckDB's catalog emulation does not take, rewritten for the catalog session only
    (it holds no values, so a rewrite can make an answer wrong but never leak): ``pg_catalog.f(`` → ``f(``,
    ``OPERATOR(pg_catalog.~)`` → ``~``, ``COLLATE pg_catalog.default`` dropped, ``::regclass`` and friends
    dropped."""
    sql = _QUALIFIED_COLUMN.sub(lambda m: f"{m.group(1)}.", sql)
    sql = _QUALIFIED_FUNCTION.sub(lambda m: f"{m.group(1)}(", sql)
    sql = _OPERATOR.sub(lambda m: f" {m.group(1)} ", sql)
    sql = _COLLATE.sub("", sql)
    sql = _OVERRIDDEN.sub(lambda m: f"kiban_pg.{m.group(1).lower()}", sql)
    sql = _EXPANDARRAY.sub("kiban_pg._pg_expandarray(", sql)
    sql = _INFORMATION_COLUMNS.sub("kiban_pg.columns", sql)
    sql = _CURRENT_DATABASE.sub("kiban_pg.client_database()", sql)
    sql = _FORMAT_TYPE.sub("kiban_pg.format_type(", sql)
    sql = _JSON_BUILD_OBJECT.sub("json_object(", sql)
    sql = _CAST_REG.sub("AS VARCHAR)", sql)
    return _TYPE_PREFIX.sub("::", _CASTS.sub("", sql))


_MACROS = {
    "version()": literal(VERSION_TEXT),
    "pg_get_userbyid(x)": literal("kiban"),
    "pg_encoding_to_char(x)": literal("UTF8"),
    "pg_backend_pid()": "0",
    # visible: the first schema on the search path that has a relation of that name (as PostgreSQL decides)
    "pg_table_is_visible(x)": """(select v_c.relnamespace = (select v_c2.relnamespace from pg_catalog.pg_class v_c2
        join pg_catalog.pg_namespace v_n2 on v_n2.oid = v_c2.relnamespace where v_c2.relname = v_c.relname
        and v_n2.nspname in ('mart', 'warehouse', 'lake')
        order by case v_n2.nspname when 'mart' then 1 when 'warehouse' then 2 else 3 end limit 1)
      from pg_catalog.pg_class v_c where v_c.oid = x limit 1)""",
    "array_upper(a, d)": "len(a)",  # one-dimensional arrays only (JDBC's type cache asks it of current_schemas)
    "array_lower(a, d)": "case when len(a) > 0 then 1 end",
    "pg_get_expr(a, b)": "null::varchar, (a, b, c) as null::varchar",  # kiban's tables have no defaults
    # psycopg's TypeInfo.fetch (SQLAlchemy asks for hstore on connect): a name's type oid, NULL when unknown
    "to_regtype(x)": "(select min(v_t.oid) from pg_catalog.pg_type v_t "
                     "where v_t.typname = lower(x) and v_t.oid is not null)",
    # SQLAlchemy's get_columns() asks for identity columns' sequences; kiban's tables have none
    "pg_get_serial_sequence(a, b)": "null::varchar",
    "to_regclass(x)": "null::integer",
    "pg_get_indexdef(a)": "null::varchar, (a, b, c) as null::varchar",  # kiban's tables have no indexes
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
        database = literal(settings.get("database", "kiban"))
        shown = ", ".join(f"({literal(k)}, {literal(v)}, '', 'string')" for k, v in sorted(settings.items())) \
            or "(null, null, null, null)"
        ddl += [f"create view kiban_pg.{name} as {body.replace('$database', database).replace('$settings', shown)}"
                for name, body in _OVERRIDES.items()]
        ddl.append(f"create view kiban_pg.columns as {_COLUMNS_VIEW}")
        ddl.append(f"create macro kiban_pg.format_type(t, m) as {_FORMAT_TYPE_BODY}")
        user = literal(settings.get("session_authorization", ""))
        # not current_database() itself: DuckDB's own pg_catalog views call it to find their database
        ddl += [f"create macro kiban_pg.client_database() as {database}", f"create macro current_user() as {user}",
                f"create macro session_user() as {user}", f"create macro user() as {user}"]
        # JDBC's getPrimaryKeys() unnests index keys with it; kiban's tables have no indexes, so no row calls it
        ddl.append("create macro kiban_pg._pg_expandarray(a) as {'x': null::integer, 'n': null::integer}")
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


_MISSING_CATALOG = re.compile(r"Table with name pg_\w+ does not exist")


def answer(columns: Mapping[str, list[tuple[str, str]]], settings: Mapping[str, str], sql: str,
           params: list[Any]) -> pa.Table:
    """One catalog question answered from a fresh catalog session (run in a confined worker by the server: a
    question that computes something huge fails alone). A ValueError says why it failed."""
    import duckdb
    import pyarrow as pa

    con = catalog_session(columns, settings)
    try:
        cursor = con.execute(catalog_sql(sql), params) if params else con.execute(catalog_sql(sql))
        table: pa.Table = cursor.to_arrow_table()
        return table
    except duckdb.CatalogException as exc:
        if _MISSING_CATALOG.search(str(exc)):  # pg_policy, pg_inherits …: nothing kiban has, so no rows
            return pa.table({})
        raise ValueError(f"the catalog query failed: {str(exc).splitlines()[0]}") from None
    except duckdb.OutOfMemoryException:
        raise MemoryError from None
    except duckdb.Error as exc:
        raise ValueError(f"the catalog query failed: {str(exc).splitlines()[0]}") from None
    finally:
        con.close()
