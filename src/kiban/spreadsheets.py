"""Text that goes into a spreadsheet (CSV or xlsx exports) stays text: nothing a source or a visitor wrote
becomes a live formula when someone opens the file (CSV/formula injection)."""

from __future__ import annotations

from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what spreadsheets read as a formula (or DDE) at a cell's start


def inert(value: Any) -> Any:
    """A text cell a spreadsheet shows as text: one that would start a formula gets a leading apostrophe
    (what a person typing it into Excel does). Anything but text is returned as it is."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value
