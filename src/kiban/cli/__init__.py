"""The ``kiban`` command line: a thin front end over the core.

Imports are lazy (inside commands) so that ``kiban --help`` answers at once.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from kiban import __version__

app = typer.Typer(
    name="kiban",
    help="kiban (基盤): collect, transform and check data, and serve it to its users on time.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)


class State:
    project_dir: Path = Path(".")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"kiban {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    project: Annotated[Path, typer.Option("--project", "-p", help="Project folder (default: the nearest "
                                          "folder at or above the current one with kiban.yml).")] = Path("."),
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    State.project_dir = project


def main() -> None:
    """Console entry point: user mistakes print a message and exit with their code, never a traceback."""
    from kiban.cli import commands  # noqa: F401 - registers the commands
    from kiban.errors import KibanError

    try:
        app(standalone_mode=False)
    except KibanError as exc:
        from kiban.cli.output import print_error

        print_error(exc)
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
