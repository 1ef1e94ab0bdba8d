"""One type per event kind (kiban.run.events.SHAPES): every event is checked where it is made, and every place in
the package that makes one names only the fields its kind carries."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import kiban
from kiban.project import load_project
from kiban.run import Event, EventKind, RunOptions, run_project
from kiban.run.events import FIELDS, SHAPES, shape_errors
from kiban.status import AttemptStatus, RunStatus
from tests.conftest import write_parquet

PACKAGE = Path(kiban.__file__).parent


def test_every_kind_has_a_shape() -> None:
    assert set(SHAPES) == set(EventKind)


@pytest.mark.parametrize(("make", "problem"), [
    (lambda: Event("asset_finished", "r", asset="a"), "status is required"),
    (lambda: Event("asset_finished", "r", asset="a", status=RunStatus.NOTHING), "is not a AttemptStatus"),
    (lambda: Event("run_finished", "r", status=RunStatus.SUCCESS, asset="a"), "carries no asset"),
    (lambda: Event("run_started", "r", detail={"assets": []}), "detail.build is required"),
    (lambda: Event("asset_retry", "r", asset="a", error="e", detail={"dealy": 1}), "detail has no key 'dealy'"),
    (lambda: Event("asset_started", "", asset="a"), "run_id is required"),
    (lambda: Event("asset_done", "r"), "unknown event kind"),
])
def test_an_event_that_does_not_match_its_type_is_refused_where_it_is_made(make, problem) -> None:
    with pytest.raises(TypeError, match=problem):
        make()


def _event_calls() -> list[tuple[str, ast.Call]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Event" and node.args \
                    and isinstance(node.args[0], ast.Constant):
                found.append((f"{path.relative_to(PACKAGE)}:{node.lineno}", node))
    return found


def test_every_place_that_makes_an_event_names_only_its_kinds_fields() -> None:
    """Static, so an event on a path no test runs (a worker refusing a run, a retry) is held to its type too."""
    calls = _event_calls()
    assert len(calls) >= 15  # the scan sees them
    wrong = []
    for where, call in calls:
        kind = call.args[0].value
        shape = SHAPES.get(kind)
        if shape is None:
            wrong.append(f"{where}: unknown kind {kind}")
            continue
        named = {k.arg for k in call.keywords if k.arg in FIELDS}
        wrong += [f"{where}: {kind} carries no {n}" for n in sorted(named - shape.required - shape.optional)]
        if not any(k.arg is None for k in call.keywords):  # no **kwargs: what it names is all it sets
            wrong += [f"{where}: {kind} needs {n}" for n in sorted(shape.required - named)]
        detail = next((k.value for k in call.keywords if k.arg == "detail"), None)
        if isinstance(detail, ast.Dict):
            keys = {k.value for k in detail.keys if isinstance(k, ast.Constant)}
            allowed = set(shape.detail.__annotations__)
            wrong += [f"{where}: {kind} detail has no key {k}" for k in sorted(keys - allowed)]
    assert wrong == []


def test_every_event_of_a_run_with_a_failure_and_a_skip_matches_its_type(project_dir) -> None:
    root = project_dir({"models/warehouse/a.sql": "select * from lake.orders",
                        "models/warehouse/bad.sql": "select no_such_column from lake.orders",
                        "models/mart/after_bad.sql": "select * from warehouse.bad"})
    write_parquet(root / "lake" / "orders" / "part-0.parquet", "select range as id from range(3)")
    events: list[Event] = []
    run_project(load_project(root), RunOptions(), [events.append])
    assert [shape_errors(e) for e in events if shape_errors(e)] == []
    finished = {e.asset: e.status for e in events if e.kind == EventKind.ASSET_FINISHED}
    assert finished["mart.after_bad"] == AttemptStatus.SKIPPED
    assert {e.kind for e in events} >= {EventKind.RUN_STARTED, EventKind.ASSET_STARTED, EventKind.ASSET_FINISHED,
                                        EventKind.RUN_FINISHED}
