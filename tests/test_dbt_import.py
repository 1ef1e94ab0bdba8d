"""``kiban import dbt``: generated dbt projects imported, built by kiban and compared with what each
table must hold (computed independently, from the generator's own plain SQL); errors with file:line;
never a half-written project; the pasted-Jinja error; --verify's comparison. Needs no dbt."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest
from dbt_generated import Generated, generate

from kiban.dbt.importer import import_dbt
from kiban.dbt.report import ImportReport
from kiban.dbt.verify import verify
from kiban.errors import KibanError, ProjectErrors
from kiban.operate import run
from kiban.project.loader import load_project
from kiban.run import RunOptions
from tests.helpers.timing import timed

SRC = Path(__file__).resolve().parents[1] / "src"
SEED_TYPES = {"raw_customers": "id integer, first_name varchar, last_name varchar, signup_date date",
              "raw_orders": "id integer, user_id integer, order_date date, status varchar",
              "raw_payments": "id integer, order_id integer, payment_method varchar, amount integer"}


def expected_tables(gen: Generated) -> duckdb.DuckDBPyConnection:
    """Every model's table as the generator's plain SQL says, in one flat schema (no Jinja, no kiban)."""
    con = duckdb.connect()
    for seed, columns in SEED_TYPES.items():
        con.execute(f"create table {seed} ({columns})")
        with open(gen.root / "seeds" / f"{seed}.csv", newline="") as f:
            rows = list(csv.reader(f))[1:]
        marks = ", ".join("?" for _ in rows[0])
        con.executemany(f"insert into {seed} values ({marks})", rows)
    for name in gen.order:
        if gen.expected[name]:
            con.execute(f"create table {name} as {gen.expected[name]}")
    return con


def build(report: ImportReport) -> Path:
    project = load_project(Path(report.new_folder))
    done = run(project, RunOptions())
    assert done.result.status == "success", done.result.outcomes
    return Path(report.new_folder) / "kiban.duckdb"


def assert_same(gen: Generated, report: ImportReport, warehouse: Path) -> int:
    expected = expected_tables(gen)
    expected.execute(f"attach '{warehouse}' as k (read_only)")
    compared = 0
    for item in report.converted:
        if item.kind != "model" or not gen.expected.get(item.dbt):
            continue
        layer, name = item.kiban.split(".")
        cols = ", ".join(r[0] for r in expected.execute(f"describe {item.dbt}").fetchall())
        mine, theirs = f"select {cols} from k.{layer}.{name}", f"select {cols} from {item.dbt}"
        counts = expected.execute(f"select (select count(*) from ({mine})), (select count(*) from ({theirs})), "
                                  f"(select count(*) from ({mine} except all {theirs})), "
                                  f"(select count(*) from ({theirs} except all {mine}))").fetchone()
        assert counts is not None, (item, counts)
        assert counts[0] == counts[1], (item, counts)
        assert counts[2] == counts[3] == 0, (item, counts)
        compared += 1
    return compared


def test_generated_project_of_36_models_matches_expected_tables(tmp_path: Path) -> None:
    gen = generate(tmp_path / "dbt", models=36)
    report = import_dbt(gen.root, tmp_path / "kiban")
    assert report.count("model") == 36
    assert report.count("seed") == 3
    assert report.tests == gen.tests
    assert report.checks == gen.tests  # every test became a check
    assert not report.not_converted
    warehouse = build(report)
    assert assert_same(gen, report, warehouse) == 36
    state = sqlite3.connect(tmp_path / "kiban" / ".kiban" / "state.db")
    statuses = state.execute("select status, count(*) from check_results group by status").fetchall()
    assert dict(statuses) == {"pass": gen.tests}
    # incremental models became kiban incremental models on their time column
    sidecar = (tmp_path / "kiban" / "models" / "warehouse" / "int_chain_3.yml").read_text()
    assert "materialized: incremental" in sidecar
    assert "time_column: order_date" in sidecar
    sql = (tmp_path / "kiban" / "models" / "warehouse" / "int_chain_3.sql").read_text()
    assert "{" not in sql
    assert "max(order_date)" not in sql  # the is_incremental() branch is gone
    # an exposure became a use case whose deadline is clearly a placeholder
    usecase = (tmp_path / "kiban" / "usecases" / "weekly_review.yml").read_text()
    assert ("TODO(kiban import dbt)" in usecase and 'by: "23:59"' in usecase) or "by: '23:59'" in usecase


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_generated_projects_not_seen_before(tmp_path: Path, seed: int) -> None:
    """Projects of other shapes and sizes (seeded): import, build and compare with the expected tables."""
    import random

    size = random.Random(seed).randint(6, 30)
    gen = generate(tmp_path / "dbt", models=size, seed=seed, customers=20 + seed, orders=50 + 7 * seed)
    report = import_dbt(gen.root, tmp_path / "kiban")
    assert report.checks == report.tests == gen.tests
    assert assert_same(gen, report, build(report)) == report.count("model")


def test_second_run_of_imported_project_is_fresh(tmp_path: Path) -> None:
    gen = generate(tmp_path / "dbt", models=10)
    report = import_dbt(gen.root, tmp_path / "kiban")
    build(report)
    again = run(load_project(tmp_path / "kiban"), RunOptions())
    assert again.result.status in ("nothing", "success")
    assert all(o.status == "fresh" for o in again.result.outcomes.values())


def _project(root: Path, files: dict[str, str]) -> Path:
    for rel, text in {"dbt_project.yml": "name: p\nconfig-version: 2\nprofile: p\n", **files}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def _errors(dbt: Path, target: Path) -> list[str]:
    with pytest.raises(ProjectErrors) as caught:
        import_dbt(dbt, target)
    assert not target.exists()
    assert not list(target.parent.glob(f".{target.name}.importing-*"))
    return [str(e) for e in caught.value.errors]


def test_unknown_macro_missing_ref_and_syntax_error_name_file_and_line(tmp_path: Path) -> None:
    dbt = _project(tmp_path / "dbt", {
        "seeds/raw.csv": "id\n1\n",
        "models/a.sql": "select 1 as id\n",
        "models/b.sql": "select *\nfrom {{ ref('a') }}\nwhere {{ no_such_macro('id') }}\n",
        "models/c.sql": "select * from {{ ref('aa') }}\n",
        "models/d.sql": "select 1 as x\n{% if true %}\n",
        "models/e.sql": "select {{ var('nope') }} as x\n",
    })
    errors = _errors(dbt, tmp_path / "new")
    text = "\n".join(errors)
    assert "models/b.sql:3" in text
    assert "unknown macro or variable 'no_such_macro'" in text
    assert "models/c.sql:1" in text
    assert "ref('aa')" in text
    assert "did you mean 'a'?" in text
    assert "models/d.sql:" in text
    assert "Jinja syntax error" in text
    assert "models/e.sql:1" in text
    assert "var('nope')" in text
    assert "--vars" in text
    assert len(errors) == 4
    # --vars gives the missing variable
    (dbt / "models" / "b.sql").write_text("select * from {{ ref('a') }}\n")
    (dbt / "models" / "c.sql").write_text("select * from {{ ref('raw') }}\n")
    (dbt / "models" / "d.sql").write_text("select 1 as x\n")
    report = import_dbt(dbt, tmp_path / "new", {"nope": 42})
    assert "select 42 as x" in (tmp_path / "new" / "models" / "mart" / "e.sql").read_text()
    assert report.count("model") == 5


def test_error_inside_a_package_macro_names_both_places(tmp_path: Path) -> None:
    dbt = _project(tmp_path / "dbt", {
        "macros/m.sql": "{% macro outer(x) %}\n  {{ inner_missing(x) }}\n{% endmacro %}\n",
        "models/a.sql": "select\n  {{ outer('1') }} as v\n",
    })
    (text,) = _errors(dbt, tmp_path / "new")
    assert "models/a.sql:2" in text
    assert "macros/m.sql:2" in text
    assert "inner_missing" in text


def test_awkward_names_become_valid_asset_names(tmp_path: Path) -> None:
    """Names with dashes, capitals, digits first or SQL's reserved words still give a project that loads and runs."""
    dbt = _project(tmp_path / "dbt", {
        "seeds/Raw-Data.csv": "id,v\n1,a\n2,b\n",
        "models/select.sql": "select * from {{ ref('Raw-Data') }}\n",
        "models/2nd-Model.sql": "select id from {{ ref('select') }}\n",
        "models/group.sql": "select count(*) as n from {{ ref('2nd-Model') }}\n",
    })
    report = import_dbt(dbt, tmp_path / "new")
    names = {c.dbt: c.kiban for c in report.converted}
    assert names == {"Raw-Data": "lake.raw_data", "select": "warehouse.select_", "2nd-Model": "warehouse._2nd_model",
                     "group": "mart.group_"}
    done = run(load_project(tmp_path / "new"), RunOptions())
    assert done.result.status == "success"


