"""Events a run emits, for live displays and JSON logs (front ends subscribe; the core never prints).

Every kind has a type: :data:`SHAPES` says which fields an event of that kind carries (and which it must), which
status vocabulary its ``status`` is from, and a ``TypedDict`` for its ``detail``. An event is checked against its
shape where it is made (``Event.__post_init__``): a wrong or missing field is a ``TypeError`` at the emitter,
in the tests, not a ``KeyError`` in a listener later.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import cache
from typing import Any, NotRequired, TypedDict, get_origin, get_type_hints

from kiban.status import AttemptStatus, RunStatus
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


class RunStartedDetail(TypedDict):
    build: int  # assets to build (and tables to collect)
    fresh: int  # assets already current
    lake: int  # lake assets (read, not built)
    selected: int  # assets selected
    assets: list[str]  # the keys to build, in order
    reasons: NotRequired[dict[str, Any]]  # asset → why it is rebuilt (run_project)
    workers: NotRequired[int]  # live workers (a run handed to workers)
    handed_to: NotRequired[str]  # the run whose process writes the DuckDB file and builds these (run.handoff)


class CollectStartedDetail(TypedDict):
    tables: int  # collected tables in this run
    assets: list[str]  # their keys


class AssetStartedDetail(TypedDict):
    collect: NotRequired[bool]  # a collected table (not a model)
    worker: NotRequired[str]  # the worker that claimed it


class AssetRetryDetail(TypedDict):
    delay: NotRequired[float]  # seconds until the next attempt


class AssetFinishedDetail(TypedDict):
    collect: NotRequired[bool]  # a collected table: the load's reconciled counts follow
    load_id: NotRequired[str]
    read: NotRequired[int]
    landed: NotRequired[int]
    quarantined: NotRequired[int]
    dropped: NotRequired[int]
    deleted: NotRequired[int]
    cursor: NotRequired[str | None]
    drift: NotRequired[list[str]]
    notes: NotRequired[list[str]]
    worker: NotRequired[str | None]  # the worker that built it
    already_published: NotRequired[bool]  # a worker found its build already published (a repeated claim)
    built_by: NotRequired[str | None]  # the run that built it for this one (run.handoff)


class NoDetail(TypedDict):
    pass


@dataclass(frozen=True)
class Shape:
    """The type of one kind of event."""

    required: frozenset[str]  # fields that must be set (not None)
    optional: frozenset[str] = frozenset()  # fields that may be set; any other must stay None
    detail: type = NoDetail  # a TypedDict: its required keys must be there, no other key may
    status: type[StrEnum] | None = None  # the vocabulary of ``status``
    run: bool = True  # run_id must be set (only the watcher's own tick has none)


SHAPES: dict[str, Shape] = {
    "run_started": Shape(frozenset(), detail=RunStartedDetail),
    "collect_started": Shape(frozenset(), detail=CollectStartedDetail),
    "asset_started": Shape(frozenset({"asset"}), frozenset({"attempt"}), AssetStartedDetail),
    "asset_retry": Shape(frozenset({"asset", "error"}), frozenset({"attempt", "seconds"}), AssetRetryDetail),
    "asset_finished": Shape(frozenset({"asset", "status"}), frozenset({"attempt", "rows", "seconds", "error"}),
                            AssetFinishedDetail, AttemptStatus),
    "run_finished": Shape(frozenset({"status"}), frozenset({"error", "seconds"}), status=RunStatus),
    "worker_refused": Shape(frozenset({"error"})),
    "tick": Shape(frozenset(), run=False),
}
FIELDS = ("asset", "status", "attempt", "rows", "seconds", "error")


@cache
def _detail_keys(detail: type) -> tuple[frozenset[str], frozenset[str]]:
    """A detail TypedDict's keys, and those required."""
    hints = get_type_hints(detail, include_extras=True)  # (string annotations hide NotRequired from the class)
    return frozenset(hints), frozenset(k for k, hint in hints.items() if get_origin(hint) is not NotRequired)


def shape_errors(event: Event) -> list[str]:
    """What is wrong with ``event`` for its kind (empty: it matches its type)."""
    if event.kind not in set(EventKind):
        return [f"unknown event kind {event.kind!r}"]
    shape = SHAPES[event.kind]
    problems = [f"{event.kind}: {name} is required" for name in sorted(shape.required)
                if getattr(event, name) is None]
    problems += [f"{event.kind}: carries no {name}" for name in FIELDS
                 if getattr(event, name) is not None and name not in shape.required | shape.optional]
    if shape.run and not event.run_id:
        problems.append(f"{event.kind}: run_id is required")
    if shape.status is not None and event.status is not None and event.status not in set(shape.status):
        problems.append(f"{event.kind}: status {event.status!r} is not a {shape.status.__name__}")
    keys, required = _detail_keys(shape.detail)
    problems += [f"{event.kind}: detail.{k} is required" for k in sorted(required - set(event.detail))]
    problems += [f"{event.kind}: detail has no key {k!r}" for k in sorted(set(event.detail) - set(keys))]
    return problems


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

    def __post_init__(self) -> None:
        problems = shape_errors(self)
        if problems:
            raise TypeError("an event that does not match its type: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if v not in (None, {})}
        data["at"] = self.at.isoformat() + "Z"
        return data


Listener = Callable[[Event], None]
