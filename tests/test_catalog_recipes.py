"""SQL recipes: typed parameters bound (never interpolated), clear errors naming file and line, runs recorded as
recipe runs, promotion to a mart model — and property-based proof that no parameter value can inject SQL."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kiban.catalog.console import QueryConsole
from kiban.catalog.recipes import ParameterError, bind, coerce, get_recipe, load_recipes, promote, run_recipe
from kiban.catalog.usage import Actor, history
from kiban.errors import ProjectError, ProjectErrors, UsageError
from kiban.project import load_project
from kiban.run import RunOptions, run_project
from kiban.store import Store
from tests.helpers.shop import build_shop
from tests.helpers.warehouse import project_maker

ECHO = """
description: Echo a value back (to prove parameters are data).
sql: select $text as text, $n as n, $day as day, $kind as kind from mart.daily_sales limit 1
params:
  text: {type: text}
  n: {type: int, default: 0}
  day: {type: date, default: 2026-11-01}
  kind: {type: choice, choices: [a, "b'; drop table mart.daily_sales; --"], default: a}
"""


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    make_project = project_maker(tmp_path_factory.mktemp("recipes"))
    root = build_shop(make_project, extra={"recipes/echo.yml": ECHO})
    project = load_project(root)
    store = Store(project.state_url)
    yield QueryConsole(project, store)
    store.close()


def test_recipes_load_with_their_typed_parameters(shop):
    recipes = load_recipes(shop.project)
    assert sorted(recipes) == ["echo", "store_sales"]
    sales = recipes["store_sales"]
    assert sales.config.owner == "sales-analytics"
    assert sales.config.tags == ("sales",)
    assert {n: p.type for n, p in sales.config.params.items()} == {"from_day": "date", "to_day": "date",
                                                                   "min_revenue": "float"}


def test_a_recipe_runs_with_bound_values_and_is_recorded(shop):
    recipe = get_recipe(shop.project, "store_sales")
    result = run_recipe(shop, recipe, {"from_day": "2026-11-03", "to_day": "2026-11-05"}, Actor("alice", "sales"))
    assert [r[0] for r in result.rows] == [date(2026, 11, 3), date(2026, 11, 4), date(2026, 11, 5)]
    record = history(shop.store, "shop", "alice")[0]
    assert (record.kind, record.name, record.status, record.rows) == ("recipe", "store_sales", "ok", 3)


def test_parameter_values_are_checked_against_their_type(shop):
    recipe = get_recipe(shop.project, "store_sales")
    with pytest.raises(ParameterError, match="needs a value for to_day"):
        bind(recipe, {})
    with pytest.raises(ParameterError, match="'yesterday' is not a date"):
        bind(recipe, {"to_day": "yesterday"})
    with pytest.raises(ParameterError, match="has no parameter 'to'") as caught:
        bind(recipe, {"to": "2026-11-05"})
    assert "to_day" in str(caught.value)
    echo = get_recipe(shop.project, "echo")
    with pytest.raises(ParameterError, match="'1; drop table x' is not an int"):
        bind(echo, {"text": "x", "n": "1; drop table x"})
    with pytest.raises(ParameterError, match="'c' is not one of"):
        bind(echo, {"text": "x", "kind": "c"})
    assert bind(recipe, {"to_day": "2026-11-05"}) == {"from_day": date(2026, 11, 1), "to_day": date(2026, 11, 5),
                                                      "min_revenue": 0.0}


def test_recipe_files_with_mistakes_name_the_file_and_line(make_project):
    root = make_project({"recipes/bad.yml": "sql: select $a as a, $b as b\nparams:\n  a: {type: int}\n"
                                            "  c: {type: text}\n",
                         "recipes/worse.yml": "sql: select 1\nparams:\n  k: {type: choice}\n"})
    with pytest.raises(ProjectErrors) as caught:
        load_recipes(load_project(root))
    text = str(caught.value)
    assert "bad.yml:1:1: the SQL uses $b, but `params:` does not declare it" in text
    assert "bad.yml:4:3: parameter c is declared but the SQL never uses $c" in text
    assert "worse.yml:3" in text
    assert "choices" in text


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200), n=st.integers(min_value=-2**62, max_value=2**62))
def test_no_text_or_number_can_inject_sql(shop, text, n):
    """Whatever the values, the query returns them unchanged as data, and the table is still there."""
    echo = get_recipe(shop.project, "echo")
    text = text.replace("\x00", "")  # DuckDB strings hold no NUL
    result = run_recipe(shop, echo, {"text": text, "n": str(n), "kind": "b'; drop table mart.daily_sales; --"},
                        Actor("fuzz"), record=False)
    assert result.rows == [(text, n, date(2026, 11, 1), "b'; drop table mart.daily_sales; --")]


@settings(max_examples=200, deadline=None)
@given(raw=st.text(max_size=40))
def test_typed_parameters_accept_only_their_type(raw):
    from kiban.catalog.recipes import ParamConfig

    for kind in ("int", "float", "date"):
        try:
            value = coerce("p", ParamConfig(type=kind), raw)
        except ParameterError:
            continue
        assert type(value) is {"int": int, "float": float, "date": date}[kind]


BIG_ORDERS = """
description: Orders above an amount, in a period.
owner: sales-analytics
sql: select order_id, amount from warehouse.orders where amount >= $min and order_date <= $to_day
params:
  min: {type: int, default: 50}
  to_day: {type: date}
