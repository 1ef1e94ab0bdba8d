"""The SQL console: results, row limit, timeout, PII masking by column lineage, exports, query history, usage."""

from __future__ import annotations

import csv
from datetime import timedelta

import pytest

from kiban.catalog.console import QueryConsole, QueryFailed, QueryStopped, export
from kiban.catalog.safety import QueryRefused
from kiban.catalog.usage import Actor, history, unused, weekly
from kiban.graph import build_graph
from kiban.project import load_project
from kiban.store import Store, utcnow
from tests.helpers.shop import build_shop
from tests.helpers.timing import slowdown


@pytest.fixture
def shop(make_project):
    root = build_shop(make_project)
    project = load_project(root)
    store = Store(project.state_url)
    yield QueryConsole(project, store)
    store.close()


ALICE = Actor("alice", "sales")


def test_a_query_returns_rows_types_and_what_it_read(shop):
    result = shop.run("select order_date, revenue from mart.daily_sales order by order_date limit 3", ALICE)
    assert result.columns == ["order_date", "revenue"]
    assert result.types[1] == "DOUBLE"
    assert len(result.rows) == 3
    assert not result.truncated
    assert result.assets == ("mart.daily_sales",)
    # unqualified names resolve like the graph does, CTE names are not tables
    result = shop.run("with d as (select * from daily_sales) select count(*) from d", ALICE)
    assert result.rows == [(30,)]
    assert result.assets == ("mart.daily_sales",)


def test_the_row_limit_cuts_and_says_so(shop):
    result = shop.run("select * from warehouse.orders", ALICE, limit=10)
    assert len(result.rows) == 10
    assert result.truncated
    assert not shop.run("select * from warehouse.orders", ALICE, limit=300).truncated


def test_a_slow_query_is_interrupted_at_its_timeout_and_recorded(shop):
    before = slowdown()
    started = utcnow()
    with pytest.raises(QueryStopped, match=r"longer than 0\.3s"):
        shop.run("select count(*) from range(100000000000) a", ALICE, timeout=0.3)
    took = (utcnow() - started).total_seconds()
    assert took < 5 * max(before, slowdown()), took  # stopped, not run to its end; scaled by the machine's load
    assert history(shop.store, "shop", "alice")[0].status == "stopped"


def test_an_engine_error_is_a_clear_message_and_recorded(shop):
    with pytest.raises(QueryFailed, match=r"the query failed: .*nope"):
        shop.run("select nope from mart.daily_sales", ALICE)
    assert history(shop.store, "shop")[0].status == "failed"


def test_pii_is_masked_along_column_lineage_unless_anonymised_or_cleared(shop):
    sql = "select id, name, email, email_hash, email_upper from warehouse.customers order by id limit 2"
    masked = shop.run(sql, ALICE)
    assert masked.masked == ("email", "email_upper")  # declared pii upstream; email_hash is anonymised
    assert masked.rows[0] == (1, "name1", "•••", masked.rows[0][3], "•••")  # one constant: not even the shape
    assert masked.rows[0][3] != "user1@example.com"
    assert len(masked.rows[0][3]) == 32
    cleared = shop.run(sql, Actor("dpo", "legal", pii_clearance=True))
    assert cleared.masked == ()
    assert cleared.rows[0][2] == "user1@example.com"
    assert history(shop.store, "shop", "dpo")[0].pii_shown
    assert not history(shop.store, "shop", "alice")[0].pii_shown
    # through an alias, an expression and a CTE; `select *` over the lake table too
    aliased = shop.run("with x as (select lower(email) as contact from warehouse.orders) select contact from x",
                       ALICE)
    assert aliased.masked == ("contact",)
    assert "@example" not in aliased.rows[0][0]
    star = shop.run("select * from lake.customers limit 1", ALICE)
    assert set(star.masked) == {"email", "phone"}
    assert star.rows[0][3] == "•••"


def test_refused_queries_are_in_the_history_too(shop):
    with pytest.raises(QueryRefused):
        shop.run("delete from mart.daily_sales", Actor("mallory"))
    record = history(shop.store, "shop", "mallory")[0]
    assert record.status == "refused"
    assert "DELETE" in record.error


