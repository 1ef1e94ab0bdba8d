"""Whether the code that says which columns are personal is the code that built what is published.

Masks come from column lineage and lineage from each model's code, so a mask plan is only as true as that code is
to the published table. Two things can part them:

- the code on disk was changed after the table was built (an edit, a pull, a build that failed and left the old
  table): :func:`stale_models` finds the models whose definition files (SQL or Python, YAML, the project macros
  they call) are newer than the run that last built or confirmed them, and the mask plan trusts no column of
  those (nor anything computed from them downstream) until a run builds them again;
- a long-running front end (the web console, the PostgreSQL endpoint, a notebook's reader) loaded the project
  before the files or the published snapshot changed: :func:`version` changes whenever either does, and a front
  end that sees a new version loads the project again before it masks anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiban.catalog.warehouse import NothingPublished, is_postgres, source_file
from kiban.status import ATTEMPT_CURRENT

if TYPE_CHECKING:
    from kiban.project import Project
    from kiban.store import Store

log = logging.getLogger(__name__)
FOLDERS = ("models", "macros", "sources")  # where the definitions the masks come from live (and kiban.yml)


def _stats(folder: str, out: list[tuple[str, int, int]]) -> None:
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                if not entry.name.startswith(".") and entry.name != "__pycache__":
                    _stats(entry.path, out)
            else:
                stat = entry.stat()
                out.append((entry.path, stat.st_mtime_ns, stat.st_size))
        except OSError:
            continue


def version(root: Path) -> str:
    """A token that changes whenever a definition file (``kiban.yml``, ``models/``, ``macros/``, ``sources/``) is
    added, removed or changed. Take it *before* loading the project: a change made during the load then shows as
    a new version at the next look. (About 10 µs a file: a front end asks it before every query.)"""
    found: list[tuple[str, int, int]] = []
    with contextlib.suppress(OSError):
        stat = (root / "kiban.yml").stat()
        found.append(("kiban.yml", stat.st_mtime_ns, stat.st_size))
    for folder in FOLDERS:
        _stats(str(root / folder), found)
    found.sort()
    return hashlib.sha256(repr(found).encode("utf-8", "surrogatepass")).hexdigest()


def published_at(project: Project) -> float:
    """When the published snapshot was last replaced (0 for a PostgreSQL warehouse, which has no snapshot file)."""
    if is_postgres(project):
        return 0.0
    try:
        return source_file(project).stat().st_mtime
    except (OSError, NothingPublished):  # nothing published yet: a console started before the first run
        return 0.0


def served(root: Path, project: Project | None) -> tuple[str, float]:
    """What a long-running front end compares to know whether its loaded project is still the one to mask with:
    the definitions' :func:`version` and the snapshot's :func:`published_at` (of ``project``, when loaded)."""
    return version(root), (published_at(project) if project is not None else 0.0)


def definition_files(project: Project, graph: Any, key: str) -> list[Path]:
    """The files a model's published table was made from: its code, its YAML and the macros it calls."""
    asset = project.assets[key]
    paths = [asset.path, *([asset.config_path] if asset.config_path is not None else [])]
    paths += [project.macros[m].path for m in getattr(graph, "macros", {}).get(key, ()) if m in project.macros]
    return paths


def _epoch(moment: datetime) -> float:
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).timestamp()


def stale_models(project: Project, graph: Any, store: Store | None) -> set[str]:
    """Models whose definition files changed after the run that last built or confirmed their published table.

    A model whose newest attempt did not end current (a failed, skipped or cancelled build) keeps the table of its
    last successful build, so that build's time is what its files are compared with. A model no run has recorded
    (no store, a store that never saw it) is not judged here."""
    if store is None:
        return set()
    try:
        newest = store.latest_attempts(project.name)
        built = store.last_built(project.name)
    except Exception:  # a store that cannot be read: nothing to compare with (logged; the plan is unchanged)
        log.warning("masks: the state store cannot tell when models were built", exc_info=True)
        return set()
    stale: set[str] = set()
    for key, asset in project.assets.items():
        if asset.layer == "lake" or key not in newest:
            continue
        record = newest[key] if newest[key].status in ATTEMPT_CURRENT else built.get(key)
        when = record.started_at if record is not None else None
        if when is None:
            stale.add(key)  # it ran, but nothing current was ever published from it that a run confirmed
            continue
        since = _epoch(when)
        for path in definition_files(project, graph, key):
            try:
                if path.stat().st_mtime > since:
                    stale.add(key)
                    break
            except OSError:
                continue
    return stale
