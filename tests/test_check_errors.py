"""Malformed check declarations get errors a person can act on, naming the sidecar's file:line.

Structure (unknown kinds, settings, bad regexes, unknown assets) is reported when the project loads;
user SQL when a run or `kiban check` starts, before any data is read; columns when the checks meet the
relation they judge.
"""

from __future__ import annotations

import pytest

from kiban.checks.gate import Gate
from kiban.errors import ProjectError, ProjectErrors
from kiban.project import load_project
from kiban.run import RunOptions, run_project

LAKE = {"orders": "select i as order_id, i % 3 as customer_id, 'ok' as status, i * 1.5 as amount, "
                  "'u' || i || '@x.jp' as email from range(1, 11) t(i)"}


def sidecar(text: str) -> dict[str, str]:
    return {"models/warehouse/orders.sql": "select * from lake.orders", "models/warehouse/orders.yml": text}


def load_error(make_project, text: str, extra: dict[str, str] | None = None) -> str:
    root = make_project({**sidecar(text), **(extra or {})}, lake=LAKE)
    with pytest.raises((ProjectError, ProjectErrors)) as info:
        load_project(root)
    return str(info.value).replace(str(root) + "/", "")


def test_an_unknown_kind_names_its_line_and_the_nearest_kind(make_project):
    message = load_error(make_project, "columns:\n  - name: order_id\n    checks:\n      - not_nul\n")
    assert message == ("models/warehouse/orders.yml:4:9: columns.0.checks.0: unknown check 'not_nul'; "
                       "did you mean 'not_null'?")


def test_an_unknown_table_check_kind_in_a_mapping(make_project):
    message = load_error(make_project, "checks:\n  - row_cont: {min: 1}\n")
    assert message == "models/warehouse/orders.yml:2:5: checks.0: unknown check 'row_cont'; did you mean 'row_count'?"


def test_an_unknown_setting_of_a_kind_suggests_the_right_one(make_project):
    message = load_error(make_project, "checks:\n  - range:\n      column: amount\n      mx: 5\n")
    assert message.startswith("models/warehouse/orders.yml:4:7: unknown key 'mx'")
    assert "did you mean 'max'?" in message


def test_an_unknown_option_beside_the_kind(make_project):
    message = load_error(make_project, "checks:\n  - unique: [order_id]\n    severty: warn\n")
    assert message == ("models/warehouse/orders.yml:2:5: checks.0: unknown setting 'severty' for a unique check; "
                       "did you mean 'severity'?")


def test_a_bad_severity_lists_the_choices(make_project):
    message = load_error(make_project, "checks:\n  - unique: [order_id]\n    severity: fatal\n")
    assert message.startswith("models/warehouse/orders.yml:3:5: checks.0.unique.severity:")
    assert "'fatal' is not allowed" in message
    assert "'error' or 'warn'" in message


def test_a_bad_regular_expression(make_project):
    message = load_error(make_project, "columns:\n  - name: email\n    checks:\n      - pattern: '[a-z'\n")
    assert message.startswith("models/warehouse/orders.yml:4:")
    assert "invalid regular expression '[a-z'" in message


def test_a_regular_expression_duckdb_cannot_run(make_project):
    message = load_error(make_project, "columns:\n  - name: email\n    checks:\n      - pattern: '(?=x)y'\n")
    assert "lookahead" in message
    assert "RE2" in message


def test_an_unknown_ready_made_pattern(make_project):
    message = load_error(make_project, "columns:\n  - name: email\n    checks:\n      - pattern: emial\n")
    assert "unknown pattern 'emial' (did you mean 'email'?)" in message


def test_a_table_check_under_a_column(make_project):
    message = load_error(make_project, "columns:\n  - name: email\n    checks:\n      - row_count: {min: 1}\n")
    assert message == ("models/warehouse/orders.yml:4:9: columns.0.checks.0: row_count is about the whole table: "
                       "list it under the model's `checks:`, not under a column")


def test_a_column_check_at_table_level_needs_its_column(make_project):
    message = load_error(make_project, "checks:\n  - not_null\n")
    assert "a table-level not_null check needs `column:`" in message


def test_thresholds_and_ages_are_validated(make_project):
    message = load_error(make_project, "checks:\n  - not_null: order_id\n    fail_above: lots\n"
                                       "  - freshness: {column: x, max_age: soon}\n")
    assert "models/warehouse/orders.yml:3:" in message
    assert "fail_above 'lots'" in message
    assert "models/warehouse/orders.yml:4:" in message
    assert "'soon' is not an age" in message


def test_relationships_to_an_unknown_asset(make_project):
    message = load_error(make_project, "columns:\n  - name: customer_id\n    checks:\n"
                                       "      - relationships: warehouse.custmers\n")
    assert message.startswith("models/warehouse/orders.yml:4:9: relationships: unknown asset 'warehouse.custmers'")


def test_two_checks_with_one_name(make_project):
    message = load_error(make_project, "checks:\n  - {unique: [order_id], name: keys}\n"
                                       "  - {not_null: order_id, name: keys}\n")
    assert message == ("models/warehouse/orders.yml:3:5: two checks are named keys; check names must differ "
                       "within a sidecar")


