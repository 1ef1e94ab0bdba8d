"""Tables the CLI prints: run summaries, status, run history, one asset."""

from __future__ import annotations

from rich.markup import escape
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table

from kiban.cli.output import console, duration, local_time, number, size, styled
from kiban.errors import SelectionError, UsageError, did_you_mean
from kiban.graph import Graph
from kiban.project import Project
from kiban.run import RunResult
from kiban.store import Store, utcnow


def print_run_summary(result: RunResult, project: Project) -> None:
    plan = result.plan
    counts: dict[str, int] = {}
    for outcome in result.outcomes.values():
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    if plan.fresh:
        counts["fresh"] = len(plan.fresh)
    built = [o for o in result.outcomes.values() if o.status == "success"]
    if built:
        table = Table(title=None, box=None, header_style="bold")
        for col, justify in (("asset", "left"), ("status", "left"), ("time", "right"), ("rows", "right")):
            table.add_column(col, justify=justify)  # type: ignore[arg-type]
        for outcome in sorted(built, key=lambda o: plan.order.index(o.asset))[-30:]:
            secs = (outcome.ended_at - outcome.started_at).total_seconds() \
                if outcome.started_at and outcome.ended_at else None
            table.add_row(escape(outcome.asset), styled(outcome.status), duration(secs), number(outcome.rows))
        if len(built) > 30:
            console.print(f"[dim]… {len(built) - 30} more built assets (kiban runs {result.run_id})[/]")
        console.print(table)
    for outcome in result.outcomes.values():
        if outcome.status == "failed":
            console.print(Panel(escape(outcome.error or ""), title=f"[bold red]{outcome.asset} failed[/]",
                                title_align="left", border_style="red", expand=False))
    skipped = [o for o in result.outcomes.values() if o.status == "skipped"]
    for outcome in skipped[:20]:
        console.print(f"  [yellow]skipped[/] {escape(outcome.asset)}: {escape(outcome.error or '')}")
    summary = ", ".join(f"{styled(s)} {n}" for s, n in sorted(counts.items())) or "nothing selected"
    elapsed = (result.ended_at - result.started_at).total_seconds() \
        if result.ended_at and result.started_at else None
    verdict = {"success": "[green]done[/]", "nothing": "[green]up to date[/]", "failed": "[bold red]failed[/]",
               "cancelled": "[magenta]cancelled[/]"}[result.status]
    console.print(f"run {result.run_id} {verdict} in {duration(elapsed)}: {summary}")
    if result.status == "failed":
        console.print("  fix the cause, then [bold]kiban run --resume[/] re-runs only what did not finish")
    elif result.status == "cancelled":
        console.print("  [bold]kiban run --resume[/] picks up what this run did not finish")


def print_status(project: Project) -> None:
    from kiban.graph import build_graph

    graph = build_graph(project)
    store = Store(project.state_url)
    try:
        store.reap_abandoned(project.name)
        latest = store.latest_attempts(project.name)
        built = store.last_built(project.name)
        running = [r for r in store.runs(project.name, 5) if r.status == "running"]
    finally:
        store.close()
    table = Table(box=None, header_style="bold")
    for col in ("asset", "state", "last built", "rows", "size", "time", "note"):
        table.add_column(col, justify="right" if col in ("rows", "size", "time") else "left",
                         no_wrap=col != "note", overflow="ellipsis", max_width=60 if col == "note" else None)
    tz = project.config.timezone
    for key in graph.order:
        asset = graph.assets[key]
        if asset.layer == "lake":
            table.add_row(f"[blue]{escape(key)}[/]", "[blue]lake[/]", "", "", "", "", "")
            continue
        last = latest.get(key)
        good = built.get(key)
        state = last.status if last else "never run"
        note = (last.error or "") if last and last.status in ("failed", "skipped", "cancelled") else ""
        table.add_row(escape(key), styled(state) if last else "[dim]never run[/]",
                      local_time(good.ended_at, tz) if good else "-", number(good.rows if good else None),
                      size(good.bytes if good else None), duration(good.seconds if good else None),
                      escape(note[:80]))
    console.print(table)
    for run in running:
        console.print(f"[cyan]running now:[/] {run.run_id} since {local_time(run.started_at, tz)} (pid {run.pid})")


def print_runs(project: Project, limit: int) -> None:
    console.print(runs_table(project, limit))


def watch_runs(project: Project, limit: int, count: int | None = None, every: float = 1.0) -> None:
    """``kiban runs --watch``: the runs table, refreshed every ``every`` seconds until Ctrl-C (or ``count`` times)."""
    import time

    from rich.live import Live

    shown = 0
    try:
        with Live(runs_table(project, limit), console=console, auto_refresh=False) as live:
            while count is None or shown < count:
                live.update(runs_table(project, limit), refresh=True)
                shown += 1
                if count is None or shown < count:
                    time.sleep(every)
    except KeyboardInterrupt:  # the way to leave: not an error
        pass


