"""Which kiban layer and name each dbt node becomes.

kiban's layers are lake (what the sources said), warehouse (shared domain knowledge) and mart (one
purpose's interface, read by no other model). The mapping:

- seeds and sources → ``lake``: a seed ``raw_orders`` is ``lake.raw_orders``; a source table
  ``jaffle.orders`` is ``lake.jaffle_orders`` (the name kiban gives a collected table of
  ``sources/jaffle.yml``);
- a model that another model reads → ``warehouse`` (a mart may not be read by models);
- a model nobody reads → ``mart``, unless it sits in a staging/intermediate folder or its
  ``schema`` config names one (then ``warehouse``);
- ``alias`` config → the name; names are lower case.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

WAREHOUSE_HINTS = {"staging", "stage", "stg", "intermediate", "int", "base", "core", "warehouse", "dwh", "prep",
                   "cleaned", "clean", "transform", "transformed"}
MART_HINTS = {"marts", "mart", "reporting", "reports", "report", "analytics", "presentation", "serving", "bi"}


@dataclass(frozen=True)
class Placement:
    layer: str
    name: str
    why: str  # one line, for the report

    @property
    def key(self) -> str:
        return f"{self.layer}.{self.name}"


@functools.cache
def _reserved() -> frozenset[str]:
    import duckdb

    rows = duckdb.connect().execute("select keyword_name from duckdb_keywords() "
                                    "where keyword_category = 'reserved'").fetchall()
    return frozenset(str(r[0]).lower() for r in rows)


def asset_name(text: str) -> str:
    """A dbt name as a kiban asset name: lower case letters, digits and ``_``, not starting with a digit,
    and not one of SQL's reserved words (``select`` becomes ``select_``, so ``from warehouse.select_`` parses)."""
    name = re.sub(r"[^a-z0-9_]", "_", text.lower())
    name = "_" + name if not name or name[0].isdigit() else name
    return name + "_" if name in _reserved() else name


def place_model(folders: tuple[str, ...], config: dict[str, object], read_by_models: bool, name: str) -> Placement:
    """The layer of one model (see the module's docstring) and its kiban name."""
    kiban_name = asset_name(str(config.get("alias") or name))
    hints = {str(config.get("schema") or "").lower(), *(f.lower() for f in folders)}
    if read_by_models:
        moved = " (its folder says mart, but other models read it and marts are read by no model)" \
            if hints & MART_HINTS else ""
        return Placement("warehouse", kiban_name, "read by other models" + moved)
    if hints & WAREHOUSE_HINTS:
        return Placement("warehouse", kiban_name, "staging/intermediate folder or schema")
    return Placement("mart", kiban_name, "read by no other model")
