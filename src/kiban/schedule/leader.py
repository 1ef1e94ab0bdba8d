"""Leader election over the state store: of all schedulers of a project, the one holding the lease is active.

The lease is one row of ``scheduler_leases``: holder, pid, host, expires_at. The leader renews it every
few seconds (``scheduler.renew``, default 5 s); it lasts ``scheduler.lease`` (default 30 s). Another
scheduler takes it over when it has expired — or at once when the holder ran on this host and its
process is gone. Each attempt is one transaction (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: the row is
locked with ``SELECT … FOR UPDATE``, and two first-ever inserts race on the primary key), so two
schedulers never both believe they hold it — as long as their clocks agree to within the lease.

Even so, the leader never relies on the lease alone for correctness: a tick is claimed by inserting
its unique row into ``job_ticks``, so a tick cannot run twice even if two leaders overlapped.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from kiban.clock import Clock
from kiban.store import Store
from kiban.store.schema import scheduler_leases
from kiban.store.store import HOST, pid_alive


@dataclass(frozen=True)
class LeaseHolder:
    holder: str
    pid: int | None
    host: str | None
    acquired_at: datetime
    expires_at: datetime


class Leader:
    """One scheduler's side of the election for ``scheduler:<project>``."""

    def __init__(self, store: Store, project: str, clock: Clock, lease: float = 30.0) -> None:
        self.store = store
        self.name = f"scheduler:{project}"
        self.clock = clock
        self.lease = timedelta(seconds=lease)
        self.holder = uuid.uuid4().hex
        self.pid = os.getpid()

    def acquire(self) -> bool:
        """Take or renew the lease; True when this scheduler is the leader now."""
        now = self.clock.now()
        values = dict(holder=self.holder, pid=self.pid, host=HOST, renewed_at=now, expires_at=now + self.lease)
        try:
            with self.store.engine.begin() as conn:
                row = conn.execute(scheduler_leases.select().where(scheduler_leases.c.name == self.name)
                                   .with_for_update()).first()
                if row is None:
                    conn.execute(scheduler_leases.insert().values(name=self.name, acquired_at=now, **values))
                    return True
                if row.holder != self.holder and row.expires_at > now and pid_alive(row.pid, row.host) is not False:
                    return False
                if row.holder != self.holder:
                    values["acquired_at"] = now
                conn.execute(scheduler_leases.update().where(scheduler_leases.c.name == self.name).values(**values))
                return True
        except sa.exc.IntegrityError:  # another scheduler inserted the first lease at the same moment
            return False
        except sa.exc.OperationalError:  # the store is busy or unreachable: not the leader this time
            return False

    def release(self) -> None:
        """Give the lease up (on a clean stop) so another scheduler takes over at once."""
        with self.store.engine.begin() as conn:
            conn.execute(scheduler_leases.update()
                         .where(scheduler_leases.c.name == self.name, scheduler_leases.c.holder == self.holder)
                         .values(expires_at=self.clock.now() - timedelta(seconds=1)))

    def current(self) -> LeaseHolder | None:
        """Who holds the lease (it may have expired)."""
        with self.store.engine.connect() as conn:
            row = conn.execute(scheduler_leases.select().where(scheduler_leases.c.name == self.name)).first()
        if row is None:
            return None
        return LeaseHolder(row.holder, row.pid, row.host, row.acquired_at, row.expires_at)
