"""Two warehouses that differ only in personal data (variants "a" and "b"), a console over each, and how to read
an answer and a project's files (shared by the hostile and generated console corpora)."""

from __future__ import annotations

from pathlib import Path

from kiban.catalog.console import ConsoleBusy, QueryConsole, QueryFailed, QueryStopped
from kiban.catalog.safety import QueryRefused
from kiban.catalog.usage import Actor
from kiban.project import load_project
from kiban.run import RunOptions, run_project
from kiban.store import Store
from tests.conftest import write_files, write_parquet

FILES = {
    "models/lake/customers.yml": """
columns:
  - {name: full_name, tags: [pii]}
  - {name: email, tags: [pii]}
  - {name: phone, tags: [pii]}
""",
    "models/warehouse/customers.sql":
        "select customer_id, full_name, email, phone, city, upper(email) as email_upper from lake.customers",
    "models/warehouse/orders.sql": "select o.order_id, o.customer_id, o.amount, c.email "
                                   "from lake.orders o join lake.customers c using (customer_id)",
    "models/mart/by_city.sql": "select city, count(*) as customers from warehouse.customers group by city",
}
# the same people, the same cities and orders: only the personal values differ
PEOPLE = {
    "a": ("'Taro ' || i", "'user' || i || '@example.com'", "'090-1234-' || lpad(i::varchar, 4, '0')"),
    "b": ("'Hanako ' || (60 - i)", "'zq' || (60 - i) * 7 || '@other.jp'",
          "'080-9999-' || lpad((i * 3)::varchar, 4, '0')"),
}


def people_lake(variant: str) -> dict[str, str]:
    name, email, phone = PEOPLE[variant]
    return {
        "customers": f"select i as customer_id, {name} as full_name, {email} as email, "
                     f"case when i % 10 = 0 then null else {phone} end as phone, "
                     "['Tokyo', 'Osaka', 'Nagoya'][1 + i % 3] as city from range(1, 51) t(i)",
        "orders": "select i as order_id, 1 + i % 50 as customer_id, (i * 7 % 100)::double as amount "
                  "from range(1, 201) t(i)",
    }


def clear_values(variant: str) -> list[str]:
    import duckdb

    name, email, phone = PEOPLE[variant]
    rows = duckdb.connect().execute(f"select {name}, {email}, {phone} from range(1, 51) t(i)").fetchall()
    return [v for row in rows for v in row]


BUSY_TIMEOUT = 2.0


def hostile_shop(base: Path, variant: str) -> tuple[QueryConsole, Store]:
    root = base / variant
    write_files(root, {"kiban.yml": "name: shop\ntimezone: UTC\n", **FILES})
    for table, sql in people_lake(variant).items():
        write_parquet(root / "lake" / table / "part-0.parquet", sql)
    project = load_project(root)
    assert run_project(project, RunOptions()).ok
    store = Store(project.state_url)
    return QueryConsole(project, store, max_per_user=1000, max_running=1000), store


def answer(console: QueryConsole, sql: str, who: Actor) -> tuple[str, object]:
    try:
        result = console.run(sql, who, timeout=BUSY_TIMEOUT, limit=200)
    except QueryRefused as exc:
        return "refused", exc.message
    except (QueryFailed, QueryStopped, ConsoleBusy) as exc:
        return type(exc).__name__, exc.message
    return "rows", (result.columns, result.rows)


def files(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".kiban" not in p.parts and "snapshot" not in p.name and not p.name.endswith(".wal")}
