"""``kiban worker``: build the assets that ``kiban run --workers`` puts into the project's run queue."""

from __future__ import annotations

import signal
from typing import Annotated, Any

import typer

from kiban.cli import State, app
from kiban.status import AttemptStatus


@app.command()
def worker(
    idle_exit: Annotated[float | None, typer.Option("--idle-exit", metavar="SECONDS", help="Stop after this many "
                                                    "seconds without work (default: run until stopped).")] = None,
    lease: Annotated[float, typer.Option(metavar="SECONDS", help="Seconds without a heartbeat after which another "
                                         "worker takes this worker's asset over.")] = 15.0,
    name: Annotated[str | None, typer.Option(help="This worker's id (default: host-pid-random).")] = None,
    log_format: Annotated[str, typer.Option("--log-format", metavar="text|json",
                                            help="text (one line per asset) or json (one event per line).")] = "text",
    as_json: Annotated[bool, typer.Option("--json", help="The same as --log-format json.")] = False,
) -> None:
    """Claim ready assets from the run queue (PostgreSQL state store), build them, record them. Start many."""
    from kiban.cli.output import console, log_format_of
    from kiban.cli.progress import JsonLog
    from kiban.errors import UsageError
    from kiban.project import load_project
    from kiban.run import Event
    from kiban.workers import Worker, WorkerOptions
    from kiban.workers.worker import new_worker_id

    log_format = log_format_of(log_format, as_json)
    if lease <= 1:
        raise UsageError(f"--lease {lease:g} is too short: a worker renews its heartbeat every couple of seconds",
                         "use 5 seconds or more")
    project = load_project(State.project_dir)
    options = WorkerOptions(worker_id=name or new_worker_id(), lease=lease, idle_exit=idle_exit)

    def line(event: Event) -> None:
        if event.kind == "asset_finished":
            style = "green" if event.status == AttemptStatus.SUCCESS else "red"
            rows = f" {event.rows} rows" if event.rows is not None else ""
            error = f" — {event.error}" if event.error else ""
            console.print(f"[{style}]{event.status}[/] {event.asset}{rows}{error}", highlight=False)
        elif event.kind == "asset_started":
            console.print(f"building {event.asset} (run {event.run_id})", highlight=False)
        elif event.kind == "worker_refused":
            console.print(f"[yellow]refusing run {event.run_id}[/] — {event.error}", highlight=False)

    from kiban.checks.gate import gate_for

    gate = gate_for(project)  # the same checks as `kiban run`: a blocking failure keeps the old version
    listener: Any = JsonLog() if log_format == "json" else line
    runner = Worker(project, options, [listener], audit=gate)

    def on_signal(_sig: int, _frame: Any) -> None:
        runner.stop()

    previous = signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if log_format == "text":
        console.print(f"worker {options.worker_id} serving {project.name}", highlight=False)
    try:
        built = runner.serve()
    finally:
        signal.signal(signal.SIGTERM, previous)
        if gate is not None:
            gate.close()
    if log_format == "text":
        console.print(f"worker {options.worker_id} stopped after {built} asset{'s' if built != 1 else ''}",
                      highlight=False)
