"""The gate of ``kiban run``: every new version of a model passes its checks before it is published.

``Gate`` is the audit-hook factory that ``run_project`` takes. For each asset being built it returns a
hook (or None when the asset has no checks) which ``Engine.build`` calls on the new version inside the
publishing transaction. The hook runs the suite, records every result with the run id and the version's
fingerprint, and raises :class:`CheckFailed` when a check of severity ``error`` failed: the transaction
rolls back, the previous version stays published, and the run skips what is downstream.

Lake tables are not built, so they are not gated here; ``kiban check`` judges them.

A **view** cannot be gated: it holds no rows, it reads its inputs when it is queried, so the rows a check
judged at its publish are not the rows it serves a minute later (a new load of the lake shows through it at
once, checked or not). A blocking check on a ``materialized: view`` model is therefore refused when the gate
is made — before anything runs — naming the check's place; a ``severity: warn`` check is allowed (it
reports, it never promised to stop anything). docs/checks.md, "Views".
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from kiban.assetkey import KeyResolver
from kiban.checks.evaluate import CheckResult, context, run_suite
from kiban.checks.ledger import CheckLedger
from kiban.checks.spec import Relationships
from kiban.checks.suite import Check, Suite, suites_of
from kiban.engines.base import AuditHook, Session
from kiban.errors import KibanError, ProjectError, ProjectErrors
from kiban.graph import build_graph
from kiban.graph.dag import macro_uses
from kiban.graph.duckrefs import Unserializable, called_functions, duckdb_refs
from kiban.graph.sqlrefs import TableRef
from kiban.project import Asset, Project
from kiban.status import Severity
from kiban.store import Store
from kiban.walk import reach


class CheckFailed(KibanError):
    """Checks of severity error failed: the version they judged is not published."""

    def __init__(self, asset: str, failed: list[CheckResult]) -> None:
        listed = "; ".join(f"{r.name}: {r.detail}" for r in failed)
        super().__init__(f"{len(failed)} blocking check{'s' if len(failed) != 1 else ''} failed, the previous "
                         f"version stays published — {listed}",
                         f"`kiban show {asset}` shows the checks' history and failing rows")
        self.asset = asset
        self.failed = failed


class Gate:
    """Audit hooks for the models of ``project`` that declare checks (their SQL is validated here)."""

    def __init__(self, project: Project, now: Callable[[], datetime] | None = None) -> None:
        self.project = project
        self.suites: dict[str, Suite] = suites_of(project, [k for k, a in project.assets.items()
                                                            if a.layer != "lake"])
        _refuse_gated_views(self.suites)
        # what each check's SQL reads besides its own table (other assets), and the project's macros it calls
        uses = macro_uses(project) if project.macros else ({}, {})
        self.reads: dict[str, dict[str, tuple[str, ...]]] = {}
        self.calls: dict[str, dict[str, tuple[str, ...]]] = {}
        for key, suite in self.suites.items():
            for check in suite.checks:
                if check.sql is not None:
                    tables, macros = check_reads(project, check, uses)
                    self.reads.setdefault(key, {})[check.name] = tables
                    self.calls.setdefault(key, {})[check.name] = macros
        self.macros = {name: macro.text for name, macro in project.macros.items()}
        self.now = now or (lambda: datetime.now(UTC))
        self._store: Store | None = None
        self._lock = threading.Lock()
        self.after = self._order()

    def _order(self) -> dict[str, tuple[str, ...]]:
        """Which builds wait for which: a relationships check wants the referenced model's new version when
        both are built in one run. Checked here: the referenced model must not be built from the checked one."""
        after: dict[str, tuple[str, ...]] = {}
        for key, suite in self.suites.items():
            targets = {c.target for c in suite.checks if isinstance(c.spec, Relationships) and c.target}
            targets |= {t for c in suite.checks for t in self.reads.get(key, {}).get(c.name, ())}
            targets = {t for t in targets if t in self.project.assets and self.project.assets[t].layer != "lake"}
            if targets:
                after[key] = tuple(sorted(targets))
        if not after:
            return after
        graph = build_graph(self.project)
        deps = {k: set(graph.deps[k]) | set(after.get(k, ())) for k in graph.assets}
        for key, firsts in after.items():
            for target in firsts:
                if key in graph.upstream(target) or _reaches(deps, target, key):
                    check = next(c for c in self.suites[key].checks
                                 if c.target == target or target in self.reads.get(key, {}).get(c.name, ()))
                    what = f"relationships to {target}" if check.target == target else f"it reads {target}"
                    raise check.error(f"{what}, which is built from {key} (directly or via other checks), so it "
                                      "would always see an old version", "check the relationship from the other side")
        return after

    def __bool__(self) -> bool:
        return bool(self.suites)

    def judgement(self, key: str) -> str:
        """A digest of the blocking checks a new version of ``key`` must pass ('' when none): part of its
        fingerprint, so adding or changing one makes the next run build and judge the model again."""
        suite = self.suites.get(key)
        blocking = sorted(
            json.dumps([c.name, c.kind, c.spec.model_dump(mode="json"), c.target, c.sql]
                       + [self.macros[m] for m in self.calls.get(key, {}).get(c.name, ())], sort_keys=True,
                       default=str)
            for c in (suite.checks if suite else ()) if c.severity == Severity.ERROR)
        return hashlib.sha256("\n".join(blocking).encode()).hexdigest() if blocking else ""

    def references(self, key: str) -> tuple[str, ...]:
        """The tables the blocking checks of ``key`` read besides it — a ``relationships`` check's target, what a
        ``sql`` check's query reads: their data versions are part of its fingerprint, so a change there judges the
        model again."""
        suite = self.suites.get(key)
        blocking = [c for c in (suite.checks if suite else ()) if c.severity == Severity.ERROR]
        return tuple(sorted({c.target for c in blocking if isinstance(c.spec, Relationships) and c.target}
                            | {t for c in blocking for t in self.reads.get(key, {}).get(c.name, ())}))

    @property
    def store(self) -> Store:
        with self._lock:
            if self._store is None:
                self._store = Store(self.project.state_url)
            return self._store

    def __call__(self, asset: Asset, run_id: str, fingerprint: str) -> AuditHook | None:
        suite = self.suites.get(asset.key)
        if not suite:
            return None

        def audit(session: Session, relation: str) -> None:
            moment = self.now()
            store = self.store
            tz = ZoneInfo(self.project.config.timezone)
            results = run_suite(session, relation, suite, context(
                self.project, lambda a, c: _observations(store, self.project.name, a, c, tz), moment))
            _record(store, self.project.name, (run_id, fingerprint), results,
                    moment.astimezone(UTC).replace(tzinfo=None))
            blocking = [r for r in results if r.blocks]
            if blocking:
                raise CheckFailed(asset.key, blocking)

        return audit

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


def check_reads(project: Project, check: Check,
                uses: tuple[dict[str, set[str]], dict[str, list[TableRef]]] | None = None
                ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What an ``expression`` or ``sql`` check reads besides its own table: (the assets its SQL names — a ``sql``
    check "may read other tables", through a project macro too —, the project's macros it calls, directly or
    through each other). A change of either must judge the table again, like a ``relationships`` check's target
    (``Judge.references``, ``Judge.judgement``)."""
    assert check.sql is not None
    text = check.sql if check.kind == "sql" else f"select 1 where {check.sql}"
    try:
        refs = [(r.schema, r.name) for r in duckdb_refs(text, check.source or Path("check"))]
    except (ProjectError, Unserializable):  # DuckDB cannot read it as one SELECT: SQLGlot's reading then
        refs = _sqlglot_tables(text)
    macros: set[str] = set()
    if project.macros:
        closure, macro_reads = uses or macro_uses(project)
        for name in called_functions(text) & set(closure):
            macros |= closure[name]
        refs += [(r.schema, r.name) for m in macros for r in macro_reads.get(m, ())]
    keys = KeyResolver(project.assets, project.lake_views())
    found = {k for k in (keys.resolve(schema, name) for schema, name in refs) if k and k != check.asset}
    return tuple(sorted(found)), tuple(sorted(macros))


