"""The check results kiban prints: ``kiban check``'s table and failing rows, the checks of a run (after ``kiban
run``) and of an asset (``kiban show``). Apart from the ``check`` command (``kiban.cli.checks``), so that a plain
``kiban run`` prints its checks without importing Typer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.markup import escape
from rich.table import Table

from kiban.cli.output import console, local_time, number
from kiban.status import CheckStatus, Severity

SEVERITY_STYLE = {"error": "red", "warn": "yellow"}
SAMPLE_ROWS = 5


def _status(status: str, severity: str) -> str:
    if status == CheckStatus.PASS:
        return "[green]pass[/]"
    return "[bold red]FAIL[/]" if severity == Severity.ERROR else "[yellow]warn[/]"


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
