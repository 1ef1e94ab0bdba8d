"""``kiban import dbt`` on constructs that real projects use and the first importer got wrong: configs
written as Jinja in dbt_project.yml and property files, a folder-wide ``column_types``, versioned models
(``ref('m', v=1)``), and sources that name the relation a seed is loaded into (dbt-labs/jaffle-shop's
layout). Each test is a small synthetic project built the way dbt reads it; the generator at the end
mixes them at random and compares every table with what the plain SQL computes. Needs no dbt."""

from __future__ import annotations

import random
import textwrap
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from kiban.dbt.importer import import_dbt
from kiban.dbt.report import ImportReport
from kiban.dbt.verify import as_text, verify
from kiban.errors import ProjectErrors
from kiban.operate import run
from kiban.project.loader import load_project
from kiban.run import RunOptions


def _project(root: Path, files: dict[str, str]) -> Path:
    for rel, text in {"dbt_project.yml": "name: p\nconfig-version: 2\nprofile: p\n", **files}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def _built(report: ImportReport) -> duckdb.DuckDBPyConnection:
    done = run(load_project(Path(report.new_folder)), RunOptions())
    assert done.result.status == "success", done.result.outcomes
    return duckdb.connect(str(Path(report.new_folder) / "kiban.duckdb"), read_only=True)


def _sidecar(report: ImportReport, asset: str) -> dict[str, Any]:
    layer, name = asset.split(".")
    data = yaml.safe_load((Path(report.new_folder) / "models" / layer / f"{name}.yml").read_text())
    return data if isinstance(data, dict) else {}


def _skipped(report: ImportReport) -> list[str]:
    return [str(n) for n in report.not_converted]


def _errors(dbt: Path, target: Path, cli_vars: dict[str, Any] | None = None) -> list[str]:
    with pytest.raises(ProjectErrors) as caught:
        import_dbt(dbt, target, cli_vars)
    assert not target.exists()
    return [str(e) for e in caught.value.errors]


# --- configs written as Jinja ------------------------------------------------------------------------
JINJA_CONFIGS = {
    "dbt_project.yml": """\
        name: p
        config-version: 2
        profile: p
        vars:
          mat: table
        models:
          p:
            +materialized: "{{ var('mat') }}"
            legacy:
              +enabled: "{{ var('legacy_on', false) }}"
            kept:
              +enabled: "{{ env_var('KIBAN_TEST_KEPT_ON', 'true') }}"
              +tags: ["{{ 'night' ~ 'ly' }}"]
        seeds:
          p:
            +enabled: "{{ var('load_seeds', false) }}"
        """,
    "seeds/s.csv": "id\n1\n2\n",
    "models/legacy/old.sql": "select 1 as x\n",
    "models/kept/k.sql": "select 2 as y\n",
    "models/kept/v.sql": "select y + 1 as z from {{ ref('k') }}\n",
    "models/kept/props.yml": """\
        version: 2
        models:
          - name: v
            config:
              materialized: "{{ 'table' if target.name == 'prod' else 'view' }}"
        """,
}


def test_configs_written_as_jinja_are_rendered_as_dbt_renders_them(tmp_path: Path) -> None:
    # a string "False" is true to a truth test: unrendered, the disabled folder and seeds were imported
    report = import_dbt(_project(tmp_path / "dbt", JINJA_CONFIGS), tmp_path / "off")
    skipped = _skipped(report)
    assert any(s.startswith("models/legacy/old.sql: model old: disabled") for s in skipped), skipped
    assert any(s.startswith("seeds/s.csv: seed s: disabled") for s in skipped), skipped
    assert (report.count("model"), report.count("seed")) == (2, 0)
    assert _sidecar(report, "warehouse.k")["materialized"] == "table"  # var('mat'), not the text "{{ … }}"
    assert _sidecar(report, "warehouse.k")["tags"] == ["nightly"]
    assert _sidecar(report, "mart.v")["materialized"] == "view"  # target is dev: the `else` branch

    report = import_dbt(tmp_path / "dbt", tmp_path / "on", {"legacy_on": True, "load_seeds": "true"})
    assert (report.count("model"), report.count("seed")) == (3, 1)
    con = _built(report)
    assert con.execute("select x from mart.old").fetchall() == [(1,)]
    assert con.execute("select z from mart.v").fetchall() == [(3,)]


def test_env_var_in_a_config_is_read_at_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIBAN_TEST_KEPT_ON", "false")
    report = import_dbt(_project(tmp_path / "dbt", JINJA_CONFIGS), tmp_path / "new")
    assert report.count("model") == 0
    assert any(s.startswith("models/kept/k.sql: model k: disabled") for s in _skipped(report))


