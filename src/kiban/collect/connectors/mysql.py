"""MySQL / MariaDB tables and queries → Arrow batches (docs/connectors/databases.md).

Example ``sources/shop.yml``::

    type: mysql
    url: env:SHOP_DB_URL           # mysql://user:password@host:3306/database
    tables:
      customers:
        mode: incremental
        cursor: id
        primary_key: [id]

Fast path: DuckDB's mysql scanner (filter and order pushed to the server; the cursor value is a bound
parameter). Fallback: PyMySQL's unbuffered cursor, ``batch_rows`` rows at a time. The session's time zone is
UTC, so TIMESTAMP columns come out in UTC. A DECIMAL of more than 38 digits is read as its text on both paths
(the scanner would read a double) and cast exactly by the loader (``exact_number``).
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from kiban.collect.connector import ReadContext, exact_number
from kiban.collect.connectors.database import (
    Options,
    SourceRead,
    check_columns,
    connection_error,
    duckdb_with,
    ident,
    literal,
    missing_table,
    one_stream,
    plan_of,
    query_error,
    require_url,
    scanned,
    stream,
    use_duckdb,
    where_of,
)

if TYPE_CHECKING:
    import pyarrow as pa
    import pymysql

__all__ = ["Options", "check", "read"]
EXAMPLE = "mysql://user:password@host:3306/database"


def check(ctx: ReadContext, options: Options) -> None:
    """Connect, find the table (or run the query for no rows), check the selected and cursor columns."""
    one_stream(ctx, options, "MySQL")
    url = require_url(ctx, "mysql", EXAMPLE)
    plan = plan_of(ctx, options)
    conn = _connect(ctx, url, options)
    try:
        check_columns(ctx, plan, [d[0] for d in _describe(ctx, conn, plan)[0]])
        if plan.cursor:
            ctx.saw_open_transactions(_open_for(conn))
            if ctx.cursor is None and not ctx.table.version and plan.table is not None:
                _suggest_version(ctx, conn, plan)
    finally:
        conn.close()


def _suggest_version(ctx: ReadContext, conn: pymysql.Connection[Any], plan: SourceRead) -> None:
    """A table's first incremental load: a cursor kept by ``ON UPDATE CURRENT_TIMESTAMP`` to the second (or to a
    fraction) is shared by every update within that second — kiban tells them apart by the rows' content; a
    column the application bumps on every update says it more cheaply and more surely (``version:``)."""
    import pymysql

    try:
        with conn.cursor() as cur:
            cur.execute("select lower(extra), datetime_precision from information_schema.columns where table_schema "
                        "= coalesce(%s, database()) and table_name = %s and column_name = %s",
                        [plan.schema, plan.table, plan.cursor])
            row = cur.fetchone()
            if not row or "on update" not in (row[0] or ""):
                return
            cur.execute("select column_name from information_schema.columns where table_schema = coalesce(%s, "
                        "database()) and table_name = %s and lower(column_name) in ('version', 'row_version', "
                        "'lock_version', 'revision', 'rev', 'row_count', 'update_count', 'modcount') "
                        "and data_type in ('int', 'bigint', 'smallint', 'mediumint', 'tinyint')",
                        [plan.schema, plan.table])
            versions = [r[0] for r in cur.fetchall()]
    except pymysql.Error:
        return
    precision = f"datetime({row[1]})" if row[1] else "seconds"
    offer = f"`version: {versions[0]}` (it looks like one)" if versions else "`version:` naming it"
    ctx.note(f"the cursor {plan.cursor} is kept by ON UPDATE CURRENT_TIMESTAMP in {precision}: updates within one "
             f"{'second' if not row[1] else 'tick'} share it, and kiban tells them apart by the rows' content "
             f"(compared within the look-back). If the application bumps a column on every update, declare "
             f"{offer}: a change is then (primary key, version)")


def _open_for(conn: pymysql.Connection[Any]) -> float | None:
    """Seconds the oldest other InnoDB transaction has been running (0: none); None without the PROCESS
    privilege. A row it writes carries CURRENT_TIMESTAMP of its statement: no older than its start."""
    import pymysql

    try:
        with conn.cursor() as cur:
            cur.execute("select coalesce(max(unix_timestamp(now(6)) - unix_timestamp(trx_started)), 0) "
                        "from information_schema.innodb_trx where trx_mysql_thread_id <> connection_id()")
            row = cur.fetchone()
    except pymysql.Error:
        return None
    return max(0.0, float(row[0])) if row else 0.0


def read(ctx: ReadContext, options: Options) -> Iterator[pa.RecordBatch]:
    one_stream(ctx, options, "MySQL")
    url = require_url(ctx, "mysql", EXAMPLE)
    plan = plan_of(ctx, options)
    extension = use_duckdb(ctx, options, "mysql", "PyMySQL")
    if extension is not None:
        yield from _read_duckdb(ctx, plan, url, extension, _exact_columns(ctx, plan, url, options))
    else:
        yield from _read_pymysql(ctx, plan, url, options)


def _since(value: Any) -> Any:
    """The cursor value as the server compares it (times in UTC, like the session)."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def _source_sql(plan: SourceRead) -> str:
    """The MySQL statement for a query (the cursor filter is a ``?`` placeholder)."""
    return f"select * from ({plan.query}) as _kiban_query" + _cursor_tail(plan)


