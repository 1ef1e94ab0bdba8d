"""Tables the CLI prints: run summaries, status, run history, one asset."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from kiban.cli.output import (
    console,
    duration,
    emit_json,
    err_console,
    local_time,
    number,
    one_line,
    size,
    styled,
    utc_iso,
)
from kiban.cli.status_view import print_status_data, status_rows
from kiban.errors import SelectionError, UsageError, did_you_mean
from kiban.graph import Graph
from kiban.project import Project
from kiban.run import RunResult
from kiban.status import AttemptStatus, LoadStatus, RunStatus
from kiban.store import Store, utcnow

BIG_RUN = 30  # more built assets than this: a compact summary instead of one line per asset
SLOWEST = 10


def print_run_summary(result: RunResult, project: Project) -> None:
    plan = result.plan
    counts: dict[str, int] = {}
    for outcome in result.outcomes.values():
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    if plan.fresh:
        counts["fresh"] = len(plan.fresh)
    built = [o for o in result.outcomes.values() if o.status == AttemptStatus.SUCCESS]
    if built:
        big = len(built) > BIG_RUN
        if big:  # a big run: per layer, then its slowest builds, not one line per asset
            layers: dict[str, int] = {}
            for outcome in built:
                layer = outcome.asset.split(".", 1)[0]
                layers[layer] = layers.get(layer, 0) + 1
            console.print(f"built {len(built)} assets: " + ", ".join(f"{n} {layer}" for layer, n in layers.items())
                          + f"; the {SLOWEST} slowest (all of them: kiban runs {result.run_id})")
        table = Table(title=None, box=None, header_style="bold")
        for col, justify in (("asset", "left"), ("status", "left"), ("time", "right"), ("rows", "right")):
            table.add_column(col, justify=justify)  # type: ignore[arg-type]

        def seconds(o: Any) -> float | None:
            return (o.ended_at - o.started_at).total_seconds() if o.started_at and o.ended_at else None

        shown = sorted(built, key=lambda o: -(seconds(o) or 0.0))[:SLOWEST] if big else \
            sorted(built, key=lambda o: plan.order.index(o.asset))
        for outcome in shown:
            table.add_row(escape(outcome.asset), styled(outcome.status), duration(seconds(outcome)),
                          number(outcome.rows))
        console.print(table)
    for outcome in result.outcomes.values():
        if outcome.status == AttemptStatus.FAILED:
            console.print(Panel(escape(outcome.error or ""), title=f"[bold red]{outcome.asset} failed[/]",
                                title_align="left", border_style="red", expand=False))
    skipped = [o for o in result.outcomes.values() if o.status == AttemptStatus.SKIPPED]
    for outcome in skipped[:20]:
        console.print(f"  [yellow]skipped[/] {escape(outcome.asset)}: {escape(outcome.error or '')}")
    if len(skipped) > 20:
        console.print(f"  [yellow]… {len(skipped) - 20} more skipped[/] (kiban runs {result.run_id})")
    summary = ", ".join(f"{styled(s)} {n}" for s, n in sorted(counts.items())) or "nothing selected"
    elapsed = (result.ended_at - result.started_at).total_seconds() \
        if result.ended_at and result.started_at else None
    verdict = {"success": "[green]done[/]", "nothing": "[green]up to date[/]", "failed": "[bold red]failed[/]",
               "cancelled": "[magenta]cancelled[/]"}[result.status]
    console.print(f"run {result.run_id} {verdict} in {duration(elapsed)}: {summary}")
    if result.status == RunStatus.FAILED:
        console.print("  fix the cause, then [bold]kiban run --resume[/] re-runs only what did not finish")
    elif result.status == RunStatus.CANCELLED:
        console.print("  [bold]kiban run --resume[/] picks up what this run did not finish")


def status_data(project: Project) -> dict[str, Any]:
    """``kiban status --json``: every asset's latest state, and the runs going on now."""
    from kiban.graph import build_graph

    graph = build_graph(project)
    store = Store(project.state_url)
    try:
        store.reap_abandoned(project.name)
        latest = store.latest_attempts(project.name)
        built = store.last_built(project.name)
        running = [r for r in store.runs(project.name, 5) if r.status == RunStatus.RUNNING]
    finally:
        store.close()
    return status_rows([(k, graph.assets[k].layer) for k in graph.order], latest, built, running)


def print_status(project: Project, as_json: bool = False) -> None:
    print_status_data(status_data(project), project.config.timezone, as_json)


def print_runs(project: Project, limit: int, as_json: bool = False) -> None:
    if as_json:
        emit_json({"runs": runs_data(project, limit)})
        return
    console.print(runs_table(project, limit))


