"""Collection core: one load of one table — typing, quarantine, exactly-once, drift, deletes, scd2, manifests.

The connector is a small JSON-lines reader written against the contract (tests/collect_jsonl_connector.py),
registered in CONNECTORS for these tests: the contract is the seam.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest

from kiban.collect import connector
from kiban.collect.collector import collected_tables
from kiban.collect.load import LoadFailed, load_table
from kiban.collect.manifest import Manifests
from kiban.collect.quarantine import replay, rows
from kiban.engines.duckdb import DuckDBEngine
from kiban.errors import KibanError, ProjectError, ProjectErrors
from kiban.project import load_project
from kiban.run import RunOptions, run_project
from kiban.store import Store
from tests.helpers.timing import timed

TESTS = Path(__file__).parent


@pytest.fixture(autouse=True)
def jsonl_connector(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(TESTS))
    monkeypatch.setitem(connector.CONNECTORS, "files", "collect_jsonl_connector")


def write_rows(path: Path, rows: list[Any], append: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a" if append else "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write((row if isinstance(row, str) else json.dumps(row)) + "\n")


ORDERS = """type: files
settle: 0s
tables:
  orders:
    path: data/orders.jsonl
    mode: incremental
    cursor: updated_at
    lookback: 1h
    primary_key: [id]
{extra}    columns:
      - {{name: id, type: INTEGER}}
      - {{name: amount, type: "DECIMAL(10,2)"}}
      - {{name: updated_at, type: TIMESTAMP}}
