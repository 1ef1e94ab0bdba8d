"""What a run no longer pays per model or per process (issue 23): one cursor per worker, locks freed with the
attempts' commits, no checks import without checks, no Pydantic plugin lookup in the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from kiban.engines.duckdb import DuckDBEngine
from kiban.project import load_project
from kiban.run import RunOptions, run_project
from kiban.status import AttemptStatus
from kiban.store import Store
from kiban.store.asset_locks import AssetLocks

SRC = Path(__file__).resolve().parents[1] / "src"


def _project(root: Path, models: int = 4, failing: str | None = None) -> Path:
    (root / "models" / "warehouse").mkdir(parents=True)
    (root / "kiban.yml").write_text("name: small\nthreads: 1\n")
    for i in range(models):
        source = "select 1 as x" if i == 0 else f"select x + 1 as x from warehouse.m{i - 1}"
        if failing == f"m{i}":
            source = "select no_such_column from warehouse.m0"
        (root / "models" / "warehouse" / f"m{i}.sql").write_text(source + "\n")
    return root


def test_one_cursor_serves_a_worker_builds_and_a_failure_closes_it(tmp_path, monkeypatch):
    made: list[object] = []
    used: list[tuple[str, object, bool]] = []  # asset, its session, whether the build raised
    session, build = DuckDBEngine.session, DuckDBEngine.build

    def counted(self: DuckDBEngine) -> object:
        made.append(session(self))
        return made[-1]

    def watched(self: DuckDBEngine, on: object, asset: object, *args: object) -> object:
        try:
            result = build(self, on, asset, *args)  # type: ignore[arg-type]
        except Exception:
            used.append((asset.key, on, True))  # type: ignore[attr-defined]
            raise
        used.append((asset.key, on, False))  # type: ignore[attr-defined]
        return result

    monkeypatch.setattr(DuckDBEngine, "session", counted)
    monkeypatch.setattr(DuckDBEngine, "build", watched)
    root = _project(tmp_path / "p", models=4)
    result = run_project(load_project(root), RunOptions())
    assert result.ok
    assert len(result.outcomes) == 4
    assert len(made) == 1  # one worker, one cursor for its four builds

    made.clear()
    used.clear()
    for name, source in (("a_fails", "select no_such_column from warehouse.m0"), ("m4", "select 4 as x"),
                         ("m5", "select 5 as x"), ("m6", "select 6 as x")):
        (root / "models" / "warehouse" / f"{name}.sql").write_text(source + "\n")
    later = {f"warehouse.m{i}": ("warehouse.a_fails",) for i in (4, 5, 6)}  # built after it (not its readers)
    result = run_project(load_project(root), RunOptions(), after=later)
    assert result.outcomes["warehouse.a_fails"].status == AttemptStatus.FAILED
    failed = [i for i, (_, _, raised) in enumerate(used) if raised]
    assert [used[i][0] for i in failed] == ["warehouse.a_fails"], used
    assert failed == [0]
    assert len(used) == 4
    assert all(on is not used[0][1] for _, on, _ in used[1:])  # the failed build's cursor is not handed on
    assert len(made) == 2
    assert used[1][1] is used[2][1] is used[3][1]  # a new one, kept for the rest


def test_every_lock_is_free_and_every_attempt_recorded_after_a_run(tmp_path):
    root = _project(tmp_path / "p", models=6)
    project = load_project(root)
    result = run_project(project, RunOptions())
    assert result.ok
    store = Store(project.state_url)
    try:
        assert AssetLocks(store, project.name).held() == {}
        assert sorted(a.asset for a in store.attempts(result.run_id)) == sorted(result.outcomes)
    finally:
        store.close()


def test_a_run_without_checks_imports_no_checks_and_looks_for_no_pydantic_plugin(tmp_path):
    root = _project(tmp_path / "p", models=2)
    env = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    env["PYTHONPATH"] = str(SRC)
    code = ("import os, sys; sys.argv = ['kiban', 'run']\n"
            "from kiban.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('GATE', 'kiban.checks.gate' in sys.modules, 'PLUGINS', os.environ['PYDANTIC_DISABLE_PLUGINS'])")
    out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "GATE False PLUGINS __all__" in out.stdout
