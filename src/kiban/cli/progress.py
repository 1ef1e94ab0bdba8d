"""What a long command shows while it works: a live view on a terminal, plain progress lines otherwise, and the
JSON-lines log for cron and CI.

Progress goes to stderr, so stdout keeps only the answer (a summary table, or JSON lines) for pipes and files.
It starts with the first event of the command: the collection of source tables included, which on a big lake
is most of a run's first minute.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

from rich.markup import escape

from kiban.cli.output import duration, err_console, number, styled
from kiban.run import Event
from kiban.status import AttemptStatus

MAX_ROWS = 12
PLAIN_EVERY = 5.0  # seconds between two "built n of m" lines when not on a terminal
PLAIN_EACH = 50  # up to this many assets, a plain line for each one that finishes


class JsonLog:
    """One JSON object per event on stdout."""

    def __call__(self, event: Event) -> None:
        sys.stdout.write(json.dumps(event.to_dict(), default=str) + "\n")
        sys.stdout.flush()


def progress_view() -> Any:
    """The live view when stderr is a terminal; plain lines on stderr when it is not (cron, CI, a log file)."""
    return LiveView() if err_console.is_terminal else PlainProgress()


class PlainProgress:
    """Progress as plain lines on stderr: one per collected table, one per asset of a small run (a line every
    few seconds for a big one), and every failure at once — so a log shows from the first second what is
    happening, and a silent minute means a stuck step, not a hidden progress bar."""

    def __init__(self, out: TextIO | None = None, every: float = PLAIN_EVERY) -> None:
        self.out = out
        self.every = every
        self.total = 0
        self.done = 0
        self.counts: dict[str, int] = {}
        self.started = time.monotonic()
        self.last_line = 0.0

    def _line(self, text: str) -> None:
        out = self.out or sys.stderr
        out.write(text + "\n")
        out.flush()

    def _elapsed(self) -> str:
        return duration(time.monotonic() - self.started)

    def __call__(self, event: Event) -> None:
        collect = bool(event.detail.get("collect"))
        if event.kind == "collect_started":
            self._line(f"collecting {event.detail.get('tables', 0)} source table(s)")
        elif event.kind == "asset_started" and collect:
            self._line(f"  collecting {event.asset}" + (f" (attempt {event.attempt})"
                                                        if (event.attempt or 1) > 1 else ""))
        elif event.kind == "asset_retry":
            self._line(f"  retrying {event.asset} (attempt {event.attempt} failed: {_first(event.error)})")
        elif event.kind == "asset_finished" and collect:
            rows = event.detail.get("landed", event.rows)
            self._line(f"  collected {event.asset}: {event.status}"
                       + (f", {number(rows)} row(s) landed"
                          if rows is not None and event.status == AttemptStatus.SUCCESS else "")
                       + (f" in {duration(event.seconds)}" if event.seconds is not None else "")
                       + (f": {_first(event.error)}" if event.error else ""))
        elif event.kind == "run_started":
            self.total = int(event.detail.get("build", 0))
            fresh = event.detail.get("fresh", 0)
            self._line(f"run {event.run_id}: {self.total} asset(s) to build" + (f", {fresh} fresh" if fresh else ""))
            if event.detail.get("handed_to"):
                self._line(f"  run {event.detail['handed_to']} writes the warehouse file (DuckDB: one writer "
                           "process): it builds them next, ahead of its own queue")
            self.started = time.monotonic()
        elif event.kind == "asset_finished" and event.status != AttemptStatus.FRESH:
            self.done += 1
            status = event.status or ""
            self.counts[status] = self.counts.get(status, 0) + 1
            if status in (AttemptStatus.FAILED, AttemptStatus.CANCELLED) \
                    or (status == AttemptStatus.SKIPPED and self.total <= PLAIN_EACH):
                self._line(f"  {status} {event.asset}: {_first(event.error)}")
            elif self.total <= PLAIN_EACH:
                self._line(f"  {status} {event.asset}" + (f" in {duration(event.seconds)}"
                                                          if event.seconds is not None else "")
                           + (f", {number(event.rows)} row(s)" if event.rows is not None else ""))
            elif time.monotonic() - self.last_line >= self.every or self.done == self.total:
                self.last_line = time.monotonic()
                self._line(f"  built {self.done} of {self.total} in {self._elapsed()}: "
                           + ", ".join(f"{s} {n}" for s, n in sorted(self.counts.items())))


def _first(text: str | None) -> str:
    """An error's first line, for a progress line (the summary and `kiban logs` have it in full)."""
    return (text or "").strip().splitlines()[0][:200] if (text or "").strip() else ""


class LiveView:
    """On a terminal (stderr): the collection's tables, then a progress bar, the assets running now, and the ones
    that finished most recently."""

    def __init__(self) -> None:
        # (Rich's live display, progress bar and tables: ≈ 15 CPU-ms of imports, only for a terminal)
        from rich.live import Live
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("[bold]{task.fields[stage]}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.description}"), console=err_console)
        self.task = self.progress.add_task("", total=None, stage="run")
        self.running: dict[str, tuple[float, int]] = {}
        self.finished: list[tuple[str, str, Any, Any, Any]] = []
        self.counts: dict[str, int] = {}
        # rendered on Live's own refresh tick, not on every event: 500 events cost no 500 re-renders
        self.live = Live(console=err_console, refresh_per_second=8, transient=True, get_renderable=self._render)
        self.started = False

    def _start(self) -> None:
        if not self.started:
            self.live.start()
            self.started = True

    def __call__(self, event: Event) -> None:
        collect = bool(event.detail.get("collect"))
        if event.kind == "collect_started":
            self.progress.update(self.task, total=event.detail.get("tables", 0), completed=0, stage="collect")
            self._start()
        elif event.kind == "run_started":
            self.progress.update(self.task, total=event.detail.get("build", 0), completed=0, stage="run")
            self.counts.clear()
            if event.detail.get("build"):
                self._start()
        elif event.kind == "asset_started":
            self.running[event.asset or ""] = (time.monotonic(), event.attempt or 1)
        elif event.kind == "asset_retry":
            self.running.pop(event.asset or "", None)
            self.finished.append((event.asset or "", "retrying", None, event.seconds, event.error))
        elif event.kind == "asset_finished":
            self.running.pop(event.asset or "", None)
            status = event.status or ""
            self.counts[status] = self.counts.get(status, 0) + 1
            if status != AttemptStatus.FRESH:
                self.progress.advance(self.task)
                rows = event.detail.get("landed", event.rows) if collect else event.rows
                self.finished.append((event.asset or "", status, rows, event.seconds, event.error))
        elif event.kind == "run_finished":
            if self.started:
                self.live.stop()
                self.started = False
            return
        if self.started:
            self.progress.update(self.task, description=" ".join(
                f"{styled(s)} {n}" for s, n in sorted(self.counts.items())))

    def _render(self) -> Any:
        from rich.table import Table

        grid = Table.grid()
        grid.add_row(self.progress)
        table = Table(box=None, show_header=False, pad_edge=False)
        table.add_column("asset")
        table.add_column("state")
        table.add_column("time", justify="right")
        table.add_column("rows", justify="right")
        now = time.monotonic()
        for asset, status, rows, seconds, _ in self.finished[-MAX_ROWS:]:
            table.add_row(escape(asset), styled(status), duration(seconds), number(rows))
        for asset, (since, attempt) in list(self.running.items())[:MAX_ROWS]:
            label = "running" if attempt == 1 else f"running (attempt {attempt})"
            table.add_row(escape(asset), f"[cyan]{label}[/]", duration(now - since), "")
        grid.add_row(table)
        return grid