def test_a_ref_to_a_disabled_model_says_it_is_disabled(tmp_path: Path) -> None:
    files = {**JINJA_CONFIGS, "models/kept/reads_old.sql": "select x from {{ ref('old') }}\n"}
    errors = _errors(_project(tmp_path / "dbt", files), tmp_path / "new")
    assert any("models/kept/reads_old.sql:1: model reads_old: ref('old'): models/legacy/old.sql is disabled" in e
               and "--vars" in e for e in errors), errors
    assert import_dbt(tmp_path / "dbt", tmp_path / "on", {"legacy_on": True}).count("model") == 4


def test_a_config_that_cannot_be_rendered_names_its_line(tmp_path: Path) -> None:
    dbt = _project(tmp_path / "dbt", {
        "dbt_project.yml": """\
            name: p
            config-version: 2
            profile: p
            models:
              p:
                +schema: "{{ var('no_such_var') }}"
                +materialized: "{{ 'table' if }}"
            """,
        "models/a.sql": "select 1 as a\n",
    })
    errors = _errors(dbt, tmp_path / "new")
    assert any("dbt_project.yml:6: config schema" in e and "no_such_var" in e for e in errors), errors
    assert any("dbt_project.yml:7: config materialized" in e for e in errors), errors


# --- seeds ----------------------------------------------------------------------------------------------
def test_folder_wide_column_types_apply_to_the_seeds_that_have_the_column(tmp_path: Path) -> None:
    dbt = _project(tmp_path / "dbt", {
        "dbt_project.yml": """\
            name: p
            config-version: 2
            profile: p
            seeds:
              p:
                +column_types: {amount: "decimal(10,2)", code: varchar}
            """,
        "seeds/payments.csv": "id,amount,code\n1,1.5,007\n2,2.25,010\n",
        "seeds/people.csv": "id,name\n1,Ann\n",  # neither column: dbt ignores both keys here
        "models/m.sql": "select sum(amount) as total, min(code) as code from {{ ref('payments') }}\n",
    })
    report = import_dbt(dbt, tmp_path / "new")
    types = {c["name"]: c["type"] for c in _sidecar(report, "lake.payments")["columns"]}
    assert types == {"id": "INTEGER", "amount": "DECIMAL(10,2)", "code": "VARCHAR"}  # id: dbt's integer
    assert _built(report).execute("select total::varchar, code from mart.m").fetchall() == [("3.75", "007")]


def test_seed_numbers_are_typed_as_dbt_types_them(tmp_path: Path) -> None:
    """dbt-duckdb loads a seed's whole numbers as INTEGER and its other numbers as DOUBLE; DuckDB's sniffer said
    BIGINT, so a contract declaring `integer` on a model passing the id through failed in kiban only."""
    dbt = _project(tmp_path / "dbt", {
        "dbt_project.yml": "name: p\nconfig-version: 2\nprofile: p\n"
                           "seeds:\n  p:\n    +column_types: {pinned: bigint}\n",
        "seeds/s.csv": "id,big,price,pinned,small\n1,3000000000,2.5,1,-3\n2,1,3,2,\n",
        "models/m.sql": "{{ config(materialized='table') }}\nselect id, price from {{ ref('s') }}\n",
        "models/m.yml": """\
            version: 2
            models:
              - name: m
                config: {contract: {enforced: true}}
                columns:
                  - {name: id, data_type: integer}
                  - {name: price, data_type: double}
            """,
    })
    report = import_dbt(dbt, tmp_path / "new")
    types = {c["name"]: c["type"] for c in _sidecar(report, "lake.s")["columns"]}
    # big does not fit an INTEGER (dbt's seed would fail): it stays BIGINT; a pinned type is kept
    assert types == {"id": "INTEGER", "big": "BIGINT", "price": "DOUBLE", "pinned": "BIGINT", "small": "INTEGER"}
    con = _built(report)  # the contract check passes
    assert con.execute("select typeof(id), typeof(price) from mart.m limit 1").fetchall() == [("INTEGER", "DOUBLE")]


def test_verify_tells_the_same_values_in_another_type_apart(tmp_path: Path) -> None:
    dbt = _project(tmp_path / "dbt", {"seeds/s.csv": "id\n1\n", "models/m.sql": "select id from {{ ref('s') }}\n"})
    report = import_dbt(dbt, tmp_path / "new")
    _built(report).close()
    fake = tmp_path / "dbt_built.duckdb"
    con = duckdb.connect(str(fake))
    con.execute("create table main.s as select 1::integer as id")
    con.execute("create table main.m as select 1::bigint as id")  # same value, another type
    con.close()
    results = {r.kiban: r for r in verify(report, fake, Path(report.new_folder) / "kiban.duckdb")}
    assert results["lake.s"].status == "identical"
    assert results["mart.m"].status == "different"
    assert "types differ: id BIGINT in dbt, INTEGER in kiban" in results["mart.m"].detail


