"""Reading the published marts as Arrow for tools outside the console: notebooks and BI connections.

The same path as a console query, without the console's row limit and without turning rows into Python
values: the query is checked (:func:`kiban.catalog.safety.check_query`), DuckDB's own parse tree proves it
reads only the masked views (:func:`kiban.catalog.safety.prove_reads`), and it runs in a masked session over
the warehouse's snapshot (:func:`kiban.catalog.masking.open_masked`) — so it never blocks a run, never sees a
half-written table, and never sees a clear PII value unless the reader has clearance. Every read is recorded
in the query history with the assets it read (``kind`` says where it came from: ``notebook`` or ``bi``).

Each read runs in a worker process bounded by the operating system exactly like a console query
(:mod:`kiban.catalog.sandbox`: ``RLIMIT_AS``, no file writes, low CPU priority; the result comes back as one Arrow
IPC stream), so a read that wants too much memory fails alone with "the query used too much memory" — the
notebook's kernel, the BI endpoint and its other connections carry on. ``Reader(isolated=False)`` reads in this
process instead, on pooled masked sessions, bounded by DuckDB's memory limit only.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import logging
import os
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiban.catalog import definitions, sandbox
from kiban.catalog.console import (
    DEFAULT_ADDRESS_SPACE,
    MAX_TIMEOUT,
    QueryConsole,
    QueryFailed,
    QueryStopped,
    engine_message,
)
from kiban.catalog.masking import MaskedSession, open_masked, reserved_names
from kiban.catalog.safety import Exposed, QueryRefused, check_query, prove_reads
from kiban.catalog.usage import Actor, QueryEntry
from kiban.catalog.warehouse import is_postgres, source_file, source_of
from kiban.project import load_project
from kiban.quoting import quote
from kiban.store import Store

if TYPE_CHECKING:
    import pyarrow as pa

    from kiban.project import Project

log = logging.getLogger(__name__)


@dataclass
class ArrowResult:
    table: pa.Table
    assets: tuple[str, ...]
    seconds: float


def select_sql(relation: str, columns: Sequence[str] | None, where: str | Mapping[str, Any] | None,
               limit: int | None = None) -> tuple[str, list[Any]]:
    """``select <columns> from <relation> [where …] [limit n]`` and its bound parameters.

    ``relation`` is ``layer.name`` (or a bare name); identifiers are quoted, never pasted. ``where`` is either
    a mapping column → value (equality; a list or tuple → ``in``; None → ``is null``), bound as parameters, or
    a SQL condition — which is the caller's own SQL and is checked with the rest of the query."""
    parts = relation.split(".")
    if not 1 <= len(parts) <= 2 or not all(parts):
        raise QueryRefused(f"'{relation}' is not a table name", "name it as layer.name, e.g. mart.daily_sales")
    source = ".".join(quote(p) for p in parts)
    chosen = ", ".join(quote(c) for c in columns) if columns else "*"
    sql = f"select {chosen} from {source}"
    params: list[Any] = []
    if isinstance(where, Mapping):
        terms = []
        for column, value in where.items():
            if value is None:
                terms.append(f"{quote(column)} is null")
            elif isinstance(value, list | tuple | set | frozenset):
                values = list(value)
                if not values:
                    terms.append("false")
                    continue
                terms.append(f"{quote(column)} in ({', '.join('?' for _ in values)})")
                params.extend(values)
            else:
                terms.append(f"{quote(column)} = ?")
                params.append(value)
        if terms:
            sql += " where " + " and ".join(terms)
    elif where is not None and str(where).strip():
        sql += f" where ({where})"
    if limit is not None:
        sql += f" limit {int(limit)}"
    return sql, params


POOL_SIZE = 4  # idle masked sessions kept per reader and clearance
CHECKS_KEPT = 256  # checked query texts remembered per reader


