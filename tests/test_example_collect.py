"""The shop example's sources, collected: the generator writes what each source system would hand over
(a POS database, nginx logs, a CP932 Excel export, shift sheets); `kiban run` collects and builds them;
the next morning brings late POS updates and a product export with one more column (drift). The same POS
tables collect from a real PostgreSQL and a real MariaDB with the same table settings."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from conftest import need_service

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "shop"
END = "2026-11-29"
POS_TABLES = ("stores", "customers", "orders", "order_lines")
IGNORE = shutil.ignore_patterns("lake", ".kiban", "kiban.duckdb*", "__pycache__", "sources_data", "report.html")


def kiban(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb", "PYTHONIOENCODING": "utf-8",
            **(env or {})}
    return subprocess.run([sys.executable, "-m", "kiban", "--project", str(root), *args], env=full,
                          capture_output=True, text=True, timeout=300, check=False)


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def copy_shop(base: Path, name: str) -> Path:
    root = base / name
    shutil.copytree(EXAMPLE, root, ignore=IGNORE)
    return root


def generate(root: Path, *extra: str) -> str:
    done = subprocess.run([sys.executable, str(root / "generate.py"), "--scale", "0.01", "--out", str(root),
                           "--end-date", END, *extra], capture_output=True, text=True, timeout=120, check=False)
    return ok(done)


def lake_rows(root: Path, table: str, sql: str = "count(*)") -> Any:
    files = sorted(str(p) for p in (root / "lake").glob(f"{table}/**/*.parquet"))
    assert files, f"nothing landed for {table}"
    return duckdb.connect().execute(f"select {sql} from read_parquet({files}, union_by_name = true)").fetchone()


def quarantined(root: Path, source: str, table: str) -> list[tuple[str, str]]:
    files = sorted(str(p) for p in (root / "lake" / "_quarantine" / source / table).glob("*.parquet"))
    if not files:
        return []
    sql = f"select location, reason from read_parquet({files}, union_by_name = true) order by location"
    return duckdb.connect().execute(sql).fetchall()


def source_counts(root: Path) -> dict[str, int]:
    with sqlite3.connect(root / "sources_data" / "pos.sqlite") as db:
        return {t: db.execute(f"select count(*) from {t}").fetchone()[0] for t in POS_TABLES}


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The example generated at scale 0.01, run, then the next morning's deliveries, run again."""
    root = copy_shop(tmp_path_factory.mktemp("example_collect"), "shop")
    generate(root)
    first = ok(kiban(root, "run"))
    counts = {t: lake_rows(root, f"pos/{t}")[0] for t in POS_TABLES}
    quarantine = {s: quarantined(root, s, t) for s, t in (("web", "access"), ("master", "products"),
                                                          ("staff", "shifts"))}
    before = root.parent / "before_the_morning"  # the sources and the lake as the first run left them
    for folder in ("sources_data", "lake"):
        shutil.copytree(root / folder, before / folder)
    morning = generate(root, "--next-morning")
    collected = ok(kiban(root, "collect"))  # as `make demo` does; its `kiban run` then builds as the first did
    return {"root": root, "first": first, "counts": counts, "quarantine": quarantine, "morning": morning,
            "collected": collected, "before": before}


def test_every_pos_row_lands_once(shop: dict[str, Any]) -> None:
    assert shop["counts"] == source_counts(shop["root"])


def test_the_first_run_collects_every_source_and_builds_every_model(shop: dict[str, Any]) -> None:
    out = shop["first"]
    for asset in ("lake.pos_orders", "lake.pos_order_lines", "lake.master_products", "lake.web_access",
                  "lake.staff_shifts", "warehouse.page_views", "warehouse.shifts", "mart.web_traffic",
                  "mart.store_staffing", "mart.daily_sales"):
        assert asset in out, asset
    assert " done in " in out  # `ok()` saw exit 0: every asset succeeded (a failure ends "failed in")
    db = duckdb.connect(str(shop["root"] / "kiban.duckdb"), read_only=True)
    web = db.execute("select count(*), count(distinct store_id), sum(store_page_views) from mart.web_traffic")
    rows, stores, views = web.fetchone()  # type: ignore[misc]
    assert rows == 7 * stores
    assert views > 0
    staffing = db.execute("select count(*), min(staff_hours), sum(orders) from mart.store_staffing").fetchone()
    assert staffing is not None
    assert staffing[0] > 0
    assert staffing[1] > 0
    assert staffing[2] > 0


