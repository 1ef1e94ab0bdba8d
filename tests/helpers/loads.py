"""A file source (data/*.csv landing as lake.seed_items) and a mart that counts and sums it (shared by the loads and
shared-lake tests)."""

from __future__ import annotations

from pathlib import Path

import duckdb

SOURCE = "type: files\ntables:\n  items:\n    path: data/*.csv\n    settle: 0\n"
MODEL = {"models/mart/n.sql": "select count(*) as n, sum(v::int) as total from lake.seed_items"}


def mart(root: Path) -> tuple[int, int]:
    con = duckdb.connect(str(root / "kiban.duckdb"), read_only=True)
    try:
        return con.execute("select n, total from mart.n").fetchone()  # type: ignore[return-value]
    finally:
        con.close()