def test_exports_write_csv_and_xlsx(shop, tmp_path):
    result = shop.run("select order_date, revenue from mart.daily_sales order by 1 limit 5", ALICE)
    rows = list(csv.reader(export(result, tmp_path / "out.csv").open()))
    assert rows[0] == ["order_date", "revenue"]
    assert len(rows) == 6
    from openpyxl import load_workbook

    sheet = load_workbook(export(result, tmp_path / "out.xlsx")).active
    assert [c.value for c in sheet[1]] == ["order_date", "revenue"]
    assert sheet.max_row == 6


def test_usage_per_team_and_week_and_unused_assets(shop):
    shop.run("select * from mart.daily_sales", ALICE)
    shop.run("select * from mart.daily_sales", Actor("bob", "sales"))
    shop.run("select count(*) from warehouse.customers", Actor("carol", "crm"))
    rows = {r.team: r for r in weekly(shop.store, "shop")}
    assert rows["sales"].users == 2
    assert rows["sales"].queries == 2
    assert rows["sales"].assets == 1
    assert rows["crm"].users == 1
    graph = build_graph(shop.project)
    stale = {u.asset for u in unused(shop.store, shop.project, graph, days=30)}
    # daily_sales was read (and with it what feeds it); the recipe reads it too; old_report nobody reads
    assert stale == {"mart.old_report"}
    later = utcnow() + timedelta(days=60)
    assert "mart.daily_sales" not in {u.asset for u in unused(shop.store, shop.project, graph, 30, now=later)}


def test_cli_query_prints_a_table_writes_csv_and_refuses_with_a_message(make_project, cli, tmp_path):
    root = build_shop(make_project)
    out = cli("--project", root, "query", "select order_date, revenue from mart.daily_sales order by 1 limit 2",
              "--user", "alice", "--team", "sales", "--csv", tmp_path / "x.csv")
    assert out.returncode == 0, out.stderr
    lines = (tmp_path / "x.csv").read_text().splitlines()
    assert lines[0] == "order_date,revenue"
    assert lines[1].startswith("2026-11-01,")
    assert len(lines) == 3
    out = cli("--project", root, "query", "copy mart.daily_sales to '/tmp/x.csv'")
    assert out.returncode == 2
    assert "query refused" in out.stderr
    assert "COPY" in out.stderr
    assert "Traceback" not in out.stderr
    store = Store(load_project(root).state_url)
    try:
        kinds = [(r.user, r.kind, r.status) for r in history(store, "shop")]
    finally:
        store.close()
    assert kinds == [(kinds[0][0], "query", "refused"), ("alice", "export", "ok"), ("alice", "query", "ok")]


def test_a_query_while_a_run_writes_the_warehouse_reads_the_last_snapshot(shop):
    """Readers never wait for writers: the console reads the snapshot the last writer published."""
    import subprocess
    import sys

    from kiban.catalog.warehouse import warehouse_path

    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
                               "print('ready', flush=True); time.sleep(60)", str(warehouse_path(shop.project))],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        assert shop.run("select count(*) from mart.daily_sales", ALICE).rows == [(30,)]
    finally:
        holder.kill()
        holder.wait()
    assert shop.run("select count(*) from mart.daily_sales", ALICE).rows == [(30,)]


@pytest.mark.parametrize("sql", [
    "select c from lake.customers c",  # a whole row as a struct
    "select to_json(c) as j from lake.customers c",
    "select columns('e.*') from lake.customers",
    "select columns(*) from lake.customers",
    "select * like '%mail%' from lake.customers",
    "select #3 from lake.customers",
    "select coalesce(*columns(['email'])) as x from lake.customers",
    "select string_agg(email, ',') as s from lake.customers",
    "select x.e from (select email as e from lake.customers) x",
    "select (select max(email) from lake.customers) as m",
])
def test_pii_masking_fails_closed(shop, sql):
    """Whatever shape the query has, no e-mail address comes back to someone without clearance."""
    result = shop.run(sql, ALICE, limit=3)
    assert result.masked
    assert "@example" not in repr(result.rows)


