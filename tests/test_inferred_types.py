"""CSV sources may ask for inferred types (``infer_types: true``); ``kiban show`` lists them so they can be pinned."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from kiban import operate
from kiban.catalog.lake_types import lake_types
from kiban.project import load_project
from kiban.run import RunOptions
from tests.conftest import write_files

SOURCE = """type: files
tables:
  sales:
    path: data/sales_*.csv
    infer_types: true
    columns:
      - {name: code, type: varchar}
"""


def run(root: Path) -> None:
    operate.run(load_project(root), RunOptions())


def column_types(root: Path) -> dict[str, str]:
    con = duckdb.connect(str(root / "kiban.duckdb"), read_only=True)
    try:
        return {str(r[0]): str(r[1]) for r in con.execute("describe lake.shop_sales").fetchall()}
    finally:
        con.close()


def test_inferred_types_land_and_stay(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    root = write_files(tmp_path / "p", {
        "kiban.yml": "name: typed\ntimezone: UTC\n", "sources/shop.yml": SOURCE,
        "data/sales_1.csv": "code,n,amount,day,at,ok,note\n"
                            "007,1,1.5,2024-01-02,2024-01-02 10:00:00,true,x\n"
                            "010,2,,2024-01-03,2024-01-03 11:30:00,false,\n"})
    run(root)
    types = column_types(root)
    assert {k: types[k] for k in ("code", "n", "amount", "day", "at", "ok", "note")} == {
        "code": "VARCHAR", "n": "BIGINT", "amount": "DOUBLE", "day": "DATE", "at": "TIMESTAMP", "ok": "BOOLEAN",
        "note": "VARCHAR"}  # declared code stays text: 007 keeps its zeros
    how = {n: h for n, _, h in lake_types(load_project(root), "lake.shop_sales")}
    assert how["code"] == "declared"
    assert how["n"] == "inferred"
    assert how["note"] == "text"

    # a later file whose n is not a number: the type stays, the row is quarantined
    write_files(root, {"data/sales_2.csv": "code,n,amount,day,at,ok,note\n011,many,2,2024-01-04,2024-01-04 01:00:00,"
                                           "true,y\n012,3,2,2024-01-04,2024-01-04 02:00:00,true,z\n"})
    run(root)
    assert column_types(root)["n"] == "BIGINT"
    con = duckdb.connect(str(root / "kiban.duckdb"), read_only=True)
    try:
        assert con.execute("select count(*) from lake.shop_sales").fetchone() == (3,)
    finally:
        con.close()

    shown = cli("--project", root, "show", "lake.shop_sales")
    assert shown.returncode == 0, shown.stderr
    assert "inferred" in shown.stdout
    assert "pin inferred types" in shown.stdout
    data = json.loads(cli("--project", root, "show", "lake.shop_sales", "--json").stdout)
    assert {"column": "n", "type": "BIGINT", "how": "inferred"} in data["types"]
