"""Changes that are not appends reach incremental models whole: retracted loads, replayed quarantine rows,
backfills, an upstream model's SQL, files a model reads directly, the table a relationships check refers to,
new versions of old keys read through ``lake.x_latest``, replaced or deleted files of a plain lake folder.

An incremental model recomputes only its recent partitions. That is right while its inputs only grow at the
recent end; when older data of an input changes, recomputing the recent partitions would keep old rows and call
the model fresh. The generator below makes random sequences of appends, retractions, quarantine replays,
late rows followed by a backfill, updates of old keys, and files added to, replaced in or deleted from a plain
lake folder, runs ``kiban run`` after each, and compares every model with a clean build of
a copy of the folder (the same files and declarations, collected from scratch).
"""

from __future__ import annotations

import os
import random
import shutil
import time
from contextlib import closing
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from kiban import operate
from kiban.collect.manifest import Manifests
from kiban.collect.quarantine import replay
from kiban.project import load_project
from kiban.run import RunOptions
from kiban.run.backfill import BackfillOptions, run_backfill
from kiban.store import Store
from tests.conftest import write_files, write_parquet

SOURCE = """type: files
tables:
  events:
    path: data/events_*.csv
    primary_key: [id]
    columns:
      - {{name: id, type: bigint}}
      - {{name: day, type: date}}
      - {{name: v, type: {v_type}}}
"""
INCREMENTAL = "materialized: incremental\ntime_column: day\ngrain: day\nlookback: 0\n"
MODELS = {
    # incremental over a collected table
    "models/warehouse/daily.sql": "select day, count(*) as n, sum(v)::bigint as s from lake.src_events group by day",
    "models/warehouse/daily.yml": INCREMENTAL,
    # a table over it, and incremental models over the table and over the incremental model
    "models/warehouse/events.sql": "select id, day, v::bigint as v from lake.src_events",
    "models/mart/by_day.sql": "select day, count(*) as n, sum(v) as s from warehouse.events group by day",
    "models/mart/by_day.yml": INCREMENTAL,
    "models/mart/doubled.sql": "select day, n * 2 as n2, s from warehouse.daily",
    "models/mart/doubled.yml": INCREMENTAL,
    # incremental over the newest version of each key (an old key's update changes an old day)
    "models/warehouse/latest_daily.sql": "select day, count(*) as n, sum(v)::bigint as s "
                                         "from lake.src_events_latest group by day",
    "models/warehouse/latest_daily.yml": INCREMENTAL,
    # incremental over a plain lake folder (lake/plain/*.parquet, not collected)
    "models/warehouse/plain_daily.sql": "select day, count(*) as n, sum(v)::bigint as s from lake.plain group by day",
    "models/warehouse/plain_daily.yml": INCREMENTAL,
}
KEYS = ["warehouse.daily", "warehouse.events", "mart.by_day", "mart.doubled", "warehouse.latest_daily",
        "warehouse.plain_daily"]
INCREMENTAL_KEYS = {"warehouse.daily", "mart.doubled", "mart.by_day", "warehouse.latest_daily",
                    "warehouse.plain_daily"}
HUGE = 5_000_000_000  # does not fit an integer: quarantined until v is declared bigint


def run(root: Path) -> dict[str, str]:
    result = operate.run(load_project(root), RunOptions()).result
    statuses = {k: "fresh" for k in result.plan.fresh}
    statuses.update({k: o.status for k, o in result.outcomes.items()})
    return statuses


def snapshot(root: Path) -> dict[str, list[tuple[Any, ...]]]:
    con = duckdb.connect(str(root / "kiban.duckdb"), read_only=True)
    try:
        return {k: sorted(con.execute(f"select * from {k}").fetchall()) for k in KEYS}
    finally:
        con.close()


