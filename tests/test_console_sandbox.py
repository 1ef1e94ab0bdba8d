"""A console query cannot take the machine with it: it runs in a worker process the OS bounds (memory, no file
writes, lowest priority), and the limit on queries at once holds across every process serving the project."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from kiban.catalog import sandbox
from kiban.catalog.console import ConsoleBusy, QueryConsole
from kiban.catalog.usage import Actor
from kiban.run import RunOptions, run_project
from tests.helpers.sandbox import HOGS, people_project, rss_mb

ANN = Actor("ann", "analysts")


@pytest.fixture
def small(make_project):
    return people_project(make_project)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the OS limits are Linux's")
def test_a_query_that_blows_up_fails_alone_with_a_clear_message(small):
    console = QueryConsole(small, memory_limit="256MB", address_space=768 * 2**20)
    console.run("select 1", ANN)  # the fork server is up
    before = rss_mb()
    for sql in HOGS:
        with pytest.raises(sandbox.QueryStopped, match="too much memory"):
            console.run(sql, ANN, timeout=60, limit=20)
    assert rss_mb() - before < 150, "the server process itself must not grow with its queries"
    assert console.run("select count(*) from lake.people", ANN).rows == [(2000,)]
    assert run_project(small, RunOptions(full_refresh=True)).ok  # and a run still builds


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the OS limits are Linux's")
def test_a_query_stopped_by_its_memory_is_told_like_one_stopped_by_its_time(small):
    """Which limit a runaway query reaches first depends on the machine's load, not on the data: both are one
    answer (kind and words), so the same query gets the same answer on a calm machine and a loaded one."""
    console = QueryConsole(small, memory_limit="256MB", address_space=768 * 2**20)
    answers = set()
    for sql, timeout in [(HOGS[0], 30.0), (HOGS[0], 0.05), ("select count(*) from range(100000000000) a", 0.5)]:
        with pytest.raises(sandbox.QueryStopped) as stopped:
            console.run(sql, ANN, timeout=timeout, limit=20)
        answers.add((type(stopped.value).__name__, stopped.value.message.replace(f"{timeout:g}s", "Ts")))
    assert answers == {("QueryStopped", "the query was stopped: it ran longer than Ts or used too much memory")}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the OS limits are Linux's")
def test_a_worker_killed_from_outside_is_a_failed_query_not_a_failed_server(small, caplog):
    """What the kernel's OOM killer does to a worker: the query is stopped, told like any query at its limits,
    the log says how it ended; nothing else fails."""
    caplog.set_level("INFO", logger="kiban.catalog.sandbox")
    console = QueryConsole(small)
    outcome: list[BaseException] = []

    def long() -> None:
        try:
            console.run("select count(*) from range(100000000000) t(i) where hash(i) = 1", ANN, timeout=60)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=long)
    thread.start()
    worker = None
    for _ in range(1200):  # a minute at most: a loaded machine starts the query's process slowly
        found = [p for p in multiprocessing.active_children() if p.name == sandbox.WORKER]
        if found:
            worker = found[0]
            break
        time.sleep(0.05)
    assert worker is not None
    assert worker.pid
    time.sleep(0.5)
    os.kill(worker.pid, 9)
    thread.join(30)
    assert outcome
    assert isinstance(outcome[0], sandbox.QueryStopped)  # as the kernel's OOM killer would: told as a limit
    assert "(signal 9)" in caplog.text  # the operator's log says how it ended
    assert console.run("select count(*) from mart.groups", ANN).rows == [(7,)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the OS limits are Linux's")
def test_a_worker_cannot_write_a_file_and_runs_at_idle_priority(tmp_path):
    target = tmp_path / "written.txt"
    script = textwrap.dedent(f"""
        import os
        from kiban.catalog.sandbox import confine
        confine(512 * 2**20, "idle")
        print(os.sched_getscheduler(0) == os.SCHED_IDLE, os.getpriority(os.PRIO_PROCESS, 0), flush=True)
        try:
            with open({str(target)!r}, "w") as handle:
                handle.write("x" * 10)
            print("wrote")
        except OSError as exc:
            print("refused", exc.errno)
        try:
            bytearray(2**30)
            print("allocated")
        except MemoryError:
            print("no memory")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.stdout.split("\n")[:3] == ["True 19", "refused 27", "no memory"], done.stdout + done.stderr
    assert not target.exists() or target.stat().st_size == 0


