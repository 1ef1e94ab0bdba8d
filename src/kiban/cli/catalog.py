"""CLI for the catalog: `kiban lineage`, `docs build|profile`, `search`, `pii`, `usage`, `requests`."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from kiban.cli import State, app
from kiban.cli.output import console, err_console

docs_app = typer.Typer(help="The data dictionary: profiles and a static site.", no_args_is_help=True)
pii_app = typer.Typer(help="Personal data: tagged and propagated columns, and suggestions.", no_args_is_help=True)
usage_app = typer.Typer(help="Who uses which data: per team and week, and what nobody reads.",
                        invoke_without_command=True)
requests_app = typer.Typer(help="Data requests: new → in_progress → delivered → closed.", no_args_is_help=True)
app.add_typer(docs_app, name="docs")
app.add_typer(pii_app, name="pii")
app.add_typer(usage_app, name="usage")
app.add_typer(requests_app, name="requests")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _load() -> tuple[Any, Any]:
    from kiban.graph import build_graph
    from kiban.project import load_project

    project = load_project(State.project_dir)
    return project, build_graph(project)


def _store(project: Any) -> Any:
    from kiban.store import Store

    return Store(project.state_url)


def _asset_key(graph: Any, name: str) -> str:
    from kiban.assetkey import KeyResolver
    from kiban.errors import UsageError

    keys = KeyResolver.of_graph(graph)
    key = keys.key(name)
    if key is None:
        raise UsageError(*keys.explain(name))
    return key


# -- lineage --------------------------------------------------------------------------------------------------


def _column_arg(graph: Any, columns: Any, target: str) -> tuple[str, str]:
    """``mart.daily_sales.revenue`` or ``daily_sales.revenue`` → (asset key, column)."""
    from kiban.errors import UsageError, did_you_mean

    asset, sep, column = target.rpartition(".")
    if not sep or not asset:
        raise UsageError(f"'{target}' names no column", "write ASSET.COLUMN, e.g. mart.daily_sales.revenue")
    key = _asset_key(graph, asset)
    known = columns.columns.get(key, ())
    column = column.lower()
    if column not in known:
        raise UsageError(f"{key} has no column '{column}'", did_you_mean(column, known)
                         or (f"its columns: {', '.join(known)}" if known else "run it once so its columns are known"))
    return key, column


def _tree(node: Any, label: str) -> Tree:
    tree = Tree(label)

    def add(branch: Tree, item: Any) -> None:
        for child in item.children:
            add(branch.add(f"{escape(child.asset)}.[bold]{escape(child.column)}[/]"), child)

    add(tree, node)
    return tree


@app.command()
def lineage(
    column: Annotated[str, typer.Argument(help="ASSET.COLUMN, e.g. mart.daily_sales.revenue.")],
    direction: Annotated[str, typer.Option("--direction", "-d", metavar="both|up|down")] = "both",
    as_json: JsonOpt = False,
) -> None:
    """Column lineage from the SQL: what a column is computed from, and what is computed from it."""
    from kiban.catalog.lineage import build_column_graph
    from kiban.catalog.warehouse import published_columns
    from kiban.errors import UsageError

    if direction not in ("both", "up", "down"):
        raise UsageError(f"unknown direction '{direction}'", "use both, up or down")
    project, graph = _load()
    known = {k: [c for c, _ in v] for k, v in published_columns(project).items()}
    columns = build_column_graph(graph, known, project.state_dir / "cache" / "lineage.json")
    ref = _column_arg(graph, columns, column)
    up = columns.upstream(ref) if direction != "down" else None
    down = columns.downstream(ref) if direction != "up" else None
    if as_json:
        typer.echo(json.dumps({"column": f"{ref[0]}.{ref[1]}", "upstream": up.to_dict() if up else None,
                               "downstream": down.to_dict() if down else None}, indent=2))
        return
    name = f"{escape(ref[0])}.[bold]{escape(ref[1])}[/]"
    if up is not None:
        console.print(_tree(up, f"{name} [dim]is computed from[/]") if up.children
                      else f"{name} [dim]has no upstream column (a lake column or a constant)[/]")
    if down is not None:
        console.print(_tree(down, f"{name} [dim]feeds[/]") if down.children
                      else f"{name} [dim]feeds no other column[/]")


# -- docs, search ----------------------------------------------------------------------------------------------


@docs_app.command("profile")
def docs_profile(selection: Annotated[list[str] | None, typer.Argument(help="Assets (default: all).")] = None) -> None:
    """Profile published tables (one scan each): null share, distinct values, min/max, examples."""
    from kiban.catalog.lineage import build_column_graph
    from kiban.catalog.pii import pii_columns
    from kiban.catalog.profile import profile_assets

    project, graph = _load()
    keys = [_asset_key(graph, s) for s in selection] if selection else None
    store = _store(project)
    try:
        pii = set(pii_columns(project, build_column_graph(graph, None, project.state_dir / "cache" / "lineage.json")))
        profiles = profile_assets(project, store, keys, pii)
    finally:
        store.close()
    assets = sorted({p.asset for p in profiles})
    console.print(f"profiled {len(assets)} asset(s), {len(profiles)} column(s)")


@docs_app.command("build")
def docs_build(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the site to.")] = Path("catalog-site"),
) -> None:
    """Write the data dictionary as a static site (HTML + Markdown) that works offline."""
    from kiban.catalog.dictionary import build_dictionary
    from kiban.catalog.site import write_site

    project, graph = _load()
    store = _store(project)
    try:
        dictionary = build_dictionary(project, graph, store)
    finally:
        store.close()
    target = out if out.is_absolute() else Path.cwd() / out
    written = write_site(dictionary, target)
    console.print(f"wrote {len(written)} files to {target} — open {target / 'index.html'}")


@app.command()
def search(
    text: Annotated[list[str], typer.Argument(help="Words to find in asset and column names and descriptions.")],
    limit: Annotated[int, typer.Option("--limit", min=1)] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Full-text search over assets, columns and their descriptions."""
    from kiban.catalog.dictionary import build_dictionary
    from kiban.catalog.search import SearchIndex

    project, graph = _load()
    store = _store(project)
    try:
        dictionary = build_dictionary(project, graph, store)
    finally:
        store.close()
    hits = SearchIndex(dictionary.assets.values()).search(" ".join(text), limit)
    if as_json:
        typer.echo(json.dumps([{"asset": h.asset, "column": h.column, "score": h.score, "text": h.text}
                               for h in hits], ensure_ascii=False))
        return
    if not hits:
        console.print("nothing found")
        return
    table = Table(box=None, header_style="bold")
    for col in ("asset", "column", "description"):
        table.add_column(col)
    for hit in hits:
        table.add_row(escape(hit.asset), escape(hit.column or ""), escape(hit.text))
    console.print(table)


