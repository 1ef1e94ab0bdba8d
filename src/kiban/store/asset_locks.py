"""Locks per asset: a run holds the assets it still has to write, not the whole project.

Each selected asset is a row ``asset:<project>:<key>`` in the ``locks`` table, taken all at once (all or
nothing, so two runs never deadlock on each other's halves) and released one by one as the run finishes each
asset. Two runs whose selections are disjoint hold no row in common and proceed; a run whose selection
overlaps another's waits only for the shared assets the other has not finished yet (``--wait``), or is refused
with their names, the run that holds them and when they should be free.

The project row ``run:<project>`` stays the *exclusive* lock of work that rewrites many assets behind the
runs' backs (backfills, replays, the worker coordinator): it is refused while any asset of the project is held,
and a run is refused while it is held. Every lock operation of a project first locks that row (``FOR UPDATE``
on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` serialises writers anyway), so the check and the take are one step.
A lock whose holder is gone (``holder_gone``) is taken over, like the project lock.

A SQLite store opened without SQLAlchemy (``Store.lite``) takes and frees them on that connection, with the same
steps in one ``begin immediate`` transaction (``kiban.store.lite``'s SQL); any other store through SQLAlchemy.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kiban.errors import RunLockedError
from kiban.store import lite
from kiban.store.store import HOST, Store, holder_gone, utcnow

POLL_SECONDS = 0.5


def project_lock(project: str) -> str:
    """The exclusive lock of the whole project."""
    return f"run:{project}"


def asset_lock(project: str, key: str) -> str:
    return f"asset:{project}:{key}"


@dataclass(frozen=True)
class Holder:
    """A live run holding some of the wanted assets (or the whole project: ``assets`` empty)."""

    run_id: str
    pid: int | None
    host: str | None
    since: datetime | None
    assets: tuple[str, ...]

    def describe(self) -> str:
        since = self.since.strftime("%Y-%m-%d %H:%M:%S UTC") if self.since else "?"
        what = f"still builds {', '.join(self.assets[:6])}{' …' if len(self.assets) > 6 else ''}" if self.assets \
            else "holds the whole project (a backfill, replay or worker coordinator)"
        return f"run {self.run_id} (pid {self.pid} on {self.host}, since {since}) {what}"


class AssetLocks:
    """The asset locks of one project in the state store."""

    def __init__(self, store: Store, project: str) -> None:
        self.store, self.project = store, project

    def acquire(self, run_id: str, keys: Sequence[str], wait: float = 0.0,
                on_wait: Callable[[list[Holder]], object] | None = None,
                eta: Callable[[list[Holder]], str | None] | None = None) -> None:
        """Take the locks of ``keys`` for ``run_id``, all at once; wait up to ``wait`` seconds for the shared
        ones (``on_wait`` hears once whom it waits for), else raise :class:`RunLockedError` naming them."""
        deadline = time.monotonic() + wait
        told = False
        while True:
            blockers = self._try(run_id, keys)
            while blockers is None:  # another run inserted one of the rows at the same moment: look again
                blockers = self._try(run_id, keys)
            if not blockers:
                return
            if time.monotonic() >= deadline:
                when = eta(blockers) if eta is not None else None
                raise RunLockedError(
                    "another run is working on what this run needs: " + "; ".join(b.describe() for b in blockers)
                    + (f" (expected free at about {when})" if when else ""),
                    "wait for it (pass --wait SECONDS to queue behind it: only the shared assets are waited for), "
                    "or select what it does not build")
            if on_wait is not None and not told:
                on_wait(blockers)
                told = True
            time.sleep(POLL_SECONDS)

    def names(self, keys: Iterable[str]) -> list[str]:
        """The lock names of these assets (for ``Store.record_attempts``'s ``release``)."""
        return [asset_lock(self.project, k) for k in keys]

    def release(self, run_id: str, keys: Iterable[str] | None = None) -> None:
        """Release ``keys`` (all the run's asset locks when None)."""
        if self.store.lite is not None:
            names = self.names(keys) if keys is not None else []
            if keys is not None and not names:
                return
            with self.store.lite_tx() as lconn:
                if keys is None:
                    lite.free_locks_like(lconn, run_id, asset_lock(self.project, "%"))
                else:
                    lite.free_locks(lconn, run_id, names)
            return
        from kiban.store.schema import locks

        query = locks.update().where(locks.c.run_id == run_id)
        if keys is not None:
            names = self.names(keys)
            if not names:
                return
            query = query.where(locks.c.name.in_(names))
        else:
            query = query.where(locks.c.name.like(asset_lock(self.project, "%")))
        with self.store._tx() as conn:
            conn.execute(query.values(run_id=None, pid=None, host=None))

    def held(self) -> dict[str, str]:
        """asset → the live run holding it."""
        now = utcnow()
        rows: list[Any]
        if self.store.lite is not None:
            with self.store.lite_read() as lconn:
                rows = [_Lock(*r) for r in lite.locks_like(lconn, asset_lock(self.project, "%"))]
        else:
            from kiban.store.schema import locks

            with self.store.engine.connect() as conn:
                rows = list(conn.execute(locks.select().where(locks.c.name.like(asset_lock(self.project, "%")),
                                                              locks.c.run_id.is_not(None))).all())
        prefix = len(asset_lock(self.project, ""))
        return {r.name[prefix:]: r.run_id for r in rows if not holder_gone(r.pid, r.host, r.heartbeat_at, now)}

    def _try(self, run_id: str, keys: Sequence[str]) -> list[Holder] | None:
        names = {asset_lock(self.project, k): k for k in keys}
        now = utcnow()
        if self.store.lite is not None:
            return self._try_lite(run_id, names, now)
        import sqlalchemy as sa

        from kiban.store.schema import locks

        try:
            with self.store._tx() as conn:
                guard = _guard(conn, self.project)
                if _live_other(guard, run_id, now):
                    return _holders([guard], {guard.name: ""}, run_id, now, whole=True)
                rows = {row.name: row for row in
                        conn.execute(locks.select().where(locks.c.name.in_(list(names))).with_for_update())}
                found = _holders(rows.values(), names, run_id, now)
                if found:
                    return found
                values = dict(run_id=run_id, pid=os.getpid(), host=HOST, acquired_at=now, heartbeat_at=now)
                taken = [n for n in names if n in rows]
                if taken:
                    conn.execute(locks.update().where(locks.c.name.in_(taken)).values(**values))
                fresh = [dict(name=n, **values) for n in names if n not in rows]
                if fresh:
                    conn.execute(locks.insert(), fresh)
        except sa.exc.IntegrityError:  # another run inserted one of the rows first (PostgreSQL): look again
            return None
        return []


    def _try_lite(self, run_id: str, names: dict[str, str], now: datetime) -> list[Holder]:
        """``_try`` on the store's ``lite`` connection: the same steps, in one ``begin immediate`` transaction
        (SQLite serialises writers: no other run inserts a row in between)."""
        with self.store.lite_tx() as conn:
            project = project_lock(self.project)
            found = lite.locks_named(conn, [project])
            if not found:
                lite.insert_free_lock(conn, project)
                found = lite.locks_named(conn, [project])
            guard = _Lock(*found[0])
            if _live_other(guard, run_id, now):
                return _holders([guard], {guard.name: ""}, run_id, now, whole=True)
            holders = _holders([_Lock(*f) for f in lite.locks_named(conn, list(names))], names, run_id, now)
            if holders:
                return holders
            lite.take_locks(conn, list(names), run_id, (os.getpid(), HOST), now)
        return []


@dataclass(frozen=True)
class _Lock:
    """A ``locks`` row read through ``lite`` (``lite.LOCK_COLUMNS``), times parsed as SQLAlchemy reads them."""

    name: str
    run_id: str | None
    pid: int | None
    host: str | None
    acquired: str | None
    heartbeat: str | None

    @property
    def acquired_at(self) -> datetime | None:
        return lite.parsed(self.acquired)

    @property
    def heartbeat_at(self) -> datetime | None:
        return lite.parsed(self.heartbeat)


def _guard(conn: Any, project: str) -> Any:
    """The project's row, locked for this transaction (created free when missing)."""
    from kiban.store.schema import locks

    name = project_lock(project)
    row = conn.execute(locks.select().where(locks.c.name == name).with_for_update()).first()
    if row is None:
        conn.execute(locks.insert().values(name=name, run_id=None))
        row = conn.execute(locks.select().where(locks.c.name == name).with_for_update()).first()
    return row


def _live_other(row: Any, run_id: str, now: datetime) -> bool:
    """The lock ``row`` is held by another run whose process is alive."""
    return row.run_id is not None and row.run_id != run_id and not holder_gone(row.pid, row.host, row.heartbeat_at, now)


def _holders(rows: Iterable[Any], names: dict[str, str], run_id: str, now: datetime,
             whole: bool = False) -> list[Holder]:
    """The live runs other than ``run_id`` that hold any of the lock ``rows`` (either door's), each with the assets
    it holds (``whole``: the project's guard, no asset named); the same decision for the SQLAlchemy and the
    ``lite`` path."""
    held: dict[str, list[str]] = {}
    first: dict[str, Any] = {}
    for row in rows:
        if _live_other(row, run_id, now):
            held.setdefault(row.run_id, []).append(names[row.name])
            first.setdefault(row.run_id, row)
    return [Holder(h, first[h].pid, first[h].host, first[h].acquired_at, () if whole else tuple(sorted(assets)))
            for h, assets in held.items()]
