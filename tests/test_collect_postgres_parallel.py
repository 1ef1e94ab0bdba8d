"""PostgreSQL's parallel driver read (``streams:``): several COPY streams over ctid ranges of ONE snapshot.

Against the real server on 127.0.0.1:5432 (a fresh database per test): the rows equal the single stream's
exactly, a concurrent writer's commits land as of one snapshot (no row after it, none missing, no row twice),
a consumer that stops early leaves no backend behind, and other databases refuse ``streams:``. A whole load of a
table far bigger than its batches grows the process's peak memory by no more than the batches it may hold (the
streams read nothing ahead), and lands one snapshot's rows once while a writer commits.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pytest

from kiban.collect.collector import collected_tables
from kiban.collect.connector import ReadContext, SourceError, read_batches
from kiban.collect.connectors import postgres
from kiban.collect.spec import SourceSpec
from kiban.project import load_project
from kiban.store import Store

ROWS = 30_000


def sql(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def context(url: str, table: dict[str, Any], batch_rows: int = 5000, kind: str = "postgres",
            since: Any = None) -> ReadContext:
    spec = SourceSpec.model_validate({"type": kind, "url": "env:X", "tables": {"t": table}})
    return ReadContext("pos", "t", spec, spec.tables["t"], Path("."), url=url, batch_rows=batch_rows, since=since)


@pytest.fixture
def big(postgres_url: str) -> str:
    # fillfactor 100 and ~150-byte rows: ~110 pages per 5,000 rows, so the table spans many ranges, and an
    # update cannot stay on its page (HOT): the new version goes to the end of the table — another range
    sql(postgres_url,
        "create table items (id bigint primary key, gen int not null, amount numeric(12,2), at timestamptz, "
        "note text, blob bytea) with (fillfactor = 100)",
        f"insert into items select i, 0, i * 0.25, timestamptz '2024-01-01 00:00+00' + i * interval '1 minute', "
        f"case when i % 7 = 0 then null else repeat(md5(i::text), 3) end, '\\x01'::bytea "
        f"from generate_series(1, {ROWS}) i",
        "vacuum analyze items")
    return postgres_url


def multiset(found: list[pa.RecordBatch]) -> Counter[tuple[Any, ...]]:
    table = pa.Table.from_batches(found)
    return Counter(zip(*(table.column(n).to_pylist() for n in table.column_names), strict=True))


def test_parallel_rows_equal_the_single_stream_exactly(big: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres, "MIN_RANGE_BLOCKS", 8)  # many small ranges: 4 streams share ~40 of them
    one = list(read_batches(context(big, {"table": "items", "reader": "driver", "streams": 1})))
    four = list(read_batches(context(big, {"table": "items", "reader": "driver", "streams": 4})))
    assert four[0].schema == one[0].schema
    assert max(b.num_rows for b in four) <= 5000  # batches stay bounded
    assert multiset(four) == multiset(one)
    assert sum(multiset(one).values()) == ROWS
    # automatic: above the size threshold the driver reads in several streams, unasked
    monkeypatch.setattr(postgres, "PARALLEL_FROM_BYTES", 1 << 20)
    auto = list(read_batches(context(big, {"table": "items", "reader": "driver"})))
    assert multiset(auto) == multiset(one)
    # an incremental read: the cursor filter and the ranges together
    ctx = context(big, {"table": "items", "reader": "driver", "streams": 3, "mode": "incremental",
                        "cursor": "id", "primary_key": ["id"]}, since=ROWS - 1234)
    ids = [i for b in read_batches(ctx) for i in b.column("id").to_pylist()]
    assert sorted(ids) == list(range(ROWS - 1234, ROWS + 1))


def test_a_concurrent_writer_lands_as_of_one_snapshot(big: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer commits transactions in order; transaction g sets gen = g on an early row (which moves to
    the end of the table) and inserts a new row with gen = g. A read of one snapshot sees exactly a prefix
    1..K of them: every such row once, nothing of K+1 on."""
    monkeypatch.setattr(postgres, "MIN_RANGE_BLOCKS", 8)
    log: list[tuple[int, int]] = []  # (gen, updated id), committed in this order
    stop = threading.Event()
    started = threading.Event()

    def writer() -> None:
        with psycopg.connect(big, autocommit=True) as conn:
            gen = 0
            while not stop.is_set():
                gen += 1
                target = 1 + (gen * 7919) % 10_000  # early pages, read by the first ranges
                with conn.transaction():
                    conn.execute("update items set gen = %s, note = 'moved' where id = %s", [gen, target])
                    conn.execute("insert into items values (%s, %s, 1, now(), 'new', null)", [ROWS + gen, gen])
                log.append((gen, target))
                started.set()

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    assert started.wait(10)
    found: list[pa.RecordBatch] = []
    at_start = len(log)
    for batch in read_batches(context(big, {"table": "items", "reader": "driver", "streams": 4}, batch_rows=2000)):
        found.append(batch)
        time.sleep(0.01)  # a slow consumer: the streams stay open (bounded queue) while the writer commits
    during = len(log) - at_start
    stop.set()
    thread.join(10)
    assert during >= 5, f"the writer committed only {during} transactions during the read"
    table = pa.Table.from_batches(found)
    ids = table.column("id").to_pylist()
    assert len(ids) == len(set(ids)), "a row was read twice (two versions of it)"
    gens = dict(zip(ids, table.column("gen").to_pylist(), strict=True))
    k = max(gens.values())
    assert k >= at_start  # the snapshot is taken when the read starts
    expected = {i: 0 for i in range(1, ROWS + 1)}
    for gen, target in log[:k]:
        expected[target] = gen
        expected[ROWS + gen] = gen
    assert gens == expected, "the landed rows are not one snapshot's"


