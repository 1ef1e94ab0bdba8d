"""What a rewrite to DuckDB's meaning raises when a construct has none (engines.meaning, engines.meaning_postgres);
engines.dialect turns it into a located project error."""

from __future__ import annotations

from typing import Any


class Refused(Exception):
    """A construct with no faithful rewrite: ``construct`` names it, ``hint`` says how to write it instead."""

    def __init__(self, construct: str, hint: str, node: Any = None) -> None:
        super().__init__(construct)
        self.construct = construct
        self.hint = hint
        self.node = node
