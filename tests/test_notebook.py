"""kiban.read / kiban.query from a notebook: the published snapshot, masked for the reader, Arrow/pandas/polars."""

from __future__ import annotations

import pyarrow as pa
import pytest

import kiban
from kiban import notebook
from kiban.catalog.safety import QueryRefused
from kiban.catalog.usage import history
from kiban.errors import UsageError
from kiban.project import load_project
from kiban.run import RunOptions, run_project
from kiban.store import Store
from kiban.web.accounts import Accounts
from tests.helpers.shop import build_shop


@pytest.fixture
def shop(make_project, monkeypatch):
    root = build_shop(make_project)
    monkeypatch.delenv("KIBAN_TOKEN", raising=False)
    monkeypatch.delenv("KIBAN_USER", raising=False)
    return root


def test_read_gives_arrow_with_where_and_columns_and_records_the_read(shop):
    table = kiban.read("mart.daily_sales", where="revenue > ?", params=[0], columns=["order_date", "revenue"],
                       project=shop, user="ana")
    assert isinstance(table, pa.Table)
    assert table.column_names == ["order_date", "revenue"]
    assert 0 < table.num_rows <= 30
    by_key = kiban.read("warehouse.orders", where={"customer_id": [2, 3]}, columns=["order_id", "customer_id"],
                        project=shop, user="ana")
    assert set(by_key.column("customer_id").to_pylist()) == {2, 3}
    notebook.flush()
    store = Store(load_project(shop).state_url)
    found = history(store, "shop", "ana")
    assert [r.kind for r in found] == ["notebook", "notebook"]
    assert found[0].status == "ok"


def test_pandas_and_polars_on_request(shop):
    frame = kiban.query("select order_date, revenue from mart.daily_sales order by 1", to="pandas", project=shop)
    assert list(frame.columns) == ["order_date", "revenue"]
    assert len(frame) == 30
    polars_frame = kiban.read("mart.daily_sales", to="polars", project=shop)
    assert type(polars_frame).__module__.startswith("polars")
    assert polars_frame.height == 30
    with pytest.raises(UsageError, match="unknown result format"):
        kiban.read("mart.daily_sales", to="excel", project=shop)


def test_pii_is_masked_without_a_token_and_shown_to_a_cleared_token(shop):
    masked = kiban.read("warehouse.customers", columns=["id", "email"], project=shop, user="admin")
    assert set(masked.column("email").to_pylist()) == {"•••"}  # a name proves nothing: masked
    # a filter cannot probe the clear value either: masking happens where the query reads
    probe = kiban.query("select count(*) as n from warehouse.customers where email like 'user1%'", project=shop)
    assert probe.column("n").to_pylist() == [0]
    store = Store(load_project(shop).state_url)
    accounts = Accounts(store)
    accounts.add_user("boss", "long enough pw", "admin")
    accounts.add_user("viewer1", "long enough pw", "viewer")
    clear = kiban.read("warehouse.customers", columns=["email"], project=shop, token=accounts.create_token("boss"))
    assert "user1@example.com" in clear.column("email").to_pylist()
    viewer = kiban.read("warehouse.customers", columns=["email"], project=shop,
                        token=accounts.create_token("viewer1"))
    assert set(viewer.column("email").to_pylist()) == {"•••"}
    with pytest.raises(UsageError, match="token is not valid"):
        kiban.read("mart.daily_sales", project=shop, token="kbn_nope")
    notebook.flush()
    assert history(store, "shop", "boss")[0].pii_shown


def test_writes_files_and_other_tables_are_refused(shop):
    for sql in ("delete from mart.daily_sales", "select * from read_csv('/etc/passwd')",
                "select 1; drop table mart.daily_sales"):
        with pytest.raises(QueryRefused):
            kiban.query(sql, project=shop)
    with pytest.raises(QueryRefused):
        kiban.read("mart.daily_sales", where="1=1) union all (select * from read_parquet('x.parquet')",
                   project=shop)


def test_a_read_sees_the_published_version_while_a_run_rebuilds(shop):
    """The snapshot is read: a reader holding a result never blocks the next run, and sees a whole version."""
    project = load_project(shop)
    before = kiban.read("mart.daily_sales", project=shop)
    (shop / "models/mart/daily_sales.sql").write_text(
        "select order_date, count(*) as orders, sum(amount) * 2 as revenue from warehouse.orders group by 1")
    assert run_project(load_project(shop), RunOptions()).ok
    after = kiban.read("mart.daily_sales", project=shop)
    assert pa.compute.sum(after.column("revenue")).as_py() == 2 * pa.compute.sum(before.column("revenue")).as_py()
    assert project.name == "shop"
