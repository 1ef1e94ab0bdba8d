"""``kiban init``: a new project that runs as soon as it is created."""

from __future__ import annotations

import re
from pathlib import Path

from kiban.errors import UsageError

FILES: dict[str, str] = {
    "kiban.yml": """\
# kiban project: see docs/project-format.md
name: {name}
timezone: Asia/Tokyo
# warehouse: duckdb:///kiban.duckdb   # where models are built (default)
# lake: lake                             # Parquet files under lake/<table>/ become lake.<table>
# state: sqlite:///.kiban/state.db       # runs and history (PostgreSQL: env:KIBAN_STATE_URL)
# threads: 2                             # parallel assets (default: one per core)
# retries: 1                             # default retries per asset
""",
    "models/warehouse/orders.sql": """\
-- Orders, typed and cleaned: one row per order.
select
    order_id,
    customer_id,
    cast(ordered_at as date) as order_date,
    amount
from lake.orders
where amount > 0
""",
    "models/warehouse/orders.yml": """\
description: Orders from the lake, one row per order, refunds removed.
owner: data-team
tags: [sales]
columns:
  - name: order_id
    description: Unique order number.
  - name: customer_id
    description: Who ordered.
  - name: order_date
    description: Day of the order.
  - name: amount
    description: Order amount in yen.
""",
    "models/mart/daily_sales.sql": """\
-- Revenue per day: the number the sales team opens every morning.
select
    order_date,
    count(*) as orders,
    sum(amount) as revenue
from warehouse.orders
group by order_date
order by order_date
""",
    "models/mart/daily_sales.yml": """\
description: Revenue and order count per day.
owner: data-team
tags: [sales]
columns:
  - name: order_date
    description: Day.
  - name: orders
    description: Number of orders that day.
  - name: revenue
    description: Sum of order amounts in yen.
""",
    ".gitignore": "kiban.duckdb*\n.kiban/\n",
    "usecases/.keep": "",
}


def scaffold(target: Path, name: str | None = None) -> list[Path]:
    """Create a project in ``target``; refuses to overwrite an existing project."""
    if (target / "kiban.yml").exists():
        raise UsageError(f"{target} already holds a kiban project (kiban.yml exists)",
                         "choose another folder, or run kiban commands in that one")
    project_name = name or re.sub(r"\W", "_", target.resolve().name, flags=re.ASCII).strip("_") or "project"
    if project_name[0].isdigit():
        project_name = "p_" + project_name
    created = []
    for rel, text in FILES.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.format(name=project_name) if rel == "kiban.yml" else text, encoding="utf-8")
        created.append(path)
    created.append(_sample_lake(target / "lake" / "orders"))
    return created


def _sample_lake(folder: Path) -> Path:
    """A small deterministic sample so the new project's first run has data to build from."""
    import duckdb

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sample.parquet"
    con = duckdb.connect()
    try:
        con.execute(
            "copy (select i as order_id, 1 + (i * 7) % 50 as customer_id, "
            "timestamp '2026-01-01' + to_minutes(i * 97) as ordered_at, "
            "((i * 2654435761) % 50000 - 1000) / 10.0 as amount from range(1, 1001) t(i)) "
            "to '" + str(path).replace("'", "''") + "' (format parquet)")
    finally:
        con.close()
    return path
