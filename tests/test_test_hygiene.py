"""Test hygiene, checked on the source of the tests themselves: no test module imports from another test module
(shared helpers, constants and fixtures live in tests/helpers, see its docstring), and one assertion states one
fact (no top-level ``assert a and b``: each fact its own assert, so a failure names the fact that broke)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers.split_asserts import joined_asserts, split_source

TESTS = Path(__file__).resolve().parent


def _is_test_module(name: str) -> bool:
    parts = name.split(".")
    return parts[-1].startswith("test_") and (len(parts) == 1 or parts[:-1] == ["tests"])


def imports_of_test_modules(source: str) -> list[tuple[int, str]]:
    """(line, module) of every import of a test module: ``tests.test_x``, ``test_x``, ``from tests import test_x``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if _is_test_module(node.module):
                found.append((node.lineno, node.module))
            elif node.module == "tests":
                found += [(node.lineno, f"tests.{a.name}") for a in node.names if a.name.startswith("test_")]
        elif isinstance(node, ast.ImportFrom) and node.level and (node.module or "").startswith("test_"):
            found.append((node.lineno, f".{node.module}"))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if _is_test_module(a.name)]
    return found


def test_the_check_sees_every_way_of_importing_a_test_module():
    source = ("from tests.test_a import x\nfrom test_b import y\nfrom tests import test_c\nimport tests.test_d\n"
              "from .test_e import z\nfrom tests.helpers.console import sign_in\n"
              "from tests.conftest import write_files\ndef f():\n    from tests.test_f import w\n")
    assert [m for _, m in imports_of_test_modules(source)] == [
        "tests.test_a", "test_b", "tests.test_c", "tests.test_d", ".test_e", "tests.test_f"]


def test_no_test_module_imports_from_another_test_module():
    offenders = [f"{path.relative_to(TESTS.parent)}:{line}: imports {module}"
                 for path in sorted(TESTS.glob("*.py")) + sorted((TESTS / "helpers").glob("*.py"))
                 for line, module in imports_of_test_modules(path.read_text(encoding="utf-8"))]
    assert offenders == [], "shared helpers belong in tests/helpers:\n" + "\n".join(offenders)


def test_no_assert_states_two_facts_joined_by_and():
    offenders = [f"{path.relative_to(TESTS.parent)}:{line}"
                 for path in sorted(TESTS.rglob("*.py"))
                 for line in joined_asserts(path.read_text(encoding="utf-8"))]
    assert offenders == [], ("one assert per fact: split `assert a and b` (python -m tests.helpers.split_asserts "
                             "tests does it):\n" + "\n".join(offenders))


# -- the codemod (tests/helpers/split_asserts.py) ---------------------------------------------------------------

def test_the_codemod_splits_a_top_level_and_keeping_indentation_message_and_comment():
    source = ("def t(x, y):\n"
              "    if x:\n"
              "        assert x == 1 and (y or 2) and (x and y), f'{x}'  # both\n"
              "    assert not (x and y) and f(x and y)\n")
    got = split_source(source)
    assert got.text == ("def t(x, y):\n"
                        "    if x:\n"
                        "        assert x == 1, f'{x}'\n"
                        "        assert y or 2, f'{x}'\n"
                        "        assert x, f'{x}'\n"
                        "        assert y, f'{x}'  # both\n"
                        "    assert not (x and y)\n"
                        "    assert f(x and y)\n")
    assert got.split == 2
    assert split_source(got.text).text == got.text  # idempotent


def test_the_codemod_keeps_brackets_that_must_stay_and_moves_continuation_lines_along():
    source = ("assert (n := 3) and n > 2\n"
              "assert len(rows) == 2 and rows[-1] == {'a': 1,\n"
              "                                       'b': 2}\n")
    assert split_source(source).text == ("assert (n := 3)\n"
                                         "assert n > 2\n"
                                         "assert len(rows) == 2\n"
                                         "assert rows[-1] == {'a': 1,\n"
                                         "                    'b': 2}\n")


def test_the_codemod_skips_and_counts_what_it_cannot_rewrite_safely():
    source = ("if x: assert a and b\n"
              "assert (a  # why a\n"
              "        and b)\n"
              "assert a and b; c()\n")
    got = split_source(source)
    assert got.text == source
    assert [line for line, _ in got.skipped] == [1, 2, 4]
    assert joined_asserts(source) == [1, 2, 4]
