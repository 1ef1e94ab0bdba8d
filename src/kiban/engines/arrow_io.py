"""Python models on PostgreSQL and Spark (issue 18): Arrow in, Arrow out, the frame moved to and from the engine.

A Python model reads its inputs through a cursor (``kiban.python.build.produce``: ``cursor.execute(sql)`` then
``fetch_arrow_table()`` / ``fetchone()``), written for DuckDB's client. The cursors here give the same calls on
the other engines, so the model's function, its training and scoring run unchanged:

- **PostgreSQL.** The rows of a query become Arrow columns typed from the result's column types (not inferred
  from the values: an all-null column keeps its type, ``numeric(p, s)`` stays a decimal, ``timestamptz`` an
  instant). Each statement runs in its own transaction (a savepoint when one is open), so a failed probe — a
  training table not built yet — leaves the connection usable. The model's table goes back with
  ``COPY … FROM STDIN`` (CSV), one batch in memory at a time, like a lake load.
- **Spark.** A published table is read from its version's Parquet files with pyarrow (typed as ``toArrow()``
  types it; ``SparkEngine._arrow_of``), any other statement with ``DataFrame.toArrow()``; ``createDataFrame(arrow)``
  out (no pandas in between).

The SQL a model's cursor runs is kiban's own (``select * from "layer"."name"``), written in DuckDB's dialect:
Spark gets it transpiled.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any

from kiban.errors import KibanError
from kiban.quoting import quote

BATCH_ROWS = 64_000

# PostgreSQL type OIDs → Arrow type factories (pg_type.oid, stable across versions)
_PG_TYPES: dict[int, str] = {16: "bool", 20: "int64", 21: "int16", 23: "int32", 26: "int64", 700: "float32",
                             701: "float64", 25: "string", 1043: "string", 1042: "string", 19: "string",
                             18: "string", 2950: "string", 114: "string", 3802: "string", 1082: "date32",
                             1114: "timestamp", 1184: "timestamptz", 1083: "time64", 17: "binary"}


def _arrow_type(column: Any, zone: str) -> Any:
    import pyarrow as pa

    oid = int(column.type_code)
    if oid == 1700:  # numeric: its declared precision, else DuckDB's default for an unconstrained one
        precision, scale = column.precision, column.scale
        return pa.decimal128(precision, scale) if precision else pa.decimal128(38, 9)
    kind = _PG_TYPES.get(oid)
    if kind == "timestamp":
        return pa.timestamp("us")
    if kind == "timestamptz":
        return pa.timestamp("us", tz=zone)
    if kind == "time64":
        return pa.time64("us")
    return getattr(pa, kind)() if kind else None  # None: inferred from the values (arrays, intervals …)


class _Result:
    def __init__(self, table: Any) -> None:
        self.table = table

    def fetchone(self) -> tuple[Any, ...] | None:
        rows = self.fetchall()
        return rows[0] if rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        columns = [c.to_pylist() for c in self.table.columns]
        return list(zip(*columns, strict=True)) if columns else []

    def fetch_arrow_table(self) -> Any:
        return self.table


def postgres_arrow(conn: Any, sql: str, zone: str = "UTC") -> Any:
    """The result of ``sql`` on a psycopg connection as an Arrow table typed from its columns."""
    import pyarrow as pa

    with conn.transaction(), conn.cursor() as cur:
        cur.execute(sql.encode())
        description = cur.description or []
        rows = cur.fetchall()
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in description]
    arrays = []
    for column, values in zip(description, columns, strict=True):
        kind = _arrow_type(column, zone)
        arrays.append(pa.array(list(values), type=kind) if kind is not None else pa.array(list(values)))
    return pa.Table.from_arrays(arrays, names=[c.name for c in description])


class PostgresArrowCursor:
    """What a Python model's build reads through on PostgreSQL (see the module's docstring)."""

    def __init__(self, conn: Any, zone: str = "UTC") -> None:
        self.conn, self.zone = conn, zone

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> _Result:
        if params:
            raise TypeError("no bound parameters here")
        return _Result(postgres_arrow(self.conn, sql, self.zone))


def arrow_to_postgres(arrow_type: Any, column: str, table: str) -> str:
    """The PostgreSQL column type for an Arrow type of a lake table."""
    import pyarrow as pa

    t = pa.types
    if t.is_boolean(arrow_type):
        return "boolean"
    if t.is_int8(arrow_type) or t.is_int16(arrow_type) or t.is_uint8(arrow_type):
        return "smallint"
    if t.is_int32(arrow_type) or t.is_uint16(arrow_type):
        return "integer"
    if t.is_int64(arrow_type) or t.is_uint32(arrow_type):
        return "bigint"
    if t.is_uint64(arrow_type):
        return "numeric(20, 0)"
    if t.is_float32(arrow_type) or t.is_float16(arrow_type):
        return "real"
    if t.is_float64(arrow_type):
        return "double precision"
    if t.is_decimal(arrow_type):
        return f"numeric({arrow_type.precision}, {arrow_type.scale})"
    if t.is_string(arrow_type) or t.is_large_string(arrow_type) or t.is_dictionary(arrow_type):
        return 'text collate "C"'  # DuckDB orders text by its bytes, whatever the database's collation
    if t.is_date(arrow_type):
        return "date"
    if t.is_timestamp(arrow_type):
        return "timestamptz" if arrow_type.tz else "timestamp"
    if t.is_time(arrow_type):
        return "time"
    raise KibanError(f"{table}: column {column} has type {arrow_type}, which the PostgreSQL engine does not store "
                     "yet", "cast it (to a string, say) before it reaches the warehouse, or use the DuckDB engine")


def postgres_columns(table: Any, model: str) -> str:
    """The column list of a PostgreSQL table holding ``table`` (Arrow)."""
    return ", ".join(f"{quote(f.name)} {arrow_to_postgres(f.type, f.name, model)}" for f in table.schema)


def copy_into(cur: Any, relation: str, table: Any) -> None:
    """Append the rows of ``table`` (Arrow) to the PostgreSQL table ``relation`` with COPY, batch by batch."""
    import pyarrow.csv as pacsv

    names = ", ".join(quote(n) for n in table.column_names)
    options = pacsv.WriteOptions(include_header=False)
    with cur.copy(f"copy {relation} ({names}) from stdin (format csv)".encode()) as copy:
        for batch in table.to_batches(max_chunksize=BATCH_ROWS):
            buffer = io.BytesIO()
            pacsv.write_csv(batch, buffer, options)
            copy.write(buffer.getvalue())


class SparkArrowCursor:
    """What a Python model's build reads through on Spark: kiban's DuckDB SQL transpiled, results as Arrow."""

    def __init__(self, spark: Any, ensure: Callable[[str], None] | None = None,
                 read: Callable[[str], Any | None] | None = None) -> None:
        self.spark = spark
        self.ensure = ensure  # registers the tables a statement reads (``SparkEngine._ensure``)
        self.read = read  # the statement's Arrow table without Spark, or None (``SparkEngine._arrow_of``)

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> _Result:
        import sqlglot

        if params:
            raise TypeError("no bound parameters here")
        text = sqlglot.transpile(sql, read="duckdb", write="spark")[0]
        table = self.read(text) if self.read is not None else None
        if table is not None:
            return _Result(table)
        if self.ensure is not None:
            self.ensure(text)
        return _Result(self.spark.sql(text).toArrow())


__all__ = ["PostgresArrowCursor", "SparkArrowCursor", "arrow_to_postgres", "copy_into", "postgres_arrow",
           "postgres_columns"]
