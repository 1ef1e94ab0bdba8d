"""Printing for the CLI: consoles, error messages, time formatting."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.markup import escape

from kiban.errors import KibanError, ProjectErrors

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

STATUS_STYLE = {
    "success": "green", "fresh": "dim green", "failed": "bold red", "skipped": "yellow",
    "cancelled": "magenta", "running": "cyan", "retrying": "yellow", "abandoned": "red", "nothing": "green",
    "open": "bold red", "acknowledged": "yellow", "resolved": "green", "sent": "green", "suppressed": "dim",
}


def styled(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"


def print_error(exc: KibanError) -> None:
    errors = exc.errors if isinstance(exc, ProjectErrors) else [exc]
    for error in errors:
        err_console.print(f"[bold red]error:[/] {escape(str(error))}", soft_wrap=True)


def local_time(value: datetime | None, timezone: str) -> str:
    """A stored naive-UTC time shown in the project's timezone."""
    if value is None:
        return "-"
    return value.replace(tzinfo=UTC).astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def number(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def size(value: int | None) -> str:
    if value is None:
        return "-"
    amount = float(value)
    for unit in ("B", "KB", "MB", "GB"):
        if amount < 1024:
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} TB"
