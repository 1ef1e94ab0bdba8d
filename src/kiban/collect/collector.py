"""The collection step of a run: load the selected source tables in parallel, each with its retry and
timeout policy, record every attempt like a build's, and report through the run's events.

A table's attempt that times out or is cancelled stops between two batches; nothing it wrote is
committed, so the next attempt (or the next load) simply starts over from the committed cursor.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from kiban.collect import shared_lake
from kiban.collect.connector import SourceError
from kiban.collect.load import LoadCancelled, LoadFailed, LoadResult, load_claimed, load_table
from kiban.collect.manifest import Fence, Manifests
from kiban.collect.secrets import redact
from kiban.diskfull import disk_full, is_disk_full
from kiban.engines.base import FENCED, CollectedTable, Fenced
from kiban.run.events import Event, Listener
from kiban.status import AttemptStatus
from kiban.store import Store, utcnow

if TYPE_CHECKING:
    from kiban.project import Project


log = logging.getLogger(__name__)


@dataclass
class Collected:
    """What the collection of one table came to (after its retries)."""

    asset: str
    status: str  # success, failed, cancelled
    attempts: int = 0
    rows: int | None = None  # rows landed
    error: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    watermark: date | None = None
    result: LoadResult | None = None
    notes: list[str] = field(default_factory=list)


# (asset) → (retries, retry delay in seconds, timeout in seconds or None)
PolicyFor = Callable[[str], tuple[int, float, float | None]]


def collected_tables(project: Project, store: Store) -> dict[str, CollectedTable]:
    """The committed files of every collected table, for the engine's lake views (one store read)."""
    tables = project.source_tables()
    states = Manifests(store).states(project.name, list(tables))
    out: dict[str, CollectedTable] = {}
    for key, (source, name) in tables.items():
        spec = project.sources[source].tables[name]
        state = states.get(key)
        out[key] = CollectedTable(version=state.latest_load if state else "",
                                  files=shared_lake.snapshot_files(project, state) if state else (),
                                  primary_key=spec.primary_key, cursor=spec.cursor, deletes=spec.detect_deletes,
                                  history=spec.history == "scd2", changes=state.changes if state else "")
    return out


@dataclass(frozen=True)
class CollectRun:
    """The collection step of one run, as each table's load sees it: passed down instead of seven parameters."""

    project: Project
    store: Store
    run_id: str
    emit: Listener
    policy_for: PolicyFor  # table → (retries, retry delay, timeout)
    cancel: threading.Event = field(default_factory=threading.Event)
    stops: dict[str, threading.Event] = field(default_factory=dict)  # the running loads' stop switches
    fence: Fence | None = None  # a worker collecting the one table it claimed (``kiban.workers``)


def collect_assets(run: CollectRun, keys: list[str], *, threads: int,
                   limits: dict[str, int] | None = None) -> dict[str, Collected]:
    """Load every table in ``keys`` (``lake.<source>_<table>``); never raises for a table's failure."""
    project, cancel, stops = run.project, run.cancel, run.stops
    tables = project.source_tables()
    slots = {tag: threading.BoundedSemaphore(n) for tag, n in (limits or {}).items()}
    outcomes: dict[str, Collected] = {}

    def one(key: str) -> Collected:
        source, table = tables[key]
        tags = sorted(t for t in project.assets[key].config.tags if t in slots)
        for tag in tags:  # per-tag limits: e.g. one extraction from the POS database at a time
            slots[tag].acquire()
        try:
            return _collect_one(run, key, source, table)
        finally:
            for tag in reversed(tags):
                slots[tag].release()

    with ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="kiban-collect") as pool:
        running: dict[Future[Collected], str] = {pool.submit(one, k): k for k in keys}
        while running:
            try:
                done, _ = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
            except KeyboardInterrupt:
                cancel.set()
                for stop in list(stops.values()):
                    stop.set()
                continue
            for future in done:
                key = running.pop(future)
                outcomes[key] = future.result()
    return outcomes


