"""``kiban check``'s results kept in a SQLite state store without SQLAlchemy (issue 23).

Importing SQLAlchemy and opening the store through it cost about a third of a CPU-second — a fifth of
``kiban check`` on 10M rows. When the state store is a SQLite file already at the newest schema revision
(the newest file under ``store/migrations/versions``), ``kiban check`` records its results and reads the volume
check's history here, with the standard library's ``sqlite3``: the same rows, as ``checks.history`` writes them
(times as SQLAlchemy's SQLite ``DateTime`` stores them). The SQL itself is the store layer's
(``kiban.store.lite``). Anything else — another store, a store to create or migrate, a project with sources
(their lake views need the load manifests) — opens the store as before.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from kiban.checks.evaluate import CheckResult
from kiban.store import lite
from kiban.store.lite import head_revision

__all__ = ["CheckLedger", "StoredResult", "head_revision"]

HISTORY_ROWS = 2000  # as checks.history


@dataclass(frozen=True)
class StoredResult:
    """A check_results row as the readers see it (``checks.history`` and ``CheckLedger.of_run``)."""

    run_id: str | None
    asset: str
    name: str
    kind: str | None
    severity: str
    status: str
    failures: int | None
    rows: int | None
    detail: str
    checked_at: datetime
    fingerprint: str | None
    samples: list[dict[str, Any]]


class CheckLedger:
    """The check_results table of a SQLite store at the newest revision (its SQL: ``kiban.store.lite``)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    @classmethod
    def open(cls, state_url: str) -> CheckLedger | None:
        """None when the store is not a SQLite file at the newest revision (the full store handles it)."""
        conn = lite.open_at_head(state_url, check_same_thread=False)
        return cls(conn) if conn is not None else None

    def record(self, project: str, run_id: str | None, fingerprint: str | None, results: Sequence[CheckResult],
               checked_at: datetime) -> None:
        """``checks.history.record``: one transaction for one evaluation."""
        if not results:
            return
        lite.insert_check_results(self.conn, [
            lite.CheckRow(run_id=run_id, project=project, asset=r.asset, check_name=r.name, kind=r.kind,
                          severity=r.severity, status=r.status, failures=r.failures, detail=r.detail[:4000],
                          checked_at=checked_at, fingerprint=fingerprint, rows=r.rows,
                          observed=json.dumps(r.observed) if r.observed is not None else None,
                          samples=json.dumps(r.samples, ensure_ascii=False) if r.samples else None)
            for r in results])

    def observations(self, project: str, asset: str, check: str, tz: ZoneInfo) -> list[tuple[date, dict[str, Any]]]:
        """``checks.history.observations``: the latest measurement of each local day, oldest first."""
        by_day: dict[date, dict[str, Any]] = {}
        for checked_at, observed in lite.observed_history(self.conn, project, asset, check, HISTORY_ROWS):
            day = checked_at.replace(tzinfo=UTC).astimezone(tz).date()
            if day not in by_day:
                by_day[day] = json.loads(observed)
        return sorted(by_day.items())

    def of_run(self, run_id: str) -> list[StoredResult]:
        """``checks.history.of_run``: the results one run (or one ``kiban check``) recorded."""
        return [StoredResult(run, asset, name, kind, severity, status, failures, rows, detail or "",
                             datetime.fromisoformat(at), fingerprint, json.loads(samples) if samples else [])
                for run, asset, name, kind, severity, status, failures, rows, detail, at, fingerprint, samples
                in lite.check_results_of_run(self.conn, run_id)]

    def close(self) -> None:
        self.conn.close()
