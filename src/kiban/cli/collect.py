"""``kiban collect`` (sources → lake) and ``kiban quarantine`` (rows the loads refused); the collection part
of ``kiban show``. Thin: the work is in ``kiban.collect``."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from kiban.cli import State, app
from kiban.cli.commands import ExcludeOpt, SelectArg
from kiban.cli.output import JsonOpt, log_format_of
from kiban.status import LoadStatus, RunStatus

quarantine_app = typer.Typer(help="Rows the loads refused: list, show, export, and replay them once fixed.",
                             no_args_is_help=True)
app.add_typer(quarantine_app, name="quarantine")


def _project() -> Any:
    from kiban.project import load_project

    return load_project(State.project_dir)


TableArg = Annotated[str, typer.Argument(help="A collected table: lake.<source>_<table> or <source>_<table>.")]


def _table_key(project: Any, name: str) -> str:
    from kiban.errors import SelectionError, did_you_mean

    tables = project.source_tables()
    key = name if name in tables else f"lake.{name}"
    if key not in tables:
        raise SelectionError(f"no collected table named '{name}'",
                             did_you_mean(name, [*tables, *(k.split(".", 1)[1] for k in tables)])
                             or ("collected tables: " + ", ".join(sorted(tables)) if tables else
                                 "declare sources in sources/NAME.yml"))
    return key


class _Details:
    """Keeps each collected table's detail for the summary (progress itself is ``kiban.cli.progress``'s)."""

    def __init__(self) -> None:
        self.details: dict[str, dict[str, Any]] = {}

    def __call__(self, event: Any) -> None:
        if event.kind == "asset_finished" and event.detail.get("collect"):
            self.details[event.asset] = {**event.detail, "status": event.status, "error": event.error,
                                         "seconds": event.seconds}


def print_collect_summary(details: dict[str, dict[str, Any]]) -> None:
    from rich.markup import escape
    from rich.table import Table

    from kiban.cli.output import console, err_console, number, styled

    table = Table(box=None, header_style="bold", title="collected", title_justify="left")
    for col in ("table", "status", "read", "landed", "quarantined", "dropped", "deleted", "cursor", "drift"):
        table.add_column(col, justify="right" if col in ("read", "landed", "quarantined", "dropped", "deleted")
                         else "left")
    for key, d in details.items():
        table.add_row(escape(key), styled(d.get("status") or ""), number(d.get("read")), number(d.get("landed")),
                      number(d.get("quarantined")), number(d.get("dropped")), number(d.get("deleted")),
                      escape(str(d.get("cursor") or "-")), escape("; ".join(d.get("drift") or []) or "-"))
    console.print(table)
    for key, d in details.items():
        for note in d.get("notes") or []:
            err_console.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)
        if d.get("error"):
            err_console.print(f"[bold red]{escape(key)} failed:[/] {escape(d['error'])}", soft_wrap=True)


@app.command()
def collect(
    selection: SelectArg = None,
    exclude: ExcludeOpt = None,
    wait: Annotated[float, typer.Option(metavar="SECONDS",
                                        help="Seconds to wait if another run holds the project.")] = 0.0,
    threads: Annotated[int | None, typer.Option(min=1, metavar="N", help="Tables collected in parallel.")] = None,
    log_format: Annotated[str, typer.Option("--log-format", metavar="text|json",
                                            help="text (live display) or json (one event per line).")] = "text",
    as_json: Annotated[bool, typer.Option("--json", help="One JSON event per line on stdout (the same as "
                                          "--log-format json).")] = False,
    workers: Annotated[bool, typer.Option("--workers", help="Queue one load per table for `kiban worker` "
                                          "processes (PostgreSQL state store) instead of loading here; "
                                          "`--workers N` first waits until N workers are alive.")] = False,
) -> None:
    """Collect the selected source tables into the lake (default: all), without building models."""
    from kiban.cli.progress import JsonLog, progress_view
    from kiban.errors import UsageError
    from kiban.graph import build_graph, select
    from kiban.run import RunOptions, run_project

    log_format = log_format_of(log_format, as_json)
    min_workers = 0
    if workers and selection and selection[0].isdigit():  # `--workers N`: a count, not a table named "2"
        min_workers, selection = int(selection[0]), selection[1:]
    project = _project()
    tables = project.source_tables()
    if not tables:
        raise UsageError("this project has no sources to collect", "declare them in sources/NAME.yml "
                         "(see docs/collect.md)")
    graph = build_graph(project)
    keys = [k for k in select(graph, selection or [], exclude or []) if k in tables]
    if not keys:
        raise UsageError("the selection names no collected table",
                         "collected tables: " + ", ".join(sorted(tables)))
    view: Any = JsonLog() if log_format == "json" else progress_view()
    details = _Details()
    listeners = [view, details]

    def on_term(_sig: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        options = RunOptions(select=keys, threads=threads, wait=wait)
        if workers:  # the workers load the tables, several at a time; this process follows the queue
            from kiban.workers import run_distributed

            result = run_distributed(project, options, listeners, min_workers=min_workers)
        else:
            result = run_project(project, options, listeners)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if log_format == "text":
        print_collect_summary(details.details)
    if result.status == RunStatus.CANCELLED:
        sys.exit(130)
    if not result.ok:
        sys.exit(1)


# -- kiban quarantine -------------------------------------------------------------------------------------------
@quarantine_app.command("list")
def quarantine_list(
    table: Annotated[str | None, typer.Argument(help="Only this collected table.")] = None,
    all_rows: Annotated[bool, typer.Option("--all", help="Count replayed rows too.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Quarantined rows per table and load, with their most common reasons."""
    from rich.markup import escape
    from rich.table import Table

    from kiban.cli.output import console
    from kiban.collect.quarantine import rows
    from kiban.store import Store

    project = _project()
    key = _table_key(project, table) if table else None
    store = Store(project.state_url)
    try:
        found = rows(project, store, key, include_replayed=all_rows)
    finally:
        store.close()
    groups: dict[tuple[str, str], list[Any]] = {}
    for row in found:
        groups.setdefault((row.asset, row.load_id), []).append(row)
    if as_json:
        from kiban.cli.output import emit_json

        emit_json({"loads": [{"table": asset, "load_id": load, "rows": len(items),
                              "replayed": sum(bool(r.replayed) for r in items),
                              "reasons": _reasons(items)} for (asset, load), items in groups.items()]})
        return
    if not found:
        console.print("no quarantined rows" + (f" in {key}" if key else ""))
        return
    out = Table(box=None, header_style="bold")
    for col in ("table", "load", "rows", "replayed", "reasons"):
        out.add_column(col, justify="right" if col in ("rows", "replayed") else "left")
    for (asset, load), items in groups.items():
        reasons: dict[str, int] = {}
        for r in items:
            label = f"column {r.column}" if r.column else r.reason[:60]
            reasons[label] = reasons.get(label, 0) + 1
        text = ", ".join(f"{n} × {k}" for k, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:3])
        out.add_row(escape(asset), load, f"{len(items):,}", f"{sum(r.replayed for r in items):,}", escape(text))
    console.print(out)


