"""Constructing state-store histories for service-level tests (facts at exact times)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from kiban.store import Store
from kiban.store.schema import attempts, check_results, runs


def add_run(store: Store, project: str, run_id: str, started: datetime,
            steps: list[tuple[str, str, float, date | None, str | None]]) -> datetime:
    """A finished run: steps are (asset, status, seconds after start it ended, watermark, error)."""
    end = started
    with store.engine.begin() as conn:
        rows = []
        for asset, status, offset, watermark, error in steps:
            ended = started + timedelta(seconds=offset)
            end = max(end, ended)
            rows.append({"run_id": run_id, "asset": asset, "attempt": 1, "status": status,
                         "started_at": started, "ended_at": ended, "seconds": offset, "watermark": watermark,
                         "error": error})
        failed = any(s in ("failed", "skipped") for _, s, _, _, _ in steps)
        conn.execute(runs.insert().values(run_id=run_id, project=project, status="failed" if failed else "success",
                                          selection="[]", options="{}", started_at=started, ended_at=end,
                                          heartbeat_at=end, pid=None, host=None))
        conn.execute(attempts.insert(), rows)
    return end


def add_check(store: Store, asset: str, name: str, status: str, at: datetime) -> None:
    with store.engine.begin() as conn:
        conn.execute(check_results.insert().values(run_id=None, project="test", asset=asset, check_name=name,
                                                   severity="error", kind="not_null",
                                                   status=status, failures=3 if status == "fail" else 0,
                                                   checked_at=at))