def test_layers_disabled_tests_and_approximations_are_reported(tmp_path: Path) -> None:
    dbt = _project(tmp_path / "dbt", {
        "models/marts/shared.sql": "select 1 as id, 'a' as v\n",
        "models/marts/final.sql": "select * from {{ ref('shared') }}\n",
        "models/marts/off.sql": "{{ config(enabled=false) }}\nselect 1 as id\n",
        "models/marts/eph.sql": "{{ config(materialized='ephemeral', post_hook='grant select on {{ this }}') }}"
                                "\nselect 2 as id\n",
        "models/other/final.sql": "select 3 as id\n",
        "models/schema.yml": """\
            version: 2
            models:
              - name: final
                columns:
                  - name: id
                    tests:
                      - not_null:
                          config: {enabled: false}
                      - accepted_values:
                          values: [1]
                          quote: false
                      - unique:
                          config: {error_if: ">5", warn_if: ">2"}
                      - dbt_expectations.expect_column_to_exist
            """,
    })
    report = import_dbt(dbt, tmp_path / "new")
    assert {c.dbt: c.kiban for c in report.converted if c.kind == "model"} == {
        "shared": "warehouse.shared", "final": "mart.final", "eph": "mart.eph"}
    approximations = "\n".join(str(n) for n in report.approximations)
    skipped = "\n".join(str(n) for n in report.not_converted)
    assert "models/marts/shared.sql: model shared: placed in warehouse" in approximations
    assert "models/marts/eph.sql: model eph: ephemeral models become views" in approximations
    assert "models/schema.yml:9: test accepted_values: quote: false" in approximations
    assert "models/marts/off.sql: model off: disabled" in skipped
    assert "models/marts/eph.sql: post_hook of eph: kiban runs no hooks" in skipped
    assert "models/other/final.sql: model final: a second model of that name (the first is models/marts/final.sql)" \
        in skipped
    assert "models/schema.yml:7: test not_null: disabled" in skipped
    assert "models/schema.yml:14: test dbt_expectations.expect_column_to_exist: no generic test macro test_" \
        "expect_column_to_exist" in skipped
    sidecar = (tmp_path / "new" / "models" / "mart" / "final.yml").read_text()
    assert "fail_above: 5" in sidecar
    assert "not_null" not in sidecar
    assert "models/schema.yml:12: test unique: warn_if is dropped" in approximations
    assert (report.tests, report.checks) == (4, 2)