"""


def order(i: int, hour: int, amount: str | None = None, **more: Any) -> dict[str, Any]:
    return {"id": i, "amount": amount if amount is not None else f"{i}.50",
            "updated_at": f"2024-01-01T{hour:02d}:00:00", **more}


@pytest.fixture
def shop(make_project):
    def build(source: str = ORDERS.format(extra=""), files: dict[str, str] | None = None) -> Path:
        return make_project({"sources/shop.yml": source, **(files or {})})

    return build


def load(root: Path, table: str = "orders", source: str = "shop", **kwargs: Any):
    project = load_project(root)
    store = Store(project.state_url)
    try:
        return load_table(project, source, table, store, **kwargs)
    finally:
        store.close()


def lake_rows(root: Path, sql: str) -> list[tuple[Any, ...]]:
    """Query the lake views as the engine prepares them from the manifests."""
    project = load_project(root)
    store = Store(project.state_url)
    engine = DuckDBEngine(str(root / "kiban.duckdb"))
    try:
        engine.prepare([a for a in project.assets.values() if a.layer == "lake"], collected_tables(project, store))
        return engine.con.execute(sql).fetchall()
    finally:
        engine.close()
        store.close()


def test_counts_reconcile_and_bad_values_are_quarantined_with_their_reason(shop):
    root = shop()
    write_rows(root / "data/orders.jsonl", [order(1, 1), order(2, 2, amount="12,5"), "{not json", order(3, 3)])
    result = load(root)
    r = result.record
    assert (r.rows_read, r.rows_landed, r.rows_quarantined, r.rows_dropped) == (4, 2, 2, 0)
    assert r.reconciles
    assert r.status == "committed"
    data = [f for f in r.files if f[1] == "data"]
    assert len(data) == 1
    assert data[0][0].startswith("shop/orders/20")
    assert r.load_id in data[0][0]
    assert any("2 row(s) quarantined" in n for n in result.notes)
    got = lake_rows(root, "select id, amount, _load_id from lake.shop_orders order by id")
    assert [(i, str(a)) for i, a, _ in got] == [(1, "1.50"), (3, "3.50")]
    assert {row[2] for row in got} == {r.load_id}
    refused = {q.reason: q for q in rows(load_project(root), Store(load_project(root).state_url), "lake.shop_orders")}
    assert "column amount: '12,5' is not a DECIMAL(10,2)" in refused
    assert refused["column amount: '12,5' is not a DECIMAL(10,2)"].location == "id=2"
    assert any(q.location == "orders.jsonl:3" and q.raw == "{not json" for q in refused.values())
    types = dict(lake_rows(root, "select column_name, data_type from information_schema.columns "
                                 "where table_schema = 'lake' and table_name = 'shop_orders'"))
    assert types["amount"] == "DECIMAL(10,2)"
    assert types["updated_at"] == "TIMESTAMP"
    assert types["_loaded_at"] == "TIMESTAMP"
    assert types["_load_id"] == "VARCHAR"


def test_incremental_with_lookback_lands_each_row_exactly_once(shop):
    root = shop()
    path = root / "data/orders.jsonl"
    write_rows(path, [order(1, 1), order(2, 2), order(3, 3)])
    first = load(root).record
    assert first.cursor.hour == 3
    assert first.rows_landed == 3
    # the look-back (1h) reads id 3 again: same key and cursor, so it is dropped; id 2 changed later: it lands
    write_rows(path, [order(3, 3), order(2, 4, amount="9.99"), order(4, 4), order(4, 5, amount="7.00")], append=True)
    second = load(root)
    assert second.since.hour == 2
    r = second.record
    # read: id 3 twice (the look-back and the repeat), id 2, id 4 twice; landed: id 2's and id 4's newest
    assert (r.rows_read, r.rows_landed, r.rows_dropped) == (5, 2, 3)
    assert r.cursor.hour == 5
    latest = lake_rows(root, "select id, amount from lake.shop_orders_latest order by id")
    assert [(i, str(a)) for i, a in latest] == [(1, "1.50"), (2, "9.99"), (3, "3.50"), (4, "7.00")]
    assert lake_rows(root, "select count(*) from lake.shop_orders") == [(5,)]
    assert load(root).record.rows_landed == 0  # nothing new: the look-back re-reads only what landed


def test_landing_folder_files_are_loaded_once(shop):
    root = shop("type: files\nsettle: 0s\ntables:\n  orders:\n    path: landing\n    primary_key: [id]\n")
    write_rows(root / "landing/a.jsonl", [order(1, 1), order(2, 2)])
    assert load(root).record.rows_landed == 2
    write_rows(root / "landing/b.jsonl", [order(3, 3)])
    assert load(root).record.rows_landed == 1
    assert load(root).record.rows_read == 0
    project = load_project(root)
    consumed = Manifests(Store(project.state_url)).consumed(project.name, "lake.shop_orders")
    assert {Path(p).name for p, _, _ in consumed} == {"a.jsonl", "b.jsonl"}
    write_rows(root / "landing/b.jsonl", [order(3, 3), order(5, 5)])  # delivered again with changes: a new file
    assert load(root).record.rows_landed == 2


def test_quarantine_threshold_fails_the_load_and_keeps_the_rows(shop):
    root = shop(ORDERS.format(extra="    max_quarantined: 10%\n"))
    path = root / "data/orders.jsonl"
    write_rows(path, [order(1, 1), order(2, 2, amount="x"), order(3, 3)])
    with pytest.raises(LoadFailed) as failed:
        load(root)
    assert "1 of 3 rows were quarantined, more than max_quarantined (10%)" in str(failed.value)
    assert "source shop, table orders" in str(failed.value)
    project = load_project(root)
    store = Store(project.state_url)
    assert Manifests(store).state(project.name, "lake.shop_orders") is None  # nothing committed, no cursor
    kept = rows(project, store, "lake.shop_orders")
    assert [q.column for q in kept] == ["amount"]
    assert Manifests(store).loads(project.name, "lake.shop_orders")[0].status == "failed"
    # under the threshold: a warning, and the rows land
    write_rows(path, [order(i, 1) for i in range(4, 30)], append=True)
    result = load(root)
    assert result.record.rows_landed == 28
    assert result.record.rows_quarantined == 1
    assert any("quarantined" in n for n in result.notes)


def test_replay_lands_rows_that_pass_after_the_declaration_is_fixed(shop):
    root = shop()
    write_rows(root / "data/orders.jsonl", [order(1, 1), order(2, 2, amount="1234567890.5")])
    assert load(root).record.rows_quarantined == 1  # DECIMAL(10,2) holds 8 digits before the point
    (root / "sources/shop.yml").write_text(ORDERS.format(extra="").replace("DECIMAL(10,2)", "DECIMAL(18,2)"))
    project = load_project(root)
    store = Store(project.state_url)
    result = replay(project, store, "lake.shop_orders")
    assert (result.tried, result.landed, result.still_failing) == (1, 1, 0)
    assert rows(project, store, "lake.shop_orders") == []
    assert [q.replayed for q in rows(project, store, "lake.shop_orders", include_replayed=True)] == [True]
    assert replay(project, store, "lake.shop_orders").tried == 0  # replayed once
    got = lake_rows(root, "select id, amount::varchar from lake.shop_orders order by id")
    assert got == [(1, "1.50"), (2, "1234567890.50")]


def test_drift_policies(shop):
    for policy in ("evolve", "warn", "fail"):
        root = shop(ORDERS.format(extra=f"    on_drift: {policy}\n"), files={"kiban.yml": f"name: d{policy}\n"})
        path = root / "data/orders.jsonl"
        write_rows(path, [order(1, 1)])
        load(root)
        write_rows(path, [order(2, 2, channel="web")], append=True)
        if policy == "fail":
            with pytest.raises(LoadFailed, match="new column channel"):
                load(root)
            project = load_project(root)
            store = Store(project.state_url)
            state = Manifests(store).state(project.name, "lake.shop_orders")
            assert state is not None
            assert state.cursor.hour == 1  # the cursor did not move
            assert [(d.change, action) for _, _, d, action in Manifests(store).drift(project.name,
                                                                                     "lake.shop_orders")] == \
                [("added", "failed")]
        else:
            result = load(root)
            assert any("schema drift: new column channel (VARCHAR)" in n for n in result.notes)
            assert lake_rows(root, "select id, channel from lake.shop_orders order by id") == [(1, None), (2, "web")]
            project = load_project(root)
            events = Manifests(Store(project.state_url)).drift(project.name, "lake.shop_orders")
            action = {"evolve": "evolved", "warn": "warned"}[policy]
            assert [(d.change, d.column, a) for _, _, d, a in events] == [("added", "channel", action)]
        shutil.rmtree(root)  # the next policy gets a project of its own


FULL = """type: files
settle: 0s
tables:
  products:
    path: data/products.jsonl
    primary_key: [sku]
    detect_deletes: true
    history: scd2
    columns:
      - {name: price, type: INTEGER}
