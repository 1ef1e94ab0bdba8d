"""The ``kiban`` command line's Typer app and its entry point (see ``kiban.cli``).

Imports are lazy (inside commands) so that ``kiban --help`` answers at once.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

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
    log_level: Annotated[str | None, typer.Option(
        "--log-level", envvar="KIBAN_LOG_LEVEL", metavar="LEVEL",
        help="Log lines on stderr from this level up: debug, info, warning (default), error.")] = None,
) -> None:
    from kiban.cli.logconfig import configure

    configure(log_level)
    State.project_dir = project


# Which module registers each command word (a test keeps this in step with the modules' decorators). A run imports
# the one module its command lives in, not all seventeen (≈ 40–80 CPU-ms of Rich tables, Typer sub-apps and
# kiban.cli.report's imports that `kiban run` would not use); anything else imports them all.
COMMAND_MODULES = {
    "backfill": "backfill", "check": "checks", "collect": "collect", "quarantine": "collect",
    "deliver": "deliveries", "deliveries": "deliveries", "docs": "catalog", "lineage": "catalog", "pii": "catalog",
    "plan": "catalog", "requests": "catalog", "search": "catalog", "usage": "catalog", "graph": "commands",
    "init": "commands", "logs": "commands", "run": "commands", "runs": "commands", "show": "commands",
    "status": "commands", "history": "console", "query": "console", "recipes": "console", "import": "dbt_import",
    "loads": "loads", "models": "models", "jobs": "schedule", "scheduler": "schedule", "impact": "slo",
    "incidents": "slo", "report": "slo", "slo": "slo", "storage": "storage", "oncall": "team",
    "postmortem": "team", "review": "team", "initiatives": "value", "value": "value", "pg": "web", "serve": "web",
    "users": "web", "worker": "worker",
}


def import_commands(argv: list[str]) -> None:
    """Register the invoked command (its module only), or every command when the word is not one of them
    (``--help``, no command, a typo: the whole app answers as before)."""
    module = COMMAND_MODULES.get(_command_name(argv) or "")
    if module is not None:
        importlib.import_module(f"kiban.cli.{module}")
        return
    # Importing a command module registers its commands (sources, services, models, catalog, workers...).
    from kiban.cli import (  # noqa: F401
        backfill,
        catalog,
        checks,
        collect,
        commands,
        console,
        dbt_import,
        deliveries,
        loads,
        models,
        schedule,
        slo,
        storage,
        team,
        value,
        web,
        worker,
    )


def main() -> None:
    """Console entry point: user mistakes print a message and exit with their code, never a traceback."""
    import_commands(sys.argv[1:])
    from kiban.cli import mistakes_told  # the package imports this module on first use of `app`

    with mistakes_told():
        try:
            with _only_invoked(sys.argv[1:]):
                app(standalone_mode=False)
        except typer.Abort:
            sys.exit(130)
        except typer.Exit as exc:
            sys.exit(exc.exit_code)
        except Exception as exc:  # click usage errors; a user's mistake goes on to mistakes_told
            if isinstance(exc, _click_exceptions()):
                exc.show()  # type: ignore[attr-defined]
                sys.exit(exc.exit_code)  # type: ignore[attr-defined]
            raise


@contextmanager
def _only_invoked(argv: list[str]) -> Iterator[None]:
    """Build the Click command of the one command invoked, not of all of them: Typer turns every registered
    command into a Click command (signatures, annotations, converters) before parsing (≈ 45 CPU-ms for kiban's,
    measured on a loaded machine). Anything else (no command, ``--help`` or ``--version`` before it, an unknown
    name) gets the whole app."""
    name = _command_name(argv)
    commands = [c for c in app.registered_commands if _name(c.name, c.callback) == name]
    groups = [g for g in app.registered_groups if (g.name or _group_name(g.typer_instance)) == name]
    if name is None or len(commands) + len(groups) != 1:
        yield
        return
    every_command, every_group = app.registered_commands, app.registered_groups
    app.registered_commands, app.registered_groups = list(commands), list(groups)
    try:
        yield
    finally:  # a command module the command imported meanwhile registered its own: keep them (a later main())
        every_command += [c for c in app.registered_commands if c not in commands]
        every_group += [g for g in app.registered_groups if g not in groups]
        app.registered_commands, app.registered_groups = every_command, every_group


def _group_name(typer_instance: typer.Typer | None) -> str | None:
    info = getattr(typer_instance, "info", None)
    return getattr(info, "name", None) if info is not None else None


def _command_name(argv: list[str]) -> str | None:
    """The command word after the root's options (``-p DIR``, ``--log-level LEVEL``), or None."""
    i = 0
    while i < len(argv):
        word = argv[i]
        if word in ("-p", "--project", "--log-level"):
            i += 2
        elif word.startswith(("--project=", "--log-level=")):
            i += 1
        elif word.startswith("-"):  # --help, --version, an unknown option: the whole app answers
            return None
        else:
            return word
    return None


def _name(name: str | None, callback: Any) -> str | None:
    if name:
        return name
    return callback.__name__.lower().replace("_", "-") if callback is not None else None


def _click_exceptions() -> tuple[type[Exception], ...]:
    """Click's usage-error class: Typer >= 0.2x vendors Click as ``typer._click``, older Typer uses ``click``."""
    kinds: list[type[Exception]] = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            kinds.append(importlib.import_module(module).ClickException)
        except ImportError:
            continue
    return tuple(kinds)
