"""The SQL console's core: run one read-only query for a person, with limits on time, rows, memory and load.

Every query is checked first (:mod:`kiban.catalog.safety`: SQLGlot, then DuckDB's own parse tree), then run
in a masked session (:mod:`kiban.catalog.masking`): the relations it reads are views in which every PII
column is already masked for a person without clearance, so nothing the query does can see a clear value.
The session reads the warehouse's snapshot, so a query never blocks a run. Each query runs in a worker
process of its own (:mod:`kiban.catalog.sandbox`) with an OS cap on its memory, no file writes and the lowest
CPU priority: a query past its memory or time limit fails alone. At most ``max_running`` queries run at once
on the project, across every process that serves it, and ``max_per_user`` per person
(:mod:`kiban.catalog.admission`; the others are answered "busy, try again" at once). Every query,
refused or not, is recorded with the assets it read; for a person without clearance an engine error that
may quote a value is recorded and shown by its class only.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiban.catalog import sandbox
from kiban.catalog.admission import Admission, ConsoleBusy
from kiban.catalog.definitions import stale_definitions
from kiban.catalog.lineage import STAR, ColumnGraph, asset_resolver, build_column_graph, query_lineage
from kiban.catalog.masking import Found, mask_key, plan_masks, reserved_names
from kiban.catalog.pii import MaskPlan, pii_columns
from kiban.catalog.pivot import MAX_VALUES, is_dynamic, make_static, value_queries
from kiban.catalog.safety import Exposed, QueryRefused, check_query, prove_reads
from kiban.catalog.sandbox import QueryFailed, QueryStopped, engine_message
from kiban.catalog.usage import Actor, QueryEntry, log_query
from kiban.catalog.warehouse import published_columns, source_of
from kiban.errors import UsageError
from kiban.graph import build_graph
from kiban.spreadsheets import inert
from kiban.store import Store

if TYPE_CHECKING:
    from kiban.graph import Graph
    from kiban.project import Project

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 1000
DEFAULT_TIMEOUT = 30.0
MAX_TIMEOUT = 3600.0
MAX_LIMIT = 1_000_000
DEFAULT_MEMORY = "1GB"  # per query, DuckDB's own bound: its default is 80% of the machine's memory
DEFAULT_ADDRESS_SPACE = 3 * 2**30  # per query, the OS's hard bound on the worker process (DuckDB + Python)
DEFAULT_THREADS = 1  # a query's DuckDB threads compete with runs and the server's own loop for the cores
DEFAULT_MAX_RUNNING = max(1, (os.cpu_count() or 2) - 1)  # at once on the project: one core stays free
DEFAULT_MAX_PER_USER = 2
__all__ = ["ConsoleBusy", "QueryConsole", "QueryFailed", "QueryResult", "QueryStopped", "engine_message", "export"]


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
    # what the person should know about the masks: each table read that is masked whole (or reads one) because
    # its code changed since it was built, why, and the run that rebuilds it (no values)
    notes: tuple[str, ...] = ()

    def as_dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


def check_limits(limit: int, timeout: float) -> None:
    """Absurd limits are the caller's mistake (a 4xx), never an engine failure."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= MAX_LIMIT:
        raise UsageError(f"the row limit must be between 1 and {MAX_LIMIT:,}; got {limit!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not math.isfinite(timeout) \
            or not 0 < timeout <= MAX_TIMEOUT:
        raise UsageError(f"the time limit must be more than 0 and at most {MAX_TIMEOUT:g} seconds; got {timeout!r}")


@dataclass(frozen=True)
class ConsoleQuery:
    """One query handed to the console (``QueryConsole.run``): what travels with it from admission to the record."""

    sql: str
    actor: Actor
    params: Mapping[str, Any] | None
    limit: int
    timeout: float
    kind: str = "query"
    name: str | None = None
    record: bool = True  # False: not written to the usage log (the caller records it itself)

    def entry(self, status: str, assets: Sequence[str] = (), **extra: Any) -> QueryEntry:
        """What the usage log records of this query, ended with ``status``."""
        return QueryEntry(self.kind, self.sql, status, assets, self.name, **extra)


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
    address_space: int | None = DEFAULT_ADDRESS_SPACE
    priority: str = sandbox.DEFAULT_PRIORITY  # of the worker processes: "idle", "low" or "normal"
    _columns: ColumnGraph | None = field(default=None, init=False)
    _pii: dict[tuple[str, str], tuple[str, str] | None] | None = field(default=None, init=False)
    _plan: MaskPlan | None = field(default=None, init=False)
    _known: dict[str, list[str]] = field(default_factory=dict, init=False)
    _changed: dict[str, tuple[str, ...]] = field(default_factory=dict, init=False)  # stale model → changed files

    def __post_init__(self) -> None:
        if self.graph is None:
            self.graph = build_graph(self.project)
        self.relations: dict[str, object] = {**self.graph.assets,
                                             **{k: v for k, v in self.project.lake_views().items()}}
        self.admission = Admission(self.project.state_dir / "console")
        if self.priority not in sandbox.PRIORITIES:
            raise UsageError(f"unknown console priority {self.priority!r}",
                             f"use one of {', '.join(sandbox.PRIORITIES)}")

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
            self._plan = MaskPlan(self.project, self.graph, self.column_graph, self._pii, self._stale())
        return self._plan

    def _stale(self) -> frozenset[str]:
        """Models whose code changed since their table was built (:func:`kiban.catalog.definitions.stale_models`)."""
        if not self.pii:
            return frozenset()
        if self.store is not None:
            self._changed = stale_definitions(self.project, self.graph, self.store)
        else:
            store = Store(self.project.state_url)
            try:
                self._changed = stale_definitions(self.project, self.graph, store)
            finally:
                store.close()
        return frozenset(self._changed)

    def stale_notes(self, assets: Sequence[str], actor: Actor) -> tuple[str, ...]:
        """For a person without clearance: each of ``assets`` (what a query read) that is masked whole because its
        code changed since its table was built, or that reads such a table — why, and the run that rebuilds it.
        Names and file paths only, never a value."""
        if actor.pii_clearance:
            return ()
        plan = self.mask_plan
        if not plan.distrusted:
            return ()
        assert self.graph is not None
        notes: list[str] = []
        for asset in dict.fromkeys(plan.base(a) for a in assets):
            if asset in plan.distrusted:
                notes.append(f"{asset} is masked whole: its code changed since it was built{self._files(asset)}; "
                             f"every column reads as '•••' until `kiban run +{asset}` builds it again")
                continue
            upstream = sorted(self._upstream(asset) & plan.distrusted)
            if upstream:
                said = "; ".join(f"{u}{self._files(u)}" for u in upstream)
                notes.append(f"{asset} reads {', '.join(upstream)}, whose code changed since it was built ({said}); "
                             f"its columns computed from there read as '•••' until `kiban run +{asset}` builds "
                             "them again")
        return tuple(notes)

    def _files(self, key: str) -> str:
        files = self._changed.get(key, ())
        return f" ({', '.join(files)} changed)" if files else ""

    def _upstream(self, key: str) -> set[str]:
        assert self.graph is not None
        seen: set[str] = set()
        todo = list(self.graph.deps.get(key, ()))
        while todo:
            dep = todo.pop()
            if dep not in seen:
                seen.add(dep)
                todo.extend(self.graph.deps.get(dep, ()))
        return seen

    def _explained(self, exc: QueryFailed, assets: Sequence[str], actor: Actor) -> QueryFailed:
        """A query that failed over a table masked whole (its code changed since its build: every column is the
        text '•••', so a comparison, a sum or a cast fails) is told why and what rebuilds it, instead of the
        engine's words about types; any other failure is ``exc`` as it was."""
        if isinstance(exc, QueryStopped):
            return exc
        try:
            notes = self.stale_notes(assets, actor)
        except Exception:  # the explanation is a courtesy: the failure stands as the engine told it
            log.info("console: cannot explain a failed query", exc_info=True)
            return exc
        whole = [a for a in dict.fromkeys(self.mask_plan.base(a) for a in assets)
                 if a in self.mask_plan.distrusted or self._upstream(a) & self.mask_plan.distrusted]
        if not notes or not whole:
            return exc
        rebuild = "kiban run " + " ".join(f"+{a}" for a in whole)
        return QueryFailed("the query failed over data masked because its code changed since it was built: "
                           + "; ".join(notes) + f" (the engine said: {exc.message})",
                           f"rebuild with `{rebuild}`, then query again")

    def check(self, sql: str) -> tuple[str, ...]:
        """The assets ``sql`` would read; :class:`QueryRefused` when it may not run."""

        assets = check_query(sql, self.relations).assets
        prove_reads(sql, Exposed(self.relations, reserved_names()))
        return self._bases(assets)

    def run(self, sql: str, actor: Actor, *, params: Mapping[str, Any] | None = None, limit: int = DEFAULT_LIMIT,
            timeout: float = DEFAULT_TIMEOUT, kind: str = "query", name: str | None = None,
            record: bool = True) -> QueryResult:
        """Check, run and record one query; raises QueryRefused, QueryStopped, QueryFailed (all recorded),
        ConsoleBusy, or UsageError for absurd limits."""

        check_limits(limit, timeout)
        started = time.perf_counter()
        # admission first: a query turned away costs nothing (no parsing, no lineage, no session)
        with self.admission.slot(actor.user, self.max_running, self.max_per_user):
            return self._run(ConsoleQuery(sql, actor, params, limit, timeout, kind, name, record), started)

    def _run(self, query: ConsoleQuery, started: float) -> QueryResult:
        sql, actor, params, limit, timeout = query.sql, query.actor, query.params, query.limit, query.timeout
        try:
            # a dynamic PIVOT is first given its values (computed over the masked views), then proven like any query
            runnable = self._static_pivot(sql, actor, params, timeout) if is_dynamic(sql) else sql
            checked = check_query(runnable, self.relations)
            proven = prove_reads(runnable, Exposed(self.relations, reserved_names()))
        except QueryRefused as exc:
            self._record(actor, query.entry("refused", error=exc.message))
            raise
        except (QueryStopped, QueryFailed) as exc:
            told = exc if isinstance(exc, QueryStopped) else self._explained(exc, self._read_by(sql), actor)
            self._record(actor, query.entry("stopped" if isinstance(exc, QueryStopped) else "failed",
                                            error=told.message, seconds=time.perf_counter() - started))
            if told is not exc:
                raise told from None
            raise
        reads = sorted(set(checked.assets) | set(proven))
        outputs = self._pii_outputs(checked.tree, checked.assets)
        try:
            outcome = self._in_sandbox(runnable, reads, actor, params, limit, timeout)
            columns, types, rows, truncated = outcome.columns, outcome.types, outcome.rows, outcome.truncated
        except QueryStopped as exc:
            self._record(actor, query.entry("stopped", self._bases(checked.assets), error=exc.message,
                                            seconds=time.perf_counter() - started))
            raise
        except QueryFailed as exc:
            told = self._explained(exc, checked.assets, actor)
            self._record(actor, query.entry("failed", self._bases(checked.assets), error=told.message,
                                            seconds=time.perf_counter() - started))
            if told is not exc:
                raise told from None
            raise
        hidden = _mask_columns(columns, outputs)
        shown = bool(hidden) and actor.pii_clearance  # cleared: shown, and the history says so
        if shown:
            hidden = []
        seconds = time.perf_counter() - started
        read = self._bases(checked.assets)
        query_id = self._record(actor, query.entry("ok", read, rows=len(rows), seconds=seconds,
                                                   pii_shown=shown)) if query.record else None
        return QueryResult(columns, types, rows, truncated, seconds, read, tuple(hidden), query_id, shown,
                           self.stale_notes(checked.assets, actor))

    def _in_sandbox(self, sql: str, reads: Sequence[str], actor: Actor, params: Mapping[str, Any] | None,
                    limit: int, timeout: float) -> sandbox.Outcome:
        job = sandbox.Job(source_of(self.project), tuple(reads), sql, dict(params) if params else None, limit,
                          timeout, self.memory_limit, self.threads, self.address_space, actor.pii_clearance,
                          self.priority)
        return sandbox.run(job, self._planner(actor.pii_clearance))

    def _static_pivot(self, sql: str, actor: Actor, params: Mapping[str, Any] | None, timeout: float) -> str:
        """``sql`` with each dynamic PIVOT given its values, each found by a query that is itself checked,
        proven and run over the masked views (:mod:`kiban.catalog.pivot`)."""
        values: dict[tuple[int, int], list[tuple[Any, ...]]] = {}
        for query in value_queries(sql):
            checked = check_query(query.sql, self.relations)
            proven = prove_reads(query.sql, Exposed(self.relations, reserved_names()))
            used = {k: v for k, v in (params or {}).items() if f"${k}" in query.sql}
            outcome = self._in_sandbox(query.sql, sorted(set(checked.assets) | set(proven)), actor, used,
                                       MAX_VALUES + 1, timeout)
            values[(query.pivot, query.on)] = outcome.rows
        return make_static(sql, values)

    def _planner(self, cleared: bool) -> sandbox.Planner:
        """Masks for the columns a worker found (none for a person with clearance), and the key of the hash."""

        def plan(found: Found) -> tuple[dict[str, dict[str, str]], bytes | None]:
            plans = plan_masks(None if cleared else self.mask_plan, found)
            hashed = any(kind == "hash" for p in plans.values() for kind in p.values())
            return plans, mask_key(self.project) if hashed else None

        return plan

    def _read_by(self, sql: str) -> tuple[str, ...]:
        """The assets ``sql`` names (for telling why it failed; () when it cannot be checked)."""
        try:
            return tuple(check_query(sql, self.relations).assets)
        except QueryRefused:  # refused before it ran: nothing it read to explain
            return ()
        except Exception:  # a bug in the check itself must not hide the query's own error
            log.warning("console: cannot tell what a failed query read", exc_info=True)
            return ()

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
        pii = self.pii | plan.suspect  # columns of unknown lineage below PII are masked like PII
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

    def _record(self, actor: Actor, entry: QueryEntry) -> int | None:
        if self.store is None:
            return None
        return log_query(self.store, self.project.name, actor, entry)


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