def runs_table(project: Project, limit: int) -> Table | str:
    """Recent runs, newest first (runs whose process is gone are marked abandoned first)."""
    store = Store(project.state_url)
    try:
        store.reap_abandoned(project.name)
        rows = store.runs(project.name, limit)
        details = {r.run_id: store.attempts(r.run_id) for r in rows}
    finally:
        store.close()
    if not rows:
        return "no runs yet: [bold]kiban run[/]"
    table = Table(box=None, header_style="bold")
    for col in ("run", "status", "started", "took", "assets", "selection"):
        table.add_column(col, no_wrap=col != "selection")
    for run in rows:
        final = {a.asset: a.status for a in details[run.run_id]}
        counts: dict[str, int] = {}
        for value in final.values():
            counts[value] = counts.get(value, 0) + 1
        end = run.ended_at or (utcnow() if run.status == "running" else None)  # running: so far
        took = (end - run.started_at).total_seconds() if end else None
        table.add_row(run.run_id, styled(run.status), local_time(run.started_at, project.config.timezone),
                      duration(took), " ".join(f"{styled(s)} {n}" for s, n in sorted(counts.items())) or "-",
                      escape(" ".join(run.selection) or "(all)"))
    return table


def print_run(project: Project, run_id: str) -> None:
    store = Store(project.state_url)
    try:
        run = store.run(run_id) or store.find_run(run_id)
        if run is None:
            raise UsageError(f"no run with id '{run_id}'", "list runs with `kiban runs`")
        attempts = store.attempts(run.run_id)
    finally:
        store.close()
    tz = project.config.timezone
    console.print(f"run [bold]{run.run_id}[/] {styled(run.status)}  started {local_time(run.started_at, tz)}"
                  f"  ended {local_time(run.ended_at, tz)}")
    if run.error:
        console.print(f"  [red]{escape(run.error)}[/]")
    table = Table(box=None, header_style="bold")
    for col in ("asset", "attempt", "status", "started", "time", "rows", "error"):
        table.add_column(col)
    for a in attempts:
        table.add_row(escape(a.asset), str(a.attempt), styled(a.status), local_time(a.started_at, tz),
                      duration(a.seconds), number(a.rows), escape((a.error or "")[:100]))
    console.print(table)


def print_logs(project: Project, run_id: str, asset: str | None = None) -> None:
    """``kiban logs RUN [ASSET]``: every attempt of a run with its timing, rows and full error; for a run the
    scheduler started, its log file too (what the run printed, including a crash's traceback)."""
    from kiban.schedule.ledger import Ledger

    store = Store(project.state_url)
    try:
        store.reap_abandoned(project.name)
        run = store.run(run_id) or store.find_run(run_id)
        if run is None:
            raise UsageError(f"no run with id '{run_id}'", "list runs with `kiban runs`")
        attempts = store.attempts(run.run_id)
        tick = Ledger(store, project.name).for_run(run.run_id)
    finally:
        store.close()
    if asset is not None:
        keys = sorted({a.asset for a in attempts})
        matches = [k for k in keys if asset in (k, k.split(".", 1)[-1])]
        if len(matches) != 1:
            raise UsageError(f"run {run.run_id} has no asset '{asset}'" if not matches
                             else f"'{asset}' is ambiguous: {', '.join(matches)}",
                             did_you_mean(asset, [*keys, *(k.split(".", 1)[-1] for k in keys)])
                             or f"its assets: {', '.join(keys) or 'none'}")
        attempts = [a for a in attempts if a.asset == matches[0]]
        asset = matches[0]
    tz = project.config.timezone
    took = (run.ended_at - run.started_at).total_seconds() if run.ended_at else None
    console.print(f"run [bold]{run.run_id}[/] {styled(run.status)}  started {local_time(run.started_at, tz)}"
                  f"  ended {local_time(run.ended_at, tz)}  took {duration(took)}")
    console.print(f"  selection: {escape(' '.join(run.selection) or '(all)')}   pid {run.pid} on {run.host}"
                  + (f"   started by job {tick.job} (tick {tick.id}, {tick.kind})" if tick else ""))
    if run.error:
        console.print(f"  [red]{escape(run.error)}[/]")
    for a in attempts:
        console.print(f"\n[bold]{escape(a.asset)}[/] attempt {a.attempt} {styled(a.status)}  "
                      f"{local_time(a.started_at, tz)} → {local_time(a.ended_at, tz)}  {duration(a.seconds)}"
                      f"  rows {number(a.rows)}  size {size(a.bytes)}"
                      + (f"  data through {a.watermark}" if a.watermark else ""))
        if a.error:
            console.print(escape(a.error), style="red" if a.status == "failed" else None, soft_wrap=True)
    if not attempts:
        console.print("no attempts recorded" + (" for this asset" if asset else ""))
    if tick is None:
        return
    path = project.state_dir / "logs" / "scheduler" / f"{tick.job}-{tick.id}.jsonl"
    if not path.exists():
        console.print(f"\n[dim]scheduler log {path} is gone[/]")
        return
    console.print(f"\n[bold]scheduler log[/] {path}")
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        text = _log_line(line, asset, tz)
        if text is not None:
            console.print(escape(text), soft_wrap=True)