def _cursor_tail(plan: SourceRead) -> str:
    """The cursor's filter (a ``?`` placeholder) and order, for a statement that ends in its ``from``."""
    tail = f" where {plan.condition(ident(plan.cursor or '', '`'), '?')}" if plan.filtered else ""
    return tail + (f" order by {ident(plan.cursor, '`')}" if plan.cursor else "")


def _text_sql(plan: SourceRead, numbers: list[tuple[str, bool]]) -> str:
    """The MySQL statement of a read whose wide decimals are sent as text (``cast(… as char)``: every digit)."""
    items = ", ".join(f"cast({ident(n, '`')} as char) as {ident(n, '`')}" if exact else ident(n, "`")
                      for n, exact in numbers)
    if plan.query is not None:
        relation = f"({plan.query}) as _kiban_query"
    else:
        relation = f"{ident(plan.schema, '`')}.{ident(plan.table or '', '`')}" if plan.schema else \
            ident(plan.table or "", "`")
    return f"select {items} from {relation}" + _cursor_tail(plan)


# -- the fast path: DuckDB's scanner ------------------------------------------------------------------------------


def _exact_columns(ctx: ReadContext, plan: SourceRead, url: str, options: Options) -> list[tuple[str, bool]] | None:
    """For the fast path: the read's columns, each with whether it is a DECIMAL of more than 38 digits (read as
    its text: the scanner would read a double) — or None when there is none (the scan as usual)."""
    conn = _connect(ctx, url, options)
    try:
        described, fields = _describe(ctx, conn, plan)
    finally:
        conn.close()
    columns = [(d[0], _exact(d, f)) for d, f in zip(described, fields, strict=True)]
    return columns if any(exact for _, exact in columns) else None


def _exact(description: Any, field: Any) -> bool:
    """A DECIMAL of more than 38 digits: no Arrow decimal holds it."""
    code, length, scale = description[1], description[3] or 0, description[5] or 0
    unsigned = bool(field.flags & _UNSIGNED)
    return code in (0, 246) and length - (0 if unsigned else 1) - (1 if scale else 0) > 38