# --- versioned models -------------------------------------------------------------------------------------
VERSIONED = {
    "seeds/nums.csv": "id,v\n1,10\n2,20\n3,\n",
    "models/dim_v1.sql": "select id, v from {{ ref('nums') }}\n",
    "models/dim_v2.sql": "select id, v * 2 as v, 'two' as tag from {{ ref('nums') }}\n",
    "models/dim_three.sql": "select id, v * 3 as v from {{ ref('nums') }}\n",
    "models/dim.yml": """\
        version: 2
        models:
          - name: dim
            latest_version: 2
            description: every version's
            columns:
              - name: id
                tests: [not_null, unique]
              - name: v
                description: the value
            versions:
              - v: 1
              - v: 2
                columns:
                  - include: all
                  - name: tag
                    tests: [{accepted_values: {values: [two]}}]
              - v: 3
                defined_in: dim_three
                columns:
                  - include: all
                    exclude: [v]
        """,
    "models/use_latest.sql": "select sum(v) as s from {{ ref('dim') }}\n",
    "models/use_v1.sql": "select sum(v) as s from {{ ref('dim', v=1) }}\n",
    "models/use_v3.sql": "select sum(v) as s from {{ ref('p', 'dim', version=3) }}\n",
    "models/use_v1_text.sql": "select count(*) as n from {{ ref('dim', v='1') }}\n",
    "models/uses.yml": """\
        version: 2
        models:
          - name: use_v1_text
            columns:
              - name: n
                tests: [{relationships: {to: "ref('dim')", field: id}}]
        """,
}


def test_versioned_models_are_referenced_by_version_and_latest(tmp_path: Path) -> None:
    report = import_dbt(_project(tmp_path / "dbt", VERSIONED), tmp_path / "new")
    names = {c.dbt: c.kiban for c in report.converted if c.kind == "model"}
    # dbt's relation of a version is <name>_v<v>, whichever file holds it
    assert names["dim_v1"] == "warehouse.dim_v1"
    assert names["dim_three"] == "warehouse.dim_v3"
    sql = (tmp_path / "new" / "models" / "mart" / "use_latest.sql").read_text()
    assert "warehouse.dim_v2" in sql  # latest_version 2, not the highest (3)
    con = _built(report)
    assert con.execute("select s from mart.use_latest").fetchall() == [(60,)]
    assert con.execute("select s from mart.use_v1").fetchall() == [(30,)]
    assert con.execute("select s from mart.use_v3").fetchall() == [(90,)]
    assert con.execute("select n from mart.use_v1_text").fetchall() == [(3,)]
    # the model's entry describes every version; a version's columns pick from it and add their own
    v1, v2, v3 = (_sidecar(report, f"warehouse.dim_v{n}") for n in (1, 2, 3))
    assert v1["description"] == v2["description"] == "every version's"
    assert [c["name"] for c in v1["columns"]] == ["id", "v"]
    assert [c["name"] for c in v2["columns"]] == ["id", "v", "tag"]
    assert [c["name"] for c in v3["columns"]] == ["id"]
    assert {"unique", "not_null"} <= set(map(str, v3["columns"][0]["checks"]))
    assert "accepted_values" in str(v2["columns"][2]["checks"])
    assert "warehouse.dim_v2" in str(_sidecar(report, "mart.use_v1_text"))  # ref('dim') in a test's argument


def test_a_version_that_does_not_exist_names_the_line_and_the_versions(tmp_path: Path) -> None:
    files = {**VERSIONED, "models/use_v9.sql": "select 1 as x\nfrom {{ ref('dim', v=9) }}\n"}
    errors = _errors(_project(tmp_path / "dbt", files), tmp_path / "new")
    assert any("models/use_v9.sql:2: model use_v9: ref('dim', v=9): model dim has no such version" in e
               and "its versions: 1, 2, 3" in e for e in errors), errors


def test_a_version_without_its_file_is_reported(tmp_path: Path) -> None:
    files = {k: v for k, v in VERSIONED.items() if k != "models/dim_three.sql" and "v3" not in k}
    report = import_dbt(_project(tmp_path / "dbt", files), tmp_path / "new")
    assert any(s.startswith("models/dim.yml:18: model dim v3") and "no model file dim_three.sql" in s
               for s in _skipped(report)), _skipped(report)


