"""Runs: atomic publish, rebuild only what changed, retries, timeouts, failures, resume, locks."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from kiban.errors import RunLockedError
from kiban.project import load_project
from kiban.run import Event, EventKind, RunOptions, run_project
from kiban.store import Store
from tests.conftest import write_parquet
from tests.helpers.timing import timed
from tests.helpers.warehouse import query

LAKE = {"orders": "select i as order_id, i % 5 as store_id, i * 10 as amount from range(1, 101) t(i)"}
MODELS = {
    "models/warehouse/orders.sql": "select order_id, store_id, amount from lake.orders where amount > 0",
    "models/warehouse/stores.sql": "select distinct store_id from lake.orders",
    "models/mart/sales.sql": "select store_id, sum(amount) as revenue from warehouse.orders group by store_id",
    "models/mart/store_list.sql": "select * from warehouse.stores",
}


def run(root: Path, **options: object) -> object:
    return run_project(load_project(root), RunOptions(**options))  # type: ignore[arg-type]


def statuses(result: object) -> dict[str, str]:
    return {k: o.status for k, o in result.outcomes.items()}  # type: ignore[attr-defined]


def test_first_run_builds_everything_and_second_run_does_nothing(project_dir):
    root = project_dir(MODELS, LAKE)
    first = run(root)
    assert first.status == "success"
    assert set(first.plan.build) == {"warehouse.orders", "warehouse.stores", "mart.sales", "mart.store_list"}
    assert query(root, "select sum(revenue) from mart.sales") == [(50500,)]
    second = run(root)
    assert second.status == "nothing"
    assert second.plan.build == []
    assert len(second.plan.fresh) == 4


def test_only_changed_assets_and_their_downstream_rebuild(project_dir):
    root = project_dir(MODELS, LAKE)
    run(root)
    (root / "models/warehouse/orders.sql").write_text(
        "select order_id, store_id, amount * 2 as amount from lake.orders where amount > 0")
    result = run(root)
    assert set(result.plan.build) == {"warehouse.orders", "mart.sales"}
    assert query(root, "select sum(revenue) from mart.sales") == [(101000,)]


def test_comments_and_layout_do_not_count_as_a_change(project_dir):
    root = project_dir(MODELS, LAKE)
    run(root)
    (root / "models/warehouse/stores.sql").write_text(
        "-- the stores we have seen\nselect distinct\n    store_id\nfrom lake.orders\n")
    assert run(root).plan.build == []


def test_new_lake_data_rebuilds_its_readers(project_dir):
    root = project_dir(MODELS, LAKE)
    run(root)
    write_parquet(root / "lake/orders/part-1.parquet",
                  "select 1000 as order_id, 1 as store_id, 5 as amount")
    result = run(root)
    assert set(result.plan.build) == set(MODELS_KEYS)
    assert query(root, "select sum(revenue) from mart.sales") == [(50505,)]


MODELS_KEYS = ("warehouse.orders", "warehouse.stores", "mart.sales", "mart.store_list")


def test_full_refresh_rebuilds_fresh_assets(project_dir):
    root = project_dir(MODELS, LAKE)
    run(root)
    assert len(run(root, full_refresh=True).plan.build) == 4


def test_selection_runs_only_the_selected_assets(project_dir):
    root = project_dir(MODELS, LAKE)
    result = run(root, select=["+mart.sales"])
    assert set(result.plan.build) == {"warehouse.orders", "mart.sales"}
    assert query(root, "select count(*) from duckdb_tables() where table_name = 'store_list'") == [(0,)]


def test_failure_keeps_previous_table_skips_downstream_and_independent_branch_goes_on(project_dir):
    root = project_dir(MODELS, LAKE)
    run(root)
    before = query(root, "select * from warehouse.orders order by order_id")
    (root / "models/warehouse/orders.sql").write_text(
        "select order_id, store_id, cast('not a number' as integer) as amount from lake.orders")
    (root / "models/warehouse/stores.sql").write_text("select distinct store_id, 1 as v from lake.orders")
    result = run(root)
    assert result.status == "failed"
    assert statuses(result) == {"warehouse.orders": "failed", "mart.sales": "skipped",
                                "warehouse.stores": "success", "mart.store_list": "success"}
    assert "Could not convert string" in result.outcomes["warehouse.orders"].error
    assert "upstream warehouse.orders failed" in result.outcomes["mart.sales"].error
    assert query(root, "select * from warehouse.orders order by order_id") == before
    leftovers = query(root, "select count(*) from duckdb_tables() where table_name like '__kiban_tmp_%'")
    assert leftovers == [(0,)]


def test_resume_reruns_only_what_failed_or_was_skipped(project_dir):
    root = project_dir(MODELS, LAKE)
    (root / "models/warehouse/orders.sql").write_text("select cast('x' as integer) as amount")
    failed = run(root)
    assert failed.status == "failed"
    (root / "models/warehouse/orders.sql").write_text(MODELS["models/warehouse/orders.sql"])
    # an unrelated change that a plain run would pick up, but --resume must leave alone
    (root / "models/warehouse/stores.sql").write_text("select distinct store_id, 2 as v from lake.orders")
    resumed = run(root, resume=True)
    assert resumed.status == "success"
    assert set(resumed.plan.order) == {"warehouse.orders", "mart.sales"}
    assert set(resumed.plan.build) == {"warehouse.orders", "mart.sales"}


def test_retries_with_backoff_until_the_input_appears(project_dir, tmp_path):
    flag = tmp_path / "late.csv"
    root = project_dir({"models/warehouse/late.sql": f"select * from read_csv('{flag}')"},
                       config="retries: 3\nretry_delay: 0.4\n")
    def appear(event: Event) -> None:  # the input appears once the first attempt failed, whatever the speed
        if event.kind == EventKind.ASSET_RETRY and not flag.exists():
            flag.write_text("a,b\n1,2\n")

    result = run_project(load_project(root), RunOptions(), [appear])
    assert result.status == "success"
    outcome = result.outcomes["warehouse.late"]
    assert outcome.attempts >= 2
    store = Store(load_project(root).state_url)
    attempts = [a.status for a in store.attempts(result.run_id)]
    store.close()
    assert attempts[0] == "retrying"
    assert attempts[-1] == "success"


def test_timeout_interrupts_the_running_query(project_dir):
    root = project_dir({
        "models/warehouse/slow.sql": "select count(*) as n from range(100000000000) a",
        "models/warehouse/slow.yml": "timeout: 0.5\n",
    })
    result, took = timed(lambda: run(root))
    assert result.status == "failed"
    assert "timed out after 0.5 s" in result.outcomes["warehouse.slow"].error
    assert took.within(10), took  # interrupted, not run to its end (minutes); the bound scaled by the machine's load


def test_view_materialization_and_switching_back_to_table(project_dir):
    root = project_dir({**MODELS, "models/warehouse/stores.yml": "materialized: view\n"}, LAKE)
    assert run(root).status == "success"
    assert query(root, "select count(*) from duckdb_views() where view_name = 'stores'") == [(1,)]
    (root / "models/warehouse/stores.yml").write_text("materialized: table\n")
    result = run(root)
    assert "warehouse.stores" in result.plan.build
    assert query(root, "select count(*) from duckdb_views() where view_name = 'stores'") == [(0,)]
    assert query(root, "select count(*) from warehouse.stores") == [(5,)]


def test_a_second_run_is_refused_while_the_lock_is_held(project_dir):
    root = project_dir(MODELS, LAKE)
    project = load_project(root)
    store = Store(project.state_url)
    store.acquire_lock(f"run:{project.name}", "other-run")
    try:
        with pytest.raises(RunLockedError, match="another run"):
            run(root)
    finally:
        store.release_lock(f"run:{project.name}", "other-run")
        store.close()
    assert run(root).status == "success"


def test_a_dead_holders_lock_and_run_are_taken_over(project_dir):
    root = project_dir(MODELS, LAKE)
    project = load_project(root)
    store = Store(project.state_url)
    dead_pid = 2**22 + 12345  # beyond pid_max: no such process
    store.start_run("dead-run", project.name, [], {})
    from kiban.store.schema import locks, runs

    with store.engine.begin() as conn:
        conn.execute(runs.update().where(runs.c.run_id == "dead-run").values(pid=dead_pid))
        conn.execute(locks.insert().values(name=f"run:{project.name}", run_id="dead-run", pid=dead_pid,
                                           host=__import__("socket").gethostname()))
    store.close()
    assert run(root).status == "success"
    store = Store(project.state_url)
    assert store.run("dead-run").status == "abandoned"
    store.close()


def test_state_store_on_postgresql(project_dir, postgres_url):
    root = project_dir(MODELS, LAKE, config=f"state: {postgres_url}\n")
    first = run(root)
    assert first.status == "success"
    assert run(root).status == "nothing"
    store = Store(postgres_url)
    try:
        recorded = {a.asset: a.status for a in store.attempts(first.run_id)}
        assert recorded == dict.fromkeys(MODELS_KEYS, "success")
        assert store.last_run("test").status == "nothing"  # the second run had nothing to do
    finally:
        store.close()


def test_state_url_from_environment(project_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("KIBAN_TEST_STATE", f"sqlite:///{tmp_path}/elsewhere.db")
    root = project_dir(MODELS, LAKE, config="state: env:KIBAN_TEST_STATE\n")
    assert run(root).status == "success"
    assert (tmp_path / "elsewhere.db").exists()


def test_sql_errors_are_not_retried(project_dir):
    root = project_dir({"models/warehouse/bad.sql": "select no_such_column from lake.orders"}, LAKE,
                       config="retries: 3\nretry_delay: 60\n")
    started = time.monotonic()
    result = run(root)
    assert result.outcomes["warehouse.bad"].attempts == 1
    # no backoff spent on an error that cannot heal: one would take a minute, which 30 s tells apart however loaded
    # the machine is (a 5 s delay against a 4 s bound did not)
    assert time.monotonic() - started < 30


def test_an_empty_lake_folder_fails_its_readers_with_a_clear_reason(project_dir):
    root = project_dir({"models/warehouse/orders.sql": "select * from lake.orders"})
    (root / "lake/orders").mkdir(parents=True)
    result = run(root)
    assert result.outcomes["warehouse.orders"].status == "failed"
    assert "lake.orders has no Parquet files yet" in result.outcomes["warehouse.orders"].error


def test_upper_case_model_files_are_referenced_in_any_case(project_dir):
    root = project_dir({"models/warehouse/Big.sql": "select * from lake.orders",
                        "models/mart/m.sql": "select count(*) as n from warehouse.BIG"}, LAKE)
    assert run(root).status == "success"
    assert query(root, "select n from mart.m") == [(100,)]


def test_resume_picks_up_an_asset_cut_off_between_retries(project_dir):
    root = project_dir(MODELS, LAKE)
    run(root)
    project = load_project(root)
    store = Store(project.state_url)
    store.start_run("killed", project.name, [], {})
    store.record_attempt("killed", "warehouse.stores", "retrying", attempt=1, error="disk full")
    store.finish_run("killed", "abandoned")
    store.close()
    resumed = run(root, resume=True)
    assert "warehouse.stores" in resumed.plan.order


def test_a_corrupt_lake_file_fails_only_its_readers(project_dir):
    root = project_dir({**MODELS, "models/warehouse/other.sql": "select 1 as x"}, LAKE)
    (root / "lake/orders/broken.parquet").write_bytes(b"PAR1 this is not parquet")
    result = run(root)
    assert result.status == "failed"
    assert result.outcomes["warehouse.other"].status == "success"
    assert result.outcomes["warehouse.orders"].error.startswith("lake.orders cannot be read:")
    assert result.outcomes["mart.sales"].status == "skipped"
