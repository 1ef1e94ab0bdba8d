"""Incremental models on DuckDB: time partitions replaced inside the publishing transaction.

An incremental model's SQL stays plain DuckDB. kiban filters the *outer* query on the model's
``time_column`` (``select * from (<model>) where t >= ? and t < ?``); DuckDB pushes such filters
down to Parquet row groups and zone maps wherever the time column passes through unchanged, so a
day's partition reads little more than that day's data.

What has been processed is kept next to the data, in two small tables of the warehouse file
(``main.__kiban_incremental``: the code each model was built with; ``main.__kiban_partitions``: one row
per processed partition with its row count). They change in the same transaction as the rows they
describe, so they are always true to the published table, whatever happened to the process.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb

from kiban.engines.partition_code import code_of
from kiban.errors import KibanError
from kiban.project import Asset
from kiban.quoting import literal, quote

STATE = '"main"."__kiban_incremental"'
PARTITIONS = '"main"."__kiban_partitions"'
CHANGES = '"main"."__kiban_data_changes"'  # data changed without a rebuild: one row per replaced partition
MODEL_ALIAS = "__kiban_model"


def value(v: str | int | datetime) -> str:
    """A typed SQL literal for kiban's own bookkeeping values (asset keys, hashes, partition starts, counts).

    Not bound: any bound parameter makes DuckDB's Python client import pandas (≈0.3 s per process), which
    a run must not pay. The values are kiban's own (never a source's data), rendered exactly.
    """
    if isinstance(v, bool):
        raise TypeError("no booleans here")
    if isinstance(v, int):
        return str(int(v))
    if isinstance(v, datetime):
        cast = "timestamptz" if v.tzinfo is not None else "timestamp"
        return f"{literal(v.isoformat(sep=' '))}::{cast}"
    if isinstance(v, str):
        return literal(v)
    raise TypeError(f"no SQL literal for {type(v).__name__}")


def create_state_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"create table if not exists {STATE} (asset varchar, code varchar, built_at timestamp)")
    con.execute(f"create table if not exists {PARTITIONS} "
                "(asset varchar, start timestamp, rows bigint, processed_at timestamp)")
    con.execute(f"create table if not exists {CHANGES} (asset varchar, token varchar)")


def record_data_change(cur: duckdb.DuckDBPyConnection, asset: Asset, token: str) -> None:
    """A partition of ``asset`` was replaced outside a build (inside the caller's transaction)."""
    cur.execute(f"insert into {CHANGES} values ({value(asset.key)}, {value(token)})")


def clear_data_changes(cur: duckdb.DuckDBPyConnection, asset: Asset) -> None:
    """``asset`` was built whole: its version is its fingerprint again (inside the caller's transaction)."""
    cur.execute(f"delete from {CHANGES} where asset = {value(asset.key)}")


def data_changes(cur: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """asset → a token of the data changes made to it since its last build (none: no such change)."""
    try:
        rows = cur.execute(f"select asset, sha256(string_agg(token, ',' order by token)) from {CHANGES} "
                           "group by asset").fetchall()
    except duckdb.CatalogException:  # a warehouse prepared by an older kiban: no changes recorded yet
        return {}
    return {str(a): str(t)[:16] for a, t in rows}


def _model(asset: Asset) -> str:
    return (asset.sql or "").strip().rstrip(";")


def _column(asset: Asset) -> str:
    return quote(asset.config.time_column or "")


def _interval(asset: Asset) -> str:
    return {"day": "interval '1 day'", "hour": "interval '1 hour'", "month": "interval '1 month'"}[
        asset.config.partition_grain]


def _explain(exc: duckdb.Error, asset: Asset) -> KibanError:
    column = asset.config.time_column
    where = asset.config_path or asset.key
    if isinstance(exc, duckdb.BinderException) and column and column.lower() in str(exc).lower():
        return KibanError(f"time_column '{column}' is not a column of {asset.key}",
                          f"set time_column in {where} to one of its date or timestamp columns")
    if isinstance(exc, duckdb.ConversionException):
        return KibanError(f"time_column '{column}' of {asset.key} is not a date or timestamp")
    raise exc


def status(cur: duckdb.DuckDBPyConnection, asset: Asset, target: str) -> str | None:
    """Why ``asset`` cannot take a partition as it is published — None when it can."""
    row = cur.execute(f"select code from {STATE} where asset = {value(asset.key)}").fetchone()
    if row is None:
        return f"{asset.key} has not been built as an incremental model yet"
    if row[0] != code_of(asset):
        return f"{asset.key} changed (SQL, time_column or grain) since it was last built"
    if _columns(cur, f"select * from ({_model(asset)}) as {MODEL_ALIAS}") != _columns(cur, target):
        return f"the columns of {asset.key} changed since it was last built"
    return None


def _columns(cur: duckdb.DuckDBPyConnection, relation: str) -> list[tuple[Any, ...]]:
    return [tuple(r[:2]) for r in cur.execute(f"describe {relation}").fetchall()]


def build(cur: duckdb.DuckDBPyConnection, asset: Asset, target: str, exists: bool, full_refresh: bool) -> int:
    """Inside the caller's transaction: replace the partitions that may have changed; returns the table's rows.

    A full build (first build, ``--full-refresh``, changed code or columns) recreates the table. Otherwise
    the partitions from the newest processed one minus ``lookback`` onwards are deleted and computed again.
    Rows whose time column is null belong to no partition and are left out of an incremental model.
    """
    column, grain = _column(asset), asset.config.partition_grain  # grain: one of three literals
    since: datetime | None = None
    if exists and not full_refresh and status(cur, asset, target) is None:
        row = cur.execute(f"select max(start) - {value(int(asset.config.partition_lookback))} * "
                          f"{_interval(asset)} from {PARTITIONS} "
                          f"where asset = {value(asset.key)} and rows > 0").fetchone()
        since = row[0] if row else None
    try:
        if since is None:
            cur.execute(f"create or replace table {target} as select * from ({_model(asset)}) as {MODEL_ALIAS} "
                        f"where {column} is not null")
            key = value(asset.key)
            cur.execute(f"delete from {PARTITIONS} where asset = {key}")
            cur.execute(f"delete from {STATE} where asset = {key}")
            cur.execute(f"insert into {STATE} values ({key}, {value(code_of(asset))}, now()::timestamp)")
            cur.execute(f"insert into {PARTITIONS} select {key}, date_trunc('{grain}', {column})::timestamp as p, "
                        f"count(*), now()::timestamp from {target} where {column} is not null group by p")
        else:
            key, start = value(asset.key), value(since)
            cur.execute(f"delete from {target} where {column} >= {start}")
            cur.execute(f"insert into {target} by name select * from ({_model(asset)}) as {MODEL_ALIAS} "
                        f"where {column} >= {start}")
            cur.execute(f"delete from {PARTITIONS} where asset = {key} and start >= {start}")
            cur.execute(f"insert into {PARTITIONS} select {key}, date_trunc('{grain}', {column})::timestamp as p, "
                        f"count(*), now()::timestamp from {target} where {column} >= {start} group by p")
    except (duckdb.BinderException, duckdb.ConversionException) as exc:
        raise _explain(exc, asset) from None
    row = cur.execute(f"select count(*) from {target}").fetchone()
    return int(row[0]) if row else 0


def build_partition(cur: duckdb.DuckDBPyConnection, asset: Asset, target: str, start: datetime,
                    end: datetime) -> int:
    """Inside the caller's transaction: replace the rows of one partition [start, end); returns its rows."""
    column = _column(asset)
    try:
        cur.execute(f"delete from {target} where {column} >= ? and {column} < ?", [start, end])
        created = cur.execute(f"insert into {target} by name select * from ({_model(asset)}) as {MODEL_ALIAS} "
                              f"where {column} >= ? and {column} < ?", [start, end]).fetchone()
    except (duckdb.BinderException, duckdb.ConversionException) as exc:
        raise _explain(exc, asset) from None
    rows = int(created[0]) if created else 0
    cur.execute(f"delete from {PARTITIONS} where asset = ? and start = ?", [asset.key, start])
    cur.execute(f"insert into {PARTITIONS} values (?, ?, ?, now()::timestamp)", [asset.key, start, rows])
    return rows


def processed(cur: duckdb.DuckDBPyConnection, asset: Asset) -> dict[datetime, int]:
    """The partitions of ``asset`` as published: start → rows."""
    return dict(cur.execute(f"select start, rows from {PARTITIONS} where asset = ?", [asset.key]).fetchall())
