"""Runs: plan a selection, execute it in parallel, publish atomically, record everything."""

from kiban.run.events import Event, EventKind
from kiban.run.runner import RunOptions, RunResult, new_run_id, run_project

__all__ = ["Event", "EventKind", "RunOptions", "RunResult", "new_run_id", "run_project"]