# --- sources that are seeds ---------------------------------------------------------------------------------
def test_a_source_naming_a_seeds_relation_reads_the_seed(tmp_path: Path) -> None:
    """jaffle-shop: the seeds are loaded into schema `raw` and the models read them as source('ecom', …)."""
    dbt = _project(tmp_path / "dbt", {
        "dbt_project.yml": """\
            name: p
            config-version: 2
            profile: p
            seeds:
              p:
                +schema: raw
                other:
                  +schema: elsewhere
            """,
        "seeds/raw_orders.csv": "id,amount\n1,5\n2,7\n",
        "seeds/raw_people.csv": "id,name\n1,Ann\n",
        "seeds/other/raw_things.csv": "id\n1\n",
        "models/sources.yml": """\
            version: 2
            sources:
              - name: ecom
                schema: "{{ target.schema }}_raw"
                tables:
                  - name: raw_orders
                    description: what the shop sold
                    columns:
                      - name: id
                        description: the order
                        tests: [not_null, unique]
                  - name: people
                    identifier: RAW_PEOPLE
                  - name: raw_things
              - name: crm
                tables:
                  - name: raw_orders
            """,
        "models/total.sql": """\
            select sum(o.amount) as total, count(distinct p.name) as people, count(distinct t.id) as things
            from {{ source('ecom', 'raw_orders') }} o, {{ source('ecom', 'people') }} p,
                 {{ source('ecom', 'raw_things') }} t
            """,
    })
    report = import_dbt(dbt, tmp_path / "new")
    sql = (tmp_path / "new" / "models" / "mart" / "total.sql").read_text()
    assert "lake.raw_orders" in sql
    assert "lake.raw_people" in sql
    assert "lake.ecom_raw_things" in sql  # its seed is in main_elsewhere, not main_raw: a source of its own
    assert not (tmp_path / "new" / "lake" / "ecom_raw_orders").exists()
    assert (tmp_path / "new" / "lake" / "crm_raw_orders").is_dir()  # schema crm: not the seed
    seed = _sidecar(report, "lake.raw_orders")
    assert seed["description"] == "what the shop sold"
    assert seed["columns"][0]["description"] == "the order"
    assert {"not_null", "unique"} <= set(map(str, seed["columns"][0]["checks"]))
    converted = [c for c in report.converted if c.kind == "source" and c.dbt == "ecom.raw_orders"]
    assert converted
    assert converted[0].kiban == "lake.raw_orders"
    (tmp_path / "new" / "lake" / "ecom_raw_things").rename(tmp_path / "empty")
    (tmp_path / "new" / "lake" / "ecom_raw_things").mkdir()
    duckdb.execute(f"copy (select 1 as id) to '{tmp_path / 'new' / 'lake' / 'ecom_raw_things' / 'x.parquet'}'")
    assert _built(report).execute("select total, people, things from mart.total").fetchall() == [(12, 1, 1)]


def test_the_projects_generate_schema_name_decides_where_a_seed_is(tmp_path: Path) -> None:
    dbt = _project(tmp_path / "dbt", {
        "dbt_project.yml": "name: p\nconfig-version: 2\nprofile: p\nseeds:\n  p:\n    +schema: raw\n",
        "macros/generate_schema_name.sql": """\
            {% macro generate_schema_name(custom_schema_name, node) %}
              {% if node.resource_type == 'seed' %}{{ custom_schema_name | trim }}
              {% else %}{{ target.schema }}{% endif %}
            {% endmacro %}
            """,
        "seeds/raw_orders.csv": "id\n1\n",
        "models/sources.yml": """\
            version: 2
            sources:
              - name: ecom
                schema: raw
                tables: [{name: raw_orders}]
              - name: main_raw
                tables: [{name: raw_orders}]
            """,
        "models/a.sql": "select * from {{ source('ecom', 'raw_orders') }}\n",
        "models/b.sql": "select * from {{ source('main_raw', 'raw_orders') }}\n",
    })
    import_dbt(dbt, tmp_path / "new")
    assert "lake.raw_orders" in (tmp_path / "new" / "models" / "mart" / "a.sql").read_text()
    assert "lake.main_raw_raw_orders" in (tmp_path / "new" / "models" / "mart" / "b.sql").read_text()


