"""Events a run emits, for live displays and JSON logs (front ends subscribe; the core never prints)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from kiban.store import utcnow


class EventKind(StrEnum):
    """What happened. Listeners compare ``event.kind`` with these (a member equals its string)."""

    RUN_STARTED = "run_started"  # planned: detail = build, fresh, lake, selected counts and the assets to build
    COLLECT_STARTED = "collect_started"  # collection of sources begins: detail = tables (count), assets (keys)
    ASSET_STARTED = "asset_started"  # an attempt begins: asset, attempt (detail.collect: a collected table)
    ASSET_RETRY = "asset_retry"  # an attempt failed and another follows: asset, attempt, error, seconds (it took),
    #                              detail.delay (seconds until the next attempt)
    ASSET_FINISHED = "asset_finished"  # an asset's last word: asset, status (a kiban.status.AttemptStatus), rows,
    #                                    seconds, error
    RUN_FINISHED = "run_finished"  # status (a kiban.status.RunStatus), error, seconds
    WORKER_REFUSED = "worker_refused"  # a worker with another project version claims none of a run's assets: error
    TICK = "tick"  # no run emits it: slo.watch.BreachWatcher's own timer, so it re-forecasts between events


@dataclass(frozen=True)
class Event:
    kind: str  # an EventKind
    run_id: str
    asset: str | None = None
    status: str | None = None
    attempt: int | None = None
    rows: int | None = None
    seconds: float | None = None
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    at: datetime = field(default_factory=utcnow)

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if v not in (None, {})}
        data["at"] = self.at.isoformat() + "Z"
        return data


Listener = Callable[[Event], None]
