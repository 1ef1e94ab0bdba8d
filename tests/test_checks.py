"""Data-quality checks: every kind catches seeded violations with exact counts and passes clean data; all
checks of a table are measured in one statement; a blocking failure keeps the old version and skips what
is downstream; a warning publishes; volume learns weekly rhythms; freshness knows business days."""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import pytest

from kiban.checks import volume
from kiban.checks.compiler import Compiler, relation_name
from kiban.checks.evaluate import context, describe, run_suite
from kiban.checks.freshness import judge as judge_freshness
from kiban.checks.gate import Gate
from kiban.checks.history import observations, of_run, record
from kiban.checks.on_demand import check_published
from kiban.checks.suite import suite_of
from kiban.engines.duckdb import DuckDBSession
from kiban.errors import ProjectError
from kiban.project import ProjectConfig, load_project
from kiban.run import RunOptions, run_project
from kiban.slo.calendar import calendar_for
from kiban.store import Store
from tests.conftest import write_parquet
from tests.helpers.warehouse import query

NOW = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)  # Monday 12:00 in Tokyo

# 100 rows; each "bad" column has a known number of violations (comments), "good" data has none.
DIRTY = """
select i as id,
       case when i in (3, 4, 5) then null else 'c' || i end as name,                       -- not_null: 3
       case when i <= 95 then i else 1 end as code,                                        -- unique: 5 surplus
       i % 5 as k1, case when i <= 90 then i else i - 10 end as k2,                        -- unique (k1, k2): 10
       case when i % 25 = 0 then 'lost' else 'ok' end as status,                           -- accepted_values: 4
       case when i in (7, 8) then 999 else i % 10 end as ref,                              -- relationships: 2
       case when i between 11 and 16 then -1 else i end as amount,                         -- range 0..1000: 6
       case when i <= 8 then 'not-an-email' else 'u' || i || '@x.jp' end as email,         -- pattern email: 8
       case when i = 30 then '1000-0001' else '100-000' || (i % 10) end as zip,            -- jp_postal_code: 1
       case when i in (40, 41, 42) then '12345' else '090-1234-' || lpad(i::varchar, 4, '0') end as phone,  -- 3
       case when i in (21, 22) then 0 else 1 end as quantity,                              -- expression: 2
       timestamp '2026-11-29 12:00:00' - to_hours(i) as ordered_at
from range(1, 101) t(i)
"""
CLEAN = """
select i as id, 'c' || i as name, i as code, i % 5 as k1, i as k2, 'ok' as status, i % 10 as ref,
       i as amount, 'u' || i || '@x.jp' as email, '100-000' || (i % 10) as zip,
       '090-1234-' || lpad(i::varchar, 4, '0') as phone, 1 as quantity,
       timestamp '2026-11-29 12:00:00' - to_hours(i) as ordered_at
from range(1, 101) t(i)
"""
REFS = "select i as ref from range(0, 10) t(i)"
SIDECAR = """\
columns:
  - name: id
    type: BIGINT
  - name: name
    checks: [{not_null: null, severity: SEV}]
  - name: code
    checks: [{unique: null, severity: SEV}]
  - name: status
    checks: [{accepted_values: [ok, fine], severity: SEV}]
  - name: ref
    checks: [{relationships: lake.refs, severity: SEV}]
  - name: amount
    type: BIGINT
    checks: [{range: {min: 0, max: 1000}, severity: SEV}]
  - name: email
    checks: [{pattern: email, severity: SEV}]
  - name: zip
    checks: [{pattern: jp_postal_code, severity: SEV}]
  - name: phone
    checks: [{pattern: phone_jp, severity: SEV}]
checks:
  - {unique: [k1, k2], severity: SEV}
  - {expression: "quantity > 0", severity: SEV}
  - {sql: "select * from this where amount > 90", severity: warn}
  - {row_count: {min: 1, max: 100}, severity: SEV}
  - {freshness: {column: ordered_at, max_age: 1 day}, severity: SEV}
  - {contract: null, severity: SEV}
"""
EXPECTED_DIRTY = {"not_null_name": 3, "unique_code": 5, "unique_k1_k2": 10, "accepted_values_status": 4,
                  "relationships_ref": 2, "range_amount": 6, "pattern_email": 8, "pattern_zip": 1,
                  "pattern_phone": 3, "expression": 2, "sql": 10}


