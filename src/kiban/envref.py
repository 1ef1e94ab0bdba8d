"""``env:NAME``: a value the project names instead of writing it (a warehouse URL, a source's connection, a
channel's header). The one place it is resolved; each caller raises its own error (with its own hint) when the
variable is not set. A core leaf: imports nothing of kiban.
"""

from __future__ import annotations

import os
from collections.abc import Callable

PREFIX = "env:"


def env_name(value: str) -> str | None:
    """``NAME`` for ``env:NAME``, else None (a value written as it is)."""
    return value[len(PREFIX):] if value.startswith(PREFIX) else None


def lookup(value: str) -> str | None:
    """The value ``value`` stands for: itself, or the environment variable it names (None when unset or empty)."""
    name = env_name(value)
    if name is None:
        return value
    return os.environ.get(name) or None


def resolve(value: str, missing: Callable[[str], Exception]) -> str:
    """:func:`lookup`, raising ``missing(NAME)`` when ``value`` names a variable that is not set (or empty)."""
    found = lookup(value)
    if found is None:
        raise missing(value[len(PREFIX):])
    return found


__all__ = ["PREFIX", "env_name", "lookup", "resolve"]