def test_a_consumer_that_stops_leaves_no_backend_and_errors_are_raised(big: str) -> None:
    def backends() -> int:
        with psycopg.connect(big, autocommit=True) as conn:
            row = conn.execute("select count(*) from pg_stat_activity where datname = current_database() "
                               "and pid <> pg_backend_pid()").fetchone()
            return int(row[0]) if row else -1

    reader = read_batches(context(big, {"table": "items", "reader": "driver", "streams": 4}, batch_rows=500))
    next(reader)
    reader.close()  # the streams are stopped, their COPYs cancelled, the connections closed
    deadline = time.monotonic() + 60  # the server ends cancelled backends slowly on a loaded machine
    while backends() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert backends() == 0
    with pytest.raises(SourceError, match="items"):
        list(read_batches(context(big, {"table": "items", "reader": "driver", "streams": 4,
                                        "select": ["id", "nope"]})))


def test_streams_is_refused_where_it_cannot_apply(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="a `query:` is read in one stream"):
        list(read_batches(context("postgresql://x", {"query": "select 1", "streams": 2})))
    with pytest.raises(SourceError, match="reader: driver"):
        list(read_batches(context("postgresql://x", {"table": "t", "reader": "duckdb", "streams": 2})))
    db = tmp_path / "a.db"
    import sqlite3

    with sqlite3.connect(db) as conn:
        conn.execute("create table t (a int)")
    with pytest.raises(SourceError, match="PostgreSQL only"):
        list(read_batches(context(str(db), {"table": "t", "streams": 2}, kind="sqlite")))


# -- memory: bounded by the batch size, whatever the table's size or the number of streams ----------------------

BIG_ROWS = 600_000
BATCH_ROWS = 10_000
STREAMS = 4
# what a load holds beyond its batches: threads, connections, the typing stage's DuckDB, the Parquet writer
FIXED_MB = 32
# batches a load may hold at once: per stream the block being parsed, its parsed rows and one waiting to be
# queued; the queue (one per stream); the typing and the writing stages (two waiting and one at work, each)
IN_FLIGHT = 3 * STREAMS + STREAMS + 6

MEASURED_LOAD = """
import sys
from kiban.collect.connectors import postgres
from kiban.collect.load import load_table
from kiban.project import load_project
from kiban.store import Store

postgres.RANGES_PER_STREAM = 1  # one range per stream, as big as a big table's: nothing to hide a read-ahead
project = load_project(sys.argv[1])
store = Store(project.state_url)
load_table(project, "pos", "warm", store)  # imports, pools, threads, DuckDB: what any load pays once

def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key)) / 1024

with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak (VmHWM) starts again from here
before = status("VmRSS:")
print("READING", flush=True)
result = load_table(project, "pos", "items", store)
print("GROWTH", status("VmHWM:") - before, result.record.rows_landed, flush=True)
"""