@pytest.fixture
def shop(project_dir):
    """A project with a dirty and a clean model of the same shape, both with every kind of check (warnings
    on the dirty one, so it still publishes)."""
    files = {"models/warehouse/dirty.sql": "select * from lake.dirty",
             "models/warehouse/clean.sql": "select * from lake.clean",
             "models/warehouse/clean.yml": SIDECAR.replace("SEV", "error"),
             "models/warehouse/dirty.yml": SIDECAR.replace("SEV", "warn")}
    return project_dir(files, {"dirty": DIRTY, "clean": CLEAN, "refs": REFS})


def gate(root: Path, now: datetime = NOW) -> Gate:
    return Gate(load_project(root), now=lambda: now)


def results_of(root: Path, run_id: str) -> dict[str, dict]:
    store = Store(load_project(root).state_url)
    try:
        return {f"{r.asset}:{r.name}": r.__dict__ for r in of_run(store, run_id)}
    finally:
        store.close()


def test_every_kind_catches_seeded_violations_with_exact_counts_and_passes_clean_data(shop):
    the_gate = gate(shop)
    result = run_project(load_project(shop), RunOptions(), audit=the_gate, after=the_gate.after)
    the_gate.close()
    assert result.status == "success"  # the dirty model only warns
    found = results_of(shop, result.run_id)
    for name, failures in EXPECTED_DIRTY.items():
        assert found[f"warehouse.dirty:{name}"]["failures"] == failures, name
        assert found[f"warehouse.dirty:{name}"]["status"] == "fail", name
    clean = {k.split(":")[1]: v for k, v in found.items() if k.startswith("warehouse.clean:")}
    assert len(clean) == 14
    assert {n: (r["status"], r["failures"]) for n, r in clean.items() if r["status"] != "pass"} == {
        "sql": ("fail", 10)}  # amount > 90: the clean data has ten such rows too (it only warns)
    assert all(r["rows"] == 100 for r in clean.values() if r["kind"] != "contract")
    dirty = {k.split(":")[1]: v for k, v in found.items() if k.startswith("warehouse.dirty:")}
    assert dirty["row_count"]["status"] == "pass"
    assert dirty["freshness_ordered_at"]["status"] == "pass"
    assert dirty["contract"]["status"] == "pass"


def test_table_checks_fail_with_a_reason(project_dir):
    root = project_dir({"models/warehouse/t.sql": "select * from lake.dirty",
                        "models/warehouse/t.yml": """\
columns:
  - {name: id, type: VARCHAR}
  - {name: gone}
checks:
  - row_count: {min: 101}
  - freshness: {column: ordered_at, max_age: 1 business_day}
  - contract: {strict: false}
"""}, {"dirty": DIRTY})
    monday_after = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)  # Wednesday: data through Monday is too old
    the_gate = gate(root, monday_after)
    result = run_project(load_project(root), RunOptions(), audit=the_gate, after=the_gate.after)
    the_gate.close()
    assert result.outcomes["warehouse.t"].status == "failed"
    found = results_of(root, result.run_id)
    contract = found["warehouse.t:contract"]
    assert contract["status"] == "fail"
    assert contract["failures"] == 2
    assert "id is BIGINT, the contract says VARCHAR" in contract["detail"]
    assert "column gone is missing" in contract["detail"]
    # a broken contract stops the table's other checks: they would trip over the same columns
    assert set(found) == {"warehouse.t:contract"}
    (root / "models/warehouse/t.yml").write_text("""\
checks:
  - row_count: {min: 101}
  - freshness: {column: ordered_at, max_age: 1 business_day}
""")
    the_gate = gate(root, monday_after)
    result = run_project(load_project(root), RunOptions(), audit=the_gate, after=the_gate.after)
    the_gate.close()
    found = results_of(root, result.run_id)
    assert found["warehouse.t:row_count"]["detail"] == "100 rows; expected at least 101"
    assert found["warehouse.t:freshness_ordered_at"]["status"] == "fail"
    assert "must be on or after 2026-12-01" in found["warehouse.t:freshness_ordered_at"]["detail"]
    assert "row_count" in result.outcomes["warehouse.t"].error