class Events:
    """The generated source: one CSV file per load, and the random changes made to it."""

    def __init__(self, root: Path, seed: int) -> None:
        self.root, self.rng = root, random.Random(seed)
        self.day = date(2024, 1, 10)  # the newest day so far
        self.files = 0
        self.loads: dict[str, Path] = {}  # load id → the file it collected (retractable)
        self.v_type = "integer"
        self.ids: dict[int, date] = {}  # every key written so far → its day
        self.plain: list[Path] = []  # the plain lake folder's files
        self.plain_files = 0
        self.plain_day = date(2024, 1, 10)
        write_files(root, {"kiban.yml": "name: appendix\ntimezone: UTC\n", **MODELS})
        self.write_plain(root / "lake" / "plain" / "part_000.parquet", date(2024, 1, 1), self.plain_day)
        self.declare()
        self.append()

    def declare(self) -> None:
        write_files(self.root, {"sources/src.yml": SOURCE.format(v_type=self.v_type)})

    def write(self, rows: list[tuple[int, date, int]]) -> Path:
        self.files += 1
        path = self.root / "data" / f"events_{self.files:03}.csv"
        self.ids.update({i: d for i, d, _v in rows})
        write_files(self.root, {path.relative_to(self.root).as_posix():
                                "id,day,v\n" + "".join(f"{i},{d},{v}\n" for i, d, v in rows)})
        return path

    def rows(self, first: date, last: date, n: int) -> list[tuple[int, date, int]]:
        span = (last - first).days
        return [(self.rng.randint(1, 10**6), first + timedelta(days=self.rng.randint(0, span)),
                 self.rng.randint(0, 100)) for _ in range(n)]

    def collected(self, path: Path) -> None:
        """Remember which load took ``path`` (the newest one), so that it can be retracted later."""
        with closing(Store(load_project(self.root).state_url)) as store:
            newest = Manifests(store).loads("appendix", "lake.src_events", limit=1)[0]
        self.loads[newest.load_id] = path

    def append(self) -> str:
        """Rows of the newest day and later: what an incremental model is made for."""
        start = self.day
        self.day += timedelta(days=self.rng.randint(0, 2))
        path = self.write(self.rows(start, self.day, self.rng.randint(3, 8)))
        run(self.root)
        self.collected(path)
        return f"append {path.name}"

    def retract(self) -> str:
        """A bad load taken out (and its file removed, so that it is not collected again)."""
        if len(self.loads) < 2:
            return self.append()
        load = self.rng.choice(sorted(self.loads))
        with closing(Store(load_project(self.root).state_url)) as store:
            Manifests(store).retract("appendix", load)
        path = self.loads.pop(load)
        path.unlink()
        return f"retract {path.name}"

    def replay(self) -> str:
        """A row of an old day quarantined, the declaration fixed, the row replayed. Once ``v`` is declared
        bigint nothing is quarantined any more: rows of an old day are then late rows, backfilled."""
        if self.v_type != "integer":
            return self.late_then_backfill()
        old = self.day - timedelta(days=self.rng.randint(3, 8))
        rows = [*self.rows(old, old, 2), (self.rng.randint(1, 10**6), old, HUGE + self.rng.randint(0, 9))]
        path = self.write(rows)
        run(self.root)  # the huge row is quarantined; the others land
        if self.v_type == "integer":
            self.v_type = "bigint"
            self.declare()
        project = load_project(self.root)
        with closing(Store(project.state_url)) as store:
            replay(project, store, "lake.src_events")
        return f"replay of a row of {old} ({path.name})"

    def late_then_backfill(self) -> str:
        """Rows of an old day (outside the lookback), then a backfill of that day: upstream is right again."""
        old = self.day - timedelta(days=self.rng.randint(3, 8))
        path = self.write(self.rows(old, old, 3))
        run(self.root)
        self.collected(path)
        result = run_backfill(load_project(self.root), BackfillOptions(
            select=("warehouse.daily", "mart.by_day", "warehouse.latest_daily"),
            start=old.isoformat(), end=old.isoformat()))
        assert result.status == "success", result
        return f"late rows of {old}, backfilled"

    def update_old(self) -> str:
        """New versions of keys of old days (outside the lookback), moved to the newest day: ``lake.src_events``
        grows at its recent end, ``lake.src_events_latest`` loses rows of old days. (A new version kept on its
        old day is a late row for readers of ``lake.src_events``: see the test of readers of the base table.)"""
        old = sorted(i for i, d in self.ids.items() if d <= self.day - timedelta(days=2))
        if not old:
            return self.append()
        chosen = self.rng.sample(old, min(2, len(old)))
        rows = [(i, self.day, self.rng.randint(200, 300)) for i in chosen]
        path = self.write(rows)
        run(self.root)
        self.collected(path)
        return f"update of old keys {chosen} ({path.name})"

    def write_plain(self, path: Path, first: date, last: date) -> None:
        seed = self.rng.randint(0, 10**6)
        write_parquet(path, f"select date '{first}' + (i % {(last - first).days + 1})::int as day, "
                            f"((i * 7 + {seed}) % 100)::bigint as v from range({self.rng.randint(3, 9)}) t(i)")
        stat = os.stat(path)  # a replaced file is seen even where the file system's clock is coarse
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000 * self.rng.randint(1, 1000)))
        if path not in self.plain:
            self.plain.append(path)

    def plain_add(self) -> str:
        """A new file of the newest days in the plain lake folder: an append."""
        start = self.plain_day
        self.plain_day += timedelta(days=self.rng.randint(0, 2))
        self.plain_files += 1
        path = self.root / "lake" / "plain" / f"part_{self.plain_files:03}.parquet"
        self.write_plain(path, start, self.plain_day)
        return f"plain file added {path.name}"

    def plain_replace(self) -> str:
        """A file of the plain lake folder rewritten with other rows of old days."""
        path = self.rng.choice(self.plain)
        self.write_plain(path, date(2024, 1, 1), date(2024, 1, 5))
        return f"plain file replaced {path.name}"

    def plain_delete(self) -> str:
        """A file of the plain lake folder deleted (never the last one)."""
        if len(self.plain) < 2:
            return self.plain_add()
        path = self.plain.pop(self.rng.randrange(len(self.plain)))
        path.unlink()
        return f"plain file deleted {path.name}"

    def changes(self, steps: int) -> list[Any]:
        """``steps`` random changes, each kind at least once."""
        kinds = [self.append, self.retract, self.replay, self.late_then_backfill, self.update_old,
                 self.plain_add, self.plain_replace, self.plain_delete]
        chosen = kinds + [self.rng.choice(kinds) for _ in range(steps - len(kinds))]
        self.rng.shuffle(chosen)
        return chosen


