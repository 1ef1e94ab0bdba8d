"""The report of an import: what was converted, what was approximated, what was not converted.

Every approximation and every item left behind names the dbt file and line it comes from, so a
person can decide about each one; nothing is dropped silently.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kiban.errors import Location, ProjectError, ProjectErrors


@dataclass(frozen=True)
class Note:
    """One approximation, item not converted, or error: where in the dbt project, and why."""

    file: str  # relative to the dbt project
    line: int | None
    what: str  # the node, test or key concerned
    why: str
    hint: str | None = None  # what to do about it

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file

    def __str__(self) -> str:
        return f"{self.where}: {self.what}: {self.why}"


EPHEMERAL = "view (ephemeral in dbt)"  # a Converted model's detail: dbt built no table of it


@dataclass
class Converted:
    """One dbt node and what it became."""

    kind: str  # model, seed, source, snapshot, exposure
    dbt: str  # dbt's name (model name, source.table)
    kiban: str  # the kiban asset or file
    detail: str = ""  # materialization, checks
    identifier: str = ""  # the table's name in dbt's database (its alias), when it differs from dbt's name


@dataclass
class ImportReport:
    dbt_folder: str
    new_folder: str
    converted: list[Converted] = field(default_factory=list)
    checks: int = 0  # tests converted to checks
    tests: int = 0  # tests found
    approximations: list[Note] = field(default_factory=list)
    not_converted: list[Note] = field(default_factory=list)
    seconds: float = 0.0
    verify: list[dict[str, Any]] | None = None  # filled by --verify

    def count(self, kind: str) -> int:
        return sum(1 for c in self.converted if c.kind == kind)

    def approximate(self, path: Path | str, line: int | None, what: str, why: str) -> None:
        self.approximations.append(Note(str(path), line, what, why))

    def skip(self, path: Path | str, line: int | None, what: str, why: str) -> None:
        self.not_converted.append(Note(str(path), line, what, why))

    def to_json(self) -> dict[str, Any]:
        return {
            "dbt_folder": self.dbt_folder, "new_folder": self.new_folder, "seconds": round(self.seconds, 3),
            "counts": {"models": self.count("model"), "seeds": self.count("seed"), "sources": self.count("source"),
                       "exposures": self.count("exposure"), "tests": self.tests, "checks": self.checks,
                       "approximations": len(self.approximations), "not_converted": len(self.not_converted)},
            "converted": [asdict(c) for c in self.converted],
            "approximations": [asdict(n) for n in self.approximations],
            "not_converted": [asdict(n) for n in self.not_converted],
            "verify": self.verify,
        }

    def text(self) -> str:
        lines = [f"imported {self.dbt_folder} → {self.new_folder} in {self.seconds:.2f} s",
                 f"  models {self.count('model')}, seeds {self.count('seed')}, sources {self.count('source')}, "
                 f"exposures → use cases {self.count('exposure')}, tests {self.tests} → checks {self.checks}"]
        if self.approximations:
            lines.append(f"approximated ({len(self.approximations)}):")
            lines.extend(f"  {n}" for n in self.approximations)
        if self.not_converted:
            lines.append(f"not converted ({len(self.not_converted)}):")
            lines.extend(f"  {n}" for n in self.not_converted)
        if not self.approximations and not self.not_converted:
            lines.append("everything was converted as it was")
        return "\n".join(lines)


def failure(problems: list[Note], root: Path) -> ProjectErrors:
    """The import cannot produce a working project: every problem, each with its dbt file and line."""
    return ProjectErrors([ProjectError(f"{p.what}: {p.why}", Location(root / p.file, p.line), p.hint)
                          for p in problems])
