"""Check results in the state store: recording them, the volume check's history, what ``kiban show`` prints.

Every result of one evaluation of one table shares one ``checked_at``, so "a later pass clears a failure"
(service levels) never mistakes a sibling check of the same evaluation for a later one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from kiban.checks.evaluate import CheckResult
from kiban.checks.ledger import StoredResult
from kiban.store import Store, utcnow
from kiban.store.schema import check_results, runs

HISTORY_ROWS = 2000  # newest observations read for a volume check (several per day are possible)


def record(store: Store, project: str, run_id: str | None, fingerprint: str | None, results: Sequence[CheckResult],
           checked_at: datetime | None = None) -> None:
    """Keep ``results`` (one evaluation of one or more tables) in one transaction."""
    if not results:
        return
    at = checked_at or utcnow()
    rows = [dict(run_id=run_id, project=project, asset=r.asset, check_name=r.name, kind=r.kind, severity=r.severity,
                 status=r.status, failures=r.failures, detail=r.detail[:4000], checked_at=at,
                 fingerprint=fingerprint, rows=r.rows,
                 observed=json.dumps(r.observed) if r.observed is not None else None,
                 samples=json.dumps(r.samples, ensure_ascii=False) if r.samples else None)
            for r in results]
    with store.engine.begin() as conn:
        conn.execute(check_results.insert(), rows)


def observations(store: Store, project: str, asset: str, check: str, tz: ZoneInfo
                 ) -> list[tuple[date, dict[str, Any]]]:
    """Earlier measurements of one check: the latest of each local day, oldest first."""
    query = (sa.select(check_results.c.checked_at, check_results.c.observed)
             .where(check_results.c.asset == asset, check_results.c.check_name == check,
                    check_results.c.observed.is_not(None),
                    sa.or_(check_results.c.project == project, check_results.c.project.is_(None)))
             .order_by(check_results.c.checked_at.desc()).limit(HISTORY_ROWS))
    with store.engine.connect() as conn:
        found = conn.execute(query).all()
    by_day: dict[date, dict[str, Any]] = {}
    for checked_at, observed in found:  # newest first: the first seen of a day is its latest
        day = checked_at.replace(tzinfo=UTC).astimezone(tz).date()
        if day not in by_day:
            by_day[day] = json.loads(observed)
    return sorted(by_day.items())


def recent(store: Store, project: str, asset: str, limit: int = 50) -> list[StoredResult]:
    """The newest results of ``asset``'s checks, newest first."""
    query = (sa.select(check_results).outerjoin(runs, runs.c.run_id == check_results.c.run_id)
             .where(check_results.c.asset == asset,
                    sa.or_(check_results.c.project == project, runs.c.project == project,
                           sa.and_(check_results.c.project.is_(None), runs.c.project.is_(None))))
             .order_by(check_results.c.checked_at.desc(), check_results.c.id).limit(limit))
    with store.engine.connect() as conn:
        return [_stored(r) for r in conn.execute(query).all()]


def trends(store: Store, project: str, per_check: int = 12, limit: int = 5000
           ) -> dict[tuple[str, str], list[StoredResult]]:
    """Every check's recent results, (asset, check) → newest first (at most ``per_check`` each, read from the
    project's newest ``limit`` results): the checks overview's pass/fail trend."""
    query = (sa.select(check_results).outerjoin(runs, runs.c.run_id == check_results.c.run_id)
             .where(sa.or_(check_results.c.project == project, runs.c.project == project))
             .order_by(check_results.c.checked_at.desc(), check_results.c.id.desc()).limit(limit))
    found: dict[tuple[str, str], list[StoredResult]] = {}
    with store.engine.connect() as conn:
        for row in conn.execute(query).all():
            kept = found.setdefault((row.asset, row.check_name), [])
            if len(kept) < per_check:
                kept.append(_stored(row))
    return found


def of_run(store: Store, run_id: str) -> list[StoredResult]:
    """The results recorded by one run (or one ``kiban check``)."""
    query = (sa.select(check_results).where(check_results.c.run_id == run_id)
             .order_by(check_results.c.checked_at, check_results.c.id))
    with store.engine.connect() as conn:
        return [_stored(r) for r in conn.execute(query).all()]


def _stored(row: Any) -> StoredResult:
    return StoredResult(row.run_id, row.asset, row.check_name, row.kind, row.severity, row.status, row.failures,
                        row.rows, row.detail or "", row.checked_at, row.fingerprint,
                        json.loads(row.samples) if row.samples else [])


__all__ = ["HISTORY_ROWS", "StoredResult", "observations", "of_run", "recent", "record", "trends"]