class CountingSession(DuckDBSession):
    """Counts the statements that read the table (not DESCRIBE / EXPLAIN)."""

    def __init__(self, cursor: duckdb.DuckDBPyConnection) -> None:
        super().__init__(cursor)
        self.statements: list[str] = []
        real = cursor

        class Spy:
            def execute(_self, sql: str, *args: object) -> object:
                self.statements.append(sql)
                return real.execute(sql, *args)

            def __getattr__(_self, name: str) -> object:
                return getattr(real, name)

        self.cursor = Spy()  # type: ignore[assignment]

    def scans(self) -> list[str]:
        return [s for s in self.statements if not s.startswith(("DESCRIBE", "EXPLAIN", "SELECT typeof"))]


def _warehouse_session(root: Path) -> tuple[duckdb.DuckDBPyConnection, CountingSession]:
    con = duckdb.connect(str(root / "kiban.duckdb"))
    return con, CountingSession(con.cursor())


def test_all_checks_of_a_table_are_measured_by_one_statement(shop):
    run_project(load_project(shop), RunOptions(), audit=None)  # build without checks
    project = load_project(shop)
    con, session = _warehouse_session(shop)
    try:
        ctx = context(project, None, NOW)
        clean = run_suite(session, '"warehouse"."clean"', suite_of(project.assets["warehouse.clean"],
                                                                  project.assets), ctx)
        assert len(clean) == 14
        assert len(session.scans()) == 2  # the measuring statement, and samples for the one failing sql check
        measuring = session.scans()[0]
        assert measuring.count('count(CASE WHEN') == 7  # every per-row condition inside ONE aggregate
        assert measuring.startswith('WITH "__rows" AS (SELECT count(*) AS "n", count(CASE WHEN')
        session.statements.clear()
        dirty = run_suite(session, '"warehouse"."dirty"', suite_of(project.assets["warehouse.dirty"],
                                                                  project.assets), ctx)
        failed = [r for r in dirty if r.status == "fail"]
        assert len(failed) == 11
        assert len(session.scans()) == 1 + 11  # one measuring statement + samples of the failed checks only
        assert {len(r.samples) for r in failed} <= {1, 2, 3, 4, 5}
    finally:
        con.close()


def test_samples_are_limited_and_pii_columns_masked(project_dir):
    root = project_dir({"models/warehouse/people.sql": "select * from lake.p",
                        "models/warehouse/people.yml": """\
columns:
  - name: email
    tags: [pii]
    checks:
      - pattern: email
        samples: 2
        severity: warn
  - name: born
    tags: [pii]
"""}, {"p": "select i as id, 'broken' || i as email, date '2000-01-01' as born from range(10) t(i)"})
    the_gate = gate(root)
    result = run_project(load_project(root), RunOptions(), audit=the_gate, after=the_gate.after)
    the_gate.close()
    found = results_of(root, result.run_id)["warehouse.people:pattern_email"]
    assert found["failures"] == 10
    assert found["samples"] == [{"id": 0, "email": "•••", "born": "•••"},
                                  {"id": 1, "email": "•••", "born": "•••"}]  # not even the shape


def test_fail_above_tolerates_a_number_or_a_share_of_rows(project_dir):
    root = project_dir({"models/warehouse/t.sql": "select * from lake.dirty",
                        "models/warehouse/t.yml": """\
columns:
  - name: email
    checks:
      - pattern: email
        fail_above: 8
  - name: amount
    checks:
      - range: {min: 0}
        fail_above: 5%
"""}, {"dirty": DIRTY})
    the_gate = gate(root)
    result = run_project(load_project(root), RunOptions(), audit=the_gate, after=the_gate.after)
    the_gate.close()
    found = results_of(root, result.run_id)
    assert found["warehouse.t:pattern_email"]["status"] == "pass"  # 8 failing, 8 tolerated
    assert found["warehouse.t:range_amount"]["status"] == "fail"  # 6 failing, 5% of 100 tolerated
    assert "(tolerated: 5)" in found["warehouse.t:range_amount"]["detail"]
    assert result.outcomes["warehouse.t"].status == "failed"


