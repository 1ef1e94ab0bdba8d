"""The catalog's shop: customers with PII (e-mail, phone), orders, a daily sales mart and a recipe, on a lake of
20 customers and 300 orders; and the deliveries' version of it with spreadsheet-hostile values (shared by the
catalog, console, notebook, pgwire and delivery tests)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from kiban.project import load_project
from kiban.run import RunOptions, run_project
from tests.conftest import write_files, write_parquet

SHOP_FILES = {
    "models/lake/customers.yml": """
description: Customers as the web shop keeps them.
columns:
  - name: email
    description: Where receipts go.
    tags: [pii]
  - name: phone
    tags: [pii]
""",
    "models/warehouse/customers.sql": """
select id, name, email, md5(email) as email_hash, upper(email) as email_upper from lake.customers
""",
    "models/warehouse/customers.yml": """
description: One row per customer.
owner: crm-team
columns:
  - name: email_hash
    description: md5 of the e-mail, for joining without seeing it.
    tags: [anonymised]
""",
    "models/warehouse/orders.sql": """
select o.order_id, o.customer_id, o.amount, cast(o.ordered_at as date) as order_date, c.email
from lake.orders o join lake.customers c on c.id = o.customer_id
""",
    "models/mart/daily_sales.sql": """
select order_date, count(*) as orders, sum(amount) as revenue from warehouse.orders group by order_date
""",
    "models/mart/daily_sales.yml": """
description: 日別売上 — revenue and orders per day.
owner: sales-analytics
tags: [sales]
columns:
  - name: revenue
    description: Sum of order amounts in yen (売上).
""",
    "models/mart/old_report.sql": "select order_id from warehouse.orders",
    "recipes/store_sales.yml": """
description: Revenue of the days between two dates.
owner: sales-analytics
tags: [sales]
sql: |
  select order_date, revenue from mart.daily_sales
  where order_date between $from_day and $to_day and revenue >= $min_revenue
  order by order_date
params:
  from_day: {type: date, default: 2026-11-01}
  to_day: {type: date}
  min_revenue: {type: float, default: 0}
""",
}
SHOP_LAKE = {
    "customers": "select i as id, 'name' || i as name, 'user' || i || '@example.com' as email, "
                 "'090-1234-' || lpad(i::varchar, 4, '0') as phone from range(1, 21) t(i)",
    "orders": "select i as order_id, 1 + i % 20 as customer_id, (i * 7 % 100)::double as amount, "
              "timestamp '2026-11-01 10:00' + to_days(i % 30) as ordered_at from range(1, 301) t(i)",
}


def write_shop(root: Path) -> Path:
    """The shop (project name ``shop``) written at ``root`` and run once, outside pytest's make_project (for a
    module-scoped fixture)."""
    write_files(root, {"kiban.yml": "name: shop\ntimezone: Asia/Tokyo\n", **SHOP_FILES})
    for name, sql in SHOP_LAKE.items():
        write_parquet(root / "lake" / name / "part-0.parquet", sql)
    assert run_project(load_project(root), RunOptions()).ok
    return root


def build_shop(make_project: Callable[..., Path], run: bool = True, extra: dict[str, str] | None = None) -> Path:
    root = make_project({**SHOP_FILES, **(extra or {})}, lake=SHOP_LAKE)
    if run:
        result = run_project(load_project(root), RunOptions())
        assert result.ok, result
    return root


EVIL = ("'=HYPERLINK(\"http://x\",\"click\")' as evil, '+1+2' as plus, '-3' as minus, '@SUM(A1)' as at, "
        "'日本語の店' as store_name")
DELIVERY_FILES = {
    **SHOP_FILES,
    "models/mart/weekly_marketing.sql": f"select order_date, sum(amount) as revenue, count(*) as orders, {EVIL} "
                                        "from warehouse.orders group by order_date",
    "models/mart/contacts.sql": "select id, email from warehouse.customers",
}
