"""CLI for the SQL console and recipes: `kiban query`, `kiban history`, `kiban recipes list|show|run|promote`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from kiban.cli import State, app
from kiban.cli.output import JsonOpt as DataJsonOpt
from kiban.cli.output import console, emit_json, err_console, utc_iso

recipes_app = typer.Typer(help="Saved, parameterised queries in recipes/*.yml.", no_args_is_help=True)
app.add_typer(recipes_app, name="recipes")

UserOpt = Annotated[str | None, typer.Option("--user", help="Who runs it (default: $KIBAN_USER, else your login).")]
TeamOpt = Annotated[str | None, typer.Option("--team", help="The team it counts for in `kiban usage` "
                                             "(default: $KIBAN_TEAM).")]
LimitOpt = Annotated[int, typer.Option("--limit", min=1, max=1_000_000, help="At most this many rows.")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", min=0.01, metavar="SECONDS",
                                           help="Stop the query after this long.")]
CsvOpt = Annotated[Path | None, typer.Option("--csv", metavar="FILE", help="Write the rows to a CSV file.")]
XlsxOpt = Annotated[Path | None, typer.Option("--xlsx", metavar="FILE", help="Write the rows to an Excel file.")]
PiiOpt = Annotated[bool, typer.Option("--show-pii", help="Show PII values unmasked (you need clearance; "
                                      "recorded in the query history).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Rows as JSON lines.")]


def actor(user: str | None, team: str | None, show_pii: bool = False) -> Any:
    """The person running a CLI command: --user, $KIBAN_USER, else the login name."""
    import getpass

    from kiban.catalog.usage import Actor

    name = user or os.environ.get("KIBAN_USER") or getpass.getuser()
    return Actor(name, team or os.environ.get("KIBAN_TEAM") or None, show_pii)


def open_console() -> tuple[Any, Any]:
    from kiban.catalog.console import QueryConsole
    from kiban.project import load_project
    from kiban.store import Store

    project = load_project(State.project_dir)
    store = Store(project.state_url)
    return QueryConsole(project, store), store


def print_result(result: Any, as_json: bool = False) -> None:
    if as_json:
        import json

        for row in result.as_dicts():
            typer.echo(json.dumps(row, default=str, ensure_ascii=False))
        return
    table = Table(header_style="bold", box=None)
    for name, kind in zip(result.columns, result.types, strict=True):
        masked = " [dim](masked)[/]" if name in result.masked else ""
        table.add_column(escape(name) + masked, justify="right" if kind in ("NUMBER", "BIGINT", "INTEGER",
                                                                            "DOUBLE", "DECIMAL") else "left")
    for row in result.rows:
        table.add_row(*("[dim]null[/]" if v is None else escape(str(v)) for v in row))
    console.print(table)
    more = f", first {len(result.rows):,} shown (--limit)" if result.truncated else ""
    err_console.print(f"[dim]{len(result.rows):,} row(s){more} in {result.seconds * 1000:.0f} ms; "
                      f"read {', '.join(result.assets) or 'no asset'}[/]")


def print_notes(result: Any) -> None:
    """What the console says about the masks (a table masked whole since its code changed), on stderr."""
    for note in result.notes:
        err_console.print(f"[yellow]note:[/] {escape(note)}")


def _deliver(con: Any, result: Any, csv: Path | None, xlsx: Path | None, who: Any, sql: str, kind: str,
             name: str | None) -> None:
    from kiban.catalog.console import export
    from kiban.catalog.usage import QueryEntry, log_query

    for target in (csv, xlsx):
        if target is None:
            continue
        wanted = ".csv" if target is csv else ".xlsx"
        if target.suffix.lower() != wanted:
            target = target.with_suffix(wanted)
        export(result, target)
        if con.store is not None:  # an export is a use of the data of its own
            log_query(con.store, con.project.name, who, QueryEntry("export", sql, "ok", result.assets,
                                                                   name=str(target), rows=len(result.rows),
                                                                   pii_shown=result.pii_shown))
        err_console.print(f"wrote {len(result.rows):,} row(s) to {target}" +
                          (f" (from recipe {name})" if kind == "recipe" else ""))


@app.command()
def query(
    sql: Annotated[str, typer.Argument(help="One SELECT over the project's assets; '-' reads it from stdin.")],
    user: UserOpt = None, team: TeamOpt = None, limit: LimitOpt = 1000, timeout: TimeoutOpt = 30.0,
    csv: CsvOpt = None, xlsx: XlsxOpt = None, show_pii: PiiOpt = False, as_json: JsonOpt = False,
) -> None:
    """Run a read-only query: [bold]kiban query "select * from mart.daily_sales limit 5"[/]."""
    import sys

    if sql == "-":
        sql = sys.stdin.read()
    con, store = open_console()
    who = actor(user, team, show_pii)
    try:
        result = con.run(sql, who, limit=limit, timeout=timeout)
        _deliver(con, result, csv, xlsx, who, sql, "query", None)
        print_notes(result)
    finally:
        store.close()
    if csv is None and xlsx is None:
        print_result(result, as_json)


@app.command()
def history(
    user: Annotated[str | None, typer.Option("--user", help="Only this user's queries.")] = None,
    mine: Annotated[bool, typer.Option("--mine", help="Only your own queries.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1)] = 30,
    as_json: DataJsonOpt = False,
) -> None:
    """The query history: console queries, recipe runs and exports, newest first."""
    from kiban.catalog.usage import history as read_history
    from kiban.cli.output import local_time
    from kiban.project import load_project
    from kiban.store import Store

    project = load_project(State.project_dir)
    store = Store(project.state_url)
    try:
        records = read_history(store, project.name, user or (actor(None, None).user if mine else None), limit)
    finally:
        store.close()
    if as_json:
        emit_json({"queries": [{"id": r.id, "at": utc_iso(r.at), "user": r.user, "team": r.team, "kind": r.kind,
                                "name": r.name, "status": r.status, "rows": r.rows, "seconds": r.seconds,
                                "pii_shown": r.pii_shown, "sql": r.sql, "error": r.error} for r in records]})
        return
    table = Table(header_style="bold", box=None)
    for col in ("id", "at", "user", "team", "kind", "status", "rows", "ms", "sql"):
        table.add_column(col, overflow="ellipsis", no_wrap=col != "sql")
    for r in records:
        status = {"ok": "[green]ok[/]", "refused": "[yellow]refused[/]"}.get(r.status, f"[red]{r.status}[/]")
        if r.pii_shown:
            status += " [bold red]pii shown[/]"
        text = " ".join(r.sql.split())
        table.add_row(str(r.id), local_time(r.at, project.config.timezone), escape(r.user), escape(r.team or "-"),
                      r.kind + (f" {escape(r.name)}" if r.name and r.kind == "recipe" else ""), status,
                      "-" if r.rows is None else f"{r.rows:,}",
                      "-" if r.seconds is None else f"{r.seconds * 1000:.0f}", escape(text[:120]))
    console.print(table)


def _recipe_json(recipe: Any) -> dict[str, Any]:
    cfg = recipe.config
    return {"recipe": recipe.name, "description": cfg.description, "owner": cfg.owner, "tags": list(cfg.tags),
            "params": {n: {"type": p.type, "default": p.default, "choices": list(p.choices or []),
                           "description": p.description} for n, p in cfg.params.items()},
            "sql": cfg.sql}


@recipes_app.command("list")
def recipes_list(as_json: DataJsonOpt = False) -> None:
    """Every recipe: name, parameters, owner, description."""
    from kiban.catalog.recipes import load_recipes
    from kiban.project import load_project

    recipes = load_recipes(load_project(State.project_dir))
    if as_json:
        emit_json({"recipes": [_recipe_json(r) for r in recipes.values()]})
        return
    if not recipes:
        console.print("no recipes yet: save a query as recipes/NAME.yml (see docs/catalog.md)")
        return
    table = Table(header_style="bold", box=None)
    for col in ("recipe", "parameters", "owner", "tags", "description"):
        table.add_column(col)
    for recipe in recipes.values():
        cfg = recipe.config
        params = ", ".join(f"{n}:{p.type}" + (f"={p.default}" if p.default is not None else "")
                           for n, p in cfg.params.items())
        table.add_row(f"[bold]{escape(recipe.name)}[/]", escape(params), escape(cfg.owner or "-"),
                      escape(", ".join(cfg.tags)), escape(cfg.description))
    console.print(table)


@recipes_app.command("show")
def recipes_show(name: Annotated[str, typer.Argument(help="The recipe's name (its file's stem).")],
                 as_json: DataJsonOpt = False) -> None:
    """One recipe: its description, parameters and SQL."""
    from rich.syntax import Syntax

    from kiban.catalog.recipes import get_recipe
    from kiban.project import load_project

    recipe = get_recipe(load_project(State.project_dir), name)
    if as_json:
        emit_json(_recipe_json(recipe))
        return
    cfg = recipe.config
    console.print(f"[bold]{escape(recipe.name)}[/]  {escape(cfg.description)}")
    console.print(f"owner: {escape(cfg.owner or '-')}   tags: {escape(', '.join(cfg.tags) or '-')}")
    for pname, param in cfg.params.items():
        extra = f" one of {', '.join(param.choices)}" if param.choices else ""
        default = f" (default {param.default})" if param.default is not None else " (required)"
        console.print(f"  -p {pname}=<{param.type}>{extra}{default}  {escape(param.description)}")
    console.print(Syntax(cfg.sql.strip(), "sql", theme="ansi_dark", background_color="default"))


@recipes_app.command("run")
def recipes_run(
    name: Annotated[str, typer.Argument(help="The recipe to run.")],
    param: Annotated[list[str] | None, typer.Option("--param", "-p", metavar="KEY=VALUE",
                                                    help="A parameter value (repeat for more).")] = None,
    user: UserOpt = None, team: TeamOpt = None, limit: LimitOpt = 1000, timeout: TimeoutOpt = 30.0,
    csv: CsvOpt = None, xlsx: XlsxOpt = None, show_pii: PiiOpt = False, as_json: JsonOpt = False,
) -> None:
    """Run a recipe with its parameters bound: [bold]kiban recipes run store_sales -p store=3[/]."""
    from kiban.catalog.recipes import get_recipe, parse_assignments, run_recipe

    con, store = open_console()
    who = actor(user, team, show_pii)
    try:
        recipe = get_recipe(con.project, name)
        result = run_recipe(con, recipe, parse_assignments(param or []), who, limit=limit, timeout=timeout)
        _deliver(con, result, csv, xlsx, who, recipe.sql, "recipe", name)
        print_notes(result)
    finally:
        store.close()
    if csv is None and xlsx is None:
        print_result(result, as_json)


@recipes_app.command("promote")
def recipes_promote(
    name: Annotated[str, typer.Argument(help="The recipe to turn into a mart model.")],
    param: Annotated[list[str] | None, typer.Option("--param", "-p", metavar="KEY=VALUE",
                                                    help="Fix a parameter to this value in the model.")] = None,
    model: Annotated[str | None, typer.Option("--name", help="The model's name (default: the recipe's).")] = None,
) -> None:
    """Scaffold a mart model (SQL + YAML) from a recipe, its parameters fixed to values."""
    from kiban.catalog.recipes import get_recipe, parse_assignments, promote
    from kiban.project import load_project

    project = load_project(State.project_dir)
    written = promote(project, get_recipe(project, name), parse_assignments(param or []), model)
    for path in written:
        console.print(f"  [green]created[/] {path.relative_to(project.root)}")
    console.print("Next: review it, then [bold]kiban run[/]")