def _run_json(run: Any, counts: dict[str, int]) -> dict[str, Any]:
    end = run.ended_at or (utcnow() if run.status == RunStatus.RUNNING else None)
    return {"run_id": run.run_id, "status": run.status, "started_at": utc_iso(run.started_at),
            "ended_at": utc_iso(run.ended_at), "seconds": (end - run.started_at).total_seconds() if end else None,
            "counts": counts, "selection": list(run.selection), "error": run.error}


def _attempt_json(a: Any) -> dict[str, Any]:
    return {"run_id": a.run_id, "asset": a.asset, "attempt": a.attempt, "status": a.status,
            "started_at": utc_iso(a.started_at), "ended_at": utc_iso(a.ended_at), "seconds": a.seconds,
            "rows": a.rows, "bytes": a.bytes, "error": a.error}


def runs_data(project: Project, limit: int) -> list[dict[str, Any]]:
    """``kiban runs --json``: recent runs, newest first, each with its assets counted by final status."""
    store = Store(project.state_url)
    try:
        store.reap_abandoned(project.name)
        rows = store.runs(project.name, limit)
        out = []
        for run in rows:
            counts: dict[str, int] = {}
            for value in {a.asset: a.status for a in store.attempts(run.run_id)}.values():
                counts[value] = counts.get(value, 0) + 1
            out.append(_run_json(run, counts))
    finally:
        store.close()
    return out


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
        end = run.ended_at or (utcnow() if run.status == RunStatus.RUNNING else None)  # running: so far
        took = (end - run.started_at).total_seconds() if end else None
        table.add_row(run.run_id, styled(run.status), local_time(run.started_at, project.config.timezone),
                      duration(took), " ".join(f"{styled(s)} {n}" for s, n in sorted(counts.items())) or "-",
                      escape(" ".join(run.selection) or "(all)"))
    return table


def print_run(project: Project, run_id: str, as_json: bool = False) -> None:
    store = Store(project.state_url)
    try:
        run = store.run(run_id) or store.find_run(run_id)
        if run is None:
            raise UsageError(f"no run with id '{run_id}'", "list runs with `kiban runs`")
        attempts = store.attempts(run.run_id)
    finally:
        store.close()
    if as_json:
        counts: dict[str, int] = {}
        for value in {a.asset: a.status for a in attempts}.values():
            counts[value] = counts.get(value, 0) + 1
        emit_json({"run": _run_json(run, counts), "attempts": [_attempt_json(a) for a in attempts]})
        return
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
                      duration(a.seconds), number(a.rows), escape(one_line(a.error, 100)))
    console.print(table)


def print_logs(project: Project, run_id: str, asset: str | None = None, as_json: bool = False) -> None:
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
    if as_json:
        log = project.state_dir / "logs" / "scheduler" / f"{tick.job}-{tick.id}.jsonl" if tick else None
        counts: dict[str, int] = {}
        for value in {a.asset: a.status for a in attempts}.values():
            counts[value] = counts.get(value, 0) + 1
        emit_json({"run": {**_run_json(run, counts), "pid": run.pid, "host": run.host},
                   "attempts": [{**_attempt_json(a), "watermark": a.watermark} for a in attempts],
                   "job": tick.job if tick else None, "log": str(log) if log else None})
        return
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
            console.print(escape(a.error), style="red" if a.status == AttemptStatus.FAILED else None, soft_wrap=True)
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


def print_asset(project: Project, name: str, as_json: bool = False) -> None:
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
    if as_json:
        emit_json(_asset_json(project, graph, key, kind))
        return
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
    if asset.layer == "lake":
        _print_lake_types(project, key)
    if asset.sql:
        from rich.syntax import Syntax  # Pygments: ≈ 10 CPU-ms, only for `kiban show`

        console.print(Syntax(asset.sql.strip(), "sql", theme="ansi_dark", line_numbers=False))
    store = Store(project.state_url)
    try:
        history = store.asset_history(project.name, key, 10)
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
                          duration(a.seconds), number(a.rows), size(a.bytes), escape(one_line(a.error, 80)))
        console.print(table)
    from kiban.cli.check_report import print_asset_checks

    print_asset_checks(project, key)


