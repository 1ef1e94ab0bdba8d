"""The SQL console's core: run one read-only query for a person, with a time limit and a row limit.

Every query is checked first (:mod:`kiban.catalog.safety`), then run on a read-only, sandboxed
connection (:mod:`kiban.catalog.warehouse`), interrupted at its time limit, cut at its row limit, and
its PII columns masked for people without clearance (a column is PII when column lineage traces it to
a column tagged ``pii``). Every query, refused or not, is recorded with the assets it read: the query
history and the usage reports read that record.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiban.catalog.lineage import STAR, ColumnGraph, asset_resolver, build_column_graph, query_lineage
from kiban.catalog.pii import pii_columns
from kiban.catalog.safety import QueryRefused, check_query
from kiban.catalog.usage import Actor, log_query
from kiban.catalog.warehouse import open_readonly, published_columns
from kiban.errors import KibanError, UsageError

if TYPE_CHECKING:
    from kiban.graph import Graph
    from kiban.project import Project
    from kiban.store import Store

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 1000
DEFAULT_TIMEOUT = 30.0


class QueryTimeout(KibanError):
    exit_code = 4


class QueryFailed(KibanError):
    """The engine could not run a query that passed the checks (a wrong column, a bad cast)."""


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


@dataclass
class QueryConsole:
    """Runs people's queries over one project. Cheap to keep: the warehouse is opened per query."""

    project: Project
    store: Store | None = None
    graph: Graph | None = None
    _columns: ColumnGraph | None = field(default=None, init=False)
    _pii: set[tuple[str, str]] | None = field(default=None, init=False)
    _known: dict[str, list[str]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        if self.graph is None:
            from kiban.graph import build_graph

            self.graph = build_graph(self.project)

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
            self._pii = set(pii_columns(self.project, self.column_graph))
        return self._pii

    def check(self, sql: str) -> tuple[str, ...]:
        """The assets ``sql`` would read; :class:`QueryRefused` when it may not run."""
        assert self.graph is not None
        return check_query(sql, self.graph.assets).assets

    def run(self, sql: str, actor: Actor, *, params: Mapping[str, Any] | None = None, limit: int = DEFAULT_LIMIT,
            timeout: float = DEFAULT_TIMEOUT, kind: str = "query", name: str | None = None,
            record: bool = True) -> QueryResult:
        """Check, run and record one query; raises QueryRefused, QueryTimeout or QueryFailed (all recorded)."""
        assert self.graph is not None
        started = time.perf_counter()
        try:
            checked = check_query(sql, self.graph.assets)
        except QueryRefused as exc:
            self._record(actor, kind, name, sql, "refused", error=exc.message)
            raise
        outputs = self._pii_outputs(checked.tree, checked.assets)
        try:
            columns, types, rows, truncated = _execute(self.project, sql, params, limit, timeout)
        except QueryTimeout as exc:
            self._record(actor, kind, name, sql, "timeout", checked.assets, error=exc.message,
                         seconds=time.perf_counter() - started)
            raise
        except QueryFailed as exc:
            self._record(actor, kind, name, sql, "failed", checked.assets, error=exc.message,
                         seconds=time.perf_counter() - started)
            raise
        hidden = _mask_columns(columns, outputs)
        shown = bool(hidden) and actor.pii_clearance  # cleared: shown, and the history says so
        if shown:
            hidden = []
        if hidden:
            from kiban.checks.evaluate import mask

            idx = [i for i, c in enumerate(columns) if c in hidden]
            rows = [tuple(mask(v) if i in idx else v for i, v in enumerate(row)) for row in rows]
        seconds = time.perf_counter() - started
        query_id = self._record(actor, kind, name, sql, "ok", checked.assets, rows=len(rows), seconds=seconds,
                                pii_shown=shown) if record else None
        return QueryResult(columns, types, rows, truncated, seconds, checked.assets, tuple(hidden), query_id, shown)

    def _pii_outputs(self, tree: Any, assets: Sequence[str]) -> list[tuple[str, bool]] | None:
        """Each output column of the query (by lineage) and whether it may carry PII; None: mask everything.

        Fail closed: when the query reads an asset with PII columns, an output whose lineage the walk could
        not pin down (a whole-row reference, COLUMNS(...), ``#3``, an unexpanded ``*``) counts as PII."""
        if not any("pii" in c.tags for a in self.project.assets.values() for c in a.config.columns):
            return []
        assert self.graph is not None
        pii = self.pii
        pii_assets = {a for a, _ in pii}
        if not pii_assets & set(assets):
            return []
        try:
            lineage = query_lineage(tree, asset_resolver(self.graph.assets), self.column_graph.columns)
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
    """The result's columns to mask, matched by position to what lineage saw. When the two disagree on the
    columns (an expansion SQLGlot does not know), everything is masked rather than guessed."""
    if outputs is None:
        return list(columns)
    if not any(flag for _, flag in outputs):
        return []
    if len(outputs) != len(columns) or STAR in (n for n, _ in outputs):
        return list(columns)
    return [c for c, (_, flag) in zip(columns, outputs, strict=True) if flag]


def _execute(project: Project, sql: str, params: Mapping[str, Any] | None, limit: int,
             timeout: float) -> tuple[list[str], list[str], list[tuple[Any, ...]], bool]:
    import duckdb

    with open_readonly(project) as con:
        timer = threading.Timer(timeout, con.interrupt)
        timer.start()
        try:
            result = con.execute(sql, dict(params)) if params else con.execute(sql)
            rows = result.fetchmany(limit + 1)
        except duckdb.InterruptException:
            raise QueryTimeout(f"the query ran longer than {timeout:g}s and was stopped",
                               "narrow it down (a filter, fewer columns) or ask for a mart") from None
        except duckdb.Error as exc:
            raise QueryFailed(f"the query failed: {str(exc).splitlines()[0]}") from None
        finally:
            timer.cancel()
        description = result.description or []
    columns = [d[0] for d in description]
    types = [str(d[1]) for d in description]
    return columns, types, rows[:limit], len(rows) > limit


def export(result: QueryResult, path: Path) -> Path:
    """Write a result to ``path``: ``.csv`` or ``.xlsx`` (by suffix)."""
    suffix = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        import csv

        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(result.columns)
            writer.writerows(result.rows)
    elif suffix == ".xlsx":
        from openpyxl import Workbook

        book = Workbook(write_only=True)
        sheet = book.create_sheet("result")
        sheet.append(result.columns)
        for row in result.rows:
            sheet.append([v if isinstance(v, int | float | str | type(None)) or hasattr(v, "isoformat") else str(v)
                          for v in row])
        book.save(path)
    else:
        raise UsageError(f"cannot export to '{path.name}'", "use a .csv or .xlsx file name")
    return path
