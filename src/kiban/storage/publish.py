"""Published warehouse and mart tables on shared storage (``storage: warehouse:`` in kiban.yml): after a run,
every table it published is written as ONE Delta commit to ``<storage.warehouse>/<layer>/<name>``, so another
engine or machine (Spark reading the snapshot's Parquet, polars, delta-rs, DuckDB) reads it without kiban.

A reader of the Delta table sees the old snapshot or the new one, never a mix, and never waits: the commit is one
put-if-absent of a log entry, written after all data files. A publish killed midway leaves the old snapshot; the
next run publishes again (each table's newest commit carries the kiban data version it was made from, so a table
that is already current is not written twice). The warehouse itself stays the source of truth.

**One snapshot per run** (docs/architecture.md, "Published tables as one snapshot"): the run's tables are committed
one by one, but none of their new versions is *published* until the run's publication commits — one commit of
the small Delta table ``<storage.warehouse>/_kiban_publications`` that lists every published table with the Delta
version readers must read (asset, version, run). Readers resolve that list once (:func:`published_versions`,
:func:`read_published`) and read each table at its version, so they see all of one run's tables or none of
them. Publications of two runs at once merge optimistically (a commit on a version of the list that moved fails,
and is merged and tried again; per table, the higher Delta version wins — versions only grow).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from kiban.catalog.warehouse import open_readonly, published_columns
from kiban.quoting import quote
from kiban.status import AttemptStatus
from kiban.storage.delta import DeltaTables, delta_ready
from kiban.storage.spec import StorageError

if TYPE_CHECKING:
    from kiban.project import Project

log = logging.getLogger(__name__)
LAYERS = ("warehouse", "mart")
PUBLICATIONS = "_kiban_publications"  # the run-level pointer: a Delta table under the warehouse root
SWAP_ATTEMPTS = 8


def shared_tables(project: Project) -> DeltaTables | None:
    """The published tables' Delta root, or None without ``storage: warehouse:``."""
    storage = project.config.storage
    return DeltaTables.at(storage.warehouse, storage, project.root) if storage is not None else None


def publish(project: Project, built: list[str], tag: str) -> dict[str, int]:
    """Write each of ``built`` (tables a run published, tagged with its run id ``tag``) — and every published
    warehouse/mart table not on shared storage yet — to shared storage, one Delta commit each; a table whose
    newest commit already carries ``tag`` is left as it is. Returns asset → new version."""
    delta = shared_tables(project)
    if delta is None:
        return {}
    known = [a for a in published_columns(project) if a.split(".", 1)[0] in LAYERS]
    wanted = [a for a in known if a in set(built) or delta.latest(a.replace(".", "/", 1)) is None]
    done: dict[str, int] = {}
    if wanted:
        with open_readonly(project) as con:
            for key in wanted:
                name = key.replace(".", "/", 1)
                if key in built and delta.tag(name) == tag:
                    continue
                layer, table = key.split(".", 1)
                reader = con.execute(f"select * from {quote(layer)}.{quote(table)}").fetch_record_batch()
                done[key] = delta.publish(name, reader.cast(delta_ready(reader.schema)), tag)
    if done or delta.latest(PUBLICATIONS) is None:  # the run's tables become visible together, in this one commit
        swap_publication(delta, known, done, tag)
    return done


def swap_publication(delta: DeltaTables, known: list[str], done: dict[str, int], tag: str) -> int:
    """Commit the publication of ``done`` (asset → new Delta version): ONE commit of the publications table that
    lists every published table at the version readers read — the others as the last publication listed them
    (or, the first time, as they are). Optimistic: on a concurrent publication, merge and try again. Returns the
    publication's version."""
    import pyarrow as pa

    for attempt in range(SWAP_ATTEMPTS):
        base = delta.latest(PUBLICATIONS)
        current = _listed(delta, base)
        for key in known:
            name = key.replace(".", "/", 1)
            if key not in current and key not in done and (version := delta.latest(name)) is not None:
                current[key] = (version, delta.tag(name) or "")
        for key, version in done.items():
            if key not in current or current[key][0] < version:
                current[key] = (version, tag)
        assets = sorted(current)
        rows = pa.table({"asset": pa.array(assets, pa.string()),
                         "version": pa.array([current[a][0] for a in assets], pa.int64()),
                         "run_id": pa.array([current[a][1] for a in assets], pa.string())})
        try:
            return delta.replace_at(PUBLICATIONS, rows, base, tag)
        except StorageError:
            if attempt == SWAP_ATTEMPTS - 1:
                raise
            log.info("the publication of run %s met another one: merged and tried again", tag)
    raise AssertionError("unreachable")


def _listed(delta: DeltaTables, version: int | None) -> dict[str, tuple[int, str]]:
    if version is None:
        return {}
    table = delta.read(PUBLICATIONS, version)
    return {a: (int(v), str(r)) for a, v, r in zip(table.column("asset").to_pylist(),
                                                   table.column("version").to_pylist(),
                                                   table.column("run_id").to_pylist(), strict=True)}


def published_versions(project: Project) -> dict[str, int]:
    """The publication readers read: asset → its Delta version (all of one run's tables, or none of them);
    {} without ``storage: warehouse:`` or before the first publication."""
    delta = shared_tables(project)
    if delta is None:
        return {}
    return {a: v for a, (v, _) in _listed(delta, delta.latest(PUBLICATIONS)).items()}


def read_published(project: Project, assets: list[str]) -> dict[str, Any]:
    """``assets`` as Arrow tables, all from ONE publication (the pointer is resolved once): a reader never sees
    one run's ``warehouse.orders`` with another run's ``mart.daily_sales``."""
    delta = shared_tables(project)
    if delta is None:
        raise StorageError("this project has no storage: warehouse:", "add it to kiban.yml (docs/storage.md)")
    versions = published_versions(project)
    missing = [a for a in assets if a not in versions]
    if missing:
        raise StorageError(f"{', '.join(missing)}: not published to shared storage yet", "run kiban run first")
    return {a: delta.read(a.replace(".", "/", 1), versions[a]) for a in assets}


class PublishAfterRun:
    """A run listener: when the run has finished, publish what it built to shared storage. A failure is logged
    and kept in ``error`` — the run's own publish stands; the next run publishes again."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.built: list[str] = []
        self.error: str | None = None

    def __call__(self, event: Any) -> None:
        if event.kind == "asset_finished" and event.status == AttemptStatus.SUCCESS and event.asset:
            self.built.append(event.asset)
        elif event.kind == "run_finished":
            try:
                publish(self.project, self.built, event.run_id)
            except Exception as exc:  # the shared copy follows: it never fails the run
                self.error = f"{type(exc).__name__}: {exc}"
                log.warning("publishing to shared storage failed: %s", self.error)


def listeners(project: Project) -> list[Any]:
    """The run listeners shared storage needs (none without ``storage: warehouse:``)."""
    return [PublishAfterRun(project)] if shared_tables(project) is not None else []
