"""The layering of docs/architecture.md holds: no module-level import cycle outside the CLI, and `kiban --help`
stays light. The import contracts themselves (which package may import which) are in .importlinter and checked by
`make lint` (`lint-imports`); these tests say what a contract cannot, on the real import graph of the package.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import grimp
import pytest

LAZY_BOUNDARY = "kiban.cli"  # the CLI's modules import each other and register commands lazily


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    # every import counts, also one inside a function; one under `if TYPE_CHECKING:` runs for the type checker only
    return grimp.build_graph("kiban", cache_dir=None, exclude_type_checking_imports=True)


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative: no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    fake = grimp.ImportGraph()
    for name in ("p", "p.a", "p.b", "p.c", "p.d"):
        fake.add_module(name)
    fake.add_import(importer="p.a", imported="p.b")
    fake.add_import(importer="p.b", imported="p.c")
    fake.add_import(importer="p.c", imported="p.a")
    fake.add_import(importer="p.c", imported="p.d")
    assert _cycles(fake) == [["p.a", "p.b", "p.c"]]


def test_no_import_cycle_outside_the_cli(graph: grimp.ImportGraph) -> None:
    outside = [c for c in _cycles(graph)
               if any(m != LAZY_BOUNDARY and not m.startswith(LAZY_BOUNDARY + ".") for m in c)]
    assert outside == [], f"import cycles (break them: see docs/architecture.md, 'Import contracts'): {outside}"


def test_every_package_is_seen(graph: grimp.ImportGraph) -> None:
    """A folder without __init__.py would be invisible to the contracts (kiban.ml was)."""
    from pathlib import Path

    import kiban

    root = Path(kiban.__file__).parent
    folders = {p.parent for p in root.rglob("*.py") if "__pycache__" not in p.parts}
    missing = sorted(str(f.relative_to(root)) for f in folders if not (f / "__init__.py").exists()
                     and "migrations" not in f.parts)
    assert missing == []
    assert "kiban.ml.checks" in graph.modules


def test_help_loads_no_heavy_library() -> None:
    """`kiban --help` imports the CLI's modules only: the core's libraries load when a command needs them."""
    code = ("import sys, runpy; sys.argv = ['kiban', '--help']\n"
            "try:\n    runpy.run_module('kiban', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "import json; print(json.dumps(sorted(sys.modules)), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    loaded = set(json.loads(done.stderr.strip().splitlines()[-1]))
    heavy = {"duckdb", "sqlglot", "sqlalchemy", "pyarrow", "pydantic", "numpy", "fastapi", "alembic"}
    assert heavy & loaded == set()
    leaves = {"kiban.api", "kiban.errors", "kiban.status",  # stdlib-only leaves (the status words the CLI prints)
              "kiban.store", "kiban.store.lite",  # and the stdlib store the no-op stamp (cli.quick) records with
              "kiban.store.ddl"}  # (its SQL for a new store: constants)
    assert {m for m in loaded if m.startswith("kiban.") and not m.startswith("kiban.cli")} <= leaves


def _modules_after(root: object, *args: str) -> set[str]:
    """The modules one `kiban` command (in a child process, from the project folder) loaded."""
    code = ("import sys, runpy; sys.argv = ['kiban', *sys.argv[1:]]\n"
            "try:\n    runpy.run_module('kiban', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "import json; print(json.dumps(sorted(sys.modules)), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                          cwd=str(root))
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


def test_run_and_status_load_no_dataframe_library(make_project: Callable[..., Path]) -> None:
    """A run (first and nothing-changed), `status` and `check` do not load pandas or NumPy (≈0.3 s a process).

    DuckDB's Python client imports pandas as soon as a statement binds any parameter, so the engine's own
    bookkeeping statements write their values as literals (kiban.engines.duckdb_partitions.value)."""
    root = make_project({"models/warehouse/a.sql": "select id, name from lake.src",
                         "models/mart/b.sql": "select count(*) as n from warehouse.a",
                         "models/mart/b.yml": "checks:\n  - row_count: {min: 1}\n"},
                        lake={"src": "select 1 as id, 'x' as name"})
    heavy = {"pandas", "numpy"}
    for args in (("run",), ("run",), ("status",), ("check", "mart.b")):
        loaded = _modules_after(root, *args)
        assert "kiban.run" in loaded or "kiban.status" in loaded or "kiban.checks" in loaded, args  # it ran
        assert heavy & loaded == set(), args
    assert (root / "kiban.duckdb").exists()


# What a DuckDB `kiban run` and `kiban check` never need: SQLAlchemy (a SQLite store, new or not, is read and
# written through kiban.store.lite), the migrations, Typer's help formatter (Rich Markdown, tracebacks), Pygments
# (`kiban show` only), the Spark engine, and the command modules of other commands (Rich tables, Typer sub-apps).
NOT_ON_RUN_OR_CHECK = {"pandas", "numpy", "sqlalchemy", "sqlalchemy.orm", "alembic", "typer.rich_utils",
                       "rich.markdown", "rich.traceback", "rich.syntax", "pygments", "kiban.engines.spark",
                       "kiban.cli.catalog", "kiban.cli.web", "kiban.cli.slo", "kiban.cli.value", "kiban.cli.team",
                       "kiban.cli.console"}


@pytest.mark.parametrize("args", [("run",), ("run", "--full-refresh"), ("again", "run", "--full-refresh"),
                                  ("check", "mart.b")])
def test_run_and_check_load_only_what_they_use(make_project: Callable[..., Path], args: tuple[str, ...]) -> None:
    """`kiban run` (the full path, not the no-op stamp; on a new store, and ``again`` on the store a first run made)
    and `kiban check` import the one command module they are in and none of the modules above (issue 23: ≈ 0.1
    CPU-s a process together; SQLAlchemy ≈ 0.17 CPU-s more)."""
    root = make_project({"models/warehouse/a.sql": "select id, name from lake.src",
                         "models/mart/b.sql": "select count(*) as n from warehouse.a",
                         "models/mart/b.yml": "checks:\n  - row_count: {min: 1}\n"},
                        lake={"src": "select 1 as id, 'x' as name"})
    if args[0] in ("check", "again"):
        _modules_after(root, "run")
    loaded = _modules_after(root, *args[args[0] == "again":])
    assert {"kiban.run", "kiban.checks.on_demand"} & loaded  # it ran (a run, or the checks)
    assert NOT_ON_RUN_OR_CHECK & loaded == set()
    if args[0] != "check":  # plain SQL: DuckDB's parser alone decides what it reads (graph.sqlrefs)
        assert "sqlglot" not in loaded


def test_every_command_word_names_the_module_that_registers_it() -> None:
    """kiban.cli.root imports only the invoked command's module (COMMAND_MODULES): every registered command and
    group is there, under the module whose decorator registered it."""
    from kiban.cli import root

    root.import_commands(["--help"])  # all of them
    found: dict[str, str] = {}
    for command in root.app.registered_commands:
        found[root._name(command.name, command.callback) or ""] = command.callback.__module__  # type: ignore[union-attr]
    for group in root.app.registered_groups:
        sub = group.typer_instance
        callbacks = [c.callback for c in sub.registered_commands]  # type: ignore[union-attr]
        found[group.name or root._group_name(sub) or ""] = callbacks[0].__module__  # type: ignore[union-attr]
    assert found == {word: f"kiban.cli.{module}" for word, module in root.COMMAND_MODULES.items()}


def test_a_command_module_loaded_by_another_command_stays_registered(make_project: Callable[..., Path]) -> None:
    """A run imports kiban.cli.checks (its checks' summary) while only `run` is registered: `check` must still be
    there for a later main() in the same process (a program that calls the CLI twice)."""
    root = make_project({"models/mart/b.sql": "select 1 as n",
                         "models/mart/b.yml": "checks:\n  - row_count: {min: 1}\n"})
    code = ("import sys\nfrom kiban.cli.root import main\n"
            "for argv in (['run'], ['check']):\n    sys.argv = ['kiban', *argv]\n    main()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=str(root))
    assert done.returncode == 0, done.stderr
    assert "1 checks: 1 passed" in done.stdout


# ~50 CPU-s (~290 modules, each imported afresh): on a loaded 2-core machine the default 300 s of wall time ran out
# (pytest-timeout, before the child's own limit). The child's limit stays below the test's, so it speaks first.
@pytest.mark.timeout(1200)
def test_every_module_imports_first() -> None:
    """Importing any module first works: no import-time cycle, also through a package's __init__, which the
    graph above does not see (importing kiban.collect.spec runs kiban.collect's __init__ first)."""
    code = '''
import importlib, pkgutil, sys
import kiban
names = [m.name for m in pkgutil.walk_packages(kiban.__path__, "kiban.") if ".migrations" not in m.name]
bad = []
for name in names:
    for loaded in [k for k in sys.modules if k == "kiban" or k.startswith("kiban.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as exc:
        bad.append(f"{name}: {type(exc).__name__}: {exc}")
print(len(names))
print("\\n".join(bad))
'''
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1100)
    assert done.returncode == 0, done.stderr[-2000:]
    count, *bad = done.stdout.strip().split("\n")
    assert int(count) > 150
    assert [b for b in bad if b] == []
