"""Seeds → typed lake tables: DuckDB's CSV sniffer infers the types, ``column_types`` pins them.

A seed is loaded once into the import's DuckDB (so macros that introspect it see its columns) and
written as Parquet under ``lake/<seed>/`` of the new project: a typed lake table, with the types
kept in the Parquet file and listed in the seed's sidecar, where a person can pin them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlglot import exp


def quoted(name: str) -> str:
    return exp.to_identifier(name, quoted=True).sql("duckdb")


def literal(value: str) -> str:
    return exp.Literal.string(value).sql("duckdb")


def load_seed(db: Any, path: Path, name: str, config: dict[str, Any]) -> list[tuple[str, str]]:
    """Create ``lake.<name>`` from the CSV; return its (column, type) pairs."""
    options = ["header = true"]
    if config.get("delimiter"):
        options.append(f"delim = {literal(str(config['delimiter']))}")
    column_types = config.get("column_types") or {}
    if isinstance(column_types, dict) and column_types:
        # dbt looks each of the CSV's columns up in column_types: a key no column has is ignored (one
        # folder-wide +column_types serves seeds with different columns), not an error
        header = {str(r[0]) for r in db.execute(f"describe select * from read_csv({literal(str(path))}, "
                                                 f"{', '.join(options)})").fetchall()}
        pairs = ", ".join(f"{literal(str(k))}: {literal(str(v))}" for k, v in column_types.items()
                          if str(k) in header)
        if pairs:
            options.append(f"types = {{{pairs}}}")
    db.execute(f"create or replace table lake.{quoted(name)} as select * from "
               f"read_csv({literal(str(path))}, {', '.join(options)})")
    pinned = {str(k) for k in column_types} if isinstance(column_types, dict) else set()
    _as_dbt_types(db, name, pinned)
    return [(str(r[0]), str(r[1])) for r in db.execute(f"describe lake.{quoted(name)}").fetchall()]


_WHOLE = {"TINYINT", "SMALLINT", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT"}


def _as_dbt_types(db: Any, name: str, pinned: set[str]) -> None:
    """dbt types a seed's whole numbers ``integer`` and its other numbers ``float8`` (agate's two kinds, which
    dbt-duckdb keeps): DuckDB's sniffer says BIGINT, which an enforced contract declaring ``integer`` refuses.
    A column whose values do not fit an INTEGER keeps BIGINT (dbt's seed would fail to load it)."""
    table = f"lake.{quoted(name)}"
    for column, dtype in [(str(r[0]), str(r[1])) for r in db.execute(f"describe {table}").fetchall()]:
        if column in pinned:
            continue
        if dtype in _WHOLE:
            low, high = db.execute(f"select min({quoted(column)})::hugeint, max({quoted(column)})::hugeint "
                                   f"from {table}").fetchone()
            if (low is None or low >= -(2**31)) and (high is None or high < 2**31):
                db.execute(f"alter table {table} alter {quoted(column)} type integer")
        elif dtype.startswith("DECIMAL") or dtype in ("FLOAT", "REAL"):
            db.execute(f"alter table {table} alter {quoted(column)} type double")


def write_seed(db: Any, name: str, folder: Path) -> None:
    """Write ``lake.<name>`` as ``folder/<name>.parquet``."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}.parquet"
    db.execute(f"copy lake.{quoted(name)} to {literal(str(target))} (format parquet)")
