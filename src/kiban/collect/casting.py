"""Declared column types, enforced: a value that does not cast sends its row to quarantine with the reason.

Types are DuckDB's (as in checks and contracts). Each batch is cast by DuckDB in one statement that
also says, per declared column, which rows failed; the rows that failed leave the batch as
:class:`BadRow` s carrying their raw values (JSON) so that a later replay can cast them again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from kiban.collect.connector import BadRow
from kiban.collect.spec import SOURCE_FILE, SOURCE_LINE
from kiban.quoting import quote

RAW_LIMIT = 4000  # characters of a refused row kept in quarantine


@dataclass(frozen=True)
class Declared:
    """The declared types of a table: column → DuckDB type."""

    types: dict[str, str]
    key: tuple[str, ...] = ()  # primary key columns: a refused row's location names them
    # column → what to do about a refused value, added to its reason (a type the loader chose, not the user)
    hints: dict[str, str] = field(default_factory=dict)

    def missing(self, names: Sequence[str]) -> list[str]:
        present = set(names)
        return [c for c in self.types if c not in present]


_DECIMAL = re.compile(r"\s*(?:DECIMAL|NUMERIC)\s*(?:\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\))?\s*", re.IGNORECASE)


def decimal_scale(kind: str) -> int | None:
    """The scale of a DuckDB DECIMAL type (``DECIMAL`` alone is DECIMAL(18,3)); None for any other type."""
    match = _DECIMAL.fullmatch(kind)
    if match is None:
        return None
    if match.group(1) is None:
        return 3
    return int(match.group(2) or 0)


def _rounds(column: str, scale: int) -> str:
    """SQL: the text in ``column`` has a non-zero digit past ``scale`` decimals — DuckDB's cast would round it
    (``try_cast('0.1234567891' as DECIMAL(38,9))`` is 0.123456789, no error): such a value is refused, never
    rounded. Plain notation only (what databases send); a value in exponent notation is cast as DuckDB does."""
    return f"regexp_matches(trim({column}), '^[+-]?[0-9]*\\.[0-9]{{{scale}}}[0-9]*[1-9]')"


def _too_precise(value: Any, scale: int) -> bool:
    return isinstance(value, str) and re.match(rf"[+-]?[0-9]*\.[0-9]{{{scale}}}[0-9]*[1-9]", value.strip()) is not None


def raw_text(row: dict[str, Any]) -> str:
    """A refused row as JSON text (metadata columns left out), cut to RAW_LIMIT characters."""
    text = json.dumps({k: v for k, v in row.items() if k not in (SOURCE_FILE, SOURCE_LINE)},
                      default=str, ensure_ascii=False)
    return text[:RAW_LIMIT]


def location_of(row: dict[str, Any], key: tuple[str, ...], ordinal: int) -> tuple[str, str | None, int | None]:
    """Where a row came from: ``file:line`` for files, ``key=value`` for keyed tables, else ``row N``."""
    file, line = row.get(SOURCE_FILE), row.get(SOURCE_LINE)
    if file is not None:
        return (f"{file}:{line}" if line is not None else str(file)), str(file), \
            (int(line) if line is not None else None)
    if key and all(k in row for k in key):
        return ", ".join(f"{k}={row[k]}" for k in key), None, None
    return f"row {ordinal}", None, None


def cast_batch(con: duckdb.DuckDBPyConnection, batch: pa.RecordBatch, declared: Declared,
               first_ordinal: int) -> tuple[pa.Table, list[BadRow]]:
    """``batch`` with its declared columns cast, and the rows that did not cast (with their reasons).

    ``first_ordinal`` numbers the rows of the load (1-based) for locations when nothing better exists."""
    names = batch.schema.names
    wanted = [c for c in declared.types if c in names]
    if not wanted:
        return _keyed(pa.Table.from_batches([batch]), batch, declared, first_ordinal, [])
    view = "__kiban_batch"
    con.register(view, batch)
    try:
        select = []
        exact = _exact(batch, declared, wanted)
        for name in names:
            if name in declared.types:
                cast = f"try_cast({quote(name)} as {declared.types[name]})"
                if name in exact:
                    cast = f"case when {_rounds(quote(name), exact[name])} then null else {cast} end"
                select.append(f"{cast} as {quote(name)}")
            else:
                select.append(quote(name))
        failed = [f"({quote(c)} is not null and (try_cast({quote(c)} as {declared.types[c]}) is null"
                  f"{' or ' + _rounds(quote(c), exact[c]) if c in exact else ''})) as {quote('__bad_' + c)}"
                  for c in wanted]
        table = con.execute(f"select {', '.join(select + failed)} from {view}").to_arrow_table()
    finally:
        con.unregister(view)
    flags = [table.column("__bad_" + c) for c in wanted]
    table = table.drop_columns(["__bad_" + c for c in wanted])
    any_bad = flags[0]
    for flag in flags[1:]:
        any_bad = pc.or_(any_bad, flag)
    if not pc.any(any_bad).as_py():
        return _keyed(table, batch, declared, first_ordinal, [])
    bad_rows: list[BadRow] = []
    original = pa.Table.from_batches([batch])
    positions = pc.indices_nonzero(any_bad).to_pylist()
    for index in positions:
        row = {name: original.column(name)[index].as_py() for name in names}
        column = next(c for c, flag in zip(wanted, flags, strict=True) if flag[index].as_py())
        location, file, line = location_of(row, declared.key, first_ordinal + index)
        kind = declared.types[column]
        reason = f"column {column}: {str(row[column])[:200]!r} is not a {kind}"
        if column in exact and _too_precise(row[column], exact[column]):
            reason += f" (more than {exact[column]} decimals: it would be rounded)"
        if column in declared.hints:
            reason += f"; {declared.hints[column]}"
        bad_rows.append(BadRow(location=location, raw=raw_text(row), reason=reason, column=column, file=file,
                               line=line))
    return _keyed(table, batch, declared, first_ordinal, bad_rows, any_bad)


def _exact(batch: pa.RecordBatch, declared: Declared, wanted: list[str]) -> dict[str, int]:
    """The text columns declared DECIMAL, with their scales: their values must fit exactly."""
    out: dict[str, int] = {}
    for name in wanted:
        kind = batch.schema.field(name).type
        scale = decimal_scale(declared.types[name])
        if scale is not None and (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            out[name] = scale
    return out


def _keyed(table: pa.Table, original: pa.RecordBatch, declared: Declared, first_ordinal: int,
           bad_rows: list[BadRow], refused: pa.ChunkedArray | None = None) -> tuple[pa.Table, list[BadRow]]:
    """``table`` (the cast rows, in the order read) without the rows refused already (``refused``, with their
    ``bad_rows``) and without those whose primary key has a NULL, which join the refused: a row without its key
    cannot be told from another one — de-duplication on the key would keep one of them and count the others as
    dropped, and ``_latest`` would show one row for all of them. (``original``: the rows as read.)"""
    keys = [k for k in declared.key if k in table.column_names]
    nulls = [pc.is_null(table.column(k)) for k in keys]
    any_null = nulls[0] if nulls else None
    for flag in nulls[1:]:
        any_null = pc.or_(any_null, flag)
    if refused is not None and any_null is not None:
        any_null = pc.and_(any_null, pc.invert(refused))
    if any_null is None or not pc.any(any_null).as_py():
        return (table if refused is None else table.filter(pc.invert(refused))), bad_rows
    names = original.schema.names
    out = list(bad_rows)
    for index in pc.indices_nonzero(any_null).to_pylist():
        row = {name: original.column(name)[index].as_py() for name in names}
        column = next(k for k, flag in zip(keys, nulls, strict=True) if flag[index].as_py())
        location, file, line = location_of(row, (), first_ordinal + index)
        out.append(BadRow(location=location, raw=raw_text(row),
                          reason=f"primary key column {column} is NULL: the row cannot be told from others",
                          column=column, file=file, line=line))
    keep = pc.invert(any_null if refused is None else pc.or_(any_null, refused))
    return table.filter(keep), out
