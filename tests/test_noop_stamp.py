"""The no-op stamp (kiban.cli.quick): a plain `kiban run` answered without planning must never differ from
the plan made the long way. A generator of edits (same-size rewrites with the old mtime put back, touches,
added and removed models, replaced lake files, a table dropped behind kiban's back, a deleted parse cache, a held
lock, a changed environment) runs against one project; after each, the uncached plan is computed first, then
`kiban run`: whenever the stamp answered, that plan must have had nothing to build, and the fingerprints the
quick path recorded must be the plan's. Unchanged steps must be answered by the stamp (else it is useless)."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import sys
import time
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


# -- a project with a landing folder (files source) and checks ------------------------------------------------
SOURCED = {
    "kiban.yml": "name: shop\ntimezone: UTC\nwarehouse: duckdb:///kiban.duckdb\n",
    "sources/drop.yml": "type: files\ntables:\n  orders:\n    path: landing/*.csv\n    settle: 0s\n",
    "landing/a.csv": "id,amount\n1,5\n2,7\n",
    "models/warehouse/stg.sql": ("select cast(id as int) as id, max(cast(amount as int)) as amount "
                                 "from lake.drop_orders group by 1"),
    "models/warehouse/stg.yml": "columns:\n  - name: id\n    checks: [not_null, unique]\n",
    "models/mart/total.sql": "select sum(amount) as total, count(*) as n from warehouse.stg",
}


def _full_path_lands_nothing(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After the stamp answered: the full path, run now, must find the same — nothing landed, nothing built."""
    (root / ".kiban" / "cache" / quick.STAMP).unlink()
    assert not _kiban_run(root, monkeypatch)
    recorded = _latest_attempts(root)
    conn = sqlite3.connect(root / ".kiban" / "state.db")
    try:
        rows = dict(conn.execute("select asset, rows from attempts where run_id = (select run_id from runs order by "
                                 "started_at desc limit 1) and status = 'success'").fetchall())
    finally:
        conn.close()
    assert rows == {"lake.drop_orders": 0}, rows
    assert {k for k, (status, _) in recorded.items() if status == "fresh"} == {"warehouse.stg", "mart.total"}


def _source_edits(root: Path) -> dict[str, object]:
    landing = root / "landing"

    def new_landing_file() -> None:
        (landing / f"n{random.randrange(10**6)}.csv").write_text(f"id,amount\n{random.randrange(10, 10**6)},1\n")

    def touch_landing_file() -> None:
        os.utime(random.choice(sorted(landing.glob("*.csv"))))

    def rewrite_landing_file() -> None:  # same size, the old mtime put back: only ctime (and the hash) tell
        path = random.choice(sorted(landing.glob("*.csv")))
        st = path.stat()
        text = path.read_text()
        path.write_text(text[:-2] + ("9" if text[-2] != "9" else "8") + "\n")
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))

    def change_check() -> None:
        sidecar = root / "models" / "warehouse" / "stg.yml"
        text = sidecar.read_text()
        sidecar.write_text(text.replace("[not_null, unique]", "[not_null]") if "unique" in text
                           else text.replace("[not_null]", "[not_null, unique]"))

    def change_source_config() -> None:
        spec = root / "sources" / "drop.yml"
        text = spec.read_text()
        spec.write_text(text.replace("settle: 0s", "settle: 0.0s") if "0s\n" in text and "0.0s" not in text
                        else text.replace("settle: 0.0s", "settle: 0s"))

    def retract_a_load() -> None:
        from kiban.collect.manifest import Manifests
        from kiban.store import Store

        store = Store(f"sqlite:///{root / '.kiban' / 'state.db'}")
        try:
            conn = sqlite3.connect(root / ".kiban" / "state.db")
            row = conn.execute("select load_id from loads where rows_landed > 0 and retracted_at is null "
                               "order by started_at desc limit 1").fetchone()
            conn.close()
            if row:
                Manifests(store).retract("shop", row[0], "test")
        finally:
            store.close()

    return {"none": lambda: None, "new_landing_file": new_landing_file, "touch_landing_file": touch_landing_file,
            "rewrite_landing_file": rewrite_landing_file, "change_check": change_check,
            "change_source_config": change_source_config, "retract_a_load": retract_a_load}