def _sqlglot_tables(text: str) -> list[tuple[str, str]]:
    import sqlglot
    from sqlglot import exp

    tree = sqlglot.parse_one(text, read="duckdb")
    ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    return [(t.db, t.name) for t in tree.find_all(exp.Table)
            if t.name and not (not t.db and t.name.lower() in ctes)]


def _observations(store: Store, project: str, asset: str, check: str, tz: ZoneInfo) -> list[Any]:
    """``checks.history.observations``; on a SQLite store opened without SQLAlchemy, ``CheckLedger``'s (the same)."""
    if store.lite is not None:
        with store.lite_locked() as conn:
            return CheckLedger(conn).observations(project, asset, check, tz)
    from kiban.checks.history import observations

    return observations(store, project, asset, check, tz)


def _record(store: Store, project: str, version: tuple[str, str], results: list[CheckResult],
            checked_at: datetime) -> None:
    """``checks.history.record`` of a run's build (``version``: run id, fingerprint); on a SQLite store opened
    without SQLAlchemy, ``CheckLedger``'s (the same rows: tests/test_check_ledger.py)."""
    run_id, fingerprint = version
    if store.lite is not None:
        with store.lite_locked() as conn:
            CheckLedger(conn).record(project, run_id, fingerprint, results, checked_at)
        return
    from kiban.checks.history import record

    record(store, project, run_id, fingerprint, results, checked_at=checked_at)


def gate_for(project: Project) -> Gate | None:
    """The gate of a run of ``project``, or None when no model declares checks."""
    if not any(a.config.has_checks for a in project.assets.values() if a.layer != "lake"):
        return None
    return Gate(project)


def _refuse_gated_views(suites: dict[str, Suite]) -> None:
    """A blocking check on a view promises what a view cannot keep (see the module's docstring)."""

    errors: list[ProjectError] = []
    for key, suite in suites.items():
        if suite.asset.config.materialized != "view" or suite.asset.python is not None:
            continue
        for check in suite.checks:
            if check.severity == Severity.ERROR:
                errors.append(check.error(
                    "a blocking check cannot gate a view: a view reads its inputs whenever it is queried, so new "
                    "lake data shows through it before (and whether or not) the check passes",
                    f"make {key} `materialized: table` (checked before every publish), or give the check "
                    "`severity: warn`"))
    if errors:
        raise errors[0] if len(errors) == 1 else ProjectErrors(errors)


def _reaches(deps: dict[str, set[str]], start: str, goal: str) -> bool:
    """Whether ``goal`` is among the things ``start`` waits for, following ``deps`` (inputs and orderings)."""
    return goal in reach(start, deps)
