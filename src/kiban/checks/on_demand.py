"""``kiban check``: the checks of the selected assets on what is published now, and on the lake.

Nothing is built. Each table gets one measuring statement (plus samples for what failed), exactly as in a
run; results are recorded with an id of their own (``check-…``) and the fingerprint of the version judged.
Lake views are brought up to date with the lake's files first, as a run would.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from kiban.checks.evaluate import CheckResult, context, run_suite
from kiban.checks.ledger import CheckLedger
from kiban.checks.quoting import relation_name
from kiban.checks.suite import suites_of
from kiban.engines import open_engine
from kiban.engines.base import EMPTY_LAKE, CollectedTable
from kiban.graph import build_graph, select
from kiban.project import Project
from kiban.store.store import Store


@dataclass
class CheckReport:
    run_id: str
    results: list[CheckResult] = field(default_factory=list)
    not_built: list[str] = field(default_factory=list)  # selected assets with checks but nothing published
    without_checks: int = 0  # selected assets that declare no checks

    @property
    def ok(self) -> bool:
        """No check of severity error failed."""
        return not any(r.blocks for r in self.results)


def check_id(now: datetime) -> str:
    return "check-" + now.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


def check_published(project: Project, selection: Sequence[str] = (), exclude: Sequence[str] = (),
                    now: datetime | None = None) -> CheckReport:
    """Run the checks of the selected assets (default: all) on their published versions."""
    graph = build_graph(project)
    keys = select(graph, selection, exclude)
    suites = suites_of(project, keys)  # declaration problems stop everything, before any data is read
    moment = now or datetime.now(UTC)
    report = CheckReport(check_id(datetime.now(UTC)), without_checks=len(keys) - len(suites))
    if not suites:
        return report
    # a SQLite store at the newest revision: results kept with sqlite3 (no SQLAlchemy import); else the store,
    # opened on a thread of its own while DuckDB scans (it releases the GIL)
    ledger = CheckLedger.open(project.state_url) if not project.sources else None
    store = _Opening(project.state_url) if ledger is None else None
    engine = open_engine(project.warehouse_url, project.config.timezone)
    try:
        lake = [graph.assets[k] for k in graph.order if graph.assets[k].layer == "lake"]
        versions = engine.prepare(lake, _collected(project, store))  # committed loads only
        engine.define_macros(list(project.macros.values()))
        published = {**engine.published(), **{k: v for k, v in versions.items() if v != EMPTY_LAKE}}
        tz = ZoneInfo(project.config.timezone)

        def history(asset: str, check: str) -> list[tuple[date, dict[str, Any]]]:
            if ledger is not None:
                return ledger.observations(project.name, asset, check, tz)
            from kiban.checks.history import observations

            assert store is not None
            return observations(store.get(), project.name, asset, check, tz)

        ctx = context(project, history, moment)
        session = engine.session()
        judged: list[tuple[str, list[CheckResult]]] = []
        try:
            for key in graph.sorted(suites):
                if key not in published:
                    report.not_built.append(key)
                    continue
                judged.append((key, run_suite(session, relation_name(key), suites[key], ctx)))
        finally:
            session.close()
        checked_at = moment.astimezone(UTC).replace(tzinfo=None)
        for key, results in judged:
            if ledger is not None:
                ledger.record(project.name, report.run_id, published[key], results, checked_at)
            else:
                from kiban.checks.history import record

                assert store is not None
                record(store.get(), project.name, report.run_id, published[key], results, checked_at=checked_at)
            report.results += results
    finally:
        engine.close()
        if store is not None:
            store.close()
        if ledger is not None:
            ledger.close()
    return report


class _Opening:
    """The state store, opened on a thread of its own (importing SQLAlchemy and opening the file take a
    noticeable part of a short `kiban check`)."""

    def __init__(self, url: str) -> None:
        self.store: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._open, args=(url,), daemon=True, name="kiban-store")
        self.thread.start()

    def _open(self, url: str) -> None:
        try:
            self.store = Store(url)
        except BaseException as exc:  # handed to the caller by get()
            self.error = exc

    def get(self) -> Any:
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.store

    def close(self) -> None:
        self.thread.join()
        if self.store is not None:
            self.store.close()


def _collected(project: Project, store: _Opening | None) -> Mapping[str, CollectedTable] | None:
    """The committed files of the project's collected tables: their lake views show committed loads only."""
    if not project.sources or store is None:
        return None  # no need to wait for the store
    from kiban.collect.collector import collected_tables

    return collected_tables(project, store.get())