def test_pii_travels_through_a_model_whose_lineage_is_a_whole_row(make_project):
    root = build_shop(make_project, extra={"models/mart/blobs.sql": "select to_json(c) as j from lake.customers c"})
    project = load_project(root)
    console = QueryConsole(project)
    result = console.run("select j from mart.blobs", ALICE, limit=1)
    assert result.masked == ("j",)
    assert "@example" not in repr(result.rows)


def test_a_postgresql_warehouse_is_queried_read_only_with_the_same_safety_and_masking(make_project, postgres_url):
    import psycopg

    from kiban.catalog.warehouse import open_readonly, published_columns

    root = build_shop(make_project, extra={"kiban.yml": f"name: shop\ntimezone: UTC\nwarehouse: {postgres_url}\n"})
    project = load_project(root)
    store = Store(project.state_url)
    console = QueryConsole(project, store)
    try:
        result = console.run("select count(*) as days, sum(orders) as orders from daily_sales", ALICE)
        assert result.rows == [(30, 300)]
        assert result.assets == ("mart.daily_sales",)
        masked = console.run("select id, email from warehouse.customers order by id limit 1", ALICE)
        assert masked.rows[0][0] == 1
        assert masked.rows[0][1] != "user1@example.com"  # PII, through lineage
        # masked where it is read, on PostgreSQL too: reshaping, filters, order and casts see only the mask
        for sql in ("select * from (unpivot warehouse.customers on email, email_upper into name k value v)",
                    "select column_name, min, max from (summarize select email from warehouse.customers)",
                    "select count(*) from warehouse.customers where email like 'user1%'",
                    "select id from warehouse.customers order by email, id limit 3",
                    "select string_agg(email, ',') from lake.customers"):
            shown = repr(console.run(sql, ALICE).rows)
            assert "@example" not in shown, sql
            assert "USER" not in shown, sql
        assert console.run("select count(*) from warehouse.customers where email like 'user1%'",
                           ALICE).rows == [(0,)]
        with pytest.raises(QueryFailed) as failed:
            console.run("select email::int from warehouse.customers", ALICE)
        assert "@example" not in failed.value.message
        with pytest.raises(QueryRefused):
            console.run("select * from warehouse_db.warehouse.customers", ALICE)
        assert "email" in published_dict(published_columns(project))["warehouse.customers"]
        for hostile in ("delete from mart.daily_sales", "call postgres_execute('warehouse_db', 'drop table mart.x')",
                        "select * from postgres_query('warehouse_db', 'select 1')"):
            with pytest.raises(QueryRefused):
                console.run(hostile, ALICE)
        with open_readonly(project) as con, pytest.raises(Exception, match="read-only"):
            con.execute("delete from mart.daily_sales")  # even past the checker, the attachment refuses writes
        with psycopg.connect(postgres_url) as conn:
            assert conn.execute("select count(*) from mart.daily_sales").fetchone() == (30,)
    finally:
        store.close()


def published_dict(published: dict[str, list[tuple[str, str]]]) -> dict[str, list[str]]:
    return {k: [c for c, _ in v] for k, v in published.items()}


def test_exports_never_write_a_live_formula(tmp_path):
    """Visitor-controlled text (a user agent, a referer) reaches the lake: an export must keep it inert."""
    from openpyxl import load_workbook

    from kiban.catalog.console import QueryResult

    hostile = ["=HYPERLINK(\"http://x\",\"y\")", "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\t=1", "=1+1"]
    result = QueryResult(["ua", "n"], ["VARCHAR", "INTEGER"], [(h, -5) for h in hostile], False, 0.0, ())
    rows = list(csv.reader(export(result, tmp_path / "x.csv").open()))
    assert [r[0] for r in rows[1:]] == ["'" + h for h in hostile]
    assert rows[1][1] == "-5"
    sheet = load_workbook(export(result, tmp_path / "x.xlsx")).active
    for r, text in enumerate(hostile, start=2):
        assert sheet.cell(r, 1).data_type == "s"
        assert sheet.cell(r, 1).value == text
        assert sheet.cell(r, 2).value == -5
