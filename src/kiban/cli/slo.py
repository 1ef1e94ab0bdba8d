"""CLI for service levels, incidents, impact and the morning report."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from kiban.cli import State, app
from kiban.cli.levels import print_assessment, verdict_text
from kiban.cli.output import JsonOpt, console, duration, emit_json, styled, utc_iso
from kiban.status import IncidentStatus

slo_app = typer.Typer(help="Service levels: is each use case's data there, correct, on time?",
                      invoke_without_command=True, no_args_is_help=False)
incidents_app = typer.Typer(help="Missed or endangered service levels, with impact, root cause and workaround.",
                            invoke_without_command=True)
app.add_typer(slo_app, name="slo")
app.add_typer(incidents_app, name="incidents")


def _open() -> tuple[Any, Any, Any]:
    from kiban.graph import build_graph
    from kiban.project import load_project
    from kiban.store import Store

    project = load_project(State.project_dir)
    if not project.usecases:
        from kiban.errors import UsageError

        raise UsageError("this project has no use cases yet",
                         "describe who needs which data by when in usecases/NAME.yml (see docs/service-levels.md)")
    return project, build_graph(project), Store(project.state_url)


def _incident_json(i: Any) -> dict[str, Any]:
    return {"id": i.id, "usecase": i.usecase, "due_date": i.due_date, "status": i.status, "kind": i.kind,
            "verdict": i.verdict, "opened_at": utc_iso(i.opened_at), "updated_at": utc_iso(i.updated_at),
            "resolved_at": utc_iso(i.resolved_at), "root_cause": i.root_cause, "impact": i.impact,
            "workaround": i.workaround, "note": i.note, "resolution": i.resolution}


def assessment_json(result: Any) -> dict[str, Any]:
    """``kiban slo --json`` (and ``slo check``, ``report``): today's verdict and budget of every use case."""
    usecases = []
    for name in sorted(result.context.project.usecases):
        verdict = result.current.get(name)
        spent = result.budgets[name]
        usecases.append({
            "usecase": name, "due_date": verdict.due_date if verdict else None,
            "deadline": utc_iso(verdict.deadline) if verdict else None,
            "verdict": verdict.verdict if verdict else "not_due",
            "ready_at": utc_iso(verdict.satisfied_at) if verdict else None,
            "lateness_s": verdict.lateness_s if verdict else None,
            "failures": list(verdict.evidence.get("failures") or []) if verdict else [],
            "attainment": spent.attainment, "target": spent.target, "due_days": spent.due, "missed": spent.missed,
            "budget_allowed": spent.allowed, "budget_left": spent.left, "burn_rate": spent.burn_rate})
    return {"today": result.today, "timezone": str(result.context.tz), "usecases": usecases,
            "incidents": [_incident_json(i) for i in result.incidents]}