class Reader:
    """Masked Arrow reads over one project.

    Opening a masked session (attach the snapshot, make the masked views, lock it) costs about as much as
    scanning a few hundred thousand rows, so idle sessions are kept in a small pool, one set per published
    version and clearance: a read takes one (or opens one), and gives it back. A session is locked down when
    it opens and only ever runs proven reads, so reusing it hands nothing from one read to the next but the
    views themselves. A new snapshot closes the old version's sessions."""

    def __init__(self, project: Project, store: Store | None = None, *, kind: str = "notebook",
                 threads: int | None = None, memory_limit: str | None = None, isolated: bool = True,
                 address_space: int | None = DEFAULT_ADDRESS_SPACE) -> None:
        self.console = QueryConsole(project, store, address_space=address_space)
        self.project = project
        self.kind = kind
        self.threads = threads
        self.memory_limit = memory_limit
        self.isolated = isolated
        self._lock = threading.Lock()
        self._idle: dict[tuple[float, bool], list[tuple[contextlib.ExitStack, MaskedSession]]] = {}
        self._records: queue.Queue[tuple[Actor, str, str, tuple[str, ...], dict[str, Any]]] = queue.Queue()
        self._recorder: threading.Thread | None = None
        self._residents: dict[tuple[float, bool], sandbox.Resident] = {}
        self._checks: OrderedDict[str, tuple[tuple[str, ...], tuple[str, ...]]] = OrderedDict()
        atexit.register(self.close)

    def version_key(self) -> float:
        """The published version this reader reads now (the snapshot's time; 0 for PostgreSQL)."""
        return self._version()

    def _version(self) -> float:
        if is_postgres(self.project):
            return 0.0
        return source_file(self.project).stat().st_mtime

    def _take(self, cleared: bool) -> tuple[tuple[float, bool], contextlib.ExitStack, MaskedSession]:
        key = (self._version(), cleared)
        with self._lock:
            for old in [k for k in self._idle if k[0] != key[0]]:
                for stack, _ in self._idle.pop(old):
                    stack.close()
            idle = self._idle.get(key)
            if idle:
                stack, session = idle.pop()
                return key, stack, session
        stack = contextlib.ExitStack()
        masks = None if cleared else self.console.mask_plan
        session = stack.enter_context(open_masked(self.project, self.console.relations, masks,
                                                  memory_limit=self.memory_limit, threads=self.threads))
        return key, stack, session

    def _give(self, key: tuple[float, bool], stack: contextlib.ExitStack, session: MaskedSession) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < POOL_SIZE:
                idle.append((stack, session))
                return
        stack.close()

    def close(self) -> None:
        self.flush()
        with self._lock:
            residents = list(self._residents.values())
            self._residents.clear()
        for resident in residents:
            resident.close()
        with self._lock:
            for sessions in self._idle.values():
                for stack, _ in sessions:
                    stack.close()
            self._idle.clear()

    def check(self, sql: str) -> tuple[str, ...]:
        """The assets ``sql`` reads; :class:`QueryRefused` when it may not run."""
        return self.console.check(sql)

    def arrow(self, sql: str, actor: Actor, params: Sequence[Any] | Mapping[str, Any] | None = None,
              *, timeout: float | None = None, record: bool = True) -> ArrowResult:
        """Run one checked, masked query; the whole result as an Arrow table.

        Raises QueryRefused, QueryStopped or QueryFailed (each recorded in the query history)."""
        started = time.perf_counter()
        try:
            reads, bases = self._checked(sql)
        except QueryRefused as exc:
            self._record(actor, sql, "refused", error=exc.message)
            raise
        if self.isolated:
            table = self._in_worker(sql, list(reads), actor, params, timeout, bases, started)
        else:
            table = self._in_process(sql, actor, params, timeout, bases, started)
        seconds = time.perf_counter() - started
        shown = actor.pii_clearance and bool(self.console.pii)
        if record:
            self._record(actor, sql, "ok", bases, rows=table.num_rows, seconds=seconds, pii_shown=shown)
        return ArrowResult(table, bases, seconds)

    def _checked(self, sql: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """What ``sql`` reads (the relations the worker must offer) and its assets for the history, after both
        parsers' checks; remembered per query text, since a reader is of one published version and one
        kiban.yml (a new one makes a new reader) and the checks do not depend on who reads. Refusals are
        not remembered (they raise each time)."""
        with self._lock:
            found = self._checks.get(sql)
            if found is not None:
                self._checks.move_to_end(sql)
                return found
        checked = check_query(sql, self.console.relations)
        proven = prove_reads(sql, Exposed(self.console.relations, reserved_names()))
        found = (tuple(sorted(set(checked.assets) | set(proven))), self.console._bases(checked.assets))
        with self._lock:
            self._checks[sql] = found
            while len(self._checks) > CHECKS_KEPT:
                self._checks.popitem(last=False)
        return found

    def _in_worker(self, sql: str, reads: list[str], actor: Actor,
                   params: Sequence[Any] | Mapping[str, Any] | None, timeout: float | None,
                   bases: tuple[str, ...], started: float) -> pa.Table:
        """The read in a worker process bounded by the OS like a console query (:mod:`kiban.catalog.sandbox`):
        a read that wants too much memory fails alone, the notebook's kernel or the BI server carries on."""
        console = self.console
        # a notebook reads at its kernel's priority with every core (as DuckDB would in the kernel); a server's
        # reads (BI, deliveries) at the console's: they must not slow a run down
        notebook = self.kind == "notebook"
        job = sandbox.Job(source_of(self.project), tuple(reads), sql,
                          (dict(params) if isinstance(params, Mapping) else list(params)) if params else None, 0,
                          timeout or MAX_TIMEOUT, self.memory_limit or console.memory_limit,
                          self.threads or (os.cpu_count() or 1 if notebook else console.threads),
                          console.address_space, actor.pii_clearance, "same" if notebook else console.priority,
                          arrow=True)
        try:
            resident = self._resident(job) if notebook else None
            if resident is not None and resident.lock.acquire(blocking=False):
                resident.lock.release()  # free now: this thread reads on the warm worker
                try:
                    return resident.arrow(sql, job.params, job.timeout)
                except sandbox.HandoverFailed as exc:  # a read: once more, in a worker of its own
                    log.warning("%s; read again in a worker of its own", exc.message)
            return sandbox.run_arrow(job, console._planner(actor.pii_clearance))
        except QueryStopped as exc:
            self._record(actor, sql, "stopped", bases, error=exc.message, seconds=time.perf_counter() - started)
            raise
        except QueryFailed as exc:
            self._record(actor, sql, "failed", bases, error=exc.message, seconds=time.perf_counter() - started)
            raise

    def _resident(self, job: sandbox.Job) -> sandbox.Resident | None:
        """The notebook's resident bounded worker for the published version and the reader's clearance (a
        new snapshot retires the old version's worker); None where the OS offers no memfd."""
        if not sandbox.resident_available():
            return None
        key = (self._version(), job.cleared)
        retired = []
        with self._lock:
            for old in [k for k in self._residents if k != key and k[0] != key[0]]:
                retired.append(self._residents.pop(old))
            resident = self._residents.get(key)
            if resident is None:
                template = dataclasses.replace(job, relations=tuple(self.console.relations), sql="", params=None)
                resident = self._residents[key] = sandbox.Resident(template,
                                                                   self.console._planner(job.cleared))
        for old_resident in retired:
            old_resident.close()
        return resident

    def _in_process(self, sql: str, actor: Actor, params: Sequence[Any] | Mapping[str, Any] | None,
                    timeout: float | None, bases: tuple[str, ...], started: float) -> pa.Table:
        """The read in this process, on a pooled masked session (``isolated=False``: bounded by DuckDB's
        memory limit only)."""
        import duckdb

        key, stack, session = self._take(actor.pii_clearance)
        healthy = False
        try:
            con = session.con
            timer = threading.Timer(timeout, con.interrupt) if timeout else None
            if timer is not None:
                timer.start()
            try:
                result = con.execute(sql, params) if params else con.execute(sql)
                table = result.to_arrow_table()
            except (duckdb.InterruptException, duckdb.OutOfMemoryException, MemoryError):
                error = sandbox.stopped(timeout)
                self._record(actor, sql, "stopped", bases, error=error.message,
                             seconds=time.perf_counter() - started)
                raise error from None
            except (duckdb.Error, UnicodeError, ValueError, TypeError, OverflowError) as exc:
                failed = QueryFailed(f"the query failed: {engine_message(exc, actor.pii_clearance, session.clean)}")
                self._record(actor, sql, "failed", bases, error=failed.message,
                             seconds=time.perf_counter() - started)
                raise failed from None
            finally:
                if timer is not None:
                    timer.cancel()
            healthy = True
        finally:
            if healthy:
                self._give(key, stack, session)
            else:
                stack.close()
        return table

    def _record(self, actor: Actor, sql: str, status: str, assets: Sequence[str] = (), **extra: Any) -> None:
        """Recorded by a background thread: a read does not wait for the store's commit (an fsync)."""
        if self.console.store is None:
            return
        with self._lock:
            if self._recorder is None or not self._recorder.is_alive():
                self._recorder = threading.Thread(target=self._write_records, name="kiban-read-history",
                                                  daemon=True)
                self._recorder.start()
        self._records.put((actor, sql, status, tuple(assets), extra))

    def _write_records(self) -> None:
        while True:
            actor, sql, status, assets, extra = self._records.get()
            try:
                self.console._record(actor, QueryEntry(self.kind, sql, status, assets, **extra))
            except Exception:  # the history is a record, not the read: a full disk must not fail reads
                log.warning("could not record a %s read in the query history", self.kind, exc_info=True)
            finally:
                self._records.task_done()

    def flush(self) -> None:
        """Wait until every read so far is in the query history."""
        self._records.join()


_readers: dict[tuple[str, str, bool], tuple[Reader, str, float]] = {}
_readers_lock = threading.Lock()


def shared_reader(folder: Path, kind: str, *, threads: int | None = None, memory_limit: str | None = None,
                  address_space: int | None = DEFAULT_ADDRESS_SPACE, isolated: bool = True) -> Reader:
    """One reader per project folder, kind and published version: a run's new snapshot (new models, columns) or
    a changed definition file (kiban.yml, a model, a macro, a YAML's PII tags; :mod:`kiban.catalog.definitions`)
    loads the project again, so masks are never planned from older code or tags than the data's; otherwise a
    read costs no project load."""

    key = (str(folder), kind, isolated)
    with _readers_lock:
        found = _readers.get(key)
    if found is not None:
        reader, defined, published = found
        if definitions.served(folder, reader.project) == (defined, published):
            return reader
    defined = definitions.version(folder)  # before the load: a change during it shows at the next look
    loaded = load_project(folder)
    reader = Reader(loaded, Store(loaded.state_url), kind=kind, threads=threads, memory_limit=memory_limit,
                    address_space=address_space, isolated=isolated)
    with _readers_lock:
        old = _readers.get(key)
        _readers[key] = (reader, defined, definitions.published_at(loaded))
    if old is not None:
        old[0].close()
    return reader


def flush_all() -> None:
    """Wait until every read of every shared reader is in its query history."""
    with _readers_lock:
        readers = [r for r, _, _ in _readers.values()]
    for reader in readers:
        reader.flush()
