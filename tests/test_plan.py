"""kiban plan USECASE: what a purpose needs from the lake that is not collected yet, and the columns it reads."""

from __future__ import annotations

import json

from kiban.catalog.needs import plan, unneeded
from kiban.collect.load import load_table
from kiban.graph import build_graph
from kiban.project import load_project
from kiban.store import Store

FILES = {
    "sources/shop.yml": """
type: files
tables:
  orders: {path: landing/orders/*.csv, settle: 0s}
  returns: {path: landing/returns/*.csv, settle: 0s}
  coupons: {path: landing/coupons/*.csv, settle: 0s}
""",
    "models/warehouse/sales.sql": """
select o.store_id, o.amount, r.amount as returned from lake.shop_orders o
left join lake.shop_returns r on r.order_id = o.order_id
""",
    "models/mart/store_sales.sql": "select store_id, sum(amount) - sum(coalesce(returned, 0)) as net "
                                   "from warehouse.sales group by store_id",
    "usecases/store_sales.yml": """
description: store managers read net sales per store
owner: stores
assets: [mart.store_sales]
need: {by: "09:00"}
""",
    "landing/orders/day1.csv": "order_id,store_id,amount,note\n1,1,100,x\n2,2,50,y\n",
    "landing/returns/.keep": "",
    "landing/coupons/.keep": "",
}


def test_plan_lists_what_is_not_collected_yet_and_the_columns_read(make_project, cli):
    root = make_project(FILES)
    project = load_project(root)
    store = Store(project.state_url)
    load_table(project, "shop", "orders", store)
    graph = build_graph(project)
    found = plan(project, graph, store, "store_sales")
    by_asset = {n.asset: n for n in found.needs}
    assert set(by_asset) == {"lake.shop_orders", "lake.shop_returns"}  # coupons: no purpose needs them
    assert by_asset["lake.shop_orders"].collected
    assert not by_asset["lake.shop_returns"].collected
    assert [n.asset for n in found.missing] == ["lake.shop_returns"]
    # the columns whose values reach the use case (join and filter keys are not listed: see docs)
    assert {"store_id", "amount"} <= set(by_asset["lake.shop_orders"].columns)
    assert "note" not in by_asset["lake.shop_orders"].columns  # read by nobody: need not be collected
    assert unneeded(project, graph) == ["shop.coupons"]
    shown = cli("--project", str(root), "plan", "--json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["unneeded_sources"] == ["shop.coupons"]
    text = cli("--project", str(root), "plan", "store_sales")
    assert "not collected" in text.stdout
    assert "lake.shop_returns" in text.stdout
