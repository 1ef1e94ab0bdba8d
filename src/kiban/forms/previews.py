"""Upload previews: the rows an upload would land, kept until the person lands them — or until they expire.

A preview is ``.kiban/uploads/FORM/SUBMISSION.parquet`` (written under a temporary name and renamed: never half
there). Landing it consumes it. One the person walks away from expires after :data:`PREVIEW_HOURS`: landing it
then says it is gone (upload the file again), and :func:`sweep` removes it — on every upload, and on every look
of the scheduler — so abandoned previews (which may hold personal data) never pile up.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from kiban.forms.land import check_submission

if TYPE_CHECKING:
    import pyarrow as pa

    from kiban.project import Project

PREVIEW_HOURS = 24.0


def uploads_dir(project: Project) -> Path:
    return project.state_dir / "uploads"


def staged(project: Project, form: str, submission: str) -> Path:
    return uploads_dir(project) / form / f"{check_submission(submission)}.parquet"


def stage(project: Project, form: str, submission: str, table: pa.Table) -> Path:
    import pyarrow.parquet as pq

    path = staged(project, form, submission)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.part")
    pq.write_table(table, temporary)
    os.replace(temporary, path)
    return path


def expired(path: Path, now: float | None = None, hours: float = PREVIEW_HOURS) -> bool:
    try:
        return path.stat().st_mtime <= (now if now is not None else time.time()) - hours * 3600
    except FileNotFoundError:
        return True


def sweep(project: Project, now: float | None = None, hours: float = PREVIEW_HOURS) -> int:
    """Remove the previews (and half-written ones) older than ``hours``; how many were removed."""
    root = uploads_dir(project)
    if not root.is_dir():
        return 0
    removed = 0
    for form in root.iterdir():
        if not form.is_dir():
            continue
        for path in form.iterdir():
            if path.is_file() and expired(path, now, hours):
                path.unlink(missing_ok=True)
                removed += 1
    return removed