# -- pii --------------------------------------------------------------------------------------------------------


@pii_app.command("list")
def pii_list(as_json: JsonOpt = False) -> None:
    """Columns holding personal data: tagged `pii`, or computed from such a column."""
    from kiban.catalog.lineage import build_column_graph
    from kiban.catalog.pii import pii_columns
    from kiban.catalog.warehouse import published_columns

    project, graph = _load()
    known = {k: [c for c, _ in v] for k, v in published_columns(project).items()}
    found = pii_columns(project, build_column_graph(graph, known, project.state_dir / "cache" / "lineage.json"))
    rows = sorted((f"{a}.{c}", f"{o[0]}.{o[1]}" if o else "tagged") for (a, c), o in found.items())
    if as_json:
        typer.echo(json.dumps([{"column": c, "from": o} for c, o in rows]))
        return
    table = Table(box=None, header_style="bold")
    table.add_column("column")
    table.add_column("why")
    for col, origin in rows:
        table.add_row(escape(col), "tagged pii" if origin == "tagged" else f"computed from {escape(origin)}")
    console.print(table if rows else "no PII columns: tag them with `tags: \\[pii]` under columns:")


@pii_app.command("suggest")
def pii_suggest(
    sample: Annotated[int, typer.Option("--sample", min=0, help="Values read per table to look at.")] = 500,
    as_json: JsonOpt = False,
) -> None:
    """Propose `pii` tags from column names and from sampled values (e-mail, phone, My Number, cards)."""
    from kiban.catalog.lineage import build_column_graph
    from kiban.catalog.pii import sample_values, suggest
    from kiban.catalog.warehouse import published_columns

    project, graph = _load()
    published = published_columns(project)
    columns = build_column_graph(graph, {k: [c for c, _ in v] for k, v in published.items()},
                                 project.state_dir / "cache" / "lineage.json")
    samples = sample_values(project, published, sample) if sample else {}
    found = suggest(project, columns, samples)
    if as_json:
        typer.echo(json.dumps([{"asset": s.asset, "column": s.column, "reason": s.reason} for s in found]))
        return
    if not found:
        console.print("no suggestions: every column that looks personal is tagged")
        return
    table = Table(box=None, header_style="bold")
    for col in ("asset", "column", "why"):
        table.add_column(col)
    for s in found:
        table.add_row(escape(s.asset), f"[bold]{escape(s.column)}[/]", escape(s.reason))
    console.print(table)
    err_console.print("[dim]tag them under `columns:` in the asset's YAML: tags: \\[pii] "
                      "(or \\[anonymised] where the values are no longer personal)[/]")


