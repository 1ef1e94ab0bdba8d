"""A loaded Project is immutable for real (issue 25): nothing that reads it — the graph, a run — can write into it.

Before, ``build_graph`` wrote each Python model's resolved inputs into its spec: two graphs of one project shared
that dict, and "the Project" the docs call immutable changed under whoever held it. Now the graph keeps what it
derives (``Graph.python_inputs``) and every collection of a project is a read-only view."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydantic
import pytest

from kiban.graph import build_graph
from kiban.project import Project, load_project
from kiban.run.runner import RunOptions, run_project
from kiban.status import RunStatus

LAKE = {"sales": "select (i % 3) as store_id, (i % 7)::double as qty from range(30) t(i)"}
TOTALS = '''
import kiban
import pyarrow as pa


@kiban.asset
def store_totals(lake_sales: pa.Table) -> pa.Table:
    return lake_sales.group_by("store_id").aggregate([("qty", "sum")])
'''


@pytest.fixture
def project(make_project: Callable[..., Path]) -> Project:
    root = make_project({"models/warehouse/totals.py": TOTALS,
                         "models/mart/top.sql": "select * from warehouse.store_totals",
                         "macros/money.sql": "create macro with_tax(x) as x * 1.1;\n"}, lake=LAKE)
    return load_project(root)


def _writes(project: Project) -> list[tuple[str, Callable[[], Any]]]:
    asset = project.assets["warehouse.store_totals"]
    assert asset.python is not None
    spec = asset.python
    return [
        ("set a field", lambda: setattr(project, "assets", {})),
        ("add an asset", lambda: project.assets.__setitem__("mart.x", asset)),  # type: ignore[index]
        ("remove an asset", lambda: project.assets.pop("mart.top")),  # type: ignore[attr-defined]
        ("add a macro", lambda: project.macros.__setitem__("m", None)),  # type: ignore[index]
        ("add a use case", lambda: project.usecases.__setitem__("u", None)),  # type: ignore[index]
        ("add a source", lambda: project.sources.__setitem__("s", None)),  # type: ignore[index]
        ("add an initiative", lambda: project.initiatives.__setitem__("i", None)),  # type: ignore[index]
        ("change an asset", lambda: setattr(asset, "sql", "select 2")),
        ("change a Python model", lambda: setattr(spec, "function", "other")),
        ("change a Python model's options", lambda: spec.options.__setitem__("x", 1)),  # type: ignore[index]
        ("change the settings", lambda: setattr(project.config, "name", "other")),
        ("change a model's settings", lambda: setattr(asset.config, "materialized", "view")),
    ]


@pytest.mark.parametrize("index", range(12))
def test_every_write_into_a_loaded_project_raises(project: Project, index: int) -> None:
    what, write = _writes(project)[index]
    before = repr(project)
    with pytest.raises((dataclasses.FrozenInstanceError, TypeError, AttributeError, pydantic.ValidationError)):
        write()
    assert repr(project) == before, what


def test_the_graph_and_a_run_leave_the_project_as_loaded(project: Project) -> None:
    before = repr(project)
    first, second = build_graph(project), build_graph(project)
    assert first.python_inputs == {"warehouse.store_totals": {"lake_sales": "lake.sales"}}
    assert first.python_inputs is not second.python_inputs
    first.assets.pop("mart.top")  # the graph's own copy: the project does not see it
    assert "mart.top" in project.assets
    result = run_project(project, RunOptions())
    assert result.status == RunStatus.SUCCESS
    assert repr(project) == before


def test_a_copy_with_changes_is_a_new_project_as_read_only(project: Project) -> None:
    smaller = dataclasses.replace(project, assets={k: a for k, a in project.assets.items() if k != "mart.top"})
    assert "mart.top" in project.assets
    assert "mart.top" not in smaller.assets
    with pytest.raises(TypeError):
        smaller.assets["mart.top"] = project.assets["mart.top"]  # type: ignore[index]
