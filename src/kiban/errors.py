"""Errors a person can act on.

Every error a user can cause is a :class:`KibanError`: the CLI prints its message (never a
traceback) and exits with its ``exit_code``. Project mistakes carry a location so the message
names the file, the line and the column.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


class KibanError(Exception):
    """Base class of all errors that are the user's to fix."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


@dataclass(frozen=True)
class Location:
    """Where in a project file something is: 1-based line and column."""

    path: Path
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        text = str(self.path)
        if self.line is not None:
            text += f":{self.line}"
            if self.column is not None:
                text += f":{self.column}"
        return text


class ProjectError(KibanError):
    """The project on disk is wrong: bad YAML, unknown keys, bad SQL, unknown tables, cycles."""

    exit_code = 2

    def __init__(self, message: str, location: Location | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.location = location

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        return where + super().__str__()

    @property
    def errors(self) -> list[ProjectError]:
        """Itself, as :class:`ProjectErrors` lists its errors: ``except (ProjectError, ProjectErrors) as exc:
        found.extend(exc.errors)`` gathers every problem of a load, one or several."""
        return [self]


class ProjectErrors(KibanError):
    """Several project errors found in one load, reported together."""

    exit_code = 2

    def __init__(self, errors: list[ProjectError]) -> None:
        super().__init__(f"{len(errors)} problem(s) in the project")
        self.errors = errors

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


class UsageError(KibanError):
    """The command was called wrongly (bad option value, conflicting options)."""

    exit_code = 2


class SelectionError(KibanError):
    """A selection names nothing the project has."""

    exit_code = 2


class RunLockedError(KibanError):
    """Another run of the same project holds the lock."""

    exit_code = 3


class ConfigError(KibanError):
    """Configuration outside the project files (environment, URLs) is wrong."""

    exit_code = 2


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice most like ``word``, or None when nothing is close."""
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """Return ``"did you mean 'x'?"`` for the closest choice, or None when nothing is close."""
    match = closest(word, choices)
    return f"did you mean '{match}'?" if match else None
