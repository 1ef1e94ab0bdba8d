"""Errors a person can act on.

Every error a user can cause is a :class:`KibanError`: the CLI prints its message (never a
traceback) and exits with its ``exit_code``. Project mistakes carry a location so the message
names the file, the line and the column.
"""

from __future__ import annotations

import difflib
import re
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


# Engine messages that may quote a data value (DuckDB's error classes): kept without the value wherever a message is
# stored or shown to people who may not see personal data (a run's attempt errors: the web's run pages, the API).
VALUE_CLASSES = ("Conversion Error", "Invalid Input Error", "Out of Range Error", "Constraint Error",
                 "Mismatch Type Error", "Invalid Type Error")
_PG_VALUE = re.compile(r'((?:invalid input syntax|value too long|out of range|duplicate key value)[^:\n]*: )(.*)', re.I)
HIDDEN = "•••"


def without_values(message: str, code: str = "") -> str:
    """``message`` with the data values an engine error may quote replaced by ``•••``: DuckDB's conversion,
    constraint and range errors keep their words and names (a column, a type) but not their quoted literals; an
    invalid-input error (``error('…' || email)``, a function's bad argument) keeps its class only — unless its text
    is written in ``code`` itself (the model's own ``error('negative amount')``: no value in it); PostgreSQL's
    "invalid input syntax … : "…"" loses what follows the colon. Naming errors (binder, catalog, parser) quote no
    value and pass unchanged, as does every message of kiban's own."""
    cut = message.find("\nLINE ")  # DuckDB's context (the statement's text, not data) follows the message
    head, tail = (message[:cut], message[cut:]) if cut >= 0 else (message, "")
    kind = next((k for k in VALUE_CLASSES if head.startswith(f"{k}: ")), None)
    if kind == "Invalid Input Error":
        said = head[len(kind) + 2:].strip()
        if not (said and code and f"'{said}'" in code.replace("''", "'")):
            head = f"{kind}: a function was given a value it cannot take (the value is not kept)"
    elif kind is not None:
        # a value is quoted as it is, quotes inside it included: everything from a quote's first to its last
        for quote in ("'", '"'):
            first, last = head.find(quote), head.rfind(quote)
            if first != last:
                head = head[:first + 1] + HIDDEN + head[last:]
    else:
        head = _PG_VALUE.sub(lambda m: m.group(1) + HIDDEN, head)
    return head + tail