def lake_rows(root: Path, asset: str) -> pa.Table:
    import duckdb

    project = load_project(root)
    store = Store(project.state_url)
    try:
        files = collected_tables(project, store)[asset].files
    finally:
        store.engine.dispose()
    return duckdb.connect().execute("select id, gen from read_parquet(?, hive_partitioning = false)",
                                    [list(files)]).to_arrow_table()


def test_a_big_parallel_load_holds_memory_to_its_batches_and_lands_one_snapshot(
        postgres_url: str, tmp_path: Path) -> None:
    """A load of a table far bigger than a batch, in 4 streams of one range each (as a big table's ranges are),
    while a writer commits: the process's peak memory grows by no more than the batches it may hold at once
    (from ``batch_rows`` and the rows' width) plus a fixed part — not with the table — and the lake holds every
    row of one snapshot exactly once."""
    sql(postgres_url,
        "create table items (id bigint primary key, gen int not null, amount numeric(12,2), at timestamptz, "
        "note text) with (fillfactor = 100)",
        f"insert into items select i, 0, i * 0.25, timestamptz '2024-01-01 00:00+00' + i * interval '1 second', "
        f"case when i % 7 = 0 then null else repeat(md5(i::text), 4) end from generate_series(1, {BIG_ROWS}) i",
        "create table warm as select * from items where id <= 50000",
        "vacuum analyze items", "vacuum analyze warm")
    with psycopg.connect(postgres_url) as conn:
        row = conn.execute("select avg(octet_length(i::text)), pg_relation_size('items') from items i").fetchone()
    assert row is not None
    row_bytes, table_bytes = float(row[0]), int(row[1])
    batch_mb = BATCH_ROWS * row_bytes / 2**20
    bound = FIXED_MB + IN_FLIGHT * batch_mb
    assert table_bytes / 2**20 > 1.5 * bound  # the table does not fit in the bound: holding it would show
    root = tmp_path / "p"
    (root / "sources").mkdir(parents=True)
    (root / "kiban.yml").write_text("name: mem\ntimezone: UTC\n")
    (root / "sources" / "pos.yml").write_text(
        f"type: postgres\nurl: env:MEM_DB_URL\nreader: driver\nstreams: {STREAMS}\nbatch_rows: {BATCH_ROWS}\n"
        "tables:\n  items: {}\n  warm: {}\n")
    log: list[tuple[int, int]] = []  # (gen, updated id), committed in this order
    stop = threading.Event()

    def writer() -> None:  # transaction g: row `target` gets gen = g (and moves to the end), row ROWS+g is new
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            gen = 0
            while not stop.is_set():
                gen += 1
                target = 1 + (gen * 7919) % (BIG_ROWS // 2)
                with conn.transaction():
                    conn.execute("update items set gen = %s, note = 'moved' where id = %s", [gen, target])
                    conn.execute("insert into items values (%s, %s, 1, now(), 'new')", [BIG_ROWS + gen, gen])
                log.append((gen, target))
                time.sleep(0.002)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    env = {**os.environ, "MEM_DB_URL": postgres_url, "PYTHONPATH": os.pathsep.join(sys.path)}
    try:
        done = subprocess.run([sys.executable, "-c", MEASURED_LOAD, str(root)], env=env, capture_output=True,
                              text=True, timeout=300, check=False)
    finally:
        stop.set()
        thread.join(10)
    assert done.returncode == 0, done.stderr[-3000:]
    growth, landed = done.stdout.split("GROWTH")[-1].split()
    table = lake_rows(root, "lake.pos_items")
    ids = table.column("id").to_pylist()
    assert len(ids) == len(set(ids)), "a row was landed twice (two versions of it)"
    gens = dict(zip(ids, table.column("gen").to_pylist(), strict=True))
    k = max(gens.values())
    assert k >= 1  # the writer had committed before the snapshot …
    assert len(log) > k + 5  # … and went on committing after it, during the load
    expected = {i: 0 for i in range(1, BIG_ROWS + 1)}
    for gen, target in log[:k]:
        expected[target] = gen
        expected[BIG_ROWS + gen] = gen
    assert gens == expected, "the landed rows are not one snapshot's"
    assert int(landed) == len(expected)
    assert float(growth) <= bound, (f"peak memory grew by {float(growth):.0f} MB reading {table_bytes >> 20} MB "
                                    f"in batches of {batch_mb:.1f} MB (bound {bound:.0f} MB)")
