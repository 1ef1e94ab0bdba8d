"""The SQL console's core: run one read-only query for a person, with limits on time, rows, memory and load.

Every query is checked first (:mod:`kiban.catalog.safety`: SQLGlot, then DuckDB's own parse tree), then run
in a masked session (:mod:`kiban.catalog.masking`): the relations it reads are views in which every PII
column is already masked for a person without clearance, so nothing the query does can see a clear value.
The session reads the warehouse's snapshot, so a query never blocks a run. A query past its time limit is
interrupted; its memory and threads are bounded; at most ``max_running`` queries run at once in this
process and ``max_per_user`` per person (the others are answered "busy, try again" at once). Every query,
refused or not, is recorded with the assets it read; for a person without clearance an engine error that
may quote a value is recorded and shown by its class only.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiban.catalog.lineage import STAR, ColumnGraph, asset_resolver, build_column_graph, query_lineage
from kiban.catalog.masking import open_masked, reserved_names
from kiban.catalog.pii import MaskPlan, pii_columns
from kiban.catalog.safety import Exposed, QueryRefused, check_query, prove_reads
from kiban.catalog.usage import Actor, log_query
from kiban.catalog.warehouse import published_columns
from kiban.errors import KibanError, UsageError
from kiban.spreadsheets import inert

if TYPE_CHECKING:
    from kiban.graph import Graph
    from kiban.project import Project
    from kiban.store import Store

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 1000
DEFAULT_TIMEOUT = 30.0
MAX_TIMEOUT = 3600.0
MAX_LIMIT = 1_000_000
DEFAULT_MEMORY = "1GB"  # per query: DuckDB's own default is 80% of the machine's memory
DEFAULT_THREADS = 1  # a query's DuckDB threads compete with the server's own loop for the cores
DEFAULT_MAX_RUNNING = max(2, os.cpu_count() or 2)
DEFAULT_MAX_PER_USER = 2
# engine errors that name things (columns, tables, syntax), never data values: shown as they are
_NAMING_ERRORS = ("BinderException", "CatalogException", "ParserException", "SyntaxException")
_ERROR_CLASSES = {
    "ConversionException": "a value could not be converted to the requested type",
    "InvalidInputException": "a function was given a value it cannot take",
    "OutOfRangeException": "a value is out of the range of its type",
    "OutOfMemoryException": "the query needs more memory than a console query may use",
    "InvalidTypeException": "a type does not fit",
    "NotImplementedException": "the query uses something DuckDB does not support",
    "UnicodeDecodeError": "a value is not valid text",
}


class QueryTimeout(KibanError):
    exit_code = 4


class QueryFailed(KibanError):
    """The engine could not run a query that passed the checks (a wrong column, a bad cast)."""


class ConsoleBusy(KibanError):
    """Too many console queries run at once (in this process, or of this person): try again in a moment."""

    exit_code = 3


@dataclass
class QueryResult:
    columns: list[str]
    types: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool  # more rows than the limit existed
    seconds: float
    assets: tuple[str, ...]  # what the query read
    masked: tuple[str, ...] = ()  # columns whose values were masked (PII, no clearance)
    query_id: int | None = None
    pii_shown: bool = False  # PII columns were returned unmasked (the person has clearance)

    def as_dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


class Slots:
    """How many console queries run: at most ``total`` at once, ``per_user`` per person. Never waits."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.running = 0
        self.by_user: dict[str, int] = {}

    def take(self, user: str, total: int, per_user: int) -> None:
        with self._lock:
            if self.running >= total:
                raise ConsoleBusy(f"the console is busy ({self.running} queries are running)",
                                  "try again in a moment")
            if self.by_user.get(user, 0) >= per_user:
                raise ConsoleBusy(f"{user} already has {per_user} queries running",
                                  "wait for one of them to finish, then try again")
            self.running += 1
            self.by_user[user] = self.by_user.get(user, 0) + 1

    def give(self, user: str) -> None:
        with self._lock:
            self.running -= 1
            left = self.by_user.get(user, 1) - 1
            if left:
                self.by_user[user] = left
            else:
                self.by_user.pop(user, None)


SLOTS = Slots()  # one per process: the web server's threads and the CLI share the machine


