"""Incremental models on PostgreSQL (issue 18): time partitions replaced inside the publishing transaction.

The same contract as DuckDB's (``engines.duckdb_partitions``), in PostgreSQL's SQL: the model's (transpiled) SQL
is filtered on its ``time_column`` from the outside; what has been processed is kept in ``kiban.incremental``
(the code each model was built with) and ``kiban.partitions`` (one row per processed partition), changed in the
same transaction as the rows they describe. A partition replaced outside a build (a backfill) is recorded in
``kiban.data_changes``, and the published version then carries it (``DATA_TOKEN``), so that models reading it
are rebuilt by the next run. Partition starts are wall times of the session's time zone — the project's — as on
DuckDB.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from kiban.engines.partition_code import code_of
from kiban.errors import KibanError
from kiban.project import Asset
from kiban.quoting import quote

MODEL_ALIAS = "__kiban_model"
TABLES = (
    "create table if not exists kiban.incremental (asset text primary key, code text not null, "
    "built_at timestamptz not null default now())",
    "create table if not exists kiban.partitions (asset text not null, start timestamp not null, "
    "rows bigint not null, processed_at timestamptz not null default now(), primary key (asset, start))",
    "create table if not exists kiban.data_changes (asset text not null, token text not null)",
)
INTERVALS = {"day": "1 day", "hour": "1 hour", "month": "1 month"}


def _column(asset: Asset) -> str:
    return quote(asset.config.time_column or "")


def _grain(asset: Asset) -> str:
    grain = asset.config.partition_grain
    if grain not in INTERVALS:
        raise KibanError(f"{asset.key}: partition_grain '{grain}' is not one of {', '.join(INTERVALS)}")
    return grain


def _explain(exc: psycopg.Error, asset: Asset) -> KibanError:
    column = asset.config.time_column
    if isinstance(exc, pg_errors.UndefinedColumn) and column and column.lower() in str(exc).lower():
        return KibanError(f"time_column '{column}' is not a column of {asset.key}",
                          f"set time_column in {asset.config_path or asset.key} to one of its date or timestamp "
                          "columns")
    if isinstance(exc, (pg_errors.UndefinedFunction, pg_errors.DatatypeMismatch, pg_errors.CannotCoerce)):
        return KibanError(f"time_column '{column}' of {asset.key} is not a date or timestamp")
    raise exc


def _shape(cur: psycopg.Cursor[Any], relation: str) -> list[tuple[str, int]]:
    cur.execute(f"select * from {relation} limit 0".encode())
    return [(c.name, int(c.type_code)) for c in cur.description or []]


def status(cur: psycopg.Cursor[Any], asset: Asset, sql: str, target: str) -> str | None:
    """Why ``asset`` cannot take a partition as it is published — None when it can."""
    row = cur.execute("select code from kiban.incremental where asset = %s", [asset.key]).fetchone()
    if row is None:
        return f"{asset.key} has not been built as an incremental model yet"
    if row[0] != code_of(asset):
        return f"{asset.key} changed (SQL, time_column or grain) since it was last built"
    with cur.connection.transaction():  # a savepoint: a model that no longer runs must not abort the caller
        model = [c for c in _shape(cur, f"({sql}) as {MODEL_ALIAS}") if not c[0].startswith("__kiban_qualify_")]
    if model != _shape(cur, target):
        return f"the columns of {asset.key} changed since it was last built"
    return None


def _record(cur: psycopg.Cursor[Any], asset: Asset, target: str, since: datetime | None) -> None:
    """The partitions of ``target`` from ``since`` on (all: None), as now in the table."""
    column, grain = _column(asset), _grain(asset)
    where = f"{column} >= %s" if since is not None else f"{column} is not null"
    params = [since] if since is not None else []
    if since is None:
        cur.execute("delete from kiban.partitions where asset = %s", [asset.key])
    else:
        cur.execute("delete from kiban.partitions where asset = %s and start >= %s", [asset.key, since])
    cur.execute(f"insert into kiban.partitions (asset, start, rows) select %s, "
                f"date_trunc('{grain}', {column})::timestamp as p, count(*) from {target} where {where} "
                "group by p", [asset.key, *params])


def full(cur: psycopg.Cursor[Any], asset: Asset, sql: str, tmp: str) -> None:
    """Inside the caller's transaction: ``tmp`` := the whole model (rows with a time), the state recorded."""
    try:
        with cur.connection.transaction():
            cur.execute(f"create table {tmp} as select * from ({sql}) as {MODEL_ALIAS} "
                        f"where {_column(asset)} is not null".encode())
    except psycopg.Error as exc:
        raise _explain(exc, asset) from None