MODELS = {
    "models/warehouse/orders.sql": "select * from lake.orders",
    "models/warehouse/orders.yml": """\
columns:
  - name: customer_id
    checks: [not_null]
  - name: status
    checks:
      - accepted_values: [ok]
        severity: warn
""",
    "models/mart/sales.sql": "select count(*) as orders from warehouse.orders",
    "models/warehouse/stores.sql": "select 1 as store_id",
    "models/mart/stores.sql": "select * from warehouse.stores",
}
GOOD = "select i as order_id, i % 5 as customer_id, 'ok' as status from range(1, 51) t(i)"


def test_a_blocking_failure_keeps_the_old_version_skips_downstream_and_records_why(project_dir):
    root = project_dir(MODELS, {"orders": GOOD})
    the_gate = gate(root)
    first = run_project(load_project(root), RunOptions(), audit=the_gate, after=the_gate.after)
    assert first.status == "success"
    before = query(root, "select count(*), comment from duckdb_tables() where table_name = 'orders' group by all")
    write_parquet(root / "lake/orders/part-1.parquet",
                  "select 100 + i as order_id, case when i < 3 then null else 1 end as customer_id, 'ok' as status "
                  "from range(10) t(i)")
    second = run_project(load_project(root), RunOptions(), audit=the_gate, after=the_gate.after)
    the_gate.close()
    assert second.status == "failed"
    statuses = {k: o.status for k, o in second.outcomes.items()}
    assert statuses["warehouse.orders"] == "failed"
    assert statuses["mart.sales"] == "skipped"
    error = second.outcomes["warehouse.orders"].error
    assert "1 blocking check failed, the previous version stays published" in error
    assert "not_null_customer_id: 3 of 60 rows are null" in error
    assert "upstream warehouse.orders failed" in second.outcomes["mart.sales"].error
    assert query(root, "select count(*), comment from duckdb_tables() where table_name = 'orders' group by all") \
        == before  # the same 50 rows, the same fingerprint
    found = results_of(root, second.run_id)
    assert found["warehouse.orders:not_null_customer_id"]["status"] == "fail"
    assert found["warehouse.orders:not_null_customer_id"]["fingerprint"] == second.plan.fingerprints[
        "warehouse.orders"]  # the version judged, which was never published
    assert found["warehouse.orders:not_null_customer_id"]["samples"][0]["customer_id"] is None


def test_a_warning_publishes_and_is_recorded(project_dir):
    root = project_dir(MODELS, {"orders": GOOD.replace("'ok' as status", "'odd' as status")})
    the_gate = gate(root)
    result = run_project(load_project(root), RunOptions(), audit=the_gate, after=the_gate.after)
    the_gate.close()
    assert result.status == "success"
    assert query(root, "select count(*) from warehouse.orders") == [(50,)]
    found = results_of(root, result.run_id)["warehouse.orders:accepted_values_status"]
    assert (found["severity"], found["status"], found["failures"]) == ("warn", "fail", 50)
    assert found["run_id"] == result.run_id


def test_kiban_run_gates_and_prints_the_checks(project_dir, cli):
    root = project_dir(MODELS, {"orders": GOOD.replace("'ok' as status", "'odd' as status")})
    done = cli("--project", root, "run")
    assert done.returncode == 0, done.stderr
    assert "checks: 1 passed, 1 did not" in done.stdout
    assert "accepted_values_status" in done.stdout
    assert "50 of 50 rows hold other values" in done.stdout
    write_parquet(root / "lake/orders/part-1.parquet",
                  "select 100 as order_id, null::bigint as customer_id, 'ok' as status")
    blocked = cli("--project", root, "run")
    assert blocked.returncode == 1
    assert "blocking check failed" in blocked.stdout
    assert "skipped mart.sales: upstream warehouse.orders failed" in blocked.stdout
    shown = cli("--project", root, "show", "warehouse.orders")
    assert "checks at " in shown.stdout
    assert "earlier " in shown.stdout
    assert "failing rows of warehouse.orders not_null_customer_id" in shown.stdout


