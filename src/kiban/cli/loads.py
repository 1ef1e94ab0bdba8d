"""``kiban loads TABLE`` (a collected table's loads, newest first) and ``kiban loads retract LOAD_ID`` (take a
load out of every view: kept in the lake, marked retracted; downstream is rebuilt on the next run and the files
it consumed can be collected again). Thin: the work is in ``kiban.collect.manifest``."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from kiban.cli import app
from kiban.cli.commands import _project


def _load_json(r: Any) -> dict[str, Any]:
    return {"load_id": r.load_id, "table": r.asset, "kind": r.kind, "status": r.status,
            "retracted": r.retracted_at is not None,
            "retracted_at": r.retracted_at.isoformat() if r.retracted_at else None,
            "retracted_note": r.retracted_note, "started_at": r.started_at.isoformat(),
            "ended_at": r.ended_at.isoformat() if r.ended_at else None, "run_id": r.run_id, "read": r.rows_read,
            "landed": r.rows_landed, "quarantined": r.rows_quarantined, "dropped": r.rows_dropped,
            "deleted": r.rows_deleted, "cursor": None if r.cursor is None else str(r.cursor), "error": r.error,
            "files": [{"path": p, "kind": k, "rows": n, "bytes": b} for p, k, n, b in r.files],
            # storage: on shared storage, the Delta versions its commit and its retraction made (else null)
            "lake_version": r.lake_version, "retracted_version": r.retracted_version}


@app.command(name="loads")
def loads_command(
    words: Annotated[list[str] | None, typer.Argument(
        metavar="TABLE | retract LOAD_ID", help="A collected table (lake.<source>_<table>) to list its loads, "
        "or `retract LOAD_ID` to take a load out of every view.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many loads to list.")] = 20,
    note: Annotated[str | None, typer.Option("--note", help="retract: why (kept with the load).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List a collected table's loads, or retract one."""
    from kiban.errors import UsageError

    args = list(words or [])
    if args[:1] == ["retract"]:
        if len(args) != 2:
            raise UsageError("usage: kiban loads retract LOAD_ID", "`kiban loads TABLE` lists the load ids")
        _retract(args[1], note, as_json)
        return
    if len(args) > 1:
        raise UsageError(f"unexpected '{args[1]}'", "usage: kiban loads [TABLE] or kiban loads retract LOAD_ID")
    _list(args[0] if args else None, limit, as_json)


def _list(table: str | None, limit: int, as_json: bool) -> None:
    from rich.markup import escape
    from rich.table import Table

    from kiban.cli.collect import _table_key
    from kiban.cli.output import console
    from kiban.collect.manifest import Manifests
    from kiban.store import Store

    project = _project()
    key = _table_key(project, table) if table else None
    store = Store(project.state_url)
    try:
        found = Manifests(store).loads(project.name, key, limit=limit)
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps([_load_json(r) for r in found], indent=2))
        return
    if not found:
        console.print("no loads" + (f" of {key}" if key else ""))
        return
    out = Table(box=None, header_style="bold")
    for col in ("load", "table", "started (UTC)", "status", "read", "landed", "quarantined", "dropped", "cursor"):
        out.add_column(col, justify="right" if col in ("read", "landed", "quarantined", "dropped") else "left")
    for r in found:
        status = "retracted" if r.retracted_at else r.status
        out.add_row(r.load_id, escape(r.asset), f"{r.started_at:%Y-%m-%d %H:%M:%S}", status, f"{r.rows_read:,}",
                    f"{r.rows_landed:,}", f"{r.rows_quarantined:,}", f"{r.rows_dropped:,}",
                    escape("" if r.cursor is None else str(r.cursor)))
    console.print(out)


def _retract(load_id: str, note: str | None, as_json: bool) -> None:
    from kiban.cli.output import console
    from kiban.collect import shared_lake
    from kiban.collect.manifest import Manifests
    from kiban.errors import SelectionError, UsageError
    from kiban.store import Store

    project = _project()
    store = Store(project.state_url)
    try:
        manifests = Manifests(store)
        matches = manifests.find_load(project.name, load_id)
        if len(matches) != 1:
            raise SelectionError(f"no load {load_id}" if not matches else f"load id '{load_id}' is ambiguous",
                                 "`kiban loads TABLE` lists the load ids")
        try:
            record = shared_lake.retract(project, store, matches[0], note)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps(_load_json(record), indent=2))
        return
    console.print(f"retracted load {record.load_id} of {record.asset} ({record.rows_landed:,} rows): its files stay "
                  "in the lake, no view reads them; the next `kiban run` rebuilds what depends on the table, and "
                  "the files it read can be collected again")
