"""Reading a project's DuckDB warehouse (kiban.duckdb) read-only, as a test checks what a run built, and making
projects outside pytest's per-test ``make_project`` (for a module-scoped fixture)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb

from tests.conftest import write_files, write_parquet


def query(root: Path, sql: str) -> list[tuple[object, ...]]:
    """Every row of ``sql`` over the project's warehouse, opened read-only."""
    con = duckdb.connect(str(root / "kiban.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def project_maker(base: Path, name: str = "shop", timezone: str = "UTC") -> Callable[..., Path]:
    """``make_project`` for projects under ``base`` (a module's tmp_path_factory folder):
    ``maker(files, lake=None, root="project")``."""

    def make_project(files: dict[str, str], lake: dict[str, str] | None = None, root: str = "project") -> Path:
        target = base / root
        write_files(target, {"kiban.yml": f"name: {name}\ntimezone: {timezone}\n", **files})
        for table, sql in (lake or {}).items():
            write_parquet(target / "lake" / table / "part-0.parquet", sql)
        return target.resolve()

    return make_project