def clean_build(root: Path, target: Path) -> tuple[dict[str, str], dict[str, list[tuple[Any, ...]]]]:
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(root, target, ignore=shutil.ignore_patterns(".kiban", "kiban.duckdb*"))
    statuses = run(target)
    return statuses, snapshot(target)


def full_rebuild(root: Path, target: Path) -> tuple[dict[str, str], dict[str, list[tuple[Any, ...]]]]:
    """Every model built from scratch over the same lake (a copy of the folder, state and warehouse included,
    run with --full-refresh). The truth when old keys got new versions: collecting every file again in one load
    would keep only the newest version of each key in ``lake.src_events`` too."""
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(root, target)
    result = operate.run(load_project(target), RunOptions(full_refresh=True)).result
    return {k: o.status for k, o in result.outcomes.items()}, snapshot(target)


@pytest.mark.parametrize("seed", [3])
def test_incremental_models_equal_a_clean_build_after_any_change(tmp_path: Path, seed: int) -> None:
    events = Events(tmp_path / "p", seed)
    done: list[str] = []
    for step, change in enumerate(events.changes(10)):
        done.append(change())
        statuses = run(events.root)
        clean_statuses, truth = full_rebuild(events.root, tmp_path / "clean")
        served = snapshot(events.root)
        for key in KEYS:
            context = f"step {step} ({'; '.join(done)}): {key} is {statuses.get(key)}"
            assert clean_statuses.get(key) == "success", context
            assert served[key] == truth[key], context