# -- usage -------------------------------------------------------------------------------------------------------


@usage_app.callback()
def usage(
    ctx: typer.Context,
    weeks: Annotated[int, typer.Option("--weeks", min=1, help="How many weeks back.")] = 8,
    as_json: JsonOpt = False,
) -> None:
    """Per team and week: active users, self-served queries and recipe runs, assets read, requests."""
    if ctx.invoked_subcommand is not None:
        return
    from kiban.catalog.requests import lead_times, list_requests
    from kiban.catalog.usage import weekly

    project, _graph = _load()
    store = _store(project)
    try:
        rows = weekly(store, project.name, weeks)
        times = lead_times(list_requests(store, project.name))
    finally:
        store.close()
    if as_json:
        from dataclasses import asdict

        typer.echo(json.dumps({"weeks": [asdict(r) for r in rows], "requests": asdict(times)}))
        return
    table = Table(box=None, header_style="bold", title="usage per team and week", title_justify="left")
    for col in ("week", "team", "users", "queries", "recipe runs", "assets", "requests", "self-served"):
        table.add_column(col, justify="left" if col in ("week", "team") else "right")
    for r in rows:
        served = r.queries + r.recipes
        share = f"{served / (served + r.requests):.0%}" if served + r.requests else "-"
        table.add_row(r.week, escape(r.team), str(r.users), str(r.queries), str(r.recipes), str(r.assets),
                      str(r.requests), share)
    console.print(table if rows else "no usage recorded yet (queries, recipe runs and exports are recorded)")
    median = "-" if times.median_days is None else f"{times.median_days:.1f} days"
    console.print(f"data requests: {times.delivered} delivered (median lead time {median}), "
                  f"{times.open} open, {times.overdue} overdue")


@usage_app.command("unused")
def usage_unused(
    days: Annotated[int, typer.Option("--days", min=1, help="Not read for this many days.")] = 90,
    as_json: JsonOpt = False,
) -> None:
    """Assets that no use case lists, no recipe reads and no query has read in N days (nor feed one that is)."""
    from kiban.catalog.usage import unused

    project, graph = _load()
    store = _store(project)
    try:
        found = unused(store, project, graph, days)
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps([{"asset": u.asset, "last_read": u.last_read.isoformat() if u.last_read else None}
                               for u in found]))
        return
    if not found:
        console.print(f"every asset was used in the last {days} days")
        return
    table = Table(box=None, header_style="bold", title=f"not used in {days} days", title_justify="left")
    table.add_column("asset")
    table.add_column("last read")
    for u in found:
        table.add_row(escape(u.asset), u.last_read.strftime("%Y-%m-%d") if u.last_read else "never")
    console.print(table)


