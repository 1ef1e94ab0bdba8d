"""The lake's layout on disk, the Parquet writer that rolls files, and the removal of dead loads' leftovers.

::

    lake/SOURCE/TABLE/YYYY-MM-DD/LOAD_ID[-N].parquet             landed rows (N: the 2nd, 3rd … file of a load)
    lake/_quarantine/SOURCE/TABLE/LOAD_ID.parquet                rows refused, with location and reason
    lake/_staging/SOURCE/TABLE/LOAD_ID/                          a running load's typed batches (deleted after)

Files are written where they end up, but nobody reads a file until a manifest in the state store
names it: lake views list committed files explicitly. The day folder has no ``name=value`` form: readers that
guess Hive partitions from paths would add a column that shadows a source's own (lakes written before used
``load_date=…/``; kiban reads every lake file with Hive partitioning off).
"""

from __future__ import annotations

import os
import queue
import shutil
import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

QUARANTINE = "_quarantine"
STAGING = "_staging"
ROWS_PER_FILE = 1_000_000  # a load rolls to a new file after this many rows
# Measured on the reference orders table (bench/ingest_pg.py, 1M rows, 10 columns): snappy with dictionaries on
# every column 0.48 s CPU and 70 MB; zstd with dictionaries on text columns only 0.24 s and 42 MB (dictionaries
# on numbers and timestamps are tried, found too big and dropped — the cost without the gain)
COMPRESSION = "zstd"
ROW_GROUP_ROWS = 1_000_000  # rows per Parquet row group (of the batches given: small batches make small groups)


def table_folder(lake: Path, source: str, table: str) -> Path:
    return lake / source / table


def data_file(source: str, table: str, load_id: str, loaded_at: datetime, number: int) -> str:
    """The path (relative to the lake folder) of a load's ``number``-th data file (0 = the first)."""
    suffix = f"-{number + 1}" if number else ""
    return f"{source}/{table}/{loaded_at:%Y-%m-%d}/{load_id}{suffix}.parquet"


def quarantine_file(source: str, table: str, load_id: str) -> str:
    return f"{QUARANTINE}/{source}/{table}/{load_id}.parquet"


def staging_folder(lake: Path, source: str, table: str, load_id: str) -> Path:
    return lake / STAGING / source / table / load_id


class RollingWriter:
    """Writes record batches to ``data_file(…, n)`` files, starting a new file every ``rows_per_file`` rows
    and whenever the batches' schema changes (a column appears, a type widens)."""

    def __init__(self, lake: Path, name: Callable[[int], str], rows_per_file: int = ROWS_PER_FILE) -> None:
        self.lake, self.name, self.rows_per_file = lake, name, rows_per_file
        self.files: list[tuple[str, int, int]] = []  # (relative path, rows, bytes)
        self._writer: pq.ParquetWriter | None = None
        self._schema: pa.Schema | None = None
        self._rows = 0
        self._path = ""

    @property
    def rows(self) -> int:
        """Rows written so far (closed files and the open one)."""
        return sum(r for _, r, _ in self.files) + (self._rows if self._writer is not None else 0)

    def write(self, batch: pa.RecordBatch | pa.Table) -> None:
        if self._writer is not None and not batch.schema.equals(self._schema):
            self._close()
        offset = 0
        while offset < batch.num_rows:
            if self._writer is None:
                self._open(batch.schema)
            assert self._writer is not None
            take = min(batch.num_rows - offset, self.rows_per_file - self._rows)
            self._writer.write(batch.slice(offset, take), row_group_size=ROW_GROUP_ROWS)
            self._rows += take
            offset += take
            if self._rows >= self.rows_per_file:
                self._close()

    def write_empty(self, schema: pa.Schema) -> None:
        """An empty file that carries the schema (the first load of a table that landed no rows)."""
        self._open(schema)
        self._close()

    def _open(self, schema: pa.Schema) -> None:
        self._path = self.name(len(self.files))
        target = self.lake / self._path
        target.parent.mkdir(parents=True, exist_ok=True)
        self._writer = pq.ParquetWriter(target, schema, compression=COMPRESSION,
                                        use_dictionary=dictionary_columns(schema))
        self._schema = schema
        self._rows = 0

    def _close(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        self._writer = None
        durable(self.lake / self._path)  # on disk before the manifest that names it commits
        self.files.append((self._path, self._rows, (self.lake / self._path).stat().st_size))

    def close(self) -> list[tuple[str, int, int]]:
        self._close()
        return self.files

    def discard(self) -> None:
        """Remove every file written (a refused or failed load): nothing of it stays on disk."""
        if self._writer is not None:
            try:
                self._writer.close()
            finally:
                self._writer = None
                self.files.append((self._path, self._rows, 0))
        for path, _, _ in self.files:
            (self.lake / path).unlink(missing_ok=True)
        self.files = []


def durable(path: Path) -> None:
    """fsync a written file and its folder: after a power loss, a file a committed manifest names is there,
    whole (the manifest's own commit is the state store's: SQLite with synchronous=FULL)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


_STOP = object()  # the end of a Background's items


class Background:
    """Calls ``write`` with each item put, in order, on a thread of its own, so that a stage of a load
    (casting, encoding and compressing Parquet — work that releases the GIL) overlaps with reading the next
    batch. At most ``depth`` items wait: memory stays bounded. An error on the thread is raised by the next
    :meth:`put` or by :meth:`close`."""

    def __init__(self, write: Callable[[Any], None], depth: int = 2) -> None:
        self._write = write
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="kiban-lake-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self._error is None:
                try:
                    self._write(item)
                except BaseException as exc:  # handed to the loader's thread
                    self._error = exc

    def put(self, item: Any) -> None:
        if self._error is not None:
            self.close()
        self._queue.put(item)

    def close(self) -> None:
        """Wait until every batch is written; raise what went wrong on the writer's thread."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def dictionary_columns(schema: pa.Schema) -> list[str]:
    """The columns worth dictionary-encoding: text and bytes (codes, statuses, names repeat)."""
    return [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
            or pa.types.is_binary(f.type) or pa.types.is_dictionary(f.type)]


def remove_leftovers(lake: Path, source: str, table: str, known: Iterable[str]) -> list[str]:
    """Remove files of loads that never committed (killed, crashed): Parquet files no recorded load names,
    and staging folders. Call only while holding the table's collection lock. Returns what was removed."""
    keep = set(known)
    removed: list[str] = []
    for folder in (table_folder(lake, source, table), lake / QUARANTINE / source / table):
        if not folder.is_dir():
            continue
        for dirpath, _, filenames in os.walk(folder):
            for filename in filenames:
                full = Path(dirpath) / filename
                rel = full.relative_to(lake).as_posix()
                if rel not in keep:
                    full.unlink()
                    removed.append(rel)
    staging = lake / STAGING / source / table
    if staging.is_dir():
        for entry in staging.iterdir():
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.relative_to(lake).as_posix() + "/")
    return removed