@pytest.fixture
def project(tmp_path: Path) -> Events:
    return Events(tmp_path / "p", 0)


def test_a_retracted_old_load_rebuilds_the_incremental_model_whole(project: Events) -> None:
    oldest = sorted(project.loads)[0]
    project.append()
    project.append()
    with closing(Store(load_project(project.root).state_url)) as store:
        Manifests(store).retract("appendix", oldest)
    project.loads.pop(oldest).unlink()
    result = operate.run(load_project(project.root), RunOptions()).result
    assert {"warehouse.daily", "mart.doubled", "mart.by_day"} <= result.plan.whole
    assert "built whole" in result.plan.reasons["warehouse.daily"]
    assert snapshot(project.root) == clean_build(project.root, project.root.parent / "clean")[1]
    again = operate.run(load_project(project.root), RunOptions()).result  # and then it is fresh
    assert set(KEYS) <= set(again.plan.fresh)


def test_a_replayed_old_row_rebuilds_the_incremental_model_whole(project: Events) -> None:
    project.append()
    project.replay()
    result = operate.run(load_project(project.root), RunOptions()).result
    assert {"warehouse.daily", "mart.doubled", "mart.by_day"} <= result.plan.whole
    assert snapshot(project.root) == clean_build(project.root, project.root.parent / "clean")[1]


def test_an_append_keeps_incremental_models_incremental(project: Events) -> None:
    project.append()
    project.write(project.rows(project.day, project.day, 2))
    project.plain_add()
    result = operate.run(load_project(project.root), RunOptions()).result
    assert set(result.plan.build) >= INCREMENTAL_KEYS
    assert not result.plan.whole, result.plan.reasons
    assert snapshot(project.root) == clean_build(project.root, project.root.parent / "clean")[1]


# -- new versions of old keys, read through lake.x_latest ------------------------------------------------

def test_an_update_of_an_old_key_rebuilds_readers_of_latest_whole(project: Events) -> None:
    project.append()
    project.append()
    project.day += timedelta(days=3)
    project.append()
    project.update_old()  # collected (and the models built) inside
    assert snapshot(project.root) == full_rebuild(project.root, project.root.parent / "clean")[1]
    result = operate.run(load_project(project.root), RunOptions()).result
    assert set(KEYS) <= set(result.plan.fresh), result.plan.reasons


def test_readers_of_the_base_table_stay_incremental_when_old_keys_change(project: Events) -> None:
    project.day += timedelta(days=3)
    project.append()
    old = sorted(i for i, d in project.ids.items() if d <= project.day - timedelta(days=2))[0]
    project.write([(old, project.ids[old], 999)])
    result = operate.run(load_project(project.root), RunOptions()).result
    assert "warehouse.latest_daily" in result.plan.whole
    assert "_latest" in result.plan.reasons["warehouse.latest_daily"]
    assert not {"warehouse.daily", "mart.doubled", "mart.by_day"} & result.plan.whole  # lake.src_events grew
    # the new version stays on its old day: right in the _latest reader, a late row (outside the lookback) for
    # the readers of lake.src_events, as any late row is
    truth = full_rebuild(project.root, project.root.parent / "clean")[1]
    assert snapshot(project.root)["warehouse.latest_daily"] == truth["warehouse.latest_daily"]
    again = operate.run(load_project(project.root), RunOptions()).result
    assert "warehouse.latest_daily" in again.plan.fresh, again.plan.reasons
    project.append()  # new keys only: incremental again
    assert not operate.run(load_project(project.root), RunOptions()).result.plan.whole


# -- plain lake folders ----------------------------------------------------------------------------------