# -- data requests ------------------------------------------------------------------------------------------------


def _who(user: str | None) -> str:
    from kiban.cli.console import actor

    return str(actor(user, None).user)


@requests_app.command("new")
def requests_new(
    title: Annotated[str, typer.Argument(help="What is needed, in one line.")],
    purpose: Annotated[str, typer.Option("--purpose", help="What decision or work it serves.")] = "",
    hypothesis: Annotated[str, typer.Option("--hypothesis", help="What you expect to find.")] = "",
    data: Annotated[str, typer.Option("--data", help="Which data, at which grain, over which period.")] = "",
    needed_by: Annotated[str | None, typer.Option("--needed-by", metavar="YYYY-MM-DD")] = None,
    user: Annotated[str | None, typer.Option("--user", help="Who asks (default: you).")] = None,
    team: Annotated[str | None, typer.Option("--team", help="The team asking (default: $KIBAN_TEAM).")] = None,
) -> None:
    """Open a data request."""
    import os

    from kiban.catalog.requests import RequestDraft, new_request
    from kiban.errors import UsageError
    from kiban.project import load_project

    try:
        due = date.fromisoformat(needed_by) if needed_by else None
    except ValueError:
        raise UsageError(f"--needed-by '{needed_by}' is not a date", "write YYYY-MM-DD") from None
    project = load_project(State.project_dir)
    store = _store(project)
    try:
        request_id = new_request(store, project.name, RequestDraft(
            title, _who(user), team=team or os.environ.get("KIBAN_TEAM"), purpose=purpose, hypothesis=hypothesis,
            data_needed=data, needed_by=due))
    finally:
        store.close()
    console.print(f"data request [bold]#{request_id}[/] opened")


