"""The ``kiban`` command line: a thin front end over the core.

Imports are lazy (inside commands) so that ``kiban --help`` answers at once; a plain ``kiban run`` with nothing
to do, and ``kiban status``, are answered before Typer or any of kiban's heavy modules load (``kiban.cli.quick``),
and any other plain ``kiban run`` runs without Typer's parser (``kiban.cli.running``).
The Typer app and its commands live in ``kiban.cli.root`` (``from kiban.cli import app`` still works: it is
loaded on first use).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kiban.cli.root import State, app

__all__ = ["State", "app", "main", "mistakes_told"]


def __getattr__(name: str) -> Any:
    if name in ("app", "State"):
        from kiban.cli import root

        return getattr(root, name)
    raise AttributeError(f"module 'kiban.cli' has no attribute {name!r}")


def main() -> None:
    """Console entry point: user mistakes print a message and exit with their code, never a traceback."""
    # kiban's settings models need no third-party Pydantic plugins, and looking for them reads the entry points of
    # every installed package (≈ 50 CPU-ms a command). Whoever wants plugins sets the variable to something else.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    from kiban.cli.quick import try_quick

    if try_quick(sys.argv[1:]):
        return
    if sys.argv[1:] == ["run"]:  # every option at its default: the run command without Typer's parser
        from kiban.cli.running import plain_run

        plain_run()
        return
    from kiban.cli.root import main as full

    full()


@contextmanager
def mistakes_told() -> Iterator[None]:
    """A user's mistake (``KibanError``) prints its message and exits with its code, never a traceback; Ctrl-C
    exits with 130. Both ways into a command use it: Typer's (``kiban.cli.root``) and a plain ``kiban run``."""
    from kiban.errors import KibanError

    try:
        yield
    except KibanError as exc:
        from kiban.cli.output import print_error

        print_error(exc)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
