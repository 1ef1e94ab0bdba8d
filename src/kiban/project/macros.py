"""Project macros: ``macros/*.sql`` holding DuckDB ``CREATE MACRO`` statements, available to every model.

Reuse in plain SQL, without templating: a scalar macro (``create macro add_tax(x) as x * 1.1``) or a table
macro (``create macro big_orders(n) as table select * from warehouse.orders where amount > n``) is defined once
and called from any model. kiban defines them in the warehouse before a run builds anything (``create or
replace``, never temporary, so views and readers find them too) and drops the warehouse's macros that the
project no longer has, so a model never runs against a stale definition.

A macro is part of what a model is: the graph adds the tables a used macro reads to the model's dependencies,
and the text of every macro it uses (directly or through other macros) to its fingerprint — editing a macro
rebuilds exactly its users.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kiban.errors import Location, ProjectError

FOLDER = "macros"
_COMMENTS = re.compile(r"\A(?:\s+|--[^\n]*(?:\n|\Z)|/\*.*?\*/)*", re.DOTALL)
_HEADER = re.compile(r"create\s+(?:or\s+replace\s+)?(?:temp(?:orary)?\s+)?(?:macro|function)\s+"
                     r"(?:(?:\"[^\"]+\"|\w+)\s*\.\s*)?(\"[^\"]+\"|\w+)\s*\(", re.IGNORECASE)
_AS = re.compile(r"\s*as\s+(table\s+)?", re.IGNORECASE)
_CREATE = re.compile(r"create\s+(?:or\s+replace\s+)?(?:temp(?:orary)?\s+)?", re.IGNORECASE)


@dataclass(frozen=True)
class Macro:
    """One ``CREATE MACRO`` of the project."""

    name: str  # lower case: DuckDB's names are case-insensitive
    path: Path
    line: int
    text: str  # the statement as written (without leading comments)
    body: str  # what it computes: an expression, or a query for a table macro
    table: bool  # a table macro (``as table select …``)

    @property
    def definition(self) -> str:
        """The statement kiban runs: ``create or replace macro …`` (never temporary: every session sees it)."""
        return _CREATE.sub("create or replace ", self.text, count=1)

    @property
    def query(self) -> str:
        """A SELECT that reads what the macro reads (for finding its tables and the macros it calls)."""
        return self.body if self.table else f"select ({self.body})"


def callees_first(macros: Sequence[Macro]) -> list[Macro]:
    """The macros in an order DuckDB can create them: a macro after the macros its body calls (DuckDB binds
    the calls when it creates a macro). Calls are found by name followed by ``(``; a cycle keeps file order."""
    by_name = {m.name: m for m in macros}
    calls = {m.name: {n for n in by_name if n != m.name and re.search(rf"\b{re.escape(n)}\s*\(", m.body, re.I)}
             for m in macros}
    done: list[Macro] = []
    placed: set[str] = set()
    visiting: set[str] = set()

    def place(name: str) -> None:
        if name in placed or name in visiting:
            return
        visiting.add(name)
        for callee in sorted(calls[name]):
            place(callee)
        visiting.discard(name)
        placed.add(name)
        done.append(by_name[name])

    for macro in macros:
        place(macro.name)
    return done


def _closing(text: str, start: int) -> int | None:
    """Index just past the parenthesis that closes the one opened before ``start`` (strings skipped)."""
    depth, i = 1, start
    while i < len(text):
        char = text[i]
        if char in ("'", '"'):
            end = text.find(char, i + 1)
            if end == -1:
                return None
            i = end
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


def _statements(text: str) -> list[tuple[int, str]]:
    """(offset, text) of each statement: split at ``;`` outside strings, quoted names and comments."""
    out: list[tuple[int, str]] = []
    begin, i, n = 0, 0, len(text)
    while i < n:
        char = text[i]
        if char in ("'", '"'):
            end = text.find(char, i + 1)
            i = n if end == -1 else end + 1
            continue
        if text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end == -1 else end + 1
            continue
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end == -1 else end + 2
            continue
        if char == ";":
            out.append((begin, text[begin:i]))
            begin = i + 1
        i += 1
    out.append((begin, text[begin:]))
    return out


def parse_macros(text: str, path: Path) -> list[Macro]:
    """The macros one file defines; anything but ``CREATE MACRO`` is an error with its line."""
    macros: list[Macro] = []
    for offset, raw in _statements(text):
        lead = _COMMENTS.match(raw)
        skipped = lead.end() if lead else 0
        statement = raw[skipped:].rstrip()
        if not statement:
            continue
        where = Location(path, text.count("\n", 0, offset + skipped) + 1, 1)
        header = _HEADER.match(statement)
        if header is None:
            raise ProjectError("a macro file holds only CREATE MACRO statements", where,
                               "e.g. create macro add_tax(amount) as amount * 1.1; a model is a .sql file under "
                               "models/")
        closed = _closing(statement, header.end())
        as_ = _AS.match(statement, closed) if closed is not None else None
        if as_ is None:
            raise ProjectError("kiban cannot read this CREATE MACRO (expected `name(parameters) as …`)", where)
        name = header.group(1).strip('"').lower()
        macros.append(Macro(name, path, where.line or 1, statement, statement[as_.end():].strip(),
                            bool(as_.group(1))))
    return macros


def load_macros(root: Path, errors: list[ProjectError]) -> dict[str, Macro]:
    """Every macro of ``macros/*.sql``, by name; a name defined twice is an error."""
    folder = root / FOLDER
    if not folder.is_dir():
        return {}
    found: dict[str, Macro] = {}
    for path in sorted(folder.glob("*.sql")):
        try:
            macros = parse_macros(path.read_text(encoding="utf-8"), path)
        except ProjectError as exc:
            errors.append(exc)
            continue
        for macro in macros:
            other = found.get(macro.name)
            if other is not None:
                errors.append(ProjectError(f"macro {macro.name} is defined twice (also at {other.path}:{other.line})",
                                           Location(macro.path, macro.line, 1)))
                continue
            found[macro.name] = macro
    return found
