"""Published warehouse and mart tables on shared storage (``storage: warehouse:`` in kiban.yml): after a run,
every table it published is written as ONE Delta commit to ``<storage.warehouse>/<layer>/<name>``, so another
engine or machine (Spark reading the snapshot's Parquet, polars, delta-rs, DuckDB) reads it without kiban.

A reader of the Delta table sees the old snapshot or the new one, never a mix, and never waits: the commit is one
put-if-absent of a log entry, written after all data files. A publish killed midway leaves the old snapshot; the
next run publishes again (each table's newest commit carries the kiban data version it was made from, so a table
that is already current is not written twice). The warehouse itself stays the source of truth: the shared copy
follows each run, table by table (two tables may briefly be of different runs).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from kiban.catalog.warehouse import open_readonly, published_columns
from kiban.quoting import quote
from kiban.status import AttemptStatus
from kiban.storage.delta import DeltaTables, delta_ready

if TYPE_CHECKING:
    from kiban.project import Project

log = logging.getLogger(__name__)
LAYERS = ("warehouse", "mart")


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
    if not wanted:
        return done
    with open_readonly(project) as con:
        for key in wanted:
            name = key.replace(".", "/", 1)
            if key in built and delta.tag(name) == tag:
                continue
            layer, table = key.split(".", 1)
            reader = con.execute(f"select * from {quote(layer)}.{quote(table)}").fetch_record_batch()
            done[key] = delta.publish(name, reader.cast(delta_ready(reader.schema)), tag)
    return done


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