@requests_app.command("list")
def requests_list(
    status: Annotated[str | None, typer.Option("--status", help="Only this state.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Closed ones too.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Data requests (open ones by default), with lead times."""
    from kiban.catalog.requests import lead_times, list_requests
    from kiban.project import load_project

    project = load_project(State.project_dir)
    store = _store(project)
    try:
        found = list_requests(store, project.name, status, open_only=not all_)
        times = lead_times(list_requests(store, project.name))
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps([{**r.__dict__, "lead_time_days": r.lead_time_days} for r in found], default=str))
        return
    table = Table(box=None, header_style="bold")
    for col in ("#", "title", "by", "team", "status", "needed by", "assignee", "deliverable", "lead time"):
        table.add_column(col)
    for r in found:
        lead = "-" if r.lead_time_days is None else f"{r.lead_time_days:.1f}d"
        table.add_row(str(r.id), escape(r.title), escape(r.requester), escape(r.team or "-"), r.status,
                      str(r.needed_by or "-"), escape(r.assignee or "-"), escape(r.deliverable or "-"), lead)
    console.print(table if found else "no data requests")
    median = "-" if times.median_days is None else f"{times.median_days:.1f}d"
    p90 = "-" if times.p90_days is None else f"{times.p90_days:.1f}d"
    console.print(f"[dim]lead time (created → delivered): median {median}, p90 {p90} over {times.delivered} "
                  f"delivered; {times.open} open, {times.overdue} overdue[/]")


@requests_app.command("show")
def requests_show(request_id: Annotated[int, typer.Argument(help="The request's number.")],
                  as_json: JsonOpt = False) -> None:
    """One data request and its timeline."""
    from kiban.catalog.requests import events, get_request
    from kiban.cli.output import local_time
    from kiban.project import load_project

    project = load_project(State.project_dir)
    store = _store(project)
    try:
        r = get_request(store, project.name, request_id)
        timeline = events(store, request_id)
    finally:
        store.close()
    if as_json:
        from kiban.cli.output import emit_json, utc_iso

        emit_json({"request": {**{k: utc_iso(v) if isinstance(v, datetime) else v for k, v in r.__dict__.items()},
                               "lead_time_days": r.lead_time_days},
                   "events": [{"at": utc_iso(e.at), "actor": e.actor, "from_status": e.from_status,
                               "to_status": e.to_status, "note": e.note} for e in timeline]})
        return
    console.print(f"[bold]#{r.id} {escape(r.title)}[/]  ({r.status})")
    for label, value in (("requester", f"{r.requester} ({r.team or '-'})"), ("purpose", r.purpose),
                         ("hypothesis", r.hypothesis), ("data needed", r.data_needed),
                         ("needed by", r.needed_by), ("assignee", r.assignee), ("deliverable", r.deliverable)):
        if value:
            console.print(f"  {label:12} {escape(str(value))}")
    for e in timeline:
        note = f" — {escape(e.note)}" if e.note else ""
        console.print(f"  [dim]{local_time(e.at, project.config.timezone)}[/] {escape(e.actor or '-')}: "
                      f"{e.from_status or '∅'} → {e.to_status}{note}")


@requests_app.command("move")
def requests_move(
    request_id: Annotated[int, typer.Argument(help="The request's number.")],
    to: Annotated[str, typer.Argument(help="in_progress, delivered or closed.")],
    deliverable: Annotated[str | None, typer.Option("--deliverable",
                                                    help="recipe:NAME, mart.NAME or file:PATH.")] = None,
    assignee: Annotated[str | None, typer.Option("--assignee")] = None,
    note: Annotated[str | None, typer.Option("--note")] = None,
    user: Annotated[str | None, typer.Option("--user")] = None,
) -> None:
    """Move a data request to its next state (delivering links the deliverable)."""
    from kiban.catalog.requests import check_deliverable, move

    project, graph = _load()
    if deliverable:
        deliverable = check_deliverable(deliverable, graph.assets)
    store = _store(project)
    try:
        r = move(store, project.name, request_id, to, _who(user), deliverable=deliverable, assignee=assignee,
                 note=note)
    finally:
        store.close()
    console.print(f"data request #{r.id} is now [bold]{r.status}[/]")


@requests_app.command("close")
def requests_close(
    request_id: Annotated[int, typer.Argument(help="The request's number.")],
    note: Annotated[str | None, typer.Option("--note")] = None,
    user: Annotated[str | None, typer.Option("--user")] = None,
) -> None:
    """Close a data request (done, or withdrawn)."""
    from kiban.catalog.requests import move
    from kiban.project import load_project

    project = load_project(State.project_dir)
    store = _store(project)
    try:
        move(store, project.name, request_id, "closed", _who(user), note=note)
    finally:
        store.close()
    console.print(f"data request #{request_id} closed")


@app.command("plan")
def plan_command(
    usecase: Annotated[str | None, typer.Argument(help="A use case (default: every use case, and the sources "
                                                       "none needs).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """What a use case needs from the lake that is not collected yet (tables and the columns its models read)."""
    from kiban.catalog.needs import plan, unneeded
    from kiban.cli.output import console, emit_json
    from kiban.graph import build_graph
    from kiban.project import load_project
    from kiban.store import Store

    project = load_project(State.project_dir)
    graph = build_graph(project)
    store = Store(project.state_url)
    names = [usecase] if usecase else sorted(project.usecases)
    plans = [plan(project, graph, store, name) for name in names]
    spare = unneeded(project, graph) if usecase is None else []
    if json_out:
        emit_json({"plans": [{"usecase": p.usecase, "assets": p.assets, "needs": [n.__dict__ for n in p.needs]}
                             for p in plans], "unneeded_sources": spare})
        return
    for found in plans:
        console.print(f"[bold]{found.usecase}[/] reads {', '.join(found.assets)}: "
                      f"{len(found.needs)} lake tables, {len(found.missing)} not collected yet")
        for need in found.needs:
            mark = "[green]collected[/]" if need.collected else "[red]not collected[/]"
            origin = f"source {need.source}" if need.source else "lake folder"
            columns = ", ".join(need.columns) if need.columns else "–"
            console.print(f"  {mark}  {need.asset}  ({origin}; {need.detail})\n      columns read: {columns}")
    if spare:
        console.print("[yellow]collected, but no use case needs them:[/] " + ", ".join(spare))