def _reasons(items: list[Any]) -> dict[str, int]:
    reasons: dict[str, int] = {}
    for r in items:
        label = f"column {r.column}" if r.column else r.reason[:60]
        reasons[label] = reasons.get(label, 0) + 1
    return dict(sorted(reasons.items(), key=lambda kv: -kv[1]))


@quarantine_app.command("show")
def quarantine_show(
    table: TableArg,
    load: Annotated[str | None, typer.Option("--load", help="Only rows of this load.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many rows to show.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """A table's quarantined rows: where each came from, why it was refused, and what it said."""
    from rich.markup import escape
    from rich.table import Table

    from kiban.cli.output import console
    from kiban.collect.quarantine import rows
    from kiban.store import Store

    project = _project()
    key = _table_key(project, table)
    store = Store(project.state_url)
    try:
        found = rows(project, store, key, load_id=load)
    finally:
        store.close()
    if as_json:
        from kiban.cli.output import emit_json

        emit_json({"table": key, "total": len(found), "rows": [
            {"load_id": r.load_id, "location": r.location, "column": r.column, "reason": r.reason, "raw": r.raw,
             "replayed": bool(r.replayed)} for r in found[:limit]]})
        return
    if not found:
        console.print(f"no quarantined rows in {key}")
        return
    out = Table(box=None, header_style="bold", title=f"{key}: {len(found):,} quarantined row(s)",
                title_justify="left")
    for col in ("load", "location", "reason", "raw"):
        out.add_column(col, overflow="fold")
    for r in found[:limit]:
        out.add_row(r.load_id, escape(r.location), escape(r.reason), escape(r.raw[:200]))
    console.print(out)
    if len(found) > limit:
        console.print(f"… {len(found) - limit:,} more (--limit, or `kiban quarantine export`)")


@quarantine_app.command("export")
def quarantine_export(
    table: TableArg,
    to: Annotated[Path, typer.Option("--to", "-o", help="A .csv or .parquet file to write.")],
    all_rows: Annotated[bool, typer.Option("--all", help="Replayed rows too.")] = False,
) -> None:
    """Write a table's quarantined rows to CSV or Parquet (to fix them, or to send them to the source's owner)."""
    from kiban.cli.output import console
    from kiban.collect.quarantine import export, rows
    from kiban.store import Store

    project = _project()
    key = _table_key(project, table)
    store = Store(project.state_url)
    try:
        count = export(rows(project, store, key, include_replayed=all_rows), to)
    finally:
        store.close()
    console.print(f"{count:,} row(s) written to {to}")


@quarantine_app.command("replay")
def quarantine_replay(table: TableArg) -> None:
    """Cast a table's quarantined rows again (after fixing the declared types or the source) and land those
    that pass, in a new load; they are marked replayed. Rows that still fail stay quarantined."""
    from rich.markup import escape

    from kiban.cli.output import console, err_console
    from kiban.collect.quarantine import replay
    from kiban.store import Store

    project = _project()
    key = _table_key(project, table)
    store = Store(project.state_url)
    try:
        store.acquire_lock(f"run:{project.name}", f"replay:{key}"[:40])
        try:
            result = replay(project, store, key)
        finally:
            store.release_lock(f"run:{project.name}", f"replay:{key}"[:40])
    finally:
        store.close()
    if not (result.tried or result.not_replayable):
        console.print(f"no quarantined rows in {key}")
        return
    console.print(f"{key}: {result.tried:,} row(s) cast again: {result.landed:,} landed"
                  + (f" (load {result.load.record.load_id})" if result.load else "")
                  + f", {result.still_failing:,} still failing")
    for reason in result.reasons:
        err_console.print(f"  still failing: {escape(reason)}")
    if result.not_replayable:
        err_console.print(f"[yellow]{result.not_replayable:,} row(s) could not be parsed by the connector; "
                          "deliver the fixed file again to collect them[/]")
    if result.landed:
        console.print("the lake views pick the new load up at the next `kiban run` (or `kiban collect`)")


# -- kiban show lake.<source>_<table> ------------------------------------------------------------------------------
def _collection_history(project: Any, key: str, limit: int) -> tuple[list[Any], list[Any], list[Any], int]:
    """A collected table's recent loads, drift and quarantine files, and how many of those were replayed."""
    from kiban.collect.manifest import Manifests
    from kiban.store import Store

    store = Store(project.state_url)
    try:
        manifests = Manifests(store)
        files = manifests.quarantine_files(project.name, key)
        return (manifests.loads(project.name, key, limit), manifests.drift(project.name, key, limit), files,
                len(manifests.replayed([load for _, load, _, _ in files])))
    finally:
        store.close()


def print_collection(project: Any, key: str, limit: int = 10) -> None:
    """The collection part of ``kiban show``: recent loads (reconciled counts), drift, quarantined rows."""
    from rich.markup import escape
    from rich.table import Table

    from kiban.cli.output import console, local_time, number, styled

    tables = project.source_tables()
    if key not in tables:
        return
    source, table_name = tables[key]
    spec = project.sources[source].tables[table_name]
    asset = project.assets[key]
    console.print(f"collected: table {escape(table_name)} of source {escape(source)} "
                  f"({project.sources[source].type}), declared in {asset.config_path}; mode {spec.mode}"
                  + (f", cursor {escape(spec.cursor)}" if spec.cursor else "")
                  + (f", primary key {escape(', '.join(spec.primary_key))}" if spec.primary_key else ""))
    loads, drift, files, replayed = _collection_history(project, key, limit)
    quarantined = sum(rows for _, _, _, rows in files)
    tz = project.config.timezone
    if not loads:
        console.print("never collected: run `kiban collect " + key + "`")
        return
    table = Table(box=None, header_style="bold", title="recent loads", title_justify="left")
    for col in ("load", "kind", "status", "at", "read", "landed", "quarantined", "dropped", "deleted", "cursor"):
        table.add_column(col, justify="right" if col in ("read", "landed", "quarantined", "dropped", "deleted")
                         else "left")
    for r in loads:
        table.add_row(r.load_id, r.kind,
                      "[green]committed[/]" if r.status == LoadStatus.COMMITTED else styled("failed"),
                      local_time(r.started_at, tz), number(r.rows_read),
                      number(r.rows_landed), number(r.rows_quarantined), number(r.rows_dropped),
                      number(r.rows_deleted), escape(str(r.cursor) if r.cursor is not None else "-"))
    console.print(table)
    for r in loads:
        if r.error:
            console.print(f"[red]load {r.load_id} refused:[/] {escape(r.error)}", soft_wrap=True)
            break
    if drift:
        out = Table(box=None, header_style="bold", title="schema drift", title_justify="left")
        for col in ("at", "load", "change", "action"):
            out.add_column(col)
        for at, load_id, change, action in drift:
            out.add_row(local_time(at, tz), load_id, escape(change.describe()), action)
        console.print(out)
    waiting = quarantined - replayed
    console.print(f"quarantined rows: {waiting:,}" + (f" ({replayed:,} more replayed since)" if replayed else "")
                  + (f" (see `kiban quarantine show {key}`)" if waiting else ""))


def collection_json(project: Any, key: str, limit: int = 10) -> dict[str, Any] | None:
    """The collection part of ``kiban show --json``: recent loads, drift and quarantined rows (None: not a
    collected table)."""
    from kiban.cli.output import utc_iso

    tables = project.source_tables() if project.sources else {}
    if key not in tables:
        return None
    loads, drift, files, replayed = _collection_history(project, key, limit)
    return {"source": tables[key][0], "table": tables[key][1],
            "loads": [{"load_id": r.load_id, "kind": r.kind, "status": r.status, "started_at": utc_iso(r.started_at),
                       "read": r.rows_read, "landed": r.rows_landed, "quarantined": r.rows_quarantined,
                       "dropped": r.rows_dropped, "deleted": r.rows_deleted,
                       "cursor": None if r.cursor is None else str(r.cursor), "error": r.error} for r in loads],
            "drift": [{"at": utc_iso(at), "load_id": load_id, "change": change.describe(), "action": action}
                      for at, load_id, change, action in drift],
            "quarantined": sum(rows for _, _, _, rows in files) - replayed}