def test_relationships_towards_downstream_models_still_run(tmp_path: Path) -> None:
    """dbt lets a test point at a model built from the tested one, or two tests point at each other; kiban's gate
    refuses both (the check would wait for itself), so the import turns them into sql checks."""
    dbt = _project(tmp_path / "dbt", {
        "seeds/raw.csv": "id,customer_id\n1,10\n2,11\n",
        "models/staging/stg_orders.sql": "select * from {{ ref('raw') }}\n",
        "models/customers.sql": "select distinct customer_id from {{ ref('stg_orders') }}\n",
        "models/a.sql": "select 10 as customer_id\n",
        "models/b.sql": "select 10 as customer_id\n",
        "tests/no_orphans.sql": "select o.* from {{ ref('stg_orders') }} o\nleft join {{ ref('customers') }} c "
                                "using (customer_id) where c.customer_id is null\n",
        "models/schema.yml": """\
            version: 2
            models:
              - name: stg_orders
                columns:
                  - name: customer_id
                    tests:
                      - relationships: {to: ref('customers'), field: customer_id, config: {severity: warn}}
              - name: a
                columns:
                  - name: customer_id
                    tests: [{relationships: {to: ref('b'), field: customer_id}}]
              - name: b
                columns:
                  - name: customer_id
                    tests: [{relationships: {to: ref('a'), field: customer_id}}]
            """,
    })
    report = import_dbt(dbt, tmp_path / "new")
    assert report.checks == 4
    assert "name: no_orphans" in (tmp_path / "new" / "models" / "mart" / "customers.yml").read_text()
    stg = (tmp_path / "new" / "models" / "warehouse" / "stg_orders.yml").read_text()
    customers = (tmp_path / "new" / "models" / "mart" / "customers.yml").read_text()
    assert "relationships" not in stg
    assert "sql: select child.* from warehouse.stg_orders" in customers
    assert "severity: warn" in customers
    notes = "\n".join(str(n) for n in report.approximations)
    assert "relationships test customer_id → mart.customers" in notes
    assert notes.count("relationships test") == 2  # one of a ↔ b keeps its native check
    done = run(load_project(tmp_path / "new"), RunOptions())
    assert done.result.status == "success", done.result.outcomes
    state = sqlite3.connect(tmp_path / "new" / ".kiban" / "state.db")
    assert state.execute("select status from check_results where check_name = 'relationships_stg_orders_customer_id'"
                         ).fetchall() == [("pass",)]


