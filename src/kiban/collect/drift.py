"""Schema drift: how this load's columns differ from the last committed load's, and what the policy does."""

from __future__ import annotations

from collections.abc import Sequence

from kiban.collect.manifest import SchemaChange

ACTIONS = {"evolve": "evolved", "warn": "warned", "fail": "failed"}


def compare(old: Sequence[tuple[str, str]], new: Sequence[tuple[str, str]]) -> list[SchemaChange]:
    """New columns, dropped columns and changed types, in the new schema's order (dropped ones last)."""
    before, after = dict(old), dict(new)
    changes: list[SchemaChange] = []
    for name, kind in new:
        if name not in before:
            changes.append(SchemaChange("added", name, None, kind))
        elif before[name] != kind:
            changes.append(SchemaChange("retyped", name, before[name], kind))
    changes += [SchemaChange("dropped", name, kind, None) for name, kind in old if name not in after]
    return changes


def note(asset: str, changes: Sequence[SchemaChange], policy: str) -> str:
    """One line for the run's output."""
    listed = "; ".join(d.describe() for d in changes)
    verdict = {"evolve": "the lake table evolves", "warn": "landed anyway (on_drift: warn)",
               "fail": "load refused (on_drift: fail)"}[policy]
    return f"{asset}: schema drift: {listed} — {verdict}"
