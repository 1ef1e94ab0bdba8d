"""SQLite tables and queries → Arrow batches, with the standard library's sqlite3 (docs/connectors/databases.md).

Example ``sources/legacy.yml``::

    type: sqlite
    url: data/legacy.db            # a path (relative to the project), sqlite:///rel or sqlite:////abs
    tables:
      members:
        primary_key: [id]

The file is opened read-only. Types come from the columns' declared types (SQLite's affinity rules:
INT → bigint, CHAR/CLOB/TEXT → text, REAL/FLOA/DOUB → double, DECIMAL(p,s) → decimal, BOOL → boolean,
DATE → date, DATETIME/TIMESTAMP → timestamp, BLOB → binary); a value that does not fit its column's type
(SQLite lets ``'abc'`` into an INTEGER column) is quarantined with its rowid and reason, never dropped.
Columns of a ``query:`` (and columns declared without a type) take the type of their first batch's values.
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiban.collect.connector import BadRow, ReadContext, SourceError
from kiban.collect.connectors.database import (
    Options,
    SourceRead,
    check_columns,
    ident,
    missing_table,
    one_stream,
    plan_of,
    query_error,
    require_url,
)

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["Options", "check", "read"]
_DECIMAL = re.compile(r"(?:DECIMAL|NUMERIC)\s*\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)", re.IGNORECASE)
_ROWID = "__kiban_rowid"


def check(ctx: ReadContext, options: Options) -> None:
    one_stream(ctx, options, "SQLite")
    plan = plan_of(ctx, options)
    with closing(_connect(ctx)) as conn:
        check_columns(ctx, plan, [name for name, _ in _columns(ctx, conn, plan)])


def read(ctx: ReadContext, options: Options) -> Iterator[pa.RecordBatch]:
    one_stream(ctx, options, "SQLite")
    plan = plan_of(ctx, options)
    with closing(_connect(ctx)) as conn:
        columns = _columns(ctx, conn, plan)
        if plan.select:
            declared = dict(columns)
            columns = [(name, declared[name]) for name in plan.select]
        kinds = [_kind(declared_type) for _, declared_type in columns]
        rowid = plan.table is not None and _has_rowid(conn, plan)
        select = ", ".join(ident(name) for name, _ in columns)
        if plan.query is not None:
            sql = f"select * from ({plan.query}) as _kiban_query"
        else:
            name = f"{ident(plan.schema)}.{ident(plan.table or '')}" if plan.schema else ident(plan.table or "")
            sql = f"select {select}{f', rowid as {_ROWID}' if rowid else ''} from {name}"
        params: list[Any] = []
        if plan.filtered:
            where, since = _cursor_filter(plan, dict(columns).get(plan.cursor or "", ""))
            sql += f" where {where}"
            params.append(since)
        if plan.cursor:
            sql += f" order by {ident(plan.cursor)}"
        try:
            cur = conn.execute(sql, params)
            count = 0
            while not ctx.cancel.is_set():
                rows = cur.fetchmany(ctx.batch_rows)
                if not rows:
                    break
                kinds = [_infer(kind, [row[i] for row in rows]) for i, kind in enumerate(kinds)]
                batch, bad = _batch(ctx, plan, columns, kinds, rows, rowid, count)
                count += len(rows)
                ctx.quarantine(bad)
                if batch.num_rows:
                    yield batch
        except sqlite3.Error as exc:
            raise query_error(ctx, plan, exc) from None


def _connect(ctx: ReadContext) -> sqlite3.Connection:
    path = sqlite_path(require_url(ctx, "sqlite", "data/app.db"))
    if not path.is_absolute():
        path = ctx.project_root / path
    # a SQLite "URL" is a path, not a secret: messages name it (ctx.error would mask it)
    if not path.is_file():
        raise SourceError(ctx.source_name, ctx.table_name, f"the SQLite file {path} does not exist",
                          "check `url:` (a path relative to the project)")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
        conn.execute("select count(*) from sqlite_master").fetchone()
    except sqlite3.Error as exc:
        raise SourceError(ctx.source_name, ctx.table_name, f"cannot open {path} as a SQLite database: {exc}") from None
    return conn


def sqlite_path(url: str) -> Path:
    """The file a SQLite URL names, SQLAlchemy's way: ``sqlite:///data/app.db`` (three slashes) is relative to
    the project, ``sqlite:////srv/app.db`` (four) is absolute; a plain path is taken as it is."""
    if not url.startswith("sqlite:"):
        return Path(url)
    rest = url[len("sqlite:"):]
    if rest.startswith("//"):  # sqlite://<host>/<path>: the host is empty, the slash after it separates
        rest = rest[2:]
        rest = rest[1:] if rest.startswith("/") else rest
    return Path(rest.split("?", 1)[0])


