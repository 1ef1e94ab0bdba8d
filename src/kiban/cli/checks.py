"""CLI for data-quality checks: ``kiban check``, and the check sections of ``kiban run`` and ``kiban show``."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer
from rich.markup import escape
from rich.table import Table

from kiban.cli import State, app
from kiban.cli.commands import ExcludeOpt, SelectArg
from kiban.cli.output import JsonOpt, console, emit_json, local_time, number
from kiban.status import CheckStatus, Severity

SEVERITY_STYLE = {"error": "red", "warn": "yellow"}
SAMPLE_ROWS = 5


def _status(status: str, severity: str) -> str:
    if status == CheckStatus.PASS:
        return "[green]pass[/]"
    return "[bold red]FAIL[/]" if severity == Severity.ERROR else "[yellow]warn[/]"


@app.command("check")
def check(
    selection: SelectArg = None,
    exclude: ExcludeOpt = None,
    samples: Annotated[bool, typer.Option("--samples/--no-samples", help="Print failing rows under the table.")
                       ] = True,
    now: Annotated[str | None, typer.Option(metavar="TIME", help="Judge freshness and volume as of this time "
                                            "(ISO 8601; without an offset, in the project's timezone).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the checks of the selected assets on what is published now (and on lake tables); builds nothing.

    Exits 1 when a check of severity error fails.
    """
    from kiban.checks.on_demand import check_published
    from kiban.project import load_project

    project = load_project(State.project_dir)
    report = check_published(project, selection or [], exclude or [], now=_moment(now, project.config.timezone))
    if as_json:
        emit_json({"run_id": report.run_id, "ok": report.ok, "not_built": list(report.not_built),
                   "results": [{"check": r.name, "asset": r.asset, "severity": r.severity, "status": r.status,
                                "failures": r.failures, "detail": r.detail,
                                "samples": list(r.samples or [])[:SAMPLE_ROWS] if r.status == CheckStatus.FAIL else []}
                               for r in report.results]})
        if not report.ok:
            sys.exit(1)
        return
    if not report.results and not report.not_built:
        console.print("no checks in the selection: declare them in the sidecars (see docs/checks.md)")
        return
    print_results(report.results, samples=samples)
    for key in report.not_built:
        console.print(f"  [dim]not checked[/] {escape(key)}: nothing published yet (kiban run builds it)")
    failed = [r for r in report.results if r.status == CheckStatus.FAIL]
    blocking = [r for r in failed if r.severity == Severity.ERROR]
    summary = f"{len(report.results)} checks: {len(report.results) - len(failed)} passed"
    if failed:
        summary += f", [bold red]{len(blocking)} failed[/]" if blocking else ""
        summary += f", [yellow]{len(failed) - len(blocking)} warned[/]" if len(failed) > len(blocking) else ""
    console.print(f"{summary}  (recorded as {report.run_id})")
    if not report.ok:
        sys.exit(1)


def _moment(text: str | None, timezone: str) -> datetime | None:
    if text is None:
        return None
    from kiban.errors import UsageError

    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--now '{text}' is not a time", "write it as 2026-11-30T09:00 or "
                         "2026-11-30T00:00:00+00:00") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=ZoneInfo(timezone))


def print_results(results: Sequence[Any], samples: bool = True, title: str | None = None,
                  asset_column: bool = True) -> None:
    """A table of check results (CheckResult or StoredResult): check, asset, severity, status, failing rows."""
    table = Table(box=None, header_style="bold", title=title, title_justify="left")
    columns = ("check", "asset", "severity", "status", "failing rows", "detail")
    single = not asset_column
    for col in columns:
        if single and col == "asset":
            continue
        table.add_column(col, justify="right" if col == "failing rows" else "left", overflow="fold",
                         no_wrap=col in ("severity", "status", "failing rows"),
                         ratio=3 if col == "detail" else (1 if col in ("check", "asset", "by") else None))
    for r in results:
        cells = [escape(r.name), escape(r.asset), f"[{SEVERITY_STYLE.get(r.severity, 'white')}]{r.severity}[/]",
                 _status(r.status, r.severity), number(r.failures), escape(r.detail)]
        table.add_row(*(cells[:1] + cells[2:] if single else cells))
    console.print(table)
    if samples:
        for r in results:
            if r.status == CheckStatus.FAIL and r.samples:
                print_samples(r)


def print_samples(result: Any) -> None:
    rows = result.samples[:SAMPLE_ROWS]
    console.print(f"[bold]failing rows of {escape(result.asset)} {escape(result.name)}[/] "
                  f"({len(rows)} of {number(result.failures)})")
    table = Table(box=None, header_style="bold dim")
    columns = list(rows[0]) if rows else []
    for col in columns:
        table.add_column(escape(col), no_wrap=True, overflow="ellipsis",
                         max_width=40 if console.is_terminal else None)  # a pipe gets the values whole
    for row in rows:
        table.add_row(*(escape("NULL" if row.get(c) is None else str(row.get(c))) for c in columns))
    console.print(table)


def print_run_checks(project: Any, run_id: str) -> None:
    """After ``kiban run``: the checks that warned or blocked in this run (passing ones stay quiet)."""
    from kiban.checks.ledger import CheckLedger
    from kiban.store import Store

    store = Store(project.state_url)
    try:
        if store.lite is not None:  # a SQLite store: read without SQLAlchemy
            with store.lite_locked() as conn:
                results = CheckLedger(conn).of_run(run_id)
        else:
            from kiban.checks.history import of_run

            results = of_run(store, run_id)
    finally:
        store.close()
    failed = [r for r in results if r.status == CheckStatus.FAIL]
    if failed:
        print_results(failed, samples=False, title=f"checks: {len(results) - len(failed)} passed, "
                                                    f"{len(failed)} did not")
    elif results:
        console.print(f"checks: all {len(results)} passed")


def print_asset_checks(project: Any, key: str, evaluations: int = 6) -> None:
    """For ``kiban show``: the latest evaluation of the asset's checks in full (with samples of what failed),
    and a line for each earlier one."""
    from kiban.checks.history import recent
    from kiban.store import Store

    store = Store(project.state_url)
    try:
        results = recent(store, project.name, key, limit=500)
    finally:
        store.close()
    if not results:
        if project.assets[key].config.has_checks:
            console.print("checks: none has run yet (kiban run, or kiban check)")
        return
    groups: dict[Any, list[Any]] = {}
    for r in results:  # newest first; one evaluation = one checked_at
        groups.setdefault(r.checked_at, []).append(r)
    tz = project.config.timezone
    (at, latest), *earlier = list(groups.items())[:evaluations]
    print_results(latest, samples=False, title=f"checks at {local_time(at, tz)} ({_by(latest[0].run_id)})",
                  asset_column=False)
    for when, group in earlier:
        failed = [r for r in group if r.status == CheckStatus.FAIL]
        summary = f"{len(group) - len(failed)} passed" + (
            ", " + ", ".join(f"{_status(r.status, r.severity)} {escape(r.name)} ({number(r.failures)})"
                             for r in failed) if failed else "")
        console.print(f"  earlier {local_time(when, tz)} ({_by(group[0].run_id)}): {summary}")
    for r in latest:
        if r.status == CheckStatus.FAIL and r.samples:
            print_samples(r)


def _by(run_id: str | None) -> str:
    if not run_id:
        return "recorded outside a run"
    return f"kiban check {run_id}" if run_id.startswith("check-") else f"run {run_id}"
