"""CLI for data-quality checks: ``kiban check``, and the check sections of ``kiban run`` and ``kiban show``."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.markup import escape

from kiban.cli import State, app
from kiban.cli.check_report import SAMPLE_ROWS, print_results
from kiban.cli.commands import ExcludeOpt, SelectArg
from kiban.cli.output import JsonOpt, console, emit_json
from kiban.status import CheckStatus, Severity


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