def test_an_unknown_calendar_for_freshness(make_project):
    message = load_error(make_project, "checks:\n  - freshness: {column: x, max_age: 1 business_day, "
                                       "calendar: jpn}\n")
    assert "freshness: unknown calendar 'jpn'" in message
    assert "did you mean 'jp'?" in message


def test_a_contract_type_that_is_not_a_type(make_project):
    message = load_error(make_project, "columns:\n  - name: order_id\n    type: 'int); drop table x; --'\n")
    assert message.startswith("models/warehouse/orders.yml:3:")
    assert "is not a column type" in message


def test_lake_sidecars_must_name_a_lake_table_and_take_no_build_keys(make_project):
    message = load_error(make_project, "checks: []\n", {"models/lake/ordrs.yml": "checks: []\n"})
    assert "sidecar ordrs.yml describes no lake table: there is no folder lake/ordrs/" in message
    assert "did you mean 'orders'?" in message
    message = load_error(make_project, "checks: []\n", {"models/lake/orders.yml": "materialized: view\n"})
    assert message.startswith("models/lake/orders.yml:1:1: 'materialized' is about building a model")


def run_error(make_project, text: str, extra: dict[str, str] | None = None) -> str:
    """The error a run reports for warehouse.orders (the checks' problems that need the data or its SQL)."""
    root = make_project({**sidecar(text), **(extra or {})}, lake=LAKE)
    project = load_project(root)
    try:
        gate = Gate(project)
    except (ProjectError, ProjectErrors) as exc:
        return str(exc).replace(str(root) + "/", "")
    result = run_project(project, RunOptions(), audit=gate)
    gate.close()
    assert result.outcomes["warehouse.orders"].status == "failed"
    return (result.outcomes["warehouse.orders"].error or "").replace(str(root) + "/", "")


def test_a_wrong_column_is_found_against_the_built_relation(make_project):
    message = run_error(make_project, "columns:\n  - name: emial\n    checks:\n      - pattern: email\n")
    assert message == ("models/warehouse/orders.yml:4:9: check pattern_emial of warehouse.orders: warehouse.orders "
                       "has no column 'emial'\n  hint: did you mean 'email'?")


def test_a_wrong_column_inside_an_expression(make_project):
    message = run_error(make_project, "checks:\n  - expression: amont > 0\n")
    assert message.startswith("models/warehouse/orders.yml:2:5: check expression of warehouse.orders: "
                              "warehouse.orders has no column 'amont'")
    assert "did you mean 'amount'?" in message


def test_invalid_sql_in_an_expression_stops_the_run_before_it_starts(make_project):
    message = run_error(make_project, "checks:\n  - expression: amount >\n")
    assert message.startswith("models/warehouse/orders.yml:2:5: check expression of warehouse.orders: "
                              "invalid SQL in expression:")


def test_a_query_where_a_condition_belongs(make_project):
    message = run_error(make_project, "checks:\n  - expression: select 1\n")
    assert "an expression is a condition such as `quantity > 0`, not a statement" in message
    assert "hint: a query that returns the failing rows is a `sql` check" in message


def test_an_aggregate_in_a_row_condition(make_project):
    message = run_error(make_project, "checks:\n  - expression: sum(amount) > 0\n")
    assert "cannot use aggregates or window functions" in message


def test_a_sql_check_that_is_not_a_query(make_project):
    message = run_error(make_project, "checks:\n  - sql: delete from warehouse.orders\n")
    assert "a sql check is a query that returns the failing rows, not DELETE" in message
    message = run_error(make_project, "checks:\n  - sql: select 1; select 2\n")
    assert "sql holds 2 statements; it takes one query" in message


def test_a_sql_check_that_does_not_bind_names_itself(make_project):
    message = run_error(make_project, "checks:\n  - sql: select * from this where nope > 1\n")
    assert message.startswith("models/warehouse/orders.yml:2:5: check sql of warehouse.orders: the SQL does not run:")
    assert "nope" in message


def test_relationships_to_a_column_the_other_asset_lacks(make_project):
    message = run_error(make_project, "columns:\n  - name: customer_id\n    checks:\n"
                                      "      - relationships: {to: lake.orders, field: cust}\n")
    assert message.startswith("models/warehouse/orders.yml:4:9: check relationships_customer_id of "
                              "warehouse.orders: relationships to lake.orders:")
    assert "cust" in message


def test_an_unknown_contract_type(make_project):
    message = run_error(make_project, "columns:\n  - name: order_id\n    type: BIGNUMBER\nchecks: [contract]\n")
    assert "the contract declares the type 'BIGNUMBER', which DuckDB does not know" in message


def test_the_cli_prints_declaration_errors_and_exits_2(make_project, cli):
    root = make_project(sidecar("checks:\n  - expression: amount >\n"), lake=LAKE)
    for command in ("run", "check"):
        done = cli("--project", root, command)
        assert done.returncode == 2, done.stdout
        assert "orders.yml:2:5: check expression of warehouse.orders: invalid SQL in expression" in done.stderr
