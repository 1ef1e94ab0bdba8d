"""An entry lands: a durable file in the source's landing folder, then a load of the lake table.

Why a file first: the file is the entry's receipt. It is written under a temporary name, fsync'd, and linked to
``<submission>.parquet`` — a name the submission keeps when it is sent again (a retry after a lost answer, a
double tap) — so a submission is either wholly there or not at all, and never twice: the link fails when the
name exists. Only then is the person told "received". The load that follows is an ordinary load of the files
source (kiban.collect): each file is consumed exactly once by a committed manifest, rows failing the table's
declared types are quarantined, and a load killed half-way leaves the file to the next one. Nothing is lost
or doubled wherever the server is killed: before the link the person was never told "received" (and sends
again), after it the next load takes the file.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiban.collect.connector import SourceError
from kiban.collect.load import load_table
from kiban.errors import UsageError
from kiban.forms.spec import Form
from kiban.status import LoadStatus

if TYPE_CHECKING:
    import pyarrow as pa

    from kiban.collect.landing import LoadResult
    from kiban.project import Project
    from kiban.store import Store

_SUBMISSION = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
LOAD_WAIT = 5.0  # seconds an entry waits for a running load of its table before leaving the file to the next


@dataclass
class Landed:
    submission: str
    rows: int
    duplicate: bool  # this submission had already been received: nothing new was written
    loaded: bool  # a load committed after the file was written (False: the next load will take it)
    load_id: str | None = None
    quarantined: int = 0


def new_submission() -> str:
    return secrets.token_urlsafe(18)


def check_submission(submission: str) -> str:
    if not _SUBMISSION.match(submission):
        raise UsageError("the submission id must be 8 to 64 letters, digits, - or _",
                         "reload the form: each form carries its own id")
    return submission


def _arrow_type(kind: str) -> pa.DataType:
    import pyarrow as pa

    return {"text": pa.string(), "integer": pa.int64(), "number": pa.float64(), "date": pa.date32(),
            "datetime": pa.timestamp("us"), "boolean": pa.bool_()}[kind]


def entry_table(form: Form, rows: list[dict[str, Any]], who: str, submission: str, now: datetime,
                numbers: list[int] | None = None) -> pa.Table:
    import pyarrow as pa

    columns: dict[str, pa.Array] = {}
    for spec in form.config.fields:
        columns[spec.name] = pa.array([r.get(spec.name) for r in rows], _arrow_type(spec.type))
    count = len(rows)
    columns["_entered_by"] = pa.array([who] * count, pa.string())
    columns["_entered_at"] = pa.array([now] * count, pa.timestamp("us", tz="UTC"))
    columns["_submission"] = pa.array([submission] * count, pa.string())
    columns["_row"] = pa.array(numbers or list(range(1, count + 1)), pa.int64())
    return pa.table(columns)


def write_entry(form: Form, table: pa.Table, submission: str) -> tuple[Path, bool]:
    """Write ``table`` as ``<submission>.parquet`` in the form's landing folder, durably and at most once.
    Returns (path, duplicate)."""
    import pyarrow.parquet as pq

    check_submission(submission)
    folder = form.folder
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{submission}.parquet"
    if final.exists():
        return final, True
    temporary = folder / f".{submission}.{secrets.token_hex(4)}.tmp"
    try:
        pq.write_table(table, temporary, compression="zstd")
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        try:
            os.link(temporary, final)  # fails if the name exists: a submission lands once
        except FileExistsError:
            return final, True
        _sync_folder(folder)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
    return final, False


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_pending(project: Project, store: Store, form: Form, wait: float = LOAD_WAIT) -> LoadResult | None:
    """Load the table's landed entries now; None when another load kept it busy for ``wait`` seconds (it, or
    the next one, takes the files)."""
    deadline = time.monotonic() + wait
    delay = 0.02
    while True:
        try:
            return load_table(project, form.source, form.table, store)
        except SourceError as exc:
            if "another load" not in exc.message or time.monotonic() + delay > deadline:
                if "another load" in exc.message:
                    return None
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.25)


def land(project: Project, store: Store, form: Form, rows: list[dict[str, Any]], who: str, submission: str,
         *, numbers: list[int] | None = None, wait: float = LOAD_WAIT) -> Landed:
    """Land validated ``rows`` entered by ``who`` as one submission, then load them into the lake table."""
    if not rows:
        raise UsageError("nothing to land: every row was refused", "fix the refused rows and send them again")
    table = entry_table(form, rows, who, submission, datetime.now(UTC), numbers)
    _, duplicate = write_entry(form, table, submission)
    result = load_pending(project, store, form, wait)
    if result is None:
        return Landed(submission, len(rows), duplicate, False)
    record = result.record
    return Landed(submission, len(rows), duplicate, record.status == LoadStatus.COMMITTED, record.load_id,
                  record.rows_quarantined)
