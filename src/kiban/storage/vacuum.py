"""``kiban storage vacuum``: remove the Delta files no retained version names, and prune this machine's read cache.

What is kept, whatever the retention (``storage: retention:``, default 7 days):

- every file of a version younger than the retention (a reader that started before a commit still finds the
  files of the version it reads: time travel and long reads keep working for that long);
- every file of the version each lake table is read at — the one the state store recorded with its newest load or
  retraction — and of the version each published table has in the current publication (the run-level pointer of
  :mod:`kiban.storage.publish`), however old;
- the newest version of every table.

What goes: files of older versions, and files no version names at all (a load or publish killed after it wrote
its files and before its commit). delta-rs does the removal (``DeltaTable.vacuum`` with ``full=True`` and the
kept versions); the commit log stays. The local cache (``storage: cache:``) loses the copies of files no kept
version names, once they are older than :data:`CACHE_GRACE_S` (a run on this machine may be reading them now).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from kiban.storage import publish
from kiban.storage.delta import DeltaTables
from kiban.storage.spec import StorageError

if TYPE_CHECKING:
    from kiban.project import Project

CACHE_GRACE_S = 600.0  # a cached copy this young stays: a run may have just fetched it for the version it reads


@dataclass
class Vacuumed:
    """What a vacuum removed (or, dry, would remove)."""

    tables: dict[str, list[str]] = field(default_factory=dict)  # table URI → files removed
    kept_versions: dict[str, list[int]] = field(default_factory=dict)  # table URI → versions kept however old
    cache_files: int = 0
    cache_bytes: int = 0

    @property
    def files(self) -> int:
        return sum(len(v) for v in self.tables.values())

    def as_json(self) -> dict[str, Any]:
        return {"files": self.files, "tables": self.tables, "kept_versions": self.kept_versions,
                "cache_files": self.cache_files, "cache_bytes": self.cache_bytes}


@dataclass(frozen=True)
class Retained:
    """One table whose files a vacuum looks at, and the versions it must keep however old."""

    delta: DeltaTables
    name: str
    keep: tuple[int, ...]
    asset: str | None = None  # a lake table's asset: vacuumed under its collection lock


Hold = Callable[[str], AbstractContextManager[object]]  # asset → its collection lock, held while it is vacuumed


def retained(project: Project, lake_versions: dict[str, int]) -> list[Retained]:
    """Every Delta table kiban writes, with the versions readers use: ``lake_versions`` (asset → the version the
    state store recorded) for the lake, the current publication for published tables (and the pointer itself)."""
    out: list[Retained] = []
    storage = project.config.storage
    lake = DeltaTables.at(storage.lake, storage, project.root) if storage is not None else None
    if lake is not None:
        for asset in sorted(project.source_tables()):
            name = asset.split(".", 1)[1]  # lake.<name> is the Delta table <name> (kiban.collect.shared_lake)
            if lake.latest(name) is not None:
                kept = lake_versions.get(asset)
                out.append(Retained(lake, name, () if kept is None else (kept,), asset))
    published = publish.shared_tables(project)
    if published is not None:
        versions = publish.published_versions(project)
        for asset, version in sorted(versions.items()):
            out.append(Retained(published, asset.replace(".", "/", 1), (version,)))
        if published.latest(publish.PUBLICATIONS) is not None:
            out.append(Retained(published, publish.PUBLICATIONS, ()))
    return out


def vacuum(project: Project, lake_versions: dict[str, int], retention_hours: float | None = None,
           dry_run: bool = False, hold: Hold | None = None) -> Vacuumed:
    """Vacuum every table of :func:`retained`, then prune the cache (see the module's docstring). ``hold``: a lake
    table is vacuumed while holding its collection lock, so no load is between putting its files and committing
    them (a full vacuum removes files no version names yet) and no load's commit races the vacuum's."""
    storage = project.config.storage
    if storage is None or (storage.lake is None and storage.warehouse is None):
        raise StorageError("this project keeps nothing on shared storage (no storage: lake: or warehouse:)",
                           "see docs/storage.md")
    hours = storage.retention_hours() if retention_hours is None else retention_hours
    report = Vacuumed()
    keep_uris: set[str] = set()
    for table in retained(project, lake_versions):
        uri = table.delta.uri(table.name)
        latest = table.delta.latest(table.name)
        keep = sorted({*table.keep, *([latest] if latest is not None else [])})
        report.kept_versions[uri] = keep
        for version in keep:
            keep_uris.update(table.delta.files(table.name, version))
        with hold(table.asset) if hold is not None and table.asset is not None else nullcontext():
            removed = table.delta.vacuum(table.name, hours, keep, dry_run)
        if removed:
            report.tables[uri] = removed
    prune_cache(project.root / storage.cache, keep_uris, report, dry_run)
    return report


def prune_cache(cache: Path, keep_uris: set[str], report: Vacuumed, dry_run: bool,
                grace: float = CACHE_GRACE_S) -> None:
    """Remove cached copies (and remembered snapshot listings) no kept version names, older than ``grace``."""
    if not cache.is_dir():
        return
    keep = {str(cache / urlparse(u).netloc / urlparse(u).path.lstrip("/")) for u in keep_uris
            if u.startswith("s3://")}
    limit = time.time() - grace
    for dirpath, _, filenames in os.walk(cache):
        for filename in filenames:
            path = Path(dirpath) / filename
            if str(path) in keep or (path.parent.parent.name == "_snapshots" and _lists_kept(path, keep_uris)):
                continue
            try:
                stat = path.stat()
            except FileNotFoundError:  # another process pruned it
                continue
            if stat.st_mtime > limit:
                continue
            report.cache_files += 1
            report.cache_bytes += stat.st_size
            if not dry_run:
                path.unlink(missing_ok=True)


def _lists_kept(path: Path, keep_uris: set[str]) -> bool:
    """Whether a remembered snapshot listing names only files of kept versions (it is a kept version's)."""
    try:
        listed = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(listed, list) and bool(listed) and all(str(u) in keep_uris for u in listed)
