"""Incremental models on Spark (issue 18): partitions replaced by writing a new version, swapped in atomically.

A Spark table's versions are immutable Parquet folders behind a pointer (``engines.spark``), so a partition is
"replaced" by writing a new version: the published rows outside the partitions being rebuilt, plus the model's
rows inside them (``unionByName``). That rewrites the table's files — the price of an immutable folder — but the
model itself computes only the recent partitions, and the swap keeps readers on the old version until it is done.

What has been processed lives in the pointer, next to the version it describes: ``code`` (``code_of``: the SQL,
time column and grain the rows were computed with), ``partitions`` (start → rows), ``changes`` (a token when a
backfill replaced partitions since the last build: the published version carries it, so models reading the
table are rebuilt by the next run). Partition starts are wall times of the session's time zone — the project's.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from kiban.engines.partition_code import code_of
from kiban.errors import KibanError
from kiban.project import Asset

GRAINS = ("day", "hour", "month")


def _column(asset: Asset) -> str:
    return "`" + (asset.config.time_column or "").replace("`", "``") + "`"


def _grain(asset: Asset) -> str:
    grain = asset.config.partition_grain
    if grain not in GRAINS:
        raise KibanError(f"{asset.key}: partition_grain '{grain}' is not one of {', '.join(GRAINS)}")
    return grain


def _literal(moment: datetime) -> str:
    return f"timestamp '{moment.replace(tzinfo=None).isoformat(sep=' ')}'"  # a wall time of the session's zone


def back(start: datetime, grain: str, steps: int) -> datetime:
    """``steps`` partitions before ``start``."""
    if grain == "hour":
        return start - timedelta(hours=steps)
    if grain == "day":
        return start - timedelta(days=steps)
    months = start.year * 12 + start.month - 1 - steps
    return start.replace(year=months // 12, month=months % 12 + 1)


def status(pointer: dict[str, Any] | None, asset: Asset, model: Any, published: Any) -> str | None:
    """Why ``asset`` cannot take a partition as published (``pointer``, its frame ``published``) — None: it can."""
    if not pointer or pointer.get("kind") != "table" or "code" not in pointer:
        return f"{asset.key} has not been built as an incremental model yet"
    if pointer["code"] != code_of(asset):
        return f"{asset.key} changed (SQL, time_column or grain) since it was last built"
    if [(f.name, f.dataType.simpleString()) for f in model.schema.fields] != \
            [(f.name, f.dataType.simpleString()) for f in published.schema.fields]:
        return f"the columns of {asset.key} changed since it was last built"
    return None


def since(pointer: dict[str, Any], asset: Asset) -> datetime | None:
    """Where an incremental build starts: the newest processed partition minus ``lookback`` (None: none)."""
    filled = [datetime.fromisoformat(s) for s, rows in pointer.get("partitions", {}).items() if rows > 0]
    if not filled:
        return None
    return back(max(filled), _grain(asset), int(asset.config.partition_lookback))


def whole(model: Any, asset: Asset) -> Any:
    """The whole model: rows with a time (an incremental model leaves the others out)."""
    return model.where(f"{_column(asset)} is not null")


def recent(model: Any, published: Any, asset: Asset, start: datetime) -> Any:
    """The published rows before ``start`` and the model's from ``start`` on."""
    column = _column(asset)
    return published.where(f"{column} < {_literal(start)}").unionByName(
        model.where(f"{column} >= {_literal(start)}"))


def between(model: Any, published: Any, asset: Asset, start: datetime, end: datetime) -> Any:
    """The published rows outside [start, end) and the model's inside it."""
    column, low, high = _column(asset), _literal(start), _literal(end)
    return published.where(f"not ({column} >= {low} and {column} < {high})").unionByName(
        model.where(f"{column} >= {low} and {column} < {high}"))


def counted(spark: Any, relation: str, asset: Asset) -> dict[str, int]:
    """start (ISO wall time) → rows of every partition of ``relation``."""
    column, grain = _column(asset), _grain(asset)
    rows = spark.sql(f"select cast(date_trunc('{grain}', {column}) as timestamp_ntz) as p, count(*) from {relation} "
                     f"where {column} is not null group by 1").collect()
    return {row[0].isoformat(): int(row[1]) for row in rows}


def processed(pointer: dict[str, Any] | None) -> dict[datetime, int]:
    return {datetime.fromisoformat(s): int(n) for s, n in ((pointer or {}).get("partitions") or {}).items()}


__all__ = ["back", "between", "code_of", "counted", "processed", "recent", "since", "status", "whole"]
