"""Values two engines return, compared as a reader of the published table would: numbers as numbers (within a
relative 1e-9), instants in UTC, a date as its midnight, NaN equal to NaN (tests/test_engine_meaning.py and
tests/test_engine_generated.py)."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any


def normal(v: Any) -> Any:
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float, Decimal)):
        return float(v)
    if isinstance(v, datetime):
        return v.astimezone(UTC).replace(tzinfo=None) if v.tzinfo else v
    if isinstance(v, date):
        return datetime(v.year, v.month, v.day)  # a date and midnight of it: date_trunc's type differs
    if isinstance(v, timedelta):
        return v.total_seconds()
    return str(v)


def same(a: Any, b: Any) -> bool:
    a, b = normal(a), normal(b)
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return bool(a == b)


def same_rows(x: list[tuple[Any, ...]], y: list[tuple[Any, ...]]) -> bool:
    return len(x) == len(y) and all(len(r) == len(q) and all(same(a, b) for a, b in zip(r, q, strict=True))
                                    for r, q in zip(x, y, strict=True))