def _check_source_steps(root: Path, monkeypatch: pytest.MonkeyPatch, steps: list[str]) -> tuple[int, int]:
    edits = _source_edits(root)
    quick_answers = unchanged = 0
    previous_no_op = False
    for step in steps:
        edits[step]()  # type: ignore[operator]
        plan = operate.explain(load_project(root), RunOptions()).plan  # the uncached plan (before collecting)
        answered = _kiban_run(root, monkeypatch)
        if answered:
            quick_answers += 1
            assert plan.build == [], f"after {step}: the stamp answered, but the plan builds {plan.build}"
            recorded = _latest_attempts(root)
            assert recorded["lake.drop_orders"][0] == "success", step
            assert all(recorded[k] == ("fresh", plan.fingerprints[k]) for k in plan.fresh), step
            _full_path_lands_nothing(root, monkeypatch)
        if step == "none" and previous_no_op:
            unchanged += 1
        previous_no_op = step == "none" or answered
    return quick_answers, unchanged


@pytest.fixture
def sourced(make_project, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = make_project(SOURCED)
    _kiban_run(root, monkeypatch)  # collects and builds everything
    return root


def test_a_landing_folder_and_checks_are_stamped_only_when_nothing_is_new(sourced: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    steps = ["none", "none", "none", "new_landing_file", "none", "none", "touch_landing_file", "none", "none",
             "rewrite_landing_file", "none", "none", "change_check", "none", "none", "change_source_config", "none",
             "none", "retract_a_load", "none", "none"]
    quick_answers, unchanged = _check_source_steps(sourced, monkeypatch, steps)
    assert quick_answers >= 5
    assert unchanged >= 5


@pytest.mark.soak
@pytest.mark.timeout(1800)
def test_random_source_edits_never_give_a_stale_answer(sourced: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(23)
    random.seed(23)
    names = list(_source_edits(sourced))
    steps = [rng.choice(names) if rng.random() < 0.4 else "none" for _ in range(80)]
    quick_answers, unchanged = _check_source_steps(sourced, monkeypatch, steps)
    assert quick_answers >= unchanged // 2


VOLATILE = {"run_id", "load_id", "id", "started_at", "ended_at", "heartbeat_at", "pid", "host", "seconds"}


def _shape_row(cursor: sqlite3.Cursor, row: tuple[object, ...]) -> tuple[tuple[str, object], ...]:
    """Every column of a row; those that differ between any two runs (ids, times, the process) only as filled
    or not, so a column one path fills and the other leaves empty (a migration's new column) still differs."""
    out = []
    for (name, *_), value in zip(cursor.description, row, strict=True):
        if name == "options" and value is not None:
            value = json.dumps({k: v for k, v in json.loads(str(value)).items() if k != "pid"}, sort_keys=True)
        out.append((name, (value is not None) if name in VOLATILE else value))
    return tuple(out)


def _last_run_rows(root: Path) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]], list[tuple[object, ...]]]:
    """The latest run's runs row, its attempts (by asset, attempt) and its loads (by asset), every column."""
    conn = sqlite3.connect(root / ".kiban" / "state.db")
    try:
        cur = conn.execute("select * from runs order by started_at desc limit 1")
        row = cur.fetchone()
        run_id = row[[d[0] for d in cur.description].index("run_id")]
        run = [_shape_row(cur, row)]
        cur = conn.execute("select * from attempts where run_id = ? order by asset, attempt", (run_id,))
        attempts = [_shape_row(cur, r) for r in cur.fetchall()]
        cur = conn.execute("select * from loads where run_id = ? order by asset", (run_id,))
        loads = [_shape_row(cur, r) for r in cur.fetchall()]
    finally:
        conn.close()
    return run, attempts, loads