# --- dbt_project.yml's test configs and singular tests' configs ---------------------------------------------
def test_project_test_configs_and_singular_test_configs_keep_dbts_verdict(tmp_path: Path) -> None:
    """dbt (1.11, built by hand on this project): WARN unique_stg_orders_id, FAIL not_null_orders_customer_id,
    FAIL 3 orders_small, never skipped."""
    dbt = _project(tmp_path / "dbt", {
        "dbt_project.yml": """            name: p
            config-version: 2
            profile: p
            data_tests:
              p:
                staging:
                  +severity: warn
                quality:
                  +enabled: false
            """,
        "seeds/raw_orders.csv": "id,customer_id,amount\n1,10,1\n1,11,2\n3,,3\n",
        "models/staging/stg_orders.sql": "select * from {{ ref('raw_orders') }}\n",
        "models/marts/orders.sql": "select * from {{ ref('stg_orders') }}\n",
        "models/staging/schema.yml": """            version: 2
            models:
              - name: stg_orders
                columns:
                  - name: id
                    data_tests: [unique]
                  - name: customer_id
                    data_tests: [{not_null: {config: {severity: error}}}]
            """,
        "models/marts/schema.yml": """            version: 2
            models:
              - name: orders
                columns:
                  - name: customer_id
                    data_tests: [not_null]
            """,
        "tests/orders_small.sql": "{{ config(error_if='>2') }}\nselect * from {{ ref('orders') }} where amount > 0\n",
        "tests/orders_tiny.sql": "{{ config(error_if='>3') }}\nselect * from {{ ref('orders') }} where amount > 0\n",
        "tests/quality/never.sql": "select * from {{ ref('orders') }}\n",
    })
    report = import_dbt(dbt, tmp_path / "new")
    staging = {c["name"]: c["checks"] for c in _sidecar(report, "warehouse.stg_orders")["columns"]}
    assert staging["id"] == [{"unique": None, "severity": "warn"}]  # the folder's +severity
    assert staging["customer_id"] == ["not_null"]  # the test's own severity wins
    assert _sidecar(report, "mart.orders")["columns"][0]["checks"] == ["not_null"]  # not under staging/
    assert any(s.startswith("tests/quality/never.sql: test never: disabled") for s in _skipped(report))
    checks = {c["name"]: c["sql"] for c in _sidecar(report, "mart.orders")["checks"]}
    assert set(checks) == {"orders_small", "orders_tiny"}
    con = duckdb.connect()
    con.execute("create schema mart; create table mart.orders as select * from (values (1, 10, 1), (1, 11, 2), "
                "(3, null, 3)) t(id, customer_id, amount)")
    # dbt: 3 failing rows; error_if >2 fails, >3 passes — a sql check fails when it returns a row
    assert con.execute(checks["orders_small"]).fetchall() != []
    assert con.execute(checks["orders_tiny"]).fetchall() == []


# --- macros and test arguments ------------------------------------------------------------------------------
def test_a_macro_returning_to_a_macro_of_the_same_file_returns_to_it(tmp_path: Path) -> None:
    """dbt_date's integration tests: `{{ get_week()[0] }}` inside another macro of the file took the inner
    return() for the outer macro's, so the model was the list ['2020-11-29', …]."""
    dbt = _project(tmp_path / "dbt", {
        "macros/dates.sql": """\
            {% macro outer() -%}
            select cast('{{ week()[0] }}' as date) as d, {{ adder(2) }} as n, '{{ plain() }}' as p
            {%- endmacro %}
            {% macro week() %}{{ return(['2020-11-29', '2020-12-05']) }}{% endmacro %}
            {% macro adder(x) %}{{ return(x + inner_add(x)) }}{% endmacro %}
            {% macro inner_add(x) %}{{ return(x * 10) }}{% endmacro %}
            {% macro plain() %}text{% endmacro %}
            """,
        "models/m.sql": "{{ p.outer() }}\n",
    })
    report = import_dbt(dbt, tmp_path / "new")
    assert _built(report).execute("select d::varchar, n, p from mart.m").fetchall() == [("2020-11-29", 22, "text")]


