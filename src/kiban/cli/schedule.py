"""``kiban scheduler`` (the daemon) and ``kiban jobs`` (what is scheduled, when, and whether it is in time)."""

from __future__ import annotations

import json
import signal
import sys
import threading
from typing import Annotated, Any

import typer

from kiban.cli import State, app

JobOpt = Annotated[list[str] | None, typer.Option("--job", "-j", metavar="NAME",
                                                  help="Only this job (repeatable). Default: every job.")]


def _project() -> Any:
    from kiban.project import load_project

    return load_project(State.project_dir)


def _known_jobs(project: Any, names: list[str] | None) -> list[str] | None:
    from kiban.errors import UsageError, did_you_mean

    if not names:
        return None
    for name in names:
        if name not in project.config.jobs:
            raise UsageError(f"unknown job '{name}'", did_you_mean(name, project.config.jobs)
                             or ("jobs: " + ", ".join(project.config.jobs) if project.config.jobs
                                 else "define jobs under `jobs:` in kiban.yml"))
    return list(names)


@app.command()
def scheduler(
    once: Annotated[bool, typer.Option("--once", help="Look at the schedule once, start what is due, wait for "
                                       "those runs, and exit (for cron, and tests).")] = False,
    job: JobOpt = None,
    log_format: Annotated[str, typer.Option("--log-format", metavar="text|json",
                                            help="text, or json (one object per line).")] = "text",
    as_json: Annotated[bool, typer.Option("--json", help="The same as --log-format json.")] = False,
) -> None:
    """Start jobs on their cron ticks and sensors; one scheduler per project is active, others stand by."""
    from kiban.cli.output import err_console, log_format_of
    from kiban.errors import UsageError
    from kiban.schedule.clock import RealClock
    from kiban.schedule.daemon import Scheduler
    from kiban.store import Store

    log_format = log_format_of(log_format, as_json)
    project = _project()
    only = _known_jobs(project, job)
    if not project.config.jobs:
        raise UsageError("the project has no jobs", "define jobs under `jobs:` in kiban.yml (see docs/operations.md)")
    clock = RealClock()

    def log(message: str, detail: dict[str, Any]) -> None:
        if log_format == "json":
            sys.stdout.write(json.dumps({"at": clock.now().isoformat() + "Z", "event": message, **detail},
                                        default=str) + "\n")
            sys.stdout.flush()
        else:
            extra = " ".join(f"{k}={v}" for k, v in detail.items())
            err_console.print(f"{clock.now():%Y-%m-%d %H:%M:%S}Z {message} {extra}", markup=False)

    store = Store(project.state_url)
    daemon = Scheduler(project, store, clock=clock, jobs=only, log=log)
    stop = threading.Event()

    def on_signal(_sig: int, _frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if once:
            try:
                if not daemon.step():
                    holder = daemon.leader.current()
                    log("not the leader", {"leader_pid": holder.pid if holder else None,
                                           "leader_host": holder.host if holder else None})
                daemon.wait_for_runs(stop)
            finally:
                daemon.shutdown()
        else:
            log("scheduler started", {"jobs": ",".join(daemon.schedules), "holder": daemon.leader.holder})
            daemon.serve(stop)
            log("scheduler stopped", {})
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        store.close()


@app.command()
def jobs(
    json_output: Annotated[bool, typer.Option("--json", help="As JSON.")] = False,
) -> None:
    """Jobs: their schedule, next run (project time), latest safe start for their use case, last outcome."""
    from rich.table import Table

    from kiban.cli.output import console, local_time, styled
    from kiban.schedule.clock import RealClock
    from kiban.schedule.overview import job_rows
    from kiban.store import Store

    project = _project()
    tz = project.config.timezone
    now = RealClock().now()
    store = Store(project.state_url)
    try:
        rows = job_rows(project, store, now)
    finally:
        store.close()
    if json_output:
        def iso(value: Any) -> Any:
            return value.isoformat() + "Z" if hasattr(value, "isoformat") else value

        sys.stdout.write(json.dumps([{k: iso(v) for k, v in row.items()} for row in rows], indent=2) + "\n")
        return
    if not rows:
        console.print("no jobs: define them under `jobs:` in kiban.yml (see docs/operations.md)")
        return
    table = Table(title=f"jobs ({tz})", title_justify="left")
    for column in ("job", "schedule", "next run", "for", "latest start", "last"):
        table.add_column(column)
    for row in rows:
        when = row["cron"] or ""
        if row["cron"] and row["timezone"] != tz:
            when += f" {row['timezone']}"
        if row["calendar"]:
            when += f" ({row['calendar']} business days)"
        if row["sensors"]:
            when += (" + " if row["cron"] else "") + ", ".join(row["sensors"])
        when = when or "-"
        outcome = styled(row["last_status"]) + f" {local_time(row['last_at'], tz)}" if row["last_status"] else "-"
        table.add_row(row["job"], when, local_time(row["next_run"], tz), row["for"] or "-",
                      local_time(row["latest_start"], tz), outcome)
    console.print(table)
    for row in rows:
        if row["warning"]:
            console.print(f"[yellow]warning:[/] {row['warning']}", soft_wrap=True)
