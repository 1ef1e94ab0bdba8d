"""Shared parts of the exactly-once tests: a project collecting one table of a real database, the `_latest` view
as the engines build it, writers with overlapping transactions, and a collector killed at random moments."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb

from kiban.collect.collector import collected_tables
from kiban.engines.lake import derived_views
from kiban.project import load_project
from kiban.store import Store

TABLE = "acct"
ASSET = f"lake.src_{TABLE}"

COLLECT = """
import sys
from kiban.collect.load import load_table
from kiban.project import load_project
from kiban.store import Store
project = load_project(sys.argv[1])
result = load_table(project, "src", "acct", Store(project.state_url))
r = result.record
print(r.rows_read, r.rows_landed, r.rows_dropped, "|".join(result.notes))
"""


def project(root: Path, kind: str, extra: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "kiban.yml").write_text("name: race\ntimezone: UTC\n")
    (root / "sources").mkdir(exist_ok=True)
    (root / "sources" / "src.yml").write_text(
        f"type: {kind}\nurl: env:RACE_DB_URL\ntables:\n  {TABLE}:\n    mode: incremental\n    cursor: updated_at\n"
        f"    primary_key: [id]\n{extra}")
    return root


def collect(root: Path, url: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """One load in a child process, as `kiban collect` runs it."""
    env = {**os.environ, "RACE_DB_URL": url, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run([sys.executable, "-c", COLLECT, str(root)], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def collect_killed(root: Path, url: str, after: float) -> bool:
    """Start a load and SIGKILL it after ``after`` seconds; True when it was killed before it finished."""
    env = {**os.environ, "RACE_DB_URL": url, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen([sys.executable, "-c", COLLECT, str(root)], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        child.wait(after)
        return False
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGKILL)
        child.wait()
        return True


def latest(root: Path) -> dict[Any, tuple[Any, ...]]:
    """``lake.src_acct_latest`` as the engines define it, over the committed files: id → (balance, note)."""
    proj = load_project(root)
    store = Store(proj.state_url)
    try:
        table = collected_tables(proj, store)[ASSET]
    finally:
        store.engine.dispose()
    if not table.files:
        return {}
    con = duckdb.connect()
    files = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in table.files) + "]"
    con.execute("create schema lake")
    con.execute(f'create view lake."src_{TABLE}" as select * from read_parquet({files}, union_by_name = true, '
                "hive_partitioning = false)")
    columns = [r[0] for r in con.execute(f'describe lake."src_{TABLE}"').fetchall()]
    for name, sql in derived_views(f"src_{TABLE}", table, columns):
        con.execute(f'create view lake."{name}" as {sql}')
    rows = con.execute(f'select id, balance, note from lake."src_{TABLE}_latest"').fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def landed_twice(root: Path) -> int:
    """Versions landed again although the key's newest landed version already said the same (duplicates)."""
    proj = load_project(root)
    store = Store(proj.state_url)
    try:
        table = collected_tables(proj, store)[ASSET]
    finally:
        store.engine.dispose()
    if not table.files:
        return 0
    files = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in table.files) + "]"
    return duckdb.connect().execute(
        f"select count(*) from (select balance, note, updated_at, lag(balance) over w as b, lag(note) over w as n, "
        f"lag(updated_at) over w as u from read_parquet({files}, union_by_name = true, hive_partitioning = false) "
        f"window w as (partition by id order by _loaded_at, _load_id)) "
        f"where b is not distinct from balance and n is not distinct from note and u is not distinct from updated_at"
    ).fetchone()[0]


class Writers:
    """Two (or more) writers with overlapping transactions: each begins, updates a few rows (the server stamps
    updated_at), sometimes inserts one, sleeps inside the transaction — now and then far longer than the default
    look-back — and commits. ``connect`` returns a DB-API connection with autocommit off."""

    def __init__(self, connect: Callable[[], Any], update: str, insert: str, ids: int, count: int = 2,
                 long_every: int = 25, long_s: float = 7.0, seed: int = 0) -> None:
        self.connect, self.update, self.insert, self.ids = connect, update, insert, ids
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.commits = 0
        self.next_id = ids + 1
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(seed + n, long_every, long_s), daemon=True)
                         for n in range(count)]

    def __enter__(self) -> Writers:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(60)
        if self.errors:
            raise self.errors[0]

    def _run(self, seed: int, long_every: int, long_s: float) -> None:
        rnd = random.Random(seed)
        conn = self.connect()
        try:
            n = 0
            while not self.stop.is_set():
                n += 1
                cur = conn.cursor()
                try:
                    for key in rnd.sample(range(1, self.ids + 1), 3):
                        cur.execute(self.update, (rnd.randint(0, 10_000), f"w{seed}-{n}", key))
                    if rnd.random() < 0.2:
                        with self._lock:
                            new_id, self.next_id = self.next_id, self.next_id + 1
                        cur.execute(self.insert, (new_id, rnd.randint(0, 10_000), f"w{seed}-{n}"))
                    if n % long_every == 0:
                        time.sleep(long_s)  # longer than the default look-back; finishes even at stop
                    else:
                        self.stop.wait(rnd.uniform(0, 0.3))
                    conn.commit()
                    self.commits += 1
                except Exception as exc:  # a deadlock between the two writers: roll back, go on
                    conn.rollback()
                    if "deadlock" not in str(exc).lower() and "lock wait" not in str(exc).lower():
                        self.errors.append(exc)
                        return
                finally:
                    cur.close()
        finally:
            conn.close()


def race(root: Path, url: str, writers: Writers, kills: int, seed: int = 1) -> dict[str, int]:
    """Collect while ``writers`` write, SIGKILLing loads at random moments until ``kills`` were killed (and
    letting some finish); then two plain loads. Returns counts for the report."""
    rnd = random.Random(seed)
    killed = finished = 0
    with writers:
        while killed < kills:
            if collect_killed(root, url, rnd.uniform(0.2, 4.0)):
                killed += 1
            else:
                finished += 1
            done = collect(root, url)  # and one that commits: the cursor moves on while transactions are open
            assert done.returncode == 0, done.stderr[-2000:]
            finished += 1
    for _ in range(2):  # after the writers stopped: the loads that catch up
        done = collect(root, url)
        assert done.returncode == 0, done.stderr[-2000:]
    return {"killed": killed, "finished": finished, "commits": writers.commits}