def _asset_json(project: Project, graph: Graph, key: str, kind: str) -> dict[str, Any]:
    """``kiban show --json``: the asset, its lineage, its last 10 attempts and its latest checks."""
    from kiban.checks.history import recent

    asset = graph.assets[key]
    cfg = asset.config
    store = Store(project.state_url)
    try:
        history = store.asset_history(project.name, key, 10)
        checks = recent(store, project.name, key, limit=500)
    finally:
        store.close()
    latest = [c for c in checks if c.checked_at == checks[0].checked_at] if checks else []
    serves: list[str] = []
    if project.usecases:
        from kiban.slo.impact import blast_radius

        serves = list(blast_radius(project, graph, key).usecases)
    return {"asset": key, "layer": asset.layer, "kind": kind, "description": cfg.description or None,
            "owner": cfg.owner, "tags": list(cfg.tags), "path": str(asset.path),
            "upstream": list(graph.deps[key]), "downstream": sorted(graph.children[key]),
            "columns": [{"name": c.name, "description": c.description, "tags": list(c.tags)} for c in cfg.columns],
            "sql": asset.sql, "serves": serves, "runs": [_attempt_json(a) for a in history],
            "checks": [{"check": c.name, "severity": c.severity, "status": c.status, "failures": c.failures,
                        "detail": c.detail, "checked_at": utc_iso(c.checked_at), "run_id": c.run_id}
                       for c in latest],
            "collection": _collection(project, key),
            "types": [{"column": n, "type": t, "how": h} for n, t, h in _lake_types(project, key)]
            if asset.layer == "lake" else None}


def _lake_types(project: Project, key: str) -> list[tuple[str, str, str]]:
    from kiban.catalog.lake_types import lake_types  # the load manifests (SQLAlchemy): `kiban show` only

    return lake_types(project, key)


def _print_lake_types(project: Project, key: str) -> None:
    types = _lake_types(project, key)
    if not types:
        return
    table = Table(box=None, header_style="bold", title="types", title_justify="left")
    for column in ("column", "type", "how"):
        table.add_column(column)
    for name, kind, how in types:
        table.add_row(escape(name), kind, "[yellow]inferred[/]" if how == "inferred" else how)
    console.print(table)
    inferred = [(n, k) for n, k, h in types if h == "inferred"]
    if inferred:
        console.print("[dim]pin inferred types under the table's `columns:` in sources/, e.g. "
                      + escape(", ".join(f"{{name: {n}, type: {k.lower()}}}" for n, k in inferred[:3])) + "[/]")


def _collection(project: Project, key: str) -> dict[str, Any] | None:
    from kiban.cli.collect import collection_json

    return collection_json(project, key)


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


PLAN_STYLES = {"collect": "cyan", "build": "yellow", "build whole": "bold yellow", "fresh": "green", "lake": "dim"}


def print_plan(explained: Any, as_json: bool) -> None:
    """``kiban run --explain``: each selected asset, what a run would do with it, and why."""
    steps = explained.steps()
    if as_json:
        emit_json({"steps": steps, "build": explained.plan.build, "whole": sorted(explained.plan.whole),
                   "fresh": explained.plan.fresh, "collect": explained.collect})
        return
    table = Table(box=None, pad_edge=False)
    for column in ("asset", "action", "why"):
        table.add_column(column)
    for step in steps:
        style = PLAN_STYLES.get(step["action"], "")
        table.add_row(step["asset"], f"[{style}]{step['action']}[/]" if style else step["action"],
                      escape(step["reason"]))
    console.print(table)
    counts = {a: sum(1 for s in steps if s["action"] == a) for a in PLAN_STYLES}
    console.print(", ".join(f"{n} {a}" for a, n in counts.items() if n) or "nothing selected")
    if explained.collect:
        console.print("[dim]sources are collected first: what they bring may rebuild more than shown[/]")


def print_load_notes(project: Any, run_id: str) -> None:
    """After ``kiban run``: what the run's loads quarantined, refused, or found changed in a source's schema."""
    if not project.sources:
        return
    from kiban.collect.manifest import Manifests

    store = Store(project.state_url)
    try:
        manifests = Manifests(store)
        loads = manifests.loads(project.name, run_id=run_id, limit=10_000)
        drift = manifests.drift(project.name, None, limit=1000, load_ids=[r.load_id for r in loads])
    finally:
        store.close()
    for r in sorted(loads, key=lambda r: r.asset):
        if r.status != LoadStatus.COMMITTED:
            err_console.print(f"[red]{escape(r.asset)}: load refused:[/] {escape(r.error or '')}", soft_wrap=True)
        elif r.rows_quarantined:
            err_console.print(f"[yellow]note:[/] {escape(r.asset)}: {r.rows_quarantined:,} of {r.rows_read:,} "
                              f"row(s) quarantined; see `kiban quarantine show {escape(r.asset)}`", soft_wrap=True)
    by_load = {r.load_id: r.asset for r in loads}
    for _, load_id, change, action in reversed(drift):
        err_console.print(f"[yellow]note:[/] {escape(by_load.get(load_id, ''))}: schema drift: "
                          f"{escape(change.describe())} ({action})", soft_wrap=True)
