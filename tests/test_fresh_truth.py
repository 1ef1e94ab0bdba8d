"""Freshness that cannot lie: a model called fresh holds exactly what a clean build of the same state holds.

Each case was a way main served stale data as fresh: a PIVOT dependency nobody saw, a blocking check added
after the model was built, a backfill of an input that left its readers as they were.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import duckdb

from kiban import operate
from kiban.project import load_project
from kiban.run import RunOptions
from kiban.run.backfill import BackfillOptions, run_backfill
from tests.conftest import write_parquet

PAYMENTS = ("select i as id, i % 7 as order_id, ['card', 'cash', 'coupon'][1 + i % 3] as payment_method, "
            "i % 5 + 1 as amount from range(40) t(i)")
JAFFLE = {
    "models/warehouse/stg_payments.sql": "select id, order_id, payment_method, amount from lake.raw_payments",
    # the plain-SQL replacement of dbt's Jinja loop over payment methods
    "models/mart/order_payments.sql": "pivot warehouse.stg_payments on payment_method using sum(amount) "
                                      "group by order_id",
}


def run(root: Path, **options: Any) -> Any:
    return operate.run(load_project(root), RunOptions(**options)).result


def table(root: Path, name: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(root / "kiban.duckdb"), read_only=True)
    try:
        return sorted(con.execute(f"select * from {name}").fetchall(), key=repr)
    finally:
        con.close()


def clean_build(root: Path, tmp: Path) -> Path:
    """The same project folder built from nothing."""
    copy = tmp / f"clean-{root.name}"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns(".kiban", "kiban.duckdb*"))
    assert run(copy).status == "success"
    return copy


def test_a_pivot_model_is_built_after_what_it_pivots_and_never_fresh_when_it_changed(make_project, tmp_path):
    root = make_project(JAFFLE, lake={"raw_payments": PAYMENTS})
    first = run(root)
    assert first.status == "success", {k: o.error for k, o in first.outcomes.items()}
    assert first.plan.build.index("warehouse.stg_payments") < first.plan.build.index("mart.order_payments")
    before = table(root, "mart.order_payments")
    (root / "models/warehouse/stg_payments.sql").write_text(
        "select id, order_id, payment_method, amount * 10 as amount from lake.raw_payments")
    second = run(root)
    assert "mart.order_payments" in second.plan.build
    assert "mart.order_payments" not in second.plan.fresh
    after = table(root, "mart.order_payments")
    assert after == [(r[0], *(None if v is None else v * 10 for v in r[1:])) for r in before]
    assert after == table(clean_build(root, tmp_path), "mart.order_payments")


def test_adding_a_failing_blocking_check_makes_the_next_run_judge_the_model(make_project):
    orders = "select id, ['placed', 'shipped'][1 + id % 2] as status from lake.raw"
    root = make_project({"models/warehouse/orders.sql": orders}, lake={"raw": "select range as id from range(5)"})
    assert run(root).status == "success"
    assert run(root).status == "nothing"  # unchanged: fresh
    (root / "models/warehouse/orders.yml").write_text(
        "columns:\n  - name: status\n    checks:\n      - accepted_values: [placed]\n")
    judged = run(root)
    assert "warehouse.orders" in judged.plan.build, "a new blocking check is part of the fingerprint"
    assert judged.status == "failed"
    assert "accepted_values" in (judged.outcomes["warehouse.orders"].error or "")
    # a check of severity warn does not block publishing: it is not part of what a version must pass
    (root / "models/warehouse/orders.yml").write_text(
        "columns:\n  - name: status\n    checks:\n      - accepted_values: [placed, shipped]\n"
        "      - {accepted_values: [placed], severity: warn}\n")
    assert run(root).status == "success"
    (root / "models/warehouse/orders.yml").write_text(
        "columns:\n  - name: status\n    checks:\n      - accepted_values: [placed, shipped]\n"
        "      - {accepted_values: [shipped], severity: warn}\n")
    assert run(root).status == "nothing"


def test_the_plan_says_why_each_model_is_built(make_project):
    root = make_project(JAFFLE, lake={"raw_payments": PAYMENTS})
    first = run(root)
    assert first.plan.reasons == {"warehouse.stg_payments": "not built yet", "mart.order_payments": "not built yet"}
    (root / "models/warehouse/stg_payments.sql").write_text(
        "select id, order_id, payment_method, amount + 1 as amount from lake.raw_payments")
    second = run(root)
    assert second.plan.reasons["mart.order_payments"] == "upstream rebuilt: warehouse.stg_payments"
    assert "SQL" in second.plan.reasons["warehouse.stg_payments"]
    assert run(root, full_refresh=True).plan.reasons["mart.order_payments"] == "full refresh"


EVENTS = ("select timestamp '2024-01-01' + to_hours(i * 5) as ts, i % 3 as store, {f} * (i % 11) as amount "
          "from range(24 * 60 // 5) t(i)")
BACKFILLED = {
    "models/warehouse/daily.sql": "select cast(ts as date) as day, store, sum(amount) as total from lake.events "
                                  "group by all",
    "models/warehouse/daily.yml": "materialized: incremental\ntime_column: day\nlookback: 1\n",
    "models/mart/totals.sql": "select store, sum(total) as total from warehouse.daily group by all",
    "models/mart/by_day.sql": "from warehouse.daily select day, sum(total) as total group by all",
}


def test_after_a_backfill_everything_downstream_is_rebuilt_and_equals_a_clean_build(make_project, tmp_path):
    root = make_project(BACKFILLED, lake={"events": EVENTS.format(f=1)})
    assert run(root).status == "success"
    write_parquet(root / "lake/events/part-0.parquet", EVENTS.format(f=3))  # old days changed at the source
    assert run(root).status == "success"  # recent days only (lookback): old days still say f=1
    done = run_backfill(load_project(root), BackfillOptions(select=("warehouse.daily",), start="2024-01-01",
                                                            end="2024-02-29"))
    assert done.status == "success", [(o.start, o.status, o.error) for o in done.outcomes if o.status != "success"]
    after = run(root)
    assert {"mart.totals", "mart.by_day"} <= set(after.plan.build), after.plan.fresh
    assert "warehouse.daily" in after.plan.fresh  # its code and inputs did not change
    clean = clean_build(root, tmp_path)
    for name in ("warehouse.daily", "mart.totals", "mart.by_day"):
        assert table(root, name) == table(clean, name), name
    assert run(root).status == "nothing"  # and now everything is fresh, truly


def test_an_incremental_model_downstream_of_a_backfill_is_built_whole_and_equals_a_clean_build(make_project,
                                                                                                  tmp_path):
    """Recomputing only its recent partitions would keep the old days' rows the backfill replaced upstream."""
    files = {**BACKFILLED,
             "models/mart/daily_running.sql": "select day, store, sum(total) as total from warehouse.daily "
                                              "group by all",
             "models/mart/daily_running.yml": "materialized: incremental\ntime_column: day\nlookback: 1\n"}
    root = make_project(files, lake={"events": EVENTS.format(f=1)})
    assert run(root).status == "success"
    write_parquet(root / "lake/events/part-0.parquet", EVENTS.format(f=3))  # old days changed at the source
    assert run(root).status == "success"
    done = run_backfill(load_project(root), BackfillOptions(select=("warehouse.daily",), start="2024-01-01",
                                                            end="2024-02-29"))
    assert done.status == "success"
    after = run(root)
    assert after.plan.whole == {"mart.daily_running"}
    assert "built whole" in after.plan.reasons["mart.daily_running"]
    clean = clean_build(root, tmp_path)
    assert table(root, "mart.daily_running") == table(clean, "mart.daily_running")
    assert run(root).status == "nothing"


