"""A small shop-like project, written in DuckDB's SQL, that every engine must build to the same marts.

It exercises what transpiling must get right: joins, group by, window functions, dates, CASE and string
functions. Used by test_engine_postgres, test_engine_spark and bench/engines.py.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

LAKE = {
    "orders": "select i as order_id, (i % 5) + 1 as customer_id, date '2024-01-01' + (i % 40)::int as order_date, "
              "(i * 7 % 100) + 0.25 as amount, case when i % 7 = 0 then 'cancelled' else 'paid' end as status, "
              "case when i % 11 = 0 then null else 'web' end as channel from range(1, {n}) t(i)",
    "customers": "select i as customer_id, '  Customer ' || i || '  ' as name, "
                 "case when i % 2 = 0 then 'tokyo' else 'osaka' end as city from range(1, 6) t(i)",
}

MODELS = {
    "models/warehouse/orders.sql": """
select o.order_id, o.customer_id, upper(c.city) as city, o.order_date,
       date_trunc('month', o.order_date)::date as order_month,
       extract(year from o.order_date) as order_year,
       o.amount,
       case when o.status = 'cancelled' then 0 else o.amount end as net_amount,
       trim(c.name) as customer_name,
       length(trim(c.name)) as name_length,
       lower(substring(trim(c.name), 1, 4)) as name_prefix,
       coalesce(o.channel, 'store') as channel,
       replace(trim(c.name), 'Customer', 'C') as short_name
from lake.orders o
join lake.customers c on o.customer_id = c.customer_id
""",
    "models/mart/daily_sales.sql": """
with days as (
    select city, order_date, count(*) as orders, sum(net_amount) as revenue
    from warehouse.orders
    where net_amount > 0
    group by city, order_date
)
select city, order_date, orders, revenue,
       sum(orders) over (partition by city order by order_date rows between unbounded preceding and current row)
           as running_orders,
       lag(revenue) over (partition by city order by order_date) as previous_revenue,
       row_number() over (partition by city order by revenue desc, order_date) as revenue_rank
from days
""",
    "models/mart/customer_summary.sql": """
select o.customer_id, short_name, channel, cu.city as home_city,
       count(*) as orders,
       sum(case when net_amount = 0 then 1 else 0 end) as cancelled,
       min(order_date) as first_order,
       max(order_date) as last_order,
       round(avg(amount), 2) as average_amount,
       rank() over (partition by channel order by sum(net_amount) desc) as channel_rank,
       case when sum(net_amount) >= 500 then 'gold' when sum(net_amount) >= 200 then 'silver' else 'bronze' end
           as tier
from warehouse.orders o
join lake.customers cu on cu.customer_id = o.customer_id
group by o.customer_id, short_name, channel, cu.city
""",
    "models/mart/monthly.sql": """
with per_customer as (
    select order_month, city, customer_id, sum(net_amount) as revenue, max(name_length) as longest_name
    from warehouse.orders
    group by order_month, city, customer_id
)
select order_month, city, count(*) as customers, sum(revenue) as revenue, max(longest_name) as longest_name,
       string_agg(cast(customer_id as varchar), ',' order by customer_id) as customer_list
from per_customer
group by order_month, city
""",
}

MARTS = ("mart.daily_sales", "mart.customer_summary", "mart.monthly")


def lake(n: int = 200) -> dict[str, str]:
    return {table: sql.replace("{n}", str(n + 1)) for table, sql in LAKE.items()}


def normalise(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows comparable across engines: numbers as rounded floats, dates as ISO text, sorted."""

    def value(v: Any) -> Any:
        if isinstance(v, bool):
            return v
        if isinstance(v, (int, float, Decimal)):
            return round(float(v), 6)
        if isinstance(v, datetime):
            return v.date().isoformat() if v.time() == datetime.min.time() else v.isoformat()
        if isinstance(v, date):
            return v.isoformat()
        return v

    return sorted((tuple(value(v) for v in row) for row in rows), key=repr)


# A collected lake table as the manifests describe it: one committed file, and one more in the folder that no
# committed load names (a killed collection's file). Every engine must read the first only.
COMMITTED = ("select i % 2 as id, i as v, timestamp '2026-01-01' + i * interval 1 hour as updated_at, "
             "timestamptz '2026-01-02 00:00:00+00' as _loaded_at, 'L1' as _load_id from range(4) t(i)")
UNCOMMITTED = ("select 7 as id, 70 as v, timestamp '2026-02-01' as updated_at, "
               "timestamptz '2026-02-02 00:00:00+00' as _loaded_at, 'L2' as _load_id")
COMMITTED_ROWS = [(0, 0), (0, 2), (1, 1), (1, 3)]  # (id, v) of lake.events
LATEST_ROWS = [(0, 2), (1, 3)]  # (id, v) of lake.events_latest: the newest row per id by updated_at


def collected_lake(root: Any) -> tuple[Any, Any]:
    """(asset, collected mapping) of ``lake.events`` under ``root``: the committed file and a stray one."""
    from kiban.engines.base import CollectedTable
    from kiban.project import load_project
    from tests.conftest import write_parquet

    committed = write_parquet(root / "lake" / "events" / "load_date=2026-01-02" / "L1.parquet", COMMITTED)
    write_parquet(root / "lake" / "events" / "load_date=2026-02-02" / "L2.parquet", UNCOMMITTED)
    asset = load_project(root).assets["lake.events"]
    table = CollectedTable(version="L1", files=(str(committed),), primary_key=("id",), cursor="updated_at",
                           history=True)
    return asset, {"lake.events": table}