def test_bad_rows_are_quarantined_where_they_were(shop: dict[str, Any]) -> None:
    web, master, staff = (shop["quarantine"][s] for s in ("web", "master", "staff"))
    assert len(web) == 7  # one line cut short in each day's log
    assert all(loc.startswith("sources_data/web/access.log-") and "combined" in why for loc, why in web)
    [(where, why)] = master
    assert where.startswith(f"sources_data/master/products_{END.replace('-', '')}.csv:")
    assert "unit_price" in why
    assert "'1,990'" in why
    assert len(staff) == 2
    assert all("sources_data/staff/shifts_" in loc for loc, _ in staff)  # 休 typed as a time


def test_the_next_morning_brings_drift_and_only_the_changed_orders(shop: dict[str, Any]) -> None:
    root, out = shop["root"], shop["collected"]
    assert "lake.master_products: schema drift: new column jan_code" in out, out
    assert lake_rows(root, "pos/orders")[0] == shop["counts"]["orders"] + 3  # three returns, nothing else
    assert lake_rows(root, "pos/order_lines")[0] == shop["counts"]["order_lines"]
    returned = lake_rows(root, "pos/orders", "count(*) filter (where status = 'returned' and "
                         "updated_at >= timestamptz '2026-11-29 23:00:00+00')")
    assert returned == (3,)
    # the new product has no price yet (未定): quarantined; the one typed 「1,990」 still is, again
    reasons = [why for _, why in quarantined(root, "master", "products")]
    assert sum("'未定'" in why for why in reasons) == 1
    assert sum("'1,990'" in why for why in reasons) == 2
    # the morning's export carries jan_code for every product landed before, and the same products
    newest = lake_rows(root, "master/products", "count(*) filter (where jan_code is not null)")
    assert newest == lake_rows(root, "master/products", "count(distinct product_id)")


# -- the same POS tables from PostgreSQL and MariaDB -----------------------------------------------------------


def _columns(db: sqlite3.Connection, table: str) -> list[tuple[str, str, int]]:
    return [(r[1], r[2].upper(), r[5]) for r in db.execute(f"pragma table_info({table})").fetchall()]


def _ddl(kind: str, table: str, columns: list[tuple[str, str, int]]) -> str:
    types = {"postgres": {"INTEGER": "bigint", "TEXT": "text", "DATE": "date", "TIMESTAMP": "timestamptz"},
             "mysql": {"INTEGER": "bigint", "TEXT": "varchar(255)", "DATE": "date", "TIMESTAMP": "datetime"}}[kind]
    key = [name for name, _, pk in sorted(columns, key=lambda c: c[2]) if pk]
    body = ", ".join(f"{name} {types[kind_]}" for name, kind_, _ in columns)
    return f"create table {table} ({body}, primary key ({', '.join(key)}))"


@pytest.fixture
def server_db(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """A unique database on the real server: (kind, URL)."""
    kind = request.param
    name = f"kiban_shop_{uuid.uuid4().hex[:10]}"
    if kind == "postgres":
        need_service("PostgreSQL", "127.0.0.1", 5432)
        import psycopg

        admin = "postgresql://postgres@127.0.0.1:5432/test"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'create database "{name}"')
        yield kind, f"postgresql://postgres@127.0.0.1:5432/{name}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')
    else:
        need_service("MariaDB", "127.0.0.1", 3306)
        import pymysql

        conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", autocommit=True)
        conn.cursor().execute(f"create database `{name}` character set utf8mb4")
        yield kind, f"mysql://root@127.0.0.1:3306/{name}"
        conn.cursor().execute(f"drop database if exists `{name}`")
        conn.close()


