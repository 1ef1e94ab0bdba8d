"""``kiban import dbt DBT_FOLDER NEW_FOLDER``: a dbt project becomes a kiban project (see kiban.dbt).

Self-contained on purpose: its output is the import report, printed as text or JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from kiban.cli import app
from kiban.status import RUN_SUCCEEDED, VerifyStatus

import_app = typer.Typer(help="Bring a project from another tool into kiban.", no_args_is_help=True)
app.add_typer(import_app, name="import")


@import_app.command("dbt")
def import_dbt_command(
    dbt_folder: Annotated[Path, typer.Argument(help="The dbt project (the folder with dbt_project.yml).")],
    new_folder: Annotated[Path, typer.Argument(help="Where the kiban project is written; must not exist yet.")],
    dbt_vars: Annotated[str | None, typer.Option("--vars", metavar="YAML",
                                                 help="Variables, as dbt's --vars: '{key: value}'.")] = None,
    verify: Annotated[Path | None, typer.Option("--verify", metavar="DUCKDB_FILE",
                                                help="After the import, build the new project with kiban and "
                                                "compare every table with the DuckDB file dbt-duckdb built.")
                      ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Write a new kiban project of plain SQL from a dbt project, and report what was converted.

    Jinja is rendered once, now; nothing is written unless the whole project is. Exits 2 when the
    dbt project cannot be imported (each problem with its file:line), 1 when --verify finds a
    difference.
    """
    from kiban.dbt.importer import import_dbt, parse_vars

    report = import_dbt(dbt_folder, new_folder, parse_vars(dbt_vars))
    failed = False
    run_line = ""
    if verify is not None:
        from kiban.dbt.verify import as_json as verify_json
        from kiban.dbt.verify import as_text
        from kiban.dbt.verify import verify as compare
        from kiban.operate import run
        from kiban.project.loader import load_project
        from kiban.run import RunOptions

        project = load_project(Path(report.new_folder))
        done = run(project, RunOptions())
        run_line = f"kiban run: {done.result.status}"
        warehouse = Path(project.warehouse_url.removeprefix("duckdb:///"))
        results = compare(report, verify, warehouse)
        report.verify = verify_json(results)
        failed = done.result.status not in RUN_SUCCEEDED or any(
            r.status not in (VerifyStatus.IDENTICAL, VerifyStatus.SKIPPED) for r in results)
        verify_text = as_text(results)
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2, default=str))
    else:
        typer.echo(report.text())
        if verify is not None:
            typer.echo(run_line)
            typer.echo(verify_text)
        typer.echo(f"next: cd {report.new_folder} && kiban run")
    if failed:
        sys.exit(1)
