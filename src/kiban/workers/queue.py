"""The run queue: the assets of a distributed run, in the PostgreSQL state store, claimed by workers.

Every row moves ``waiting → ready → running → success | failed`` (or ``skipped`` / ``cancelled``). Workers
claim a ready row with ``SELECT … FOR UPDATE SKIP LOCKED``, so two workers never take the same row and
never wait for each other. The holder renews the row's heartbeat; a row whose heartbeat expired (its worker
was killed, its machine lost) is made ready again and another worker takes it. Finishing a row readies its
children in the same transaction, so downstream work starts at once.

Time is the store server's: heartbeats and lease expiry use PostgreSQL's ``now()``, never a client's clock, so a
worker whose clock runs ahead (or behind) cannot steal (or keep) a row early. Every claim takes a new fencing
token (a sequence); the warehouse publishes only for the newest token of an asset (``engines``: ``claim_fence``),
so a worker paused past its lease can never publish once another has taken its row over.

Why finishing cannot lose a child: the finisher locks the waiting children (``FOR UPDATE``) *after* writing
its own row, then reads the inputs' statuses in a new statement. Two parents finishing at once serialise
on the child's row lock, and the second one — reading after the first committed — sees both successes.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from kiban.engines.base import FENCED, Fenced
from kiban.errors import ConfigError
from kiban.status import QUEUE_FINISHED, QueueStatus, RunStatus, WorkerStatus
from kiban.store import Store, utcnow
from kiban.store.schema import FENCE_TOKENS, run_queue, runs, workers
from kiban.walk import reach, reverse

TERMINAL = QUEUE_FINISHED
COLLECT = "collect:"  # a collection row's fingerprint starts so: the worker loads a source table, builds nothing
REFUSING = WorkerStatus.REFUSING  # a worker's status while its project differs from the queued runs'


def project_version(graph: Any) -> str:
    """A hash of every model's SQL: what a worker must share with the coordinator to build the run's assets."""
    import hashlib

    text = "\n".join(f"{key}={code}" for key, code in sorted(graph.sql_hashes.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def collect_code(project: Any, key: str) -> str:
    """What a worker must share with the coordinator to load ``key``: its source's declaration (type, url
    reference, options) and the table's — a hash, so two copies of the project agree or the worker refuses."""
    import hashlib

    source, table = project.source_tables()[key]
    spec = project.sources[source]
    text = spec.model_dump_json(exclude={"tables"}) + "\n" + spec.tables[table].model_dump_json()
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def server_now() -> Any:
    """The store server's clock, as the naive UTC the queue's columns hold."""
    return sa.func.timezone("UTC", sa.func.now())


def _seconds(value: float) -> Any:
    return sa.func.make_interval(0, 0, 0, 0, 0, 0, value)


