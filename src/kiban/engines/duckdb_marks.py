"""The fingerprints of plain tables, written a batch at a time.

A plain SQL model's table is published by its ``create or replace … as`` alone (``DuckDBEngine._publish_plain``).
That statement drops the old table's comment with the old data, so until its fingerprint is written the new table
carries none: ``published()`` does not know its version and the next run rebuilds it. It is never taken for
another version than its own. Writing that comment costs a commit (≈ 0.4 ms, 8% of a small model's build), so the
fingerprints of quick builds wait and are written together in one transaction:

- when ``BATCH`` are waiting, when the oldest has waited ``WAIT`` seconds by the time another build ends, or when
  a build took ``ALONE`` seconds or more (its own fingerprint goes at once: a slow build is worth keeping);
- always before the engine reads the fingerprints (``published()``) and before it closes (the snapshot that
  readers see carries them).

A process killed meanwhile leaves those tables whole and unmarked: the next run rebuilds them (at most ``BATCH``
quick builds, or ``WAIT`` seconds of them). A failed write is logged and leaves them the same way.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

import duckdb

log = logging.getLogger(__name__)

BATCH = 64
WAIT = 1.0
ALONE = 0.5


class Marks:
    """Fingerprints (``comment on table``) waiting to be written, and the writing of them."""

    def __init__(self) -> None:
        self._waiting: list[tuple[str, str]] = []  # (quoted table, its comment as an SQL literal)
        self._since = 0.0  # when the oldest waiting one was built (monotonic)
        self._lock = threading.Lock()

    def add(self, cur: Any, target: str, comment: str, took: float) -> None:
        """``target`` was just built (in ``took`` seconds) and published without its fingerprint (``comment``, an
        SQL literal); write it now with the others waiting, or later."""
        now = time.monotonic()
        with self._lock:
            if not self._waiting:
                self._since = now
            self._waiting.append((target, comment))
            due = len(self._waiting) >= BATCH or took >= ALONE or now - self._since >= WAIT
            batch = self._take() if due else []
        _write(cur, batch)

    def flush(self, cur: Any) -> None:
        """Write every fingerprint waiting (before they are read, and before the file is closed)."""
        with self._lock:
            batch = self._take()
        _write(cur, batch)

    def _take(self) -> list[tuple[str, str]]:
        batch, self._waiting = self._waiting, []
        return batch


def _write(cur: Any, batch: list[tuple[str, str]]) -> None:
    if not batch:
        return
    statements = "; ".join(f"comment on table {target} is {comment}" for target, comment in batch)
    try:
        cur.execute(f"begin transaction; {statements}; commit")
    except duckdb.Error:
        with contextlib.suppress(duckdb.Error):
            cur.execute("rollback")
        log.warning("writing the fingerprints of %d table(s) failed; the next run rebuilds them (%s)", len(batch),
                    ", ".join(t for t, _ in batch[:5]), exc_info=True)
