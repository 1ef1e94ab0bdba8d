"""One console query in a worker process of its own, which the operating system bounds.

A query that asks for more memory than a console query may have must fail alone, never take the server (or a
run on the same machine) with it. So every query runs in a fresh process forked from a small fork server that
has DuckDB loaded already (a few milliseconds to start, and its memory is given back whole when it ends). The
process confines itself before it touches any data:

- ``RLIMIT_AS``: its address space is capped (DuckDB's own ``memory_limit`` is a soft bound that allocations
  outside its buffer manager can pass); an allocation past the cap fails inside the process, and a process
  that dies of it is reported as "the query used too much memory" — the server only loses a child;
- ``RLIMIT_FSIZE`` 0 and ``RLIMIT_CORE`` 0: it cannot write a byte to any file (nor a core dump with data);
- ``nice 19`` and, where Linux offers it, ``SCHED_IDLE``: it only gets the CPU nobody else wants, so a run or
  the web server barely notices it; DuckDB runs one thread.

The process then opens the masked session (:mod:`kiban.catalog.masking`) in two steps so that the mask plan
stays in the parent: it attaches the warehouse and sends the columns of the relations the query reads; the
parent answers with each column's mask (and the hash key when a column asks for it); the process makes the
views, locks the session down and runs the query. A query past its time limit is interrupted inside, and
killed from outside if it does not stop.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import multiprocessing
import os
import secrets
import signal
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kiban.catalog.masking import MaskedSession, install_views, relation_columns
from kiban.catalog.warehouse import Source, attach_source, lock_down, new_session, source_alias
from kiban.errors import ConfigError, KibanError

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    import pyarrow as pa

    from kiban.catalog.masking import Found

log = logging.getLogger(__name__)

NICENESS = 19
PRIORITIES = ("idle", "low", "normal", "same")
# "idle": SCHED_IDLE and nice 19 (the default: a query only gets CPU nobody else wants); "low": nice 19 only;
# "normal": nice 10 (a machine that serves the console only, or a test suite on a busy machine); "same": the
# caller's own priority (a notebook's read, which runs for the person at their kernel's priority anyway)
DEFAULT_PRIORITY = os.environ.get("KIBAN_CONSOLE_PRIORITY", "idle")
GRACE = 5.0  # seconds a worker has, past its time limit, to stop by itself before it is killed
# engine errors that name things (columns, tables, syntax), never data values: shown as they are
_NAMING_ERRORS = ("BinderException", "CatalogException", "ParserException", "SyntaxException")
_ERROR_CLASSES = {
    "ConversionException": "a value could not be converted to the requested type",
    "InvalidInputException": "a function was given a value it cannot take",
    "OutOfRangeException": "a value is out of the range of its type",
    "OutOfMemoryException": "the query used too much memory",
    "MemoryError": "the query used too much memory",
    "InvalidTypeException": "a type does not fit",
    "NotImplementedException": "the query uses something DuckDB does not support",
    "UnicodeDecodeError": "a value is not valid text",
}
TOO_MUCH_MEMORY = "the query used too much memory"
MEMORY_HINT = "aggregate or filter earlier, select fewer columns, or ask for a mart that does the heavy work"
STOPPED = "the query was stopped: it ran longer than {seconds:g}s or used too much memory"


class QueryFailed(KibanError):
    """The engine could not run a query that passed the checks (a wrong column, a bad cast, a limit reached)."""


class QueryStopped(QueryFailed):
    """The query was stopped at one of the console's limits: its time or its memory.

    Which of the two a runaway query reaches first depends on how busy the machine is, never on the data, so
    both are told alike — one kind, one message naming both limits. A person learns the same from it on a calm
    machine and a loaded one, and nothing from it about the values the query touched."""

    exit_code = 4


@dataclass(frozen=True)
class Job:
    """One query, as plain data a worker process receives."""

    source: Source
    relations: tuple[str, ...]
    sql: str
    params: dict[str, Any] | list[Any] | None  # named ($name) or positional (? / $1) parameters
    limit: int  # rows returned (the console's page); ignored for an Arrow result, which is whole
    timeout: float
    memory_limit: str
    threads: int
    address_space: int | None  # bytes; None: no OS cap
    cleared: bool  # the person has PII clearance: engine messages are shown as they are
    priority: str = DEFAULT_PRIORITY
    arrow: bool = False  # the whole result as Arrow (notebooks, BI over the PostgreSQL protocol), not rows


@dataclass(frozen=True)
class Outcome:
    columns: list[str]
    types: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool


def _tell(con: Any, message: tuple[Any, ...]) -> None:
    """Answer the server over the pipe; a server that is gone hears nothing and needs nothing (the worker ends)."""
    with contextlib.suppress(Exception):
        con.send(message)


def engine_message(exc: BaseException, cleared: bool, clean: Any = None) -> str:
    """What a person is told about an engine error. Without clearance, an error that may quote a value (a
    failed cast, a function's bad input) is told by its class only; naming errors are told as they are."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if clean is not None:
        text = clean(text)
    kind = type(exc).__name__
    if kind in ("OutOfMemoryException", "MemoryError"):
        return TOO_MUCH_MEMORY
    if cleared or kind in _NAMING_ERRORS:
        return text
    return _ERROR_CLASSES.get(kind, "the engine refused a value") + " (values are not shown without PII clearance)"


Planner = Callable[["Found"], tuple[dict[str, dict[str, str]], bytes | None]]


def run(job: Job, planner: Planner) -> Outcome:
    """Run ``job`` in a worker process; ``planner`` turns the columns found into masks (and the hash key).

    Raises QueryStopped, QueryFailed (too much memory included) or ConfigError (the warehouse cannot be read)."""
    message = _exchange(job, planner)
    return Outcome(*message[1:])


def run_arrow(job: Job, planner: Planner) -> pa.Table:
    """Run ``job`` (``arrow=True``) in a worker process, bounded like a console query; its whole result. The
    worker sends it as an Arrow IPC stream; it is read here without another copy. Raises like :func:`run`."""
    assert job.arrow
    import pyarrow as pa

    message = _exchange(job, planner)
    table: pa.Table = pa.ipc.open_stream(message[1]).read_all()
    return table


@dataclass(frozen=True)
class Call:
    """Any function that returns an Arrow table, to run in a confined worker (:func:`run_call`): a module-level
    function (a worker finds it by name) and plain-data arguments."""

    target: Callable[..., Any]
    args: tuple[Any, ...]
    timeout: float
    address_space: int | None
    priority: str = DEFAULT_PRIORITY


def run_call(call: Call) -> pa.Table:
    """Run ``call`` in a worker process bounded like a console query; its Arrow table. A ``ValueError`` the
    target raises comes back as QueryFailed with its message; too much memory, a timeout or a killed worker
    as for a console query."""
    import pyarrow as pa

    context = _context()
    ours, theirs = context.Pipe()
    process = context.Process(target=_work_call, args=(theirs, call), name=WORKER, daemon=True)
    process.start()
    theirs.close()
    try:
        message = _receive(ours, process, time.monotonic() + call.timeout + GRACE, call.timeout)
        if message[0] == "arrow":
            table: pa.Table = pa.ipc.open_stream(ours.recv_bytes()).read_all()
            return table
        if message[0] in ("memory", "timeout"):
            raise stopped(call.timeout)
        raise QueryFailed(message[1])
    except (EOFError, OSError):
        raise stopped(call.timeout) from None
    finally:
        if process.is_alive():
            process.kill()
        process.join(5)
        ours.close()


def _work_call(con: Connection, call: Call) -> None:
    confine(call.address_space, call.priority)
    try:  # past its time the parent kills this process
        data = _ipc(call.target(*call.args))
        con.send(("arrow",))
        con.send_bytes(data)
    except MemoryError:
        _tell(con, ("memory",))
    except ValueError as exc:
        _tell(con, ("failed", str(exc)))
    except BaseException as exc:
        _tell(con, ("failed", f"the query failed: {engine_message(exc, False)}"))
    finally:
        con.close()


def _exchange(job: Job, planner: Planner) -> tuple[Any, ...]:
    """Start the worker, answer its columns with masks, and return its ``ok`` or ``arrow`` message."""
    context = _context()
    ours, theirs = context.Pipe()
    process = context.Process(target=_work, args=(theirs, job), name=WORKER, daemon=True)
    process.start()
    theirs.close()
    deadline = time.monotonic() + job.timeout + GRACE
    try:
        message = _receive(ours, process, deadline, job.timeout)
        if message[0] == "columns":
            ours.send(planner(message[1]))
            message = _receive(ours, process, deadline, job.timeout)
        kind = message[0]
        if kind == "ok":
            return message
        if kind == "arrow":
            try:
                data = ours.recv_bytes()
            except (EOFError, OSError):
                log.info("a console worker ended while it sent its result")
                raise stopped(job.timeout) from None
            return ("arrow", data)
        if kind in ("memory", "timeout"):
            raise stopped(job.timeout)
        if kind == "config":
            raise ConfigError(message[1], message[2])
        raise QueryFailed(f"the query failed: {message[1]}")
    finally:
        if process.is_alive():
            process.kill()
        process.join(5)
        ours.close()


def stopped(seconds: float | None) -> QueryStopped:
    """A query stopped at a limit, told the same whichever limit it was (see :class:`QueryStopped`); without a
    time limit (``None``) only its memory can have stopped it."""
    if seconds is None:
        return QueryStopped("the query was stopped: it used too much memory", MEMORY_HINT)
    return QueryStopped(STOPPED.format(seconds=seconds), MEMORY_HINT)


def _receive(con: Connection, process: Any, deadline: float, timeout: float) -> tuple[Any, ...]:
    if not con.poll(max(0.0, deadline - time.monotonic())):
        process.kill()
        raise stopped(timeout)
    try:
        message: tuple[Any, ...] = con.recv()
    except (EOFError, OSError):
        process.join(5)
        code = process.exitcode
        how = f"signal {-code}" if code is not None and code < 0 else f"exit {code}"
        log.info("a console worker ended before it answered (%s): told as a query stopped at its limits", how)
        raise stopped(timeout) from None
    return message


_CONTEXT: Any = None
_CONTEXT_LOCK = threading.Lock()
WORKER = "kiban-console-query"
RESIDENT = "kiban-resident-reader"  # a notebook's resident worker (:class:`Resident`), prepared like a WORKER
# what a worker would otherwise import first (DuckDB's Python client imports numpy, pandas and pyarrow the first
# time a query has parameters: seconds on a busy machine, in every worker)
PRELOAD = ["duckdb", "numpy", "pandas", "pyarrow", "kiban.catalog.sandbox", "kiban.catalog.masking"]


def _install_preparation_filter() -> None:
    """A worker needs nothing of the parent's ``__main__``: multiprocessing would re-run the parent's main
    script in every worker (a notebook's or a bench script's code, or the whole CLI's imports), so it is left
    out of what a worker named :data:`WORKER` (or :data:`RESIDENT`) is prepared with."""
    from multiprocessing import spawn

    original = spawn.get_preparation_data
    if getattr(original, "kiban", False):
        return

    def prepared(name: str) -> dict[str, Any]:
        data: dict[str, Any] = original(name)
        if name in (WORKER, RESIDENT):
            data.pop("init_main_from_path", None)
            data.pop("init_main_from_name", None)
        return data

    prepared.kiban = True  # type: ignore[attr-defined]
    spawn.get_preparation_data = prepared


def _context() -> Any:
    """A fork server that has DuckDB and this module loaded: a worker starts in milliseconds, and it is forked
    from a small single-threaded process, never from the (threaded) web server. Spawn where there is none."""
    global _CONTEXT
    with _CONTEXT_LOCK:
        if _CONTEXT is None:
            _install_preparation_filter()
            if "forkserver" in multiprocessing.get_all_start_methods():
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload(PRELOAD)
                _CONTEXT = context
            else:
                _CONTEXT = multiprocessing.get_context("spawn")
        return _CONTEXT


def confine(address_space: int | None, priority: str = DEFAULT_PRIORITY) -> None:
    """Bound this process: address space, no file writes, no core dumps, a low CPU priority (``priority``)."""
    with contextlib.suppress(ImportError, OSError, ValueError):
        import resource

        if address_space:
            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    with contextlib.suppress(AttributeError, OSError, ValueError):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write fails (EFBIG) rather than killing the worker
    if priority == "same":
        return
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, 0, 10 if priority == "normal" else NICENESS)
    if priority != "idle":
        return
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def _work(con: Connection, job: Job) -> None:
    """The worker process: confine, open the masked session, run, answer; never raises."""
    confine(job.address_space, job.priority)
    try:
        answer = _answer(con, job)
        if answer[0] == "arrow":  # the result's bytes as they are: no pickling of a large buffer
            con.send(("arrow",))
            con.send_bytes(answer[1])
        else:
            con.send(answer)
    except MemoryError:
        _tell(con, ("memory",))
    except BaseException as exc:  # the parent must hear something; never a value (class only)
        _tell(con, ("failed", engine_message(exc, job.cleared)))
    finally:
        con.close()