HOLDER = """
import sys
from pathlib import Path
from kiban.catalog.console import QueryConsole, QueryStopped
from kiban.catalog.usage import Actor
from kiban.project import load_project
console = QueryConsole(load_project(Path(sys.argv[1])), max_running=1, priority="normal")
print("start", flush=True)
try:
    console.run("select count(*) from range(100000000000) t(i) where hash(i) = 1", Actor("bob"),
                timeout=float(sys.argv[2]))
except QueryStopped:
    print("timeout", flush=True)
"""


def test_the_limit_of_queries_at_once_holds_across_processes(small):
    """Two server processes on one project share one limit: with one slot, a query in the other process makes
    this one busy; the slot is free again when the other's query ends (or its process dies)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    other = subprocess.Popen([sys.executable, "-c", HOLDER, str(small.root), "8"], stdout=subprocess.PIPE,
                             text=True, env=env)
    try:
        assert other.stdout is not None
        assert other.stdout.readline().strip() == "start"
        console = QueryConsole(small, max_running=1)
        deadline = time.monotonic() + 30
        while console.admission.running(1) == 0 and time.monotonic() < deadline:
            time.sleep(0.1)  # the other process has taken its slot
        with pytest.raises(ConsoleBusy, match="busy"):
            console.run("select 1", ANN)
        other.kill()  # a process that dies gives its slot back
        other.wait(30)
        assert console.run("select 1 as one", ANN).rows == [(1,)]
    finally:
        if other.poll() is None:
            other.kill()
            other.wait()


def test_slots_are_shared_by_threads_and_processes_and_released_on_exit(tmp_path):
    from kiban.catalog.admission import Admission

    one, two = Admission(tmp_path / "slots"), Admission(tmp_path / "slots")  # two "processes"' views
    with one.slot("ann", 2, 1):
        with pytest.raises(ConsoleBusy, match="ann already has 1"), two.slot("ann", 2, 1):
            pass
        with two.slot("bob", 2, 1):
            assert one.running(2) == 2
            with pytest.raises(ConsoleBusy, match="busy"), one.slot("carol", 2, 1):
                pass
    assert one.running(2) == 0
    assert all((p.stat().st_mode & 0o777) == 0o600 for p in Path(tmp_path / "slots").iterdir())


# The only ways from a front end to the warehouse's rows, and why each is allowed. Everything else a person can
# reach (the web console's SQL, the query API, recipes, `kiban query`) goes through QueryConsole.run.
ALLOWED_DATA_IMPORTS = {
    ("kiban/cli/catalog.py", "kiban.catalog.warehouse"): "published_columns: column names and types, no values",
    ("kiban/cli/catalog.py", "kiban.catalog.profile"): "profiles store no min/max/examples of a masked column",
    ("kiban/cli/checks.py", "kiban.checks.on_demand"): "an engineer's checks; stored samples mask PII columns",
    ("kiban/cli/running.py", "kiban.engines.dialect"): "refuse_unportable: the project's SQL text, no rows read",
}
DATA_MODULES = ("duckdb", "kiban.engines", "kiban.catalog.warehouse", "kiban.catalog.masking",
                "kiban.catalog.sandbox", "kiban.catalog.profile", "kiban.checks.on_demand", "kiban.checks.evaluate")


def test_every_front_end_reads_data_through_the_masked_console():
    import ast

    import kiban

    package = Path(kiban.__file__).parent
    found = []
    for path in sorted([*package.glob("web/*.py"), *package.glob("cli/*.py"), package / "catalog" / "recipes.py",
                        package / "api.py"]):
        relative = str(path.relative_to(package.parent))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                if name.startswith(DATA_MODULES) and (relative, name) not in ALLOWED_DATA_IMPORTS:
                    found.append((relative, name))
    # recipes.py parses (never runs) the promoted model with DuckDB's parser
    assert found == [("kiban/catalog/recipes.py", "duckdb")], found
    web = (package / "web" / "catalog_views.py").read_text(encoding="utf-8")
    assert "QueryConsole(" in web
    assert ".run(" in web
    assert "console.run(" in (package / "catalog" / "recipes.py").read_text(encoding="utf-8")
    assert "con.run(" in (package / "cli" / "console.py").read_text(encoding="utf-8")