def test_test_arguments_written_as_jinja_are_rendered(tmp_path: Path) -> None:
    dbt = _project(tmp_path / "dbt", {
        "dbt_project.yml": "name: p\nconfig-version: 2\nprofile: p\nvars:\n  ok: [a, b]\n  low: 1\n",
        "macros/m.sql": "{% macro yesterday(c) %}({{ c }} - interval 1 day)::date{% endmacro %}\n",
        "tests/generic/is_true.sql": """\
            {% test is_true(model, expression) %}
            select * from {{ model }} where not ({{ expression }})
            {% endtest %}
            """,
        "models/m.sql": "select date '2024-01-02' as d, date '2024-01-01' as prev, 'a' as s, 2 as n\n",
        "models/m.yml": """\
            version: 2
            models:
              - name: m
                columns:
                  - name: s
                    tests:
                      - accepted_values: {values: "{{ var('ok') }}"}
                  - name: n
                    tests:
                      - not_null: {config: {where: "n > {{ var('low') }}"}}
                tests:
                  - is_true: {expression: "prev = {{ yesterday('d') }}"}
                  - is_true: {expression: "prev = {{ yesterday('d') }} + 1", config: {severity: warn}}
            """,
    })
    report = import_dbt(dbt, tmp_path / "new")
    side = _sidecar(report, "mart.m")
    columns = {c["name"]: c.get("checks") for c in side["columns"]}
    assert columns["s"] == [{"accepted_values": ["a", "b"]}]  # the var's list, not the text "['a', 'b']"
    assert "where n > 1" in str(side["checks"])
    sqls = [c["sql"] for c in side["checks"] if "prev" in c["sql"]]
    assert len(sqls) == 2
    assert all("{{" not in sql for sql in sqls)
    con = _built(report)
    rows = [con.execute(sql).fetchall() for sql in sqls]
    assert rows[0] == []
    assert rows[1] != []  # dbt: the first passes, the second fails


def test_a_template_reaches_no_module_and_no_file(tmp_path: Path) -> None:
    """Found porting dbt_date: `modules.datetime.sys.modules['os']` ran a command at import, and a macro's
    `.path` wrote a file. dbt's `modules` are offered without the modules they import."""
    out = tmp_path / "out"
    out.mkdir()
    dbt = _project(tmp_path / "dbt", {
        "macros/m.sql": "{% macro m() %}1{% endmacro %}\n",
        "models/a.sql": f"select 1 as x\n-- {{{{ modules.datetime.sys.modules['os'].system('touch {out}/a') }}}}\n",
        "models/b.sql": "select 1 as x\n-- {{ m.path.parent.joinpath('b').write_text('x') }}\n",
        "models/c.sql": f"select 1 as x\n-- {{{{ modules.re.enum.sys.modules['os'].system('touch {out}/c') }}}}\n",
        "models/d.sql": f"select 1 as x\n-- {{{{ modules.pytz.os.system('touch {out}/d') }}}}\n",
        "models/ok.sql": """\
            select '{{ modules.datetime.datetime(2024, 1, 2, tzinfo=modules.pytz.timezone('Asia/Tokyo')).isoformat() }}'
              as t, '{{ modules.re.sub('a', 'b', 'aa') }}' as r,
              {{ modules.itertools.chain([1], [2]) | list | length }} as n
            """,
    })
    errors = "\n".join(_errors(dbt, tmp_path / "new"))
    for model in "abcd":
        assert f"models/{model}.sql:2: model {model}" in errors, errors
    assert "models/ok.sql" not in errors
    assert not list(out.iterdir())
    assert not (tmp_path / "dbt" / "macros" / "b").exists()
    for model in "abcd":
        (tmp_path / "dbt" / "models" / f"{model}.sql").unlink()
    report = import_dbt(tmp_path / "dbt", tmp_path / "new")
    assert _built(report).execute("select t, r, n from mart.ok").fetchall() == [("2024-01-02T00:00:00+09:19", "bb", 2)]