def _ipc(table: Any) -> Any:
    """An Arrow table as one IPC stream buffer."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _mask(con: Connection, job: Job, session: Any) -> MaskedSession | tuple[Any, ...]:
    """The one way a worker's session is made safe: attach the source read-only, tell the server the columns found,
    install the masked views from the masks it sends back, lock the session down. Returns the masked session, or
    the answer to send when the source cannot be attached."""
    alias = source_alias()
    hash_function = f"__kiban_mask_{secrets.token_hex(6)}"
    try:
        attach_source(session, job.source, alias)
    except KibanError as exc:
        return ("config", exc.message, exc.hint)
    found = relation_columns(session, alias, job.relations)
    con.send(("columns", found))
    plans, secret = con.recv()
    install_views(session, alias, found, plans, secret, hash_function)
    lock_down(session, job.source, search_path="mart,warehouse,lake", memory_limit=job.memory_limit,
              threads=job.threads)
    return MaskedSession(session, alias, hash_function)


def _answer(con: Connection, job: Job) -> tuple[Any, ...]:
    import duckdb

    session = new_session()
    try:
        masked = _mask(con, job, session)
        if not isinstance(masked, MaskedSession):
            return masked
        timer = threading.Timer(job.timeout, session.interrupt)
        timer.start()
        try:
            params = job.params if isinstance(job.params, list) else dict(job.params or {})
            result = session.execute(job.sql, params) if job.params else session.execute(job.sql)
            if job.arrow:
                return ("arrow", _ipc(result.to_arrow_table()))
            rows = result.fetchmany(job.limit + 1)
        except duckdb.InterruptException:
            return ("timeout",)
        except duckdb.OutOfMemoryException:
            return ("memory",)
        except (duckdb.Error, UnicodeError, ValueError, TypeError, OverflowError) as exc:  # values → Python
            return ("failed", engine_message(exc, job.cleared, masked.clean))
        finally:
            timer.cancel()
        description = result.description or []
        return ("ok", [d[0] for d in description], [str(d[1]) for d in description], rows[:job.limit],
                len(rows) > job.limit)
    finally:
        session.close()



# --- a resident worker: one confined process that keeps its masked session warm between reads -----------------
#
# A fresh worker per read pays a fork, a cold attach and scan, and the copy of its result through a pipe. A
# notebook reads the same marts again and again, so :class:`Resident` keeps one confined worker (the same
# ``confine()``: RLIMIT_AS, RLIMIT_FSIZE 0, no core dumps) with its masked, locked session open, and hands each
# result over without a copy:
#
# - the parent makes an anonymous memory file (``memfd_create``), sizes it to :data:`RESULT_CAP` (sparse: no memory
#   is used until written), seals it against growing or shrinking, and passes its descriptor to the worker over
#   the Unix socket (SCM_RIGHTS);
# - the worker writes the result as an Arrow IPC file by *storing into a shared mapping* of that descriptor — no
#   ``write()`` call, so ``RLIMIT_FSIZE`` stays 0 and the query still cannot write a byte to any file (the memfd
#   has no name and no path; it can't be grown past the parent's cap, the seals forbid it);
# - the parent maps the same pages read-only and opens the IPC file on them: the table's buffers *are* those pages
#   (zero-copy), freed when the table is.
RESULT_CAP = 2**34  # bytes: a result larger than this is refused (the worker's RLIMIT_AS bounds it long before)


class ResultTooLarge(QueryFailed):
    pass


class HandoverFailed(QueryFailed):
    """The worker ran the read but could not put its result in the memory file (the read may be run again)."""


def resident_available() -> bool:
    """Linux: anonymous memory files with seals, and descriptors passed over Unix sockets."""
    import socket

    return hasattr(os, "memfd_create") and hasattr(os, "MFD_ALLOW_SEALING") and hasattr(socket, "CMSG_LEN")


def _serve(con: Connection, job: Job) -> None:
    """The resident worker: confine, open the masked session over all of ``job.relations``, then answer reads
    until told to stop (``None``); never raises. A read that runs out of memory ends the worker."""
    confine(job.address_space, job.priority)
    from multiprocessing import reduction

    import duckdb

    session = new_session()
    try:
        masked = _mask(con, job, session)
        if not isinstance(masked, MaskedSession):
            con.send(masked)
            return
        con.send(("ready",))
        while True:
            try:
                request = con.recv()
                if request is None:
                    return
                fd = reduction.recv_handle(con)
            except (EOFError, OSError):  # the parent has gone
                return
            try:
                answer = _serve_one(session, masked, job.cleared, request, fd, duckdb)
            except OSError as exc:  # mapping the result (ENOMEM past RLIMIT_AS): this read fails, the worker stays
                answer = ("memory",) if exc.errno == errno.ENOMEM else (
                    "handover", f"{type(exc).__name__} {errno.errorcode.get(exc.errno or 0, '')}".strip())
            finally:
                os.close(fd)
            con.send(answer)
    except MemoryError:
        _tell(con, ("memory",))
    except BaseException as exc:
        _tell(con, ("failed", engine_message(exc, job.cleared)))
    finally:
        with contextlib.suppress(Exception):
            session.close()
        con.close()


def _serve_one(session: Any, masked: MaskedSession, cleared: bool, request: tuple[str, Any, float], fd: int,
               duckdb: Any) -> tuple[Any, ...]:
    import mmap

    import pyarrow as pa

    sql, params, timeout = request
    timer = threading.Timer(timeout, session.interrupt)
    timer.start()
    try:
        result = session.execute(sql, params) if params else session.execute(sql)
        table = result.to_arrow_table()
    except duckdb.InterruptException:
        return ("timeout",)
    except duckdb.OutOfMemoryException:
        return ("memory",)
    except (duckdb.Error, UnicodeError, ValueError, TypeError, OverflowError) as exc:  # values → Python
        return ("failed", engine_message(exc, cleared, masked.clean))
    finally:
        timer.cancel()
    counter = pa.MockOutputStream()  # the IPC file's exact size, without writing it
    with pa.ipc.new_file(counter, table.schema) as writer:
        writer.write_table(table)
    size = counter.size()
    if size > os.fstat(fd).st_size:
        return ("large", size)
    if size == 0:
        return ("arrow", 0)
    # MAP_POPULATE: the pages are faulted in one go (they are usually the last read's, kept by the parent)
    mapping = mmap.mmap(fd, size, prot=mmap.PROT_READ | mmap.PROT_WRITE,
                        flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0))
    sink = pa.FixedSizeBufferWriter(pa.py_buffer(mapping))
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    sink.close()
    del sink, writer  # the mapping is unmapped when its last reference goes
    with contextlib.suppress(BufferError):
        mapping.close()
    return ("arrow", size)


class Resident:
    """One confined worker process that keeps a warm masked session over ``job.relations`` (all of a reader's
    relations) and answers reads one at a time; see the comment above :data:`RESULT_CAP`.

    ``job`` carries the bounds (address space, memory limit, threads, priority, clearance); its ``sql`` is unused.
    ``planner`` answers the worker's columns with masks, once, when it starts. A read that runs out of memory
    or past its time ends the worker (it is started again by the next read); a read fails alone either way."""

    def __init__(self, job: Job, planner: Planner) -> None:
        self.job = job
        self.planner = planner
        self.lock = threading.Lock()
        self._process: Any = None
        self._con: Connection | None = None
        self._spare: list[tuple[int, int]] = []  # (memfd, bytes it holds) whose last result nobody maps any more

    def _start(self) -> None:
        context = _context()
        ours, theirs = context.Pipe()
        process = context.Process(target=_serve, args=(theirs, self.job), name=RESIDENT, daemon=True)
        process.start()
        theirs.close()
        self._process, self._con = process, ours
        deadline = time.monotonic() + MAX_START
        try:
            message = _receive(ours, process, deadline, MAX_START)
            if message[0] == "columns":
                ours.send(self.planner(message[1]))
                message = _receive(ours, process, deadline, MAX_START)
            if message[0] == "ready":
                return
            if message[0] == "config":
                raise ConfigError(message[1], message[2])
            if message[0] == "memory":
                raise QueryFailed(f"the query failed: {TOO_MUCH_MEMORY}", MEMORY_HINT)
            raise QueryFailed(f"the query failed: {message[1]}")
        except BaseException:
            self.close()
            raise

    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def _memfd(self) -> tuple[int, int]:
        """A sealed result file: a spare one (its pages already allocated: no zeroing, no faults) or a new one."""
        with contextlib.suppress(IndexError):
            return self._spare.pop()
        fd = os.memfd_create("kiban-read", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(fd, min(RESULT_CAP, self.job.address_space or RESULT_CAP))
            fcntl_seal(fd)
        except BaseException:
            os.close(fd)
            raise
        return fd, 0

    def _release(self, fd: int, held: int) -> None:
        """``fd``'s result is no longer mapped (its table is gone): keep it for the next read, or close it. Only
        one small spare is kept, so a notebook holds at most :data:`SPARE_BYTES` of pages beyond its results."""
        if held <= SPARE_BYTES and not self._spare and self._process is not None:
            self._spare.append((fd, held))
        else:
            os.close(fd)

    def close(self) -> None:
        while self._spare:
            os.close(self._spare.pop()[0])
        process, con = self._process, self._con
        self._process = self._con = None
        if con is not None:
            with contextlib.suppress(Exception):
                con.send(None)
            con.close()
        if process is not None:
            process.join(1)
            if process.is_alive():
                process.kill()
                process.join(5)

    def arrow(self, sql: str, params: dict[str, Any] | list[Any] | None, timeout: float) -> pa.Table:
        """One read's whole result. Raises QueryStopped, QueryFailed (too much memory included), ConfigError."""
        import mmap
        from multiprocessing import reduction

        import pyarrow as pa

        with self.lock:
            if not self.alive():
                self.close()
                self._start()
            con, process = self._con, self._process
            assert con is not None
            fd, held = self._memfd()
            mapped = False
            healthy = False
            try:
                con.send((sql, params, timeout))
                reduction.send_handle(con, fd, process.pid)
                message = _receive(con, process, time.monotonic() + timeout + GRACE, timeout)
                kind = message[0]
                healthy = kind != "memory"
                if kind == "arrow":
                    if message[1] == 0:
                        raise QueryFailed("the query failed: its worker sent an empty result")
                    held = max(held, message[1])
                    mapping = mmap.mmap(fd, message[1], prot=mmap.PROT_READ, flags=mmap.MAP_SHARED)
                    # the table's buffers are these pages; when the last of them goes, the file is free again
                    weakref.finalize(mapping, self._release, fd, held)
                    mapped = True
                    table: pa.Table = pa.ipc.open_file(pa.py_buffer(mapping)).read_all()
                    return table
                if kind in ("memory", "timeout"):
                    raise stopped(timeout)
                if kind == "handover":  # the result was made but could not be passed back (never a value)
                    raise HandoverFailed(f"the query failed: its result could not be handed over ({message[1]})")
                if kind == "large":
                    raise ResultTooLarge(f"the query failed: its result ({message[1]} bytes) is larger than "
                                         f"{RESULT_CAP} bytes", MEMORY_HINT)
                raise QueryFailed(f"the query failed: {message[1]}")
            finally:
                if not healthy:
                    self.close()
                if not mapped:
                    self._release(fd, held)


SPARE_BYTES = 512 * 2**20
MAX_START = 120.0  # seconds a resident worker has to open its session


def fcntl_seal(fd: int) -> None:
    """The memfd's size is the parent's: nobody (the worker included) can grow or shrink it from now on."""
    import fcntl

    seals = getattr(fcntl, "F_SEAL_GROW", 4) | getattr(fcntl, "F_SEAL_SHRINK", 2) | getattr(fcntl, "F_SEAL_SEAL", 1)
    fcntl.fcntl(fd, getattr(fcntl, "F_ADD_SEALS", 1033), seals)