def _read_duckdb(ctx: ReadContext, plan: SourceRead, url: str, extension: Any,
                 numbers: list[tuple[str, bool]] | None = None) -> Iterator[pa.RecordBatch]:
    import duckdb
    import pyarrow as pa

    con = duckdb_with(extension)
    try:
        con.execute("set mysql_session_time_zone = '+00:00'")
        try:
            con.execute(f"attach {literal(url)} as src (type mysql, read_only)")
        except duckdb.Error as exc:
            raise connection_error(ctx, exc, where_of(url)) from None
        params: list[Any] = []
        if plan.query is not None or numbers is not None:
            # the scanner sends the statement as is, with the value bound to its ? (text: MySQL converts it)
            statement = _source_sql(plan) if numbers is None else _text_sql(plan, numbers)
            sql = f"select * from mysql_query('src', {literal(statement)}"
            if plan.filtered:
                sql += ", params := row(?)"
                since = _since(plan.since)
                params.append(since.isoformat(sep=" ") if isinstance(since, dt.datetime)
                              else since.isoformat() if isinstance(since, dt.date) else str(since))
            sql += ")"
        else:
            schema = f"{ident(plan.schema)}." if plan.schema else ""
            columns = ", ".join(ident(c) for c in plan.select) or "*"
            sql = f"select {columns} from src.{schema}{ident(plan.table or '')}"
            if plan.filtered:  # pushed down to MySQL by the scanner
                sql = scanned(sql, plan, ident(plan.cursor or ""))
                params.append(_since(plan.since))
            if plan.cursor:
                sql += f" order by {ident(plan.cursor)}"
        exact = {n for n, e in numbers or () if e}
        try:
            for batch in stream(con, sql, params, ctx.batch_rows, ctx):
                if exact:
                    batch = pa.RecordBatch.from_arrays(batch.columns, schema=pa.schema(
                        [exact_number(f, "MySQL decimal") if f.name in exact else f for f in batch.schema]))
                yield batch
        except duckdb.Error as exc:
            raise query_error(ctx, plan, exc) from None
    finally:
        con.close()


# -- connecting and describing with PyMySQL (the check, and the fallback) -----------------------------------------


def _connect(ctx: ReadContext, url: str, options: Options, unbuffered: bool = False) -> pymysql.Connection[Any]:
    import pymysql
    import pymysql.cursors

    parts = urlsplit(url)
    if parts.scheme not in ("mysql", "mariadb", "mysql+pymysql"):
        raise ctx.error("the URL must look like mysql://user:password@host:3306/database")
    try:
        return pymysql.connect(host=parts.hostname or "127.0.0.1", port=parts.port or 3306,
                               user=unquote(parts.username or ""), password=unquote(parts.password or ""),
                               database=unquote(parts.path.lstrip("/")) or None,
                               connect_timeout=options.connect_timeout,
                               init_command="set time_zone = '+00:00'", charset="utf8mb4",
                               cursorclass=pymysql.cursors.SSCursor if unbuffered else pymysql.cursors.Cursor)
    except pymysql.Error as exc:
        raise connection_error(ctx, exc, where_of(url)) from None


def _describe(ctx: ReadContext, conn: pymysql.Connection[Any], plan: SourceRead) -> tuple[list[Any], list[Any]]:
    """The result's description and its fields (type codes, flags, character sets)."""
    import pymysql

    with conn.cursor() as cur:
        if plan.table is not None:
            cur.execute("select count(*) from information_schema.tables where table_schema = coalesce(%s, "
                        "database()) and table_name = %s", [plan.schema, plan.table])
            row = cur.fetchone()
            if not row or not row[0]:
                cur.execute("select case when table_schema = database() then table_name else concat(table_schema, "
                            "'.', table_name) end from information_schema.tables where table_schema not in "
                            "('mysql', 'information_schema', 'performance_schema', 'sys')")
                raise missing_table(ctx, plan, [r[0] for r in cur.fetchall()])
            schema = f"{ident(plan.schema, '`')}." if plan.schema else ""
            columns = ", ".join(ident(c, "`") for c in plan.select) or "*"
            sql = f"select {columns} from {schema}{ident(plan.table, '`')} limit 0"
        else:
            sql = f"select * from ({plan.query}) as _kiban_query limit 0"
        try:
            cur.execute(sql)
        except pymysql.Error as exc:
            raise query_error(ctx, plan, exc) from None
        return list(cur.description or []), list(cur._result.fields if cur._result else [])


