"""`on_change: replace` (issue 16): a landing file changed in place supersedes the load that took it — the old load
is retracted and the new content landed in ONE commit, so a SIGKILL at any moment leaves either the old content or
the new one in the views, never both, never neither; and the next load finishes the replacement exactly once."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import pytest

from kiban.collect.load import load_table
from kiban.collect.manifest import Manifests
from kiban.project import load_project
from kiban.store import Store

ASSET = "lake.land_events"
SOURCE = "type: files\ntables:\n  events:\n    path: landing/*.csv\n    on_change: replace\n    settle: 0s\n"

COLLECT = """
import os, sys
from kiban.collect.load import load_table
from kiban.collect.manifest import Manifests
from kiban.project import load_project
from kiban.store import Store
if os.environ.get("DIE_IN_COMMIT"):  # die inside the commit's transaction, right after the old load is retracted
    real = Manifests._supersede
    def die(conn, record, supersedes):
        real(conn, record, supersedes)
        os._exit(9)
    Manifests._supersede = staticmethod(die)
project = load_project(sys.argv[1])
result = load_table(project, "land", "events", Store(project.state_url))
print(result.record.rows_read, result.record.rows_landed)
"""


def project(make_project: Any, extra: str = "") -> Path:
    root = make_project({"sources/land.yml": SOURCE + extra})
    (root / "landing").mkdir()
    return root


def visible(root: Path) -> Counter[tuple[Any, ...]]:
    """(source file, id, value) of every row the lake view reads, counted."""
    proj = load_project(root)
    state = Manifests(Store(proj.state_url)).state(proj.name, ASSET)
    if state is None or not state.files:
        return Counter()
    files = "[" + ", ".join(f"'{proj.lake_dir / f}'" for f in state.files) + "]"
    return Counter(duckdb.connect().execute(
        f"select _source_file, id::int, v from read_parquet({files}, union_by_name = true, hive_partitioning = false)"
    ).fetchall())


def collect(root: Path) -> Any:
    proj = load_project(root)
    return load_table(proj, "land", "events", Store(proj.state_url))


def write(path: Path, rows: int, version: str) -> Counter[tuple[Any, ...]]:
    path.write_text("id,v\n" + "".join(f"{i},{version}\n" for i in range(rows)))
    return Counter((f"landing/{path.name}", i, version) for i in range(rows))


def test_a_changed_file_replaces_the_load_that_took_it(make_project: Any) -> None:
    root = project(make_project)
    a = write(root / "landing/a.csv", 3, "a1")
    b1 = write(root / "landing/b.csv", 4, "b1")
    first = collect(root)
    assert visible(root) == a + b1
    b2 = write(root / "landing/b.csv", 2, "b2")  # fewer rows, other values: the old rows must go
    second = collect(root)
    assert visible(root) == a + b2  # a.csv was read again with b.csv: the superseded load took both
    assert second.record.rows_read == 5
    assert any(f"load {first.record.load_id} retracted, superseded" in n for n in second.notes)
    proj = load_project(root)
    old = Manifests(Store(proj.state_url)).loads(proj.name, load_ids=[first.record.load_id])[0]
    assert old.retracted_at is not None
    assert "superseded by load" in (old.retracted_note or "")
    assert "b.csv changed (on_change: replace)" in (old.retracted_note or "")
    again = collect(root)  # exactly once: nothing changed, nothing read
    assert again.record.rows_read == 0
    assert visible(root) == a + b2
    write(root / "landing/b.csv", 4, "b1")  # put the first version back: it replaces the second
    collect(root)
    assert visible(root) == a + b1


def test_a_new_file_lands_beside_a_replacement(make_project: Any) -> None:
    root = project(make_project)
    write(root / "landing/a.csv", 3, "a1")
    collect(root)
    b = write(root / "landing/b.csv", 2, "b1")
    collect(root)
    a2 = write(root / "landing/a.csv", 1, "a2")
    c = write(root / "landing/c.csv", 2, "c1")
    result = collect(root)
    assert result.record.rows_read == 3  # b.csv's load is not touched: a.csv and c.csv only
    assert visible(root) == a2 + b + c


def test_a_replacement_needing_a_file_that_is_gone_is_left_with_a_note(make_project: Any) -> None:
    root = project(make_project)
    write(root / "landing/a.csv", 3, "a1")
    write(root / "landing/b.csv", 4, "b1")
    collect(root)
    before = visible(root)
    (root / "landing/a.csv").unlink()  # its rows could not be read again
    write(root / "landing/b.csv", 2, "b2")
    result = collect(root)
    assert result.record.rows_read == 0
    assert visible(root) == before
    assert any("not replaced (on_change: replace)" in n and "landing/a.csv" in n for n in result.notes)


def test_replace_keeps_a_keyed_history_right(make_project: Any) -> None:
    """scd2 compares a load with the current versions: not with the versions of the load being replaced, else
    an unchanged row of the new version would be dropped as unchanged and then retracted with the old load."""
    root = project(make_project, "    primary_key: [id]\n    history: scd2\n")
    write(root / "landing/b.csv", 3, "b1")
    collect(root)
    (root / "landing/b.csv").write_text("id,v\n0,b1\n1,b2\n")  # 0 unchanged, 1 changed, 2 gone
    collect(root)
    assert visible(root) == Counter({("landing/b.csv", 0, "b1"): 1, ("landing/b.csv", 1, "b2"): 1})


def _child(root: Path, **env: str) -> subprocess.Popen[bytes]:
    full = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **env}
    return subprocess.Popen([sys.executable, "-c", COLLECT, str(root)], env=full, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def test_dying_inside_the_commit_retracts_nothing(make_project: Any) -> None:
    root = project(make_project)
    a = write(root / "landing/a.csv", 3, "a1")
    b1 = write(root / "landing/b.csv", 4, "b1")
    collect(root)
    b2 = write(root / "landing/b.csv", 2, "b2")
    died = _child(root, DIE_IN_COMMIT="1")
    assert died.wait(120) == 9
    assert visible(root) == a + b1  # the retraction was not committed without the new load
    proj = load_project(root)
    assert all(r.retracted_at is None for r in Manifests(Store(proj.state_url)).loads(proj.name))
    collect(root)
    assert visible(root) == a + b2


def kill_cycles(root: Path, cycles: int, seed: int) -> tuple[int, int]:
    """Each cycle: b.csv gets a new version, a load is SIGKILLed at a random moment (the views then hold the old
    version or the new one, whole), and a load finishes the replacement."""
    rnd = random.Random(seed)
    rows = 20_000
    a = write(root / "landing/a.csv", rows, "a")
    current = write(root / "landing/b.csv", rows, "v0")
    began = time.monotonic()
    assert _child(root).wait(120) == 0
    took = time.monotonic() - began
    killed = after_commit = 0
    for n in range(1, cycles + 1):
        new = write(root / "landing/b.csv", rows - rnd.randint(0, 50), f"v{n}")
        child = _child(root)
        try:
            child.wait(rnd.uniform(0.0, took * 1.2))
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGKILL)
            child.wait()
            killed += 1
            after_commit += visible(root) == a + new  # killed between its commit and its exit
        seen = visible(root)
        assert seen in (a + current, a + new), f"cycle {n}: neither the old version nor the new one, whole"
        done = _child(root)
        assert done.wait(120) == 0, done.stderr.read() if done.stderr else ""
        assert visible(root) == a + new, f"cycle {n}: the replacement did not finish exactly once"
        current = new
    return killed, after_commit


def test_replace_under_sigkill_at_random_moments(make_project: Any) -> None:
    killed, _ = kill_cycles(project(make_project), 4, seed=16)
    assert killed >= 1


@pytest.mark.soak
@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_replace_under_a_hundred_sigkills(make_project: Any) -> None:
    cycles = int(os.environ.get("KIBAN_SOAK_TRIALS", "100"))
    killed, after_commit = kill_cycles(project(make_project), cycles, seed=1616)
    print(f"replace soak: {cycles} cycles, {killed} loads killed ({after_commit} of them after their commit)")
    assert killed >= cycles // 3


def test_quarantined_rows_of_a_replaced_version_are_never_replayed(make_project: Any) -> None:
    """The old version's refused rows leave the quarantine with it, and a replay that landed some of them is
    superseded too: nothing of the old version comes back."""
    from kiban.collect import quarantine

    root = project(make_project, "    columns:\n      - {name: id, type: INTEGER}\n")
    (root / "landing/a.csv").write_text("id,v\n1,a1\nx,a1\n")  # 'x' is quarantined
    collect(root)
    (root / "sources/land.yml").write_text(SOURCE)  # id as text now: the refused row passes a replay
    proj = load_project(root)
    replayed = quarantine.replay(proj, Store(proj.state_url), ASSET)
    assert replayed.landed == 1
    assert sorted(duckdb_rows(root)) == [("1", "a1"), ("x", "a1")]
    (root / "landing/a.csv").write_text("id,v\n1,a2\n2,a2\n")  # the corrected export
    result = collect(root)
    assert any(f"load {replayed.load.record.load_id} retracted" in n for n in result.notes)  # type: ignore[union-attr]
    rows = duckdb_rows(root)
    assert rows == [("1", "a2"), ("2", "a2")]
    assert quarantine.rows(proj, Store(proj.state_url), ASSET) == []


def duckdb_rows(root: Path) -> list[tuple[Any, ...]]:
    proj = load_project(root)
    state = Manifests(Store(proj.state_url)).state(proj.name, ASSET)
    assert state is not None
    files = "[" + ", ".join(f"'{proj.lake_dir / f}'" for f in state.files) + "]"
    return duckdb.connect().execute(f"select id::varchar, v from read_parquet({files}, union_by_name = true, "
                                    "hive_partitioning = false) order by all").fetchall()
