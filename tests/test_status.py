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


# --- no bare status literals: a status is compared with (or set to) a member, never with its string -----------------

STATUS_WORDS = frozenset(m.value for e in ENUMS for m in e)
FIELDS = ("status", "verdict", "severity")


def _is_status(node: ast.AST) -> bool:
    """A reference to a status: ``x.status``, ``status``, ``row["verdict"]``, ``row.get("status")``, ``t.c.status``."""
    name = None
    if isinstance(node, ast.Attribute):
        name = node.attr
    elif isinstance(node, ast.Name):
        name = node.id
    elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        name = node.slice.value
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
        if _is_status(node.func.value):  # statuses.get(key)
            return True
        name = node.args[0].value if node.args and isinstance(node.args[0], ast.Constant) else None
    return isinstance(name, str) and any(f in name.lower() for f in FIELDS)


def _words(node: ast.AST | None) -> list[ast.Constant]:
    """The string constants a value is made of: itself, the items of a literal tuple/list/set, both arms of an if."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node] if node.value in STATUS_WORDS else []
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [w for e in node.elts for w in _words(e)]
    if isinstance(node, ast.IfExp):
        return _words(node.body) + _words(node.orelse)
    return []


def bare_status_literals(source: str) -> list[int]:
    """Lines where a status word is written as a bare string against a status: compared with one (``==``, ``in``,
    SQLAlchemy's ``in_``), passed as ``status=``/``verdict=``/``severity=``, or assigned to a name that holds one."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        found: list[ast.Constant] = []
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(_is_status(s) for s in sides):
                found = [w for s in sides for w in _words(s)]
        elif isinstance(node, ast.BinOp) and (_is_status(node.left) or _is_status(node.right)):  # statuses & {…}
            found = _words(node.left) + _words(node.right)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in ("in_", "notin_") and _is_status(node.func.value):
            found = [w for a in node.args for w in _words(a)]
        elif isinstance(node, ast.keyword) and node.arg and any(f in node.arg.lower() for f in FIELDS):
            found = _words(node.value)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):  # a.status, a.error = ...
                    found += [w for t, v in zip(target.elts, node.value.elts, strict=False) if _is_status(t)
                              for w in _words(v)]
                elif _is_status(target):
                    found += _words(node.value)
        lines += [w.lineno for w in found]
    return sorted(set(lines))


def test_the_scan_finds_bare_status_literals() -> None:
    source = ('if run.status == "failed": pass\n'
              'x = RunStatus.FAILED if r.status in (RunStatus.SUCCESS, "nothing") else None\n'
              'q = t.select().where(t.c.status.in_(("queued", "running")))\n'
              'store.finish(run_id, status="cancelled")\n'
              'status = "lost" if dead else TickStatus.SUCCESS\n'
              'ok = row["verdict"] != Verdict.MET and kind == "failed" and name == "status"\n'
              'outcome.status, outcome.error = "failed", "the error"\n'
              'ready = all(statuses.get(d) == "success" for d in deps)\n'
              'bad = statuses & {"failed", "skipped"}\n')
    assert bare_status_literals(source) == [1, 2, 3, 4, 5, 7, 8, 9]


def test_no_bare_status_literal_outside_the_enum_modules() -> None:
    """Every status word is written as its member (``RunStatus.FAILED``), so a typo is an error and a new status is
    found by all its readers. kiban/status.py itself (the definitions) is the one place the words are written."""
    found = [f"{path.relative_to(PACKAGE)}:{line}" for path in sorted(PACKAGE.rglob("*.py"))
             if path != Path(status.__file__) for line in bare_status_literals(path.read_text())]
    assert found == []
