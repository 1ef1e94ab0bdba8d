"""Contracts: the columns a table promises its readers, with their types.

The promise is the ``columns:`` list of the sidecar: every listed column must exist and, where it has a
``type:``, have that type. A missing column or a changed type is a *breaking change*. With
``strict: true`` a column that is not listed breaks the contract too (readers of ``select *`` notice).

Types are compared as DuckDB spells them: ``int``, ``integer`` and ``int4`` are all ``INTEGER``,
``timestamptz`` is ``TIMESTAMP WITH TIME ZONE``. DuckDB itself resolves the declared names (``typeof(cast(
null as T))``), so aliases and parameters (``DECIMAL(12,2)``) mean exactly what they mean in a model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Breach:
    column: str
    problem: str  # missing, type, undeclared

    def __str__(self) -> str:
        return self.problem


def compare(declared: Sequence[tuple[str, str | None]], actual: Mapping[str, tuple[str, str]], strict: bool,
            resolve: Callable[[list[str]], list[str]]) -> list[Breach]:
    """Breaking differences between ``declared`` (name, type or None) and ``actual`` (lower name → (name, type)).

    ``resolve`` turns declared type names into DuckDB's canonical spelling (one round trip for all).
    """
    typed = [(name, t) for name, t in declared if t]
    canonical = dict(zip([t for _, t in typed], resolve([t for _, t in typed]), strict=True)) if typed else {}
    breaches: list[Breach] = []
    for name, wanted in declared:
        found = actual.get(name.lower())
        if found is None:
            breaches.append(Breach(name, f"column {name} is missing"))
        elif wanted and found[1] != canonical[wanted]:
            breaches.append(Breach(name, f"{name} is {found[1]}, the contract says {canonical[wanted]}"))
    if strict:
        listed = {name.lower() for name, _ in declared}
        breaches += [Breach(n, f"{n} is not in the contract") for key, (n, _) in actual.items() if key not in listed]
    return breaches
