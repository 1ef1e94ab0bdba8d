"""``kiban deliver`` (a mart or recipe as a file, to a folder, an e-mail or a chat) and ``kiban deliveries``
(what was delivered, when, where, how it went). Thin: the work is in ``kiban.deliveries``."""

from __future__ import annotations

from typing import Annotated

import typer

from kiban.cli import State, app
from kiban.cli.output import JsonOpt
from kiban.status import DataDeliveryStatus


@app.command()
def deliver(
    names: Annotated[list[str] | None, typer.Argument(help="Deliveries of kiban.yml (default: all of them).")] = None,
    due_only: Annotated[bool, typer.Option("--due", help="Only those with `after: usecase_met` whose use case's "
                                                          "data is ready and that were not delivered since.")] = False,
) -> None:
    """Deliver now: read the published version (PII masked), write the file, hand it over (retried), record it."""
    from kiban.cli.output import console, styled
    from kiban.deliveries.send import config_of, deliver
    from kiban.project import load_project
    from kiban.store import Store

    project = load_project(State.project_dir)
    chosen = names or sorted(project.config.deliveries)
    if due_only:
        from kiban.deliveries.due import due
        from kiban.graph import build_graph

        ready = dict(due(project, build_graph(project), Store(project.state_url)))
        for name in chosen:
            if name in ready:
                console.print(f"due: {name} ({ready[name]})")
        chosen = [n for n in chosen if n in ready]
        if not chosen:
            console.print("nothing is due")
            return
    for name in chosen:
        config_of(project, name)  # every name is right before anything is delivered
    store = Store(project.state_url)
    failed = 0
    for name in chosen:
        record = deliver(project, store, name)
        failed += record.status != DataDeliveryStatus.DELIVERED
        where = record.file or record.destination
        console.print(f"{styled(record.status)} {name}: {record.rows if record.rows is not None else '–'} rows → "
                      f"{where} ({record.attempts} attempt{'s' if record.attempts != 1 else ''})"
                      + (f"\n  {record.error}" if record.error else ""))
    if failed:
        raise typer.Exit(1)


@app.command("deliveries")
def deliveries_command(
    name: Annotated[str | None, typer.Argument(help="One delivery (default: all).")] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many to show.")] = 20,
    json_out: JsonOpt = False,
) -> None:
    """The latest deliveries: when, what, where, rows, attempts, and why one failed."""
    from kiban.cli.output import console, emit_json, local_time, styled
    from kiban.deliveries.send import history
    from kiban.project import load_project
    from kiban.store import Store

    project = load_project(State.project_dir)
    found = history(Store(project.state_url), project.name, name, limit)
    if json_out:
        emit_json([r.__dict__ for r in found])
        return
    if not found:
        console.print("no deliveries yet: declare them under `deliveries:` in kiban.yml, run `kiban deliver`")
    for r in found:
        console.print(f"{local_time(r.started_at, project.config.timezone)}  {styled(r.status)}  {r.name}"
                      f"{f' ({r.usecase})' if r.usecase else ''}  {r.rows if r.rows is not None else '–'} rows → "
                      f"{r.file or r.destination}  attempts {r.attempts}"
                      + (f"  ({r.trigger} {local_time(r.scheduled_for, project.config.timezone)})"
                         if r.scheduled_for else "")
                      + (f"  next try {local_time(r.retry_at, project.config.timezone)}" if r.retry_at else "")
                      + (f"\n  {r.error}" if r.error else ""))