JAFFLE_SOURCE = """type: files
settle: 0s
tables:
  raw_orders:
    path: data/raw_orders_*.csv
"""
STG_ORDERS = "select id, user_id, status from lake.jaffle_raw_orders"
ACCEPTED = "columns:\n  - name: status\n    checks:\n      - accepted_values: [placed, shipped, returned]\n"


def jaffle(make_project: Any, materialized: str, checks: str = ACCEPTED) -> Path:
    return make_project({
        "sources/jaffle.yml": JAFFLE_SOURCE,
        "data/raw_orders_1.csv": "id,user_id,status\n1,1,placed\n2,3,shipped\n3,94,returned\n",
        "models/warehouse/stg_orders.sql": STG_ORDERS,
        "models/warehouse/stg_orders.yml": f"materialized: {materialized}\n{checks}",
    })


def test_a_view_cannot_be_gated_so_a_blocking_check_on_it_is_refused_before_anything_runs(make_project):
    import pytest

    from kiban.errors import ProjectError

    root = jaffle(make_project, "view")
    with pytest.raises(ProjectError) as err:
        run(root)
    message = str(err.value)
    assert "stg_orders.yml:5:" in message
    assert "cannot gate a view" in message
    assert "materialized: table" in message
    assert not (root / "kiban.duckdb").exists() or "stg_orders" not in str(table_names(root))


def table_names(root: Path) -> list[str]:
    con = duckdb.connect(str(root / "kiban.duckdb"), read_only=True)
    try:
        return [r[0] for r in con.execute("select table_name from duckdb_tables() union all "
                                          "select view_name from duckdb_views() where not internal").fetchall()]
    finally:
        con.close()


def test_a_gated_table_never_serves_the_row_its_check_refuses(make_project):
    root = jaffle(make_project, "table")
    assert run(root).status == "success"
    (root / "data/raw_orders_2.csv").write_text("id,user_id,status\n4,50,unknown_status\n")
    refused = run(root)
    assert refused.status == "failed"
    assert "accepted_values" in (refused.outcomes["warehouse.stg_orders"].error or "")
    assert [r for r in table(root, "warehouse.stg_orders") if r[2] == "unknown_status"] == []
    assert len(table(root, "warehouse.stg_orders")) == 3


def test_a_view_may_carry_warnings(make_project):
    warn = "columns:\n  - name: status\n    checks:\n      - {accepted_values: [placed], severity: warn}\n"
    root = jaffle(make_project, "view", warn)
    assert run(root).status == "success"


ORDERS_SOURCE = """type: files
settle: 0s
tables:
  orders:
    path: data/orders_*.csv
    columns:
      - {{name: id, type: integer}}
      - {{name: amount, type: {kind}}}
"""


def test_a_replayed_quarantine_rebuilds_what_reads_the_table_and_equals_a_clean_build(make_project, tmp_path):
    from kiban.collect.quarantine import replay
    from kiban.store import Store

    root = make_project({
        "sources/shop.yml": ORDERS_SOURCE.format(kind="integer"),
        "data/orders_1.csv": "id,amount\n1,10\n2,x12\n3,7\n",
        "models/warehouse/totals.sql": "select count(*) as n, max(id) as top from lake.shop_orders",
    })
    run(root)
    assert table(root, "warehouse.totals") == [(2, 3)]  # one row quarantined: x12 is no integer
    (root / "sources/shop.yml").write_text(ORDERS_SOURCE.format(kind="varchar"))
    project = load_project(root)
    store = Store(project.state_url)
    try:
        assert replay(project, store, "lake.shop_orders").landed == 1
    finally:
        store.close()
    after = run(root)
    assert "warehouse.totals" in after.plan.build
    assert table(root, "warehouse.totals") == [(3, 3)] == table(clean_build(root, tmp_path), "warehouse.totals")