def worker_timeouts(store: Store, lease: float) -> None:
    """``lock_timeout``, ``statement_timeout`` and ``idle_in_transaction_session_timeout`` on a worker's store
    connections: a queue statement that waits longer than a lease is pointless (its row is someone else's by then)
    and must not hang the worker; and a worker paused inside a store transaction (a load's commit holds its claim's
    queue row locked while it checks the fence) must not hold that row past its lease — the takeover skips locked
    rows, so the claim could never pass to another worker and the run would wait for the paused one to wake. The
    server ends such a session after a lease; the woken worker finds its connection gone and commits nothing."""
    limit = f"{max(1000, int(lease * 1000))}ms"

    @sa.event.listens_for(store.engine, "connect")
    def _set(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cur:
            cur.execute(f"set lock_timeout = '{limit}'")
            cur.execute(f"set statement_timeout = '{limit}'")
            cur.execute(f"set idle_in_transaction_session_timeout = '{limit}'")
        dbapi_connection.commit()

    store.engine.dispose()  # connections opened before (the migration's) get the settings too


@dataclass(frozen=True)
class Claim:
    """A row a worker holds: build ``asset`` for ``run_id`` so that it carries ``fingerprint``."""

    run_id: str
    asset: str
    fingerprint: str
    code: str
    claims: int
    token: int = 0  # the fencing token of this claim


@dataclass(frozen=True)
class QueueRow:
    asset: str
    status: str
    worker: str | None
    claims: int
    claimed_at: datetime | None
    finished_at: datetime | None
    rows: int | None
    error: str | None


class RunQueue:
    """The queue tables of one state store. Needs PostgreSQL: SQLite has no ``SKIP LOCKED``."""

    def __init__(self, store: Store) -> None:
        if store.engine.dialect.name != "postgresql":
            raise ConfigError("several workers need a PostgreSQL state store (SQLite cannot share a queue between "
                              "processes and machines)",
                              "set `state: postgresql://…` (or env:NAME) in kiban.yml")
        self.store = store
        self.engine = store.engine

    # -- the coordinator's side -------------------------------------------------------------------
    def enqueue(self, run_id: str, project: str, items: dict[str, tuple[list[str], str, str]],
                version: str | None = None) -> None:
        """Add a run's assets: key → (inputs within the run, fingerprint, code hash); ``version``: the
        coordinator's project version (``project_version``), which a worker must have to claim them."""
        now = utcnow()
        rows = [dict(run_id=run_id, asset=key, project=project,
                     status=QueueStatus.WAITING if deps else QueueStatus.READY,
                     deps=json.dumps(sorted(deps)), fingerprint=fingerprint, code=code, claims=0,
                     enqueued_at=now, ready_at=None if deps else now, project_version=version)
                for key, (deps, fingerprint, code) in items.items()]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(run_queue.insert(), rows)

    def rows(self, run_id: str) -> dict[str, QueueRow]:
        with self.engine.connect() as conn:
            found = conn.execute(run_queue.select().where(run_queue.c.run_id == run_id)).all()
        return {r.asset: QueueRow(r.asset, r.status, r.worker, r.claims, r.claimed_at, r.finished_at, r.rows,
                                  r.error) for r in found}

    def cancel(self, run_id: str) -> None:
        """Nothing more of this run starts; what is running finishes (or is interrupted by its worker)."""
        with self.engine.begin() as conn:
            conn.execute(run_queue.update().where(run_queue.c.run_id == run_id,
                                                  run_queue.c.status.in_((QueueStatus.WAITING, QueueStatus.READY)))
                         .values(status=QueueStatus.CANCELLED, finished_at=utcnow(), error="the run was cancelled"))

    def live_workers(self, project: str, lease: float, refusing: bool = False) -> int:
        """Workers of ``project`` alive within ``lease`` (by the server's clock); ``refusing``: count those whose
        project differs from the queued runs' instead."""
        status = (workers.c.status == REFUSING) if refusing \
            else workers.c.status.notin_((WorkerStatus.STOPPED, REFUSING))
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(workers).where(
                workers.c.project == project, status,
                workers.c.heartbeat_at >= server_now() - _seconds(lease))).scalar() or 0)

    # -- both sides ------------------------------------------------------------------------------
    def requeue_expired(self, project: str, lease: float) -> list[tuple[str, str, str | None]]:
        """Rows whose worker stopped heartbeating for ``lease`` seconds become ready again: (run, asset, worker)."""
        with self.engine.begin() as conn:  # the server's clock decides, not this process's
            expired = conn.execute(
                run_queue.select().where(run_queue.c.project == project, run_queue.c.status == QueueStatus.RUNNING,
                                         run_queue.c.heartbeat_at < server_now() - _seconds(lease))
                .with_for_update(skip_locked=True)).all()
            for row in expired:
                conn.execute(run_queue.update().where(run_queue.c.run_id == row.run_id,
                                                      run_queue.c.asset == row.asset).values(
                    status=QueueStatus.READY, ready_at=server_now(),
                    error=f"worker {row.worker} stopped heartbeating; the asset was queued again"))
        return [(r.run_id, r.asset, r.worker) for r in expired]

    # -- the worker's side -----------------------------------------------------------------------
    def register(self, worker_id: str, project: str, pid: int) -> None:
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(workers.delete().where(workers.c.worker_id == worker_id))
            conn.execute(workers.insert().values(worker_id=worker_id, project=project, host=socket.gethostname(),
                                                 pid=pid, status=WorkerStatus.IDLE, started_at=now, heartbeat_at=now,
                                                 built=0))

    def unregister(self, worker_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(workers.update().where(workers.c.worker_id == worker_id)
                         .values(status=WorkerStatus.STOPPED, run_id=None, asset=None, heartbeat_at=utcnow()))

    def heartbeat(self, worker_id: str) -> None:
        """Renew the worker and every row it holds (stamped with the server's clock)."""
        now = server_now()
        with self.engine.begin() as conn:
            conn.execute(workers.update().where(workers.c.worker_id == worker_id).values(heartbeat_at=now))
            conn.execute(run_queue.update().where(run_queue.c.worker == worker_id,
                                                  run_queue.c.status == QueueStatus.RUNNING)
                         .values(heartbeat_at=now))

    def claim(self, project: str, worker_id: str, version: str | None = None) -> Claim | None:
        """Take the oldest ready row of a running run of ``project`` queued for the project ``version`` this
        worker has, or None when there is none. The claim carries a new fencing token."""
        now = server_now()
        live = sa.select(runs.c.run_id).where(runs.c.run_id == run_queue.c.run_id, runs.c.status == RunStatus.RUNNING)
        mine = sa.or_(run_queue.c.project_version.is_(None), run_queue.c.project_version == version) \
            if version is not None else sa.true()
        with self.engine.begin() as conn:
            row = conn.execute(
                run_queue.select().where(run_queue.c.project == project, run_queue.c.status == QueueStatus.READY,
                                         mine, sa.exists(live))
                .order_by(run_queue.c.ready_at, run_queue.c.asset).limit(1)
                .with_for_update(skip_locked=True, of=run_queue)).first()
            if row is None:
                return None
            token = int(conn.execute(sa.select(FENCE_TOKENS.next_value())).scalar_one())
            conn.execute(run_queue.update().where(run_queue.c.run_id == row.run_id, run_queue.c.asset == row.asset)
                         .values(status=QueueStatus.RUNNING, worker=worker_id, claims=row.claims + 1, claimed_at=now,
                                 heartbeat_at=now, error=None, token=token))
            conn.execute(workers.update().where(workers.c.worker_id == worker_id).values(
                status=WorkerStatus.BUSY, run_id=row.run_id, asset=row.asset, heartbeat_at=now))
        return Claim(row.run_id, row.asset, row.fingerprint, row.code, row.claims + 1, token)

    def foreign_runs(self, project: str, version: str) -> list[str]:
        """Running runs of ``project`` with ready rows queued for another project version than ``version``."""
        live = sa.select(runs.c.run_id).where(runs.c.run_id == run_queue.c.run_id, runs.c.status == RunStatus.RUNNING)
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(
                sa.select(run_queue.c.run_id).distinct().where(
                    run_queue.c.project == project, run_queue.c.status == QueueStatus.READY,
                    run_queue.c.project_version.is_not(None), run_queue.c.project_version != version,
                    sa.exists(live))).all()]

    def set_status(self, worker_id: str, status: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(workers.update().where(workers.c.worker_id == worker_id).values(
                status=status, heartbeat_at=server_now()))

    @staticmethod
    def check_fence(conn: sa.Connection, claim: Claim, worker_id: str) -> None:
        """Inside the caller's transaction (a load's manifest commit): raise ``Fenced`` unless ``worker_id`` still
        holds ``claim`` — the row running under its token. The row stays locked until that transaction ends, so
        a takeover waits for the commit or finds it done; never a commit after a takeover."""
        row = conn.execute(sa.select(run_queue.c.status, run_queue.c.token, run_queue.c.worker).where(
            run_queue.c.run_id == claim.run_id, run_queue.c.asset == claim.asset).with_for_update()).first()
        if row is None or row.status != QueueStatus.RUNNING or row.token != claim.token or row.worker != worker_id:
            now = "none" if row is None else f"{row.token}, {row.status}"
            raise Fenced(f"{FENCED}{claim.asset}: another worker took this claim over (fencing token {claim.token}, "
                         f"now {now}): its load commits nothing")

    def release(self, claim: Claim, worker_id: str, reason: str) -> None:
        """Give a claimed row back (ready again) without an outcome: this worker could not fence it."""
        with self.engine.begin() as conn:
            conn.execute(run_queue.update().where(
                run_queue.c.run_id == claim.run_id, run_queue.c.asset == claim.asset,
                run_queue.c.status == QueueStatus.RUNNING, run_queue.c.token == claim.token).values(
                status=QueueStatus.READY, ready_at=server_now(), error=reason))
            conn.execute(workers.update().where(workers.c.worker_id == worker_id).values(
                status=WorkerStatus.IDLE, run_id=None, asset=None, heartbeat_at=server_now()))

    def finish(self, claim: Claim, worker_id: str, status: str, rows: int | None = None,
               error: str | None = None) -> tuple[bool, list[str]]:
        """Record the outcome of a claim. Returns (whether this worker still held it, assets now skipped).

        A worker that was presumed dead and lost its row records nothing: the row belongs to its new holder.
        On success the children whose inputs all succeeded become ready; on failure everything downstream
        still waiting is skipped.
        """
        now = utcnow()
        skipped: list[str] = []
        key = (run_queue.c.run_id == claim.run_id)
        with self.engine.begin() as conn:
            held = conn.execute(run_queue.update().where(
                key, run_queue.c.asset == claim.asset, run_queue.c.status == QueueStatus.RUNNING,
                run_queue.c.worker == worker_id, run_queue.c.token == claim.token).values(
                status=status, finished_at=now, rows=rows, error=error)).rowcount
            conn.execute(workers.update().where(workers.c.worker_id == worker_id).values(
                status=WorkerStatus.IDLE, run_id=None, asset=None, heartbeat_at=now,
                built=workers.c.built + (1 if held else 0)))
            if not held:
                return False, []
            waiting = conn.execute(run_queue.select().where(key, run_queue.c.status == QueueStatus.WAITING)
                                   .with_for_update()).all()
            if status == QueueStatus.SUCCESS:
                statuses = dict(conn.execute(sa.select(run_queue.c.asset, run_queue.c.status).where(key)).all())
                for row in waiting:
                    deps = json.loads(row.deps)
                    if claim.asset in deps and all(statuses.get(d) == QueueStatus.SUCCESS for d in deps):
                        conn.execute(run_queue.update().where(key, run_queue.c.asset == row.asset)
                                     .values(status=QueueStatus.READY, ready_at=now))
            else:
                skipped = _downstream(claim.asset, {r.asset: json.loads(r.deps) for r in waiting})
                reason = f"upstream {claim.asset} {'failed' if status == QueueStatus.FAILED else 'was ' + status}"
                if skipped:
                    conn.execute(run_queue.update().where(key, run_queue.c.asset.in_(skipped)).values(
                        status=QueueStatus.SKIPPED if status != QueueStatus.CANCELLED else QueueStatus.CANCELLED,
                        finished_at=now, error=reason))
        return True, skipped


def _downstream(asset: str, waiting: dict[str, Any]) -> list[str]:
    """Waiting rows that depend on ``asset`` directly or through other waiting rows."""
    return sorted(reach(asset, reverse(waiting)))
