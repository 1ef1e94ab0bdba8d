"""kiban's own modules are imported at the top of a file, where a reader sees what a module depends on and the
import contracts see it too. A function-local import of a kiban module is left only where it defers a heavy
library the importing module does not load otherwise (docs/architecture.md, "Import contracts"); the CLI is the
lazy boundary and imports everything inside its commands."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import kiban

PACKAGE = Path(kiban.__file__).parent
HEAVY = {"sqlglot", "duckdb", "sqlalchemy", "pyarrow", "numpy", "pandas", "sklearn", "fastapi", "starlette", "httpx",
         "openpyxl", "alembic", "pydantic", "croniter", "holidays", "jinja2", "psycopg", "pyspark", "polars", "yaml",
         "joblib", "scipy", "argon2", "uvicorn", "pymysql", "typer", "rich", "pytz"}
# Local on purpose, for another reason than a heavy library:
LOCAL_ON_PURPOSE = {
    # the spec modules' packages import the project back: at the top, an import-time cycle through their __init__
    ("kiban.project.loader", "kiban.checks.spec"),
    ("kiban.project.loader", "kiban.collect.spec"),
    ("kiban.project.loader", "kiban.python.spec"),
    # kiban.slo.calendar loads `holidays` (~300 modules) through kiban.slo's __init__: only when a check needs it
    ("kiban.checks.evaluate", "kiban.slo.calendar"),
    # the Spark engine's module (≈ 10 CPU-ms) only when the warehouse is Spark: not on every DuckDB run and check
    ("kiban.engines", "kiban.engines.spark"),
    # `import kiban.store.lite` (the no-op stamp, `kiban --help`'s leaves) loads neither store.store nor its imports
    ("kiban.store", "kiban.store.store"),
    # the module defines a function of the same name (history, run_recipe, promote, new_request)
    ("kiban.web.catalog_views", "kiban.catalog.usage"),
    ("kiban.web.catalog_views", "kiban.catalog.recipes"),
    ("kiban.web.catalog_views", "kiban.catalog.requests"),
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ""
    if node.level:
        package = module.split(".") if MODULES[module].name == "__init__.py" else module.split(".")[:-1]
        base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]


def _type_checking(node: ast.If) -> bool:
    return getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING"


@cache
def _top_level(module: str) -> frozenset[str]:
    """What importing ``module`` imports at once: kiban modules (with their packages) and third-party roots."""
    found: set[str] = set()

    def walk(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in _targets(module, node):
                    if target.startswith("kiban"):
                        parts = target.split(".")
                        found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1)
                                     if ".".join(parts[:i]) in MODULES)
                    else:
                        found.add(target.split(".")[0])
            elif isinstance(node, ast.If) and not _type_checking(node):
                walk(node.body)
                walk(node.orelse)
            elif isinstance(node, ast.Try):
                walk(node.body)
                for handler in node.handlers:
                    walk(handler.body)

    walk(ast.parse(MODULES[module].read_text()).body)
    return frozenset(found)


@cache
def _heavy(module: str) -> frozenset[str]:
    seen, todo, libraries = {module}, [module], set()
    while todo:
        for name in _top_level(todo.pop()):
            if name in MODULES:
                if name not in seen:
                    seen.add(name)
                    todo.append(name)
            elif name in HEAVY:
                libraries.add(name)
    return frozenset(libraries)


def _local_imports() -> list[tuple[str, int, str]]:
    found = []
    for module, path in sorted(MODULES.items()):
        if module == "kiban.cli" or module.startswith("kiban.cli."):
            continue
        for function in ast.walk(ast.parse(path.read_text())):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    found.extend((module, node.lineno, t) for t in _targets(module, node) if t in MODULES)
    return found


def test_kiban_modules_are_imported_at_the_top() -> None:
    needless = [f"{MODULES[m].relative_to(PACKAGE.parent)}:{line} imports {target}"
                for m, line, target in _local_imports()
                if (m, target) not in LOCAL_ON_PURPOSE and not _heavy(target) - _heavy(m)]
    assert needless == [], "move these imports to the top of their files: " + "; ".join(needless)


def test_the_scan_sees_local_imports_and_what_they_defer() -> None:
    local = {(m, t) for m, _, t in _local_imports()}
    assert ("kiban.project.loader", "kiban.collect.spec") in local
    assert "duckdb" in _heavy("kiban.engines.duckdb")
    assert _heavy("kiban.errors") == frozenset()
