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
    return [(str(r[0]), str(r[1])) for r in db.execute(f"describe lake.{quoted(name)}").fetchall()]


def write_seed(db: Any, name: str, folder: Path) -> None:
    """Write ``lake.<name>`` as ``folder/<name>.parquet``."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}.parquet"
    db.execute(f"copy lake.{quoted(name)} to {literal(str(target))} (format parquet)")
