"""The ``kiban`` command as a person (or cron) uses it: real child processes, real files."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

import kiban

COMMANDS = ("init", "run", "status", "runs", "show", "graph")
USAGE = re.compile(r"Usage: (python -m )?kiban \[OPTIONS\] COMMAND")
RUN_LINE = re.compile(r"^run (\d{8}T\d{6}-[0-9a-f]{6}) (done|up to date|failed)", re.MULTILINE)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    both = result.stdout + result.stderr
    assert result.returncode == 0, both
    assert "Traceback" not in both, both
    return result.stdout


def query(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


# --- help, version, usage errors --------------------------------------------------------------------


def test_help_lists_the_commands(cli):
    out = ok(cli("--help"))
    assert USAGE.search(out), out
    for command in COMMANDS:
        assert re.search(rf"^\W*{command}\s", out, flags=re.MULTILINE), f"{command} missing from --help"


def test_version(cli):
    out = ok(cli("--version"))
    assert out.strip() == f"kiban {kiban.__version__}"


def test_the_console_script_is_the_same_program():
    script = Path(sys.executable).with_name("kiban")
    if not script.exists():
        pytest.skip("no kiban console script next to this Python")
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"kiban {kiban.__version__}"


@pytest.mark.parametrize(("args", "pattern"), [
    ((), USAGE.pattern),
    (("frobnicate",), r"No such command 'frobnicate'"),
    (("run", "--threads", "0"), r"Invalid value for '--threads'"),
    (("graph", "--no-such-option"), r"No such option: --no-such-option"),
])
def test_usage_errors_print_usage_not_a_traceback(cli, tmp_path, args, pattern):
    result = cli(*args, cwd=tmp_path)
    both = result.stdout + result.stderr
    assert "Traceback" not in both, both
    assert result.returncode == 2, both
    assert re.search(pattern, both), both


# --- a new project, run twice, then every read command ----------------------------------------------


@pytest.fixture(scope="module")
def shop(tmp_path_factory, cli):
    """``kiban init``, then two runs; the outputs are kept so each test looks at one part."""
    base = tmp_path_factory.mktemp("cli")
    root = base / "shop"
    made = cli("init", root, cwd=base)
    first = cli("--project", root, "run")
    second = cli("--project", root, "run")
    return {"root": root, "init": made, "first": first, "second": second}


def run_id(result: subprocess.CompletedProcess[str]) -> str:
    match = RUN_LINE.search(result.stdout)
    assert match, result.stdout + result.stderr
    return match.group(1)


def test_init_creates_a_project(shop):
    out = ok(shop["init"])
    root: Path = shop["root"]
    for rel in ("kiban.yml", "models/warehouse/orders.sql", "models/mart/daily_sales.sql",
                "models/mart/daily_sales.yml", "lake/orders/sample.parquet"):
        assert (root / rel).is_file(), rel
        assert f"created {root / rel}" in out
    assert "name: shop" in (root / "kiban.yml").read_text()


def test_first_run_builds_the_mart_with_the_right_rows(shop):
    out = ok(shop["first"])
    root: Path = shop["root"]
    assert RUN_LINE.search(out).group(2) == "done"
    assert "success 2" in out
    lake = str(root / "lake" / "orders" / "sample.parquet")
    con = duckdb.connect()
    try:
        (days,) = con.execute(
            "select count(distinct cast(ordered_at as date)) from read_parquet(?) where amount > 0",
            [lake]).fetchone()
        (orders,) = con.execute("select count(*) from read_parquet(?) where amount > 0", [lake]).fetchone()
    finally:
        con.close()
    assert days > 1
    db = root / "kiban.duckdb"
    assert query(db, "select count(*) from mart.daily_sales") == [(days,)]
    assert query(db, "select sum(orders) from mart.daily_sales") == [(orders,)]
    assert re.search(rf"mart\.daily_sales\s+success\s+\S+\s+{days}\b", out), out


def test_second_run_is_up_to_date(shop):
    out = ok(shop["second"])
    assert RUN_LINE.search(out).group(2) == "up to date"
    assert "fresh 2" in out
    assert run_id(shop["second"]) != run_id(shop["first"])


def test_status_shows_every_asset(shop, cli):
    out = ok(cli("--project", shop["root"], "status"))
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "lake" in lines["lake.orders"]
    rows = query(shop["root"] / "kiban.duckdb", "select count(*) from mart.daily_sales")[0][0]
    assert re.search(rf"\b(fresh|success)\b.*\b{rows}\b", lines["mart.daily_sales"])
    assert re.search(r"\b(fresh|success)\b", lines["warehouse.orders"])
    assert "never run" not in out


def test_runs_lists_runs_newest_first(shop, cli):
    out = ok(cli("--project", shop["root"], "runs"))
    first, second = run_id(shop["first"]), run_id(shop["second"])
    assert first in out
    assert second in out
    assert out.index(second) < out.index(first)
    assert re.search(rf"{first}\s+success", out)


def test_runs_with_an_id_shows_that_run(shop, cli):
    first = run_id(shop["first"])
    out = ok(cli("--project", shop["root"], "runs", first))
    assert f"run {first} success" in out
    assert re.search(r"warehouse\.orders\s+1\s+success", out), out
    assert re.search(r"mart\.daily_sales\s+1\s+success", out), out
    out = ok(cli("--project", shop["root"], "runs", run_id(shop["second"])))
    assert re.search(r"mart\.daily_sales\s+0\s+fresh", out), out


def test_runs_with_an_unknown_id(shop, cli):
    result = cli("--project", shop["root"], "runs", "19990101T000000-abcdef")
    assert result.returncode == 2
    assert "no run with id '19990101T000000-abcdef'" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_show_describes_an_asset(shop, cli):
    out = ok(cli("--project", shop["root"], "show", "daily_sales"))
    assert out.startswith("mart.daily_sales  (mart, table)")
    assert "Revenue and order count per day." in out
    assert "owner: data-team" in out
    assert "upstream: warehouse.orders" in out
    assert "downstream: -" in out
    for column in ("order_date", "orders", "revenue"):
        assert re.search(rf"^\s*{column}\s", out, flags=re.MULTILINE), column
    assert "from warehouse.orders" in out
    assert run_id(shop["first"]) in out


def test_show_an_unknown_asset_suggests_one(shop, cli):
    result = cli("--project", shop["root"], "show", "daily_sale")
    assert result.returncode == 2
    assert "no asset named 'daily_sale'" in result.stderr
    assert "did you mean 'daily_sales'?" in result.stderr


def test_graph_as_json(shop, cli):
    data = json.loads(ok(cli("--project", shop["root"], "graph", "--format", "json")))
    assert [a["key"] for a in data["assets"]] == ["lake.orders", "warehouse.orders", "mart.daily_sales"]
    assert data["edges"] == [["lake.orders", "warehouse.orders"], ["warehouse.orders", "mart.daily_sales"]]


def test_graph_selection_on_the_command_line(shop, cli):
    out = ok(cli("--project", shop["root"], "graph", "+daily_sales", "--exclude", "layer:lake", "-f", "json"))
    data = json.loads(out)
    assert [a["key"] for a in data["assets"]] == ["warehouse.orders", "mart.daily_sales"]
    tree = ok(cli("--project", shop["root"], "graph"))
    assert tree.splitlines() == ["lake.orders", "└── warehouse.orders", "    └── mart.daily_sales"]


def test_graph_unknown_format(shop, cli):
    result = cli("--project", shop["root"], "graph", "--format", "xml")
    assert result.returncode == 2
    assert "unknown format 'xml'" in result.stderr
    assert "tree, dot, json, mermaid" in result.stderr


def test_init_refuses_an_existing_project(shop, cli):
    root: Path = shop["root"]
    before = (root / "kiban.yml").read_text()
    result = cli("init", root)
    assert result.returncode == 2
    assert "Traceback" not in result.stdout + result.stderr
    assert f"{root} already holds a kiban project (kiban.yml exists)" in result.stderr
    assert (root / "kiban.yml").read_text() == before


# --- JSON log ---------------------------------------------------------------------------------------


def json_lines(stdout: str) -> list[dict]:
    events = []
    for line in stdout.splitlines():
        event = json.loads(line)  # every line on stdout is one JSON object
        assert isinstance(event, dict), line
        events.append(event)
    return events


def test_run_with_json_log(tmp_path, cli):
    root = tmp_path / "shop"
    ok(cli("init", root))
    result = cli("--project", root, "run", "--log-format", "json")
    ok(result)
    events = json_lines(result.stdout)
    assert events[0]["kind"] == "run_started"
    assert events[0]["detail"]["build"] == 2
    assert events[-1]["kind"] == "run_finished"
    assert events[-1]["status"] == "success"
    assert len({e["run_id"] for e in events}) == 1
    finished = {e["asset"]: e for e in events if e["kind"] == "asset_finished"}
    assert set(finished) == {"warehouse.orders", "mart.daily_sales"}
    assert all(e["status"] == "success" and e["rows"] > 0 for e in finished.values())
    kinds = [e["kind"] for e in events]
    assert kinds.index("asset_started") < kinds.index("asset_finished")
    # again: nothing to build, both fresh
    again = json_lines(ok(cli("--project", root, "run", "--log-format", "json")))
    assert {e["asset"]: e["status"] for e in again if e["kind"] == "asset_finished"} == {
        "warehouse.orders": "fresh", "mart.daily_sales": "fresh"}
    assert again[-1]["status"] == "nothing"


def test_unknown_log_format(tmp_path, cli):
    root = tmp_path / "shop"
    ok(cli("init", root))
    result = cli("--project", root, "run", "--log-format", "yaml")
    assert result.returncode == 2
    assert "unknown log format 'yaml'" in result.stderr
    assert not (root / "kiban.duckdb").exists()


# --- a model that fails at run time -----------------------------------------------------------------

FAILING = {
    "models/warehouse/orders.sql": "select order_id, amount from lake.orders",
    "models/warehouse/bad.sql": "select cast('x' as integer) as n, order_id from lake.orders",
    "models/mart/bad_report.sql": "select count(*) as n from warehouse.bad",
    "models/mart/daily_sales.sql": "select count(*) as orders, sum(amount) as revenue from warehouse.orders",
}
ORDERS = {"orders": "select i as order_id, i * 10 as amount from range(1, 51) t(i)"}


def test_a_failing_model_fails_the_run_and_skips_its_downstream(make_project, cli):
    root = make_project(FAILING, ORDERS)
    result = cli("--project", root, "run")
    both = result.stdout + result.stderr
    assert result.returncode == 1, both
    assert "Traceback" not in both
    assert "warehouse.bad failed" in result.stdout
    assert "Could not convert string '•••'" in result.stdout  # the value is never kept (it may be personal)
    assert re.search(r"skipped mart\.bad_report: .*warehouse\.bad", result.stdout), result.stdout
    assert RUN_LINE.search(result.stdout).group(2) == "failed"
    assert "kiban run --resume" in result.stdout
    # the independent branch was built
    db = root / "kiban.duckdb"
    assert query(db, "select orders, revenue from mart.daily_sales") == [(50, 12750)]
    tables = {t for (t,) in query(
        db, "select table_schema || '.' || table_name from information_schema.tables")}
    assert {"warehouse.orders", "mart.daily_sales"} <= tables
    assert not {"warehouse.bad", "mart.bad_report"} & tables
    # and status tells the story
    status = ok(cli("--project", root, "status"))
    lines = {line.split()[0]: line for line in status.splitlines() if line.strip()}
    assert " failed " in lines["warehouse.bad"]
    assert " skipped " in lines["mart.bad_report"]
    assert " success " in lines["mart.daily_sales"]


def test_a_failing_model_in_json_log_mode(make_project, cli):
    root = make_project(FAILING, ORDERS)
    result = cli("--project", root, "run", "--log-format", "json")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    events = json_lines(result.stdout)
    final = {e["asset"]: e for e in events if e["kind"] == "asset_finished"}
    assert final["warehouse.bad"]["status"] == "failed"
    assert "Could not convert string '•••'" in final["warehouse.bad"]["error"]
    assert final["mart.bad_report"]["status"] == "skipped"
    assert final["warehouse.orders"]["status"] == "success"
    assert final["mart.daily_sales"]["status"] == "success"
    assert events[-1]["kind"] == "run_finished"
    assert events[-1]["status"] == "failed"