def _log_line(line: str, asset: str | None, tz: str) -> str | None:
    """One line of a run's JSON log, readable; None when it is about another asset than ``asset``."""
    import contextlib
    import json
    from datetime import datetime

    try:
        event = json.loads(line)
    except ValueError:
        return line  # not an event: what the process printed (a traceback, a warning)
    if not isinstance(event, dict):
        return line
    if asset is not None and event.get("asset") not in (None, asset):
        return None
    at = str(event.get("at", ""))
    with contextlib.suppress(ValueError):
        at = local_time(datetime.fromisoformat(at.rstrip("Z")), tz)
    parts = [at, event.get("kind", "")]
    parts += [str(event[k]) for k in ("asset", "status") if event.get(k)]
    if event.get("attempt"):
        parts.append(f"attempt {event['attempt']}")
    if event.get("seconds") is not None:
        parts.append(duration(event["seconds"]))
    if event.get("rows") is not None:
        parts.append(f"{event['rows']:,} rows")
    if event.get("error"):
        parts.append(f"error: {event['error']}")
    return "  ".join(parts)


def print_asset(project: Project, name: str) -> None:
    from kiban.graph import build_graph

    graph = build_graph(project)
    matches = [k for k, a in graph.assets.items() if name in (k, a.name)]
    if len(matches) != 1:
        if matches:
            raise SelectionError(f"'{name}' is ambiguous: {', '.join(matches)}", "qualify it with its layer")
        raise SelectionError(f"no asset named '{name}'",
                             did_you_mean(name, [*graph.assets, *(a.name for a in graph.assets.values())]))
    key = matches[0]
    asset = graph.assets[key]
    cfg = asset.config
    kind = f"Python {asset.python.kind} {asset.python.function}()" if asset.python else \
        cfg.materialized if asset.sql else "Parquet files"
    console.print(f"[bold]{key}[/]  ({asset.layer}, {kind})")
    if cfg.description:
        console.print(escape(cfg.description))
    console.print(f"owner: {escape(cfg.owner or '-')}   tags: {escape(', '.join(cfg.tags) or '-')}")
    console.print(f"file: {asset.path}")
    console.print(f"upstream: {', '.join(graph.deps[key]) or '-'}")
    console.print(f"downstream: {', '.join(sorted(graph.children[key])) or '-'}")
    if cfg.columns:
        cols = Table(box=None, header_style="bold", title="columns", title_justify="left")
        cols.add_column("column")
        cols.add_column("description")
        cols.add_column("tags")
        for column in cfg.columns:
            cols.add_row(escape(column.name), escape(column.description), escape(", ".join(column.tags)))
        console.print(cols)
    if asset.sql:
        console.print(Syntax(asset.sql.strip(), "sql", theme="ansi_dark", line_numbers=False))
    store = Store(project.state_url)
    try:
        history = store.asset_history(key, 10)
        if project.usecases:
            _print_service_levels(project, graph, store, key)
    finally:
        store.close()
    if history:
        table = Table(box=None, header_style="bold", title="recent runs", title_justify="left")
        for col in ("run", "status", "attempt", "started", "time", "rows", "size", "error"):
            table.add_column(col)
        tz = project.config.timezone
        for a in history:
            table.add_row(a.run_id, styled(a.status), str(a.attempt), local_time(a.started_at, tz),
                          duration(a.seconds), number(a.rows), size(a.bytes), escape((a.error or "")[:80]))
        console.print(table)
    from kiban.cli.checks import print_asset_checks

    print_asset_checks(project, key)


def _print_service_levels(project: Project, graph: Graph, store: Store, key: str) -> None:
    """Which use cases this asset serves, and the latest time it may finish for all of them to be on time."""
    from kiban.slo.impact import blast_radius
    from kiban.slo.service import assess

    served = blast_radius(project, graph, key).usecases
    if not served:
        console.print("serves no use case")
        return
    result = assess(project, graph, store)
    bound = result.safe_finish.get(key)
    line = f"serves: {', '.join(served)}"
    if bound is not None:
        line += (f"   latest safe finish: {local_time(bound.latest_finish, project.config.timezone)} "
                 f"(for {bound.usecase}, due {bound.due_date}; expected {duration(result.p50.get(key))} p50, "
                 f"{duration(result.p90.get(key))} p90)")
    console.print(escape(line))
