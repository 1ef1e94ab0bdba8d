"""Bad projects: every kind of mistake gets a clear message naming file:line, exit code 2, no traceback.

Each test runs the real ``kiban`` command in a child process, because what matters here is what a
person sees at the process boundary: stderr, the exit code, and no Python traceback.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from kiban.graph import build_graph
from kiban.project import load_project

# A small, valid project: two lake tables, two warehouse models, two marts.
BASE = {
    "models/warehouse/orders.sql": (
        "select order_id, customer_id, amount\nfrom lake.raw_orders\nwhere amount > 0\n"
    ),
    "models/warehouse/customers.sql": "select customer_id, name\nfrom lake.raw_customers\n",
    "models/mart/daily_sales.sql": "select count(*) as orders\nfrom warehouse.orders\n",
    "models/mart/customer_sales.sql": (
        "select c.name, sum(o.amount) as revenue\n"
        "from warehouse.orders o\n"
        "join warehouse.customers c using (customer_id)\n"
        "group by c.name\n"
    ),
}
LAKE: dict[str, str | None] = {"raw_orders": None, "raw_customers": None}


@pytest.fixture
def project(make_project):
    """``project(overrides)``: the base project with some files replaced, added or (value None) removed."""

    def build(overrides: dict[str, str | None]) -> Path:
        files = {**BASE, **{k: v for k, v in overrides.items() if v is not None}}
        for rel, text in overrides.items():
            if text is None:
                files.pop(rel, None)
        return make_project(files, LAKE)

    return build


def problem(cli, root: Path, *args: str):
    """Run ``kiban --project ROOT run`` (or ``args``) and check what every project error must satisfy."""
    result = cli("--project", root, *(args or ("run",)))
    both = result.stdout + result.stderr
    assert "Traceback" not in both, both
    assert result.returncode == 2, both
    assert result.stderr.startswith("error: "), both
    assert result.stdout == "", "a project error must not print anything on stdout"
    assert not (root / "kiban.duckdb").exists(), "a bad project must not touch the warehouse"
    return result.stderr


def where(root: Path, rel: str, line: int, column: int | None = None) -> str:
    """``/abs/path/to/file:LINE[:COL]: `` as kiban prints it in front of a message."""
    text = f"{root / rel}:{line}"
    return (text if column is None else f"{text}:{column}") + ": "


def count_errors(stderr: str) -> int:
    return sum(1 for line in stderr.splitlines() if line.startswith("error: "))


def test_the_base_project_is_valid(project, cli):
    root = project({})
    result = cli("--project", root, "graph", "--format", "json")
    assert result.returncode == 0, result.stderr
    assert "error" not in result.stderr


# --- YAML -------------------------------------------------------------------------------------------


def test_broken_yaml_in_kiban_yml_names_the_line(project, cli):
    root = project({"kiban.yml": "name: shop\ntimezone: UTC\nthreads: 2\n  retries: 1\n"})
    err = problem(cli, root)
    assert where(root, "kiban.yml", 4, 10) + "invalid YAML: mapping values are not allowed here" in err


def test_broken_yaml_in_a_sidecar_names_the_line(project, cli):
    bad = "description: x\ncolumns:\n  - name: a\n   description: b\n"  # `description` is one space short
    root = project({"models/warehouse/orders.yml": bad})
    err = problem(cli, root)
    assert where(root, "models/warehouse/orders.yml", 4, 4) + "invalid YAML" in err


def test_unknown_key_in_kiban_yml_suggests_the_right_one(project, cli):
    root = project({"kiban.yml": "name: shop\ntimezone: UTC\nthreds: 4\n"})
    err = problem(cli, root)
    assert where(root, "kiban.yml", 3, 1) + "unknown key 'threds'" in err
    assert "hint: did you mean 'threads'?" in err


def test_unknown_key_with_nothing_close_lists_the_allowed_keys(project, cli):
    root = project({"kiban.yml": "name: shop\nflavour: vanilla\n"})
    err = problem(cli, root)
    assert where(root, "kiban.yml", 2, 1) + "unknown key 'flavour'" in err
    assert "expected one of:" in err
    for key in ("name", "timezone", "warehouse", "threads", "retries"):
        assert key in err


def test_unknown_key_in_a_sidecar_suggests_the_right_one(project, cli):
    root = project({"models/mart/daily_sales.yml": "owner: sales-team\ndescripton: Orders per day.\n"})
    err = problem(cli, root)
    assert where(root, "models/mart/daily_sales.yml", 2, 1) + "unknown key 'descripton'" in err
    assert "hint: did you mean 'description'?" in err


def test_unknown_key_inside_a_column_points_at_the_nested_key(project, cli):
    root = project({"models/mart/daily_sales.yml": "columns:\n  - name: orders\n    descripton: How many.\n"})
    err = problem(cli, root)
    assert where(root, "models/mart/daily_sales.yml", 3, 5) + "unknown key 'descripton'" in err
    assert "did you mean 'description'?" in err


def test_wrong_materialization_value(project, cli):
    root = project({"models/mart/daily_sales.yml": "description: Orders per day.\nmaterialized: tabel\n"})
    err = problem(cli, root)
    assert where(root, "models/mart/daily_sales.yml", 2, 1) + "materialized:" in err
    assert "'table', 'view' or 'incremental'" in err


def test_unknown_timezone(project, cli):
    root = project({"kiban.yml": "name: shop\ntimezone: Asia/Tokio\n"})
    err = problem(cli, root)
    assert where(root, "kiban.yml", 2, 1) + "timezone:" in err
    assert "unknown timezone 'Asia/Tokio'" in err
    assert "did you mean 'Asia/Tokyo'" in err


@pytest.mark.parametrize(("line", "needle"), [
    ("threads: many", "valid integer"),
    ("threads: 0", "greater than or equal to 1"),
    ("retries: -1", "greater than or equal to 0"),
])
def test_wrong_type_or_range_in_kiban_yml(project, cli, line, needle):
    root = project({"kiban.yml": f"name: shop\ntimezone: UTC\n{line}\n"})
    err = problem(cli, root)
    assert where(root, "kiban.yml", 3, 1) + line.split(":")[0] + ":" in err
    assert needle in err


def test_missing_project_name(project, cli):
    root = project({"kiban.yml": "timezone: UTC\n"})
    err = problem(cli, root)
    assert where(root, "kiban.yml", 1, 1) + "missing required key 'name'" in err


def test_sidecar_that_is_not_a_mapping(project, cli):
    root = project({"models/mart/daily_sales.yml": "- description\n- owner\n"})
    err = problem(cli, root)
    assert where(root, "models/mart/daily_sales.yml", 1, 1) + "expected a mapping" in err


# --- SQL --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("sql", "line", "column", "needle"), [
    ("select order_id\nfrom warehouse.orders\nwhere (amount > 0\n", 3, 17, "Expecting )"),
    ("select order_id\nfrom warehouse.orders\nwher amount > 0\n", 3, 11, "Unexpected token"),
])
def test_sql_syntax_error_names_line_and_column(project, cli, sql, line, column, needle):
    root = project({"models/mart/daily_sales.sql": sql})
    err = problem(cli, root)
    assert where(root, "models/mart/daily_sales.sql", line, column) + "SQL syntax error" in err
    assert needle in err


@pytest.mark.parametrize(("sql", "kind"), [
    ("drop table warehouse.orders\n", "DROP"),
    ("insert into warehouse.orders values (1, 2, 3)\n", "INSERT"),
    ("create table x as select * from warehouse.orders\n", "CREATE"),
])
def test_a_model_that_is_not_a_select(project, cli, sql, kind):
    root = project({"models/mart/daily_sales.sql": sql})
    err = problem(cli, root)
    message = f"a model is one SELECT statement, not {kind}"
    assert where(root, "models/mart/daily_sales.sql", 1) + message in err
    assert "kiban creates the table itself" in err


def test_two_statements_in_one_model(project, cli):
    root = project({"models/mart/daily_sales.sql": "select 1 as a;\nselect 2 as a;\n"})
    err = problem(cli, root)
    message = "a model is exactly one SELECT statement; this file has 2"
    assert where(root, "models/mart/daily_sales.sql", 1) + message in err


def test_empty_model(project, cli):
    root = project({"models/mart/daily_sales.sql": "\n  \n"})
    err = problem(cli, root)
    assert where(root, "models/mart/daily_sales.sql", 1) + "the SQL file is empty" in err


def test_model_file_name_that_is_not_an_identifier(project, cli):
    root = project({"models/mart/2024-report.sql": "select 1 as a\n"})
    err = problem(cli, root)
    assert f"{root / 'models/mart/2024-report.sql'}: model name '2024-report' must be letters" in err


# --- tables -----------------------------------------------------------------------------------------


def test_unknown_qualified_table_suggests_the_nearest_asset(project, cli):
    root = project({"models/mart/daily_sales.sql": "select count(*) as orders\nfrom warehouse.ordrs\n"})
    err = problem(cli, root)
    assert where(root, "models/mart/daily_sales.sql", 2, 16) + "unknown table warehouse.ordrs" in err
    assert "hint: did you mean 'warehouse.orders'?" in err


def test_unknown_unqualified_table_suggests_the_nearest_asset(project, cli):
    root = project({"models/warehouse/orders.sql": "select *\nfrom raw_ordrs\n"})
    err = problem(cli, root)
    assert where(root, "models/warehouse/orders.sql", 2, 6) + "unknown table raw_ordrs" in err
    assert "hint: did you mean 'lake.raw_orders'?" in err


def test_unknown_table_with_nothing_close_has_no_guess(project, cli):
    root = project({"models/mart/daily_sales.sql": "select *\nfrom zzzzzz\n"})
    err = problem(cli, root)
    assert where(root, "models/mart/daily_sales.sql", 2, 6) + "unknown table zzzzzz" in err
    assert "did you mean" not in err


def test_unqualified_name_of_two_assets_is_ambiguous(project, cli):
    root = project({"models/mart/daily_sales.sql": "select count(*) as n\nfrom customers\n",
                    "models/warehouse/raw_orders.sql": "select * from lake.raw_orders\n",
                    "models/mart/raw.sql": "select * from raw_orders\n"})
    err = problem(cli, root)
    assert where(root, "models/mart/raw.sql", 1, 15) + "table raw_orders is ambiguous" in err
    assert "lake.raw_orders or warehouse.raw_orders" in err
    # an unqualified name that only one asset has is fine: daily_sales reads warehouse.customers
    assert "daily_sales.sql" not in err


def test_a_cte_is_not_a_table_and_references_of_every_shape_resolve(project, cli):
    root = project({
        # `recent` is a CTE that names no asset: it must not be reported as an unknown table
        "models/mart/daily_sales.sql": (
            "with recent as (select * from warehouse.orders where amount > 10)\n"
            "select count(*) as orders from recent\n"
        ),
        "models/mart/customer_sales.sql": (
            'select c."name", t.revenue\n'
            'from "warehouse"."customers" c\n'
            "left join (select customer_id, sum(amount) as revenue from WAREHOUSE.Orders group by 1) t\n"
            "  using (customer_id)\n"
            "where exists (select 1 from lake.raw_orders r where r.customer_id = c.customer_id)\n"
        ),
    })
    result = cli("--project", root, "graph", "--format", "json")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    graph = build_graph(load_project(root))
    assert graph.deps["mart.daily_sales"] == ("warehouse.orders",)
    assert set(graph.deps["mart.customer_sales"]) == {
        "warehouse.customers", "warehouse.orders", "lake.raw_orders"}


# --- graph shape ------------------------------------------------------------------------------------


def test_cycle_names_the_whole_cycle_and_where_it_closes(project, cli):
    # a reads b (line 2), b reads c (line 3), c reads a (line 4, unqualified)
    sqls = {
        "a": "select *\nfrom warehouse.b\n",
        "b": "select *\n\nfrom warehouse.c\n",
        "c": "select *\n\n\nfrom a\n",
    }
    refs = {"a": (2, 16), "b": (3, 16), "c": (4, 6)}
    reads = {"a": "b", "b": "c", "c": "a"}
    root = project({f"models/warehouse/{name}.sql": sql for name, sql in sqls.items()})
    err = problem(cli, root)
    match = re.search(r"dependency cycle: (.+)", err)
    assert match, err
    cycle = [key.removeprefix("warehouse.") for key in match.group(1).split(" → ")]
    assert len(cycle) == 4, cycle
    assert cycle[0] == cycle[-1], cycle
    assert set(cycle) == {"a", "b", "c"}
    for reader, upstream in itertools.pairwise(cycle):
        assert reads[reader] == upstream, f"{reader} → {upstream} is not an edge of the cycle"
    first = cycle[0]
    assert where(root, f"models/warehouse/{first}.sql", *refs[first]) + "dependency cycle" in err
    assert "break one of these edges" in err


def test_a_model_that_reads_itself(project, cli):
    root = project({"models/warehouse/orders.sql": "select *\nfrom warehouse.orders\n"})
    err = problem(cli, root)
    assert where(root, "models/warehouse/orders.sql", 2, 16) + "warehouse.orders reads itself" in err


def test_mart_reading_a_mart_is_a_layer_violation(project, cli):
    root = project({"models/mart/top_customers.sql": "select *\nfrom mart.customer_sales\nlimit 10\n"})
    err = problem(cli, root)
    assert where(root, "models/mart/top_customers.sql", 2, 11) in err
    assert "mart model mart.top_customers reads mart.customer_sales" in err
    assert "the mart layer may only read lake and warehouse" in err
    assert "move logic shared by several marts into a warehouse model" in err


def test_warehouse_reading_a_mart_is_a_layer_violation(project, cli):
    root = project({"models/warehouse/customers.sql": "select * from mart.daily_sales\n"})
    err = problem(cli, root)
    assert where(root, "models/warehouse/customers.sql", 1, 20) in err
    assert "warehouse model warehouse.customers reads mart.daily_sales" in err
    assert "may only read lake and warehouse" in err


# --- files ------------------------------------------------------------------------------------------


def test_no_kiban_yml_points_to_kiban_init(tmp_path, cli):
    empty = tmp_path / "nothing_here"
    empty.mkdir()
    result = cli("--project", empty, "run")
    both = result.stdout + result.stderr
    assert result.returncode == 2, both
    assert "Traceback" not in both
    assert f"no kiban.yml found in {empty.resolve()}" in result.stderr
    assert "kiban init" in result.stderr


def test_no_kiban_yml_when_the_folder_does_not_exist(tmp_path, cli):
    result = cli("--project", tmp_path / "missing", "status")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "no kiban.yml found" in result.stderr


def test_sidecar_without_its_sql_file(project, cli):
    root = project({"models/mart/daily_sale.yml": "description: typo in the file name\n"})
    err = problem(cli, root)
    message = "sidecar daily_sale.yml has no SQL file daily_sale.sql next to it"
    assert f"{root / 'models/mart/daily_sale.yml'}: {message}" in err
    assert "did you mean 'daily_sales'?" in err


def test_wrong_layer_folder_suggests_the_right_one(project, cli):
    root = project({"models/marts/weekly.sql": "select 1 as a\n"})
    err = problem(cli, root)
    assert f"{root / 'models/marts'}: 'marts' is not a layer" in err
    assert "hint: did you mean 'mart'?" in err


def test_unrelated_layer_folder_explains_the_layers(project, cli):
    root = project({"models/staging/x.sql": "select 1 as a\n"})
    err = problem(cli, root)
    assert "'staging' is not a layer" in err
    assert "models/warehouse/ or models/mart/" in err


# --- several at once --------------------------------------------------------------------------------


def test_several_loading_errors_are_all_reported(project, cli):
    root = project({
        "models/mart/daily_sales.yml": "descripton: x\n",
        "models/marts/weekly.sql": "select 1 as a\n",
        "models/warehouse/ghost.yml": "description: no SQL\n",
    })
    err = problem(cli, root)
    assert where(root, "models/mart/daily_sales.yml", 1, 1) + "unknown key 'descripton'" in err
    assert f"{root / 'models/marts'}: 'marts' is not a layer" in err
    assert f"{root / 'models/warehouse/ghost.yml'}: sidecar ghost.yml" in err
    assert count_errors(err) == 3, err


def test_several_sql_errors_are_all_reported(project, cli):
    root = project({
        "models/warehouse/orders.sql": "select order_id\nfrom lake.raw_orders\nwhere (amount > 0\n",
        "models/warehouse/customers.sql": "select * from lake.raw_customrs\n",
        "models/mart/daily_sales.sql": "select * from mart.customer_sales\n",
        "models/mart/customer_sales.sql": "select 1 as a;\nselect 2 as a;\n",
    })
    err = problem(cli, root)
    assert where(root, "models/warehouse/orders.sql", 3, 17) + "SQL syntax error" in err
    assert where(root, "models/warehouse/customers.sql", 1, 20) + "unknown table lake.raw_customrs" in err
    assert "did you mean 'lake.raw_customers'?" in err
    assert where(root, "models/mart/daily_sales.sql", 1, 20) + "mart model mart.daily_sales reads" in err
    assert where(root, "models/mart/customer_sales.sql", 1) + "a model is exactly one SELECT" in err
    assert count_errors(err) == 4, err


def test_several_errors_in_one_yaml_file_are_all_reported(project, cli):
    root = project({"kiban.yml": "name: shop\nthreds: 2\ntimezone: Nowhere/City\nretries: lots\n"})
    err = problem(cli, root)
    assert where(root, "kiban.yml", 2, 1) + "unknown key 'threds'" in err
    assert where(root, "kiban.yml", 3, 1) + "timezone:" in err
    assert where(root, "kiban.yml", 4, 1) + "retries:" in err
    assert count_errors(err) == 3, err


def test_every_command_that_reads_the_project_reports_the_same_way(project, cli):
    root = project({"models/mart/daily_sales.sql": "select * from warehouse.ordrs\n"})
    for args in (("graph",), ("status",), ("show", "daily_sales")):
        err = problem(cli, root, *args)
        assert where(root, "models/mart/daily_sales.sql", 1, 25) + "unknown table warehouse.ordrs" in err
