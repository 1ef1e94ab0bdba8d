"""``kiban storage vacuum``: remove Delta files no retained version names, and prune this machine's read cache.
Thin: the work is in ``kiban.storage.vacuum``."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from kiban.cli import app
from kiban.cli.commands import _project

LOCK_WAIT_S = 300.0  # a table being loaded is vacuumed after its load
storage_app = typer.Typer(help="Shared storage (storage: in kiban.yml): vacuum old files, prune the cache.",
                          no_args_is_help=True)
app.add_typer(storage_app, name="storage")


@storage_app.command("vacuum")
def vacuum_command(
    retention: Annotated[str | None, typer.Option(metavar="DURATION", help="Keep versions younger than this "
                                                  "(7d, 36h, 90m; default: storage: retention: in kiban.yml).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would go; remove nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a summary.")] = False,
) -> None:
    """Remove Delta files that no retained version names (old versions, killed writers' files), never those of
    the version a reader is pointed at; prune the local read cache."""
    from kiban.cli.output import console
    from kiban.collect.manifest import Manifests
    from kiban.errors import UsageError
    from kiban.storage.spec import retention_hours
    from kiban.storage.vacuum import vacuum
    from kiban.store import Store

    project = _project()
    hours = None
    if retention is not None:
        try:
            hours = retention_hours(retention)
        except ValueError as exc:
            raise UsageError(str(exc), "e.g. --retention 7d") from None
    store = Store(project.state_url)
    holder = f"vacuum-{os.getpid()}"

    @contextmanager
    def hold(asset: str) -> Iterator[None]:  # the table's collection lock: no load is half-committed meanwhile
        name = f"collect:{project.name}:{asset}"
        store.acquire_lock(name, holder, wait=LOCK_WAIT_S)
        try:
            yield
        finally:
            store.release_lock(name, holder)

    try:
        states = Manifests(store).states(project.name, list(project.source_tables()))
        recorded = {k: s.lake_version for k, s in states.items() if s.lake_version is not None}
        report = vacuum(project, recorded, hours, dry_run, hold)
    finally:
        store.close()
    if as_json:
        print(json.dumps({**report.as_json(), "dry_run": dry_run}, indent=2))
        return
    verb = "would remove" if dry_run else "removed"
    for uri, files in sorted(report.tables.items()):
        console.print(f"{uri}: {verb} {len(files)} file(s)", highlight=False)
    console.print(f"{verb} {report.files} file(s) from {len(report.tables)} table(s); cache: {verb} "
                  f"{report.cache_files} file(s), {report.cache_bytes:,} bytes", highlight=False)
