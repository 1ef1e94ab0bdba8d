"""Whether the code that says which columns are personal is the code that built what is published.

Masks come from column lineage and lineage from each model's code, so a mask plan is only as true as that code is
to the published table. Two things can part them:

- the code on disk was changed after the table was built (an edit, a pull, a build that failed and left the old
  table): :func:`stale_models` finds the models whose definition files (SQL or Python, YAML, the project macros
  they call) say something else than what the run that last built or confirmed their table planned it from —
  compared by content (:mod:`kiban.graph.code`, recorded by every run for each fingerprint it plans), never by
  the files' modification times, which a copy (``cp -p``, ``rsync -t``, a checkout), ``touch -d`` or another
  machine's clock can set to anything; a file edited and restored is not changed. Only a table built before
  kiban recorded contents is judged by the old rule (a definition file newer than the run). The mask plan
  trusts no column of a stale model (nor anything computed from it downstream) until a run builds or confirms
  it again;
- a long-running front end (the web console, the PostgreSQL endpoint, a notebook's reader) loaded the project
  before the files or the published snapshot changed: :func:`version` changes whenever either does, and a front
  end that sees a new version loads the project again before it masks anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import weakref
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiban.catalog.warehouse import NothingPublished, is_postgres, source_file
from kiban.graph.code import definition_code, definition_parts, parts_of
from kiban.status import ATTEMPT_CURRENT

if TYPE_CHECKING:
    from kiban.project import Project
    from kiban.store import Store
    from kiban.store.store import AttemptRecord

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
    """Models whose definitions changed since the run that last built or confirmed their published table
    (:func:`stale_definitions`, without the files)."""
    return set(stale_definitions(project, graph, store))


_CURRENT: dict[int, tuple[weakref.ref[Any], dict[str, str]]] = {}  # id(project) → (project, key → code)


def current_codes(project: Project, graph: Any) -> dict[str, str]:
    """Each model's definitions' code (:func:`kiban.graph.code.definition_code`) as the loaded ``project`` says.
    A loaded project never changes, so it is computed once per project object (a front end that sees a new
    :func:`version` loads a new project, and with it new codes)."""
    held = _CURRENT.get(id(project))
    if held is not None and held[0]() is project:
        return held[1]
    codes = {key: definition_code(definition_parts(project, graph, key))
             for key, asset in project.assets.items() if asset.layer != "lake"}
    if len(_CURRENT) > 16:
        _CURRENT.clear()
    with contextlib.suppress(TypeError):  # an object without weak references: not cached
        _CURRENT[id(project)] = (weakref.ref(project), codes)
    return codes


def stale_definitions(project: Project, graph: Any, store: Store | None) -> dict[str, tuple[str, ...]]:
    """Models whose definitions changed since the run that last built or confirmed their published table, each
    with the definition files that changed (by their path under the project; empty when it cannot be told).

    A model whose newest attempt did not end current (a failed, skipped or cancelled build) keeps the table of its
    last successful build, so that build's fingerprint is what is compared. The current definitions are compared by
    content with what the runs that planned that fingerprint recorded (:mod:`kiban.graph.code`); a fingerprint
    with nothing recorded (built by a kiban from before the record) falls back to time: a definition file newer
    than the run. A model no run has recorded (no store, a store that never saw it) is not judged here."""
    if store is None:
        return {}
    try:
        newest = store.latest_attempts(project.name)
        built = store.last_built(project.name)
    except Exception:  # a store that cannot be read: nothing to compare with (logged; the plan is unchanged)
        log.warning("masks: the state store cannot tell when models were built", exc_info=True)
        return {}
    records: dict[str, AttemptRecord | None] = {}
    for key, asset in project.assets.items():
        if asset.layer == "lake" or key not in newest:
            continue
        records[key] = newest[key] if newest[key].status in ATTEMPT_CURRENT else built.get(key)
    try:
        recorded = store.codes(project.name, [r.fingerprint for r in records.values() if r and r.fingerprint])
    except Exception:  # an older store without the record, or one that cannot be read: judged by time
        log.warning("masks: the state store cannot tell what models were built from", exc_info=True)
        recorded = {}
    current = current_codes(project, graph) if recorded else {}
    stale: dict[str, tuple[str, ...]] = {}
    for key, record in records.items():
        if record is None or record.started_at is None:
            stale[key] = ()  # it ran, but nothing current was ever published from it that a run confirmed
            continue
        codes = recorded.get(record.fingerprint or "")
        if codes:
            if current[key] not in codes:
                stale[key] = _changed(parts_of(current[key]), parts_of(codes[-1]))
            continue
        since = _epoch(record.started_at)
        newer = []
        for path in definition_files(project, graph, key):
            try:
                if path.stat().st_mtime > since:
                    newer.append(_relative(project, path))
            except OSError:
                continue
        if newer:
            stale[key] = tuple(newer)
    return stale


def _changed(now: dict[str, str], then: dict[str, str]) -> tuple[str, ...]:
    """The files whose content differs between two recorded codes (added and removed ones too)."""
    return tuple(sorted(f for f in now.keys() | then.keys() if now.get(f) != then.get(f)))


def _relative(project: Project, path: Path) -> str:
    try:
        return path.resolve().relative_to(project.root.resolve()).as_posix()
    except (OSError, ValueError):
        return path.as_posix()