"""


def test_scd2_history_reproduces_a_past_state_and_deletes_are_landed(make_project):
    root = make_project({"sources/master.yml": FULL})
    path = root / "data/products.jsonl"
    write_rows(path, [{"sku": "a", "price": 100}, {"sku": "b", "price": 200}, {"sku": "c", "price": 300}])
    first = load(root, "products", "master").record
    time.sleep(0.01)
    write_rows(path, [{"sku": "a", "price": 100}, {"sku": "b", "price": 250}])  # b changed, c gone
    second = load(root, "products", "master").record
    assert (second.rows_read, second.rows_landed, second.rows_dropped, second.rows_deleted) == (2, 1, 1, 1)
    assert second.reconciles
    latest = lake_rows(root, "select sku, price from lake.master_products_latest order by sku")
    assert latest == [("a", 100), ("b", 250)]
    at_first = lake_rows(root, f"select sku, price from lake.master_products_history where valid_from <= "
                               f"'{first.started_at}'::timestamp and (valid_to is null or valid_to > "
                               f"'{first.started_at}'::timestamp) order by sku")
    assert at_first == [("a", 100), ("b", 200), ("c", 300)]
    now = lake_rows(root, "select sku, price from lake.master_products_history where valid_to is null order by sku")
    assert now == [("a", 100), ("b", 250)]
    assert lake_rows(root, "select sku from lake.master_products where _deleted") == [("c",)]
    write_rows(path, [{"sku": "a", "price": 100}, {"sku": "b", "price": 250}, {"sku": "c", "price": 300}])
    third = load(root, "products", "master").record  # c is back: a new version
    assert (third.rows_landed, third.rows_deleted) == (1, 0)
    assert lake_rows(root, "select count(*) from lake.master_products_latest") == [(3,)]


def test_duplicates_within_a_load_keep_the_latest_cursor(shop):
    root = shop()
    write_rows(root / "data/orders.jsonl", [order(1, 5, amount="5.00"), order(1, 2, amount="2.00"),
                                            order(1, 4, amount="4.00")])
    r = load(root).record
    assert (r.rows_read, r.rows_landed, r.rows_dropped) == (3, 1, 2)
    assert lake_rows(root, "select amount::varchar from lake.shop_orders") == [("5.00",)]


def test_large_loads_roll_files_and_stream(shop, monkeypatch):
    import kiban.collect.load as loader

    monkeypatch.setattr(loader, "SCRATCH_FILE_ROWS", 100)  # de-duplicate in a scratch database file
    root = shop()
    write_rows(root / "data/orders.jsonl", [order(i, i % 24) for i in range(2500)])
    (root / "sources/shop.yml").write_text("batch_rows: 400\n" + ORDERS.format(extra=""))
    r = load(root, rows_per_file=1000).record
    data = [f for f in r.files if f[1] == "data"]  # in the order written
    assert [f[2] for f in data] == [1000, 1000, 500]
    assert [Path(f[0]).name for f in data] == [f"{r.load_id}.parquet", f"{r.load_id}-2.parquet",
                                              f"{r.load_id}-3.parquet"]
    assert lake_rows(root, "select count(*), count(distinct id) from lake.shop_orders") == [(2500, 2500)]


KILL_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import kiban.collect.connector as c
c.CONNECTORS["files"] = "collect_jsonl_connector"
from kiban.project import load_project
from kiban.store import Store
from kiban.collect.load import load_table
p = load_project({root!r})
load_table(p, "shop", "orders", Store(p.state_url), rows_per_file=100)
"""


