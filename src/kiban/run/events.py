"""Events a run emits, for live displays and JSON logs (front ends subscribe; the core never prints)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from kiban.store import utcnow


@dataclass(frozen=True)
class Event:
    kind: str  # run_started, asset_started, asset_retry, asset_finished, run_finished
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