def test_a_replaced_or_deleted_plain_lake_file_rebuilds_readers_whole(project: Events) -> None:
    project.plain_add()
    run(project.root)
    project.plain_replace()
    result = operate.run(load_project(project.root), RunOptions()).result
    assert result.plan.whole == {"warehouse.plain_daily"}, result.plan.reasons
    assert snapshot(project.root) == clean_build(project.root, project.root.parent / "clean")[1]
    project.plain_delete()
    result = operate.run(load_project(project.root), RunOptions()).result
    assert result.plan.whole == {"warehouse.plain_daily"}, result.plan.reasons
    assert snapshot(project.root) == clean_build(project.root, project.root.parent / "clean")[1]
    statuses = run(project.root)
    assert {statuses[k] for k in KEYS} == {"fresh"}, statuses


def test_an_upstream_models_sql_change_rebuilds_incremental_readers_whole(project: Events) -> None:
    project.append()
    write_files(project.root, {"models/warehouse/events.sql":
                               "select id, day, v::bigint + 1 as v from lake.src_events"})
    result = operate.run(load_project(project.root), RunOptions()).result
    assert "mart.by_day" in result.plan.whole
    assert snapshot(project.root) == clean_build(project.root, project.root.parent / "clean")[1]


# -- files read directly -----------------------------------------------------------------------------------

def test_changed_files_read_directly_rebuild_the_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "p"
    write_files(root, {"kiban.yml": "name: files\ntimezone: UTC\n",
                       "models/warehouse/raw.sql": "select * from read_parquet('ext/*.parquet')",
                       "models/warehouse/csv.sql": "select * from read_csv(['ext/a.csv'])",
                       "models/warehouse/inc.sql": "select day, sum(v) as v from read_parquet('ext/*.parquet') "
                                                   "group by day",
                       "models/warehouse/inc.yml": INCREMENTAL,
                       "ext/a.csv": "x\n1\n"})
    write_parquet(root / "ext" / "p1.parquet", "select date '2024-01-01' + i::int as day, i as v from range(5) t(i)")
    monkeypatch.chdir(root)  # DuckDB reads relative names from the working directory
    run(root)
    assert set(run(root).values()) == {"fresh"}
    # a rewritten file of the same name (old days changed), a new file, a changed CSV: each is seen
    write_parquet(root / "ext" / "p1.parquet", "select date '2024-01-01' + i::int as day, i * 10 as v "
                                               "from range(5) t(i)")
    result = operate.run(load_project(root), RunOptions()).result
    assert {"warehouse.raw", "warehouse.inc"} <= set(result.plan.build)
    assert "warehouse.inc" in result.plan.whole
    assert "warehouse.csv" in result.plan.fresh
    write_parquet(root / "ext" / "p2.parquet", "select date '2024-02-01' as day, 7 as v")
    assert run(root)["warehouse.raw"] == "success"
    time.sleep(0.01)
    (root / "ext" / "a.csv").write_text("x\n1\n2\n")
    os.utime(root / "ext" / "a.csv")
    assert run(root)["warehouse.csv"] == "success"
    con = duckdb.connect(str(root / "kiban.duckdb"), read_only=True)
    try:
        assert con.execute("select sum(v) from warehouse.inc").fetchone() == (107,)
        assert con.execute("select count(*) from warehouse.csv").fetchone() == (2,)
    finally:
        con.close()


# -- the table a relationships check refers to -----------------------------------------------------------

def test_a_change_of_the_checked_against_table_judges_the_model_again(project_dir) -> None:  # type: ignore[no-untyped-def]
    root = project_dir({
        "models/warehouse/products.sql": "select * from lake.products",
        "models/warehouse/lines.sql": "select * from lake.lines",
        "models/warehouse/lines.yml": "columns:\n  - name: product_id\n    checks:\n"
                                      "      - relationships: lake.products\n",
    }, lake={"products": "select 1 as product_id union all select 2", "lines": "select 2 as product_id"})
    assert run(root)["warehouse.lines"] == "success"
    assert run(root)["warehouse.lines"] == "fresh"
    # product 2 disappears: warehouse.lines no longer passes its blocking check and must not be called fresh
    write_parquet(root / "lake" / "products" / "part-0.parquet", "select 1 as product_id")
    result = operate.run(load_project(root), RunOptions()).result
    assert "warehouse.lines" in result.plan.build
    assert "refer to" in result.plan.reasons["warehouse.lines"]
    assert result.outcomes["warehouse.lines"].status == "failed"  # judged again: the check fails now
    assert run(root)["warehouse.lines"] == "failed"  # and it stays unfresh until fixed


