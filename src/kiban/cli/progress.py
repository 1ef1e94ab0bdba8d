"""Live display of a run in the terminal, and the JSON-lines log for cron and CI."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from kiban.cli.output import console, duration, number, styled
from kiban.run import Event

MAX_ROWS = 12


class JsonLog:
    """One JSON object per event on stdout."""

    def __call__(self, event: Event) -> None:
        sys.stdout.write(json.dumps(event.to_dict(), default=str) + "\n")
        sys.stdout.flush()


class LiveView:
    """A progress bar, the assets running now, and the ones that finished most recently."""

    def __init__(self) -> None:
        self.progress = Progress(TextColumn("[bold]run"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.description}"), console=console)
        self.task = self.progress.add_task("", total=None)
        self.running: dict[str, tuple[float, int]] = {}
        self.finished: list[tuple[str, str, Any, Any, Any]] = []
        self.counts: dict[str, int] = {}
        # rendered on Live's own refresh tick, not on every event: 500 events cost no 500 re-renders
        self.live = Live(console=console, refresh_per_second=8, transient=True, get_renderable=self._render)
        self.started = False

    def __call__(self, event: Event) -> None:
        if event.kind == "run_started":
            self.progress.update(self.task, total=event.detail.get("build", 0))
            if event.detail.get("build"):
                self.live.start()
                self.started = True
        elif event.kind == "asset_started":
            self.running[event.asset or ""] = (time.monotonic(), event.attempt or 1)
        elif event.kind == "asset_retry":
            self.running.pop(event.asset or "", None)
            self.finished.append((event.asset or "", "retrying", None, event.seconds, event.error))
        elif event.kind == "asset_finished":
            self.running.pop(event.asset or "", None)
            status = event.status or ""
            self.counts[status] = self.counts.get(status, 0) + 1
            if status != "fresh":
                self.progress.advance(self.task)
                self.finished.append((event.asset or "", status, event.rows, event.seconds, event.error))
        elif event.kind == "run_finished" and self.started:
            self.live.stop()
            return
        if self.started:
            self.progress.update(self.task, description=" ".join(
                f"{styled(s)} {n}" for s, n in sorted(self.counts.items())))

    def _render(self) -> Table:
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
