"""Printing for the CLI: consoles, error messages, time formatting, and the ``--json`` output.

Output that is not a terminal (a pipe, a file, cron, CI) is never cut or wrapped at 80 columns: a run id or an
asset name must reach ``grep`` and the next command whole. Rich sizes a console that is not a terminal at 80
columns (or ``$COLUMNS``); :class:`FullWidthConsole` gives it as many columns as a line needs instead.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from zoneinfo import ZoneInfo

from rich.cells import cell_len, set_cell_size
from rich.console import Console, ConsoleDimensions
from rich.markup import escape
from rich.text import Text

from kiban.errors import KibanError, ProjectErrors, UsageError

UNLIMITED = 100_000  # columns of a console that is not a terminal: no line is ever that long


class FullWidthConsole(Console):
    """A Rich console that, when it does not write to a terminal, lays lines out without a width limit (tables at
    their natural width, no ellipsis, no folding in the middle of a word); on a terminal it fits the window."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fixed_width = kwargs.get("width") is not None  # Rich also takes $COLUMNS as a fixed width

    @property
    def size(self) -> ConsoleDimensions:
        if not self._fixed_width and not self.is_terminal:
            return ConsoleDimensions(UNLIMITED, self._height or 25)
        return super().size

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._width, self._height = new_size
        self._fixed_width = True

    def _render_buffer(self, buffer: Any) -> str:
        """Not on a terminal, and without colour: no padding after a line's last character (tables pad every
        cell to its column's width), so files and diffs hold only what was said."""
        text = super()._render_buffer(buffer)
        if self.is_terminal or self._color_system is not None:
            return text
        return "\n".join(line.rstrip(" ") for line in text.split("\n"))


def one_line(text: str | None, limit: int = 200) -> str:
    """An error or a note on one line, for a table cell (``kiban logs`` has it in full)."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


console = FullWidthConsole(highlight=False)
err_console = FullWidthConsole(stderr=True, highlight=False)

_JSON_HELP = "Print JSON instead (its shape: docs/cli.md#json-output)."
if TYPE_CHECKING:
    import typer

    JsonOpt = Annotated[bool, typer.Option("--json", help=_JSON_HELP)]
else:
    def __getattr__(name: str) -> Any:  # Typer loads with the commands that take --json, not with this module
        if name == "JsonOpt":
            import typer

            return Annotated[bool, typer.Option("--json", help=_JSON_HELP)]
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _plain(value: Any) -> Any:
    """JSON for what the commands print: times as ISO 8601 in UTC with ``Z``, dates as ISO dates."""
    if isinstance(value, datetime):
        aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return aware.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, date):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return str(value)


def to_json(data: Any) -> str:
    return json.dumps(data, default=_plain, ensure_ascii=False)


def emit_json(data: Any) -> None:
    """One JSON document on stdout (and nothing else there): the ``--json`` answer of a command."""
    sys.stdout.write(to_json(data) + "\n")
    sys.stdout.flush()


def utc_iso(value: datetime | None) -> str | None:
    """A stored naive-UTC time as ISO 8601 with ``Z`` (what every ``--json`` carries)."""
    return None if value is None else _plain(value)

STATUS_STYLE = {
    "success": "green", "fresh": "dim green", "failed": "bold red", "skipped": "yellow",
    "cancelled": "magenta", "running": "cyan", "retrying": "yellow", "abandoned": "red", "nothing": "green",
    "open": "bold red", "acknowledged": "yellow", "resolved": "green", "sent": "green", "suppressed": "dim",
}


def styled(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"


Cell = tuple[str, str | None]  # text (never markup) and its style


def print_rows(headers: Sequence[str], rows: Sequence[Sequence[Cell]], right: Sequence[str] = (),
               limits: dict[str, int] | None = None) -> None:
    """A table laid out like Rich's ``Table(box=None)`` (one space of padding each side), drawn as ONE styled
    text: Rich's Table measures every cell several times, ≈1 ms a row — half a second for `kiban status` on a
    500-model project. ``limits``: the most cells a column shows on a terminal (cut with …)."""
    cut = {headers.index(h): n for h, n in (limits or {}).items()} if console.is_terminal else {}
    body = [[(_cut(text, cut[i]) if i in cut else text, style) for i, (text, style) in enumerate(row)]
            for row in rows]
    widths = [cell_len(h) for h in headers]
    for row in body:
        for i, (text, _) in enumerate(row):
            n = len(text) if text.isascii() else cell_len(text)
            widths[i] = max(widths[i], n)
    aligned = [h in right for h in headers]
    out = Text()

    def line(cells: Sequence[Cell], bold: bool = False) -> None:
        for i, (text, style) in enumerate(cells):
            gap = widths[i] - (len(text) if text.isascii() else cell_len(text))
            out.append(" " + " " * gap if aligned[i] else " ")
            out.append(text, "bold" if bold else style)
            if aligned[i] or i < len(cells) - 1:  # no trailing blanks after the last column
                out.append(" " if aligned[i] else " " * gap + " ")
        out.append("\n")

    line([(h, None) for h in headers], bold=True)
    for row in body:
        line(row)
    out.rstrip()
    console.print(out, soft_wrap=True, highlight=False)


def _cut(text: str, limit: int) -> str:
    return text if cell_len(text) <= limit else set_cell_size(text, limit - 1) + "…"


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


def log_format_of(log_format: str, as_json: bool) -> str:
    """A command's ``--log-format`` (text or json), ``--json`` being the same as ``--log-format json``."""
    chosen = "json" if as_json else log_format
    if chosen not in ("text", "json"):
        raise UsageError(f"unknown log format '{chosen}'", "use text or json")
    return chosen