def test_after_a_backfill_the_next_runs_bring_downstream_right_once(project: Events) -> None:
    project.append()
    project.late_then_backfill()
    first = operate.run(load_project(project.root), RunOptions()).result
    assert "mart.doubled" in first.plan.whole  # its input was backfilled: built whole in this run
    assert snapshot(project.root) == clean_build(project.root, project.root.parent / "clean")[1]
    again = operate.run(load_project(project.root), RunOptions()).result
    assert set(KEYS) <= set(again.plan.fresh), again.plan.reasons  # and then nothing is rebuilt needlessly


def test_a_worker_decides_a_whole_build_as_the_plan_does() -> None:
    """``--workers``: the queued fingerprint carries the inputs' histories, so a worker tells a whole build from
    an incremental one with the same test as ``make_plan`` (``built_whole``)."""
    from kiban.run.plan import built_whole

    assert built_whole("abc@h1", "abd@h2")  # older input data changed
    assert built_whole("abc@h1+token", "abd@h2")  # a data token does not hide it
    assert not built_whole("abc@h1", "abd@h1")  # appended only: recent partitions
    assert not built_whole("", "abd@h1")  # never built: nothing to keep
    assert not built_whole("abc", "abd")  # not incremental
    assert built_whole("abc", "abc@h1")  # published before histories were recorded: whole once, as the plan does


def test_key_changes_name_the_loads_that_replace_or_delete_keys(tmp_path: Path) -> None:
    """What a per-key view's history is made of: loads with only new keys count for nothing, a new version of
    an earlier load's key or a deletion counts (several rows of one key within one load do not)."""
    from kiban.engines.base import CollectedTable
    from kiban.engines.lake import key_changes

    def load(name: str, at: str, rows: str) -> str:
        return str(write_parquet(tmp_path / f"{name}.parquet",
                                 f"select '{name}' as _load_id, timestamp '{at}' as _loaded_at, * from ({rows})"))

    first = load("l1", "2024-01-01", "select 1 as id, false as _deleted union all select 1, false")
    second = load("l2", "2024-01-02", "select 2 as id, false as _deleted")

    def changes(*files: str) -> str:
        return key_changes(CollectedTable(version="x", files=files, primary_key=("id",), deletes=True))

    assert changes(first, second) == ""
    updated = load("l3", "2024-01-03", "select 1 as id, false as _deleted")
    assert changes(first, second, updated) != ""
    deleted = load("l4", "2024-01-04", "select 2 as id, true as _deleted")
    assert changes(first, second, deleted) not in ("", changes(first, second, updated))
    assert key_changes(CollectedTable(version="x", files=(first, second, updated))) == ""  # no key: no views


def test_the_graph_knows_which_tables_a_model_reads_through_per_key_views(tmp_path: Path) -> None:
    from kiban.graph import build_graph

    write_files(tmp_path, {
        "kiban.yml": "name: views\ntimezone: UTC\n",
        "sources/src.yml": "type: files\ntables:\n  t:\n    path: data/*.csv\n    primary_key: [id]\n"
                           "    history: scd2\n",
        "models/warehouse/a.sql": "select * from lake.src_t_latest",
        "models/warehouse/b.sql": "select * from src_t_history",
        "models/warehouse/c.sql": "select * from lake.src_t",
        "models/mart/d.sql": "select * from warehouse.a join lake.src_t_latest using (id)",
    })
    graph = build_graph(load_project(tmp_path))
    assert graph.versioned == {"warehouse.a": ("lake.src_t",), "warehouse.b": ("lake.src_t",),
                               "mart.d": ("lake.src_t",)}
    assert graph.deps["warehouse.b"] == ("lake.src_t",)