def _same_record_and_output(root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The stamp records the rows the full path records for the same no-op run — every column of runs, attempts
    and loads (kiban.store.lite writes them without SQLAlchemy: a column added by a migration must be filled by
    both, or this fails) — and prints the same lines."""
    import re

    def shape(text: str) -> str:  # run ids and times differ between any two runs
        return re.sub(r"\d+\.\d\ds", "T", re.sub(r"\d{8}T\d{6}-[0-9a-f]{6}", "RUN", text))

    capsys.readouterr()
    assert not _kiban_run(root, monkeypatch)  # the full path: nothing new, writes the stamp
    full_out = capsys.readouterr()
    full = _last_run_rows(root)
    assert _kiban_run(root, monkeypatch)
    quick_out = capsys.readouterr()
    stamped = _last_run_rows(root)
    assert stamped[0] == full[0]
    assert stamped[1] == full[1]
    assert stamped[2] == full[2]
    assert shape(quick_out.out) == shape(full_out.out)
    assert sorted(shape(quick_out.err).splitlines()) == sorted(shape(full_out.err).splitlines())  # threads' order


def test_a_stamped_run_without_sources_records_every_column_as_the_full_path(
        built: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _same_record_and_output(built, monkeypatch, capsys)


def test_the_row_comparison_sees_a_column_one_path_leaves_empty(built: Path) -> None:
    conn = sqlite3.connect(built / ".kiban" / "state.db")
    try:
        cur = conn.execute("select * from attempts order by id desc limit 1")
        row = cur.fetchone()
        names = [d[0] for d in cur.description]
        assert set(names) >= {"id", "run_id", "asset", "status", "fingerprint", "watermark"}
        emptied = tuple(None if name == "started_at" else value for name, value in zip(names, row, strict=True))
        assert _shape_row(cur, row) != _shape_row(cur, emptied)
    finally:
        conn.close()


def test_the_stamp_records_and_prints_what_the_full_path_does(sourced: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    _same_record_and_output(sourced, monkeypatch, capsys)


def test_several_landing_tables_are_recorded_and_listed_as_the_full_path_does(
        make_project, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_project({**SOURCED, "sources/drop.yml": "type: files\nsettle: 0s\ntables:\n  zeta:\n    path: "
                         "landing/z*.csv\n  orders:\n    path: landing/a*.csv\n  items:\n    path: landing/i/*.csv\n",
                         "landing/z1.csv": "k\n1\n", "landing/i/1.csv": "k\n2\n"})
    assert not _kiban_run(root, monkeypatch)  # collects and builds
    _same_record_and_output(root, monkeypatch, capsys)


def test_a_young_landing_file_is_not_stamped_over(sourced: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = sourced / "sources" / "drop.yml"
    spec.write_text(spec.read_text().replace("settle: 0s", "settle: 0.1s"))
    young = sourced / "landing" / "young.csv"
    young.write_text("id,amount\n77,1\n")
    ahead = time.time() + 3600  # a clock ahead of ours: the load waits, then leaves it for a later one
    os.utime(young, (ahead, ahead))
    assert not _kiban_run(sourced, monkeypatch)
    assert not (sourced / ".kiban" / "cache" / quick.STAMP).exists()  # time alone would change the next load
    assert not _kiban_run(sourced, monkeypatch)


def test_a_database_source_takes_the_full_path(make_project, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_project({**SOURCED, "sources/drop.yml": "type: sqlite\nurl: pos.sqlite\ntables:\n  orders: {}\n"})
    conn = sqlite3.connect(root / "pos.sqlite")
    with conn:
        conn.execute("create table orders (id integer, amount integer)")
        conn.execute("insert into orders values (1, 5)")
    conn.close()
    for _ in range(3):
        assert not _kiban_run(root, monkeypatch)
    assert not (root / ".kiban" / "cache" / quick.STAMP).exists()


def test_profiles_in_use_take_the_full_path(sourced: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`kiban docs profile` started profiles: every run that collects re-profiles the tables, even an empty load."""
    assert not _kiban_run(sourced, monkeypatch)  # nothing new: stamped
    assert _kiban_run(sourced, monkeypatch)
    monkeypatch.setattr(sys, "argv", ["kiban", "docs", "profile"])
    try:
        main()
    except SystemExit as exc:
        assert not exc.code
    assert not _kiban_run(sourced, monkeypatch)  # the store's identity changed: the full path, which profiles
    assert not _kiban_run(sourced, monkeypatch)  # and leaves no stamp while profiles are in use


def test_a_landing_path_without_a_wildcard_is_stamped(make_project, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_project({**SOURCED, "sources/drop.yml": "type: files\ntables:\n  orders:\n    path: landing/a.csv\n"
                         "    settle: 0s\n"})
    assert not _kiban_run(root, monkeypatch)  # collects and builds
    assert not _kiban_run(root, monkeypatch)  # nothing new: stamps
    assert _kiban_run(root, monkeypatch)
    _full_path_lands_nothing(root, monkeypatch)
