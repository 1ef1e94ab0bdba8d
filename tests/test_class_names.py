"""A class name means one thing in kiban (issue 25): the two ``Context``, ``Drift`` and ``Plan`` classes were
renamed after what they are (``checks.result.CheckContext``, ``collect.manifest.SchemaChange``,
``catalog.needs.UseCaseNeeds``, ``collect.connectors.database.SourceRead``). The names still shared are listed
below; the list may only shrink."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import kiban

SRC = Path(kiban.__file__).parent
SHARED = {"Consumer", "Declared", "Job", "Need", "Options", "Outcome", "Refused", "Verdict", "_Strict"}


def _shared() -> dict[str, list[str]]:
    where: dict[str, list[str]] = defaultdict(list)
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef):
                where[node.name].append(str(path.relative_to(SRC)))
    return {name: files for name, files in where.items() if len(files) > 1}


def test_no_new_class_name_is_shared() -> None:
    assert sorted(set(_shared()) - SHARED) == []


def test_the_list_only_shrinks() -> None:
    assert sorted(SHARED - set(_shared())) == []
