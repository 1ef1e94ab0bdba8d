"""Checks on every engine: the audit hook and `kiban check` judge PostgreSQL and Spark as they judge DuckDB.

Each check is compiled in DuckDB's SQL and written in the engine's dialect (kiban.checks.engine_sql). The
project has every kind of check, passing and failing ones (severity warn, so the publish goes on), and one
blocking failure that must keep the previous version. The verdicts — status, failing rows, samples — must
be identical on every engine. (Before issue 18 the checks were sent to PostgreSQL and Spark as DuckDB SQL:
``DESCRIBE``, positional result columns, and every gated model failed.)
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from kiban.checks.gate import gate_for
from kiban.checks.on_demand import check_published
from kiban.project import load_project
from kiban.run import RunOptions, run_project

LAKE = {
    "orders": "select i as order_id, (i % 5) + 1 as customer_id, "
              "case when i % 9 = 0 then null else 'web' end as channel, "
              "(i * 7 % 100) - 3 as amount, "
              "timestamptz '2026-03-01 00:00:00+00' + i * interval 7 hour as ordered_at, "
              "case when i % 4 = 0 then 'paid' when i % 4 = 1 then 'open' when i % 4 = 2 then 'Paid' "
              "else 'cancelled' end as status from range(1, 61) t(i)",
    "customers": "select i as customer_id, 'C' || i as code from range(1, 5) t(i)",
}

CHECKS = """
columns:
  - name: order_id
    type: BIGINT
    checks: [not_null, unique]
  - name: customer_id
    checks:
      - relationships: lake.customers
        severity: warn
  - name: channel
    type: VARCHAR
    checks:
      - not_null: {severity: warn}
      - accepted_values: [web, store]
  - name: amount
    checks:
      - range: {min: 0, max: 90, severity: warn}
  - name: status
    checks:
      - accepted_values: {values: [paid, open, cancelled], severity: warn}
      - pattern: {pattern: '[a-z]+', severity: warn}
  - name: ordered_at
    type: TIMESTAMP WITH TIME ZONE
checks:
  - row_count: {min: 1}
  - contract
  - unique: {columns: [customer_id, channel], severity: warn}
  - expression: {sql: "amount + 3 >= 0 and channel <> 'x'", name: amount_positive}
  - expression: {sql: "hour(ordered_at) < 12", name: morning, severity: warn}
  - sql: {sql: "select customer_id, count(*) as n from this group by customer_id having count(*) > 11", severity: warn}
  - freshness: {column: ordered_at, max_age: 100000 days}
"""

FILES = {
    "models/warehouse/orders.sql": "select * from lake.orders",
    "models/warehouse/orders.yml": CHECKS,
    "models/mart/blocked.sql": "select order_id, amount from warehouse.orders",
    "models/mart/blocked.yml": "checks:\n  - range: {column: amount, min: 0}\n",
}


FAILING = {"accepted_values_status", "morning", "not_null_channel", "pattern_status", "range_amount",
           "relationships_customer_id", "sql", "unique_customer_id_channel"}


def verdicts(results: list[Any]) -> dict[str, tuple[str, int | None, int]]:
    return {f"{r.asset}:{r.name}": (r.status, r.failures, len(r.samples)) for r in results}


def run_gated(root: Path) -> tuple[Any, dict[str, tuple[str, int | None, int]]]:
    project = load_project(root)
    gate = gate_for(project)
    assert gate is not None
    try:
        result = run_project(project, RunOptions(), audit=gate)
    finally:
        gate.close()
    report = check_published(load_project(root))
    return result, verdicts(report.results)


def project(make_project: Callable[..., Path], name: str, warehouse: str | None) -> Path:
    config = "name: shop\ntimezone: Asia/Tokyo\n" + (f"warehouse: '{warehouse}'\n" if warehouse else "")
    return make_project({**FILES, "kiban.yml": config}, lake=LAKE, root=name)


def assert_like_duckdb(result: Any, checked: dict[str, Any], duck: tuple[Any, dict[str, Any]]) -> None:
    statuses = {k: o.status for k, o in result.outcomes.items()}
    assert statuses["warehouse.orders"] == "success", result.outcomes["warehouse.orders"].error
    assert statuses["mart.blocked"] == "failed"
    assert "blocking check" in (result.outcomes["mart.blocked"].error or "")
    assert statuses == {k: o.status for k, o in duck[0].outcomes.items()}
    assert checked == duck[1]


@pytest.fixture(scope="module")
def duck(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Any]]:
    from tests.conftest import write_files, write_parquet

    root = tmp_path_factory.mktemp("checks_duck") / "duck"
    write_files(root, {**FILES, "kiban.yml": "name: shop\ntimezone: Asia/Tokyo\n"})
    for table, sql in LAKE.items():
        write_parquet(root / "lake" / table / "part-0.parquet", sql)
    result, checked = run_gated(root)
    # the verdicts the other engines must reproduce: some checks fail, and the blocking one blocks
    fails = {k.split(":")[1] for k, v in checked.items() if v[0] == "fail"}
    assert fails == FAILING, checked
    return result, checked


def test_postgres_checks_judge_like_duckdb(make_project: Callable[..., Path], postgres_url: str,
                                           duck: tuple[Any, dict[str, Any]]) -> None:
    root = project(make_project, "pg", postgres_url)
    result, checked = run_gated(root)
    assert_like_duckdb(result, checked, duck)
    with psycopg.connect(postgres_url) as conn:  # the blocked model was never published
        found = conn.execute("select count(*) from pg_tables where schemaname = 'mart' "
                             "and tablename = 'blocked'").fetchone()
        assert found is not None
        assert found[0] == 0


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_spark_checks_judge_like_duckdb(make_project: Callable[..., Path], tmp_path: Path,
                                        duck: tuple[Any, dict[str, Any]]) -> None:
    if shutil.which("java") is None:
        pytest.skip("Spark needs Java")
    root = project(make_project, "spark", f"spark://{tmp_path / 'wh'}?master=local[1]&spark.sql.shuffle.partitions=1")
    result, checked = run_gated(root)
    assert_like_duckdb(result, checked, duck)
    assert not (tmp_path / "wh" / "mart" / "blocked" / "_kiban.json").exists()
