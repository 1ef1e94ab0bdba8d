"""The DuckDB sessions collection opens: in UTC, with bounded memory, spilling to a folder of the load's own.

A session's ``TimeZone`` decides what a naive text timestamp means when it is cast to ``TIMESTAMPTZ`` (and
how ``TIMESTAMPTZ`` values print): left alone it is the machine's zone, so the same file would land
different instants on a server in Tokyo and one in UTC. Every session collection opens is UTC.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from kiban.quoting import literal as _literal

MEMORY_LIMIT = "512MB"  # per session; KIBAN_COLLECT_MEMORY overrides it (sorts and joins spill beyond it)


def memory_limit() -> str:
    return os.environ.get("KIBAN_COLLECT_MEMORY", MEMORY_LIMIT)


def session(database: str | Path | None = None, *, spill: Path | None = None, bounded: bool = False,
            config: dict[str, str | bool | int | float | list[str]] | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection (in memory, or on ``database``) whose TimeZone is UTC.

    ``spill``: the folder sorts and joins spill to; ``bounded``: cap its memory (:func:`memory_limit`)."""
    settings: dict[str, str | bool | int | float | list[str]] = dict(config or {})
    if bounded:
        settings.setdefault("memory_limit", memory_limit())
    con = duckdb.connect(str(database) if database is not None else ":memory:", config=settings)
    try:
        con.execute("set TimeZone = 'UTC'")  # after connecting: ICU loads with the first use of the setting
        con.execute("set enable_progress_bar = false")
        if spill is not None:
            con.execute("set temp_directory = " + _literal(str(spill)))
    except BaseException:
        con.close()
        raise
    return con