def _columns(ctx: ReadContext, conn: sqlite3.Connection, plan: SourceRead) -> list[tuple[str, str]]:
    """(name, declared type) of the table, or of the query (no declared types)."""
    if plan.query is not None:
        try:
            cur = conn.execute(f"select * from ({plan.query}) as _kiban_query limit 0")
        except sqlite3.Error as exc:
            raise query_error(ctx, plan, exc) from None
        return [(d[0], "") for d in cur.description]
    schema = ident(plan.schema) + "." if plan.schema else ""
    rows = conn.execute(f"pragma {schema}table_info({ident(plan.table or '')})").fetchall()
    if not rows:
        tables = [r[0] for r in conn.execute("select name from sqlite_master where type in ('table', 'view') "
                                             "and name not like 'sqlite_%'").fetchall()]
        raise missing_table(ctx, plan, tables)
    return [(r[1], r[2] or "") for r in rows]


def _has_rowid(conn: sqlite3.Connection, plan: SourceRead) -> bool:
    schema = ident(plan.schema) + "." if plan.schema else ""
    try:
        conn.execute(f"select rowid from {schema}{ident(plan.table or '')} limit 0")
        return True
    except sqlite3.Error:  # a view, or a WITHOUT ROWID table
        return False


def _cursor_filter(plan: SourceRead, declared: str) -> tuple[str, Any]:
    """The incremental filter and its bound value. A time cursor (a DATETIME, TIMESTAMP or DATE column) is compared
    as the instant the loader made of it, never as the text the application happened to write: SQLite has no time
    type, and ``'2026-12-06T21:00:00-05:00' >= '2026-12-07 01:59:55'`` is false as text (a row written with a
    negative offset would never be read again), while an epoch number is less than any text. Values SQLite's
    ``julianday`` cannot read are NULL to it and read by every load, like NULL cursors. The bound value is 1 ms
    early: a julianday is a double (tens of microseconds at today's dates), and reading a little more costs nothing
    (the loader drops what landed before)."""
    column = ident(plan.cursor or "")
    kind = _kind(declared)[2]
    if kind == "date":  # as _to_date reads it: the text's first ten characters
        instant = f"julianday(substr(trim({column}), 1, 10))"
    elif kind == "timestamp":  # as _to_timestamp reads it: ISO text (an offset or Z: converted to UTC), or epoch
        instant = (f"(case when typeof({column}) in ('integer', 'real') then julianday({column}, 'unixepoch') "
                   f"else julianday(trim({column})) end)")
    else:
        return plan.condition(column, "?"), _bindable(plan.since)
    since = plan.since
    if isinstance(since, dt.datetime):
        since -= dt.timedelta(milliseconds=1)
    return plan.condition(instant, "julianday(?)"), _bindable(since)


def _bindable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


# -- declared types → Arrow, value by value --------------------------------------------------------------------------

Kind = tuple[Any, Callable[[Any], Any], str]  # Arrow type, convert one value (raise ValueError), a name for reasons


