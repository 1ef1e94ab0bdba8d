"""The core vocabulary is typed: every status a run stores and every event kind it emits is a member of its
``StrEnum``, each member is explained where it is defined, and the groups readers use partition the statuses."""

from __future__ import annotations

import ast
import io
import tokenize
from enum import StrEnum
from pathlib import Path

import pytest

import kiban
import kiban.status as status
from kiban.project import load_project
from kiban.run import Event, EventKind, RunOptions, run_project
from kiban.status import (
    ATTEMPT_CURRENT,
    ATTEMPT_FINAL,
    ATTEMPT_UNFINISHED,
    RUN_FINISHED,
    RUN_SUCCEEDED,
    RUN_UNSUCCESSFUL,
    VERDICT_FINAL,
    VERDICT_MISSED,
    AttemptStatus,
    RunStatus,
    Verdict,
)
from kiban.store import Store
from tests.conftest import write_parquet

PACKAGE = Path(kiban.__file__).parent
ENUMS = [v for v in vars(status).values() if isinstance(v, type) and issubclass(v, StrEnum) and v is not StrEnum]


def _commented_members(path: Path, cls: str) -> dict[str, bool]:
    """Member name → whether a comment is on its line (or the line after it, for a long one)."""
    source = path.read_text()
    comments = {tok.start[0] for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                if tok.type == tokenize.COMMENT}
    tree = ast.parse(source)
    body = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls).body
    return {t.id: bool({a.lineno, a.lineno + 1} & comments)
            for a in body if isinstance(a, ast.Assign) for t in a.targets if isinstance(t, ast.Name)}


@pytest.mark.parametrize("enum", ENUMS, ids=lambda e: e.__name__)
def test_every_status_is_explained_where_it_is_defined(enum: type[StrEnum]) -> None:
    commented = _commented_members(Path(status.__file__), enum.__name__)
    assert set(commented) == {m.name for m in enum}
    assert [name for name, ok in commented.items() if not ok] == []


def test_every_event_kind_is_explained() -> None:
    commented = _commented_members(PACKAGE / "run" / "events.py", "EventKind")
    assert [name for name, ok in commented.items() if not ok] == []


def test_groups_partition_the_statuses() -> None:
    assert RUN_SUCCEEDED | RUN_UNSUCCESSFUL == RUN_FINISHED
    assert set() == RUN_SUCCEEDED & RUN_UNSUCCESSFUL
    assert set(RunStatus) - RUN_FINISHED == {RunStatus.RUNNING}
    assert set(AttemptStatus) == ATTEMPT_CURRENT | ATTEMPT_UNFINISHED
    assert set() == ATTEMPT_CURRENT & ATTEMPT_UNFINISHED
    assert set(AttemptStatus) - {AttemptStatus.RETRYING} == ATTEMPT_FINAL
    assert VERDICT_FINAL - {Verdict.MET} == VERDICT_MISSED
    assert set(Verdict) - VERDICT_FINAL == {Verdict.PENDING, Verdict.AT_RISK}


def test_a_member_is_its_string() -> None:
    """Adopting the types changes no byte written to the store, the JSON logs or the API."""
    assert RunStatus.NOTHING == "nothing"
    assert f"{AttemptStatus.RETRYING}" == "retrying"
    assert Event(EventKind.RUN_FINISHED, "r", status=RunStatus.SUCCESS).to_dict()["status"] == "success"


def _kinds_emitted() -> set[str]:
    """Every literal first argument of ``Event(...)`` anywhere in the package."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Event" and node.args \
                    and isinstance(node.args[0], ast.Constant):
                found.add(node.args[0].value)
    return found


def test_every_event_the_package_emits_has_a_kind() -> None:
    emitted = _kinds_emitted()
    assert {"run_started", "asset_finished", "collect_started", "tick"} <= emitted  # the scan sees them
    assert emitted <= set(EventKind)


def test_a_run_stores_only_typed_statuses_and_nothing_to_do_is_its_own(project_dir) -> None:
    root = project_dir({"models/warehouse/a.sql": "select * from lake.orders",
                        "models/mart/b.sql": "select count(*) as n from warehouse.a"})
    write_parquet(root / "lake" / "orders" / "part-0.parquet", "select range as id from range(3)")
    events: list[Event] = []
    first = run_project(load_project(root), RunOptions(), [events.append])
    again = run_project(load_project(root), RunOptions(), [events.append])
    store = Store(load_project(root).state_url)
    try:
        stored = {r.run_id: r.status for r in store.runs("test")}
        attempts = [a.status for run_id in stored for a in store.attempts(run_id)]
    finally:
        store.close()
    assert stored == {first.run_id: RunStatus.SUCCESS, again.run_id: RunStatus.NOTHING}
    assert set(attempts) <= set(AttemptStatus)
    assert {e.kind for e in events} <= set(EventKind)
    assert {e.status for e in events if e.kind == EventKind.ASSET_FINISHED} <= set(AttemptStatus)
    assert [e.status for e in events if e.kind == EventKind.RUN_FINISHED] == [RunStatus.SUCCESS, RunStatus.NOTHING]
