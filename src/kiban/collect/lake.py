"""The lake's layout on disk, the Parquet writer that rolls files, and the removal of dead loads' leftovers.

::

    lake/SOURCE/TABLE/load_date=YYYY-MM-DD/LOAD_ID[-N].parquet   landed rows (N: the 2nd, 3rd … file of a load)
    lake/_quarantine/SOURCE/TABLE/LOAD_ID.parquet                rows refused, with location and reason
    lake/_staging/SOURCE/TABLE/LOAD_ID/                          a running load's typed batches (deleted after)

Files are written where they end up, but nobody reads a file until a manifest in the state store
names it: lake views list committed files explicitly.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

QUARANTINE = "_quarantine"
STAGING = "_staging"
ROWS_PER_FILE = 1_000_000  # a load rolls to a new file after this many rows
COMPRESSION = "snappy"


def table_folder(lake: Path, source: str, table: str) -> Path:
    return lake / source / table


def data_file(source: str, table: str, load_id: str, loaded_at: datetime, number: int) -> str:
    """The path (relative to the lake folder) of a load's ``number``-th data file (0 = the first)."""
    suffix = f"-{number + 1}" if number else ""
    return f"{source}/{table}/load_date={loaded_at:%Y-%m-%d}/{load_id}{suffix}.parquet"


def quarantine_file(source: str, table: str, load_id: str) -> str:
    return f"{QUARANTINE}/{source}/{table}/{load_id}.parquet"


def staging_folder(lake: Path, source: str, table: str, load_id: str) -> Path:
    return lake / STAGING / source / table / load_id


class RollingWriter:
    """Writes record batches to ``data_file(…, n)`` files, starting a new file every ``rows_per_file`` rows."""

    def __init__(self, lake: Path, name: Callable[[int], str], rows_per_file: int = ROWS_PER_FILE) -> None:
        self.lake, self.name, self.rows_per_file = lake, name, rows_per_file
        self.files: list[tuple[str, int, int]] = []  # (relative path, rows, bytes)
        self._writer: pq.ParquetWriter | None = None
        self._rows = 0
        self._path = ""

    def write(self, batch: pa.RecordBatch) -> None:
        offset = 0
        while offset < batch.num_rows:
            if self._writer is None:
                self._open(batch.schema)
            assert self._writer is not None
            take = min(batch.num_rows - offset, self.rows_per_file - self._rows)
            self._writer.write_batch(batch.slice(offset, take))
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
        self._writer = pq.ParquetWriter(target, schema, compression=COMPRESSION)
        self._rows = 0

    def _close(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        self._writer = None
        self.files.append((self._path, self._rows, (self.lake / self._path).stat().st_size))

    def close(self) -> list[tuple[str, int, int]]:
        self._close()
        return self.files


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