# -- the fallback: PyMySQL, batch_rows rows at a time --------------------------------------------------------------

_UNSIGNED, _BINARY_CHARSET = 32, 63


def _arrow_type(description: Any, field: Any) -> pa.DataType:
    import pyarrow as pa

    code, length, scale = description[1], description[3] or 0, description[5] or 0
    unsigned = bool(field.flags & _UNSIGNED)
    if code in (0, 246):  # DECIMAL: the length counts the sign and the point
        precision = length - (0 if unsigned else 1) - (1 if scale else 0)
        # past 38 digits: its exact text (exact_number), cast exactly by the loader
        return pa.decimal128(max(1, min(38, precision)), scale) if precision <= 38 else pa.string()
    if code == 1:
        return pa.bool_() if length == 1 else (pa.uint8() if unsigned else pa.int8())
    ints = {2: (pa.int16(), pa.uint16()), 3: (pa.int32(), pa.uint32()), 9: (pa.int32(), pa.uint32()),
            8: (pa.int64(), pa.uint64()), 13: (pa.int16(), pa.int16())}
    if code in ints:
        return ints[code][unsigned]
    if code == 16:
        return pa.bool_() if length == 1 else pa.binary()
    fixed = {4: pa.float32(), 5: pa.float64(), 10: pa.date32(), 12: pa.timestamp("us"), 7: pa.timestamp("us")}
    if code in fixed:
        return fixed[code]
    if code in (249, 250, 251, 252, 253, 254, 15) and field.charsetnr == _BINARY_CHARSET:
        return pa.binary()
    return pa.string()


def _value(value: Any, kind: pa.DataType) -> Any:
    import pyarrow as pa

    if value is None:
        return None
    if pa.types.is_boolean(kind):
        return bool(int.from_bytes(value, "big")) if isinstance(value, bytes) else bool(value)
    if pa.types.is_string(kind) and not isinstance(value, str):
        if isinstance(value, decimal.Decimal):  # plain digits: str() would say 1E-30
            return format(value, "f")
        return value.decode() if isinstance(value, bytes) else str(value)
    return value


def _read_pymysql(ctx: ReadContext, plan: SourceRead, url: str, options: Options) -> Iterator[pa.RecordBatch]:
    import pyarrow as pa
    import pymysql

    first = _connect(ctx, url, options)
    try:
        described, fields = _describe(ctx, first, plan)
    finally:
        first.close()
    schema = pa.schema([exact_number(pa.field(d[0], pa.string()), "MySQL decimal") if _exact(d, f)
                        else pa.field(d[0], _arrow_type(d, f)) for d, f in zip(described, fields, strict=True)])
    if plan.query is not None:
        sql = _source_sql(plan).replace("%", "%%").replace(" ?", " %s")
    else:
        name = f"{ident(plan.schema, '`')}.{ident(plan.table or '', '`')}" if plan.schema else \
            ident(plan.table or "", "`")
        columns = ", ".join(ident(c, "`") for c in plan.select) or "*"
        sql = f"select {columns} from {name}".replace("%", "%%")
        if plan.filtered:
            sql += f" where {plan.condition(ident(plan.cursor or '', '`'), '%s')}"
        if plan.cursor:
            sql += f" order by {ident(plan.cursor, '`')}"
    conn = _connect(ctx, url, options, unbuffered=True)
    try:
        with conn.cursor() as cur:
            try:
                cur.execute(sql, [_since(plan.since)] if plan.filtered else None)
                while not ctx.cancel.is_set():
                    rows = cur.fetchmany(ctx.batch_rows)
                    if not rows:
                        break
                    arrays = [pa.array([_value(r[i], f.type) for r in rows], f.type) for i, f in enumerate(schema)]
                    yield pa.RecordBatch.from_arrays(arrays, schema=schema)
            except pymysql.Error as exc:
                raise query_error(ctx, plan, exc) from None
    finally:
        conn.close()
