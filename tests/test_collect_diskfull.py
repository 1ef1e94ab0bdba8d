"""A full disk under the state store (issue 16): one clear message naming the filesystem and the space needed,
no traceback, a `run_finished` event, and a run that resumes once space is freed. Needs root to mount a tiny
tmpfs (skipped otherwise)."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest


@pytest.fixture
def tiny() -> Iterator[Path]:
    where = Path(f"/tmp/kiban-tiny-{uuid.uuid4().hex[:8]}")
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)], capture_output=True,
                          check=False)
    if done.returncode != 0:
        where.rmdir()
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
        where.rmdir()


def fill(folder: Path, leave: int = 0) -> Path:
    """Fill the filesystem, then give back ``leave`` bytes."""
    filler = folder / "filler"
    with filler.open("wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    size = filler.stat().st_size
    with filler.open("r+b") as handle:
        handle.truncate(max(size - leave, 0))
    return filler


def project(make_project: Any, tiny: Path) -> Path:
    return make_project({
        "kiban.yml": f"name: full\ntimezone: UTC\nstate: sqlite:///{tiny}/state.db\nlake: {tiny}/lake\n",
        "sources/shop.yml": "type: files\ntables:\n  orders:\n    path: data/*.csv\n    settle: 0\n",
        "models/mart/total.sql": "select count(*) as n from lake.shop_orders",
        "data/a.csv": "id,pad\n1,a\n2,b\n"})


def big_file(root: Path) -> None:
    import secrets

    (root / "data/b.csv").write_text("id,pad\n" + "".join(f"{i},{secrets.token_hex(200)}\n"
                                                          for i in range(3, 6000)))


def check_message(done: Any, tiny: Path) -> None:
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "Traceback" not in output, output[-3000:]
    assert "the disk is full" in output, output[-3000:]
    assert str(tiny) in output, output[-3000:]
    assert "free at least" in output, output[-3000:]


def test_a_full_disk_under_the_lake_and_store_says_so_and_the_run_resumes(tiny: Path, make_project: Any,
                                                                          cli: Callable[..., Any]) -> None:
    root = project(make_project, tiny)
    assert cli("--project", root, "run").returncode == 0
    big_file(root)
    filler = fill(tiny, leave=400_000)
    done = cli("--project", root, "run", "--log-format", "json")
    check_message(done, tiny)
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert any("run_finished" in json.dumps(e) for e in events), done.stdout[-2000:]
    filler.unlink()
    resumed = cli("--project", root, "run", "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    con = duckdb.connect(str(root / "kiban.duckdb"), read_only=True)
    try:
        assert con.execute("select n from mart.total").fetchone() == (5999,)
    finally:
        con.close()


def test_a_state_store_on_a_full_disk_says_so_once(tiny: Path, make_project: Any,
                                                   cli: Callable[..., Any]) -> None:
    root = project(make_project, tiny)
    assert cli("--project", root, "run").returncode == 0
    filler = fill(tiny)
    check_message(cli("--project", root, "run"), tiny)
    filler.unlink()
    assert cli("--project", root, "run", "--resume").returncode == 0