def test_kiban_check_judges_published_and_lake_tables_without_building(project_dir, cli):
    root = project_dir({**MODELS, "models/lake/orders.yml": """\
description: POS orders as the registers sent them.
columns:
  - name: order_id
    checks: [unique]
  - name: customer_id
    checks:
      - range: {min: 1}
"""}, {"orders": GOOD})
    not_yet = cli("--project", root, "check")
    assert not_yet.returncode == 1  # lake.orders: 10 customer_id = 0
    assert "not checked warehouse.orders: nothing published yet" in not_yet.stdout
    assert "range_customer_id" in not_yet.stdout
    assert "FAIL" in not_yet.stdout
    assert "failing rows of lake.orders range_customer_id (5 of 10)" in not_yet.stdout
    assert query(root, "select count(*) from duckdb_tables() where schema_name = 'warehouse'") == [(0,)]
    assert cli("--project", root, "run").returncode == 0  # lake checks do not gate a run
    checked = cli("--project", root, "check", "warehouse.orders")
    assert checked.returncode == 0, checked.stdout
    assert "2 checks: 2 passed" in checked.stdout
    shown = cli("--project", root, "show", "lake.orders")
    assert "POS orders as the registers sent them." in shown.stdout
    assert "range_customer_id" in shown.stdout


def test_volume_flags_a_50_percent_drop_but_not_weekday_seasonality_in_90_days():
    rng = random.Random(20261130)
    weekly = [0.8, 0.95, 1.0, 1.0, 1.15, 1.9, 1.6]  # Monday ... Sunday: weekends are busy
    start = date(2026, 9, 1)
    history: list[tuple[date, float]] = []
    judged = 0
    for i in range(90):
        day = start + timedelta(days=i)
        value = 20_000 * weekly[day.weekday()] * (1 + 0.003 * i) * (1 + rng.gauss(0, 0.03))
        verdict = volume.judge(history, day, value)
        if i < 21:
            assert verdict.learning
        else:
            judged += 1
            assert not verdict.anomaly, (day, verdict)  # an ordinary Saturday is not an anomaly
            assert volume.judge(history, day, value * 0.5).anomaly, day  # half of it is
            assert not volume.judge(history, day, value * 0.5, direction="rise").anomaly
        history.append((day, value))
    assert judged == 69
    flat = [(start + timedelta(days=i), 1000.0) for i in range(30)]  # a perfectly steady table
    assert not volume.judge(flat, start + timedelta(days=30), 1005).anomaly
    assert volume.judge(flat, start + timedelta(days=30), 900).anomaly


def test_volume_check_reads_its_own_history_from_the_store(project_dir):
    root = project_dir({"models/warehouse/daily.sql": "select * from lake.daily",
                        "models/warehouse/daily.yml": "checks:\n  - volume: {sum: amount}\n"},
                       {"daily": "select i, 10 as amount from range(500) t(i)"})
    project = load_project(root)
    store = Store(project.state_url)
    from kiban.checks.evaluate import CheckResult

    for d in range(60, 0, -1):  # two months of one run a day, ~1000 rows and 10 per row
        at = datetime(2026, 11, 30, 3, 0) - timedelta(days=d)
        rows = 1000 + (d * 37) % 40
        record(store, project.name, f"r{d}", "fp", [CheckResult("warehouse.daily", "volume", "volume", "error",
                                                               "pass", rows=rows,
                                                               observed={"rows": rows, "sum": rows * 10.0})], at)
    history = observations(store, project.name, "warehouse.daily", "volume", context(project).timezone)
    assert len(history) == 60
    assert history[-1][1]["rows"] == 1000 + 37 % 40
    store.close()
    the_gate = gate(root)
    result = run_project(load_project(root), RunOptions(), audit=the_gate, after=the_gate.after)
    the_gate.close()
    assert result.outcomes["warehouse.daily"].status == "failed"
    found = results_of(root, result.run_id)["warehouse.daily:volume"]
    assert found["status"] == "fail"
    assert found["detail"].startswith("rows 500, usual for a Monday 1,0")
    assert "sum of amount 5,000" in found["detail"]