def record_full(cur: psycopg.Cursor[Any], asset: Asset, table: str) -> None:
    """After ``full`` (helper columns dropped): the code and every partition of ``table``."""
    cur.execute("delete from kiban.incremental where asset = %s", [asset.key])
    cur.execute("insert into kiban.incremental (asset, code) values (%s, %s)", [asset.key, code_of(asset)])
    _record(cur, asset, table, None)


def since(cur: psycopg.Cursor[Any], asset: Asset) -> datetime | None:
    """Where an incremental build starts: the newest processed partition minus ``lookback`` (None: none)."""
    row = cur.execute(f"select max(start) - %s * interval '{INTERVALS[_grain(asset)]}' from kiban.partitions "
                      "where asset = %s and rows > 0", [int(asset.config.partition_lookback), asset.key]).fetchone()
    return row[0] if row else None


def _columns(cur: psycopg.Cursor[Any], target: str) -> str:
    return ", ".join(quote(name) for name, _ in _shape(cur, target))


def recent(cur: psycopg.Cursor[Any], asset: Asset, sql: str, target: str, start: datetime) -> None:
    """Inside the caller's transaction: replace the rows of ``target`` from ``start`` on."""
    column = _column(asset)
    names = _columns(cur, target)
    try:
        with cur.connection.transaction():
            cur.execute(f"delete from {target} where {column} >= %s".encode(), [start])
            cur.execute(f"insert into {target} ({names}) select {names} from ({sql}) as {MODEL_ALIAS} "
                        f"where {column} >= %s".encode(), [start])
    except psycopg.Error as exc:
        raise _explain(exc, asset) from None
    _record(cur, asset, target, start)


def one(cur: psycopg.Cursor[Any], asset: Asset, sql: str, target: str, start: datetime, end: datetime) -> int:
    """Inside the caller's transaction: replace the rows of one partition [start, end); returns its rows."""
    column = _column(asset)
    names = _columns(cur, target)
    try:
        with cur.connection.transaction():
            cur.execute(f"delete from {target} where {column} >= %s and {column} < %s".encode(), [start, end])
            cur.execute(f"insert into {target} ({names}) select {names} from ({sql}) as {MODEL_ALIAS} "
                        f"where {column} >= %s and {column} < %s".encode(), [start, end])
            rows = cur.rowcount if cur.rowcount >= 0 else 0
    except psycopg.Error as exc:
        raise _explain(exc, asset) from None
    cur.execute("insert into kiban.partitions (asset, start, rows) values (%s, %s, %s) on conflict (asset, start) "
                "do update set rows = excluded.rows, processed_at = now()", [asset.key, start, rows])
    return rows


def processed(cur: psycopg.Cursor[Any], asset: Asset) -> dict[datetime, int]:
    return dict(cur.execute("select start, rows from kiban.partitions where asset = %s", [asset.key]).fetchall())


def data_changes(cur: psycopg.Cursor[Any]) -> dict[str, str]:
    """asset → a token of the data changes made to it since its last build."""
    rows = cur.execute("select asset, left(encode(sha256(convert_to(string_agg(token, ',' order by token), "
                       "'UTF8')), 'hex'), 16) from kiban.data_changes group by asset").fetchall()
    return {str(a): str(t) for a, t in rows}


__all__ = ["TABLES", "data_changes", "full", "one", "processed", "recent", "record_full", "since", "status"]
