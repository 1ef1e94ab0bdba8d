"""The lake on shared storage (``storage: lake:`` in kiban.yml): each collected table is a Delta table
``<storage.lake>/<name>``, and kiban reads it at the version the state store recorded.

The order of one load, and why a kill anywhere is safe:

1. under the table's collection lock, :func:`repair` undoes Delta commits the store never recorded (a load
   killed between its Delta commit and its manifest) with a new snapshot;
2. the load lands its files locally as always (DuckDB reads them back for the schema, drift and cursor), then
   :func:`commit` puts those very files — not re-encoded — into the Delta table's folder on the storage root
   and makes ONE Delta commit naming them (a first commit, a superseded load's, or one with a new column or type
   is rewritten by delta-rs instead; the rows of the loads it supersedes leave in that same commit) and notes
   the new version on the load's record. A kill after the files are put and before the commit leaves files
   no version names: invisible, removed by ``kiban storage vacuum``;
3. the manifest commits with that version: from then on every reader reads the new snapshot. Until then they read
   the version before, whatever the bucket holds.

A retraction (:func:`retract`) is a Delta commit without the load's rows, recorded with the retraction. The first
Delta commit of a table collected before ``storage:`` was set also carries the rows of its earlier loads, so the
shared table starts whole.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from kiban.collect.manifest import LoadRecord, Manifests, TableState
from kiban.status import LoadStatus
from kiban.storage.cache import local_files, snapshot_uris
from kiban.storage.delta import DeltaTables
from kiban.store import Store

if TYPE_CHECKING:
    from kiban.project import Project


def tables(project: Project) -> DeltaTables | None:
    """The lake's Delta tables, or None when the lake is the local folder (no ``storage: lake:``)."""
    storage = project.config.storage
    return DeltaTables.at(storage.lake, storage, project.root) if storage is not None else None


def name_of(asset: str) -> str:
    """The Delta table of ``lake.<name>``: ``<name>``."""
    return asset.split(".", 1)[1]


def repair(project: Project, asset: str, state: TableState | None) -> int | None:
    """Step 1 (hold the table's collection lock): a new snapshot equal to the recorded one when the table has
    commits no manifest recorded. Returns the table's version after it — the one this load's commit must follow
    (None: no table yet, or not on shared storage)."""
    delta = tables(project)
    if delta is None:
        return None
    name = name_of(asset)
    repaired = delta.repair(name, state.lake_version if state else None)
    return repaired if repaired is not None else delta.latest(name)


def commit(project: Project, record: LoadRecord, state: TableState | None, supersedes: dict[str, str],
           base: int | None = None) -> None:
    """Step 2: the load's rows as one Delta commit right after version ``base`` (what :func:`repair` left): a
    commit that slipped in meanwhile — a worker paused past its lease, woken in the middle of its own commit —
    makes this one fail instead of building on it (the attempt is retried, and its repair undoes that commit).
    Sets ``record.lake_version``. ``state``: the table's state without the loads this one supersedes. Nothing to
    do off shared storage, or for a load that landed no file."""
    delta = tables(project)
    data = [project.lake_dir / path for path, kind, _, _ in record.files if kind == "data"]
    if delta is None or not data:
        return
    replaces: list[str] = list(supersedes)
    if state is not None and state.lake_version is None and state.files:
        # the table's first commit on shared storage: its earlier loads come along, so it starts whole
        data = [project.lake_dir / f for f in state.files] + data
        replaces = []
    name = name_of(record.asset)
    if base is not None and not replaces:  # the landed files themselves go to the storage root, as they are
        version = delta.commit_files(name, data, record.load_id, base)
        if version is not None:
            record.lake_version = version
            return
    # a first commit, a superseded load, a new column or type: the rows are rewritten in Delta's own files
    record.lake_version = delta.commit_load(name, data, record.load_id, replaces, base)


def retract(project: Project, store: Store, load_id: str, note: str | None) -> LoadRecord:
    """Take a committed load out of every view (:meth:`Manifests.retract`); on shared storage first as a new
    Delta snapshot without its rows, under the table's collection lock (a load's repair must not see a half-done
    retraction). Raises what :meth:`Manifests.retract` raises."""
    manifests = Manifests(store)
    found = manifests.loads(project.name, load_ids=[load_id], limit=1)
    delta = tables(project)
    if delta is None or not found:
        return manifests.retract(project.name, load_id, note)
    record = found[0]
    lock, holder = f"collect:{project.name}:{record.asset}", f"retract-{load_id}"
    store.acquire_lock(lock, holder)
    try:
        state = manifests.state(project.name, record.asset)
        if state is not None and state.lake_version is not None and record.status == LoadStatus.COMMITTED \
                and record.retracted_at is None:
            delta.repair(name_of(record.asset), state.lake_version)
            version = delta.retract(name_of(record.asset), [load_id])
            return manifests.retract(project.name, load_id, note, version)
        return manifests.retract(project.name, load_id, note)
    finally:
        store.release_lock(lock, holder)


def with_local_files(project: Project, state: TableState | None) -> TableState | None:
    """``state`` whose files a load can read on this machine: its own lake files where they are all here, else
    (another machine collected them) the recorded snapshot's files, fetched to the cache — absolute paths, which
    the load's comparisons with earlier loads read as they read the lake's."""
    if state is None or state.lake_version is None or tables(project) is None:
        return state
    if all((project.lake_dir / f).exists() for f in state.files):
        return state
    return replace(state, files=snapshot_files(project, state))


def from_snapshot(state: TableState | None) -> bool:
    """Whether ``state``'s files are a snapshot's copies (:func:`with_local_files`), not this machine's loads."""
    return state is not None and any(Path(f).is_absolute() for f in state.files)


def snapshot_files(project: Project, state: TableState) -> tuple[str, ...]:
    """Local paths of the data files of the table's recorded snapshot (copies of the object store's, fetched once
    to ``storage.cache``); the local lake's files when the table is not on shared storage yet."""
    delta = tables(project)
    if delta is None or state.lake_version is None:
        return tuple(str(project.lake_dir / f) for f in state.files)
    storage = project.config.storage
    assert storage is not None
    cache, name, version = project.root / storage.cache, name_of(state.asset), state.lake_version
    uris = snapshot_uris(cache, delta.uri(name), version, lambda: delta.files(name, version))
    return tuple(local_files(uris, cache, delta.options))


__all__ = ["commit", "from_snapshot", "name_of", "repair", "retract", "snapshot_files", "tables", "with_local_files"]
