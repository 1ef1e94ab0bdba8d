"""Runs asked for but not yet recorded: a ``kiban run`` killed between its start and the moment its run reached
the state store left nothing there to resume. Each run writes a small intent file first
(``.kiban/intents/RUN_ID.json``: its selection and process) and removes it once the store has recorded the run;
an intent whose process is gone is a run that was interrupted before it was recorded, and ``--resume`` runs its
whole selection (nothing of it had happened: collections and builds come after the record).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from kiban.store import utcnow
from kiban.store.store import HOST, pid_alive

if TYPE_CHECKING:
    from kiban.project import Project


@dataclass(frozen=True)
class Intent:
    run_id: str
    select: list[str]
    exclude: list[str]
    full_refresh: bool
    at: datetime
    path: Path


def _folder(project: Project) -> Path:
    return project.state_dir / "intents"


def write(project: Project, run_id: str, select: list[str], exclude: list[str], full_refresh: bool) -> Path:
    """Record that a run is starting (written whole, then renamed: a kill never leaves half a file)."""
    folder = _folder(project)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{run_id}.json"
    part = path.with_suffix(".part")
    part.write_text(json.dumps({"run_id": run_id, "pid": os.getpid(), "host": HOST, "select": select,
                                "exclude": exclude, "full_refresh": full_refresh,
                                "at": utcnow().isoformat()}))
    os.replace(part, path)
    return path


def clear(path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink()


def interrupted(project: Project, recorded: set[str] | None = None) -> list[Intent]:
    """Intents whose process is gone (oldest first); ``recorded``: run ids the store knows — their intents are
    stale (killed between the record and the removal) and are removed here."""
    folder = _folder(project)
    if not folder.is_dir():
        return []
    found: list[Intent] = []
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            clear(path)
            continue
        if pid_alive(data.get("pid"), data.get("host")) is not False:
            continue  # still running (or on another host: not ours to judge)
        if recorded is not None and data["run_id"] in recorded:
            clear(path)
            continue
        found.append(Intent(data["run_id"], list(data.get("select", [])), list(data.get("exclude", [])),
                            bool(data.get("full_refresh")), datetime.fromisoformat(data["at"]), path))
    return sorted(found, key=lambda i: i.at)
