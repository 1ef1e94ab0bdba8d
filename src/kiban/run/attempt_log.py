"""A run's attempt records, committed in groups: one store transaction per short interval, not one per asset.

Each commit of the SQLite store waits for its log to reach the disk (``synchronous=full``): one per asset was
the largest part of kiban's own time per model (≈ 1–9 ms each, on the building thread). Here the building
thread only hands the row over; a flusher thread commits whatever has arrived, at most ``every`` seconds
after it arrived, and the run flushes the rest before it records its end.

The locks of the assets a run has finished go back in the same commits (``free``): other runs waiting for
an asset see it free at most ``every`` seconds after it was published, and the run pays one commit for both.

What a kill can cost: the attempts of the last ``every`` seconds are not in the history, and their locks are
still held — by a dead process, which ``holder_gone`` sees, so the next run takes them over. Nothing else — a
published table's truth is its fingerprint in the warehouse (the next run finds it fresh and records it
so), never the attempt row; and the run itself is reaped as abandoned, as before.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from kiban.store import Store
from kiban.store.store import LockRelease

log = logging.getLogger(__name__)
EVERY = 0.1  # seconds an attempt may wait for its commit (live views see it this much later)


class AttemptLog:
    """Attempt rows of one run on their way to the store (thread-safe)."""

    def __init__(self, store: Store, every: float = EVERY, run_id: str = "") -> None:
        self.store = store
        self.every = every
        self.run_id = run_id  # whose locks ``free`` hands back
        self._rows: list[dict[str, Any]] = []
        self._freed: list[str] = []  # lock names
        self._lock = threading.Lock()
        self._arrived = threading.Event()
        self._stop = threading.Event()
        self._closed = False
        self._error: Exception | None = None
        self._thread = threading.Thread(target=self._flusher, name="kiban-attempts", daemon=True)
        self._thread.start()

    def add(self, row: dict[str, Any]) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the run's attempt log is closed")
            self._rows.append(row)
        self._arrived.set()

    def free(self, names: list[str]) -> None:
        """Hand these locks (full names) back with the next commit."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the run's attempt log is closed")
            self._freed.extend(names)
        self._arrived.set()

    def flush(self) -> None:
        """Commit what has arrived (one transaction); raises the store's error, if any, once."""
        with self._lock:
            rows, self._rows = self._rows, []
            freed, self._freed = self._freed, []
        if rows or freed:
            try:
                if freed:
                    self.store.record_attempts(rows, LockRelease(self.run_id, freed))
                else:
                    self.store.record_attempts(rows)
            except Exception as exc:
                with self._lock:  # not lost: the next flush (or close) tries them again
                    self._rows[:0] = rows
                    self._freed[:0] = freed
                raise exc

    def close(self) -> None:
        """Stop the flusher and commit the rest; raises a store error the flusher met and could not recover."""
        with self._lock:
            self._closed = True
        self._stop.set()
        self._arrived.set()
        self._thread.join()
        self.flush()

    def _flusher(self) -> None:
        while True:
            self._arrived.wait()
            self._arrived.clear()
            with self._lock:
                if self._closed:
                    return
            self._stop.wait(self.every)  # let the next few finish: one commit for all of them
            try:
                self.flush()
            except Exception:  # kept for close(), which retries and raises
                log.warning("recording attempts failed; retried at the end of the run", exc_info=True)