def check_limits(limit: int, timeout: float) -> None:
    """Absurd limits are the caller's mistake (a 4xx), never an engine failure."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= MAX_LIMIT:
        raise UsageError(f"the row limit must be between 1 and {MAX_LIMIT:,}; got {limit!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not math.isfinite(timeout) \
            or not 0 < timeout <= MAX_TIMEOUT:
        raise UsageError(f"the time limit must be more than 0 and at most {MAX_TIMEOUT:g} seconds; got {timeout!r}")


@dataclass
class QueryConsole:
    """Runs people's queries over one project. Cheap to keep: each query gets its own session."""

    project: Project
    store: Store | None = None
    graph: Graph | None = None
    memory_limit: str = DEFAULT_MEMORY
    threads: int = DEFAULT_THREADS
    max_running: int = DEFAULT_MAX_RUNNING
    max_per_user: int = DEFAULT_MAX_PER_USER
    _columns: ColumnGraph | None = field(default=None, init=False)
    _pii: dict[tuple[str, str], tuple[str, str] | None] | None = field(default=None, init=False)
    _plan: MaskPlan | None = field(default=None, init=False)
    _known: dict[str, list[str]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        if self.graph is None:
            from kiban.graph import build_graph

            self.graph = build_graph(self.project)
        self.relations: dict[str, object] = {**self.graph.assets,
                                             **{k: v for k, v in self.project.lake_views().items()}}

    @property
    def column_graph(self) -> ColumnGraph:
        if self._columns is None:
            assert self.graph is not None
            self._known = {k: [c for c, _ in v] for k, v in published_columns(self.project).items()}
            self._columns = build_column_graph(self.graph, self._known,
                                               self.project.state_dir / "cache" / "lineage.json")
        return self._columns

    @property
    def pii(self) -> set[tuple[str, str]]:
        if self._pii is None:
            self._pii = dict(pii_columns(self.project, self.column_graph))
        return set(self._pii)

    @property
    def mask_plan(self) -> MaskPlan:
        if self._plan is None:
            self.pii  # noqa: B018 - computes self._pii
            assert self._pii is not None
            self._plan = MaskPlan(self.project, self.graph, self.column_graph, self._pii)
        return self._plan

    def check(self, sql: str) -> tuple[str, ...]:
        """The assets ``sql`` would read; :class:`QueryRefused` when it may not run."""

        assets = check_query(sql, self.relations).assets
        prove_reads(sql, Exposed(self.relations, reserved_names()))
        return self._bases(assets)

    def run(self, sql: str, actor: Actor, *, params: Mapping[str, Any] | None = None, limit: int = DEFAULT_LIMIT,
            timeout: float = DEFAULT_TIMEOUT, kind: str = "query", name: str | None = None,
            record: bool = True) -> QueryResult:
        """Check, run and record one query; raises QueryRefused, QueryTimeout, QueryFailed (all recorded),
        ConsoleBusy, or UsageError for absurd limits."""

        check_limits(limit, timeout)
        started = time.perf_counter()
        # admission first: a query turned away costs nothing (no parsing, no lineage, no session)
        SLOTS.take(actor.user, self.max_running, self.max_per_user)
        try:
            return self._run(sql, actor, params, limit, timeout, kind, name, record, started)
        finally:
            SLOTS.give(actor.user)

    def _run(self, sql: str, actor: Actor, params: Mapping[str, Any] | None, limit: int, timeout: float,
             kind: str, name: str | None, record: bool, started: float) -> QueryResult:
        try:
            checked = check_query(sql, self.relations)
            proven = prove_reads(sql, Exposed(self.relations, reserved_names()))
        except QueryRefused as exc:
            self._record(actor, kind, name, sql, "refused", error=exc.message)
            raise
        reads = sorted(set(checked.assets) | set(proven))
        outputs = self._pii_outputs(checked.tree, checked.assets)
        try:
            masks = None if actor.pii_clearance else self.mask_plan
            columns, types, rows, truncated = _execute(self.project, sql, params, limit, timeout, reads, masks,
                                                       self.memory_limit, self.threads, actor.pii_clearance)
        except QueryTimeout as exc:
            self._record(actor, kind, name, sql, "timeout", self._bases(checked.assets), error=exc.message,
                         seconds=time.perf_counter() - started)
            raise
        except QueryFailed as exc:
            self._record(actor, kind, name, sql, "failed", self._bases(checked.assets), error=exc.message,
                         seconds=time.perf_counter() - started)
            raise
        hidden = _mask_columns(columns, outputs)
        shown = bool(hidden) and actor.pii_clearance  # cleared: shown, and the history says so
        if shown:
            hidden = []
        seconds = time.perf_counter() - started
        read = self._bases(checked.assets)
        query_id = self._record(actor, kind, name, sql, "ok", read, rows=len(rows), seconds=seconds,
                                pii_shown=shown) if record else None
        return QueryResult(columns, types, rows, truncated, seconds, read, tuple(hidden), query_id, shown)

    def _bases(self, assets: Sequence[str]) -> tuple[str, ...]:
        """What a query read, as assets: a ``_latest``/``_history`` view counts as the table it is made from."""
        return tuple(dict.fromkeys(self.mask_plan.base(a) for a in assets))

    def _pii_outputs(self, tree: Any, assets: Sequence[str]) -> list[tuple[str, bool]] | None:
        """Each output column of the query (by lineage) and whether it may carry PII; None: all of them.

        Only the label of the result's columns: the values were masked where the query read them."""
        if not any("pii" in c.tags for a in self.project.assets.values() for c in a.config.columns):
            return []
        assert self.graph is not None
        plan = self.mask_plan
        pii = self.pii
        bases = {plan.base(a) for a in assets}
        if not ({a for a, _ in pii} | plan.tainted) & bases:
            return []
        try:
            lineage = query_lineage(tree, asset_resolver(self.graph.readable), self.column_graph.columns)
        except Exception:  # a query lineage cannot follow: None, so every column is masked
            log.info("console: no column lineage for a query over %s", sorted(assets), exc_info=True)
            return None
        return [(name, name in lineage.unexplained or any(r in pii for r in lineage.sources.get(name, ())))
                for name in lineage.columns]

    def _record(self, actor: Actor, kind: str, name: str | None, sql: str, status: str,
                assets: Sequence[str] = (), **extra: Any) -> int | None:
        if self.store is None:
            return None
        return log_query(self.store, self.project.name, actor, kind=kind, name=name, sql=sql, status=status,
                         assets=assets, **extra)


def _mask_columns(columns: list[str], outputs: list[tuple[str, bool]] | None) -> list[str]:
    """The result's columns that carry masked values, matched by position to what lineage saw. When the two
    disagree on the columns (an expansion SQLGlot does not know), every column is labelled."""
    if outputs is None:
        return list(columns)
    if not any(flag for _, flag in outputs):
        return []
    if len(outputs) != len(columns) or STAR in (n for n, _ in outputs):
        return list(columns)
    return [c for c, (_, flag) in zip(columns, outputs, strict=True) if flag]


def engine_message(exc: BaseException, cleared: bool, clean: Any = None) -> str:
    """What a person is told about an engine error. Without clearance, an error that may quote a value (a
    failed cast, a function's bad input) is told by its class only; naming errors are told as they are."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if clean is not None:
        text = clean(text)
    kind = type(exc).__name__
    if cleared or kind in _NAMING_ERRORS:
        return text
    return _ERROR_CLASSES.get(kind, "the engine refused a value") + " (values are not shown without PII clearance)"


QUERY_NICENESS = 10  # console queries yield the cores to runs and to the server's own loop


def _execute(*args: Any) -> tuple[list[str], list[str], list[tuple[Any, ...]], bool]:
    """Run the query on a thread of its own at a lower CPU priority (Linux gives each thread its own nice
    value; with one DuckDB thread per query the work happens on this thread), so a busy console slows
    neither a run nor the web server's answers much. Errors are raised in the caller."""
    outcome: dict[str, Any] = {}

    def work() -> None:
        with contextlib.suppress(OSError, AttributeError):  # not Linux, or not allowed: normal priority
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), QUERY_NICENESS)
        try:
            outcome["value"] = _execute_here(*args)
        except BaseException as exc:  # handed to the caller's thread as it is
            outcome["error"] = exc

    worker = threading.Thread(target=work, name="kiban-console-query", daemon=True)
    worker.start()
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    result: tuple[list[str], list[str], list[tuple[Any, ...]], bool] = outcome["value"]
    return result


