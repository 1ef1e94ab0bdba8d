"""``kiban check``'s results kept in a SQLite state store without SQLAlchemy (issue 23).

Importing SQLAlchemy and opening the store through it cost about a third of a CPU-second — a fifth of
``kiban check`` on 10M rows. When the state store is a SQLite file already at the newest schema revision
(the newest file under ``store/migrations/versions``), ``kiban check`` records its results and reads the volume
check's history here, with the standard library's ``sqlite3``: the same rows, as ``checks.history`` writes them
(times as SQLAlchemy's SQLite ``DateTime`` stores them). Anything else — another store, a store to create or
migrate, a project with sources (their lake views need the load manifests) — opens the store as before.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from kiban.checks.evaluate import CheckResult

HISTORY_ROWS = 2000  # as checks.history
VERSIONS = Path(__file__).resolve().parent.parent / "store" / "migrations" / "versions"


def head_revision() -> str | None:
    """The newest migration's revision (its file name's number), read from the folder: no import needed."""
    numbers = [p.name.split("_", 1)[0] for p in VERSIONS.glob("[0-9][0-9][0-9][0-9]_*.py")]
    return max(numbers) if numbers else None


def _stored(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


class CheckLedger:
    """The check_results table of a SQLite store at the newest revision."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    @classmethod
    def open(cls, state_url: str) -> CheckLedger | None:
        """None when the store is not a SQLite file at the newest revision (the full store handles it)."""
        if not state_url.startswith("sqlite:///"):
            return None
        path = state_url[len("sqlite:///"):]
        try:  # mode=rw: a missing store is the full store's to create
            conn = sqlite3.connect(f"file:{quote(path)}?mode=rw", uri=True, timeout=30, isolation_level=None,
                                   check_same_thread=False)
        except sqlite3.Error:
            return None
        try:
            conn.execute("pragma journal_mode=wal")
            conn.execute("pragma synchronous=full")
            row = conn.execute("select version_num from alembic_version").fetchone()
        except sqlite3.Error:
            conn.close()
            return None
        if row is None or row[0] != head_revision():
            conn.close()
            return None
        return cls(conn)

    def record(self, project: str, run_id: str | None, fingerprint: str | None, results: Sequence[CheckResult],
               checked_at: datetime) -> None:
        """``checks.history.record``: one transaction for one evaluation."""
        if not results:
            return
        at = _stored(checked_at)
        rows = [(run_id, project, r.asset, r.name, r.kind, r.severity, r.status, r.failures, r.detail[:4000], at,
                 fingerprint, r.rows, json.dumps(r.observed) if r.observed is not None else None,
                 json.dumps(r.samples, ensure_ascii=False) if r.samples else None) for r in results]
        self.conn.execute("begin immediate")
        try:
            self.conn.executemany(
                "insert into check_results (run_id, project, asset, check_name, kind, severity, status, failures, "
                "detail, checked_at, fingerprint, rows, observed, samples) values "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            self.conn.execute("commit")
        except BaseException:
            self.conn.execute("rollback")
            raise

    def observations(self, project: str, asset: str, check: str, tz: ZoneInfo) -> list[tuple[date, dict[str, Any]]]:
        """``checks.history.observations``: the latest measurement of each local day, oldest first."""
        found = self.conn.execute(
            "select checked_at, observed from check_results where asset = ? and check_name = ? and observed is not "
            "null and (project = ? or project is null) order by checked_at desc limit ?",
            (asset, check, project, HISTORY_ROWS)).fetchall()
        by_day: dict[date, dict[str, Any]] = {}
        for checked_at, observed in found:
            day = datetime.fromisoformat(checked_at).replace(tzinfo=UTC).astimezone(tz).date()
            if day not in by_day:
                by_day[day] = json.loads(observed)
        return sorted(by_day.items())

    def close(self) -> None:
        self.conn.close()
