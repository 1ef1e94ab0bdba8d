"""The command line as scripts, cron and CI use it: stdout is a pipe, not a terminal.

Nothing is cut or wrapped (generated long names, run ids), every command that prints data answers ``--json``
in the shape docs/cli.md documents, exit codes follow the documented rule, and long commands show progress
on stderr from their first event.
"""

from __future__ import annotations

import json
import os
import random
import re
import string
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import write_files
from tests.helpers.console import build_project, open_incident

DOCS = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
# a pipe, a narrow $COLUMNS and a dumb terminal: each of them used to cut the output at 80 columns
ENV = {**os.environ, "COLUMNS": "80", "TERM": "dumb", "NO_COLOR": "1", "PYTHONIOENCODING": "utf-8"}
ENV.pop("FORCE_COLOR", None)


def kiban(root: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The real command in a child process whose stdout and stderr are pipes; one that hangs is stopped with
    SIGABRT so that its stack (faulthandler) is in the failure."""
    import signal

    argv = [sys.executable, "-X", "faulthandler", "-m", "kiban", "-p", str(root), *args]
    with subprocess.Popen(argv, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as child:
        try:
            out, err = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGABRT)
            out, err = child.communicate()
            pytest.fail(f"kiban {' '.join(args)} hung for {timeout} s:\n{err[-6000:]}")
    return subprocess.CompletedProcess(argv, child.returncode, out, err)


def long_names(seed: int, count: int = 3) -> list[str]:
    """Model names of 60 to 200 characters (letters, digits, underscores), different for every seed."""
    rng = random.Random(seed)
    names = []
    for _ in range(count):
        length = rng.randint(60, 200)
        names.append(rng.choice(string.ascii_lowercase) + "".join(
            rng.choice(string.ascii_lowercase + string.digits + "_") for _ in range(length - 1)))
    return names


SEED = int(os.environ.get("KIBAN_TEST_SEED", random.randrange(1_000_000)))


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The console's test shop (a use case, a model broken on purpose, an incident), plus models with generated
    long names (one of them checked and served by a use case), a file source with a bad row, and a recipe."""
    root = build_project(tmp_path_factory.mktemp("pipes") / "shop")
    names = long_names(SEED)
    files = {f"models/mart/{n}.sql": "select id, amount from warehouse.orders\n" for n in names}
    files[f"models/mart/{names[0]}.yml"] = "columns:\n  - name: id\n    checks: [not_null]\n"
    files["usecases/long_reader.yml"] = (
        "description: A reader of the long-named mart.\nowner: data-team\nconsumers:\n"
        "  - name: Finance analysts\n    team: finance\n"
        f"assets: [mart.{names[1]}]\nneed:\n  by: \"07:00\"\n  on: every_day\n"
        "target:\n  attainment: 0.9\n  window_days: 7\n")
    files["sources/shop.yml"] = ("type: files\nsettle: 0s\ntables:\n  orders:\n    path: landing/*.csv\n"
                                 "    primary_key: [id]\n"
                                 "    columns:\n      - {name: id, type: INTEGER}\n"
                                 "      - {name: amount, type: \"DECIMAL(8,2)\"}\n")
    files["landing/orders-1.csv"] = "id,amount\n1,10.00\n2,12;50\n"
    files["recipes/by_store.yml"] = ("description: One store's orders.\nsql: |\n"
                                     "  select * from warehouse.orders where store = $store\n"
                                     "params:\n  store: {type: int, description: store number}\n")
    write_files(root, files)
    first = kiban(root, "run")
    assert first.returncode == 1, first.stdout + first.stderr  # mart.daily_sales is broken on purpose
    incident = open_incident(root)
    run_id = json.loads(kiban(root, "runs", "--json").stdout)["runs"][0]["run_id"]
    return {"root": root, "names": names, "run_id": run_id, "incident": incident, "first": first}


# -- nothing cut, nothing wrapped -----------------------------------------------------------------------------------

def test_long_names_and_run_ids_reach_a_pipe_whole(shop):
    root, names, run_id = shop["root"], shop["names"], shop["run_id"]
    outputs = {
        "status": kiban(root, "status"), "runs": kiban(root, "runs"), "run": kiban(root, "runs", run_id),
        "graph": kiban(root, "graph"), "check": kiban(root, "check"), "deadlines": kiban(root, "slo", "deadlines"),
        "show": kiban(root, "show", names[2]), "logs": kiban(root, "logs", run_id),
        "impact": kiban(root, "impact", "warehouse.orders"),
    }
    for what, result in outputs.items():
        assert "Traceback" not in result.stderr, (what, result.stderr)
        text = result.stdout
        for name in [*names, run_id]:  # wherever a name or an id begins, it is there in full (never cut with …)
            assert text.count(name[:20]) == text.count(name), (what, name, SEED, text)
        lines = text.splitlines()
        assert all(line == line.rstrip() for line in lines), what  # no padding after a line's end
        if what in ("status", "runs", "run", "logs"):
            assert re.search(rf"\b{re.escape(run_id)}\b", text) or what == "status", (what, text)
    # every long name whole on one line, wherever an asset is listed (grep finds it)
    for what in ("status", "graph", "run"):
        for name in names:
            assert f"mart.{name}" in outputs[what].stdout, (what, name, SEED)
    assert f"mart.{names[0]}" in outputs["check"].stdout, SEED
    assert f"mart.{names[1]}" in outputs["deadlines"].stdout, SEED
    assert re.search(r"\d\d-\d\d \d\d:\d\d:\d\d", outputs["deadlines"].stdout)  # the times, whole
    assert "Asia/Tokyo" in outputs["deadlines"].stdout  # and their time zone, named
    # an error of several lines stays one line of the status table (awk and grep see one asset per line)
    failed = [line for line in outputs["status"].stdout.splitlines() if line.strip().startswith("mart.daily_sales")]
    assert len(failed) == 1
    assert "amount_typo" in failed[0]


def test_the_run_summary_and_progress_in_a_pipe(shop):
    first = shop["first"]
    assert re.search(r"^run \d{8}T\d{6}-[0-9a-f]{6} failed", first.stdout, re.MULTILINE), first.stdout
    # progress went to stderr from the first event: the collection, table by table, then the build
    err = first.stderr
    assert "collecting 1 source table(s)" in err, err
    assert "collected lake.shop_orders: success" in err, err
    assert re.search(r"run \d{8}T\d{6}-[0-9a-f]{6}: \d+ asset\(s\) to build", err), err
    assert "failed mart.daily_sales: Binder Error" in err
    assert err.index("collecting") < err.index("to build") < err.index("failed mart.daily_sales")


def test_collect_in_a_pipe_names_each_table_once_in_full(shop):
    result = kiban(shop["root"], "collect")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("lake.shop_orders") == 1, result.stdout  # the summary: one row per table
    assert "…" not in result.stdout + result.stderr
    assert "collected lake.shop_orders: success" in result.stderr


def test_a_big_run_ends_in_a_compact_summary(tmp_path):
    """120 models: the summary names the layers and the slowest builds, not 120 lines; progress lines are
    periodic, not one per asset."""
    files = {"kiban.yml": "name: big\ntimezone: UTC\n"}
    for i in range(120):
        files[f"models/warehouse/m{i:03d}.sql"] = f"select {i} as x"
    root = tmp_path / "big"
    write_files(root, files)
    result = kiban(root, "run", "--threads", "4")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "built 120 assets: 120 warehouse; the 10 slowest" in result.stdout
    assert len(result.stdout.splitlines()) < 25, result.stdout
    assert "built 120 of 120" in result.stderr, result.stderr
    assert len(result.stderr.splitlines()) < 40, result.stderr


# -- --json everywhere, in the documented shape ----------------------------------------------------------------------

def parse_keys(cell: str) -> tuple[list[str], dict[str, list[str]]]:
    """```a`, `b` (each: `c`, `d`)`` → top-level keys [a, b] and {b: [c, d]}; other parentheses are prose."""
    top: list[str] = []
    each: dict[str, list[str]] = {}
    for part in re.finditer(r"`([a-z_0-9]+)`|\((each: [^)]*|[^)]*)\)", cell):
        if part.group(1):
            top.append(part.group(1))
        elif part.group(2).startswith("each:") and top:
            each[top[-1]] = re.findall(r"`([a-z_0-9]+)`", part.group(2))
    return top, each


def documented_shapes() -> dict[str, tuple[str, list[str]]]:
    """docs/cli.md's "JSON output" table: command → (form, keys)."""
    text = DOCS.read_text(encoding="utf-8")
    section = text[text.index("## JSON output"):]
    section = section[:section.index("\n## ", 5)]
    shapes = {}
    for line in section.splitlines():
        found = re.match(r"\| `kiban ([a-z ]+?)(?: (?:[A-Z_.]+|--[a-z]+|\[[^`\]]*\]))* --json` \| (\w+) \| (.*) \|$",
                         line)
        if found and found.group(1) not in shapes:  # `kiban runs RUN_ID --json` is tested on its own
            shapes[found.group(1)] = (found.group(2), re.findall(r"`([a-z_0-9]+)`", found.group(3)))
            SHAPE_CELLS[found.group(1)] = parse_keys(found.group(3))
    return shapes


SHAPE_CELLS: dict[str, tuple[list[str], dict[str, list[str]]]] = {}


def json_commands() -> list[str]:
    """Every command (by its path) that has a --json option: found in the command tree, not listed by hand."""
    import typer

    from kiban.cli import (  # noqa: F401
        app,
        backfill,
        catalog,
        checks,
        collect,
        commands,
        console,
        models,
        schedule,
        slo,
        web,
        worker,
    )

    found: list[str] = []

    def walk(command: Any, path: list[str]) -> None:
        if any("--json" in p.opts for p in command.params) and path:
            found.append(" ".join(path))
        for name, sub in (getattr(command, "commands", None) or {}).items():
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return found


def arguments(shop: dict[str, Any]) -> dict[str, list[str]]:
    names = shop["names"]
    return {
        "status": [], "runs": [], "logs": [shop["run_id"]], "show": ["warehouse.orders"], "graph": [],
        "check": [], "slo": [], "slo check": ["--no-notify"], "slo deadlines": [], "slo history": ["morning_sales"],
        "incidents": ["--all"], "incidents show": [str(shop["incident"])], "impact": ["warehouse.orders"],
        "report": [], "quarantine list": [], "quarantine show": ["lake.shop_orders"], "models list": [],
        "jobs": [], "lineage": [f"mart.{names[0]}.id"], "search": ["orders"], "pii list": [], "pii suggest": [],
        "usage": [], "usage unused": [], "requests list": [], "query": ["select 1 as one"],
        "recipes run": ["by_store", "-p", "store=1"], "run": [], "collect": [], "history": [],
        "recipes list": [], "recipes show": ["by_store"], "backfill": ["--status"], "users list": [], "plan": [],
    }


# commands whose --json needs what this machine's test project cannot give; each is tested elsewhere
ELSEWHERE = {
    "models show": "needs a trained model (tests/test_ml_registry.py)",
    "models compare": "needs a trained model (tests/test_ml_registry.py)",
    "scheduler": "needs jobs and runs until stopped (tests/test_schedule.py)",
    "worker": "needs a PostgreSQL run queue (tests/test_workers.py)",
    "requests show": "needs a data request (tests/test_catalog_requests.py)",
}


def test_every_command_with_json_is_documented_and_tested_here():
    commands = json_commands()
    shapes = documented_shapes()
    assert len(commands) >= 30, commands
    missing_docs = [c for c in commands if c not in shapes]
    assert not missing_docs, f"document the JSON shape of: {missing_docs}"
    fake = {"names": ["x"], "run_id": "r", "incident": 1}
    untested = [c for c in commands if c not in arguments(fake) and c not in ELSEWHERE]
    assert not untested, untested


@pytest.mark.parametrize("command", [c for c in json_commands() if c not in ELSEWHERE])
def test_json_parses_and_has_the_documented_keys(shop, command):
    form, keys = documented_shapes()[command]
    args = arguments(shop)[command]
    result = kiban(shop["root"], *command.split(), *args, "--json")
    assert result.returncode in (0, 1), (command, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    text = result.stdout
    if form == "lines":
        documents = [json.loads(line) for line in text.splitlines()]
        assert documents, command
        for doc in documents:
            assert set(keys) <= set(doc), (command, keys, doc)
        return
    doc = json.loads(text)
    if form == "list":
        assert isinstance(doc, list), (command, doc)
        for item in doc:
            assert set(keys) <= set(item), (command, keys, item)
    else:
        top, each = SHAPE_CELLS[command]
        assert isinstance(doc, dict), (command, top, doc)
        assert set(top) <= set(doc), (command, top, doc)
        for key, inner in each.items():
            for item in doc[key]:
                assert set(inner) <= set(item), (command, key, inner, item)


@pytest.mark.parametrize(("old", "new"), [
    (["run", "--log-format", "json"], ["run", "--json"]),
    (["graph", "-f", "json"], ["graph", "--json"]),
    (["report", "-f", "json"], ["report", "--json"]),
])
def test_old_flags_are_aliases_of_json(shop, old, new):
    a, b = kiban(shop["root"], *old), kiban(shop["root"], *new)
    assert a.returncode == b.returncode
    if old[0] == "run":
        assert [json.loads(x)["kind"] for x in a.stdout.splitlines()] == \
            [json.loads(x)["kind"] for x in b.stdout.splitlines()]
    else:
        assert set(json.loads(a.stdout)) == set(json.loads(b.stdout))


def test_json_times_are_utc_with_z(shop):
    doc = json.loads(kiban(shop["root"], "runs", "--json").stdout)
    for run in doc["runs"]:
        assert run["started_at"].endswith("Z")
        assert run["run_id"][:8] == run["started_at"][:10].replace("-", "")
    lake = json.loads(kiban(shop["root"], "show", "lake.shop_orders", "--json").stdout)["collection"]
    assert any(x["read"] == 2 and x["landed"] == 1 for x in lake["loads"])
    assert lake["quarantined"] >= 1
    assert lake["loads"][0]["started_at"].endswith("Z")
    one = json.loads(kiban(shop["root"], "runs", shop["run_id"], "--json").stdout)
    assert one["run"]["run_id"] == shop["run_id"]
    assert {a["status"] for a in one["attempts"]} >= {"failed", "success"}


# -- exit codes ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["runs", "nosuch"], ["logs", "nosuch"], ["show", "nosuch"], ["incidents", "show", "99"],
    ["incidents", "ack", "99"], ["incidents", "resolve", "99", "--note", "x"], ["slo", "history", "nosuch"],
    ["impact", "nosuch"], ["quarantine", "show", "nosuch"], ["models", "show", "nosuch"], ["run", "nosuch"],
    ["graph", "-f", "nosuch"], ["report", "-f", "nosuch"], ["run", "--log-format", "nosuch"],
    ["check", "nosuch"], ["runs", "--watch", "--json"],
])
def test_something_that_does_not_exist_is_a_usage_error_exit_2(shop, args):
    result = kiban(shop["root"], *args)
    assert result.returncode == 2, (args, result.returncode, result.stdout, result.stderr)
    assert result.stderr.startswith("error:") or "Usage:" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_resolved_incident_cannot_be_resolved_again(shop, tmp_path):
    root = shop["root"]
    incident = str(shop["incident"])
    first = kiban(root, "incidents", "resolve", incident, "--note", "fixed the typo")
    assert first.returncode == 0, first.stderr
    again = kiban(root, "incidents", "resolve", incident, "--note", "again")
    assert again.returncode == 2
    assert "already resolved" in again.stderr


def test_a_failed_check_exits_1_with_json_too(tmp_path):
    root = tmp_path / "p"
    write_files(root, {"kiban.yml": "name: p\ntimezone: UTC\n",
                       "models/warehouse/t.sql": "select null::int as id",
                       "models/warehouse/t.yml": "columns:\n  - name: id\n    checks: [not_null]\n"})
    assert kiban(root, "run").returncode == 1  # the blocking check fails the build
    result = kiban(root, "check", "--json")
    assert result.returncode in (0, 1)
    doc = json.loads(result.stdout)
    assert doc["ok"] is (result.returncode == 0)


# -- serve without the web extra ----------------------------------------------------------------------------------

def test_serve_without_the_web_extra_says_which_extra_in_one_line(tmp_path):
    code = ("import sys; sys.modules['uvicorn'] = None; sys.argv = ['kiban', '-p', sys.argv[1], 'serve']\n"
            "from kiban.cli import main; main()")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=ENV, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "pip install 'kiban[web]'" in result.stderr
    assert "uvicorn" in result.stderr
