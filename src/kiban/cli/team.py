"""CLI for the team's own operations: ``kiban oncall``, ``kiban postmortem``, ``kiban review``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from kiban.cli import State, app
from kiban.cli.output import JsonOpt, console, emit_json


def _open() -> tuple[Any, Any, Any]:
    from kiban.graph import build_graph
    from kiban.project import load_project
    from kiban.store import Store

    project = load_project(State.project_dir)
    return project, build_graph(project), Store(project.state_url)


@app.command("oncall")
def oncall(days: Annotated[int, typer.Option("--days", min=1, max=366, help="How many days to list.")] = 14,
           as_json: JsonOpt = False) -> None:
    """Who is on call now, and the rotation for the next days (oncall: in kiban.yml)."""
    from zoneinfo import ZoneInfo

    from kiban.errors import UsageError
    from kiban.project import load_project
    from kiban.team.oncall import on_duty, rota

    project = load_project(State.project_dir)
    if project.config.oncall is None:
        raise UsageError("this project has no on-call rotation",
                         "add `oncall:` (people, rotation, start) to kiban.yml (see docs/team.md)")
    now = on_duty(project)
    today = datetime.now(UTC).astimezone(ZoneInfo(project.config.timezone)).date()
    days_list = rota(project, today, days)
    if as_json:
        emit_json({"now": now.name if now else None,
                   "rota": [{"date": d, "name": duty.name if duty else None, "override": bool(duty and duty.override)}
                            for d, duty in days_list]})
        return
    console.print(f"on call now: [bold]{escape(now.name) if now else 'nobody (the rotation has not started)'}[/]"
                  f" (handover {project.config.oncall.handover} {project.config.timezone})")
    table = Table(box=None, header_style="bold")
    table.add_column("date")
    table.add_column("on call")
    for d, duty in days_list:
        table.add_row(f"{d} {d.strftime('%a')}", (escape(duty.name) + (" (override)" if duty.override else ""))
                      if duty else "-")
    console.print(table)


@app.command("postmortem")
def postmortem(
    incident: Annotated[int, typer.Argument(help="The incident's number (kiban incidents).")],
    edit: Annotated[list[str] | None, typer.Option("--set", help="SECTION=TEXT, e.g. --set \"lessons=…\" "
                                                   "(summary, impact, root_cause, workaround, action_items, "
                                                   "lessons).")] = None,
    final: Annotated[bool, typer.Option("--final", help="Mark it reviewed.")] = False,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the Markdown to a file.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """An incident's postmortem: drafted from its timeline; complete it with --set (or in the console)."""
    from kiban.errors import UsageError
    from kiban.team.postmortem import get, save

    project, _, store = _open()
    try:
        if edit or final:
            edits: dict[str, str] = {}
            for item in edit or []:
                section, sep, text = item.partition("=")
                if not sep:
                    raise UsageError(f"--set {item!r}: write SECTION=TEXT")
                edits[section.strip()] = text
            found = save(project, store, incident, edits, actor=None, status="final" if final else "draft")
        else:
            found = get(project, store, incident)
    finally:
        store.close()
    if as_json:
        emit_json({"incident": found.incident_id, "status": found.status, "saved": found.saved, **found.body})
        return
    text = found.markdown()
    if output is not None:
        output.write_text(text, encoding="utf-8")
        console.print(f"wrote {output}")
        return
    console.print(escape(text), soft_wrap=True)


@app.command("review")
def review_cmd(
    week: Annotated[str | None, typer.Option("--week", help="2026-W49, a date in the week, last (default) or this.")
                    ] = None,
    send: Annotated[bool, typer.Option("--send", help="Also post it to the review_notify: channels (once per week "
                                       "and channel).")] = False,
    again: Annotated[bool, typer.Option("--again", help="With --send: post it even where it was posted.")] = False,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the Markdown to a file.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The weekly operations review: incidents and repeat causes, time to detect and repair, budgets, data
    requests and their lead times, toil, and the trend over the four weeks before."""
    from zoneinfo import ZoneInfo

    from kiban.team.review import review, week_of
    from kiban.team.review import send as post

    project, graph, store = _open()
    try:
        today = datetime.now(UTC).astimezone(ZoneInfo(project.config.timezone)).date()
        result = review(project, graph, store, week_of(week, today))
        results = post(project, store, result, again=again) if send else []
    finally:
        store.close()
    if as_json:
        emit_json(result.as_dict())
        return
    text = result.markdown()
    if output is not None:
        output.write_text(text, encoding="utf-8")
        console.print(f"wrote {output}")
    else:
        console.print(escape(text), soft_wrap=True)
    for r in results:
        console.print(f"sent to {r.channel}: {r.status}" + (f" ({r.error})" if r.error else ""))