def test_sql_run_at_import_reads_only_the_dbt_project_and_writes_only_the_new_one(tmp_path: Path) -> None:
    """run_query is dbt's: the project's SQL runs at import. It may not write files elsewhere (a COPY TO
    ~/.bashrc runs code later), read files elsewhere into the SQL it freezes, or load extensions."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    dbt = _project(tmp_path / "dbt", {
        "seeds/s.csv": "id\n1\n",
        "models/w.sql": f"{{% do run_query(\"copy (select 1) to '{outside}/written.csv'\") %}}\nselect 1 as x\n",
        "models/r.sql": f"{{% set t = run_query(\"select content from read_text('{outside}/secret.txt')\") %}}\n"
                        "select '{{ t.columns[0].values()[0] }}' as x\n",
        "models/e.sql": "{% do run_query('load httpfs') %}\nselect 1 as x\n",
        "models/ok.sql": "{% set n = run_query('select count(*) from ' ~ ref('s')) %}\n"
                         "select {{ n.columns[0].values()[0] }} as n\n",
    })
    errors = "\n".join(_errors(dbt, tmp_path / "new"))
    for model in "wre":
        assert f"models/{model}.sql:1: model {model}" in errors, errors
        assert "disabled" in errors, errors
    assert "models/ok.sql" not in errors
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


def test_a_tests_fail_calc_config_keeps_dbts_verdict(tmp_path: Path) -> None:
    """dbt_expectations' integration project flips tests that must fail with `fail_calc: 'cast((count(*)=0) as
    int)'` in the test's config: the checks failed where dbt passed."""
    dbt = _project(tmp_path / "dbt", {
        "tests/generic/has_dupes.sql": """\
            {% test has_dupes(model, column_name) %}
            select {{ column_name }} from {{ model }} group by 1 having count(*) > 1
            {% endtest %}
            """,
        "models/m.sql": "select * from (values (1, null), (2, null), (2, 'x')) t(id, note)\n",
        "models/m.yml": """\
            version: 2
            models:
              - name: m
                columns:
                  - name: id
                    tests:
                      - has_dupes: {config: {fail_calc: "cast((count(*) = 0) as int)"}}
                      - unique: {config: {fail_calc: "cast((count(*) = 0) as int)"}}
                  - name: note
                    tests:
                      - not_null: {config: {fail_calc: "cast((count(*) = 0) as int)"}}
                      - not_null: {fail_calc: "count(*) - 2", severity: warn}
            """,
    })
    report = import_dbt(dbt, tmp_path / "new")
    con = _built(report)  # dbt: all four pass (three flipped failures; 2 nulls - 2 = 0 failures)
    side = _sidecar(report, "mart.m")
    sqls = [c["sql"] for c in side.get("checks", [])]
    assert len(sqls) == 4, side
    assert all("cast((count(*) = 0) as int)" in q or "count(*) - 2" in q for q in sqls), side
    assert [con.execute(q).fetchall() for q in sqls] == [[], [], [], []]


def test_tests_reading_each_others_models_are_judged_by_the_later_one(tmp_path: Path) -> None:
    """dbt_expectations' `expect_…_to_equal_other_table` on a model, towards a model built from it (and the
    other way round): kiban refused to load what the import wrote (the check would wait for itself)."""
    dbt = _project(tmp_path / "dbt", {
        "tests/generic/same_count.sql": """\
            {% test same_count(model, other) %}
            select 1 as x where (select count(*) from {{ model }}) <> (select count(*) from {{ other }})
            {% endtest %}
            """,
        "models/a.sql": "select * from range(3) t(i)\n",
        "models/b.sql": "select i * 2 as j from {{ ref('a') }}\n",
        "models/c.sql": "select * from range(3) t(k)\n",
        "models/props.yml": """\
            version: 2
            models:
              - name: a
                tests: [{same_count: {other: ref('b')}}]
              - name: b
                tests: [{same_count: {other: ref('a')}}, {same_count: {other: ref('c')}}]
              - name: c
                tests: [{same_count: {other: ref('b')}}]
            """,
    })
    report = import_dbt(dbt, tmp_path / "new")
    placed = {n: [c["sql"] for c in _sidecar(report, n).get("checks", [])] for n in
              ("warehouse.a", "mart.b", "mart.c")}
    assert placed["warehouse.a"] == []  # a's test reads b, built from a: b judges it
    assert len(placed["mart.b"]) + len(placed["mart.c"]) == 4
    assert any("moved" in n.why or "judges both" in n.why for n in report.approximations)
    con = _built(report)
    assert all(con.execute(q).fetchall() == [] for qs in placed.values() for q in qs)


# --- --verify and ephemeral models ----------------------------------------------------------------------------
def test_verify_skips_an_ephemeral_model_and_compares_what_reads_it(tmp_path: Path) -> None:
    dbt = _project(tmp_path / "dbt", {
        "seeds/s.csv": "id\n1\n2\n",
        "models/eph.sql": "{{ config(materialized='ephemeral') }}\nselect id * 10 as id from {{ ref('s') }}\n",
        "models/top.sql": "{{ config(materialized='table') }}\nselect sum(id) as total from {{ ref('eph') }}\n",
    })
    report = import_dbt(dbt, tmp_path / "new")
    _built(report).close()
    warehouse = Path(report.new_folder) / "kiban.duckdb"
    fake = tmp_path / "dbt_built.duckdb"  # what dbt-duckdb builds: the seed and top; eph is a CTE, no table
    con = duckdb.connect(str(fake))
    con.execute("create table main.s as select * from (values (1), (2)) t(id)")
    con.execute("create table main.top as select 30::hugeint as total")
    con.close()
    results = {r.kiban: r for r in verify(report, fake, warehouse)}
    assert results["warehouse.eph"].status == "skipped"
    assert "ephemeral" in results["warehouse.eph"].detail
    assert results["mart.top"].status == results["lake.s"].status == "identical"
    assert as_text(list(results.values())).startswith("verify: 2 of 2 tables identical to dbt's (1 not compared)")


# --- generated: the constructs above mixed at random -------------------------------------------------------
def _generated(root: Path, rng: random.Random) -> tuple[dict[str, Any], dict[str, int], set[str]]:
    """A project of versioned models over a seed (read by ref or through a source that names it), consumers
    pinning versions or not, and folders switched on and off by Jinja configs. Returns the --vars, each
    consumer's expected sum, and the models dbt would build."""
    values = [rng.randint(-50, 50) for _ in range(rng.randint(1, 8))]
    seed_schema = rng.choice([None, "raw", "landing"])
    files: dict[str, str] = {"seeds/nums.csv": "id,v\n" + "".join(f"{i},{v}\n" for i, v in enumerate(values))}
    cli_vars: dict[str, Any] = {}
    folders: list[str] = []
    disabled: set[str] = set()
    for f in range(rng.randint(1, 3)):
        on = rng.random() < 0.7
        how = rng.choice(["literal", "var", "default", "if"])
        if how == "literal":
            enabled = str(on).lower()
        elif how == "var":
            enabled = f"\"{{{{ var('on_{f}') }}}}\""
            cli_vars[f"on_{f}"] = rng.choice([on, str(on).lower(), str(on)])
        elif how == "default":
            enabled = f"\"{{{{ var('unset_{f}', {on}) }}}}\""
        else:
            enabled = f"\"{{{{ {'true' if on else 'false'} if target.type == 'duckdb' else {not on} }}}}\""
        mat = rng.choice(["table", "view", "\"{{ 'table' }}\"", "\"{{ var('mat', 'view') }}\""])
        folders.append(f"    f{f}:\n      +enabled: {enabled}\n      +materialized: {mat}\n")
        if not on:
            disabled.add(f"f{f}")
    schema = f"\n    +schema: {seed_schema}" if seed_schema else ""
    files["dbt_project.yml"] = ("name: p\nconfig-version: 2\nprofile: p\nseeds:\n  p:" + schema +
                                "\nmodels:\n  p:\n" + "".join(folders))
    files["models/src.yml"] = ("version: 2\nsources:\n  - name: s\n    schema: \"{{ target.schema }}"
                               + (f"_{seed_schema}" if seed_schema else "") + "\"\n    tables: [{name: nums}]\n")
    versions = list(range(1, rng.randint(2, 4)))
    latest = rng.choice(versions)
    files["models/f0/m.yml"] = ("version: 2\nmodels:\n  - name: m\n    latest_version: " + str(latest) +
                                "\n    versions:\n" + "".join(f"      - v: {v}\n" for v in versions))
    for v in versions:
        read = rng.choice(["{{ ref('nums') }}", "{{ source('s', 'nums') }}"])
        files[f"models/f0/m_v{v}.sql"] = f"select id, v * {v} as v from {read}\n"
    expected: dict[str, int] = {}
    built = set() if "f0" in disabled else {f"m_v{v}" for v in versions}
    for c in range(rng.randint(1, 5)):
        folder = f"f{rng.randrange(len(folders))}"
        pin = rng.choice([None, *versions])
        ref = "ref('m')" if pin is None else rng.choice([f"ref('m', v={pin})", f"ref('m', version='{pin}')"])
        files[f"models/{folder}/c{c}.sql"] = f"select coalesce(sum(v), 0) as s from {{{{ {ref} }}}}\n"
        if folder not in disabled and "f0" not in disabled:
            expected[f"c{c}"] = sum(values) * (latest if pin is None else pin)
            built.add(f"c{c}")
    if "f0" in disabled:  # what reads a disabled model is an error in dbt too: keep the generated ones apart
        for name in [k for k in files if k.startswith("models/f") and "/c" in k]:
            del files[name]
    _project(root, files)
    return cli_vars, expected, built


@pytest.mark.parametrize("seed", range(12))
def test_generated_projects_of_jinja_configs_versions_and_seed_sources(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    cli_vars, expected, built = _generated(tmp_path / "dbt", rng)
    report = import_dbt(tmp_path / "dbt", tmp_path / "new", cli_vars)
    imported = {c.dbt for c in report.converted if c.kind == "model"}
    assert imported == built, seed
    assert not [c for c in report.converted if c.kind == "source" and c.kiban != "lake.nums"]
    assert not (tmp_path / "new" / "lake" / "s_nums").exists()
    if not imported:
        return
    con = _built(report)
    for name, total in expected.items():
        assert con.execute(f"select s from mart.{name}").fetchall() == [(total,)], (name, seed)
