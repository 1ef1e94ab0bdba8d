"""Python models: functions in models/<layer>/*.py, published like SQL models."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from kiban.errors import ProjectError, ProjectErrors
from kiban.graph import build_graph
from kiban.project import load_project
from tests.helpers.ml import run

LAKE = {"sales": "select (i % 3) as store_id, date '2026-01-01' + (i // 3)::int as day, (i % 7)::double as qty "
                  "from range(60) t(i)"}

TOTALS = '''
import kiban
import pyarrow as pa
import pyarrow.compute as pc


@kiban.asset
def store_totals(lake_sales: pa.Table) -> pa.Table:
    """Quantity per store."""
    return lake_sales.group_by("store_id").aggregate([("qty", "sum")]).rename_columns(["store_id", "qty"])
'''

SHARES = '''
import kiban
import pandas as pd


@kiban.asset(inputs={"totals": "warehouse.store_totals"})
def store_shares(totals: pd.DataFrame, scale: int = 100) -> pd.DataFrame:
    out = totals.copy()
    out["share"] = out["qty"] / out["qty"].sum() * scale
    return out.sort_values("store_id")
'''


def table(root: Path, relation: str) -> list[tuple[object, ...]]:
    con = duckdb.connect(str(root / "kiban.duckdb"), read_only=True)
    try:
        return con.execute(f"select * from {relation} order by all").fetchall()
    finally:
        con.close()


def comment(root: Path, schema: str, name: str) -> str:
    con = duckdb.connect(str(root / "kiban.duckdb"), read_only=True)
    try:
        return con.execute("select comment from duckdb_tables() where schema_name = ? and table_name = ?",
                           [schema, name]).fetchone()[0]
    finally:
        con.close()


def test_python_assets_are_built_in_order_and_published_with_their_fingerprint(make_project):
    root = make_project({"models/warehouse/totals.py": TOTALS, "models/mart/shares.py": SHARES}, lake=LAKE)
    graph = build_graph(load_project(root))
    assert graph.deps["warehouse.store_totals"] == ("lake.sales",)
    assert graph.deps["mart.store_shares"] == ("warehouse.store_totals",)  # explicit inputs=; `scale` is a setting
    result = run(root)
    assert result.status == "success", result.outcomes
    expected = table(root, "(select store_id, sum(qty) from lake.sales group by all)")
    assert table(root, "warehouse.store_totals") == expected
    assert len(expected) == 3
    shares = table(root, "mart.store_shares")
    assert [round(r[2], 2) for r in shares] == [round(q / sum(t for _, t in expected) * 100, 2) for _, q in expected]
    assert comment(root, "warehouse", "store_totals").startswith("kiban:")
    assert result.outcomes["warehouse.store_totals"].rows == 3
    again = run(root)
    assert again.status == "nothing"
    assert sorted(again.plan.fresh) == ["mart.store_shares", "warehouse.store_totals"]


def test_a_changed_function_rebuilds_it_and_what_reads_it(make_project):
    root = make_project({"models/warehouse/totals.py": TOTALS, "models/mart/shares.py": SHARES}, lake=LAKE)
    run(root)
    path = root / "models/warehouse/totals.py"
    path.write_text(path.read_text().replace('("qty", "sum")', '("qty", "max")'), encoding="utf-8")
    result = run(root)
    assert sorted(result.plan.build) == ["mart.store_shares", "warehouse.store_totals"]
    assert table(root, "warehouse.store_totals") == [(0, 6.0), (1, 6.0), (2, 6.0)]


def test_loading_a_project_does_not_import_its_python_models(make_project, tmp_path):
    marker = tmp_path / "imported"
    code = f"open({str(marker)!r}, 'w').close()\n" + TOTALS
    root = make_project({"models/warehouse/totals.py": code}, lake=LAKE)
    project = load_project(root)
    build_graph(project)
    assert project.assets["warehouse.store_totals"].python is not None
    assert not marker.exists()
    run(root)
    assert marker.exists()


def test_bare_names_annotations_subfolders_and_helpers(make_project):
    helper = "def double(x):\n    return x * 2\n"
    model = '''
import kiban
import pyarrow as pa
from helper_math import double


@kiban.asset
def doubled(sales) -> pa.Table:  # no annotation: an Arrow table
    assert isinstance(sales, pa.Table)
    return pa.table({"n": [double(sales.num_rows)]})
'''
    root = make_project({"models/warehouse/sub/doubled.py": model, "models/warehouse/sub/helper_math.py": helper},
                        lake=LAKE)  # in a subfolder, with a helper module next to it
    assert set(load_project(root).assets) == {"lake.sales", "warehouse.doubled"}  # a helper is not a model
    assert run(root).status == "success"
    assert table(root, "warehouse.doubled") == [(120,)]


def test_a_mart_may_not_read_a_mart_from_python_either(make_project):
    bad = SHARES.replace("warehouse.store_totals", "mart.other")
    root = make_project({"models/mart/shares.py": bad, "models/mart/other.sql": "select 1 as x"}, lake=LAKE)
    with pytest.raises(ProjectError) as err:
        build_graph(load_project(root))
    assert "may only read lake and warehouse" in str(err.value)
    assert "shares.py:7" in str(err.value)


def test_declaration_mistakes_name_the_file_and_line(make_project):
    code = "import kiban\nLINES = 'warehouse.x'\n\n\n@kiban.asset(inputs={'a': LINES})\ndef f(a):\n    return a\n"
    root = make_project({"models/warehouse/f.py": code})
    with pytest.raises((ProjectError, ProjectErrors)) as err:
        load_project(root)
    assert "must be a literal" in str(err.value)
    assert "f.py:5" in str(err.value)
    root = make_project({"models/warehouse/g.py": "import kiban\n@kiban.asset\ndef g(x:\n"}, root="p2")
    with pytest.raises(ProjectError, match="Python syntax error"):
        load_project(root)
    root = make_project({"models/warehouse/h.py": "import kiban\n\n@kiban.train()\ndef h(x):\n    pass\n"},
                        root="p3")
    with pytest.raises(ProjectError, match=r"h.py:4: @train on h needs metric="):
        load_project(root)


def test_an_error_in_the_function_fails_the_asset_and_keeps_the_old_table(make_project):
    root = make_project({"models/warehouse/totals.py": TOTALS}, lake=LAKE)
    run(root)
    before = table(root, "warehouse.store_totals")
    path = root / "models/warehouse/totals.py"
    path.write_text(path.read_text().replace('    return lake_sales', '    1 / 0\n    return lake_sales'),
                    encoding="utf-8")
    result = run(root)
    assert result.status == "failed"
    error = result.outcomes["warehouse.store_totals"].error
    assert "ZeroDivisionError" in error
    assert "totals.py:10" in error
    assert result.outcomes["warehouse.store_totals"].attempts == 1  # a bug in the code is not retried
    assert table(root, "warehouse.store_totals") == before


def test_returning_something_else_than_a_table_is_a_clear_error(make_project):
    code = "import kiban\n\n\n@kiban.asset\ndef broken(sales):\n    return 42\n"
    root = make_project({"models/warehouse/broken.py": code}, lake=LAKE)
    result = run(root)
    assert "broken() returned int, not a table" in result.outcomes["warehouse.broken"].error


def test_checks_in_a_sidecar_gate_a_python_asset(make_project):
    sidecar = "checks:\n  - row_count: {min: 1}\ncolumns:\n  - name: qty\n    checks: [{range: {max: 50}}]\n"
    root = make_project({"models/warehouse/totals.py": TOTALS, "models/warehouse/store_totals.yml": sidecar},
                        lake=LAKE)
    result = run(root)
    assert result.status == "failed"
    assert "range_qty" in result.outcomes["warehouse.store_totals"].error
    con = duckdb.connect(str(root / "kiban.duckdb"), read_only=True)
    try:
        assert con.execute("select count(*) from duckdb_tables() where table_name = 'store_totals'").fetchone() == (0,)
    finally:
        con.close()


# Each input kind: the function checks what it received, adds a column with that kind's own API, and returns
# the same kind. The published table then says what the function saw.
RECEIVED = '''
import kiban
import pandas as pd
import polars as pl
import pyarrow as pa


@kiban.asset
def received(lake_sales: ANNOTATION) -> ANNOTATION:
    kind = type(lake_sales)
    seen = kind.__module__.split(".")[0] + "." + kind.__name__
    return ADD_COLUMN
'''
ADD_COLUMN = {
    "pa.Table": 'lake_sales.append_column("seen", pa.array([seen] * lake_sales.num_rows))',
    "pd.DataFrame": "lake_sales.assign(seen=seen)",
    "pl.DataFrame": 'lake_sales.with_columns(pl.lit(seen).alias("seen"))',
}


@pytest.mark.parametrize(("annotation", "seen"), [
    ("pa.Table", "pyarrow.Table"),
    ("pd.DataFrame", "pandas.DataFrame"),
    ("pl.DataFrame", "polars.DataFrame"),
])
def test_an_input_arrives_as_its_annotation_asks_and_any_of_them_may_be_returned(make_project, annotation, seen):
    code = RECEIVED.replace("ANNOTATION", annotation).replace("ADD_COLUMN", ADD_COLUMN[annotation])
    root = make_project({"models/warehouse/received.py": code}, lake=LAKE)
    result = run(root)
    assert result.status == "success", {k: o.error for k, o in result.outcomes.items()}
    assert table(root, "(select distinct seen from warehouse.received)") == [(seen,)]
    # the values made the round trip through the frame library unchanged
    assert table(root, "(select store_id, day, qty from warehouse.received)") == table(root, "lake.sales")
