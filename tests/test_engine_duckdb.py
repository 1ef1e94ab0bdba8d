"""The DuckDB engine: names the graph accepts are names DuckDB finds; the lake is the committed files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb

from kiban.engines.base import COLLECTED_VERSION, EMPTY_LAKE, CollectedTable
from kiban.engines.lake import derived_views, lake_tables
from kiban.project import load_project
from kiban.run import RunOptions, run_project
from tests.conftest import write_parquet


def test_unqualified_cross_layer_names_build(make_project: Callable[..., Path]) -> None:
    root = make_project({
        # `orders` is only in the lake, `order_totals` only in the warehouse: the graph resolves both
        "models/warehouse/order_totals.sql": "select customer_id, sum(amount) as total from orders group by all",
        "models/mart/top_customers.sql": "select t.customer_id, t.total, count(*) as orders from order_totals t "
                                         "join orders o using (customer_id) group by all",
    }, lake={"orders": "select i as order_id, i % 3 as customer_id, i * 1.5 as amount from range(10) t(i)"})
    result = run_project(load_project(root), RunOptions())
    assert result.status == "success", {k: o.error for k, o in result.outcomes.items()}
    con = duckdb.connect(str(root / "kiban.duckdb"), read_only=True)
    try:
        rows = con.execute("select * from mart.top_customers order by customer_id").fetchall()
    finally:
        con.close()
    assert rows == [(0, 27.0, 4), (1, 18.0, 3), (2, 22.5, 3)]


def test_lake_tables_are_the_committed_files_not_the_folder(make_project: Callable[..., Path]) -> None:
    root = make_project({}, lake={"plain": "select 1 as a", "pos_orders": "select 1 as a"})
    committed = write_parquet(root / "lake" / "pos_orders" / "load_date=2026-11-29" / "L1.parquet", "select 2 as a")
    project = load_project(root)
    assets = sorted((a for a in project.assets.values() if a.layer == "lake"), key=lambda a: a.name)
    collected = {"lake.pos_orders": CollectedTable(version="L1", files=(str(committed),))}
    plain, orders = lake_tables(assets, collected)
    assert orders.files == (str(committed),)
    assert orders.version == COLLECTED_VERSION + "L1"
    assert plain.files == (str(root / "lake" / "plain" / "part-0.parquet"),)
    assert plain.version != EMPTY_LAKE
    nothing = lake_tables(assets, {"lake.pos_orders": CollectedTable(version="", files=())})[1]
    assert nothing.files == ()
    assert nothing.version == EMPTY_LAKE  # uncommitted files are never read


def test_derived_views_list_columns_and_skip_missing_keys() -> None:
    table = CollectedTable(version="L1", files=("x",), primary_key=("id",), cursor="updated_at", deletes=True,
                           history=True)
    columns = ["id", "v", "updated_at", "_load_id", "_loaded_at", "_deleted"]
    views = dict(derived_views("pos_c", table, columns))
    assert set(views) == {"pos_c_latest", "pos_c_history"}
    assert '"updated_at" desc nulls last' in views["pos_c_latest"]
    assert "_deleted" in views["pos_c_latest"]
    assert "__kiban_rn" not in views["pos_c_latest"].split(" from ")[0]  # the helper stays inside
    assert derived_views("pos_c", table, ["v", "_loaded_at"]) == []  # the key is not in the data (yet)


def test_builds_running_at_once_share_duckdbs_threads(make_project: Callable[..., Path], monkeypatch: Any) -> None:
    """Two builds at once get half the threads each; one alone (a heavy model, the tail of a run) gets them all,
    and so does what follows the builds. Changing them while queries run loses nothing."""
    from kiban.engines.duckdb import DuckDBEngine

    engine = DuckDBEngine(":memory:")
    configured = int(engine.con.execute("select current_setting('threads')").fetchone()[0])
    seen = []
    for running, light in ((2, False), (3, False), (1, False), (2, True), (1, True), (2, False), (0, False)):
        engine.share(running, light)
        seen.append(int(engine.con.execute("select current_setting('threads')").fetchone()[0]))
    engine.close()
    assert seen == [max(1, configured // 2), max(1, configured // 3), configured, 1, 1, max(1, configured // 2),
                    configured]

    models = {f"models/warehouse/w{i:02d}.sql": f"select k, v * {i} as v from lake.src" for i in range(24)}
    models["models/mart/total.sql"] = " union all ".join(f"select sum(v) as s from warehouse.w{i:02d}"
                                                         for i in range(24))
    root = make_project({**models, "kiban.yml": "name: shared\nwarehouse: duckdb:///kiban.duckdb\nthreads: 3\n"},
                        lake={"src": "select i as k, i * 1.0 as v from range(20000) t(i)"})
    shares: list[int] = []
    real = DuckDBEngine.share
    monkeypatch.setattr(DuckDBEngine, "share", lambda self, running, light=False: (shares.append(running),
                                                                                     real(self, running, light)))
    result = run_project(load_project(root), RunOptions())
    assert result.status == "success", {k: o.error for k, o in result.outcomes.items()}
    assert max(shares) == 3
    assert shares[-1] == 1
    con = duckdb.connect(str(root / "kiban.duckdb"), read_only=True)
    try:
        totals = [r[0] for r in con.execute("select s from mart.total").fetchall()]
    finally:
        con.close()
    assert sorted(totals) == sorted(float(i * sum(range(20000))) for i in range(24))
