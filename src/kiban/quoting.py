"""Identifiers and string literals in standard SQL spelling (DuckDB, PostgreSQL, SQLite), for the SQL text kiban
writes itself: names from the project's config and DDL, where no parameter can be bound. Never for data values,
which are bound.

One definition for the whole package, so every layer escapes the same way; a core leaf (imports nothing of
kiban). Spark's backtick spelling stays in ``kiban.engines.spark``; value literals of checks (dates, numbers,
booleans) in ``kiban.checks.quoting``.
"""

from __future__ import annotations


def quote(name: str) -> str:
    """A quoted identifier: ``a"b`` → ``"a""b"``."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """A SQL string literal: ``it's`` → ``'it''s'``."""
    return "'" + text.replace("'", "''") + "'"


def relation(key: str) -> str:
    """An asset key ``layer.name`` as a quoted relation: ``"layer"."name"``."""
    layer, _, name = key.partition(".")
    return f"{quote(layer)}.{quote(name)}"
