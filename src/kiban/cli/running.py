"""``kiban run``'s work, apart from Typer: the Typer command hands its options here, and so does a plain
``kiban run`` (no option at all), which answers without building Typer's parser.

Typer turns a command's parameters into Pydantic type adapters each time it parses them (≈ 50 CPU-ms for
``run``'s ten, on top of importing Typer): a fixed cost every cold ``kiban run`` from cron paid for options it
did not give. A plain ``kiban run`` is every option at its default, so :func:`plain_run` calls the same
:func:`run_command` with ``RunArgs()`` — one body; ``tests/test_cli_plain_run.py`` holds ``RunArgs``' defaults to
the Typer command's and the two paths to the same output, exit code and error messages.
"""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiban.cli import mistakes_told
from kiban.status import RunStatus


@dataclass(frozen=True)
class RunArgs:
    """The options of ``kiban run``, at their defaults (the Typer command declares the same ones)."""

    project_dir: Path = Path(".")
    selection: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    full_refresh: bool = False
    resume: bool = False
    threads: int | None = None
    wait: float = 0.0
    log_format: str = "text"
    workers: bool = False
    as_json: bool = False
    explain: bool = False


def checked_project(project_dir: Path) -> Any:
    """The project at ``project_dir`` (or the nearest above it), refused when its engine cannot run it."""
    from kiban.engines.dialect import refuse_unportable
    from kiban.project import load_project

    project = load_project(project_dir)
    refuse_unportable(project)  # PostgreSQL/Spark: what they cannot run as DuckDB does is refused on loading
    return project


def plain_run() -> None:
    """A plain ``kiban run``: the run command at its defaults, with the entry point's handling of a user's
    mistake (a message and its exit code, never a traceback) and ``KIBAN_LOG_LEVEL``, as the Typer path has."""
    from kiban.cli.logconfig import configure

    with mistakes_told():
        configure(os.environ.get("KIBAN_LOG_LEVEL"))
        run_command(RunArgs())


def run_command(args: RunArgs) -> None:
    """Build the selected assets in dependency order; only what changed is rebuilt (``kiban run``)."""
    from kiban.cli.output import log_format_of
    from kiban.errors import UsageError
    from kiban.run import RunOptions

    log_format = log_format_of(args.log_format, args.as_json)
    min_workers, selection = 0, list(args.selection)
    if args.workers and selection and selection[0].isdigit():  # `--workers N`: a count, not an asset named "2"
        min_workers, selection = int(selection[0]), selection[1:]
    if args.resume and selection:
        raise UsageError("--resume takes no selection: it re-runs what the last run left undone")
    if args.explain and (args.resume or args.workers):
        raise UsageError("--explain shows the plan of a plain run", "leave out --resume and --workers")
    project = checked_project(args.project_dir)
    if args.explain:
        from kiban import operate
        from kiban.cli.report import print_plan

        print_plan(operate.explain(project, RunOptions(select=selection, exclude=args.exclude,
                                                       full_refresh=args.full_refresh)),
                   args.as_json or log_format == "json")
        return
    options = RunOptions(select=selection, exclude=args.exclude, full_refresh=args.full_refresh,
                         resume=args.resume, threads=args.threads, wait=args.wait)
    done = _operate(project, options, log_format, args.workers, min_workers)
    result = done.result
    if log_format == "text":
        from kiban.cli.report import print_run_summary

        print_run_summary(result, project)
        if project.sources:  # what the run's loads quarantined, refused, or saw change in a schema
            from kiban.cli.report import print_load_notes

            print_load_notes(project, result.run_id)
        if done.gated:
            from kiban.cli.check_report import print_run_checks

            print_run_checks(project, result.run_id)
    elif not result.ok:  # stdout holds only JSON lines
        from kiban.cli.output import err_console

        err_console.print(f"run {result.run_id} {result.status}", style="red")
    print_service_levels(done, quiet=log_format == "json")
    if log_format == "text":  # a plain run that found nothing to do: the next one may answer without planning
        from kiban.cli.quick import remember

        remember(project, result, done.gated)
    if result.status == RunStatus.CANCELLED:
        sys.exit(130)
    if not result.ok:
        sys.exit(1)


def _operate(project: Any, options: Any, log_format: str, workers: bool, min_workers: int) -> Any:
    """The run itself, its progress shown as asked, SIGTERM taken as Ctrl-C (the run cancels cleanly)."""
    from kiban import operate
    from kiban.cli.progress import JsonLog, progress_view

    listeners: list[Any] = [JsonLog() if log_format == "json" else progress_view()]

    def on_term(_sig: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:  # checks gate every publish, the watcher raises at-risk incidents, service levels are judged after
        return operate.run(project, options, listeners, workers=workers, min_workers=min_workers)
    finally:
        signal.signal(signal.SIGTERM, previous)


def print_service_levels(done: Any, quiet: bool) -> None:
    """The use cases as the run left them (``kiban run``, ``kiban backfill``); a failure to judge is a warning."""
    from kiban.cli.output import err_console

    if done.levels_error is not None:
        err_console.print(f"[yellow]service levels could not be checked: {done.levels_error}[/]")
    elif done.levels is not None and not quiet:
        from kiban.cli.levels import print_assessment

        print_assessment(done.levels)
