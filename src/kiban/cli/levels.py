"""Service levels as the CLI prints them (``kiban slo``, and after ``kiban run`` or ``kiban backfill``): a light
module, so that ``kiban --help`` (which imports every command module) and a plain ``kiban run`` load nothing
more for it."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

from kiban.cli.output import console

VERDICT_STYLE = {"met": "green", "late": "yellow", "failed": "bold red", "incomplete": "red", "bad_data": "red",
                 "pending": "dim", "at_risk": "bold yellow", "not due": "dim"}


def verdict_text(value: str) -> str:
    """A service-level verdict in its colour (``at_risk`` → "at risk" in bold yellow)."""
    return f"[{VERDICT_STYLE.get(value, 'white')}]{value.replace('_', ' ')}[/]"


def print_assessment(result: Any) -> None:
    """The service levels as judged (``kiban slo``, and after ``kiban run``): verdict, budget and burn of every use
    case, and the incidents open."""
    from kiban.slo.report import rows

    table = Table(box=None, header_style="bold", title=f"service levels {result.today}", title_justify="left")
    for col in ("use case", "deadline", "verdict", "detail", "met", "budget", "burn"):
        table.add_column(col, no_wrap=col != "detail", justify="right" if col in ("met", "budget", "burn") else "left")
    for row in rows(result):
        burn = row.burn
        spent = result.budgets[row.usecase]
        if spent.fast_burn:
            burn = f"[bold red]{burn}[/]"
        left = f"[red]{row.budget_left}[/]" if spent.exhausted else row.budget_left
        table.add_row(escape(row.usecase), row.deadline, verdict_text(row.verdict), escape(row.detail),
                      row.attainment, left, burn)
    console.print(table)
    if result.budgets:
        console.print(f"[dim]times in {result.context.tz}; met: share of due days on time; budget: misses the "
                      "target still allows in its window (negative: the target is already missed); burn: how "
                      "fast misses come now against what the target allows (1.0× = on budget)[/]")
    for incident in result.incidents:
        console.print(f"  incident [bold]#{incident.id}[/] {escape(incident.usecase)} {incident.due_date}: "
                      f"{verdict_text(incident.verdict or incident.kind)} — fix: "
                      f"[bold]{escape(incident.workaround or '-')}[/]")