def _kind(declared: str) -> Kind:
    import pyarrow as pa

    upper = declared.upper()
    decimal = _DECIMAL.search(declared)
    if decimal and int(decimal.group(1)) <= 38:
        precision, scale = int(decimal.group(1)), int(decimal.group(2) or 0)
        return pa.decimal128(precision, scale), _to_decimal(scale), f"decimal({precision},{scale})"
    if "BOOL" in upper:
        return pa.bool_(), _to_bool, "boolean"
    if "INT" in upper:
        return pa.int64(), _to_int, "integer"
    if "DATETIME" in upper or "TIMESTAMP" in upper:
        return pa.timestamp("us"), _to_timestamp, "timestamp"
    if "DATE" in upper:
        return pa.date32(), _to_date, "date"
    if any(word in upper for word in ("CHAR", "CLOB", "TEXT")):
        return pa.string(), _to_text, "text"
    if any(word in upper for word in ("REAL", "FLOA", "DOUB")) or upper.startswith(("NUMERIC", "DECIMAL")):
        return pa.float64(), _to_float, "double"
    if "BLOB" in upper:
        return pa.binary(), _to_bytes, "binary"
    return None, _as_is, "any"  # no declared type: the values decide


def _infer(kind: Kind, values: list[Any]) -> Kind:
    """A column without a declared type takes the type of its first batch's values (then keeps it)."""
    if kind[0] is not None:
        return kind
    seen = {type(v) for v in values if v is not None}
    if not seen:
        return kind
    if seen <= {int}:
        return _kind("INTEGER")
    if seen <= {int, float}:
        return _kind("REAL")
    if seen == {bytes}:
        return _kind("BLOB")
    return _kind("TEXT")


def _to_int(value: Any) -> int:
    if isinstance(value, bool | int):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ValueError


def _to_float(value: Any) -> float:
    if isinstance(value, int | float):
        return float(value)
    return float(value)  # text that reads as a number; raises ValueError otherwise


def _to_decimal(scale: int) -> Callable[[Any], Decimal]:
    step = Decimal(1).scaleb(-scale)

    def convert(value: Any) -> Decimal:
        try:
            number = Decimal(str(value))
            rounded = number.quantize(step)
        except InvalidOperation:
            raise ValueError from None
        if rounded != number:
            raise ValueError
        return rounded

    return convert


def _to_bool(value: Any) -> bool:
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false", "t", "f", "0", "1"):
        return value.lower() in ("true", "t", "1")
    raise ValueError


def _to_timestamp(value: Any) -> dt.datetime:
    if isinstance(value, str):
        parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    elif isinstance(value, int | float):  # seconds since the epoch
        parsed = dt.datetime.fromtimestamp(value, dt.UTC)
    else:
        raise ValueError
    return parsed.astimezone(dt.UTC).replace(tzinfo=None) if parsed.tzinfo else parsed


def _to_date(value: Any) -> dt.date:
    if isinstance(value, str):
        return dt.date.fromisoformat(value.strip()[:10])
    raise ValueError


def _to_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


def _to_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _as_is(value: Any) -> Any:
    return value


def _batch(ctx: ReadContext, plan: SourceRead, columns: list[tuple[str, str]], kinds: list[Kind], rows: list[Any],
           rowid: bool, offset: int) -> tuple[pa.RecordBatch, list[BadRow]]:
    import pyarrow as pa

    width = len(columns)
    values: list[list[Any]] = [[] for _ in range(width)]
    bad: list[BadRow] = []
    for number, row in enumerate(rows, start=offset + 1):
        converted: list[Any] = []
        for (name, _), (_, convert, label), value in zip(columns, kinds, row[:width], strict=True):
            if value is None:
                converted.append(None)
                continue
            try:
                converted.append(convert(value))
            except (ValueError, TypeError, OverflowError, UnicodeDecodeError):
                where = f"rowid={row[width]}" if rowid else f"row {number}"
                bad.append(BadRow(location=f"{plan.table or 'query'} {where}", raw=repr(tuple(row[:width])),
                                  reason=f"column {name}: {value!r} is not a {label}", column=name))
                break
        else:
            for i, item in enumerate(converted):
                values[i].append(item)
    arrays = []
    for (kind, _, _), column in zip(kinds, values, strict=True):
        if kind is not None:
            arrays.append(pa.array(column, kind))
            continue
        try:
            arrays.append(pa.array(column))
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed values in an untyped column: their text
            arrays.append(pa.array([None if v is None else _to_text(v) for v in column], pa.string()))
    names = [name for name, _ in columns]
    return pa.RecordBatch.from_arrays(arrays, names=names), bad
