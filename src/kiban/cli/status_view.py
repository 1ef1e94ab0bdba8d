"""``kiban status``'s table and JSON from the store's rows: shared by the full command (``kiban.cli.report``) and
the quick answer from the no-op stamp (``kiban.cli.quick``), so both print exactly the same thing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from kiban.cli.output import (
    STATUS_STYLE,
    Cell,
    console,
    duration,
    emit_json,
    local_time,
    number,
    one_line,
    print_rows,
    size,
    utc_iso,
)
from kiban.status import AttemptStatus

NEVER_RUN = "never run"
LAKE = "lake"


def status_rows(order: Sequence[tuple[str, str]], latest: Mapping[str, Any], built: Mapping[str, Any],
                running: Sequence[Any]) -> dict[str, Any]:
    """The ``--json`` shape: ``order`` is (asset, layer) in dependency order; ``latest`` and ``built`` map an asset
    to its newest attempt and newest successful build (anything with the AttemptRecord fields)."""
    assets = []
    for key, layer in order:
        last, good = latest.get(key), built.get(key)
        state = LAKE if layer == LAKE else (last.status if last else NEVER_RUN)
        error = (last.error or None) if last and last.status in (
            AttemptStatus.FAILED, AttemptStatus.SKIPPED, AttemptStatus.CANCELLED) else None
        assets.append({"asset": key, "layer": layer, "state": state,
                       "last_built": utc_iso(good.ended_at) if good else None, "rows": good.rows if good else None,
                       "bytes": good.bytes if good else None, "seconds": good.seconds if good else None,
                       "error": error})
    return {"assets": assets, "running": [{"run_id": r.run_id, "started_at": utc_iso(r.started_at), "pid": r.pid}
                                          for r in running]}


def print_status_data(data: dict[str, Any], tz: str, as_json: bool = False) -> None:
    if as_json:
        emit_json(data)
        return
    rows: list[list[Cell]] = []
    for row in data["assets"]:
        if row["state"] == LAKE:
            rows.append([(row["asset"], "blue"), (LAKE, "blue"), *[("", None)] * 5])
            continue
        state = row["state"]
        rows.append([(row["asset"], None), (state, "dim" if state == NEVER_RUN else STATUS_STYLE.get(state, "white")),
                     (_local_iso(row["last_built"], tz), None), (number(row["rows"]), None),
                     (size(row["bytes"]), None), (duration(row["seconds"]), None),
                     (one_line(row["error"], 120), None)])
    print_rows(("asset", "state", "last built", "rows", "size", "time", "note"), rows,
               right=("rows", "size", "time"), limits={"note": 60})
    for run in data["running"]:
        console.print(f"[cyan]running now:[/] {run['run_id']} since {_local_iso(run['started_at'], tz)} "
                      f"(pid {run['pid']})")


def _local_iso(value: str | None, tz: str) -> str:
    """An ISO time of the JSON shape (UTC, ``Z``) in the project's time zone."""
    return "-" if value is None else local_time(datetime.fromisoformat(value.rstrip("Z")), tz)