def test_error_if_and_fail_calc_keep_dbts_verdict(tmp_path: Path) -> None:
    """dbt computes failures with the test's fail_calc and compares them with error_if / warn_if; the checks that
    come out of the import reach the same verdict (pass or fail) on the same data."""
    dbt = _project(tmp_path / "dbt", {
        "macros/sum_test.sql": "{% test sums_small(model, column_name) %}\n{{ config(fail_calc='sum(n)') }}\n"
                               "select {{ column_name }} as n from {{ model }}\n{% endtest %}\n",
        "models/m.sql": "select 1 as id, 2 as n union all select 2, 3\n",
        "models/schema.yml": """\
            version: 2
            models:
              - name: m
                columns:
                  - name: id
                    tests:
                      - not_null: {config: {error_if: "<1"}}
                  - name: n
                    tests:
                      - sums_small: {config: {error_if: ">4"}}
                      - sums_small: {config: {error_if: ">5", name: x}}
                      - sums_small: {config: {severity: warn, warn_if: ">= 5"}}
            """,
    })
    report = import_dbt(dbt, tmp_path / "new")
    assert report.checks == 4
    run(load_project(tmp_path / "new"), RunOptions())
    state = sqlite3.connect(tmp_path / "new" / ".kiban" / "state.db")
    verdicts = state.execute("select check_name, status from check_results order by id").fetchall()
    # dbt: not_null failures 0 < 1 → error; sum(n) = 5 > 4 → error; 5 > 5 → pass; warn test 5 >= 5 → warn
    assert verdicts == [("not_null_id", "fail"), ("sums_small_n", "fail"), ("sums_small_n_2", "pass"),
                        ("sums_small_n_3", "fail")]


def test_jinja_cannot_reach_python_internals(tmp_path: Path) -> None:
    """A project someone else wrote is rendered in Jinja's sandbox: no way to os.system from a model."""
    dbt = _project(tmp_path / "dbt", {
        "models/a.sql": "select 1 as x\n-- {{ ''.__class__.__mro__[1].__subclasses__() }}\n",
        "models/b.sql": "select 1 as x\n\n{{ cycler.__init__.__globals__.os.system('touch pwned') }}\n",
    })
    text = "\n".join(_errors(dbt, tmp_path / "new"))
    assert "models/a.sql:2" in text
    assert "models/b.sql:3" in text
    assert "unsafe" in text
    assert not (tmp_path / "pwned").exists()
    assert not Path("pwned").exists()


def test_an_exception_mid_write_leaves_no_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gen = generate(tmp_path / "dbt", models=8)
    import kiban.dbt.importer as importer

    calls = {"n": 0}
    real = importer.write_text

    def failing(root: Path, rel: str, text: str) -> None:
        calls["n"] += 1
        if calls["n"] == 10:
            raise OSError("disk full (simulated)")
        real(root, rel, text)

    monkeypatch.setattr(importer, "write_text", failing)
    with pytest.raises(OSError):
        import_dbt(gen.root, tmp_path / "new")
    assert not (tmp_path / "new").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["dbt"]


