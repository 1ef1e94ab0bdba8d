"""Context is passed down: no function takes more than 8 parameters (``self`` aside). Past that, what it is handed
travels as one object (``RunOptions``, ``run.runner.RunContext``, ``run.backfill.BackfillJob``, …), so adding a
piece of context touches its object and its readers, not every caller on the way.

A front end's entry point is exempt: a CLI command's parameters are the command line's options (Typer reads them
from the signature), a web handler's are the request's fields (FastAPI reads them), and the notebook functions'
(``kiban.read``) are the keyword options a person types.
There is no allowlist: a function that needs more is given its context object (``IncidentDraft``,
``ConsumerNotice``, ``ConsoleQuery``, ``slo.predict.Durations``, …)."""

from __future__ import annotations

import ast
from pathlib import Path

import kiban

PACKAGE = Path(kiban.__file__).parent
MOST = 8


def _count(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    args = node.args
    names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs) if a.arg not in ("self", "cls")]
    return len(names) + bool(args.vararg) + bool(args.kwarg)


def _is_cli_command(path: Path, node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    def name(d: ast.expr) -> str:
        d = d.func if isinstance(d, ast.Call) else d
        return d.attr if isinstance(d, ast.Attribute) else getattr(d, "id", "")

    decorators = {name(d) for d in node.decorator_list}
    if path.parent.name == "cli":
        return bool(decorators & {"command", "callback"})
    if path.parent.name == "web":
        return bool(decorators & {"get", "post", "put", "patch", "delete"})
    return path.name == "notebook.py" and not node.name.startswith("_")


def long_signatures() -> dict[str, int]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _count(node) > MOST \
                    and not _is_cli_command(path, node):
                found[f"{path.relative_to(PACKAGE)}:{node.name}"] = _count(node)
    return found


def test_no_function_takes_more_than_eight_parameters() -> None:
    assert long_signatures() == {}


def test_the_count_sees_every_kind_of_parameter() -> None:
    (node,) = ast.parse("def f(self, a, /, b, *rest, c, d=1, **more): ...").body
    assert isinstance(node, ast.FunctionDef)
    assert _count(node) == 6  # a, b, *rest, c, d, **more; self aside


def test_only_front_end_entry_points_are_exempt() -> None:
    (command, helper) = ast.parse("@app.command()\ndef run(a): ...\ndef _run(a): ...").body
    assert isinstance(command, ast.FunctionDef)
    assert isinstance(helper, ast.FunctionDef)
    cli = PACKAGE / "cli" / "commands.py"
    assert [_is_cli_command(cli, command), _is_cli_command(cli, helper),
            _is_cli_command(PACKAGE / "run" / "runner.py", command)] == [True, False, False]