"""


def test_promote_scaffolds_a_mart_model_that_builds(make_project):
    root = build_shop(make_project, extra={"recipes/big_orders.yml": BIG_ORDERS})
    project = load_project(root)
    with pytest.raises(UsageError, match=r"reads mart\.daily_sales; a mart model reads only"):
        promote(project, get_recipe(project, "store_sales"), {"to_day": "2026-11-10"})
    written = promote(project, get_recipe(project, "big_orders"), {"to_day": "2026-11-10"}, "early_november")
    assert [p.name for p in written] == ["early_november.sql", "early_november.yml"]
    sql = written[0].read_text()
    header, body = sql.split("\n", 1)
    assert header == ("-- promoted from recipes/big_orders.yml (parameters fixed: min, to_day; "
                      "values in early_november.yml)")
    assert "min=50, to_day=2026-11-10" in written[1].read_text()
    assert "$" not in body
    assert "amount >= 50" in body
    assert "CAST('2026-11-10' AS DATE)" in body
    assert "owner: sales-analytics" in written[1].read_text()
    result = run_project(load_project(root), RunOptions(select=["mart.early_november"]))
    assert result.ok
    with pytest.raises(UsageError, match="already exists"):
        promote(project, get_recipe(project, "big_orders"), {"to_day": "2026-11-10"}, "early_november")


def test_cli_recipes_list_show_run(make_project, cli):
    root = build_shop(make_project)
    out = cli("--project", root, "recipes", "run", "store_sales", "-p", "from_day=2026-11-02",
              "-p", "to_day=2026-11-03", "--user", "alice")
    assert out.returncode == 0, out.stderr
    assert "2026-11-02" in out.stdout
    assert "2026-11-03" in out.stdout
    assert "2026-11-04" not in out.stdout
    out = cli("--project", root, "recipes", "run", "store_sales", "-p", "to_day=soon")
    assert out.returncode == 2
    assert "'soon' is not a date" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_broken_recipe_is_a_project_error_not_a_crash(make_project):
    root = make_project({"recipes/x.yml": "sql: [\n"})
    with pytest.raises(ProjectError):
        load_recipes(load_project(root))


HOSTILE_TEXT = """
description: Orders of one store code.
sql: select order_id from warehouse.orders where cast(customer_id as varchar) <> $code
params:
  code: {type: text}
"""


def test_promote_writes_any_hostile_text_as_one_literal_and_nothing_else(make_project):
    """Property: whatever text a person types, the promoted model is ONE SELECT whose literal is that text."""
    import json

    import duckdb
    import yaml
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    root = build_shop(make_project, run=False, extra={"recipes/by_code.yml": HOSTILE_TEXT})
    project = load_project(root)
    recipe = get_recipe(project, "by_code")
    seen = iter(range(10**6))
    parser = duckdb.connect()
    nasty = st.sampled_from(["\n", "\r", "'", "''", "\\", "--", "/*", "*/", ";", "$code", "\u2028", "\x0b",
                             "select read_text('/etc/passwd')", "drop table x", "E'", "$$", '"'])

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(st.one_of(nasty, st.text(st.characters(exclude_characters="\x00"), max_size=8)), max_size=8))
    def check(parts):
        value = "".join(parts)[:1000]
        if any(not c.isprintable() and c not in "\n\t" for c in value):
            with pytest.raises(ParameterError, match="control characters"):
                promote(project, recipe, {"code": value}, "refused")
            return
        sql_path, yml_path = promote(project, recipe, {"code": value}, f"p{next(seen)}")
        text = sql_path.read_bytes().decode("utf-8")
        header = text.split("\n", 1)[0]
        assert header == f"-- promoted from recipes/by_code.yml (parameters fixed: code; values in {yml_path.name})"
        tree = json.loads(parser.execute("select json_serialize_sql(?)", [text]).fetchone()[0])
        assert not tree["error"]
        assert len(tree["statements"]) == 1
        constants = []

        def walk(node):
            if isinstance(node, dict):
                if node.get("class") == "CONSTANT":
                    constants.append(node["value"].get("value"))
                for v in node.values():
                    walk(v)
            elif isinstance(node, list):
                for v in node:
                    walk(v)

        walk(tree["statements"])
        assert value in constants
        assert value in yaml.safe_load(yml_path.read_text(encoding="utf-8"))["description"]
        sql_path.unlink()
        yml_path.unlink()

    check()
    with pytest.raises(UsageError, match="cannot name a model"):
        promote(project, recipe, {"code": "x"}, "name\n")