def load_pos(kind: str, url: str, pos: Path) -> None:
    """The registers' tables, copied from the generated SQLite file into the server (times are UTC)."""
    with sqlite3.connect(pos) as db:
        tables = {t: (_columns(db, t), db.execute(f"select * from {t}").fetchall()) for t in POS_TABLES}
    if kind == "postgres":
        import psycopg

        with psycopg.connect(url) as conn:
            conn.execute("set time zone 'UTC'")
            for table, (columns, rows) in tables.items():
                conn.execute(_ddl(kind, table, columns))  # type: ignore[arg-type]
                with conn.cursor().copy(f"copy {table} from stdin") as copy:
                    for row in rows:
                        copy.write_row(row)
    else:
        import pymysql

        name = url.rsplit("/", 1)[1]
        conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", database=name,
                               charset="utf8mb4")
        with conn.cursor() as cur:
            for table, (columns, rows) in tables.items():
                cur.execute(_ddl(kind, table, columns))
                marks = ", ".join(["%s"] * len(columns))
                cur.executemany(f"insert into {table} values ({marks})", rows)
        conn.commit()
        conn.close()


def bump_one_order(kind: str, url: str) -> None:
    sql = "update orders set status = 'returned', updated_at = '2026-11-30 00:00:00' where order_id = " \
          "(select min(order_id) from orders where status = 'completed')"
    if kind == "postgres":
        import psycopg

        with psycopg.connect(url) as conn:
            conn.execute("set time zone 'UTC'")
            conn.execute(sql)
    else:
        import pymysql

        conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="",
                               database=url.rsplit("/", 1)[1])
        with conn.cursor() as cur:  # MySQL cannot read the table it updates in a subquery: one more level
            cur.execute(sql.replace("(select min(order_id) from orders where status = 'completed')",
                                    "(select m from (select min(order_id) as m from orders "
                                    "where status = 'completed') as x)"))
        conn.commit()
        conn.close()


@pytest.mark.parametrize("server_db", ["postgres", "mysql"], indirect=True)
def test_the_pos_source_collects_the_same_from_a_real_server(shop: dict[str, Any], server_db: tuple[str, str],
                                                             tmp_path: Path) -> None:
    kind, url = server_db
    root = copy_shop(tmp_path, "shop")
    shutil.copytree(shop["before"] / "sources_data", root / "sources_data")
    load_pos(kind, url, shop["before"] / "sources_data" / "pos.sqlite")  # as the first run found them
    pos = root / "sources" / "pos.yml"
    text = pos.read_text()
    head, tables = text.split("\ntables:\n", 1)
    assert "type: sqlite" in head
    pos.write_text(f"type: {kind}\nurl: env:SHOP_POS_URL\nowner: pos-team@shop.example\ntags: [pos]\n"
                   f"tables:\n{tables}")
    env = {"SHOP_POS_URL": url}
    out = ok(kiban(root, "collect", "tag:pos", env=env))
    assert url not in out
    counts = {t: lake_rows(root, f"pos/{t}")[0] for t in POS_TABLES}
    assert counts == shop["counts"]
    # the same values, times included (UTC everywhere), not just as many rows
    for table, sql in (("orders", "sum(order_id), max(updated_at), min(ordered_at), count(customer_id)"),
                       ("order_lines", "sum(quantity * unit_price - discount), max(updated_at)"),
                       ("customers", "count(distinct email), max(registered_at)")):
        assert lake_rows(root, f"pos/{table}", sql) == lake_rows(shop["before"], f"pos/{table}", sql), table
    bump_one_order(kind, url)
    ok(kiban(root, "collect", "lake.pos_orders", env=env))
    assert lake_rows(root, "pos/orders")[0] == shop["counts"]["orders"] + 1

