"""The CLI commands. Each one loads what it needs from the core and prints it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from kiban.cli import State, app
from kiban.cli.output import JsonOpt

SelectArg = Annotated[list[str] | None, typer.Argument(
    help="Assets: NAME, +NAME (with upstream), NAME+ (with downstream), layer:mart, tag:x. Default: all.",
    show_default=False, metavar="SELECTOR...")]
ExcludeOpt = Annotated[list[str] | None, typer.Option("--exclude", "-x", help="Leave these out (same syntax).",
                                                      metavar="SELECTOR")]


def _project() -> Any:
    from kiban.cli.running import checked_project

    return checked_project(State.project_dir)


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder to create the project in.")],
    name: Annotated[str | None, typer.Option(help="Project name (default: the folder's name).")] = None,
) -> None:
    """Create a new project that runs as it is: [bold]kiban init shop && cd shop && kiban run[/]."""
    from kiban.cli.output import console
    from kiban.project.scaffold import scaffold

    created = scaffold(directory, name)
    for path in created:
        console.print(f"  [green]created[/] {path}")
    console.print(f"\nNext: [bold]cd {directory} && kiban run[/]")


@app.command()
def run(
    selection: SelectArg = None,
    exclude: ExcludeOpt = None,
    full_refresh: Annotated[bool, typer.Option("--full-refresh", help="Rebuild even what is fresh.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Re-run only what failed, was skipped or "
                                         "was cancelled in the last run.")] = False,
    threads: Annotated[int | None, typer.Option(min=1, metavar="N", help="Assets built in parallel "
                                                "(default: kiban.yml, else one per core).")] = None,
    wait: Annotated[float, typer.Option(metavar="SECONDS",
                                        help="Seconds to wait if another run holds the project.")] = 0.0,
    log_format: Annotated[str, typer.Option("--log-format", metavar="text|json", help="text (live display) or "
                                            "json (one event per line, for cron and CI).")] = "text",
    workers: Annotated[bool, typer.Option("--workers", help="Queue the assets for `kiban worker` processes "
                                          "(PostgreSQL state store) instead of building them here; `--workers N` "
                                          "first waits until N workers are alive.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON event per line on stdout (the same as "
                                          "--log-format json); with --explain, the plan as one JSON object.")] = False,
    explain: Annotated[bool, typer.Option("--explain", help="Print the plan (what would be collected, built, "
                                          "built whole or is fresh, and why) and build nothing.")] = False,
) -> None:
    """Build the selected assets in dependency order; only what changed is rebuilt."""
    from kiban.cli.running import RunArgs, run_command

    run_command(RunArgs(State.project_dir, selection or [], exclude or [], full_refresh, resume, threads, wait,
                        log_format, workers, as_json, explain))


@app.command()
def status(as_json: JsonOpt = False) -> None:
    """Every asset's latest state: built, fresh, failed or never run."""
    from kiban.cli.report import print_status

    print_status(_project(), as_json)


@app.command()
def runs(
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many runs to list.")] = 20,
    run_id: Annotated[str | None, typer.Argument(help="Show one run's assets (an id or its prefix).")] = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Refresh the list every second until Ctrl-C.")] = False,
    count: Annotated[int | None, typer.Option("--count", min=1, metavar="N",
                                              help="With --watch: stop after N refreshes.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Recent runs, newest first; or one run in detail."""
    from kiban.cli.report import print_run, print_runs, watch_runs
    from kiban.errors import UsageError

    project = _project()
    if watch and as_json:
        raise UsageError("--watch redraws a table; it takes no --json", "poll `kiban runs --json` instead")
    if run_id:
        if watch:
            raise UsageError("--watch lists the recent runs; it takes no run id",
                             f"kiban logs {run_id} shows one run in full")
        print_run(project, run_id, as_json)
    elif watch:
        watch_runs(project, limit, count)
    else:
        print_runs(project, limit, as_json)


@app.command()
def logs(
    run_id: Annotated[str, typer.Argument(help="A run id or its prefix (see `kiban runs`).")],
    asset: Annotated[str | None, typer.Argument(help="Only this asset (key or name).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """A run's attempts in full: timing, rows, errors; and the scheduler's log of the run, if it started it."""
    from kiban.cli.report import print_logs

    print_logs(_project(), run_id, asset, as_json)


@app.command()
def show(asset: Annotated[str, typer.Argument(help="An asset, e.g. mart.daily_sales or daily_sales.")],
         as_json: JsonOpt = False) -> None:
    """One asset: description, owner, columns, SQL, upstream and downstream, recent runs."""
    from kiban.cli.report import print_asset

    project = _project()
    print_asset(project, asset, as_json)
    if as_json:
        return
    if project.sources:  # a collected lake table: its recent loads, drift and quarantine
        from kiban.cli.collect import print_collection

        tables = project.source_tables()
        print_collection(project, asset if asset in tables else f"lake.{asset}")


@app.command()
def graph(
    selection: SelectArg = None,
    exclude: ExcludeOpt = None,
    format: Annotated[str, typer.Option("--format", "-f", metavar="FORMAT",
                                        help="tree, dot, json or mermaid.")] = "tree",
    as_json: Annotated[bool, typer.Option("--json", help="The same as --format json.")] = False,
) -> None:
    """The asset graph (dependencies inferred from SQL), as a tree or for other tools."""
    from kiban.cli.output import console
    from kiban.errors import UsageError
    from kiban.graph import build_graph, select
    from kiban.graph.render import FORMATS, render

    if as_json:
        format = "json"
    if format not in FORMATS:
        raise UsageError(f"unknown format '{format}'", f"use one of: {', '.join(FORMATS)}")
    graph_ = build_graph(_project())
    keys = select(graph_, selection or [], exclude or [])
    text = render(graph_, keys, format)
    if format == "tree":
        console.print(text, markup=False)
    else:
        sys.stdout.write(text + ("\n" if not text.endswith("\n") else ""))