def test_freshness_counts_business_days_on_the_calendar():
    jp = calendar_for("jp", ProjectConfig(name="x", timezone="Asia/Tokyo"))
    tokyo = ZoneInfo("Asia/Tokyo")
    tuesday_after_holiday = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)  # Mon 23 Nov 2026 is Labour Thanksgiving
    assert judge_freshness(date(2026, 11, 20), 1, "business_days", tuesday_after_holiday, tokyo, jp).fresh
    assert not judge_freshness(date(2026, 11, 19), 1, "business_days", tuesday_after_holiday, tokyo, jp).fresh
    assert judge_freshness(datetime(2026, 11, 20, 14, 0, tzinfo=UTC), 1, "business_days",
                           tuesday_after_holiday, tokyo, jp).fresh
    day_old = judge_freshness(date(2026, 11, 23), 36, "hours", tuesday_after_holiday, tokyo, jp)
    assert day_old.fresh
    assert day_old.age_s == 3600 * 10  # a date is complete at its end: 10:00 JST = 10 h
    assert not judge_freshness(None, 1, "days", NOW, tokyo, None).fresh


def test_relationships_and_sql_checks_see_the_new_version_inside_the_publish(project_dir):
    root = project_dir({"models/warehouse/orders.sql": "select * from lake.orders",
                        "models/warehouse/customers.sql": "select 1 as customer_id",
                        "models/warehouse/orders.yml": """\
columns:
  - name: customer_id
    checks:
      - relationships: {to: customers, field: customer_id}
checks:
  - sql: select order_id from warehouse.orders group by order_id having count(*) > 1
"""}, {"orders": "select i as order_id, case when i = 3 then 7 else 1 end as customer_id from range(5) t(i)"})
    run_project(load_project(root), RunOptions(select=["warehouse.customers"]))
    the_gate = gate(root)
    result = run_project(load_project(root), RunOptions(), audit=the_gate, after=the_gate.after)
    the_gate.close()
    found = results_of(root, result.run_id)
    assert found["warehouse.orders:relationships_customer_id"]["failures"] == 1
    assert found["warehouse.orders:relationships_customer_id"]["samples"] == [{"order_id": 3, "customer_id": 7}]
    assert found["warehouse.orders:sql"]["failures"] == 0


def test_compiled_sql_quotes_identifiers_and_literals():
    columns = {'we"ird': ('we"ird', "VARCHAR"), "n": ("n", "INTEGER")}
    compiler = Compiler('"warehouse"."t"', columns)
    project_root = Path("/nonexistent")
    from kiban.checks.spec import AcceptedValues, Range
    from kiban.checks.suite import Check

    accepted = Check("warehouse.t", "a", AcceptedValues(column='we"ird', values=("it's", 1, True)), (), project_root)
    assert compiler.predicate(accepted) == '"we""ird" NOT IN (\'it\'\'s\', \'1\', \'true\')'
    ranged = Check("warehouse.t", "r", Range(column="n", min=date(2026, 1, 1)), (), project_root)
    assert compiler.predicate(ranged) == "(\"n\" < DATE '2026-01-01')"
    assert relation_name("lake.x") == '"lake"."x"'