def _collect_one(run: CollectRun, key: str, source: str, table: str) -> Collected:
    project, store, run_id, emit, cancel, stops = run.project, run.store, run.run_id, run.emit, run.cancel, run.stops
    retries, delay, timeout = run.policy_for(key)
    attempt = 0
    while True:
        attempt += 1
        started = utcnow()
        outcome = Collected(key, AttemptStatus.SUCCESS, attempts=attempt, started_at=started)
        if cancel.is_set():
            outcome.status, outcome.error = AttemptStatus.CANCELLED, "the run was cancelled"
        else:
            emit(Event("asset_started", run_id, asset=key, attempt=attempt, detail={"collect": True}))
            stop = threading.Event()
            stops[key] = stop
            timed_out = threading.Event()

            def on_timeout(stop: threading.Event = stop, timed_out: threading.Event = timed_out) -> None:
                timed_out.set()
                stop.set()

            timer = threading.Timer(timeout, on_timeout) if timeout else None
            if timer:
                timer.daemon = True
                timer.start()
            permanent = False
            try:
                result = load_table(project, source, table, store, run_id=run_id, cancel=stop) \
                    if run.fence is None else load_claimed(project, source, table, store, run.fence, cancel=stop)
                outcome.result, outcome.rows, outcome.notes = result, result.record.rows_landed, result.notes
                outcome.watermark = result.watermark
            except LoadCancelled as exc:
                outcome.status = AttemptStatus.FAILED if timed_out.is_set() else AttemptStatus.CANCELLED
                outcome.error = f"timed out after {timeout:g} s (the load was stopped)" if timed_out.is_set() \
                    else str(exc)
            except LoadFailed as exc:  # refused (quarantine, drift): retrying reads the same rows again
                outcome.status, outcome.error, permanent = AttemptStatus.FAILED, str(exc), True
                outcome.result = LoadResult(exc.record)
            except SourceError as exc:
                outcome.status, outcome.error = AttemptStatus.FAILED, str(exc)
            except Fenced as exc:  # this worker's claim was taken over: its load committed nothing, and is not retried
                outcome.status, outcome.error, permanent = AttemptStatus.FAILED, str(exc), True
                if not outcome.error.startswith(FENCED):
                    outcome.error = FENCED + outcome.error
            except Exception as exc:  # a connector's bug or an I/O error: the table fails, the run goes on
                outcome.status, outcome.error = AttemptStatus.FAILED, _clean(source, table, exc, project)
                if is_disk_full(exc):  # said once, plainly, as the table's error: no traceback for a full disk
                    log.info("collect: %s: %s", key, outcome.error)
                else:
                    log.warning("collect: %s failed unexpectedly: %s", key, outcome.error, exc_info=True)
            finally:
                if timer:
                    timer.cancel()
                stops.pop(key, None)
                if cancel.is_set() and outcome.status == AttemptStatus.FAILED and not timed_out.is_set():
                    outcome.status, outcome.error = AttemptStatus.CANCELLED, "the run was cancelled"
        outcome.ended_at = utcnow()
        seconds = (outcome.ended_at - started).total_seconds()
        if outcome.status == AttemptStatus.FAILED and attempt <= retries and not permanent and not cancel.is_set():
            wait_s = delay * (2 ** (attempt - 1)) * random.uniform(0.5, 1.5)
            store.record_attempt(run_id, key, AttemptStatus.RETRYING, attempt=attempt, started_at=started,
                                 ended_at=outcome.ended_at, error=outcome.error)
            emit(Event("asset_retry", run_id, asset=key, attempt=attempt, error=outcome.error, seconds=seconds,
                       detail={"delay": round(wait_s, 2)}))
            if not cancel.wait(wait_s):
                continue
            outcome.status, outcome.error = AttemptStatus.CANCELLED, "the run was cancelled"
        if outcome.error is None or not outcome.error.startswith(FENCED):  # a fenced attempt: its successor's counts
            store.record_attempt(run_id, key, outcome.status, attempt=attempt, started_at=started,
                                 ended_at=outcome.ended_at, rows=outcome.rows, error=outcome.error,
                                 watermark=outcome.watermark)
        emit(Event("asset_finished", run_id, asset=key, status=outcome.status, attempt=attempt, rows=outcome.rows,
                   seconds=seconds, error=outcome.error, detail=_detail(outcome)))
        return outcome


def _detail(outcome: Collected) -> dict[str, Any]:
    """The load's reconciled counts and notes, for the CLI's summary and the JSON log."""
    detail: dict[str, Any] = {"collect": True}
    if outcome.result is not None:
        r = outcome.result.record
        detail.update(load_id=r.load_id, read=r.rows_read, landed=r.rows_landed, quarantined=r.rows_quarantined,
                      dropped=r.rows_dropped, deleted=r.rows_deleted,
                      cursor=None if r.cursor is None else str(r.cursor),
                      drift=[d.describe() for d, _ in r.drift])
    if outcome.notes:
        detail["notes"] = outcome.notes
    return detail


def _clean(source: str, table: str, exc: BaseException, project: Project | None = None) -> str:
    if project is not None and is_disk_full(exc):
        full = disk_full([project.lake_dir, project.state_dir], f"landing {source}.{table}")
        return f"source {source}, table {table}: {full.message}; {full.hint}"
    return f"source {source}, table {table}: " + redact(str(exc).strip() or type(exc).__name__)
