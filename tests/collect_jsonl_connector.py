"""A small connector for the collection tests, written against the contract (kiban.collect.connector).

It reads JSON-lines files (``path``: a file or a folder of ``*.jsonl``), one row per line, in batches of
``ctx.batch_rows``; a line that is not a JSON object is quarantined with its file and line. Incremental
tables get only rows whose cursor is greater than ``ctx.since``. A folder is a landing folder: files the
manifest already holds are skipped. ``sleep`` waits between batches (for tests that kill a load midway).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from kiban.collect.connector import BadRow, LandedFile, ReadContext

NAME = "collect_jsonl_connector"


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str
    sleep: float = 0.0


def check(ctx: ReadContext, options: Options) -> None:
    if not (ctx.project_root / options.path).exists():
        raise ctx.error(f"path {options.path} does not exist")


def _comparable(value: Any, since: Any) -> Any:
    if isinstance(since, datetime) and isinstance(value, str):
        return datetime.fromisoformat(value)
    return value


def _batch(rows: list[dict[str, Any]]) -> pa.RecordBatch:
    names = list(dict.fromkeys(k for row in rows for k in row))  # every key of the batch, in order seen
    return pa.RecordBatch.from_pylist(rows, schema=pa.Table.from_pylist(
        [{n: row.get(n) for n in names} for row in rows]).schema)


def read(ctx: ReadContext, options: Options) -> Iterator[pa.RecordBatch]:
    target = ctx.project_root / options.path
    files = sorted(target.glob("*.jsonl")) if target.is_dir() else [target]
    rows: list[dict[str, Any]] = []
    for file in files:
        data = file.read_bytes()
        landed = LandedFile(str(file.relative_to(ctx.project_root)), len(data), hashlib.sha256(data).hexdigest())
        if target.is_dir() and ctx.landed(landed):
            continue
        for number, line in enumerate(data.decode().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                assert isinstance(row, dict)
            except (ValueError, AssertionError):
                ctx.quarantine([BadRow(f"{file.name}:{number}", line, "not a JSON object", file=file.name,
                                       line=number)])
                continue
            cursor = ctx.table.cursor
            if cursor and ctx.since is not None and _comparable(row.get(cursor), ctx.since) <= ctx.since:
                continue
            rows.append(row)
            if len(rows) >= ctx.batch_rows:
                yield _batch(rows)
                rows = []
                if options.sleep:
                    time.sleep(options.sleep)
        if target.is_dir():
            ctx.add_file(landed)
    if rows:
        yield _batch(rows)