def test_a_killed_load_leaves_nothing_visible_and_the_next_load_collects_what_was_missing(shop):
    root = shop(ORDERS.format(extra="    sleep: 0.2\n").replace("type: files\n", "type: files\nbatch_rows: 50\n"))
    path = root / "data/orders.jsonl"
    write_rows(path, [order(i, 1) for i in range(100)])
    r = load(root).record
    assert r.rows_landed == 100
    (root / "sources/shop.yml").write_text(ORDERS.format(extra="    sleep: 0.3\n")
                                           .replace("type: files\n", "type: files\nbatch_rows: 50\n"))
    write_rows(path, [order(i, 2) for i in range(100, 600)], append=True)
    child = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT.format(tests=str(TESTS), root=str(root))],
                             env={**os.environ})
    staging = root / "lake/_staging/shop/orders"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not list(staging.rglob("*.parquet")):
        time.sleep(0.05)
    time.sleep(0.4)  # a few batches staged
    assert child.poll() is None, "the load finished before it could be killed"
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert list(staging.rglob("*.parquet")), "the killed load left its staging behind (as a real crash would)"
    # a dead load may also leave data files where committed ones live (killed while writing them)
    stray = root / "lake/shop/orders/load_date=2024-01-01/20240101T000000000-dead00.parquet"
    stray.parent.mkdir(parents=True, exist_ok=True)
    duckdb.connect().execute(f"copy (select 1::integer as id) to '{stray}' (format parquet)")
    assert lake_rows(root, "select count(*) from lake.shop_orders") == [(100,)]  # committed files only
    project = load_project(root)
    state = Manifests(Store(project.state_url)).state(project.name, "lake.shop_orders")
    assert state is not None
    assert state.cursor.hour == 1  # not advanced
    (root / "sources/shop.yml").write_text(ORDERS.format(extra=""))
    again = load(root).record
    assert (again.rows_landed, again.cursor.hour) == (500, 2)
    assert not staging.exists() or not any(staging.iterdir())
    assert not stray.exists()  # leftovers of dead loads are removed by the next load
    assert lake_rows(root, "select count(*), count(distinct id) from lake.shop_orders") == [(600, 600)]