def test_a_kill_mid_import_leaves_no_folder_and_the_next_import_cleans_up(tmp_path: Path) -> None:
    gen = generate(tmp_path / "dbt", models=8)
    script = textwrap.dedent(f"""
        import time, sys
        sys.path.insert(0, {str(SRC)!r})
        import kiban.dbt.importer as importer
        real = importer.write_text
        def slow(root, rel, text):
            real(root, rel, text)
            if rel.startswith("models/"):
                print("writing", flush=True)
                time.sleep(30)
        importer.write_text = slow
        from pathlib import Path
        importer.import_dbt(Path({str(gen.root)!r}), Path({str(tmp_path / "new")!r}))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "writing"  # in the middle of writing the models
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (tmp_path / "new").exists()
    leftovers = list(tmp_path.glob(".new.importing-*"))
    assert len(leftovers) == 1
    assert (leftovers[0] / "kiban.yml").exists()  # half a project, hidden
    report = import_dbt(gen.root, tmp_path / "new")
    assert report.count("model") == 8
    assert not list(tmp_path.glob(".new.importing-*"))


def test_the_target_must_be_new(tmp_path: Path) -> None:
    gen = generate(tmp_path / "dbt", models=6)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file.txt").write_text("mine")
    with pytest.raises(KibanError, match="already exists"):
        import_dbt(gen.root, tmp_path / "taken")
    assert (tmp_path / "taken" / "file.txt").read_text() == "mine"
    (tmp_path / "empty").mkdir()
    assert import_dbt(gen.root, tmp_path / "empty").count("model") == 6  # an empty folder is fine
    with pytest.raises(KibanError, match=r"dbt_project\.yml"):
        import_dbt(tmp_path, tmp_path / "other")


def test_sources_freshness_snapshots_and_tests_on_sources(tmp_path: Path) -> None:
    dbt = _project(tmp_path / "dbt", {
        "models/sources.yml": """\
            version: 2
            sources:
              - name: shop
                description: The shop's database.
                loaded_at_field: _loaded_at
                freshness:
                  warn_after: {count: 12, period: hour}
                  error_after: {count: 2, period: day}
                tables:
                  - name: orders
                    columns:
                      - name: id
                        data_type: integer
                        tests: [not_null, unique]
                      - name: status
                        data_type: varchar
                  - name: customers
                    freshness: null
            """,
        "models/staging/stg_orders.sql": "select id, status from {{ source('shop', 'orders') }}\n",
        "models/snap_user.sql": "select * from {{ ref('orders_snapshot') }}\n",
        "models/py_model.py": "def model(dbt, session):\n    return dbt.ref('stg_orders')\n",
        "models/metrics.yml": "version: 2\nmetrics:\n  - name: revenue\n    label: Revenue\n",
        "snapshots/orders_snapshot.sql": """\
            {% snapshot orders_snapshot %}
            {{ config(target_schema='snapshots', unique_key='id', strategy='timestamp', updated_at='u') }}
            select * from {{ source('shop', 'orders') }}
            {% endsnapshot %}
            """,
    })
    report = import_dbt(dbt, tmp_path / "new")
    new = tmp_path / "new"
    assert "from lake.shop_orders" in (new / "models" / "warehouse" / "stg_orders.sql").read_text()
    lake = (new / "models" / "lake" / "shop_orders.yml").read_text()
    assert "max_age: 12 hours" in lake
    assert "max_age: 2 days" in lake
    assert "severity: warn" in lake
    assert "not_null" in lake
    assert "unique" in lake
    assert (new / "lake" / "shop_orders").is_dir()
    assert (new / "lake" / "shop_customers").is_dir()
    skipped = [str(n) for n in report.not_converted]
    assert any(s.startswith("snapshots/orders_snapshot.sql:1: snapshot orders_snapshot") and "scd2" in s
               for s in skipped)
    assert any(s.startswith("models/py_model.py: Python model py_model") for s in skipped)
    assert any(s.startswith("models/metrics.yml:3: metrics revenue") for s in skipped)
    load_project(new)  # what was written loads


def test_report_json_and_cli(tmp_path: Path) -> None:
    gen = generate(tmp_path / "dbt", models=6)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    result = subprocess.run([sys.executable, "-m", "kiban", "import", "dbt", str(gen.root), str(tmp_path / "new"),
                             "--json", "--vars", "{min_amount: 7}"], capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["counts"]["models"] == 6
    assert data["counts"]["checks"] == gen.tests
    assert "where amount >= 7" in (tmp_path / "new" / "models" / "warehouse" / "int_chain_0.sql").read_text()
    again = subprocess.run([sys.executable, "-m", "kiban", "import", "dbt", str(gen.root), str(tmp_path / "new")],
                           capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 2
    assert "already exists" in again.stderr
    assert "Traceback" not in again.stderr


def test_verify_finds_a_changed_row_and_a_missing_table(tmp_path: Path) -> None:
    gen = generate(tmp_path / "dbt", models=8)
    report = import_dbt(gen.root, tmp_path / "kiban")
    warehouse = build(report)
    fake = tmp_path / "fake_dbt.duckdb"  # what dbt-duckdb would have built: the same tables in schema main
    con = duckdb.connect(str(fake))
    con.execute(f"attach '{warehouse}' as k (read_only)")
    for item in report.converted:
        if item.kind in ("model", "seed") and item.dbt != "stg_customers":
            layer, name = item.kiban.split(".")
            con.execute(f"create table main.{item.identifier or item.dbt} as select * from k.{layer}.{name}")
    con.execute("update main.stg_orders set status = 'lost' where order_id = 1")
    con.close()
    results = {r.kiban: r for r in verify(report, fake, warehouse)}
    assert results["warehouse.stg_orders"].status == "different"
    assert results["warehouse.stg_orders"].only_dbt == results["warehouse.stg_orders"].only_kiban == 1
    assert results["warehouse.stg_customers"].status == "missing"
    assert all(r.status == "identical" for k, r in results.items()
               if k not in ("warehouse.stg_orders", "warehouse.stg_customers"))


def test_import_is_fast(tmp_path: Path) -> None:
    gen = generate(tmp_path / "dbt", models=120)
    report, took = timed(lambda: import_dbt(gen.root, tmp_path / "kiban"))
    assert report.count("model") == 120
    assert took.within(30), took  # bench/dbt_import.py measures 500 models against 10 s; scaled by the load


def test_pasted_jinja_in_a_kiban_model_says_what_to_do(project_dir) -> None:  # type: ignore[no-untyped-def]
    root = project_dir({"models/warehouse/orders.sql": "select 1 as id",
                        "models/mart/a.sql": "select *\nfrom {{ ref('orders') }}\n",
                        "models/mart/b.sql": "{{ config(materialized='view') }}\nselect 1 as x\n",
                        "models/mart/c.sql": "select 1 as x\n{% if is_incremental() %}where 1 = 1{% endif %}\n"})
    with pytest.raises(ProjectErrors) as caught:
        load_project(root)
    text = "\n".join(str(e) for e in caught.value.errors)
    assert "models/mart/a.sql:2:6: Jinja templating is not SQL: {{ ref('orders') }}" in text
    assert "`from orders`" in text
    assert "kiban import dbt" in text
    assert "b.sql:1:1" in text
    assert "sidecar" in text
    assert "c.sql:2:1" in text
    assert "materialized: incremental" in text


@pytest.mark.parametrize("seed", range(20))
def test_braces_inside_strings_and_comments_are_not_jinja(project_dir, seed: int) -> None:  # type: ignore[no-untyped-def]
    """Generated SQL with '{{', '{%', '{#' inside literals, quoted names and comments loads untouched."""
    import random

    rng = random.Random(seed)
    pieces = ["'{{'", "'{% x %}'", "'{#'", "'it''s {{ x }}'", '"{{col}}"']
    chosen = rng.sample(pieces, 3)
    sql = (f"-- {{{{ ref('x') }}}} in a comment\nselect {chosen[0]} as a, {chosen[1]} as b /* {{% if %}} */, "
           f"{chosen[2]} as c")
    root = project_dir({"models/mart/m.sql": sql})
    project = load_project(root)
    assert "mart.m" in project.assets


def test_a_source_read_from_csv_files_says_how_to_collect_it_with_inferred_types(tmp_path: Path) -> None:
    dbt = _project(tmp_path / "dbt", {
        "models/sources.yml": """\
            version: 2
            sources:
              - name: raw
                meta:
                  external_location: "read_csv('data/{name}.csv', header = true)"
                tables:
                  - name: payments
                  - name: refunds
                    meta: {external_location: 'exports/refunds.tsv'}
            """,
        "models/stg_payments.sql": "select * from {{ source('raw', 'payments') }}\n",
        "models/stg_refunds.sql": "select * from {{ source('raw', 'refunds') }}\n",
    })
    report = import_dbt(dbt, tmp_path / "new")
    notes = [str(n) for n in report.approximations]
    assert any("source raw.payments" in n and "path: data/payments.csv" in n and "infer_types: true" in n
               for n in notes), notes
    assert any("source raw.refunds" in n and "exports/refunds.tsv" in n for n in notes), notes
    load_project(tmp_path / "new")