@slo_app.callback()
def slo(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Today's verdict, deadline and error budget of every use case (reads only)."""
    if ctx.invoked_subcommand is not None:
        return
    from kiban.slo.service import assess

    _judge_and_show(assess, as_json)


@slo_app.command("check")
def slo_check(notify: Annotated[bool, typer.Option("--notify/--no-notify", help="Send notifications.")] = True,
              as_json: JsonOpt = False) -> None:
    """Judge, store verdicts, open or close incidents and notify — run it from cron every few minutes."""
    from kiban.slo.service import check

    _judge_and_show(lambda project, graph, store: check(project, graph, store, notify=notify), as_json)


def _judge_and_show(judge: Callable[[Any, Any, Any], Any], as_json: bool) -> None:
    """``judge(project, graph, store)`` (assess, or check and act) over the project's store; its assessment shown."""
    project, graph, store = _open()
    try:
        result = judge(project, graph, store)
    finally:
        store.close()
    if as_json:
        emit_json(assessment_json(result))
    else:
        print_assessment(result)


@slo_app.command("deadlines")
def slo_deadlines(as_json: JsonOpt = False) -> None:
    """Upstream deadlines: the latest time each asset may finish for every use case to stay on time."""
    from kiban.slo.service import assess

    project, graph, store = _open()
    try:
        result = assess(project, graph, store)
    finally:
        store.close()
    tz = result.context.tz
    if as_json:
        emit_json({"timezone": str(tz), "deadlines": [
            {"asset": key, "finish_by": utc_iso(bound.latest_finish), "usecase": bound.usecase,
             "due_date": bound.due_date, "p50_s": result.p50.get(key), "p90_s": result.p90.get(key)}
            for key in graph.order
            if (bound := result.safe_finish.get(key)) is not None and graph.assets[key].layer != "lake"]})
        return
    table = Table(box=None, header_style="bold", title=f"times in {tz}", title_justify="left")
    for col in ("asset", "finish by", "for use case", "due", "p50", "p90"):
        table.add_column(col, no_wrap=True)
    for key in graph.order:
        bound = result.safe_finish.get(key)
        if bound is None or graph.assets[key].layer == "lake":
            continue
        when = bound.latest_finish.replace(tzinfo=UTC).astimezone(tz).strftime("%m-%d %H:%M:%S")
        table.add_row(escape(key), when, escape(bound.usecase), str(bound.due_date),
                      duration(result.p50[key]), duration(result.p90[key]))
    console.print(table)


@slo_app.command("history")
def slo_history(usecase: Annotated[str, typer.Argument(help="A use case name.")],
                days: Annotated[int, typer.Option(min=1, max=366, help="How many days back.")] = 28,
                as_json: JsonOpt = False) -> None:
    """One use case's verdicts day by day, with its attainment."""
    from kiban.errors import SelectionError, did_you_mean
    from kiban.slo.service import assess

    project, graph, store = _open()
    if usecase not in project.usecases:
        store.close()
        raise SelectionError(f"no use case named '{usecase}'", did_you_mean(usecase, project.usecases))
    try:
        result = assess(project, graph, store, days=days)
    finally:
        store.close()
    start = result.today - timedelta(days=days - 1)
    mine = [v for v in result.verdicts if v.usecase == usecase and v.due_date >= start]
    if as_json:
        spent = result.budgets[usecase]
        emit_json({"usecase": usecase, "from": start, "to": result.today,
                   "days": [{"due_date": v.due_date, "deadline": utc_iso(v.deadline), "verdict": v.verdict,
                             "ready_at": utc_iso(v.satisfied_at), "lateness_s": v.lateness_s} for v in mine],
                   "attainment": spent.attainment, "target": spent.target, "budget_allowed": spent.allowed,
                   "budget_left": spent.left})
        return
    if not mine:
        upcoming = result.upcoming.get(usecase)
        console.print(f"[bold]{escape(usecase)}[/] has not been judged yet"
                      + (f"; its first due day is {upcoming[0]}" if upcoming else ""))
        return
    strip = "".join({"met": "[green]█[/]", "late": "[yellow]█[/]", "pending": "[dim]·[/]",
                     "at_risk": "[yellow]▒[/]"}.get(v.verdict, "[red]█[/]") for v in mine)
    console.print(f"[bold]{escape(usecase)}[/] {escape(project.usecases[usecase].config.description)}")
    console.print(f"{start} {strip} {result.today}")
    table = Table(box=None, header_style="bold")
    for col in ("day", "deadline", "verdict", "ready", "late by"):
        table.add_column(col, no_wrap=True)
    for v in reversed(mine):
        ready = v.satisfied_at.replace(tzinfo=UTC).astimezone(result.context.tz).strftime("%m-%d %H:%M") \
            if v.satisfied_at else "-"
        table.add_row(str(v.due_date), v.deadline.replace(tzinfo=UTC).astimezone(result.context.tz).strftime("%H:%M"),
                      verdict_text(v.verdict), ready, duration(v.lateness_s) if v.lateness_s else "")
    console.print(table)
    spent = result.budgets[usecase]
    if spent.attainment is not None:
        console.print(f"attainment {spent.attainment:.1%} over {spent.due} due days (target "
                      f"{spent.target:.0%}); budget left {spent.left} of {spent.allowed} misses")


@app.command()
def impact(asset: Annotated[str, typer.Argument(help="An asset, e.g. warehouse.orders.")],
           as_json: JsonOpt = False) -> None:
    """Blast radius: every use case, consumer and downstream asset a broken asset would hurt."""
    from kiban.errors import SelectionError, did_you_mean
    from kiban.graph import build_graph
    from kiban.project import load_project
    from kiban.slo.impact import blast_radius

    project = load_project(State.project_dir)
    graph = build_graph(project)
    matches = [k for k, a in graph.assets.items() if asset in (k, a.name)]
    if len(matches) != 1:
        raise SelectionError(f"no single asset named '{asset}'", did_you_mean(asset, graph.assets))
    found = blast_radius(project, graph, matches[0])
    if as_json:
        usecases = []
        for name in found.usecases:
            cfg = project.usecases[name].config
            usecases.append({"usecase": name, "by": str(cfg.need.by),
                             "on": [cfg.need.on] if isinstance(cfg.need.on, str) else list(cfg.need.on),
                             "owner": cfg.owner, "consumers": [{"name": c.name, "team": c.team,
                                                                "contact": list(c.contact)} for c in cfg.consumers]})
        emit_json({"asset": found.asset, "downstream": list(found.downstream), "usecases": usecases})
        return
    console.print(f"[bold]{found.asset}[/] feeds {len(found.downstream)} asset(s) and "
                  f"{len(found.usecases)} use case(s)")
    for name in found.usecases:
        usecase = project.usecases[name]
        need = usecase.config.need
        days = need.on if isinstance(need.on, str) else ", ".join(need.on)
        console.print(f"  [bold]{escape(name)}[/] (by {need.by} on {escape(days)}, owner "
                      f"{escape(usecase.config.owner or '-')})")
        for who in usecase.config.consumers:
            console.print(f"    {escape(who.name)}" + (f" ({escape(who.team)})" if who.team else "")
                          + (f" — {escape(', '.join(who.contact))}" if who.contact else ""))
    if found.downstream:
        console.print("downstream: " + ", ".join(found.downstream))


def _require(log: Any, incident_id: int) -> Any:
    """The incident, or a usage error (exit 2, like an unknown run id) that says how to list them."""
    from kiban.errors import UsageError

    found = log.get(incident_id)
    if found is None:
        raise UsageError(f"no incident #{incident_id}", "list them with `kiban incidents --all`")
    return found


def _incident_log() -> Any:
    from kiban.incidents import IncidentLog
    from kiban.project import load_project
    from kiban.store import Store

    project = load_project(State.project_dir)
    store = Store(project.state_url)
    return project, store, IncidentLog(store, project.name)


@incidents_app.callback()
def incidents(ctx: typer.Context,
              all_: Annotated[bool, typer.Option("--all", help="Include resolved incidents.")] = False,
              as_json: JsonOpt = False) -> None:
    """Open incidents, newest first (``--all`` adds resolved ones)."""
    if ctx.invoked_subcommand is not None:
        return
    _project, store, log = _incident_log()
    try:
        found = log.recent(include_resolved=all_)
    finally:
        store.close()
    if as_json:
        emit_json({"incidents": [_incident_json(i) for i in found]})
        return
    if not found:
        console.print("[green]no open incidents[/]" if not all_ else "no incidents")
        return
    table = Table(box=None, header_style="bold")
    for col in ("#", "use case", "day", "status", "verdict", "root cause", "workaround"):
        table.add_column(col, no_wrap=col not in ("root cause", "workaround"), min_width=len(col))
    for i in found:
        cause = f"{i.root_cause.get('asset', '')} {i.root_cause.get('status', '')}".strip() or "-"
        table.add_row(str(i.id), escape(i.usecase), str(i.due_date), styled(i.status),
                      verdict_text(i.verdict or "-"), escape(cause), escape(i.workaround or "-"))
    console.print(table)


@incidents_app.command("show")
def incident_show(incident_id: Annotated[int, typer.Argument(help="Incident number.")],
                  as_json: JsonOpt = False) -> None:
    """One incident: timeline, impact, root cause and the workaround command."""
    from kiban.cli.output import local_time

    project, store, log = _incident_log()
    try:
        incident = _require(log, incident_id)
        events = log.events(incident_id)
    finally:
        store.close()
    if as_json:
        emit_json({"incident": _incident_json(incident),
                   "events": [{"at": utc_iso(e.at), "kind": e.kind, "message": e.message, "actor": e.actor}
                              for e in events]})
        return
    tz = project.config.timezone
    console.print(f"[bold]incident #{incident.id}[/] {escape(incident.usecase)} {incident.due_date} "
                  f"{styled(incident.status)} {verdict_text(incident.verdict or incident.kind)}")
    cause = incident.root_cause
    if cause:
        said = str(cause.get("reason") or cause.get("error") or "")
        if said.startswith(str(cause.get("asset"))):  # the reason names the asset itself: say it once
            console.print(f"root cause ({escape(str(cause.get('kind') or cause.get('status')))}): "
                          f"{escape(said[:400])}")
        else:
            console.print(f"root cause: [bold]{escape(str(cause.get('asset')))}[/] {escape(str(cause.get('status')))}"
                          + (f": {escape(said[:400])}" if said else ""))
    consumers = incident.impact.get("consumers", [])
    if consumers:
        console.print("affects: " + ", ".join(escape(c["name"]) for c in consumers))
    others = incident.impact.get("other_usecases", [])
    if others:
        console.print("the same cause also hurts: " + ", ".join(others))
    if incident.workaround:
        console.print(f"workaround: [bold]{escape(incident.workaround)}[/]")
    table = Table(box=None, header_style="bold", title="timeline", title_justify="left")
    for col in ("when", "what", "message", "by"):
        table.add_column(col)
    for event in events:
        table.add_row(local_time(event.at, tz), event.kind, escape(event.message), escape(event.actor or ""))
    console.print(table)


@incidents_app.command("ack")
def incident_ack(incident_id: Annotated[int, typer.Argument(help="Incident number.")],
                 note: Annotated[str | None, typer.Option(help="What you are doing about it.")] = None) -> None:
    """Acknowledge: someone is on it."""
    import getpass

    _, store, log = _incident_log()
    try:
        _require(log, incident_id)
        incident = log.acknowledge(incident_id, actor=getpass.getuser(), note=note)
    finally:
        store.close()
    console.print(f"incident #{incident.id} {styled(incident.status)}")


@incidents_app.command("resolve")
def incident_resolve(incident_id: Annotated[int, typer.Argument(help="Incident number.")],
                     note: Annotated[str, typer.Option(help="What was done (kept on the timeline).")]) -> None:
    """Resolve with a note saying what was done."""
    import getpass

    _, store, log = _incident_log()
    try:
        if _require(log, incident_id).status == IncidentStatus.RESOLVED:
            from kiban.errors import UsageError

            raise UsageError(f"incident #{incident_id} is already resolved")
        incident = log.resolve(incident_id, note, actor=getpass.getuser())
    finally:
        store.close()
    console.print(f"incident #{incident.id} {styled(incident.status)}")


@app.command()
def report(
    format: Annotated[str, typer.Option("--format", "-f", metavar="text|markdown|html",
                                        help="Terminal text, Markdown, an HTML page, or json.")] = "text",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file.")] = None,
    send: Annotated[list[str] | None, typer.Option("--send", metavar="CHANNEL",
                                                   help="Also send it to these channels.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The same as --format json.")] = False,
) -> None:
    """The morning report: today's use cases, misses with root cause and workaround, budgets, growing builds."""
    from kiban.errors import UsageError
    from kiban.slo.report import markdown, plain, to_html
    from kiban.slo.service import check

    if as_json:
        format = "json"
    if format not in ("text", "markdown", "html", "json"):
        raise UsageError(f"unknown format '{format}'", "use text, markdown, html or json")
    project, graph, store = _open()
    try:
        result = check(project, graph, store, notify=False)
        title = f"{project.name}: data service levels"
        text = to_html(result, title) if format == "html" else markdown(result, title)
        if format == "json":
            from kiban.cli.output import to_json
            from kiban.slo.report import misses

            text = to_json({**assessment_json(result), "misses": misses(result)}) + "\n"
        if output:
            output.write_text(text, encoding="utf-8")
            console.print(f"wrote {output}")
        elif format == "json":
            import sys

            sys.stdout.write(text)
        elif format == "text":
            print_assessment(result)
            from kiban.slo.report import misses

            for miss in misses(result):
                console.print(f"  {miss['incident'] or '-'} [red]{miss['verdict']}[/] {escape(miss['usecase'])} "
                              f"{miss['due']} {miss['late']}: {escape(miss['cause'])}", soft_wrap=True)
                if miss["workaround"] != "-":
                    console.print(f"      fix: [bold]{escape(miss['workaround'])}[/]", soft_wrap=True)
        else:
            import sys

            sys.stdout.write(text)  # as is: a terminal must not re-wrap Markdown tables
        if send:
            from kiban.notify import Message, Notifier

            delivered = Notifier.of(project, store).send(list(send), Message(
                subject=title + f" {result.today}", text=plain(result, title), severity="info",
                dedupe_key=f"report:{project.name}:{result.today}"))
            for item in delivered:
                console.print(f"  {item.channel}: {styled(item.status)} {escape(item.error or '')}")
    finally:
        store.close()