def test_bad_config_names_the_file_source_and_table(shop, make_project, monkeypatch):
    root = shop(ORDERS.format(extra="").replace("type: files", "type: postgress"))
    with pytest.raises(ProjectError) as bad:
        load_project(root)
    assert "sources/shop.yml:1:1: unknown source type 'postgress'" in str(bad.value)
    assert "did you mean 'postgres'?" in str(bad.value)
    root = make_project({"sources/pos.yml": "type: files\nurl: env:KIBAN_TEST_MISSING_URL\ntables:\n"
                                           "  orders: {path: x.jsonl}\n"}, root="envproj")
    monkeypatch.delenv("KIBAN_TEST_MISSING_URL", raising=False)
    with pytest.raises(KibanError) as missing:
        load(root, "orders", "pos")
    assert str(missing.value).startswith("source pos, table orders: environment variable KIBAN_TEST_MISSING_URL "
                                         "is not set")
    root = make_project({"sources/pos.yml": "type: files\ntables:\n  orders: {path: x.jsonl}\n"},
                        lake={"pos_orders": "select 1 as x"}, root="clash")
    with pytest.raises((ProjectError, ProjectErrors), match=r"lake\.pos_orders is both table orders of source pos"):
        load_project(root)
    root = make_project({"sources/pos.yml": "type: files\ntables:\n  orders:\n    path: x.jsonl\n    columns:\n"
                                           "      - name: id\n        checks:\n"
                                           "          - relationships: {to: lake.nope, column: id}\n"},
                        root="badcheck")
    with pytest.raises(ProjectError, match=r"sources/pos\.yml:8:13: relationships: unknown asset 'lake\.nope'"):
        load_project(root)
    root = make_project({"sources/pos.yml": "type: files\nsettle: 0s\ntables:\n  orders: {path: data/o.jsonl, "
                                           "primary_key: order_id}\n"}, root="badkey")
    write_rows(root / "data/o.jsonl", [{"id": 1}])
    with pytest.raises(KibanError, match="source pos, table orders: primary_key column order_id is not among"):
        load(root, "orders", "pos")


def test_run_collects_then_transforms_and_a_failed_collection_skips_downstream(make_project):
    root = make_project({
        "sources/shop.yml": ORDERS.format(extra=""),
        "sources/crm.yml": "type: files\nsettle: 0s\ntables:\n  customers: {path: data/missing.jsonl}\n",
        "models/warehouse/totals.sql": "select count(*) as n, sum(amount) as total from lake.shop_orders_latest",
        "models/warehouse/customers.sql": "select * from lake.crm_customers",
    })
    write_rows(root / "data/orders.jsonl", [order(1, 1), order(2, 2)])
    events: list[Any] = []
    result = run_project(load_project(root), RunOptions(), [events.append])
    assert result.outcomes["lake.shop_orders"].status == "success"
    assert result.outcomes["lake.shop_orders"].rows == 2
    assert result.outcomes["warehouse.totals"].status == "success"
    assert result.outcomes["lake.crm_customers"].status == "failed"
    assert "path data/missing.jsonl does not exist" in (result.outcomes["lake.crm_customers"].error or "")
    skipped = result.outcomes["warehouse.customers"]
    assert (skipped.status, skipped.error) == ("skipped", "upstream lake.crm_customers failed (its collection)")
    kinds = [(e.kind, e.asset) for e in events]
    assert kinds.index(("asset_finished", "lake.shop_orders")) < kinds.index(("asset_started", "warehouse.totals"))
    con = duckdb.connect(str(root / "kiban.duckdb"))
    assert con.execute("select n, total::varchar from warehouse.totals").fetchall() == [(2, "4.00")]
    con.close()
    # the next run collects again (sources change outside kiban) and rebuilds what the new rows feed
    write_rows(root / "data/orders.jsonl", [order(3, 3)], append=True)
    again = run_project(load_project(root), RunOptions(select=["lake.shop_orders+"]), [])
    assert again.outcomes["lake.shop_orders"].rows == 1
    assert again.outcomes["warehouse.totals"].status == "success"
    store = Store(load_project(root).state_url)
    assert [a.rows for a in store.asset_history(load_project(root).name, "lake.shop_orders")] == [1, 2]


def test_a_collection_that_times_out_fails_its_asset_and_commits_nothing(make_project):
    slow = ORDERS.format(extra="    sleep: 0.3\n").replace("type: files\n", "type: files\nbatch_rows: 10\n")
    root = make_project({"kiban.yml": "name: slow\ntimeout: 0.5\n", "sources/shop.yml": slow})
    write_rows(root / "data/orders.jsonl", [order(i, 1) for i in range(100)])
    result, took = timed(lambda: run_project(load_project(root), RunOptions(), []))
    assert took.within(10), took  # stopped at its timeout; the bound scaled by the machine's load
    outcome = result.outcomes["lake.shop_orders"]
    assert (outcome.status, outcome.error) == ("failed", "timed out after 0.5 s (the load was stopped)")
    project = load_project(root)
    assert Manifests(Store(project.state_url)).state(project.name, "lake.shop_orders") is None


