"""``kiban backfill``: every partition of a date range of incremental models, with a progress bar."""

from __future__ import annotations

import signal
import sys
from typing import Annotated, Any

import typer

from kiban.cli import State, app
from kiban.status import BackfillStatus


@app.command()
def backfill(
    selection: Annotated[list[str] | None, typer.Argument(
        help="Incremental models: NAME, tag:x, layer:mart (same syntax as run).", show_default=False,
        metavar="SELECTOR...")] = None,
    exclude: Annotated[list[str] | None, typer.Option("--exclude", "-x", metavar="SELECTOR",
                                                      help="Leave these out.")] = None,
    start: Annotated[str | None, typer.Option("--from", metavar="DATE",
                                              help="First day (YYYY-MM-DD), month (YYYY-MM) or hour.")] = None,
    end: Annotated[str | None, typer.Option("--to", metavar="DATE", help="Last day, month or hour (included).")] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=64, metavar="N",
                                             help="Partitions processed at the same time.")] = 4,
    restart: Annotated[bool, typer.Option("--restart", help="Start over instead of resuming an unfinished "
                                          "backfill of the same models and range.")] = False,
    wait: Annotated[float, typer.Option(metavar="SECONDS",
                                        help="Seconds to wait if a run holds the project.")] = 0.0,
    status: Annotated[bool, typer.Option("--status", help="Show recent backfills and their progress "
                                         "(with an id: its failed partitions).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="With --status: print JSON (docs/cli.md#json-output).")
                       ] = False,
) -> None:
    """Process every partition from --from to --to of incremental models; an interrupted backfill resumes."""
    from kiban.errors import UsageError
    from kiban.project import load_project

    if as_json and not status:
        raise UsageError("--json goes with --status", "a backfill shows its progress; "
                         "`kiban backfill --status --json` reads the outcome")
    project = load_project(State.project_dir)
    if status:
        print_backfills(project, selection[0] if selection else None, as_json)
        return
    if not start or not end:
        raise UsageError("a backfill needs --from and --to", "e.g. --from 2024-01-01 --to 2024-12-31")
    result = _run(project, selection or [], exclude or [], start, end, concurrency, restart, wait)
    if result.status == BackfillStatus.CANCELLED:
        sys.exit(130)
    if result.status != BackfillStatus.SUCCESS:
        sys.exit(1)


def _run(project: Any, selection: list[str], exclude: list[str], start: str, end: str, concurrency: int,
         restart: bool, wait: float) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from kiban import operate
    from kiban.cli.output import console, styled
    from kiban.run.backfill import BackfillOptions, PartitionOutcome

    options = BackfillOptions(select=selection, exclude=exclude, start=start, end=end, concurrency=concurrency,
                              wait=wait, restart=restart)
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[failed]}"), TimeRemainingColumn(), console=console)
    task = progress.add_task("backfill", total=None, failed="")
    failures = 0

    def on_start(backfill_id: str, total: int, done: int) -> None:
        progress.update(task, description=backfill_id, total=total, completed=done)
        if done:
            console.print(f"resuming {backfill_id}: {done} of {total} partitions were done already")
        progress.start()

    def on_partition(outcome: PartitionOutcome) -> None:
        nonlocal failures
        if outcome.status != BackfillStatus.SUCCESS:
            failures += 1
        progress.update(task, advance=1, failed=f"[red]{failures} failed[/]" if failures else "")

    def on_term(_sig: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:  # checks gate every partition's publish; the use cases are judged afterwards, as after `kiban run`
        done = operate.backfill(project, options, on_start, on_partition)
    finally:
        progress.stop()
        signal.signal(signal.SIGTERM, previous)
    result = done.result
    rate = result.processed / result.seconds if result.seconds else 0.0
    console.print(f"backfill {result.backfill_id} {styled(result.status)}: {result.processed} partitions processed"
                  f"{f', {result.done_before} done earlier' if result.done_before else ''}"
                  f", {len(result.failed)} failed in {result.seconds:.1f} s ({rate:.1f}/s)")
    for outcome in [o for o in result.outcomes if o.status != BackfillStatus.SUCCESS][:10]:
        console.print(f"  {styled(outcome.status)} {outcome.asset} {outcome.start:%Y-%m-%d %H:%M}: {outcome.error}",
                      soft_wrap=True)
    if result.status != BackfillStatus.SUCCESS:
        console.print("Fix the cause, then run the same command again: done partitions are skipped.")
    from kiban.cli.running import print_service_levels

    print_service_levels(done, quiet=True)  # judged and stored; `kiban slo` shows them
    return result


def print_backfills(project: Any, backfill_id: str | None, as_json: bool = False) -> None:
    from datetime import timedelta

    from rich.table import Table

    from kiban.cli.output import console, local_time, styled
    from kiban.errors import UsageError
    from kiban.store import Store
    from kiban.store.backfills import BackfillLedger

    store = Store(project.state_url)
    try:
        ledger = BackfillLedger(store)
        ledger.reap(project.name)
        if backfill_id:
            record = ledger.get(backfill_id)
            if record is None:
                raise UsageError(f"no backfill {backfill_id}", "kiban backfill --status lists them")
            records = [record]
        else:
            records = ledger.recent(project.name)
        if as_json:
            from kiban.cli.output import emit_json, utc_iso

            emit_json({"backfills": [{
                "backfill_id": r.id, "status": r.status, "assets": list(r.assets), "from": utc_iso(r.range_from),
                "to": utc_iso(r.range_to), "total": r.total, "counts": dict(r.counts),
                "started_at": utc_iso(r.started_at), "ended_at": utc_iso(r.ended_at),
                "failed": [{"asset": p.asset, "start": utc_iso(p.start), "status": p.status, "error": p.error}
                           for p in ledger.partitions(r.id)
                           if p.status != BackfillStatus.SUCCESS][:50] if backfill_id else []}
                for r in records]})
            return
        if not records:
            console.print("no backfills yet")
            return
        table = Table(box=None, header_style="bold")
        for column in ("backfill", "status", "models", "range", "done", "failed", "started", "ended"):
            table.add_column(column)
        for r in records:
            last = r.range_to - timedelta(seconds=1)  # the end is excluded: show the last day included
            table.add_row(r.id, styled(r.status), ", ".join(r.assets), f"{r.range_from:%Y-%m-%d}..{last:%Y-%m-%d}",
                          f"{r.counts.get('success', 0)}/{r.total}",
                          str(r.counts.get(BackfillStatus.FAILED, 0) + r.counts.get(BackfillStatus.SKIPPED, 0)),
                          local_time(r.started_at, project.config.timezone),
                          local_time(r.ended_at, project.config.timezone))
        console.print(table)
        if backfill_id:
            for p in [p for p in ledger.partitions(records[0].id) if p.status != BackfillStatus.SUCCESS][:50]:
                console.print(f"  {styled(p.status)} {p.asset} {p.start:%Y-%m-%d %H:%M}: {p.error}", soft_wrap=True)
    finally:
        store.close()
