"""Admission control for console queries, shared by every process that serves one project.

Several ``kiban serve`` processes (or uvicorn workers) and CLI consoles on one project share the machine, so
they share one limit: a query holds a *slot*, an exclusive ``flock`` on one of ``total`` files under
``.kiban/console/``, and one of its person's ``per_user`` slots. Taking a slot never waits: when all are held
the query is answered at once "busy, try again". The operating system releases a slot when its holder closes
it or dies, so a killed server never leaks one. Where ``fcntl`` is missing (Windows) the limit is per process.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from kiban.errors import KibanError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class ConsoleBusy(KibanError):
    """Too many console queries run at once (on this project, or of this person): try again in a moment."""

    exit_code = 3


def _busy_everyone(total: int) -> ConsoleBusy:
    return ConsoleBusy(f"the console is busy ({total} queries are running)", "try again in a moment")


def _busy_person(user: str, per_user: int) -> ConsoleBusy:
    return ConsoleBusy(f"{user} already has {per_user} queries running",
                       "wait for one of them to finish, then try again")


class Admission:
    """Slots under ``folder`` (created 0700)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._local = _LocalSlots()

    @contextlib.contextmanager
    def slot(self, user: str, total: int, per_user: int) -> Iterator[None]:
        """Hold one of ``total`` slots and one of ``user``'s ``per_user`` for the block; ConsoleBusy at once
        when there is none free."""
        if fcntl is None:
            with self._local.slot(user, total, per_user):
                yield
            return
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        held = self._grab("query", total)
        if held is None:
            raise _busy_everyone(total)
        try:
            person = self._grab("user-" + hashlib.sha256(user.encode()).hexdigest()[:16], per_user)
            if person is None:
                raise _busy_person(user, per_user)
            try:
                yield
            finally:
                os.close(person)
        finally:
            os.close(held)

    def running(self, total: int) -> int:
        """How many of the first ``total`` slots are held now (by any process)."""
        if fcntl is None or not self.folder.exists():
            return self._local.running
        count = 0
        for n in range(total):
            path = self.folder / f"query-{n}.lock"
            if not path.exists():
                continue
            fd = os.open(path, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                count += 1
            finally:
                os.close(fd)
        return count

    def _grab(self, name: str, count: int) -> int | None:
        assert fcntl is not None
        for n in range(count):
            fd = os.open(self.folder / f"{name}-{n}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # each open is its own lock: threads count too
            except BlockingIOError:
                os.close(fd)
                continue
            except BaseException:
                os.close(fd)
                raise
            return fd
        return None


class _LocalSlots:
    """The per-process fallback: counters under a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.running = 0
        self.by_user: dict[str, int] = {}

    @contextlib.contextmanager
    def slot(self, user: str, total: int, per_user: int) -> Iterator[None]:
        with self._lock:
            if self.running >= total:
                raise _busy_everyone(total)
            if self.by_user.get(user, 0) >= per_user:
                raise _busy_person(user, per_user)
            self.running += 1
            self.by_user[user] = self.by_user.get(user, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self.running -= 1
                left = self.by_user.get(user, 1) - 1
                if left:
                    self.by_user[user] = left
                else:
                    self.by_user.pop(user, None)