EVENTS = """type: files
settle: 0s
batch_rows: {batch}
tables:
  events:
    path: data/events.jsonl
    cursor: updated_at
    time_column: updated_at
{extra}    columns:
      - {{name: id, type: INTEGER}}
      - {{name: amount, type: "DECIMAL(10,2)"}}
      - {{name: updated_at, type: TIMESTAMP}}
"""


def data_files(root: Path) -> list[Path]:
    return sorted((root / "lake/shop/events").rglob("*.parquet"))


def test_a_table_without_key_lands_in_one_pass_rolling_files_when_the_schema_changes(shop):
    from kiban.collect.load import streams

    root = shop(EVENTS.format(batch=2, extra=""))
    rows = [order(1, 1), order(2, 5), order(3, 3, channel="web"), order(4, 2, channel="store"), order(5, 4)]
    write_rows(root / "data/events.jsonl", rows)
    project = load_project(root)
    assert streams(project.sources["shop"].tables["events"], None)
    r = load(root, table="events").record
    assert (r.rows_read, r.rows_landed, r.rows_dropped) == (5, 5, 0)
    assert not (root / "lake/_staging/shop/events").exists() or not any((root / "lake/_staging").rglob("*.parquet"))
    # batches of 2: (1, 2) without channel, (3, 4) with it, (5) without: three files, one per schema run
    assert [f[2] for f in r.files if f[1] == "data"] == [2, 2, 1]
    assert r.cursor.hour == 5
    assert ("channel", "VARCHAR") in r.schema  # read back from the written files
    assert "__kiban_ord" not in [n for n, _ in r.schema]
    got = lake_rows(root, "select id, channel, amount::varchar from lake.shop_events order by id")
    assert got == [(1, None, "1.50"), (2, None, "2.50"), (3, "web", "3.50"), (4, "store", "4.50"), (5, None, "5.50")]
    names = duckdb.connect().execute(f"select name from parquet_schema('{data_files(root)[0]}')").fetchall()
    assert ("__kiban_ord",) not in names
    assert ("_load_id",) in names


def test_a_refused_one_pass_load_leaves_no_data_file(shop):
    root = shop(EVENTS.format(batch=2, extra="    max_quarantined: 1\n    on_drift: fail\n"))
    path = root / "data/events.jsonl"
    write_rows(path, [order(1, 1), order(2, 2, amount="x"), order(3, 3), order(4, 4, amount="y")])
    with pytest.raises(LoadFailed, match="2 of 4 rows were quarantined"):
        load(root, table="events")
    assert data_files(root) == []  # written while streaming, removed when the load was refused
    write_rows(path, [order(1, 1), order(2, 2)])
    assert load(root, table="events").record.rows_landed == 2
    [first] = data_files(root)
    write_rows(path, [order(1, 1), order(2, 2), order(3, 3, channel="web")])  # drift under on_drift: fail
    with pytest.raises(LoadFailed, match="new column channel"):
        load(root, table="events")
    assert data_files(root) == [first]
    assert lake_rows(root, "select count(*) from lake.shop_events") == [(2,)]


def test_a_killed_one_pass_load_leaves_nothing_visible(shop):
    root = shop(EVENTS.format(batch=20, extra="    sleep: 0.2\n"))
    path = root / "data/events.jsonl"
    write_rows(path, [order(i, 1) for i in range(40)])
    assert load(root, table="events").record.rows_landed == 40
    write_rows(path, [order(i, 2) for i in range(400)])
    script = KILL_SCRIPT.format(tests=str(TESTS), root=str(root)).replace('"orders", Store', '"events", Store') \
        .replace("rows_per_file=100", "rows_per_file=20")
    child = subprocess.Popen([sys.executable, "-c", script], env={**os.environ})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(data_files(root)) < 3:  # the committed file and two written
        time.sleep(0.05)
    assert child.poll() is None, "the load finished before it could be killed"
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert len(data_files(root)) >= 3  # in their final place, but named by no manifest
    assert lake_rows(root, "select count(*), max(updated_at) from lake.shop_events")[0][0] == 40
    (root / "sources/shop.yml").write_text(EVENTS.format(batch=100, extra=""))
    again = load(root, table="events").record
    assert again.rows_landed == 400
    assert len(data_files(root)) == 2  # the dead load's files are gone
    assert lake_rows(root, "select count(*) from lake.shop_events") == [(440,)]