def _execute_here(project: Project, sql: str, params: Mapping[str, Any] | None, limit: int, timeout: float,
                  reads: Sequence[str], masks: MaskPlan | None, memory_limit: str, threads: int,
                  cleared: bool) -> tuple[list[str], list[str], list[tuple[Any, ...]], bool]:
    import duckdb


    with open_masked(project, reads, masks, memory_limit=memory_limit, threads=threads) as session:
        con = session.con
        timer = threading.Timer(timeout, con.interrupt)
        timer.start()
        try:
            result = con.execute(sql, dict(params)) if params else con.execute(sql)
            rows = result.fetchmany(limit + 1)
        except duckdb.InterruptException:
            raise QueryTimeout(f"the query ran longer than {timeout:g}s and was stopped",
                               "narrow it down (a filter, fewer columns) or ask for a mart") from None
        except duckdb.Error as exc:
            raise QueryFailed(f"the query failed: {engine_message(exc, cleared, session.clean)}") from None
        except (UnicodeError, ValueError, TypeError, OverflowError, MemoryError) as exc:  # values → Python
            raise QueryFailed(f"the query failed: {engine_message(exc, cleared, session.clean)}") from None
        finally:
            timer.cancel()
        description = result.description or []
    columns = [d[0] for d in description]
    types = [str(d[1]) for d in description]
    return columns, types, rows[:limit], len(rows) > limit


def export(result: QueryResult, path: Path) -> Path:
    """Write a result to ``path``: ``.csv`` or ``.xlsx`` (by suffix); no cell is ever a live formula."""
    suffix = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        import csv

        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow([inert(c) for c in result.columns])
            writer.writerows([inert(v) for v in row] for row in result.rows)
    elif suffix == ".xlsx":
        from openpyxl import Workbook
        from openpyxl.cell import WriteOnlyCell

        book = Workbook(write_only=True)
        sheet = book.create_sheet("result")

        def cell(value: Any) -> Any:
            if not (isinstance(value, int | float | str | type(None)) or hasattr(value, "isoformat")):
                value = str(value)
            if isinstance(value, str):
                found = WriteOnlyCell(sheet, value=value)
                found.data_type = "s"  # openpyxl takes "=…" for a formula; this is text, whatever it starts with
                return found
            return value

        sheet.append([cell(c) for c in result.columns])
        for row in result.rows:
            sheet.append([cell(v) for v in row])
        book.save(path)
    else:
        raise UsageError(f"cannot export to '{path.name}'", "use a .csv or .xlsx file name")
    return path