def test_results_survive_as_json_in_the_store(shop):
    the_gate = gate(shop)
    result = run_project(load_project(shop), RunOptions(), audit=the_gate, after=the_gate.after)
    the_gate.close()
    con = __import__("sqlite3").connect(shop / ".kiban/state.db")
    try:
        rows = con.execute("select project, kind, rows, observed, samples from check_results "
                           "where run_id = ? and check_name = 'pattern_email' and asset = 'warehouse.dirty'",
                           (result.run_id,)).fetchall()
    finally:
        con.close()
    project, kind, rows_judged, observed, samples = rows[0]
    assert (project, kind, rows_judged, observed) == ("test", "pattern", 100, None)
    assert json.loads(samples)[0]["email"] == "not-an-email"


def test_check_published_reports_what_is_not_built(shop):
    report = check_published(load_project(shop), now=NOW)
    assert sorted(report.not_built) == ["warehouse.clean", "warehouse.dirty"]
    assert report.results == []
    assert report.ok


def test_describe_reads_names_and_types(shop):
    con = duckdb.connect()
    try:
        con.execute("create table t as select 1::integer as a, 'x' as B")
        assert describe(DuckDBSession(con.cursor()), "t") == {"a": ("a", "INTEGER"), "b": ("B", "VARCHAR")}
    finally:
        con.close()


def test_a_relationships_check_waits_for_the_model_it_references(project_dir):
    root = project_dir({"models/warehouse/orders.sql": "select * from lake.orders",
                        "models/warehouse/orders.yml": "columns:\n  - name: store_id\n    checks:\n"
                                                       "      - relationships: warehouse.stores\n",
                        # slow enough that, built side by side, orders would be audited before stores exists
                        "models/warehouse/stores.sql": "select distinct i % 5 as store_id from range(3000000) t(i)"},
                       {"orders": "select i as order_id, i % 5 as store_id from range(10) t(i)"},
                       config="threads: 4\n")
    the_gate = gate(root)
    assert the_gate.after == {"warehouse.orders": ("warehouse.stores",)}
    result = run_project(load_project(root), RunOptions(), audit=the_gate, after=the_gate.after)
    the_gate.close()
    assert result.status == "success", result.outcomes
    assert result.outcomes["warehouse.stores"].ended_at <= result.outcomes["warehouse.orders"].started_at
    (root / "models/warehouse/stores.sql").write_text("select cast('x' as integer) as store_id")
    the_gate = gate(root)
    failed = run_project(load_project(root), RunOptions(full_refresh=True), audit=the_gate)
    the_gate.close()
    # waiting is not reading: orders is still built, and judged against the stores that are published
    assert {k: o.status for k, o in failed.outcomes.items()} == {"warehouse.stores": "failed",
                                                                 "warehouse.orders": "success"}


def test_a_relationships_check_on_a_model_never_built_says_to_build_it_first(project_dir):
    root = project_dir({"models/warehouse/orders.sql": "select * from lake.orders",
                        "models/warehouse/orders.yml": "columns:\n  - name: store_id\n    checks:\n"
                                                       "      - relationships: warehouse.stores\n",
                        "models/warehouse/stores.sql": "select 1 as store_id"},
                       {"orders": "select i as order_id, i % 5 as store_id from range(10) t(i)"})
    the_gate = gate(root)
    result = run_project(load_project(root), RunOptions(select=["warehouse.orders"]), audit=the_gate,
                         after=the_gate.after)
    the_gate.close()
    error = result.outcomes["warehouse.orders"].error or ""
    assert result.outcomes["warehouse.orders"].status == "failed"
    assert "warehouse.stores, which has not been built yet" in error
    assert "kiban run warehouse.stores" in error


def test_a_relationships_check_cannot_point_downstream(project_dir):
    root = project_dir({"models/warehouse/orders.sql": "select * from lake.orders",
                        "models/warehouse/orders.yml": "columns:\n  - name: store_id\n    checks:\n"
                                                       "      - relationships: mart.stores\n",
                        "models/mart/stores.sql": "select distinct store_id from warehouse.orders"},
                       {"orders": "select 1 as order_id, 1 as store_id"})
    with pytest.raises(ProjectError) as info:
        gate(root)
    assert "relationships to mart.stores, which is built from warehouse.orders" in str(info.value)
    assert "orders.yml:4:9" in str(info.value)
