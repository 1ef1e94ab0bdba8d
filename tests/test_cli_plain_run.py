"""A plain ``kiban run`` (no option) runs without Typer's parser (kiban.cli.running): the same body as the Typer
command at its defaults, so both paths must say the same, exit the same and fail the same way."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ID = re.compile(r"\d{8}T\d{6}-[0-9a-f]{6}")
SECONDS = re.compile(r"\d+\.\d+s")
MODELS = {"models/warehouse/a.sql": "select id, name from lake.src\n",
          "models/mart/b.sql": "select count(*) as n from warehouse.a\n",
          "models/mart/b.yml": "checks:\n  - row_count: {min: 1}\n"}
LAKE = {"src": "select i as id, 'n' || i as name from range(5) t(i)"}


def kiban(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``kiban ARGS`` in ``root``; a no-op stamp is removed first, so every run plans (neither answers from it)."""
    shutil.rmtree(root / ".kiban" / "cache", ignore_errors=True)
    return subprocess.run([sys.executable, "-m", "kiban", *args], cwd=root, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "NO_COLOR": "1", **(env or {})})


def said(done: subprocess.CompletedProcess[str], root: Path) -> tuple[int, str, str]:
    """Exit code, stdout and stderr with the project's folder, run ids and durations blanked."""
    def blank(text: str) -> str:
        return SECONDS.sub("Ts", ID.sub("RUN", text.replace(str(root), "ROOT")))

    return done.returncode, blank(done.stdout), blank(done.stderr)


def twins(make_project: Callable[..., Path], files: dict[str, str]) -> tuple[Path, Path]:
    return (make_project(files, lake=LAKE, root="plain"), make_project(files, lake=LAKE, root="typer"))


def test_a_plain_run_loads_no_typer(make_project: Callable[..., Path]) -> None:
    """Its checks' summary included: the printers live apart from the command modules (cli.check_report,
    cli.report)."""
    root = make_project(MODELS, lake=LAKE)
    code = ("import sys, runpy; sys.argv = ['kiban', 'run']\n"
            "try:\n    runpy.run_module('kiban', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "import json; print(json.dumps(sorted(sys.modules)), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    loaded = set(json.loads(done.stderr.strip().splitlines()[-1]))
    assert {"kiban.run", "kiban.cli.check_report"} <= loaded  # it ran, and printed its checks
    assert {m.split(".")[0] for m in loaded} & {"typer", "click"} == set()


@pytest.mark.parametrize("case", ["builds", "fails", "fresh"])
def test_both_paths_say_the_same(make_project: Callable[..., Path], case: str) -> None:
    files = dict(MODELS)
    if case == "fails":
        files["models/mart/b.sql"] = "select no_such_column from warehouse.a\n"
    plain, typed = twins(make_project, files)
    if case == "fresh":
        assert kiban(plain, "run").returncode == 0
        assert kiban(typed, "run").returncode == 0
    first = said(kiban(plain, "run"), plain)
    second = said(kiban(typed, "-p", ".", "run"), typed)  # `-p .`: the Typer path
    assert first == second
    assert first[0] == (1 if case == "fails" else 0)


@pytest.mark.parametrize("mistake", ["project", "log level", "no project"])
def test_both_paths_refuse_a_mistake_alike_without_a_traceback(make_project: Callable[..., Path],
                                                               tmp_path: Path, mistake: str) -> None:
    files = dict(MODELS)
    env: dict[str, str] = {}
    if mistake == "project":
        files["kiban.yml"] = "name: shop\ntimezone: UTC\nthreads: many\n"
    elif mistake == "log level":
        env["KIBAN_LOG_LEVEL"] = "loud"
    plain, typed = twins(make_project, files)
    if mistake == "no project":
        plain, typed = tmp_path / "empty-plain", tmp_path / "empty-typer"
        plain.mkdir()
        typed.mkdir()
    first, second = said(kiban(plain, "run", env=env), plain), said(kiban(typed, "-p", ".", "run", env=env), typed)
    assert first == second
    assert first[0] not in (0, 1)  # a user's mistake has its own exit code
    assert "Traceback" not in first[2]
    assert "error:" in first[2]


def test_the_plain_path_runs_with_the_typer_commands_defaults() -> None:
    """RunArgs() is what `kiban run` means without options: its defaults are the Typer command's, field by field."""
    import dataclasses
    import inspect

    from kiban.cli import commands
    from kiban.cli.running import RunArgs

    declared = {name: p.default for name, p in inspect.signature(commands.run).parameters.items()}
    plain = {f.name: getattr(RunArgs(), f.name) for f in dataclasses.fields(RunArgs) if f.name != "project_dir"}
    declared.update(selection=[], exclude=[])  # None there: the command passes `selection or []`
    assert declared == plain
